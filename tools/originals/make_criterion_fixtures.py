"""Record the original MTTR and ReferFormer matchers and criteria on fixed random inputs.

Imports ``models/criterion.py`` and ``models/matcher.py`` of the original code (no model is
built), feeds them seeded random predictions in the original output layout and synthetic
targets in the original target layout, and saves, per case, the inputs, the matched indices of
every decoder layer and every loss term (unweighted, as the original returns them, and the
weight dict) to ``OUT/<case>.pt`` (loadable with ``torch.load(weights_only=True)``)::

    python tools/originals/make_criterion_fixtures.py --system mttr \
        --original /path/to/MTTR --out tests/data/originals/criteria
    python tools/originals/make_criterion_fixtures.py --system referformer \
        --original /path/to/ReferFormer --out tests/data/originals/criteria

Each system runs in its own process (both trees have top-level ``models`` and ``util`` modules).
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path
from typing import Any

import torch

CASES = {
    "mttr": ("mttr_labels", "mttr_no_labels"),
    "referformer": ("referformer_clips", "referformer_padded", "referformer_one_frame"),
}


def _import_original(root: Path, system: str) -> tuple[Any, Any]:
    """The original ``models.criterion`` and ``models.matcher`` modules, without running the
    ``models`` package's ``__init__`` (which builds the whole model and its text encoder)."""
    sys.path.insert(0, str(root))
    package = types.ModuleType("models")
    package.__path__ = [str(root / "models")]
    sys.modules["models"] = package
    if system == "referformer":  # models/segmentation.py imports fvcore (weight init only)
        fvcore = types.ModuleType("fvcore")
        fvcore_nn = types.ModuleType("fvcore.nn")
        fvcore_nn.weight_init = types.ModuleType("fvcore.nn.weight_init")
        fvcore.nn = fvcore_nn
        sys.modules["fvcore"], sys.modules["fvcore.nn"] = fvcore, fvcore_nn
        sys.modules["fvcore.nn.weight_init"] = fvcore_nn.weight_init
    import models.criterion as criterion
    import models.matcher as matcher

    return criterion, matcher


