"""RDTPolicy: the deployment step on a tiny random RDT + tiny SigLIP (no downloads)."""
import shutil

import numpy as np
import pytest
import torch

from rdt_core.encoders.language import InstructionEmbedding, save_instruction_embedding
from rdt_core.encoders.vision import VisionEncoder
from rdt_core.model import RDTRunner, rdt_config
from rdt_core.policy import NonFiniteActionError, RDTPolicy
from rdt_core.robots import load_profile


@pytest.fixture(scope="module")
def policy():
    return RDTPolicy.tiny("kinova_gen3", seed=0)


def _frames(seed, n=6, shape=(48, 64, 3)):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


def _qpos(profile, frac=0.3):
    return profile.lower + frac * (profile.upper - profile.lower)


def _noise(policy, seed=0):
    return torch.randn(policy.horizon, 128, generator=torch.Generator().manual_seed(seed))


def test_tiny_policy_is_flagged_untrained_and_sized_from_the_checkpoint(policy):
    assert policy.untrained and "UNTRAINED" in repr(policy)
    assert (policy.horizon, policy.img_history_size, policy.num_cameras, policy.window_size) == (64, 2, 3, 6)
    assert policy.device == torch.device("cpu") and policy.dtype == torch.float32


def test_predict_is_the_official_deployment_step_in_robot_units(policy):
    """Same chunk as the official step written out by hand: unified state + mask, all six frames encoded
    in one pass, ctrl_freq of the profile, every language token attended, unified -> robot units."""
    prof = policy.profile
    images, qpos, noise = _frames(1), _qpos(prof), _noise(policy)
    actions = policy.predict(images, qpos, stamp=123, noise=noise)
    assert actions.shape == (64, prof.dof) and actions.dtype == np.float32

    runner, vision = policy.runner, policy.vision
    state = torch.from_numpy(prof.qpos_to_unified(qpos)).view(1, 1, 128)
    mask = torch.from_numpy(prof.unified_mask()).view(1, 1, 128)
    lang = policy.instruction.embeddings
    img = vision.encode(images).reshape(1, -1, vision.hidden_size)
    ref = runner.predict_action(lang, torch.ones(lang.shape[:2], dtype=torch.bool), img, state, mask,
                                torch.tensor([25]), noise=noise.unsqueeze(0))
    expected = prof.unified_to_action(ref[0].numpy())
    np.testing.assert_allclose(actions, expected, atol=1e-5, rtol=1e-5)
    assert policy.last_stamp == 123
    # the gripper is in the profile's joint units, not openness: openness u -> knuckle 0.8 - 0.8u
    grip = prof.joint_names.index("robotiq_85_left_knuckle_joint")
    np.testing.assert_allclose(actions[:, grip], 0.8 - 0.8 * ref[0, :, prof.unified_indices[grip]].numpy(),
                               atol=1e-5)


def test_aloha_profile_gives_fourteen_joints():
    pol = RDTPolicy.tiny("aloha", seed=1)
    out = pol.predict(_frames(2), _qpos(pol.profile), noise=_noise(pol))
    assert out.shape == (64, 14) and np.isfinite(out).all()


def test_missing_camera_is_the_background_image(policy):
    images = _frames(3)
    images[2] = images[5] = None  # Kinova has no left wrist camera
    bg = policy.vision.background_image()
    with_none = policy.predict(images, _qpos(policy.profile), noise=_noise(policy))
    explicit = policy.predict([bg if im is None else im for im in images], _qpos(policy.profile),
                              noise=_noise(policy))
    np.testing.assert_allclose(with_none, explicit, atol=1e-5, rtol=1e-5)


