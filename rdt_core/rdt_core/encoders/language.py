"""Instruction embeddings: the official .pt format and T5-v1.1-XXL encoding (console script rdt-encode-instruction).

RDT conditions on the T5-v1.1-XXL encoder's last hidden state of the tokenised instruction (1, L, 4096).
T5-XXL is large (~9.5 GB in bfloat16), so embeddings are computed once, offline, and stored as the
official scripts store them: ``torch.save({"name", "instruction", "embeddings"}, path)``. The robot and
the training loop only load those files. ``encode_instructions`` keeps one file per distinct text (named by
its hash) so encoding a dataset twice, or training on it, never runs T5 again.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch

__all__ = [
    "InstructionEmbedding", "InstructionFileError", "load_instruction_embedding", "save_instruction_embedding",
    "T5InstructionEncoder", "encode_instructions", "embedding_path_for", "dataset_instructions", "main",
    "OFFICIAL_TEXT_ENCODER", "T5_XXL_DIM",
]

OFFICIAL_TEXT_ENCODER = "google/t5-v1_1-xxl"
T5_XXL_DIM = 4096
INDEX_FILE = "instructions.json"
EMPTY_INSTRUCTION_FILE = "empty_lang_embed.pt"  # official name of the empty instruction (condition masking)


class InstructionFileError(ValueError):
    """An instruction-embedding file that is missing, unsafe, or not in the official format."""


@dataclass
class InstructionEmbedding:
    """One encoded instruction: ``embeddings`` is (1, L, D) (D = 4096 for T5-v1.1-XXL)."""

    name: str
    instruction: str
    embeddings: torch.Tensor

    def __post_init__(self):
        e = self.embeddings
        if not isinstance(e, torch.Tensor):
            raise InstructionFileError(f"embeddings must be a torch.Tensor, got {type(e).__name__}")
        if e.ndim == 2:  # the official batch script stores bare (L, D) tensors
            self.embeddings = e = e.unsqueeze(0)
        if e.ndim != 3 or e.shape[0] != 1 or e.shape[1] == 0 or e.shape[2] == 0:
            raise InstructionFileError(
                f"embeddings must have shape (1, L, D) with L, D > 0 (official T5-XXL: (1, L, 4096)), got {tuple(e.shape)}")
        if not e.is_floating_point():
            raise InstructionFileError(f"embeddings must be floating point, got {e.dtype}")
        if not torch.isfinite(e).all():
            raise InstructionFileError("embeddings contain NaN or inf; re-encode the instruction")

    @property
    def length(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[2])


def load_instruction_embedding(path, *, expected_dim: int | None = None) -> InstructionEmbedding:
    """Load an official instruction file ({"name", "instruction", "embeddings"} or a bare (L, D) tensor).

    Uses ``torch.load(weights_only=True)``: a file that needs arbitrary unpickling is refused.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"instruction embedding {path} not found; compute it with "
            f"`rdt-encode-instruction --model <t5-v1_1-xxl dir> --instruction \"...\" --out {path.parent}`")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, unsafe globals
        raise InstructionFileError(
            f"{path} is not a safe torch file of instruction embeddings ({type(exc).__name__}: {str(exc)[:200]}); "
            f"expected torch.save({{'name', 'instruction', 'embeddings'}}) as written by rdt-encode-instruction "
            f"or the official encode_lang.py") from None
    if isinstance(data, torch.Tensor):
        emb = InstructionEmbedding(name=path.stem, instruction="", embeddings=data)
    elif isinstance(data, dict):
        missing = [k for k in ("name", "instruction", "embeddings") if k not in data]
        if missing:
            raise InstructionFileError(
                f"{path} lacks the key(s) {missing}; an instruction file holds "
                f"{{'name', 'instruction', 'embeddings'}} (found keys {sorted(map(str, data))})")
        try:
            emb = InstructionEmbedding(name=str(data["name"]), instruction=str(data["instruction"]),
                                       embeddings=data["embeddings"])
        except InstructionFileError as exc:
            raise InstructionFileError(f"{path}: {exc}") from None
    else:
        raise InstructionFileError(
            f"{path} holds a {type(data).__name__}, expected a dict {{'name', 'instruction', 'embeddings'}}")
    if expected_dim is not None and emb.dim != expected_dim:
        raise InstructionFileError(
            f"{path}: embeddings have width {emb.dim} but the model expects {expected_dim} "
            f"(RDT uses {OFFICIAL_TEXT_ENCODER}, width {T5_XXL_DIM}); encode with the matching T5")
    return emb


