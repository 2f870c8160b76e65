"""Instruction embeddings: official .pt format (safe loading, clear errors), T5 encoding from a local dir,
offload, the text-hash cache, and the rdt-encode-instruction console script. Tiny T5 built from a config."""
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

from rdt_core.encoders.language import (
    InstructionEmbedding, InstructionFileError, T5InstructionEncoder, embedding_path_for, encode_instructions,
    load_instruction_embedding, main, save_instruction_embedding)

WORDS = "pick up the red blue cube put it in box on left right".split()


def _tokenizer():
    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>"] + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    """A tiny T5-v1.1-style encoder (gated GELU, 4 blocks) and its tokenizer saved like the HF layout."""
    path = tmp_path_factory.mktemp("t5")
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=32, d_model=16, d_kv=4, d_ff=32, num_layers=4, num_heads=2,
                   feed_forward_proj="gated-gelu", is_encoder_decoder=False)
    T5EncoderModel(cfg).save_pretrained(path)
    _tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def t5(t5_dir):
    return T5InstructionEncoder(t5_dir, dtype=torch.float32)


def _emb(length=5, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return InstructionEmbedding("pick_cube", "pick up the cube", torch.randn(1, length, dim, generator=g))


# ---------------------------------------------------------------- file format
def test_save_load_roundtrip_in_official_layout(tmp_path):
    emb = _emb()
    path = tmp_path / "sub" / "pick_cube.pt"
    save_instruction_embedding(path, emb)
    raw = torch.load(path, weights_only=True)  # exactly what the official scripts read
    assert set(raw) == {"name", "instruction", "embeddings"} and raw["embeddings"].shape == (1, 5, 16)
    back = load_instruction_embedding(path, expected_dim=16)
    assert (back.name, back.instruction, back.length, back.dim) == ("pick_cube", "pick up the cube", 5, 16)
    assert torch.equal(back.embeddings, emb.embeddings)
    assert [p.name for p in path.parent.iterdir()] == ["pick_cube.pt"]  # no temporary left behind


def test_bare_tensor_of_the_official_batch_script_loads(tmp_path):
    torch.save(torch.ones(7, 16, dtype=torch.bfloat16), tmp_path / "lang_embed_0.pt")
    emb = load_instruction_embedding(tmp_path / "lang_embed_0.pt")
    assert emb.embeddings.shape == (1, 7, 16) and emb.name == "lang_embed_0"


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


@pytest.mark.parametrize("content, words", [
    ({"name": "x", "embeddings": torch.zeros(1, 2, 16)}, "lacks the key(s) ['instruction']"),
    ({"name": "x", "instruction": "y", "embeddings": torch.zeros(2, 3, 4, 5)}, "shape (1, L, D)"),
    ({"name": "x", "instruction": "y", "embeddings": torch.zeros(1, 0, 16)}, "shape (1, L, D)"),
    ({"name": "x", "instruction": "y", "embeddings": torch.full((1, 2, 16), float("nan"))}, "NaN"),
    ({"name": "x", "instruction": "y", "embeddings": torch.zeros(1, 2, 16, dtype=torch.int64)}, "floating"),
    ([1, 2, 3], "holds a list"),
])
def test_wrong_content_is_named(tmp_path, content, words):
    path = tmp_path / "bad.pt"
    torch.save(content, path)
    with pytest.raises(InstructionFileError) as err:
        load_instruction_embedding(path)
    assert words in str(err.value) and "bad.pt" in str(err.value)


def test_unsafe_or_foreign_files_are_refused_without_unpickling(tmp_path, capsys):
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"name": _Evil()}, f, protocol=2)
    with pytest.raises(InstructionFileError, match="not a safe torch file"):
        load_instruction_embedding(evil)
    assert "unpickled!" not in capsys.readouterr().out
    text = tmp_path / "notes.pt"
    text.write_text("pick up the cube")
    with pytest.raises(InstructionFileError, match="not a safe torch file"):
        load_instruction_embedding(text)


def test_width_mismatch_and_missing_file(tmp_path):
    save_instruction_embedding(tmp_path / "a.pt", _emb(dim=16))
    with pytest.raises(InstructionFileError, match="width 16 but the model expects 4096"):
        load_instruction_embedding(tmp_path / "a.pt", expected_dim=4096)
    with pytest.raises(FileNotFoundError, match="rdt-encode-instruction"):
        load_instruction_embedding(tmp_path / "missing.pt")


# ---------------------------------------------------------------- T5 encoder
def test_encode_is_the_last_hidden_state_of_the_tokens_with_eos(t5, t5_dir):
    out = t5.encode("pick up the red cube")
    assert out.shape == (1, 6, 16) and out.dtype == torch.float32  # 5 words + </s>
    ref_model = T5EncoderModel.from_pretrained(t5_dir).eval()
    with torch.no_grad():
        ref = ref_model(input_ids=torch.tensor([[3, 4, 5, 6, 8, 1]])).last_hidden_state
    torch.testing.assert_close(out, ref)
    assert not torch.allclose(t5.encode("pick up the blue cube"), out)
    with pytest.raises(ValueError, match="empty"):
        t5.encode("   ")


def test_max_length_truncates(t5_dir):
    enc = T5InstructionEncoder(t5_dir, dtype=torch.float32, max_length=4)
    assert enc.encode("pick up the red cube on the left").shape == (1, 4, 16)


def test_default_dtype_is_bfloat16_like_the_official_embeddings(t5_dir):
    enc = T5InstructionEncoder(t5_dir)
    assert enc.encode("pick up the cube").dtype == torch.bfloat16


def test_offload_folder_puts_half_the_blocks_on_disk_with_same_result(t5, t5_dir, tmp_path):
    enc = T5InstructionEncoder(t5_dir, dtype=torch.float32, offload_folder=tmp_path / "offload")
    placement = enc.model.hf_device_map
    assert placement["encoder.block.0"] == "cpu" and placement["encoder.block.3"] == "disk"
    torch.testing.assert_close(enc.encode("put it in the box"), t5.encode("put it in the box"))


def test_missing_model_dir_says_how_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="huggingface-cli download google/t5-v1_1-xxl"):
        T5InstructionEncoder(tmp_path / "nothing")


# ---------------------------------------------------------------- batch mode with cache
def test_encode_instructions_caches_by_text(t5, tmp_path):
    calls = t5.calls
    texts = ["pick up the red cube", "put it in the box", "pick up the red cube"]
    paths = encode_instructions(texts, t5, tmp_path)
    assert list(paths) == ["pick up the red cube", "put it in the box"]
    assert t5.calls - calls == 2
    for text, path in paths.items():
        assert path == embedding_path_for(text, tmp_path)
        emb = load_instruction_embedding(path)
        assert emb.instruction == text
        torch.testing.assert_close(emb.embeddings, t5.encode(text))
    index = json.loads((tmp_path / "instructions.json").read_text())
    assert index == {t: p.name for t, p in paths.items()}

    calls = t5.calls
    # cached: no encoder needed at all (training never loads T5); a factory is never called
    assert encode_instructions([" put it in the box\n"], None, tmp_path) == {"put it in the box": paths["put it in the box"]}
    encode_instructions(texts, lambda: pytest.fail("T5 must not be built when all texts are cached"), tmp_path)
    with pytest.raises(RuntimeError, match="not encoded .* yet"):
        encode_instructions(["pick up the blue cube"], None, tmp_path)
    # a damaged cache entry is recomputed, not trusted
    paths["put it in the box"].write_bytes(b"garbage")
    encode_instructions(texts, t5, tmp_path)
    assert t5.calls - calls == 1  # only the damaged entry was encoded again
    assert load_instruction_embedding(paths["put it in the box"]).instruction == "put it in the box"


def test_cli_instructions_then_cached_run_without_model(t5_dir, tmp_path, capsys):
    out = tmp_path / "emb"
    rc = main(["--model", str(t5_dir), "--instruction", "pick up the cube", "--instruction", "put it in the box",
               "--out", str(out), "--dtype", "float32"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "(1, 5, 16)" in printed and "'put it in the box'" in printed
    assert len(list(out.glob("instr_*.pt"))) == 2
    assert main(["--instruction", "pick up the cube", "--out", str(out)]) == 0  # cached: no --model needed
    assert main(["--instruction", "pick up the box", "--out", str(out)]) == 2
    assert "pass --model" in capsys.readouterr().err


def test_cli_dataset_reads_instruction_attributes_of_episodes(t5_dir, tmp_path, capsys):
    from rdt_core.episode import EpisodeMeta, encode_jpeg, write_episode

    data = tmp_path / "episodes"
    frame = np.zeros((8, 8, 3), np.uint8)
    for i, text in enumerate(["pick up the red cube", "put it in the box", "pick up the red cube", ""]):
        meta = EpisodeMeta(robot="kinova_gen3", joint_names=["j1", "j2"], camera_names=["cam_high"],
                           control_frequency=10.0, instruction=text)
        write_episode(data / f"episode_{i}.hdf5", meta, np.arange(2, dtype=np.int64) * 100_000_000,
                      np.zeros((2, 2)), np.zeros((2, 2)), {"cam_high": [encode_jpeg(frame)] * 2})
    out = tmp_path / "emb"
    assert main(["--model", str(t5_dir), "--dataset", str(data), "--out", str(out), "--dtype", "float32"]) == 0
    captured = capsys.readouterr()
    assert "1 episode(s) have no instruction" in captured.err
    index = json.loads((out / "instructions.json").read_text())
    assert sorted(index) == ["pick up the red cube", "put it in the box"]
    empty = load_instruction_embedding(out / "empty_lang_embed.pt")   # --dataset: training's masking needs it
    assert empty.instruction == "" and empty.embeddings.shape[0] == 1
    assert main(["--dataset", str(tmp_path / "nowhere"), "--out", str(out)]) == 2


def test_console_script_is_installed_and_runs(t5_dir, tmp_path):
    exe = shutil.which("rdt-encode-instruction", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("rdt-encode-instruction is not installed in this environment (pip install -e rdt_core)")
    res = subprocess.run([exe, "--model", str(t5_dir), "--instruction", "pick up the cube", "--out", str(tmp_path),
                          "--dtype", "float32"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert load_instruction_embedding(embedding_path_for("pick up the cube", tmp_path)).embeddings.shape == (1, 5, 16)


def test_tiny_t5_writes_the_instructions_and_the_empty_one(tmp_path):
    from rdt_core.encoders.language import EMPTY_INSTRUCTION_FILE, encode_with_tiny_t5

    paths = encode_with_tiny_t5(["pick up the cube", "insert the peg"], tmp_path)
    assert set(paths) == {"pick up the cube", "insert the peg"}
    cube, peg = (load_instruction_embedding(paths[t]) for t in ("pick up the cube", "insert the peg"))
    assert cube.instruction == "pick up the cube" and cube.embeddings.shape[0] == 1
    assert cube.embeddings.shape[1] == 5 and peg.embeddings.shape[1] == 4  # words + </s>
    assert not torch.equal(cube.embeddings[:, :4], peg.embeddings)
    assert load_instruction_embedding(tmp_path / EMPTY_INSTRUCTION_FILE).instruction == ""
