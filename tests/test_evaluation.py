"""The shared evaluation loop (`rvoslib.evaluation.evaluate`)."""

from __future__ import annotations

import pytest
import torch

from rvoslib import create_model
from rvoslib.data import SyntheticRVOSDataset, collator_for
from rvoslib.evaluation import default_protocol, evaluate, evaluate_annotated_frames


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = create_model("tiny").eval()
    dataset = SyntheticRVOSDataset(2, 3, 32, seed=5)
    collate = collator_for(model.inputs)
    return model, dataset, collate


def test_scores_every_item_and_the_loss_is_optional(setup) -> None:
    model, dataset, collate = setup
    seen = []
    full = evaluate(model, dataset, collate_fn=collate, on_prediction=seen.append)
    scores_only = evaluate(model, dataset, collate_fn=collate, compute_loss=False)
    assert len(seen) == len(full.per_sequence) == len(dataset)
    assert full.loss is not None and full.loss > 0
    assert scores_only.loss is None and scores_only.summary == full.summary
    assert 0.0 <= full.summary["JF"] <= 1.0


def test_chunked_prediction_reports_no_loss_and_threshold_is_checked(setup) -> None:
    model, dataset, collate = setup
    assert evaluate(model, dataset, collate_fn=collate, clip_len=2).loss is None
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\), got 1.5"):
        evaluate(model, dataset, collate_fn=collate, threshold=1.5)


def test_default_protocol_follows_the_model_inputs() -> None:
    assert default_protocol(create_model("tiny").inputs) == "all"
    assert default_protocol(create_model("s2s-tiny").inputs) == "semi-supervised"


class _Annotated(torch.utils.data.Dataset):
    """Two items with one annotated frame (index 1) of a 2-frame clip, ground truth 8x8."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> dict:
        frames = torch.zeros(2, 3, 16, 16)
        return {"frames": frames, "annotated_index": 1, "image_id": f"v{index}",
                "orig_size": (8, 8), "unpadded_size": (16, 16)}  # fmt: skip

    def ground_truth(self, index: int) -> torch.Tensor:
        mask = torch.zeros(8, 8, dtype=torch.bool)
        mask[:4] = True
        return mask


class _TwoCandidates(torch.nn.Module):
    """A model whose candidates are two low-resolution masks: the top half (score 0.9) and
    the bottom half (score 0.2); evaluation must only use ``candidates``."""

    def forward_batch(self, batch: dict) -> dict:
        masks = torch.full((1, 2, 2, 4, 4), -10.0)
        masks[:, :, 0, :2] = 10.0
        masks[:, :, 1, 2:] = 10.0
        return {"masks_of_a_new_kind": masks}

    def candidates(self, outputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        scores = torch.tensor([0.9, 0.2]).expand(1, 2, 2)
        return outputs["masks_of_a_new_kind"], scores


def test_annotated_frames_are_scored_with_the_model_candidates() -> None:
    protocol = evaluate_annotated_frames(
        _TwoCandidates(), _Annotated(), collate_fn=lambda items: {
            "frames": torch.stack([i["frames"] for i in items])}
    )  # fmt: skip
    summary = protocol.summary()
    assert protocol.sample_ids == ["v0", "v1"]
    assert summary["overall_iou"] == pytest.approx(1.0)  # the top-scored candidate is right
