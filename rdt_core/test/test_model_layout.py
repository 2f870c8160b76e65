"""State-dict layout of the released RDT-1B (keys, order, shapes, dtypes) and the size presets.

The 1B and 170M models are built on the meta device: no memory, no init values, just the layout.
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from rdt_core.model import RDTRunner, rdt_config
from rdt_core.model.pos_embed import cond_pos_embed_init, x_pos_embed_init


@pytest.fixture(scope="module")
def layout_1b(conformance_dir):
    return json.loads((conformance_dir / "state_dict_rdt1b.json").read_text())


def _on_meta(**kwargs) -> RDTRunner:
    with torch.device("meta"):
        return RDTRunner(**kwargs)


def test_1b_state_dict_keys_order_and_shapes_are_the_official_ones(layout_1b):
    runner = _on_meta(**layout_1b["constructor_kwargs"])
    ours = [(k, list(v.shape)) for k, v in runner.state_dict().items()]
    theirs = [(e["key"], e["shape"]) for e in layout_1b["entries"]]
    assert len(ours) == layout_1b["num_entries"]
    mismatches = [(a, b) for a, b in zip(ours, theirs) if a != b]
    assert not mismatches, f"first differences (ours, official): {mismatches[:5]}"
    assert sum(p.numel() for p in runner.parameters()) == layout_1b["total_parameter_count"]
    assert list(runner.buffers()) == []


def test_1b_default_dtype_keeps_adaptors_float32(layout_1b):
    kwargs = dict(layout_1b["constructor_kwargs"])
    kwargs.pop("dtype")  # the official default, bfloat16
    runner = _on_meta(**kwargs)
    by_top: dict[str, set[str]] = {}
    for key, value in runner.state_dict().items():
        by_top.setdefault(key.split(".")[0], set()).add(str(value.dtype).removeprefix("torch."))
    expected = {k: set(v) for k, v in layout_1b["dtypes_with_default_bfloat16_constructor_by_top_module"].items()}
    assert by_top == expected


def test_rdt_config_1b_is_the_released_config(layout_1b):
    official = dict(layout_1b["constructor_kwargs"])
    ours = rdt_config("1b")
    assert ours.pop("dtype") == "bfloat16"
    official.pop("dtype")
    assert ours == official


def test_1b_positional_init_matches_the_official_values(conformance_dir, layout_1b):
    """The init function at the 1B sizes (meta tensors carry no values, so it is computed directly)."""
    ref = load_file(str(conformance_dir / "rdt1b_init_pos_embed.safetensors"))
    kw = layout_1b["constructor_kwargs"]
    hidden = kw["config"]["rdt"]["hidden_size"]
    x = torch.from_numpy(x_pos_embed_init(hidden, kw["pred_horizon"])).float()
    torch.testing.assert_close(x, ref["x_pos_embed"], atol=1e-6, rtol=0)
    img = torch.from_numpy(cond_pos_embed_init(hidden, kw["img_cond_len"], kw["img_pos_embed_config"])).float()
    history, cams, patches = (abs(s) for s in kw["img_pos_embed_config"][0][1])
    assert img.shape[0] == history * cams * patches
    torch.testing.assert_close(img[::patches], ref["img_cond_pos_embed_unique_rows"], atol=1e-6, rtol=0)
    # every patch of one (history, camera) image shares its row
    torch.testing.assert_close(img.reshape(history * cams, patches, hidden),
                               img[::patches, None].expand(-1, patches, -1), atol=0, rtol=0)
    lang = torch.from_numpy(cond_pos_embed_init(hidden, kw["max_lang_cond_len"], kw["lang_pos_embed_config"]))
    torch.testing.assert_close(lang.float(), ref["lang_cond_pos_embed_unique_row"].expand(lang.shape[0], -1),
                               atol=1e-6, rtol=0)


def test_170m_preset_is_half_of_1b_with_the_1b_interfaces():
    cfg = rdt_config("170m")
    assert cfg["config"]["rdt"] == {"hidden_size": 1024, "depth": 14, "num_heads": 32,
                                    "cond_pos_embed_type": "multimodal"}
    runner = _on_meta(**cfg)
    n_params = sum(p.numel() for p in runner.parameters())
    assert 150e6 < n_params < 190e6, n_params  # "RDT-170M"
    assert (runner.img_history_size, runner.num_cameras, runner.num_patches) == (2, 3, 729)
    assert runner.lang_adaptor[0].in_features == 4096 and runner.img_adaptor[0].in_features == 1152


def test_tiny_preset_has_the_deployment_layout_and_takes_overrides():
    cfg = rdt_config("tiny", img_token_dim=16, num_patches=9, lang_token_dim=8)
    runner = RDTRunner(**cfg)
    assert runner.pred_horizon == 64 and runner.action_dim == 128
    assert (runner.img_history_size, runner.num_cameras, runner.num_patches) == (2, 3, 9)
    assert runner.img_cond_len == 54 and runner.img_token_dim == 16 and runner.lang_token_dim == 8
    assert runner.dtype == torch.float32
    with pytest.raises(ValueError, match="unknown override"):
        rdt_config("tiny", hidden=3)
    with pytest.raises(ValueError, match="unknown RDT size"):
        rdt_config("7b")
