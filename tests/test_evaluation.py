"""The shared evaluation loop (`rvoslib.evaluation.evaluate`)."""

from __future__ import annotations

import pytest
import torch

from rvoslib import create_model
from rvoslib.data import RVOSCollator, SyntheticRVOSDataset
from rvoslib.evaluation import evaluate


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = create_model("tiny").eval()
    dataset = SyntheticRVOSDataset(2, 3, 32, seed=5)
    collate = RVOSCollator(model.text_encoder, model.text_encoder.max_length)
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
