"""The set criterion with the originals' conventions (``conventions="mttr"`` / ``"referformer"``)
against the original MTTR and ReferFormer matchers and criteria (committed fixtures of
``tools/originals/make_criterion_fixtures.py``), and each convention against an explicit loop."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from rvoslib.losses import (
    CONVENTIONS,
    HungarianMatcher,
    QuerySetCriterion,
    SetConventions,
    SetCriterion,
    masks_to_boxes,
    query_targets,
    resolve_conventions,
)
from rvoslib.losses._set_inputs import subsample_targets

FIXTURES = Path(__file__).parent / "data" / "originals" / "criteria"
MTTR_WEIGHTS = {"class": 2.0, "dice": 5.0, "mask_focal": 2.0}
MTTR_MATCHER = {"class_weight": 2.0, "dice_weight": 5.0}
RF_WEIGHTS = {"class": 2.0, "box_l1": 5.0, "giou": 2.0, "mask_focal": 2.0, "dice": 5.0}
RF_MATCHER = {"class_weight": 2.0, "box_l1_weight": 5.0, "giou_weight": 2.0,
              "mask_focal_weight": 2.0, "dice_weight": 5.0}  # fmt: skip
#: rvoslib term -> the original's loss name
NAMES = {
    "mttr": {"class": "loss_is_referred", "dice": "loss_dice", "mask_focal": "loss_sigmoid_focal"},
    "referformer": {"class": "loss_ce", "box_l1": "loss_bbox", "giou": "loss_giou",
                    "mask_focal": "loss_mask", "dice": "loss_dice"},
}  # fmt: skip


def _load(case: str) -> dict:
    return torch.load(FIXTURES / f"{case}.pt", weights_only=True)


def _layers(record: dict) -> list[dict]:
    """The original outputs of every decoder layer, first to last."""
    outputs = record["outputs"]
    return [*outputs["aux_outputs"], {k: v for k, v in outputs.items() if k != "aux_outputs"}]


def _mttr_inputs(record: dict) -> tuple[dict, dict]:
    """MTTR's ``(T, B, ...)`` outputs and per-frame targets as rvoslib's outputs and batch."""
    layers = _layers(record)
    outputs = {
        "is_referred": torch.stack([o["pred_is_referred"].transpose(0, 1) for o in layers]),
        "masks": torch.stack([o["pred_masks"].transpose(0, 1) for o in layers]),
    }
    steps = record["targets"]  # [T][B] dicts
    instances = [torch.stack([step[b]["masks"] for step in steps], 1) for b in range(len(steps[0]))]
    referred_idx = [int(steps[0][b]["referred_instance_idx"]) for b in range(len(instances))]
    batch = {
        "masks": torch.stack([inst[i].float() for inst, i in zip(instances, referred_idx)]),
        "instance_masks": instances,
        "referred": [torch.arange(len(inst)) == i for inst, i in zip(instances, referred_idx)],
        "valid": torch.ones(len(instances), len(steps), dtype=torch.bool),
    }
    if "is_ref_inst_visible" in steps[0][0]:
        batch["visible"] = torch.stack(
            [torch.stack([step[b]["is_ref_inst_visible"] for step in steps]) for b in range(2)]
        )
    return outputs, batch


def _referformer_inputs(record: dict) -> tuple[dict, dict]:
    """ReferFormer's ``(B, T, ...)`` outputs and per-clip targets as rvoslib's."""
    layers = _layers(record)
    outputs = {
        "is_referred": torch.stack([o["pred_logits"] for o in layers]),
        "boxes": torch.stack([o["pred_boxes"] for o in layers]),
        "masks": torch.stack([o["pred_masks"] for o in layers]),
    }
    masks = torch.stack([t["masks"] for t in record["targets"]])
    return outputs, {"masks": masks, "valid": torch.ones(masks.shape[:2], dtype=torch.bool)}


CASES = [
    ("mttr", "mttr_labels"),
    ("mttr", "mttr_no_labels"),
    ("referformer", "referformer_clips"),
    ("referformer", "referformer_padded"),
    ("referformer", "referformer_one_frame"),
]


def _criterion(system: str, conventions: str) -> QuerySetCriterion:
    if system == "mttr":
        return QuerySetCriterion(MTTR_WEIGHTS, MTTR_MATCHER, 0.1, "softmax", True,
                                 conventions=conventions)  # fmt: skip
    return QuerySetCriterion(RF_WEIGHTS, RF_MATCHER, 0.1, "focal", True, conventions=conventions)


@pytest.mark.parametrize(("system", "case"), CASES)
def test_matches_and_terms_equal_the_original(system: str, case: str) -> None:
    record = _load(case)
    outputs, batch = (_mttr_inputs if system == "mttr" else _referformer_inputs)(record)
    criterion = _criterion(system, system)
    targets = query_targets(batch, criterion.matcher.conventions)
    assignment = criterion.set_criterion.match(outputs, targets)  # (Ly, B, M)
    for layer, per_clip in enumerate(record["indices"]):
        for clip, (queries, target_ids) in enumerate(per_clip):
            assert assignment[layer, clip, target_ids].tolist() == queries.tolist()
            assert int((assignment[layer, clip] >= 0).sum()) == len(target_ids)
    layers = len(record["indices"])
    total = 0.0
    for layer in range(layers):
        one = {key: value[layer : layer + 1] for key, value in outputs.items()}
        terms = criterion.set_criterion.terms(one, targets, assignment[layer : layer + 1])
        suffix = "" if layer == layers - 1 else f"_{layer}"
        assert sorted(terms) == sorted(NAMES[system])
        for term, value in terms.items():
            name = NAMES[system][term] + suffix
            expected = record["losses"][name] * record["weight_dict"][name]
            assert float(value) == pytest.approx(float(expected), abs=1e-5), name
            total += float(expected)
    summed = criterion(outputs, batch)
    assert float(sum(summed.values())) == pytest.approx(total, abs=1e-5 * layers * len(terms))


def test_referformer_boxes_from_masks_equal_the_original() -> None:
    record = _load("referformer_clips")
    for target in record["targets"]:
        boxes = masks_to_boxes(target["masks"], extent="indices")
        torch.testing.assert_close(boxes, target["boxes"], atol=1e-6, rtol=0)


def test_rvoslib_conventions_differ_from_mttr_labels() -> None:
    """The fixture exercises the labels: mask-based visibility gives another class term."""
    outputs, batch = _mttr_inputs(_load("mttr_labels"))
    ours = _criterion("mttr", "rvoslib")(outputs, batch)
    theirs = _criterion("mttr", "mttr")(outputs, batch)
    assert abs(float(ours["class"]) - float(theirs["class"])) > 1e-3


# --- each convention against an explicit computation ------------------------------------------


def _tiny(frames: int = 3, size: int = 16, pred: int = 4, seed: int = 0) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    outputs = {
        "is_referred": 2 * torch.randn(1, 2, frames, 4, 1, generator=g),
        "boxes": torch.rand(1, 2, frames, 4, 4, generator=g) * 0.6 + 0.2,
        "masks": 2 * torch.randn(1, 2, frames, 4, pred, pred, generator=g),
    }
    masks = torch.rand(2, 2, frames, size, size, generator=g) > 0.6
    masks[0, 0, 1] = False  # the referred object of clip 0 is absent from frame 1
    targets = {
        "masks": masks.float(),
        "target_valid": torch.tensor([[True, True], [True, False]]),
        "referred": torch.tensor([[True, False], [True, False]]),
        "frame_valid": torch.tensor([[True] * frames, [True] * (frames - 1) + [False]]),
    }
    return outputs, targets


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _focal(x: float, y: float, eps: float | None = None) -> float:
    p = _sig(x)
    if eps is None:
        log_p, log_q = math.log(p), math.log(1 - p)
    else:
        log_p, log_q = math.log(p + eps), math.log(1 - p + eps)
    return -(0.25 * (1 - p) ** 2 * log_p if y else 0.75 * p**2 * log_q)


def _grid(mask: torch.Tensor, pred: int) -> list[list[float]]:
    """ReferFormer's subsampled target, by explicit indices (padding reads as 0)."""
    rows, cols = mask.shape
    return [[float(mask[4 * i + 2, 4 * j + 2]) if 4 * i + 2 < rows and 4 * j + 2 < cols else 0.0
             for j in range(pred)] for i in range(pred)]  # fmt: skip


