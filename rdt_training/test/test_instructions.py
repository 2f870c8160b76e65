"""Instruction embeddings for training, and the empty instruction that condition masking puts in their place."""
from __future__ import annotations

import logging

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

from rdt_core.encoders.language import InstructionEmbedding, load_instruction_embedding, save_instruction_embedding

from conftest import LANG_DIM, write_instructions
from rdt_training.dataset import EpisodeDataset
from rdt_core.encoders.language import main as encode_instruction_cli
from rdt_training.instructions import EMPTY_FILE, InstructionBank


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    """A tiny T5 encoder with a word-level tokenizer that ends every text with </s>, as T5's does."""
    path = tmp_path_factory.mktemp("t5")
    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>", "reach", "the", "red", "marker"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(path)
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=8, d_model=LANG_DIM, d_kv=8, d_ff=32, num_layers=2, num_heads=2,
                   feed_forward_proj="gated-gelu", is_encoder_decoder=False)
    T5EncoderModel(cfg).save_pretrained(path)
    return path


def test_empty_instruction_is_t5_of_the_end_token_alone(t5_dir, tmp_path):
    from rdt_core.encoders.language import T5InstructionEncoder
    enc = T5InstructionEncoder(t5_dir, dtype=torch.float32)
    emb = enc.encode_empty()
    want = enc.model(input_ids=torch.tensor([[1]])).last_hidden_state       # "" -> [</s>]
    assert emb.shape == (1, 1, LANG_DIM)
    torch.testing.assert_close(emb, want.float())
    # rdt-encode-instruction --empty writes it into the embeddings folder under the official name
    folder = write_instructions(tmp_path / "emb")
    assert encode_instruction_cli(["--model", str(t5_dir), "--out", str(folder), "--device", "cpu",
                                   "--dtype", "float32", "--empty"]) == 0
    saved = load_instruction_embedding(folder / EMPTY_FILE)
    assert saved.instruction == "" and saved.embeddings.shape == (1, 1, LANG_DIM)
    torch.testing.assert_close(saved.embeddings, want.float())


def test_condition_masking_swaps_in_the_empty_instruction(episodes_dir, tmp_path):
    folder = write_instructions(tmp_path / "emb")
    empty = torch.full((1, 1, LANG_DIM), 0.25)
    save_instruction_embedding(folder / EMPTY_FILE, InstructionEmbedding("empty_lang_embed", "", empty))
    bank = InstructionBank.load(folder)
    torch.testing.assert_close(bank.empty(), empty[0])
    assert bank.dim == LANG_DIM
    masked = EpisodeDataset(episodes_dir, instructions=bank, cond_mask_prob=1.0)
    torch.testing.assert_close(masked[3]["lang_embed"], empty[0])
    plain = EpisodeDataset(episodes_dir, instructions=bank, cond_mask_prob=0.0)
    assert plain[3]["lang_embed"].shape[0] > 1


def test_empty_instruction_given_apart_and_checked(tmp_path):
    folder = write_instructions(tmp_path / "emb")
    assert InstructionBank.load(folder).empty() is None
    path = tmp_path / "official_empty.pt"
    torch.save(torch.ones(1, LANG_DIM), path)                     # the official file: a bare (L, D) tensor
    bank = InstructionBank.load(folder, empty=path)
    torch.testing.assert_close(bank.empty(), torch.ones(1, LANG_DIM))
    torch.save(torch.ones(1, LANG_DIM + 1), path)
    with pytest.raises(ValueError, match="same T5"):
        InstructionBank.load(folder, empty=path)


def test_masking_without_an_empty_instruction_says_so(episodes_dir, instructions_dir, caplog):
    # with ROS sourced, launch_testing's pytest plugin installs launch's logger class, whose loggers do not
    # propagate to the root logger caplog listens on: listen on the dataset's logger itself
    dataset_log = logging.getLogger("rdt_training.dataset")
    dataset_log.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="rdt_training.dataset"):
            EpisodeDataset(episodes_dir, instructions=instructions_dir, cond_mask_prob=0.1)
        assert "cannot mask the instruction" in caplog.text and "rdt-encode-instruction" in caplog.text
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="rdt_training.dataset"):
            EpisodeDataset(episodes_dir, instructions=instructions_dir, cond_mask_prob=0.0)
        assert "cannot mask" not in caplog.text
    finally:
        dataset_log.removeHandler(caplog.handler)