def save_instruction_embedding(path, emb: InstructionEmbedding) -> None:
    """Write the official format; written to a temporary name then renamed, so a crash leaves no half file."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    torch.save({"name": emb.name, "instruction": emb.instruction,
                "embeddings": emb.embeddings.detach().cpu().contiguous()}, tmp)
    os.replace(tmp, path)


class T5InstructionEncoder:
    """T5 encoder + tokenizer from a local directory (official: T5-v1.1-XXL, max length 1024).

    ``offload_folder`` keeps the first half of the encoder blocks on ``device`` and the rest on disk
    (the official low-memory setting; needs accelerate). dtype defaults to bfloat16, as the official
    embeddings were computed.
    """

    def __init__(self, model_dir, *, device="cpu", dtype=None, offload_folder=None, max_length: int = 1024):
        from transformers import AutoTokenizer, T5Config, T5EncoderModel

        path = Path(model_dir).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"no T5 model at {path} (config.json missing). Download it once with "
                f"`huggingface-cli download {OFFICIAL_TEXT_ENCODER} --local-dir {path}` and pass that directory.")
        dtype = torch.bfloat16 if dtype is None else dtype
        kwargs: dict = {"local_files_only": True, "dtype": dtype}
        if offload_folder is not None:
            try:
                import accelerate  # noqa: F401
            except ImportError:
                raise RuntimeError("--offload-folder needs the accelerate package: pip install accelerate") from None
            Path(offload_folder).mkdir(parents=True, exist_ok=True)
            num_layers = T5Config.from_pretrained(path, local_files_only=True).num_layers
            kwargs["offload_folder"] = str(offload_folder)
            kwargs["device_map"] = _offload_device_map(num_layers, str(device))
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, model_max_length=max_length)
        model = T5EncoderModel.from_pretrained(path, **kwargs)
        self._init(model, tokenizer, device=device, max_length=max_length, place=offload_folder is None)

    @classmethod
    def tiny(cls, texts, *, seed: int = 0) -> "T5InstructionEncoder":
        """A random tiny T5 (built from a config: nothing is downloaded) with a word-level vocabulary over
        ``texts``: UNTRAINED, for demos and tests that run the real encoding path without T5-v1.1-XXL."""
        from tokenizers import Tokenizer, models, pre_tokenizers, processors
        from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

        words = ["<pad>", "</s>", "<unk>"] + sorted({w for t in texts for w in str(t).split()})
        tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                            unk_token="<unk>")
        torch.manual_seed(seed)
        t5 = T5EncoderModel(T5Config(vocab_size=len(words), d_model=32, d_kv=8, d_ff=64, num_layers=1,
                                     num_heads=4)).eval()
        return cls.from_model(t5, tokenizer)

    @classmethod
    def from_model(cls, model, tokenizer, device="cpu", max_length: int = 1024) -> "T5InstructionEncoder":
        """Wrap an already built encoder (tests, or a model kept in memory by the caller)."""
        self = cls.__new__(cls)
        self._init(model, tokenizer, device=device, max_length=max_length, place=True)
        return self

    def _init(self, model, tokenizer, *, device, max_length, place):
        self.device = torch.device(device)
        self.model = (model.to(self.device) if place else model).eval()
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.calls = 0

    @property
    def dim(self) -> int:
        return int(self.model.config.d_model)

    @torch.inference_mode()
    def encode_empty(self) -> torch.Tensor:
        """(1, L, D) embedding of the empty instruction, tokenised as the official training tokenises ""
        (the end-of-sequence token alone): the official ``data/empty_lang_embed.pt`` that condition masking
        puts in place of the instruction."""
        ids = self.tokenizer("", return_tensors="pt")["input_ids"].view(1, -1)
        if ids.shape[1] == 0:
            raise ValueError("the tokenizer gives no token for the empty string; use the T5 tokenizer (it adds </s>)")
        first = next(self.model.parameters())
        with torch.inference_mode():
            out = self.model(input_ids=ids.to(first.device)).last_hidden_state
        return out.detach().float().cpu().clone()

    def encode(self, text: str) -> torch.Tensor:
        """(1, L, D) last hidden state on the CPU, tokenised as the official encode_lang.py (ends with </s>)."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("the instruction is empty; give the task in words, e.g. 'pick up the red cube'")
        ids = self.tokenizer(text, return_tensors="pt", padding="longest", truncation=True,
                             max_length=self.max_length)["input_ids"].view(1, -1)
        first = next(self.model.parameters())
        ids = ids.to(first.device if first.device.type != "meta" else self.device)
        self.calls += 1
        return self.model(input_ids=ids).last_hidden_state.detach().cpu()


