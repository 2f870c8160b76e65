"""Condition encoders: SigLIP vision tower (images) and T5-v1.1-XXL (instructions)."""
from rdt_core.encoders.language import (
    InstructionEmbedding, InstructionFileError, T5InstructionEncoder, embedding_path_for, encode_instructions,
    load_instruction_embedding, save_instruction_embedding)
from rdt_core.encoders.vision import HistoryImageEncoder, VisionEncoder, pad_to_square

__all__ = [
    "VisionEncoder", "HistoryImageEncoder", "pad_to_square",
    "InstructionEmbedding", "InstructionFileError", "T5InstructionEncoder", "load_instruction_embedding",
    "save_instruction_embedding", "encode_instructions", "embedding_path_for",
]
