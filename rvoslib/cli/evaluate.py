"""``rvos eval``: J, F and J&F of a checkpoint (or of a folder of predictions) on a dataset.

Predictions are cropped to the frames (the evaluation transform's padding removed), resized to
the frames' original size, thresholded, and scored there. Protocols:

* ``all``: every frame of every (video, expression), averaged over expressions;
* ``semi-supervised``: the official DAVIS semi-supervised frames (first and last left out);
* ``refer-davis`` (the default for Ref-DAVIS17): ReferFormer's protocol: the expressions of a
  video merged into one indexed PNG per annotator (argmax over objects plus background), the
  official unsupervised evaluation (Hungarian matching of predicted to ground-truth ids), and
  the four annotators / expression kinds averaged.

With ``--out``, predictions are written as the official tools read them (Ref-DAVIS17:
``anno_<k>/<video>/<frame>.png``; otherwise ``<video>/<exp_id>/<frame>.png``) with the official
CSV tables. ``--predictions DIR`` scores such a folder with no checkpoint.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from rvoslib._io import atomic_write_text

__all__ = ["add_parser", "by_kind", "run"]

ATTRIBUTE_CHOICES = ("color", "shape", "motion", "position")
PROTOCOL_CHOICES = ("all", "semi-supervised", "refer-davis")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``rvos eval``."""
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint or a folder of predictions (J, F, J&F)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="model folder (save_pretrained)")
    source.add_argument("--predictions", help="a folder of predictions in the official layout")
    parser.add_argument(
        "--data", default="davis", choices=("davis", "synthetic", "ytvos", "a2d", "jhmdb")
    )
    parser.add_argument(
        "--task",
        default="rvos",
        choices=("rvos", "vos"),
        help="rvos: a sentence per video; vos: the first frame's mask (DAVIS-2017 semi-supervised)",
    )
    parser.add_argument("--root", help="dataset root (davis)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--size", type=int, default=None, help="short side fed to the model")
    parser.add_argument(
        "--protocol",
        default=None,
        choices=PROTOCOL_CHOICES,
        help="frames and matching scored (default: refer-davis for davis, semi-supervised for "
        "--task vos, all otherwise)",
    )
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
    parser.add_argument(
        "--by-kind",
        action="store_true",
        help="synthetic: J, F and J&F per kind of expression (colour, motion, colour+shape...)",
    )
    parser.add_argument(
        "--long-expressions", action="store_true", help="synthetic: expressions with a relation"
    )
    parser.add_argument("--clip-len", type=int, default=None, help="frames per forward pass")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None, help="folder for predictions and tables")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Evaluate; print the per-sequence rows and the summary as JSON lines."""
    default = "refer-davis" if args.data == "davis" else "all"
    protocol = args.protocol or ("semi-supervised" if args.task == "vos" else default)
    if protocol == "refer-davis" and (args.data != "davis" or args.task != "rvos"):
        raise ValueError(
            f"--protocol refer-davis needs --data davis --task rvos, got --data {args.data} "
            f"--task {args.task}"
        )
    if args.data == "davis" and not args.root:
        raise ValueError("--root is required for --data davis")
    if args.data == "davis" and not Path(args.root).is_dir():
        raise FileNotFoundError(f"--root {args.root!r} is not a folder")
    if not 0.0 < args.threshold < 1.0:
        raise ValueError(f"--threshold must be in (0, 1), got {args.threshold}")
    if args.predictions is not None:
        if args.data != "davis":
            raise ValueError("--predictions scores a DAVIS-layout folder: it needs --data davis")
        return _score_folder(Path(args.predictions), args, protocol)
    if args.by_kind and args.data != "synthetic":
        raise ValueError("--by-kind needs --data synthetic (its expressions have kinds)")
    if args.data in ("ytvos", "a2d", "jhmdb"):
        if not args.root or not Path(args.root).is_dir():
            raise FileNotFoundError(f"--root {args.root!r} is not a folder (--data {args.data})")
        return _ytvos(args) if args.data == "ytvos" else _annotated_frames(args)
    print(json.dumps({"protocol": protocol}))
    if protocol == "refer-davis":
        return _refer_davis(args)
    kinds: dict[tuple[str, str], str] = {}
    writer = _mask_writer(args)

    def record(prediction: Any) -> None:
        item = prediction.item
        kinds[(item["video_id"], str(item["exp_id"]))] = str(item.get("kind", ""))
        if writer is not None:
            writer(prediction)

    result = _evaluate(args, protocol, on_prediction=record)
    summary = {"protocol": protocol, **result.summary}
    if args.by_kind:
        summary["by_kind"] = by_kind(result.per_sequence, kinds)
    if args.out is not None:
        result.evaluator.to_csv(Path(args.out) / "per_sequence.csv")
        atomic_write_text(Path(args.out) / "summary.json", json.dumps(summary, indent=2))
    for row in result.per_sequence:
        print(json.dumps(row))
    print(json.dumps(summary))
    return 0


def by_kind(rows: list[dict], kinds: dict[tuple[str, str], str]) -> dict[str, dict[str, float]]:
    """Mean J, F and J&F (and the count) of the sequences of each kind of expression.

    Args:
        rows: Per-sequence rows (``video_id``, ``key``, ``J``, ``F``, ``JF``).
        kinds: ``(video_id, key)`` -> kind, e.g. ``"color+motion"``.

    Example:
        >>> rows = [{"video_id": "a", "key": "0", "J": 1.0, "F": 0.5, "JF": 0.75},
        ...         {"video_id": "b", "key": "0", "J": 0.0, "F": 0.5, "JF": 0.25}]
        >>> by_kind(rows, {("a", "0"): "color", ("b", "0"): "color"})["color"]["J"]
        0.5
    """
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(kinds.get((row["video_id"], str(row["key"])), ""), []).append(row)
    return {
        kind: {
            "count": len(members),
            **{key: sum(float(m[key]) for m in members) / len(members) for key in ("J", "F", "JF")},
        }
        for kind, members in sorted(groups.items())
    }


def _evaluate(args: argparse.Namespace, protocol: str, on_prediction: Any) -> Any:
    from rvoslib.data import (
        RefDAVISDataset,
        RVOSCollator,
        SyntheticRVOSDataset,
        SyntheticVOSDataset,
        eval_transform,
    )
    from rvoslib.data.vos import FirstFrameMaskDataset
    from rvoslib.evaluation import evaluate
    from rvoslib.models import RVOSModel
    from rvoslib.training import init_distributed

    model = RVOSModel.from_pretrained(args.checkpoint)
    if model.task != args.task:
        raise ValueError(
            f"the checkpoint is a {model.task!r} model; evaluate it with --task {model.task}"
        )
    device = init_distributed(args.device).device
    model = model.to(device).eval()
    if args.data == "davis":
        transform = eval_transform(args.size) if args.size else None
        dataset = RefDAVISDataset(args.root, split=args.split, transform=transform)
        if args.task == "vos":
            dataset = FirstFrameMaskDataset(dataset)
    else:
        kind = SyntheticVOSDataset if args.task == "vos" else SyntheticRVOSDataset
        dataset = kind(
            args.videos,
            args.frames,
            args.size or 64,
            seed=args.seed,
            attributes=args.attributes,
            long_expressions=args.long_expressions,
        )
    collate = (
        RVOSCollator(model.text_encoder, model.text_encoder.max_length)
        if args.task == "rvos"
        else RVOSCollator(None)
    )
    return evaluate(
        model,
        dataset,
        collate_fn=collate,
        device=device,
        clip_len=args.clip_len,
        threshold=args.threshold,
        protocol="all" if protocol == "refer-davis" else protocol,
        on_prediction=on_prediction,
        compute_loss=False,  # scores only: a loss may need training-only keys (LoSh's flow)
    )


def _mask_writer(args: argparse.Namespace) -> Any:
    """Write every prediction as ``<out>/<video>/<exp_id>/<frame>.png`` (0/255 at full size)."""
    if args.out is None:
        return None
    from rvoslib.metrics import write_davis_masks

    def write(prediction: Any) -> None:
        item = prediction.item
        folder = Path(args.out) / item["video_id"] / str(item["exp_id"])
        write_davis_masks(prediction.masks.numpy().astype("uint8"), folder, item["frame_ids"])

    return write


def _refer_davis(args: argparse.Namespace) -> int:
    """Predict every expression, write ``anno_<k>`` folders, score them officially."""
    from rvoslib.metrics import RefDAVISWriter

    with tempfile.TemporaryDirectory() as scratch:
        out = Path(args.out) if args.out else Path(scratch)
        writer = RefDAVISWriter(out, threshold=args.threshold)
        with writer:

            def add(prediction: Any) -> None:
                item = prediction.item
                writer.add(
                    item["video_id"],
                    str(item["exp_id"]),
                    int(item["obj_id"]),
                    prediction.probabilities.numpy(),
                    item["frame_ids"],
                )

            _evaluate(args, "refer-davis", on_prediction=add)
        return _score_folder(out, args, "refer-davis", tables=args.out is not None)


def _score_folder(folder: Path, args: argparse.Namespace, protocol: str, tables: bool = True):
    """Score a folder in the official layout against the DAVIS root; write the CSV tables."""
    from rvoslib.metrics import evaluate_davis_folder, write_official_tables

    if not folder.is_dir():
        raise FileNotFoundError(f"predictions folder {str(folder)!r} does not exist")
    result = evaluate_davis_folder(folder, args.root, protocol, split=args.split)
    if tables:
        write_official_tables(result, Path(args.out) if args.out else folder)
    for sequence, j_value, f_value in result.per_sequence():
        print(json.dumps({"sequence": sequence, "J": j_value, "F": f_value}))
    summary = {"protocol": protocol, "ground_truth": str(result.ground_truth), **result.summary()}
    print(json.dumps(summary))
    if args.out:
        atomic_write_text(Path(args.out) / "summary.json", json.dumps(summary, indent=2) + "\n")
    return 0


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    from rvoslib.models import RVOSModel
    from rvoslib.training import init_distributed

    model = RVOSModel.from_pretrained(args.checkpoint)
    device = init_distributed(args.device).device
    return model.to(device).eval(), device


def _annotated_frames(args: argparse.Namespace) -> int:
    """A2D-Sentences (test split) or JHMDB-Sentences: both mAP variants, P@K, IoUs."""
    from rvoslib.data import A2DSentencesDataset, JHMDBSentencesDataset, RVOSCollator
    from rvoslib.data.transforms import eval_transform
    from rvoslib.evaluation import evaluate_annotated_frames

    size = args.size or 320
    transform = eval_transform(size, max_size=int(size * 1.8))
    if args.data == "a2d":
        split = "test" if args.split == "val" else args.split
        dataset = A2DSentencesDataset(
            args.root, split=split, num_frames=args.frames, transform=transform
        )
    else:
        dataset = JHMDBSentencesDataset(args.root, num_frames=args.frames, transform=transform)
    model, device = _load(args)
    protocol = evaluate_annotated_frames(
        model,
        dataset,
        collate_fn=RVOSCollator(model.text_encoder, model.text_encoder.max_length),
        device=device,
    )
    summary = {"data": args.data, **protocol.summary()}
    print(protocol.report())
    print(json.dumps(summary))
    if args.out:
        atomic_write_text(Path(args.out) / "summary.json", json.dumps(summary, indent=2) + "\n")
    return 0


def _ytvos(args: argparse.Namespace) -> int:
    """Ref-YouTube-VOS: the submission layout and zip of the split's expressions (scored when
    the split has ground truth, e.g. ReferFormer's converted Ref-DAVIS17)."""
    from rvoslib.data import RefYouTubeVOSDataset, RVOSCollator, eval_transform
    from rvoslib.evaluation import evaluate
    from rvoslib.metrics import write_ytvos_masks, zip_submission

    if args.out is None:
        raise ValueError("--data ytvos writes a submission: give --out")
    split = "valid" if args.split == "val" else args.split
    transform = eval_transform(args.size) if args.size else None
    dataset = RefYouTubeVOSDataset(args.root, split=split, transform=transform)
    model, device = _load(args)
    out = Path(args.out)

    def write(prediction: Any) -> None:
        item = prediction.item
        write_ytvos_masks(
            out, item["video_id"], str(item["exp_id"]), prediction.probabilities.numpy(),
            item["frame_ids"], threshold=args.threshold,
        )  # fmt: skip

    result = evaluate(
        model,
        dataset,
        collate_fn=RVOSCollator(model.text_encoder, model.text_encoder.max_length),
        device=device,
        clip_len=args.clip_len,
        threshold=args.threshold,
        on_prediction=write,
        compute_loss=False,
    )
    archive = zip_submission(out)
    summary = {"data": "ytvos", "split": split, "submission": str(archive), **result.summary}
    print(json.dumps(summary))
    return 0