def test_wrong_sizes_are_named(policy):
    q = _qpos(policy.profile)
    with pytest.raises(ValueError, match=r"got 5 images; this checkpoint takes 6 = 2 steps x 3 cameras"):
        policy.predict(_frames(4, 5), q)
    with pytest.raises(ValueError, match=r"expects \(8,\)"):
        policy.predict(_frames(4), q[:7])
    with pytest.raises(ValueError, match="NaN"):
        policy.predict(_frames(4), np.full(8, np.nan))
    with pytest.raises(ValueError, match="uint8"):
        policy.predict([f.astype(np.float32) for f in _frames(4)], q)
    with pytest.raises(ValueError, match=r"noise has shape \(1, 8, 128\)"):
        policy.predict(_frames(4), q, noise=torch.zeros(8, 128))
    with pytest.raises(ValueError, match="one key per image"):
        policy.predict(_frames(4), q, image_keys=[1, 2])
    with pytest.raises(ValueError, match="width 7, the checkpoint's language adaptor takes 32"):
        policy.set_instruction(torch.zeros(1, 4, 7))
    with pytest.raises(ValueError, match="at most 32"):
        policy.set_instruction(torch.zeros(1, 40, 32))


def test_consecutive_steps_reuse_the_previous_frames(policy):
    policy.reset()
    f = _frames(5, 9)
    q = _qpos(policy.profile)
    policy.predict(f[0:6], q, image_keys=list(range(0, 6)), noise=_noise(policy))
    assert policy.last_info["frames_encoded"] == 6
    second = policy.predict(f[3:9], q, image_keys=list(range(3, 9)), noise=_noise(policy))
    assert policy.last_info["frames_encoded"] == 3
    fresh = RDTPolicy.tiny("kinova_gen3", seed=0).predict(f[3:9], q, noise=_noise(policy))
    np.testing.assert_allclose(second, fresh, atol=1e-5, rtol=1e-5)


def test_same_noise_same_chunk_other_noise_other_chunk(policy):
    images, q = _frames(6), _qpos(policy.profile)
    a = policy.predict(images, q, noise=_noise(policy, 1))
    b = policy.predict(images, q, noise=_noise(policy, 1).numpy())
    c = policy.predict(images, q, noise=_noise(policy, 2))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3
    # the chunk depends on the state too
    d = policy.predict(images, _qpos(policy.profile, 0.7), noise=_noise(policy, 1))
    assert np.abs(a - d).max() > 1e-3


def test_instruction_swap(policy, tmp_path):
    images, q = _frames(7), _qpos(policy.profile)
    original = policy.instruction
    a = policy.predict(images, q, noise=_noise(policy))
    other = InstructionEmbedding("other", "put it in the box", torch.randn(1, 5, 32, generator=torch.Generator().manual_seed(9)))
    save_instruction_embedding(tmp_path / "other.pt", other)
    policy.set_instruction(tmp_path / "other.pt")
    assert policy.instruction.instruction == "put it in the box"
    b = policy.predict(images, q, noise=_noise(policy))
    assert np.abs(a - b).max() > 1e-3
    policy.set_instruction(original)
    np.testing.assert_array_equal(policy.predict(images, q, noise=_noise(policy)), a)


def test_set_instruction_never_waits_for_a_running_chunk(tmp_path):
    """The node's set_instruction service runs on the thread that also runs the control tick: it must return
    while a chunk is being computed (not seconds later), and that chunk keeps the instruction it began with."""
    import threading

    pol = RDTPolicy.tiny("kinova_gen3", seed=0)
    images, q = _frames(11), _qpos(pol.profile)
    before = pol.predict(images, q, noise=_noise(pol))
    entered, release = threading.Event(), threading.Event()
    sample = pol.sampler.predict_action

    def held_sample(**kwargs):
        entered.set()
        assert release.wait(120.0)
        return sample(**kwargs)

    pol.sampler.predict_action = held_sample
    running = {}
    worker = threading.Thread(target=lambda: running.update(chunk=pol.predict(images, q, noise=_noise(pol))))
    worker.start()
    try:
        assert entered.wait(120.0), "the chunk never started"
        other = InstructionEmbedding("other", "put it in the box",
                                     torch.randn(1, 5, 32, generator=torch.Generator().manual_seed(9)))
        save_instruction_embedding(tmp_path / "other.pt", other)
        swap = threading.Thread(target=pol.set_instruction, args=(tmp_path / "other.pt",))
        swap.start()
        swap.join(60.0)
        assert not swap.is_alive(), "set_instruction waited for the running chunk"
        assert worker.is_alive()                    # the chunk was still being computed
    finally:
        release.set()
        worker.join(120.0)
    pol.sampler.predict_action = sample
    np.testing.assert_array_equal(running["chunk"], before)    # begun with the old instruction, kept it
    assert pol.instruction.instruction == "put it in the box"
    assert np.abs(pol.predict(images, q, noise=_noise(pol)) - before).max() > 1e-3


