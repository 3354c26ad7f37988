"""``rvos eval``: J, F and J&F of a checkpoint on a dataset, per sequence and overall.

Predictions are cropped to the frames (the evaluation transform's padding removed), resized to
the frames' original size, thresholded, and scored there (:func:`rvoslib.evaluation.evaluate`,
the loop ``Trainer.validate`` uses).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rvoslib._io import atomic_write_text

__all__ = ["add_parser", "run"]

ATTRIBUTE_CHOICES = ("color", "shape", "motion", "position")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``rvos eval``."""
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint (J, F, J&F)",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, help="model folder (save_pretrained)")
    parser.add_argument("--data", default="davis", choices=("davis", "synthetic"))
    parser.add_argument("--root", help="dataset root (davis)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--size", type=int, default=None, help="short side fed to the model")
    parser.add_argument("--protocol", default="all", choices=("all", "semi-supervised"))
    parser.add_argument("--videos", type=int, default=32, help="synthetic videos")
    parser.add_argument("--frames", type=int, default=8, help="synthetic frames per video")
    parser.add_argument("--seed", type=int, default=100_003, help="synthetic seed")
    parser.add_argument(
        "--attributes",
        nargs="+",
        default=["color", "shape", "motion", "position"],
        choices=ATTRIBUTE_CHOICES,
        help="what synthetic expressions may name",
    )
    parser.add_argument("--clip-len", type=int, default=None, help="frames per forward pass")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None, help="folder for masks and the per-sequence CSV")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the summary as JSON; with ``--out`` also write masks and tables."""
    from rvoslib.data import RefDAVISDataset, RVOSCollator, SyntheticRVOSDataset, eval_transform
    from rvoslib.evaluation import Prediction, evaluate
    from rvoslib.metrics import write_davis_masks
    from rvoslib.models import RVOSModel
    from rvoslib.training import init_distributed

    model = RVOSModel.from_pretrained(args.checkpoint)
    device = init_distributed(args.device).device
    model = model.to(device).eval()
    if args.data == "davis":
        if not args.root:
            raise ValueError("--root is required for --data davis")
        transform = eval_transform(args.size) if args.size else None
        dataset = RefDAVISDataset(args.root, split=args.split, transform=transform)
    else:
        dataset = SyntheticRVOSDataset(
            args.videos, args.frames, args.size or 64, seed=args.seed, attributes=args.attributes
        )
    out = Path(args.out) if args.out else None

    def write(prediction: Prediction) -> None:
        item = prediction.item
        folder = out / "masks" / item["video_id"] / str(item["exp_id"])
        write_davis_masks(prediction.masks.numpy().astype("uint8"), folder, item["frame_ids"])

    result = evaluate(
        model,
        dataset,
        collate_fn=RVOSCollator(model.text_encoder, model.text_encoder.max_length),
        device=device,
        clip_len=args.clip_len,
        threshold=args.threshold,
        protocol=args.protocol,
        on_prediction=write if out is not None else None,
    )
    if out is not None:
        result.evaluator.to_csv(out / "per_sequence.csv")
        atomic_write_text(out / "summary.json", json.dumps(result.summary, indent=2) + "\n")
    for row in result.per_sequence:
        print(json.dumps(row))
    print(json.dumps(result.summary))
    return 0
