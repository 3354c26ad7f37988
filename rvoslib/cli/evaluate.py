"""``rvos eval``: J, F and J&F of a checkpoint on a dataset, per sequence and overall."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rvoslib._io import atomic_write_text
from rvoslib.cli.train import add_attributes_argument

__all__ = ["add_parser", "run"]


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
    parser.add_argument("--videos", type=int, default=32, help="synthetic videos")
    parser.add_argument("--frames", type=int, default=8, help="synthetic frames per video")
    parser.add_argument("--seed", type=int, default=100_003, help="synthetic seed")
    add_attributes_argument(parser)
    parser.add_argument("--clip-len", type=int, default=None, help="frames per forward pass")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None, help="folder for masks and the per-sequence CSV")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the summary as JSON; with ``--out`` also write masks and tables."""
    import torch

    from rvoslib.data import RefDAVISDataset, RVOSCollator, SyntheticRVOSDataset, eval_transform
    from rvoslib.metrics import RVOSEvaluator
    from rvoslib.models import RVOSModel
    from rvoslib.training import init_distributed, predict_in_chunks

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
    collate = RVOSCollator(model.text_encoder, model.text_encoder.max_length)
    evaluator = RVOSEvaluator()
    out = Path(args.out) if args.out else None
    for index in range(len(dataset)):
        batch = collate([dataset[index]])
        with torch.no_grad():
            logits = predict_in_chunks(
                model,
                batch["frames"].to(device),
                batch["text_ids"].to(device),
                batch["text_mask"].to(device),
                args.clip_len,
            )
        predicted = (logits.sigmoid()[0, :, 0] > args.threshold).cpu()
        video_id, exp_id = batch["video_id"][0], str(batch["exp_id"][0])
        evaluator.update(
            video_id, exp_id, predicted, batch["masks"][0] > 0.5, valid=batch["valid"][0]
        )
        if out is not None:
            from rvoslib.metrics import write_davis_masks

            masks = predicted.numpy().astype("uint8")
            write_davis_masks(masks, out / "masks" / video_id / exp_id, batch["frame_ids"][0])
    summary = evaluator.summary()
    if out is not None:
        evaluator.to_csv(out / "per_sequence.csv")
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    for row in evaluator.per_sequence():
        print(json.dumps(row))
    print(json.dumps(summary))
    return 0
