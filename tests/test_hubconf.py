"""``hubconf.py``: torch.hub entry points, one per preset."""

from __future__ import annotations

import pytest
import torch

from rvoslib import create_model, list_presets
from tests._davis_mini import REPO_ROOT


def test_every_preset_has_an_entry() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf", REPO_ROOT / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    names = {name for name in dir(hubconf) if callable(getattr(hubconf, name))}
    assert {p.replace("-", "_").replace(".", "_") for p in list_presets()} <= names


def test_load_a_preset_and_run_it() -> None:
    model = torch.hub.load(str(REPO_ROOT), "tiny", source="local", fusion={"num_heads": 2})
    assert model.config.fusion["num_heads"] == 2
    tokens = model.tokenize(["the red circle"])
    out = model.eval()(torch.rand(1, 2, 3, 64, 64), tokens["input_ids"], tokens["attention_mask"])
    assert out.shape == (1, 2, 1, 64, 64)


def test_mttr_swin_t_loads_at_its_published_size() -> None:
    model = torch.hub.load(str(REPO_ROOT), "mttr_swin_t", source="local")
    assert model.architecture == "mttr"


def test_checkpoint_loads_a_saved_folder_and_checks_the_architecture(tmp_path) -> None:
    saved = create_model("tiny").save_pretrained(tmp_path / "tiny")
    model = torch.hub.load(str(REPO_ROOT), "tiny", source="local", checkpoint=str(saved))
    assert model.architecture == "fusion"
    with pytest.raises(ValueError, match="holds a 'fusion' model"):
        torch.hub.load(str(REPO_ROOT), "mttr_tiny", source="local", checkpoint=str(saved))
    with pytest.raises(ValueError, match="pass no overrides"):
        torch.hub.load(str(REPO_ROOT), "tiny", source="local", checkpoint=str(saved), x=1)