def test_no_instruction_is_a_clear_error():
    tiny = RDTPolicy.tiny("kinova_gen3")
    pol = RDTPolicy(tiny.runner, tiny.vision, tiny.profile, None)
    with pytest.raises(RuntimeError, match="no instruction set"):
        pol.predict(_frames(0), _qpos(pol.profile))


def test_non_finite_model_output_raises():
    pol = RDTPolicy.tiny("kinova_gen3", seed=3)
    with torch.no_grad():
        next(pol.runner.model.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteActionError, match=r"non-finite values \(NaN/inf\)"):
        pol.predict(_frames(0), _qpos(pol.profile), stamp=7)


def test_window_size_comes_from_the_checkpoint():
    vision = VisionEncoder.tiny()
    torch.manual_seed(0)
    runner = RDTRunner(**rdt_config("tiny", img_history_size=1, num_cameras=2, img_token_dim=24, num_patches=16,
                                    pred_horizon=16, dtype="float32"))
    pol = RDTPolicy(runner, vision, "aloha", torch.randn(1, 3, 32))
    assert (pol.window_size, pol.horizon) == (2, 16)
    assert pol.predict(_frames(0, 2), _qpos(pol.profile)).shape == (16, 14)
    with pytest.raises(ValueError, match="takes 2 = 1 steps x 2 cameras"):
        pol.predict(_frames(0, 6), _qpos(pol.profile))


def test_mismatched_vision_encoder_is_refused():
    runner = RDTRunner(**rdt_config("tiny", img_token_dim=24, num_patches=16, dtype="float32"))
    with pytest.raises(ValueError, match="gives 4 patches per image, the checkpoint expects 16"):
        RDTPolicy(runner, VisionEncoder.tiny(image_size=16), "kinova_gen3")


def test_inpaint_pins_the_committed_start_of_the_chunk(policy):
    images, q = _frames(8), _qpos(policy.profile)
    first = policy.predict(images, q, noise=_noise(policy))
    pinned = policy.predict(images, q, noise=_noise(policy, 5), inpaint_actions=first[:10])
    np.testing.assert_allclose(pinned[:10], first[:10], atol=1e-5)
    with pytest.raises(ValueError, match="inpaint_actions"):
        policy.predict(images, q, inpaint_actions=first[:10, :3])


def test_bfloat16_runs_and_returns_float32():
    pol = RDTPolicy.tiny("kinova_gen3", dtype=torch.bfloat16)
    assert pol.dtype == torch.bfloat16 and next(pol.runner.parameters()).dtype == torch.bfloat16
    out = pol.predict(_frames(0), _qpos(pol.profile))
    assert out.dtype == np.float32 and np.isfinite(out).all()


