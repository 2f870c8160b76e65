"""Instruction embeddings: the official .pt format and T5-v1.1-XXL encoding (console script rdt-encode-instruction)."""
# CONTRACT (implemented by the encoders helper):
# @dataclass class InstructionEmbedding: name: str; instruction: str; embeddings: Tensor (1, L, D)
# def load_instruction_embedding(path) -> InstructionEmbedding   # torch.load(weights_only=True); clear error on a bad file
# def save_instruction_embedding(path, emb: InstructionEmbedding) -> None
# class T5InstructionEncoder:
#     def __init__(self, model_dir, *, device="cpu", dtype=None, offload_folder=None, max_length=1024)
#     @classmethod from_model(model, tokenizer, device="cpu")
#     def encode(self, text: str) -> Tensor (1, L, D)
# def encode_instructions(texts: list[str], encoder, out_dir, cache=True) -> dict[str, Path]  # cached by text hash
# def main(argv=None)   # rdt-encode-instruction --model DIR (--instruction TEXT | --dataset DIR ...) --out DIR [--offload-folder]