def test_subsample_targets_explicit() -> None:
    mask = torch.rand(2, 14, 11) > 0.5
    out = subsample_targets(mask.float(), (4, 3), 4)
    assert out.shape == (2, 4, 3)
    for n in range(2):
        assert out[n].tolist() == [row[:3] for row in _grid(mask[n], 4)]


def test_subsample_targets_refuses_larger_targets() -> None:
    with pytest.raises(ValueError, match=r"target masks \(17, 16\) exceed mask_stride=4"):
        subsample_targets(torch.zeros(17, 16), (4, 4), 4)


def test_referformer_conventions_explicit() -> None:
    """Clip Dice and focal on subsampled targets, visible-frame normaliser, boxes over every
    valid frame (zero box where absent), class focal over queries x frames: by loops."""
    outputs, targets = _tiny()
    matcher = HungarianMatcher(2.0, 5.0, 2.0, 5.0, 2.0, class_loss="focal",
                               conventions="referformer")  # fmt: skip
    criterion = SetCriterion(matcher, RF_WEIGHTS, class_loss="focal")
    assignment = torch.tensor([[[2, 0], [1, -1]]])
    terms = criterion.terms(outputs, targets, assignment)
    boxes = masks_to_boxes(targets["masks"], extent="indices")
    sums = dict.fromkeys(RF_WEIGHTS, 0.0)
    num_visible = 0
    for b in range(2):
        valid = [t for t in range(3) if targets["frame_valid"][b, t]]
        for m in range(2):
            if not targets["target_valid"][b, m]:
                continue
            q = int(assignment[0, b, m])
            inter = total = focal = 0.0
            for t in valid:
                gt = _grid(targets["masks"][b, m, t], 4)
                logits = outputs["masks"][0, b, t, q].tolist()
                for i in range(4):
                    for j in range(4):
                        p = _sig(logits[i][j])
                        inter += p * gt[i][j]
                        total += p + gt[i][j]
                        focal += _focal(logits[i][j], gt[i][j])
                visible = bool(targets["masks"][b, m, t].any())
                num_visible += visible
                pred_box, gt_box = outputs["boxes"][0, b, t, q], boxes[b, m, t]
                sums["box_l1"] += float((pred_box - gt_box).abs().sum())
                sums["giou"] += 1 - _giou(pred_box, gt_box)
            sums["dice"] += 1 - (2 * inter + 1) / (total + 1)
            sums["mask_focal"] += focal / (16 * len(valid))
        for t in valid:
            referred_q = int(assignment[0, b, 0])
            visible = bool(targets["masks"][b, 0, t].any())
            for n in range(4):
                x = float(outputs["is_referred"][0, b, t, n, 0])
                sums["class"] += _focal(x, n == referred_q and visible)
    for key, weight in RF_WEIGHTS.items():
        assert float(terms[key]) == pytest.approx(weight * sums[key] / num_visible, abs=1e-5), key