def _offload_device_map(num_layers: int, device: str) -> dict[str, str]:
    on_device = math.ceil(num_layers / 2)
    dm = {"shared": device, "encoder.embed_tokens": device}
    for i in range(num_layers):
        dm[f"encoder.block.{i}"] = device if i < on_device else "disk"
    dm["encoder.final_layer_norm"] = "disk"
    dm["encoder.dropout"] = "disk"
    return dm


# ------------------------------------------------------------------ batch mode (cached by text)
def _normalise(text: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"empty instruction {text!r}; every instruction must be a non-empty string")
    return text.strip()


def _slug(text: str, limit: int = 48) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit].rstrip("_") or "instruction"


def embedding_path_for(text: str, out_dir) -> Path:
    """Where ``encode_instructions`` keeps the embedding of ``text`` (a hash of the stripped text)."""
    digest = hashlib.sha256(_normalise(text).encode("utf-8")).hexdigest()[:16]
    return Path(out_dir) / f"instr_{digest}.pt"


def encode_instructions(texts: Iterable[str], encoder, out_dir, cache: bool = True) -> dict[str, Path]:
    """Encode every distinct text to ``out_dir`` (one official .pt per text) and return {text: path}.

    ``encoder`` is a T5InstructionEncoder, a zero-argument callable that builds one (called only if some
    text is not cached yet), or None when every text must already be cached. ``out_dir/instructions.json``
    maps each text to its file, for training and for people.
    """
    out_dir = Path(out_dir).expanduser()
    texts = list(dict.fromkeys(_normalise(t) for t in texts))
    result: dict[str, Path] = {}
    todo: list[str] = []
    for text in texts:
        path = embedding_path_for(text, out_dir)
        if cache and path.is_file():
            try:
                if load_instruction_embedding(path).instruction == text:
                    result[text] = path
                    continue
            except (InstructionFileError, ValueError):
                pass  # damaged cache entry: encode again
        todo.append(text)
    if todo:
        if encoder is None:
            raise RuntimeError(
                f"{len(todo)} instruction(s) are not encoded in {out_dir} yet: {todo[:3]}...; run "
                f"`rdt-encode-instruction --model <t5-v1_1-xxl dir> --dataset <episodes dir> --out {out_dir}`")
        if not isinstance(encoder, T5InstructionEncoder) and callable(encoder):
            encoder = encoder()
        for text in todo:
            path = embedding_path_for(text, out_dir)
            save_instruction_embedding(path, InstructionEmbedding(_slug(text), text, encoder.encode(text)))
            result[text] = path
    _update_index(out_dir, result)
    return {t: result[t] for t in texts}


def _update_index(out_dir: Path, entries: dict[str, Path]) -> None:
    if not entries:
        return
    index_path = out_dir / INDEX_FILE
    index = {}
    if index_path.is_file():
        try:
            index = json.loads(index_path.read_text())
        except (OSError, ValueError):
            index = {}
    index.update({t: p.name for t, p in entries.items()})
    tmp = index_path.with_name(f".{INDEX_FILE}.partial")
    tmp.write_text(json.dumps(index, indent=1, ensure_ascii=False, sort_keys=True))
    os.replace(tmp, index_path)