def test_from_paths_loads_checkpoint_profile_json_vision_and_instruction(tmp_path, policy):
    from rdt_core.checkpoint import save_pretrained

    ckpt = save_pretrained(policy.runner, tmp_path / "ckpt", extra_json={"profile.json": policy.profile.to_dict()})
    policy.vision.model.save_pretrained(tmp_path / "siglip")
    policy.vision.processor.save_pretrained(tmp_path / "siglip")
    save_instruction_embedding(tmp_path / "instr.pt", policy.instruction)

    loaded = RDTPolicy.from_paths(ckpt, tmp_path / "siglip", None, tmp_path / "instr.pt")
    assert not loaded.untrained and loaded.profile.name == "kinova_gen3" and loaded.dtype == torch.float32
    images, q = _frames(9), _qpos(policy.profile)
    np.testing.assert_allclose(loaded.predict(images, q, noise=_noise(policy)),
                               policy.predict(images, q, noise=_noise(policy)), atol=1e-5, rtol=1e-5)
    by_name = RDTPolicy.from_paths(ckpt, tmp_path / "siglip", "kinova_gen3", tmp_path / "instr.pt")
    assert by_name.profile.to_dict() == load_profile("kinova_gen3").to_dict()
    # an rdt_training export carries a small tower in vision/: no vision path needed
    policy.vision.model.save_pretrained(ckpt / "vision")
    policy.vision.processor.save_pretrained(ckpt / "vision")
    carried = RDTPolicy.from_paths(ckpt, None, None, tmp_path / "instr.pt")
    np.testing.assert_allclose(carried.predict(images, q, noise=_noise(policy)),
                               policy.predict(images, q, noise=_noise(policy)), atol=1e-5, rtol=1e-5)
    shutil.rmtree(ckpt / "vision")
    with pytest.raises(FileNotFoundError, match="no vision encoder given"):
        RDTPolicy.from_paths(ckpt, None, "kinova_gen3", tmp_path / "instr.pt")
    (ckpt / "profile.json").unlink()
    with pytest.raises(FileNotFoundError, match="no robot profile given and no profile.json"):
        RDTPolicy.from_paths(ckpt, tmp_path / "siglip", None, tmp_path / "instr.pt")


def test_agilex_step_is_the_official_deployment_step():
    """scripts/agilex_model.py written out: state = qpos / [1]*6+[4.7908]+[1]*6+[4.7888] at the AgileX indices
    (left arm 50-55, left gripper 60, right arm 0-5, right gripper 10), mask 1 there, ctrl_freq 25, every
    language token attended; the chunk comes back at those indices times [1]*6+[11.8997]+[1]*6+[13.9231]."""
    indices = [50, 51, 52, 53, 54, 55, 60, 0, 1, 2, 3, 4, 5, 10]
    state_div = np.array([1, 1, 1, 1, 1, 1, 4.7908, 1, 1, 1, 1, 1, 1, 4.7888])
    action_div = np.array([1, 1, 1, 1, 1, 1, 11.8997, 1, 1, 1, 1, 1, 1, 13.9231])
    pol = RDTPolicy.tiny("agilex", seed=2)
    seen = {}
    original = pol.sampler.predict_action

    def spy(**kwargs):                       # the real sampler, its inputs and output recorded
        seen.update(kwargs)
        seen["out"] = original(**kwargs)
        return seen["out"]

    pol.sampler.predict_action = spy
    rng = np.random.default_rng(0)
    qpos = np.concatenate([rng.uniform(-1, 1, 6), [3.1], rng.uniform(-1, 1, 6), [2.2]])
    actions = pol.predict([None] * 3 + _frames(4, n=3), qpos)

    want_state = np.zeros(128)
    want_state[indices] = qpos / state_div
    np.testing.assert_allclose(seen["state_tokens"][0, 0].numpy(), want_state, atol=1e-6)
    want_mask = np.zeros(128)
    want_mask[indices] = 1
    np.testing.assert_array_equal(seen["action_mask"][0, 0].numpy(), want_mask)
    assert seen["ctrl_freqs"].tolist() == [25] and seen["lang_attn_mask"].all()
    np.testing.assert_allclose(actions, seen["out"][0][:, indices].numpy() * action_div, rtol=1e-6, atol=1e-6)