def _giou(a: torch.Tensor, b: torch.Tensor, s: float = 1e-6) -> float:
    ax0, ay0, ax1, ay1 = (float(v) for v in (a[0] - a[2] / 2, a[1] - a[3] / 2,
                                             a[0] + a[2] / 2, a[1] + a[3] / 2))  # fmt: skip
    bx0, by0, bx1, by1 = (float(v) for v in (b[0] - b[2] / 2, b[1] - b[3] / 2,
                                             b[0] + b[2] / 2, b[1] + b[3] / 2))  # fmt: skip
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    hull = (max(ax1, bx1) - min(ax0, bx0)) * (max(ay1, by1) - min(ay0, by0))
    return (inter + s) / (union + s) - (hull - union + s) / (hull + s)


def test_referformer_matcher_cost_explicit() -> None:
    """Class cost over visible frames with -log(p + 1e-8), clip Dice, subsampled focal mean,
    boxes over every valid frame."""
    outputs, targets = _tiny(seed=3)
    matcher = HungarianMatcher(2.0, 5.0, 2.0, 5.0, 2.0, class_loss="focal",
                               conventions="referformer")  # fmt: skip
    cost = matcher.cost(outputs, targets)[0]  # (B, N, M)
    boxes = masks_to_boxes(targets["masks"], extent="indices")
    for b, n, m in [(0, 0, 0), (0, 3, 1), (1, 2, 0)]:
        valid = [t for t in range(3) if targets["frame_valid"][b, t]]
        visible = [t for t in valid if targets["masks"][b, m, t].any()]
        label = bool(targets["referred"][b, m])
        cls = [
            _focal(float(outputs["is_referred"][0, b, t, n, 0]), 1, 1e-8)
            - _focal(float(outputs["is_referred"][0, b, t, n, 0]), 0, 1e-8)
            for t in visible
        ]
        cls = [c if label else -c for c in cls]  # fmt: skip
        inter = total = focal = l1 = giou = 0.0
        for t in valid:
            gt = _grid(targets["masks"][b, m, t], 4)
            logits = outputs["masks"][0, b, t, n].tolist()
            for i in range(4):
                for j in range(4):
                    p = _sig(logits[i][j])
                    inter, total = inter + p * gt[i][j], total + p + gt[i][j]
                    focal += _focal(logits[i][j], gt[i][j])
            l1 += float((outputs["boxes"][0, b, t, n] - boxes[b, m, t]).abs().sum())
            giou += _giou(outputs["boxes"][0, b, t, n], boxes[b, m, t])
        expected = (2 * sum(cls) / max(len(visible), 1) - 5 * (2 * inter + 1) / (total + 1)
                    + 2 * focal / (16 * len(valid)) + (5 * l1 - 2 * giou) / len(valid))  # fmt: skip
        assert float(cost[b, n, m]) == pytest.approx(expected, abs=1e-5)


