"""Instruction embeddings for training: looked up by instruction text, never computed here.

Training never loads T5 itself (it needs ~20 GB): `rdt-encode-instruction --dataset DIR --out EMB_DIR`
(rdt_core) writes one official ``.pt`` per distinct instruction beforehand, and this bank maps each
episode's instruction text to its embedding.

Condition masking (official ``cond_mask_prob``) replaces the instruction with the T5 embedding of the
empty string (the official ``data/empty_lang_embed.pt``): ``rdt-encode-instruction --dataset DIR`` (or
``--empty``) writes ``empty_lang_embed.pt`` into the embeddings folder, where the bank finds it (copying
the official file there works too).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from rdt_core.encoders.language import EMPTY_INSTRUCTION_FILE, load_instruction_embedding

EMPTY_FILE = EMPTY_INSTRUCTION_FILE      # the official name of the empty instruction's embedding


def _canonical(text: str) -> str:
    """Instruction texts match without surrounding spaces and a trailing full stop ("Pick the cube." and
    "Pick the cube" name one embedding)."""
    text = text.strip()
    return text[:-1] if text.endswith(".") else text


class InstructionBank:
    """Instruction text -> embedding (L, D) float32, from a folder of .pt files, one .pt, or a mapping.

    A single ``.pt`` file serves every instruction (one task, one embedding).
    """

    def __init__(self, embeddings: Mapping[str, torch.Tensor], *, default: torch.Tensor | None = None,
                 source: str = "", empty: torch.Tensor | None = None):
        self._by_text = {_canonical(k): self._as_2d(v) for k, v in embeddings.items()}
        self._default = None if default is None else self._as_2d(default)
        if empty is not None:
            self._by_text[""] = self._as_2d(empty)
        self.source = source

    @staticmethod
    def _as_2d(emb: torch.Tensor) -> torch.Tensor:
        emb = torch.as_tensor(emb).detach().float().cpu()
        if emb.dim() == 3:
            if emb.shape[0] != 1:
                raise ValueError(f"an instruction embedding must be (1, L, D) or (L, D), got {tuple(emb.shape)}")
            emb = emb[0]
        if emb.dim() != 2 or emb.shape[0] == 0:
            raise ValueError(f"an instruction embedding must be (1, L, D) or (L, D), got {tuple(emb.shape)}")
        return emb

    @classmethod
    def load(cls, source, *, empty=None) -> "InstructionBank":
        """``source``: a folder of official .pt files, a single .pt (used for every episode), a mapping
        text -> tensor/path, or an InstructionBank. ``empty``: the embedding of the empty instruction (a
        .pt path or a tensor) for condition masking, when the folder does not hold one."""
        bank = cls._load(source)
        if empty is not None:
            if isinstance(empty, (str, Path)):
                empty = load_instruction_embedding(empty).embeddings
            bank._by_text[""] = cls._as_2d(empty)
            if bank.dim != int(empty.shape[-1]):
                raise ValueError(f"the empty-instruction embedding is {int(empty.shape[-1])} wide, the instruction "
                                 f"embeddings are {bank.dim}; encode both with the same T5")
        return bank

    @classmethod
    def _load(cls, source) -> "InstructionBank":
        if isinstance(source, InstructionBank):
            return source
        if isinstance(source, Mapping):
            table = {}
            for text, value in source.items():
                if isinstance(value, (str, Path)):
                    value = load_instruction_embedding(value).embeddings
                table[text] = value
            return cls(table, source="mapping")
        path = Path(source)
        if path.is_file():
            emb = load_instruction_embedding(path)
            return cls({emb.instruction: emb.embeddings}, default=emb.embeddings, source=str(path))
        if path.is_dir():
            table = {}
            for pt in sorted(path.glob("*.pt")):
                emb = load_instruction_embedding(pt)
                table[emb.instruction] = emb.embeddings
            if not table:
                raise FileNotFoundError(
                    f"no instruction embeddings (*.pt) in {path}; write them with "
                    f"`rdt-encode-instruction --model T5_DIR --dataset EPISODES --out {path}`")
            return cls(table, source=str(path))
        raise FileNotFoundError(f"instruction embeddings not found: {path} (give a folder of .pt files or one .pt)")

    @property
    def dim(self) -> int:
        texts = [k for k in self._by_text if k] or list(self._by_text)
        any_emb = self._default if self._default is not None else self._by_text[texts[0]]
        return int(any_emb.shape[-1])

    def __contains__(self, text: str) -> bool:
        return self._default is not None or _canonical(text) in self._by_text

    def get(self, text: str) -> torch.Tensor:
        key = _canonical(text)
        if key in self._by_text:
            return self._by_text[key]
        if self._default is not None:
            return self._default
        raise KeyError(f"no embedding for instruction {text!r} in {self.source or 'the instruction bank'}; "
                       f"encode it with `rdt-encode-instruction --instruction {text!r} --out DIR`")

    def empty(self) -> torch.Tensor | None:
        """Embedding of the empty instruction (condition masking), None when the bank has none."""
        return self._by_text.get("")

    def missing(self, texts) -> list[str]:
        return sorted({t for t in texts if t not in self})
