"""A2D/JHMDB protocol: both mAP variants, precision@K and IoUs on hand-made predictions."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from rvoslib.metrics.a2d_protocol import A2DProtocol, format_a2d_report

EPS = 1e-6


def _square(top: int, left: int, size: int = 4, shape: tuple[int, int] = (10, 10)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[top : top + size, left : left + size] = True
    return mask


def test_hand_computed_two_samples() -> None:
    """Sample 1: a perfect query scored 0.9 and a miss scored 0.8; sample 2: a miss scored
    0.95 and a perfect query scored 0.3.

    all queries, ranked 0.95 (FP), 0.9 (TP), 0.8 (FP), 0.3 (TP): precision 0, 1/2, 1/3, 1/2 at
    recall 0, 1/2, 1/2, 1; its envelope is 1/2 at every recall in [0, 1] -> AP 0.5 at every
    IoU threshold. Top query only: 0.95 (FP), 0.9 (TP): precision 1/2 up to recall 1/2 and 0
    beyond -> 51 of the 101 recall points at 1/2 -> AP 25.5 / 101.
    """
    gt1, gt2 = _square(0, 0), _square(5, 5)
    protocol = A2DProtocol()
    protocol.update(np.stack([gt1, _square(6, 6)]), np.array([0.9, 0.8]), gt1, "s1")
    protocol.update(
        torch.from_numpy(np.stack([_square(0, 0), gt2])), torch.tensor([0.95, 0.3]), gt2
    )
    summary = protocol.summary()
    assert summary["mAP_all_queries"] == pytest.approx(0.5, abs=1e-12)
    assert summary["AP50_all_queries"] == pytest.approx(0.5, abs=1e-12)
    assert summary["mAP_top_query"] == pytest.approx(25.5 / 101, abs=1e-12)
    assert summary["AP75_top_query"] == pytest.approx(25.5 / 101, abs=1e-12)
    # top masks: sample 1 perfect (I = U = 16), sample 2 disjoint (I = 0, U = 32)
    assert summary["P@0.5"] == summary["P@0.9"] == 0.5
    assert summary["overall_iou"] == pytest.approx(16 / 48, abs=1e-15)
    assert summary["mean_iou"] == pytest.approx((1 + EPS / (32 + EPS)) / 2, abs=1e-15)
    assert summary["num_samples"] == 2 and protocol.sample_ids == ["s1", None]


def test_partial_overlaps_per_threshold() -> None:
    """One sample, one query with IoU 12/20 = 0.6 (I = 12, U = 16 + 16 - 12): it matches at
    IoU thresholds 0.5, 0.55 and 0.6 only -> AP 1 at 3 of the 10 thresholds -> mAP 0.3."""
    gt = _square(0, 0)
    pred = np.zeros((10, 10), bool)
    pred[1:5, 0:4] = True  # I = 12, U = 20
    protocol = A2DProtocol()
    protocol.update(pred[None], np.array([0.7]), gt)
    summary = protocol.summary()
    assert summary["mAP_all_queries"] == pytest.approx(0.3, abs=1e-12)
    assert summary["mAP_top_query"] == pytest.approx(0.3, abs=1e-12)
    assert summary["AP50_all_queries"] == pytest.approx(1.0, abs=1e-12)
    assert summary["AP75_all_queries"] == 0.0
    iou = (12 + EPS) / (20 + EPS)
    assert summary["mean_iou"] == pytest.approx(iou, abs=1e-15)
    assert [summary[f"P@{k}"] for k in ("0.5", "0.6", "0.7")] == [1.0, 1.0, 0.0]  # 0.6 + eps > 0.6


def test_ties_take_the_last_query() -> None:
    gt = _square(0, 0)
    protocol = A2DProtocol()
    protocol.update(np.stack([gt, _square(6, 6)]), np.array([0.5, 0.5]), gt)
    summary = protocol.summary()
    assert summary["P@0.5"] == 0.0  # MTTR: sorted(..., key=score)[-1] is the last of equals
    assert summary["mAP_top_query"] == 0.0
    # COCO ranks equal scores in submission order: the perfect first query matches first
    assert summary["mAP_all_queries"] == pytest.approx(1.0, abs=1e-12)


def test_probabilities_are_thresholded() -> None:
    gt = _square(2, 2)
    probabilities = np.where(np.stack([gt, ~gt]), 0.8, 0.3).astype(np.float32)
    scores = np.array([0.6, 0.4])
    by_probability, by_mask = A2DProtocol(), A2DProtocol()
    by_probability.update(probabilities, scores, gt)
    by_mask.update(np.stack([gt, ~gt]), scores, gt.astype(np.uint8))
    assert by_probability.summary() == by_mask.summary()
    strict = A2DProtocol(mask_threshold=0.9)
    strict.update(probabilities, scores, gt)
    assert strict.summary()["P@0.5"] == 0.0


def _pycocotools_map(samples: list, top_only: bool) -> float:
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    for index, (preds, scores, gt) in enumerate(samples, start=1):
        images.append({"id": index, "height": gt.shape[0], "width": gt.shape[1]})
        rle = mask_utils.encode(np.asfortranarray(gt.astype(np.uint8)))
        annotations.append(
            {"id": index, "image_id": index, "category_id": 1, "iscrowd": 0,
             "segmentation": rle, "area": float(mask_utils.area(rle)),
             "bbox": mask_utils.toBbox(rle).tolist()}
        )  # fmt: skip
        chosen = (
            [max(range(len(scores)), key=lambda q: (scores[q], q))]
            if top_only
            else range(len(scores))
        )
        for q in chosen:
            pred_rle = mask_utils.encode(np.asfortranarray(preds[q].astype(np.uint8)))
            results.append(
                {"image_id": index, "category_id": 1, "segmentation": pred_rle,
                 "score": float(scores[q])}
            )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": annotations,
                           "categories": [{"id": 1, "name": "referred"}]}  # fmt: skip
        coco_gt.createIndex()
        evaluation = COCOeval(coco_gt, coco_gt.loadRes(results), iouType="segm")
        evaluation.params.useCats = 0  # as MTTR
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0])


def test_both_variants_match_pycocotools_and_loops() -> None:
    pytest.importorskip("pycocotools")
    rng = np.random.default_rng(0)
    samples = []
    for index in range(12):
        height, width = (12, 16) if index % 2 else (10, 9)  # samples of different sizes
        gt = np.zeros((height, width), bool)
        y, x = rng.integers(0, 5, size=2)
        gt[y : y + 5, x : x + 5] = True
        queries = int(rng.integers(1, 5))  # different N per sample
        preds = np.zeros((queries, height, width), bool)
        for q in range(queries):
            dy, dx, h, w = rng.integers(-2, 3), rng.integers(-2, 3), *rng.integers(2, 7, size=2)
            preds[q, max(0, y + dy) : max(0, y + dy) + h, max(0, x + dx) : max(0, x + dx) + w] = (
                True
            )
        samples.append((preds, rng.random(queries), gt))
    protocol = A2DProtocol()
    for preds, scores, gt in samples:
        protocol.update(preds, scores, gt)
    summary = protocol.summary()
    assert summary["mAP_all_queries"] == pytest.approx(_pycocotools_map(samples, False), abs=1e-12)
    assert summary["mAP_top_query"] == pytest.approx(_pycocotools_map(samples, True), abs=1e-12)
    inter, union, ious = 0, 0, []
    for preds, scores, gt in samples:  # the top mask by explicit loops over pixels
        top = preds[int(np.argmax(scores))]
        i = sum(top[y, x] and gt[y, x] for y in range(gt.shape[0]) for x in range(gt.shape[1]))
        u = sum(top[y, x] or gt[y, x] for y in range(gt.shape[0]) for x in range(gt.shape[1]))
        inter, union = inter + i, union + u
        ious.append((i + EPS) / (u + EPS))
    assert summary["overall_iou"] == pytest.approx(inter / union, abs=1e-12)
    assert summary["mean_iou"] == pytest.approx(np.mean(ious), abs=1e-12)
    for k in (0.5, 0.6, 0.7, 0.8, 0.9):
        assert summary[f"P@{k:g}"] == pytest.approx(np.mean([v > k for v in ious]), abs=1e-15)


def test_merge_reset_and_report() -> None:
    gt = _square(0, 0)
    first, second, whole = A2DProtocol(), A2DProtocol(), A2DProtocol()
    cases = [
        (np.stack([gt, ~gt]), np.array([0.9, 0.1])),
        (np.stack([~gt, gt]), np.array([0.9, 0.1])),
    ]
    first.update(*cases[0], gt, "a")
    second.update(*cases[1], gt, "b")
    for preds, scores in cases:
        whole.update(preds, scores, gt)
    assert first.merge(second).summary() == whole.summary()
    assert first.sample_ids == ["a", "b"] and len(first) == 2
    assert first.all_gather() is first  # no process group: no-op
    report = first.report()
    assert "mAP (all queries)" in report and "mAP (top query)" in report
    assert "each with its score (MTTR / ReferFormer code)" in report
    assert "only the top-scored query mask per sample" in report
    assert "P@0.5 0.5000" in report and "2 samples" in report
    first.reset()
    assert len(first) == 0 and np.isnan(first.summary()["mAP_all_queries"])
    assert "mAP (all queries)  nan" in first.report()
    with pytest.raises(KeyError, match=r"summary lacks \['mAP_all_queries'"):
        format_a2d_report({"mAP": 0.5})


def test_bad_input_is_named() -> None:
    gt = _square(0, 0)
    protocol = A2DProtocol()
    with pytest.raises(ValueError, match=r"got pred_masks \(2, 10, 9\) and gt_mask \(10, 10\)"):
        protocol.update(np.zeros((2, 10, 9), bool), np.ones(2), gt)
    with pytest.raises(ValueError, match=r"got pred_masks \(10, 10\) and gt_mask \(10, 10\)"):
        protocol.update(gt, np.ones(1), gt)
    with pytest.raises(ValueError, match=r"N >= 1 .* got pred_masks \(0, 10, 10\)"):
        protocol.update(np.zeros((0, 10, 10), bool), np.ones(0), gt)
    with pytest.raises(
        ValueError, match=r"scores must be \(N,\) = \(2,\) like pred_masks, got \(1, 2\)"
    ):
        protocol.update(np.stack([gt, gt]), np.ones((1, 2)), gt)
    with pytest.raises(ValueError, match=r"scores must be finite, got \[nan, 1.0\]"):
        protocol.update(np.stack([gt, gt]), np.array([np.nan, 1.0]), gt)
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\] \(apply a sigmoid"):
        protocol.update(torch.randn(2, 10, 10) * 5, np.ones(2), gt)
    with pytest.raises(
        TypeError, match="pred_masks must be a numpy array or a torch.Tensor, got list"
    ):
        protocol.update([gt], np.ones(1), gt)
    with pytest.raises(ValueError, match=r"mask_threshold must be in \[0, 1\), got 1.5"):
        A2DProtocol(mask_threshold=1.5)
    with pytest.raises(ValueError, match="max_detections must be a positive int, got 0"):
        A2DProtocol(max_detections=0)
    assert len(protocol) == 0  # nothing was recorded by the failed updates
