"""VideoFusionModel: the temporal module runs on the visual features before the fusion."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rvoslib import create_model
from rvoslib.models import VideoFusionModel
from rvoslib.models.registry import TEMPORAL_MODULES


class _Recorder(nn.Module):
    """Wraps a part and keeps its last input and output."""

    def __init__(self, part: nn.Module) -> None:
        super().__init__()
        self.part, self.seen = part, {}

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["part"], name)

    def forward(self, features, *args, **kwargs):
        out = self.part(features, *args, **kwargs)
        self.seen = {"input": features, "output": out}
        return out


def _batch(model, frames: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``frames (2, T, 3, 64, 64)``, ``text_ids (2, L)``, ``text_mask (2, L)``."""
    torch.manual_seed(0)
    tokens = model.tokenize(["the red square moving left", "the still one"])
    return torch.rand(2, frames, 3, 64, 64), tokens["input_ids"], tokens["attention_mask"]


def test_temporal_sees_the_backbone_and_the_fusion_sees_the_temporal_output() -> None:
    model = create_model("tiny-video").eval()
    model.temporal, model.fusion = _Recorder(model.temporal), _Recorder(model.fusion)
    frames, *text = _batch(model)
    with torch.no_grad():
        logits = model(frames, *text)
        coarsest = model.backbone(frames)[-1]
    assert logits.shape == (2, 3, 1, 64, 64)
    assert torch.equal(model.temporal.seen["input"], coarsest)
    assert model.temporal.seen["input"].shape[2] == model.backbone.out_channels[-1]
    assert torch.equal(model.fusion.seen["input"], model.temporal.seen["output"])


def test_a_later_frame_changes_an_earlier_frames_mask_only_through_the_temporal_module() -> None:
    frames, *text = _batch(create_model("tiny"))
    changed = frames.clone()
    changed[:, 2] = torch.rand_like(changed[:, 2])
    for temporal, expect_change in (({"name": "conv3d", "expansion": 1}, True),
                                    ({"name": "identity"}, False)):  # fmt: skip
        torch.manual_seed(0)
        model = create_model("tiny-video", temporal=temporal).eval()
        with torch.no_grad():
            first = model(frames, *text)[:, 0]
            again = model(changed, *text)[:, 0]
        assert (not torch.equal(first, again)) == expect_change, temporal


def test_channel_mismatch_names_both_parts() -> None:
    model = create_model("tiny-video")
    wrong = TEMPORAL_MODULES.build({"name": "conv3d"}, channels=64)
    with pytest.raises(ValueError, match="backbone gives 128 channels but temporal expects 64"):
        VideoFusionModel(
            backbone=model.backbone,
            text_encoder=model.text_encoder,
            fusion=model.fusion,
            temporal=wrong,
            head=model.head,
        )


def test_save_and_restore_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    model = create_model("tiny-video").eval()
    model.save_pretrained(tmp_path / "m")
    restored = type(model).from_pretrained(tmp_path / "m").eval()
    frames, *text = _batch(model, 2)
    with torch.no_grad():
        assert torch.equal(model(frames, *text), restored(frames, *text))
    assert restored.config.architecture == "video_fusion"