def _blob(height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """A random axis-aligned rectangle mask ``(H, W)`` bool covering 10-50 % of each side."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    h = int(torch.randint(max(1, height // 10), max(2, height // 2), (1,), generator=generator))
    w = int(torch.randint(max(1, width // 10), max(2, width // 2), (1,), generator=generator))
    y = int(torch.randint(0, height - h + 1, (1,), generator=generator))
    x = int(torch.randint(0, width - w + 1, (1,), generator=generator))
    mask[y : y + h, x : x + w] = True
    return mask


def _object_masks(
    count: int, frames: int, size: tuple[int, int], generator: torch.Generator
) -> torch.Tensor:
    """``count`` objects' random masks in every frame, ``(M, T, H, W)`` bool."""
    return torch.stack(
        [torch.stack([_blob(*size, generator) for _ in range(frames)]) for _ in range(count)]
    )


def _mttr_case(name: str, criterion_mod: Any, matcher_mod: Any) -> dict[str, Any]:
    """MTTR: outputs ``(T, B, N, ...)``, targets a list over frames of per-clip dicts."""
    generator = torch.Generator().manual_seed(11 if name == "mttr_labels" else 12)
    labels = name == "mttr_labels"
    frames, batch, queries, layers = (3, 2, 5, 3) if labels else (1, 2, 4, 2)
    size, pred_size = ((20, 24), (8, 10)) if labels else ((16, 16), (8, 8))
    counts = (2, 3) if labels else (3, 1)
    referred = (1, 0) if labels else (2, 0)

    def out(layer_seed: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(layer_seed)
        return {
            "pred_is_referred": 1.5 * torch.randn(frames, batch, queries, 2, generator=g),
            "pred_masks": 2.0 * torch.randn(frames, batch, queries, *pred_size, generator=g),
        }

    per_layer = [out(100 * int(labels) + layer) for layer in range(layers)]  # first..last
    clip_masks = [
        _object_masks(m, frames, size, generator) for m in counts
    ]  # per clip (M, T, H, W)
    visible_labels = []
    for clip, masks in enumerate(clip_masks):
        flags = masks[referred[clip]].flatten(1).any(1).clone()
        if labels and clip == 0:
            masks[referred[clip], 1] = False  # absent from frame 1
            flags[1] = False
        if labels and clip == 1:
            masks[referred[clip], 2] = False  # empty at training size, labelled visible
            flags[2] = True
        visible_labels.append(flags)
    targets = []
    for t in range(frames):
        step = []
        for clip, masks in enumerate(clip_masks):
            target = {
                "masks": masks[:, t].clone(),
                "referred_instance_idx": torch.tensor(referred[clip]),
            }
            if labels:
                target["is_ref_inst_visible"] = visible_labels[clip][t].clone()
            step.append(target)
        targets.append(tuple(step))
    matcher = matcher_mod.HungarianMatcher(cost_is_referred=2, cost_dice=5)
    weight_dict = {"loss_is_referred": 2, "loss_dice": 5, "loss_sigmoid_focal": 2}
    for i in range(layers - 1):
        weight_dict.update({f"{k}_{i}": v for k, v in list(weight_dict.items())[:3]})
    criterion = criterion_mod.SetCriterion(matcher, weight_dict, eos_coef=0.1)
    outputs = {**per_layer[-1], "aux_outputs": [dict(o) for o in per_layer[:-1]]}
    losses = criterion({**outputs, "aux_outputs": [dict(o) for o in per_layer[:-1]]}, targets)
    indices = [
        [[q.cpu(), j.cpu()] for q, j in matcher(dict(o), targets)] for o in per_layer
    ]  # first..last
    return {
        "system": "mttr",
        "outputs": {k: v for k, v in outputs.items()},
        "targets": [list(step) for step in targets],
        "indices": indices,
        "losses": {k: v.detach().float() for k, v in losses.items()},
        "weight_dict": {k: float(v) for k, v in weight_dict.items()},
    }


def _referformer_case(name: str, criterion_mod: Any, matcher_mod: Any) -> dict[str, Any]:
    """ReferFormer: outputs ``(B, T, N, ...)`` at stride 4, targets a list of per-clip dicts."""
    generator = torch.Generator().manual_seed({"referformer_clips": 21}.get(name, 22))
    batch, frames, queries, layers = {
        "referformer_clips": (2, 4, 5, 3),
        "referformer_padded": (2, 2, 4, 2),
        "referformer_one_frame": (2, 1, 5, 2),
    }[name]
    size = (36, 44) if name == "referformer_padded" else (32, 32)
    padded = tuple((s + 31) // 32 * 32 for s in size)
    pred_size = (padded[0] // 4, padded[1] // 4)

    def out(layer_seed: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(layer_seed)
        return {
            "pred_logits": 1.5 * torch.randn(batch, frames, queries, 1, generator=g),
            "pred_boxes": torch.rand(batch, frames, queries, 4, generator=g) * 0.8 + 0.1,
            "pred_masks": 2.0 * torch.randn(batch, frames, queries, *pred_size, generator=g),
        }

    per_layer = [out(1000 + 10 * len(name) + layer) for layer in range(layers)]
    targets = []
    for clip in range(batch):
        masks = torch.stack([_blob(*size, generator) for _ in range(frames)])
        if frames > 1 and clip == 0:
            masks[1] = False  # the referred object leaves the clip in frame 1
        valid, boxes = [], []
        height, width = size
        for mask in masks:
            if mask.any():
                rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
                x1, y1, x2, y2 = (float(v) for v in (cols[0], rows[0], cols[-1], rows[-1]))
                cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
                boxes.append(torch.tensor([cx / width, cy / height, w / width, h / height]))
                valid.append(1)
            else:
                boxes.append(torch.zeros(4))
                valid.append(0)
        targets.append(
            {
                "masks": masks.float(),
                "boxes": torch.stack(boxes),
                "valid": torch.tensor(valid),
                "labels": torch.full((frames,), 3, dtype=torch.long),
            }
        )
    matcher = matcher_mod.HungarianMatcher(
        cost_class=2, cost_bbox=5, cost_giou=2, cost_mask=2, cost_dice=5, num_classes=1
    )
    base = {"loss_ce": 2, "loss_bbox": 5, "loss_giou": 2, "loss_mask": 2, "loss_dice": 5}
    weight_dict = dict(base)
    for i in range(layers - 1):
        weight_dict.update({f"{k}_{i}": v for k, v in base.items()})
    criterion = criterion_mod.SetCriterion(
        1, matcher, weight_dict, eos_coef=0.1, losses=["labels", "boxes", "masks"], focal_alpha=0.25
    )
    outputs = {**per_layer[-1], "aux_outputs": [dict(o) for o in per_layer[:-1]]}
    losses = criterion(outputs, targets)
    indices = [[[q.cpu(), j.cpu()] for q, j in matcher(dict(o), targets)] for o in per_layer]
    return {
        "system": "referformer",
        "outputs": outputs,
        "targets": targets,
        "indices": indices,
        "losses": {k: v.detach().float() for k, v in losses.items()},
        "weight_dict": {k: float(v) for k, v in weight_dict.items()},
    }


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and write the fixtures of one system."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, required=True, help="the original code's root")
    parser.add_argument("--out", type=Path, required=True, help="fixture folder")
    parser.add_argument("--system", choices=sorted(CASES), required=True)
    args = parser.parse_args(argv)
    criterion_mod, matcher_mod = _import_original(args.original, args.system)
    make = _mttr_case if args.system == "mttr" else _referformer_case
    args.out.mkdir(parents=True, exist_ok=True)
    for name in CASES[args.system]:
        record = make(name, criterion_mod, matcher_mod)
        record["case"] = name
        torch.save(record, args.out / f"{name}.pt")
        terms = ", ".join(f"{k}={float(v):.6f}" for k, v in sorted(record["losses"].items()))
        print(f"{name}: {terms}")


if __name__ == "__main__":
    main()