def test_from_paths_reads_weights_one_at_a_time_never_t5_and_reports_startup(tmp_path, policy, monkeypatch):
    """Start-up: the checkpoint is checked from its shapes (meta tensors) before any tensor is read, then
    read tensor by tensor in the final dtype; T5 is never built (the instruction is its stored embedding);
    ``startup`` gives the load times and, after the first chunk, the time from the start of loading to it."""
    import transformers

    from rdt_core import checkpoint
    from rdt_core.checkpoint import WeightsFile, save_pretrained

    ckpt = save_pretrained(policy.runner, tmp_path / "ckpt", extra_json={"profile.json": policy.profile.to_dict()})
    policy.vision.model.save_pretrained(tmp_path / "siglip")
    policy.vision.processor.save_pretrained(tmp_path / "siglip")
    save_instruction_embedding(tmp_path / "instr.pt", policy.instruction)

    def no_t5(*_a, **_k):
        raise AssertionError("T5 must not be loaded at deployment")

    monkeypatch.setattr(transformers.T5EncoderModel, "from_pretrained", no_t5)
    monkeypatch.setattr(transformers.T5EncoderModel, "__init__", no_t5)
    weights = WeightsFile(ckpt)
    assert all(t.device.type == "meta" for t in weights.shapes.values())
    reads = []
    original = WeightsFile.read

    def counted(self, name, dtype=None):
        tensor = original(self, name, dtype)
        reads.append((name, tensor.dtype))
        return tensor

    monkeypatch.setattr(checkpoint.WeightsFile, "read", counted)
    loaded = RDTPolicy.from_paths(ckpt, tmp_path / "siglip", None, tmp_path / "instr.pt", dtype="bfloat16")
    assert sorted(n for n, _ in reads) == sorted(weights.shapes)  # each tensor read once
    assert {d for n, d in reads if n.startswith("model.")} == {torch.bfloat16}
    assert {d for n, d in reads if not n.startswith("model.")} == {torch.float32}  # adaptors, as released
    assert loaded.startup["first_chunk_s"] is None
    assert loaded.startup["load_runner_s"] > 0 and loaded.startup["load_vision_s"] > 0
    latency = loaded.warmup()
    s = loaded.startup
    assert s["first_chunk_latency_s"] <= latency and s["first_chunk_s"] >= s["ready_s"] + s["first_chunk_latency_s"] - 1e-6
    # the warm-up chunk left nothing behind: the next chunk is the one a fresh policy gives
    images, q = _frames(10), _qpos(policy.profile)
    fresh = RDTPolicy.from_paths(ckpt, tmp_path / "siglip", None, tmp_path / "instr.pt", dtype="bfloat16")
    np.testing.assert_array_equal(loaded.predict(images, q, noise=_noise(policy)),
                                  fresh.predict(images, q, noise=_noise(policy)))


def test_device_preprocessing_is_asked_for_on_cuda_only_and_can_be_forced(policy):
    """The policy's default: the processor on CPU; preprocessing on the device where asked (on CUDA by
    default): the chunk is the PIL one up to the few 1-2 level pixel differences at this tiny 32 px size."""
    assert not policy.vision.preprocess_on_device and policy.fast_path["preprocessing"] == "processor (PIL)"
    assert policy.fast_path["sampler"].startswith("eager: CUDA graphs need a CUDA device")
    forced = RDTPolicy(policy.runner, policy.vision, policy.profile, policy.instruction, preprocess_on_device=True)
    assert forced.vision.preprocess_on_device and forced.vision.model is policy.vision.model
    images, q = _frames(11, shape=(480, 640, 3)), _qpos(policy.profile)
    a, b = forced.predict(images, q, noise=_noise(policy)), policy.predict(images, q, noise=_noise(policy))
    assert np.abs(a - b).max() < 0.05
