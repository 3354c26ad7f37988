"""The composition system: registries, part specs, a part from user code, legacy folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import rvoslib
from rvoslib import RVOSLoss, RVOSModel, create_model
from rvoslib.data import SyntheticRVOSDataset
from rvoslib.models import FUSIONS, HEADS, TEMPORAL_MODULES, Registry
from rvoslib.training import Trainer, TrainerConfig

DATA = Path(__file__).with_name("data")


class FrameGRU(nn.Module):
    """A temporal part written outside the library: a GRU over time at every position."""

    def __init__(self, channels: int, layers: int = 1) -> None:
        super().__init__()
        self.channels = channels
        self.gru = nn.GRU(channels, channels, num_layers=layers, batch_first=True)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch, frames, channels, height, width = features.shape
        sequences = features.permute(0, 3, 4, 1, 2).reshape(-1, frames, channels)
        mixed, _ = self.gru(sequences)
        return mixed.view(batch, height, width, frames, channels).permute(0, 3, 4, 1, 2)


@pytest.fixture
def gru_registered():
    TEMPORAL_MODULES.register("test_frame_gru")(FrameGRU)
    yield "test_frame_gru"
    TEMPORAL_MODULES.unregister("test_frame_gru")


def _data(videos: int = 6) -> SyntheticRVOSDataset:
    return SyntheticRVOSDataset(num_videos=videos, num_frames=2, size=32, seed=1)


def _config(out: Path, epochs: int) -> TrainerConfig:
    return TrainerConfig(
        epochs=epochs,
        batch_size=2,
        accumulation_steps=1,
        progress=False,
        device="cpu",
        output_dir=str(out),
    )


def test_a_part_from_user_code_trains_resumes_saves_and_restores(gru_registered, tmp_path):
    torch.manual_seed(0)
    model = create_model("tiny", temporal={"name": gru_registered, "layers": 2})
    assert model.config.temporal == {"name": gru_registered, "layers": 2}
    assert model.temporal.gru.num_layers == 2 and model.temporal.channels == 64
    # 3 steps with checkpoints, then resume for 3 more
    Trainer(model, _data(), config=_config(tmp_path / "run", epochs=1)).fit()
    saved = json.loads((tmp_path / "run" / "last" / "config.json").read_text())
    assert saved["temporal"] == {"name": gru_registered, "layers": 2}
    resumed = create_model("tiny", temporal={"name": gru_registered, "layers": 2})
    trainer = Trainer(
        resumed, _data(), config=_config(tmp_path / "run", 2), resume=tmp_path / "run" / "last"
    )
    assert trainer.step == 3
    history = trainer.fit()
    assert trainer.step == 6 and len(history) == 2
    # save and restore with identical outputs
    trainer.model.save_pretrained(tmp_path / "model")
    restored = RVOSModel.from_pretrained(tmp_path / "model").eval()
    assert isinstance(restored.temporal, FrameGRU)
    tokens = restored.tokenize(["the red circle"])
    frames = torch.randn(1, 3, 3, 32, 32)
    with torch.no_grad():
        expected = trainer.model.eval()(frames, tokens["input_ids"])
        torch.testing.assert_close(restored(frames, tokens["input_ids"]), expected, rtol=0, atol=0)
    # not registered at load time: a clear error
    TEMPORAL_MODULES.unregister(gru_registered)
    with pytest.raises(KeyError) as error:
        RVOSModel.from_pretrained(tmp_path / "model")
    message = error.value.args[0]
    assert f"part 'temporal' is temporal module '{gru_registered}', which is not registered" in (
        message
    )
    assert "registered temporal modules: conv3d" in message
    assert "import the module that registers 'test_frame_gru' before loading" in message


def test_a_swapped_part_is_saved_with_its_own_spec(gru_registered, tmp_path) -> None:
    model = create_model("tiny")
    model.temporal = FrameGRU(64, layers=1)
    assert model.config.temporal == {"name": gru_registered, "layers": 1}
    model.save_pretrained(tmp_path / "m")
    assert isinstance(RVOSModel.from_pretrained(tmp_path / "m").temporal, FrameGRU)


def test_an_unregistered_part_cannot_be_saved_and_says_how_to_register(tmp_path) -> None:
    model = create_model("tiny")
    model.temporal = nn.Identity()
    with pytest.raises(ValueError, match=r"torch.nn.modules.linear.Identity is not a registered"):
        model.save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match=r"@TEMPORAL_MODULES.register\('<name>'\)"):
        model.config  # noqa: B018
    assert not (tmp_path / "m").exists()


def test_registry_errors_name_the_kind_the_part_and_the_valid_values() -> None:
    with pytest.raises(KeyError, match="unknown temporal module 'lstm'; registered temporal"):
        create_model("tiny", temporal={"name": "lstm"})
    with pytest.raises(ValueError, match=r"fusion 'cross_attention' got unknown keyword\(s\)"):
        create_model("tiny", fusion={"num_head": 2})
    with pytest.raises(ValueError, match="it accepts: hidden_dim, num_heads, dropout, mode"):
        create_model("tiny", fusion={"num_head": 2})
    with pytest.raises(ValueError, match=r"\['channels'\] are set by the builder"):
        create_model("tiny", temporal={"channels": 32})
    with pytest.raises(ValueError, match="a head spec needs a 'name' key, got keys"):
        HEADS.build({"hidden_channels": 3}, in_channels=8)
    with pytest.raises(TypeError, match="a fusion spec must be a dict"):
        FUSIONS.build(3)


def test_registering_a_taken_name_is_refused() -> None:
    registry = Registry("thing")

    @registry.register("a")
    class First(nn.Module):
        pass

    with pytest.raises(ValueError, match="thing 'a' is already registered"):
        registry.register("a")(nn.Identity)
    assert registry.names() == ["a"] and "a" in registry and registry.get("a") is First


@pytest.mark.parametrize("name", ["legacy_v0_multiscale", "legacy_v0_simple"])
def test_folders_saved_by_rvoslib_0_1_still_load(name) -> None:
    model = RVOSModel.from_pretrained(DATA / name).eval()
    assert model.architecture == "fusion"
    expected = load_file(str(DATA / name / "expected.safetensors"))
    with torch.no_grad():
        logits = model(expected["frames"], expected["input_ids"], expected["attention_mask"])
    # 1e-6: the same weights, but float32 sums may be ordered differently (threads, CPU load)
    torch.testing.assert_close(logits, expected["logits"], rtol=1e-6, atol=1e-6)


def test_legacy_configs_with_removed_options_say_so() -> None:
    from rvoslib.models.legacy import convert_legacy_config

    with pytest.raises(ValueError, match=r"uses \['fusion_gating'\], removed in rvoslib 0.2"):
        convert_legacy_config({"fusion_gating": True})
    with pytest.raises(ValueError, match=r"config keys \['bogus'\] are neither rvoslib 0.1"):
        convert_legacy_config({"bogus": 1})
    assert not hasattr(rvoslib, "RVOSConfig")


def test_format_2_configs_are_upgraded_to_one_criterion_spec() -> None:
    from rvoslib.models.legacy import upgrade_config

    fusion = {"architecture": "tiny_fusion_like", "format_version": 2}
    assert upgrade_config(fusion) == {"architecture": "tiny_fusion_like"}
    old = {"architecture": "motion_fusion", "format_version": 2, "loss": {"bce_weight": 1.0}}
    assert upgrade_config(old) == {
        "architecture": "motion_fusion",
        "criterion": {"name": "mask", "bce_weight": 1.0},
    }
    s2s = upgrade_config({
        "architecture": "seq2seq", "initializer": {"name": "tinyvgg", "in_channels": 3},
        "decoder_channels": [8], "decoder_kernel_size": 3,
        "loss": {"bce_weight": 1.0, "dice_weight": 0.5},
    })  # fmt: skip
    assert s2s["decoder"] == {"name": "seq2seq", "channels": [8], "kernel_size": 3}
    assert s2s["criterion"] == {"name": "first_frame_mask", "bce_weight": 1.0, "dice_weight": 0.5}
    assert s2s["input_adapter"] == {"name": "conv_bn_relu", "kernel_size": 3}
    assert s2s["encoder_projection"] == {"name": "conv", "kernel_size": 1}
    assert "decoder_channels" not in s2s and "loss" not in s2s
    assert rvoslib.models.Seq2SeqConfig.from_dict(s2s).initial_memory["name"] == "conv_bn_relu"


def test_config_files_of_a_newer_version_are_refused(tmp_path) -> None:
    from rvoslib.models.base import read_config

    (tmp_path / "config.json").write_text(json.dumps({"architecture": "fusion",
                                                      "format_version": 99}))  # fmt: skip
    with pytest.raises(ValueError, match="has format_version 99; this rvoslib reads versions up"):
        read_config(tmp_path)


def test_the_core_does_not_import_the_legacy_converters() -> None:
    import subprocess
    import sys

    code = (
        "import sys, rvoslib, rvoslib.models.base, rvoslib.models.config; "
        "rvoslib.create_model('tiny').config.replace(temporal={'name': 'identity'}); "
        "print('rvoslib.models.legacy' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_the_model_returns_named_loss_terms_that_sum_to_the_loss() -> None:
    model = create_model("tiny")
    dataset = _data(2)
    from rvoslib.data import collator_for

    batch = collator_for(model.inputs)([dataset[0], dataset[1]])
    outputs = model.forward_batch(batch)
    terms = model.losses(outputs, batch)
    assert sorted(terms) == ["bce", "dice", "focal"]
    expected = RVOSLoss()(outputs["logits"], batch["masks"], batch["valid"])
    torch.testing.assert_close(sum(terms.values()), expected)


def test_the_trainer_logs_every_loss_term(tmp_path) -> None:
    trainer = Trainer(create_model("tiny"), _data(4), config=_config(tmp_path / "unused", 1))
    trainer.output_dir = None
    record = trainer.fit()[0]
    assert {"train_loss", "train_bce", "train_dice", "train_focal", "train_iou"} <= set(record)
    total = record["train_bce"] + record["train_dice"] + record["train_focal"]
    assert record["train_loss"] == pytest.approx(total, rel=1e-5)