def test_visibility_labels_in_query_targets() -> None:
    masks = torch.zeros(2, 3, 4, 4)
    masks[:, 0, 1, 1] = 1
    instances = [torch.stack([masks[0], torch.ones(3, 4, 4)]), masks[1:]]
    batch = {
        "masks": masks,
        "instance_masks": instances,
        "referred": [torch.tensor([True, False]), torch.tensor([True])],
        "visible": [torch.tensor([True, True, False]), torch.tensor([False, True])],
    }
    targets = query_targets(batch, "mttr")
    assert targets["visible"].tolist() == [
        [[True, True, False], [True, True, True]],  # referred: labels; other: its masks
        [[False, True, False], [False, False, False]],  # short label list: padded False
    ]
    del batch["visible"]  # MTTR on A2D: the referred object is visible in every frame
    assert query_targets(batch, "mttr")["visible"][:, 0].all()
    assert "visible" not in query_targets(batch)  # rvoslib: from the masks (prepare_targets)


def test_visibility_labels_errors() -> None:
    batch = {"masks": torch.zeros(2, 3, 4, 4), "visible": torch.ones(3, 3, dtype=torch.bool)}
    with pytest.raises(ValueError, match=r"batch\['visible'\] must be a \(B, T\) = \(2, 3\)"):
        query_targets(batch, "mttr")
    batch["visible"] = "all"
    with pytest.raises(ValueError, match=r"\(T_i,\) flags, got str"):
        query_targets(batch, "mttr")
    batch["visible"] = [torch.ones(4), torch.ones(3)]
    with pytest.raises(ValueError, match=r"batch\['visible'\]\[0\] has 4 flags for T=3"):
        query_targets(batch, "mttr")


def test_objects_referred_drops_other_instances() -> None:
    masks = torch.ones(1, 2, 4, 4)
    batch = {"masks": masks, "instance_masks": [torch.zeros(3, 2, 4, 4)],
             "referred": [torch.tensor([False, True, False])]}  # fmt: skip
    assert query_targets(batch)["masks"].shape[1] == 3
    targets = query_targets(batch, "referformer")
    assert targets["masks"].shape[1] == 1 and bool(targets["masks"].all())