def encode_with_tiny_t5(texts: Iterable[str], out_dir) -> dict[str, Path]:
    """``texts`` and the empty instruction (training's condition masking) encoded into ``out_dir`` with
    ``T5InstructionEncoder.tiny``: the real encoding path and file layout, an UNTRAINED encoder (demos,
    the sim pipeline, tests)."""
    texts = list(texts)
    encoder = T5InstructionEncoder.tiny(texts)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_instruction_embedding(out_dir / EMPTY_INSTRUCTION_FILE,
                               InstructionEmbedding("empty_lang_embed", "", encoder.encode_empty()))
    return encode_instructions(texts, encoder, out_dir)


def dataset_instructions(folder) -> list[str]:
    """Distinct non-empty ``instruction`` attributes of the episode files (*.hdf5, *.h5) under ``folder``."""
    from rdt_core.episode import EpisodeReader

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder {folder} does not exist")
    files = sorted(p for ext in ("*.hdf5", "*.h5") for p in folder.rglob(ext) if not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"no episode files (*.hdf5, *.h5) under {folder}")
    found: dict[str, None] = {}
    empty = []
    for f in files:
        try:
            with EpisodeReader(f) as reader:
                text = (reader.meta.instruction or "").strip()
        except Exception as exc:
            raise ValueError(f"cannot read episode {f}: {exc}") from exc
        if text:
            found.setdefault(text)
        else:
            empty.append(f.name)
    if empty:
        print(f"warning: {len(empty)} episode(s) have no instruction attribute: {empty[:5]}", file=sys.stderr)
    if not found:
        raise ValueError(f"none of the {len(files)} episodes under {folder} has an instruction; "
                         f"record with an instruction or pass --instruction")
    return list(found)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="rdt-encode-instruction",
        description="Encode instructions with T5-v1.1-XXL into the official RDT .pt format (one file per text, cached).")
    parser.add_argument("--model", help=f"local directory of {OFFICIAL_TEXT_ENCODER} (needed unless all are cached)")
    parser.add_argument("--instruction", action="append", default=[], metavar="TEXT", help="an instruction (repeatable)")
    parser.add_argument("--dataset", action="append", default=[], metavar="DIR",
                        help="a folder of HDF5 episodes: encode every distinct instruction attribute (repeatable)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder for the .pt files")
    parser.add_argument("--offload-folder", metavar="DIR", help="keep half of T5 on disk here (low GPU memory)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32", "float16"])
    parser.add_argument("--max-length", type=int, default=1024, help="tokenizer max length (official: 1024)")
    parser.add_argument("--force", action="store_true", help="re-encode texts that are already cached")
    parser.add_argument("--empty", action="store_true",
                        help=f"also write the empty instruction ({EMPTY_INSTRUCTION_FILE}, used by training's "
                             f"condition masking); implied by --dataset")
    args = parser.parse_args(argv)

    from rdt_core.model import parse_dtype

    texts = list(args.instruction)
    encoder = None

    def build():
        nonlocal encoder
        if encoder is None:
            if args.model is None:
                raise RuntimeError("some instructions are not cached yet: pass --model <t5-v1_1-xxl dir>")
            encoder = T5InstructionEncoder(args.model, device=args.device, dtype=parse_dtype(args.dtype),
                                           offload_folder=args.offload_folder, max_length=args.max_length)
        return encoder

    try:
        for folder in args.dataset:
            texts += dataset_instructions(folder)
        want_empty = args.empty or bool(args.dataset)
        if not texts and not want_empty:
            parser.error("give at least one --instruction TEXT, --dataset DIR or --empty")
        paths = encode_instructions(texts, build, args.out, cache=not args.force) if texts else {}
        empty_path = Path(args.out).expanduser() / EMPTY_INSTRUCTION_FILE
        if want_empty and (args.force or not empty_path.is_file()):
            save_instruction_embedding(empty_path, InstructionEmbedding("empty_lang_embed", "",
                                                                        build().encode_empty()))
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"rdt-encode-instruction: error: {exc}", file=sys.stderr)
        return 2
    for text, path in paths.items():
        emb = load_instruction_embedding(path)
        print(f"{path}  {tuple(emb.embeddings.shape)}  {text!r}")
    if want_empty:
        print(f"{empty_path}  {tuple(load_instruction_embedding(empty_path).embeddings.shape)}  '' (empty)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
