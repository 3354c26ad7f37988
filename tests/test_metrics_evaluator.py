"""RVOSEvaluator: streaming chunks, valid frames, protocols, merging, CSV, davis-mini values."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from _davis_mini import OFFICIAL_SEMI, load_osvos

from rvoslib.metrics import SUMMARY_KEYS, RVOSEvaluator, evaluate_sequence

load_davis_mini = load_osvos


def random_sequence(seed: int, frames: int = 6, size: int = 24) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = np.zeros((frames, size, size), dtype=bool)
    pred = np.zeros_like(gt)
    for t in range(frames):
        y, x = rng.integers(2, 10, size=2)
        gt[t, y : y + 10, x : x + 10] = True
        pred[t, y + rng.integers(-2, 3) : y + 9, x : x + rng.integers(6, 13)] = True
    return pred, gt


def test_chunks_equal_one_update_and_evaluate_sequence() -> None:
    pred, gt = random_sequence(0)
    whole, chunked = RVOSEvaluator(), RVOSEvaluator()
    whole.update("v", "0", pred, gt)
    for start in range(0, 6, 4):
        chunked.update("v", "0", torch.from_numpy(pred[start : start + 4]), gt[start : start + 4])
    assert whole.per_sequence() == chunked.per_sequence()
    expected = evaluate_sequence(pred, gt)
    summary = whole.summary()
    assert set(SUMMARY_KEYS) <= set(summary)
    for name in SUMMARY_KEYS:
        assert summary[name] == pytest.approx(expected[name], abs=1e-15)
    assert summary["num_sequences"] == 1 and summary["num_frames"] == 6


def test_semi_supervised_drops_first_and_last_frame() -> None:
    pred, gt = random_sequence(1)
    evaluator = RVOSEvaluator(protocol="semi-supervised")
    evaluator.update("v", "0", pred[:3], gt[:3])
    evaluator.update("v", "0", pred[3:], gt[3:])
    expected = evaluate_sequence(pred[1:-1], gt[1:-1])
    row = evaluator.per_sequence()[0]
    assert row["num_frames"] == 4
    assert row["J"] == pytest.approx(expected["J"], abs=1e-15)
    assert row["F"] == pytest.approx(expected["F"], abs=1e-15)


def test_valid_frames_and_frame_ids_order() -> None:
    pred, gt = random_sequence(2)
    valid = np.array([True, False, True, True, False, True])
    evaluator = RVOSEvaluator(protocol="semi-supervised")
    # chunks arrive out of order; frame ids restore the order
    evaluator.update("v", "e", pred[3:], gt[3:], valid=valid[3:], frame_ids=[3, 4, 5])
    evaluator.update(
        "v", "e", pred[:3], gt[:3], valid=torch.from_numpy(valid[:3]), frame_ids=[0, 1, 2]
    )
    kept = np.flatnonzero(valid)[1:-1]  # frames 2 and 3
    expected = evaluate_sequence(pred[kept], gt[kept])
    row = evaluator.per_sequence()[0]
    assert row["num_frames"] == 2
    assert row["J"] == pytest.approx(expected["J"], abs=1e-15)


def test_merge_parts_and_sequences() -> None:
    pred, gt = random_sequence(3)
    other_pred, other_gt = random_sequence(4)
    whole = RVOSEvaluator()
    whole.update("v", "0", pred, gt, frame_ids=range(6))
    whole.update("w", "1", other_pred, other_gt)
    rank0, rank1 = RVOSEvaluator(), RVOSEvaluator()
    rank0.update("v", "0", pred[:2], gt[:2], frame_ids=[0, 1])
    rank1.update("v", "0", pred[2:], gt[2:], frame_ids=[2, 3, 4, 5])
    rank1.update("w", "1", other_pred, other_gt)
    assert rank0.merge(rank1).per_sequence() == whole.per_sequence()
    assert rank0.summary() == pytest.approx(whole.summary(), abs=1e-15)
    assert len(rank0) == 2


def test_merge_errors() -> None:
    pred, gt = random_sequence(5)
    first, second = RVOSEvaluator(), RVOSEvaluator()
    first.update("v", "0", pred, gt)
    second.update("v", "0", pred, gt)
    with pytest.raises(ValueError, match="on both evaluators without frame_ids"):
        first.merge(second)
    with pytest.raises(ValueError, match="same protocol and bound_th"):
        first.merge(RVOSEvaluator(protocol="semi-supervised"))
    with pytest.raises(ValueError, match="frame ids twice"):
        first.update("x", "0", pred[:2], gt[:2], frame_ids=[0, 1])
        first.update("x", "0", pred[:2], gt[:2], frame_ids=[1, 2])
    with pytest.raises(ValueError, match="both with and without frame_ids"):
        first.update("x", "0", pred[:2], gt[:2])


def test_bad_input_messages() -> None:
    pred, gt = random_sequence(6)
    evaluator = RVOSEvaluator()
    with pytest.raises(
        ValueError,
        match=r"pred and gt must have the same shape, got pred \(6, 24, 24\) and gt \(6, 24, 23\)",
    ):
        evaluator.update("v", "0", pred, gt[..., :-1])
    with pytest.raises(ValueError, match=r"valid must be \(T,\) for pred \(6, 24, 24\), got \(5\)"):
        evaluator.update("v", "0", pred, gt, valid=np.ones(5, bool))
    with pytest.raises(ValueError, match=r"pred must be \(T, H, W\), got \(24, 24\)"):
        evaluator.update("v", "0", pred[0], gt[0])
    with pytest.raises(ValueError, match="protocol must be one of"):
        RVOSEvaluator(protocol="unsupervised")
    assert len(evaluator) == 0


def test_summary_means_over_sequences_and_short_sequences_warn() -> None:
    evaluator = RVOSEvaluator(protocol="semi-supervised")
    rows = []
    for seed in range(3):
        pred, gt = random_sequence(seed)
        evaluator.update(f"v{seed}", "0", pred, gt)
        rows.append(evaluate_sequence(pred, gt, protocol="semi-supervised"))
    pred, gt = random_sequence(9, frames=2)
    evaluator.update("short", "0", pred, gt)
    with pytest.warns(UserWarning, match="1 sequences have no frame to evaluate"):
        summary = evaluator.summary()
    assert summary["num_sequences"] == 3
    assert summary["J"] == pytest.approx(np.mean([r["J"] for r in rows]), abs=1e-15)
    assert summary["JF"] == pytest.approx((summary["J"] + summary["F"]) / 2, abs=1e-15)
    evaluator.reset()
    assert evaluator.summary()["num_sequences"] == 0 and np.isnan(evaluator.summary()["J"])


def test_to_csv(tmp_path) -> None:
    evaluator = RVOSEvaluator()
    for seed in range(2):
        evaluator.update(f"v{seed}", "0", *random_sequence(seed))
    path = evaluator.to_csv(tmp_path / "out" / "per_sequence.csv")
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["video_id"] for row in rows] == ["v0", "v1"]
    assert float(rows[0]["JF"]) == pytest.approx(evaluator.per_sequence()[0]["JF"], abs=1e-12)
    assert sorted(p.name for p in path.parent.iterdir()) == ["per_sequence.csv"]


def test_all_gather_without_and_with_a_process_group(tmp_path) -> None:
    evaluator = RVOSEvaluator()
    evaluator.update("v", "0", *random_sequence(0))
    before = evaluator.per_sequence()
    assert evaluator.all_gather() is evaluator and evaluator.per_sequence() == before
    distributed = torch.distributed
    if not distributed.is_available() or distributed.is_initialized():
        pytest.skip("torch.distributed unavailable or already initialised")
    distributed.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        assert evaluator.all_gather().per_sequence() == before
    finally:
        distributed.destroy_process_group()


def test_davis_mini_official_values() -> None:
    evaluator = RVOSEvaluator(protocol="semi-supervised")
    for name in sorted(OFFICIAL_SEMI):
        gt, pred = load_davis_mini(name)
        evaluator.update(name, "1", pred[:20], gt[:20], frame_ids=range(20))
        evaluator.update(name, "1", pred[20:], gt[20:], frame_ids=range(20, len(gt)))
    for row in evaluator.per_sequence():
        assert row["J"] == pytest.approx(OFFICIAL_SEMI[row["video_id"]][0], abs=1e-6)
        assert row["F"] == pytest.approx(OFFICIAL_SEMI[row["video_id"]][1], abs=1e-6)
    official_j = np.mean([j for j, _ in OFFICIAL_SEMI.values()])
    official_f = np.mean([f for _, f in OFFICIAL_SEMI.values()])
    summary = evaluator.summary()
    assert summary["JF"] == pytest.approx((official_j + official_f) / 2, abs=1e-6)