def test_masks_to_boxes_index_extent() -> None:
    mask = torch.zeros(1, 4, 8)
    mask[0, 1:3, 2:6] = 1
    assert masks_to_boxes(mask, "indices").tolist() == [[0.4375, 0.375, 0.375, 0.25]]
    with pytest.raises(ValueError, match="extent must be 'pixels' or 'indices', got 'edges'"):
        masks_to_boxes(mask, "edges")


def test_default_conventions_unchanged() -> None:
    assert resolve_conventions(None) == SetConventions() == CONVENTIONS["rvoslib"]
    assert HungarianMatcher().conventions == SetConventions()
    spec = {"base": "referformer", "box_extent": "pixels"}
    assert resolve_conventions(spec).mask_reduction == "clip"
    assert "visibility='labels'" in repr(HungarianMatcher(conventions="mttr"))


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("detr", ValueError, r"unknown conventions 'detr'; named ones are \['mttr'"),
        ({"dice": "clip"}, KeyError, r"unknown conventions fields \['dice'\]"),
        ({"mask_reduction": "video"}, ValueError, r"mask_reduction must be one of \('frame'"),
        ({"mask_stride": 0}, ValueError, "mask_stride must be an int >= 1, got 0"),
        ({"class_cost_eps": 2.0}, ValueError, r"class_cost_eps must be None or a number in"),
        ({"giou_smooth": -1.0}, ValueError, "giou_smooth must be a number >= 0, got -1.0"),
        (3, TypeError, "conventions must be a name, a dict or a SetConventions, got int"),
    ],
)
def test_conventions_errors(value: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        resolve_conventions(value)


def test_ref_youtube_vos_items_carry_full_size_visibility(tmp_path: Path) -> None:
    """The dataset's ``visible`` (full-size masks, before the resize) reaches the criterion."""
    from test_data_ytvos import _write_ytvos

    from rvoslib.data import RefYouTubeVOSDataset, RVOSCollator, train_transform

    labels = _write_ytvos(tmp_path)
    dataset = RefYouTubeVOSDataset(tmp_path, "train", annotated_only=True,
                                   transform=train_transform(8))  # fmt: skip
    items = [dataset[0], dataset[2]]
    expected = [labels["a1b2c3"][::5] == 1, labels["d4e5f6"][::5] == 3]
    for item, masks in zip(items, expected):
        assert item["visible"].tolist() == masks.reshape(len(masks), -1).any(1).tolist()
    batch = RVOSCollator()(items)
    visible = query_targets(batch, "mttr")["visible"][:, 0]
    assert visible.tolist() == [item["visible"].tolist() for item in items]


def test_generalized_box_iou_smooth() -> None:
    from rvoslib.losses import elementwise_generalized_box_iou, generalized_box_iou

    a = torch.tensor([[0.1, 0.2, 0.5, 0.6]])
    b = torch.tensor([[0.3, 0.1, 0.9, 0.4]])
    inter, union, hull = 0.2 * 0.2, 0.16 + 0.18 - 0.04, 0.8 * 0.5
    s = 1e-6
    expected = (inter + s) / (union + s) - (hull - union + s) / (hull + s)
    assert float(generalized_box_iou(a, b, smooth=s)) == pytest.approx(expected, abs=1e-6)
    assert float(elementwise_generalized_box_iou(a, b, smooth=s)[0]) == pytest.approx(expected)
    exact = inter / union - (hull - union) / hull
    assert float(generalized_box_iou(a, b)) == pytest.approx(exact, abs=1e-6)


def test_published_presets_take_the_original_conventions() -> None:
    from rvoslib.models.presets_query_deformable import referformer_swin_t, referformer_tiny
    from rvoslib.models.presets_query_mttr import mttr_swin_t, mttr_tiny

    assert mttr_swin_t().criterion["conventions"] == "mttr"
    assert referformer_swin_t().criterion["conventions"] == "referformer"
    assert "conventions" not in mttr_tiny().criterion
    assert "conventions" not in referformer_tiny().criterion
