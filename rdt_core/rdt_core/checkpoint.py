"""Checkpoint I/O in the official layouts (Hugging Face dir, DeepSpeed mp_rank_00_model_states.pt).

Never unpickles untrusted data: safetensors, or torch.load(weights_only=True).
"""
# CONTRACT (implemented by the model helper):
# class CheckpointError(ValueError)   # one message listing every difference (missing/unexpected keys, shapes, config)
# def read_config(path) -> dict        # config.json of an HF dir (or beside a .pt)
# def load_state_dict(path) -> dict[str, Tensor]   # model.safetensors | pytorch_model.bin | mp_rank_00_model_states.pt ("module")
# def load_runner(path, *, config=None, device="cpu", dtype=None, norm_formula=None) -> RDTRunner
#     # path: HF dir | a .pt / .safetensors / .bin file | a DeepSpeed checkpoint dir (containing mp_rank_00_model_states.pt)
# def save_pretrained(runner, out_dir, *, extra_json: dict[str, dict] | None = None) -> Path
#     # config.json (official kwargs + norm_formula) + model.safetensors (+ extra json files, e.g. profile.json, dataset_stats.json)
