"""A2D-Sentences metrics: IoU, precision@K, overall/mean IoU, and mAP against pycocotools."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from rvoslib.metrics import (
    A2DEvaluator,
    a2d_iou,
    coco_average_precision,
    intersection_union,
    precision_at_k,
)


def test_iou_hand_cases() -> None:
    pred = np.zeros((2, 4, 4), dtype=bool)
    gt = np.zeros_like(pred)
    pred[0, 0, :2] = True  # I = 2, U = 4
    gt[0, 0, :4] = True
    inter, union = intersection_union(pred, gt)
    assert inter.tolist() == [2, 0] and union.tolist() == [4, 0]
    ious = a2d_iou(pred, gt)
    assert ious[0] == (2 + 1e-6) / (4 + 1e-6)
    assert ious[1] == 1.0  # both empty
    with pytest.raises(ValueError, match=r"got pred \(2, 4, 4\) and gt \(2, 4, 5\)"):
        a2d_iou(pred, np.zeros((2, 4, 5)))


def test_precision_at_k_is_strict() -> None:
    result = precision_at_k([0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    assert result == {
        "P@0.5": 5 / 6,
        "P@0.6": 4 / 6,
        "P@0.7": 3 / 6,
        "P@0.8": 2 / 6,
        "P@0.9": 1 / 6,
    }


def test_overall_and_mean_iou_and_top_mask() -> None:
    gt = torch.zeros(2, 10, 10, dtype=torch.bool)
    gt[0, :, :5] = True  # 50 pixels
    gt[1, 0, :2] = True  # 2 pixels
    good = gt.clone()
    bad = torch.zeros_like(gt)
    bad[0, :, :4] = True  # I = 40, U = 50
    bad[1, 0, :1] = True  # I = 1, U = 2
    preds = torch.stack([good, bad], dim=1)  # (N=2, Q=2, H, W)
    evaluator = A2DEvaluator()
    # sample 0: scores tie -> the last one (bad), as MTTR's sorted(...)[-1]
    evaluator.update(preds, gt, scores=torch.tensor([[0.5, 0.5], [0.1, 0.9]]))
    summary = evaluator.summary()
    assert summary["overall_iou"] == pytest.approx(41 / 52, abs=1e-15)
    ious = [(40 + 1e-6) / (50 + 1e-6), (1 + 1e-6) / (2 + 1e-6)]
    assert summary["mean_iou"] == pytest.approx(np.mean(ious), abs=1e-15)
    # (40 + 1e-6) / (50 + 1e-6) is just above 0.8: counted at K = 0.8 (float64 keeps the 1e-6)
    assert summary["P@0.5"] == 1.0 and summary["P@0.8"] == 0.5 and summary["P@0.9"] == 0.0
    assert summary["num_samples"] == 2


def test_evaluator_errors_and_merge() -> None:
    gt = np.zeros((3, 8, 8), dtype=bool)
    gt[:, 2:6, 2:6] = True
    evaluator = A2DEvaluator()
    with pytest.raises(ValueError, match="scores"):
        evaluator.update(np.stack([gt, gt], axis=1), gt)
    with pytest.raises(ValueError, match=r"pred_masks \(3, 1, 8, 8\) and gt_masks \(2, 8, 8\)"):
        evaluator.update(gt[:, None], gt[:2])
    with pytest.raises(ValueError, match=r"scores must be \(N, Q\) = \(3, 2\), got \(3\)"):
        evaluator.update(np.stack([gt, gt], axis=1), gt, scores=np.ones(3))
    evaluator.update(gt, gt)
    other = A2DEvaluator()
    other.update(gt[:1], ~gt[:1])
    merged = evaluator.merge(other).summary()
    assert merged["num_samples"] == 4 and merged["P@0.9"] == 0.75
    assert evaluator.all_gather() is evaluator  # no process group: no-op


def _random_case(seed: int, num_samples: int = 25, queries: int = 4, size: int = 12):
    rng = np.random.default_rng(seed)
    gt = np.zeros((num_samples, size, size), dtype=np.uint8)
    preds = np.zeros((num_samples, queries, size, size), dtype=np.uint8)
    for i in range(num_samples):
        y, x = rng.integers(0, size // 2, size=2)
        gt[i, y : y + size // 2, x : x + size // 2] = 1
        for q in range(queries):
            dy, dx = rng.integers(-3, 4, size=2)
            h, w = rng.integers(1, size // 2 + 2, size=2)
            top, left = max(0, y + dy), max(0, x + dx)
            preds[i, q, top : top + h, left : left + w] = 1
    scores = rng.random((num_samples, queries))
    return preds, gt, scores


def test_map_matches_pycocotools() -> None:
    pytest.importorskip("pycocotools")
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    for seed in range(3):
        preds, gt, scores = _random_case(seed)
        images, annotations, results = [], [], []
        for i in range(len(gt)):
            images.append({"id": i + 1, "height": gt.shape[1], "width": gt.shape[2]})
            rle = mask_utils.encode(np.asfortranarray(gt[i]))
            annotations.append(
                {
                    "id": i + 1,
                    "image_id": i + 1,
                    "category_id": 1,
                    "iscrowd": 0,
                    "segmentation": rle,
                    "area": float(mask_utils.area(rle)),
                    "bbox": mask_utils.toBbox(rle).tolist(),
                }
            )
            for q in range(preds.shape[1]):
                pred_rle = mask_utils.encode(np.asfortranarray(preds[i, q]))
                results.append(
                    {
                        "image_id": i + 1,
                        "category_id": 1,
                        "segmentation": pred_rle,
                        "score": float(scores[i, q]),
                    }
                )
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = COCO()
            coco_gt.dataset = {
                "images": images,
                "annotations": annotations,
                "categories": [{"id": 1, "name": "referred"}],
            }
            coco_gt.createIndex()
            evaluation = COCOeval(coco_gt, coco_gt.loadRes(results), iouType="segm")
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        evaluator = A2DEvaluator()
        evaluator.update(preds[:10], gt[:10], scores=scores[:10])
        evaluator.update(
            torch.from_numpy(preds[10:]), gt[10:], scores=torch.from_numpy(scores[10:])
        )
        summary = evaluator.summary()
        assert summary["mAP"] == pytest.approx(evaluation.stats[0], abs=1e-12)
        assert summary["AP50"] == pytest.approx(evaluation.stats[1], abs=1e-12)
        assert summary["AP75"] == pytest.approx(evaluation.stats[2], abs=1e-12)


def test_coco_ap_edge_cases() -> None:
    assert np.isnan(coco_average_precision([], [])["mAP"])
    perfect = coco_average_precision([np.array([0.9])], [np.array([1.0])])
    assert perfect["mAP"] == pytest.approx(1.0, abs=1e-12)
    missed = coco_average_precision([np.array([0.9, 0.8])], [np.array([0.0, 0.0])])
    assert missed["mAP"] == 0.0
    with pytest.raises(ValueError, match="one entry per sample, got 1 and 2"):
        coco_average_precision([np.ones(1)], [np.ones(1), np.ones(1)])
