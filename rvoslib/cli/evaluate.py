"""``rvos eval``: J, F and J&F of a checkpoint (or of a folder of predictions) on a dataset.

The data options are those of ``rvos train`` (``--dataset --task --root --size --num-frames
--val-videos --val-frames --attributes ...``, the fields of DataConfig) and the dataset is
built the same way (rvoslib.data.build_eval_dataset): synthetic data with ``--seed S`` is the
held-out set of a training run with seed S. The old names --data, --split, --videos and
--frames still work and warn (--frames sets --val-frames and --num-frames).

Predictions are cropped to the frames (the evaluation transform's padding removed), resized to
the frames' original size, thresholded, and scored there. Protocols:

* all: every frame of every (video, expression), averaged over expressions;
* semi-supervised: the official DAVIS semi-supervised frames (first and last left out);
* refer-davis (the default for Ref-DAVIS17): ReferFormer's protocol: the expressions of a
  video merged into one indexed PNG per annotator (argmax over objects plus background), the
  official unsupervised evaluation (Hungarian matching of predicted to ground-truth ids), and
  the four annotators / expression kinds averaged.

With ``--out``, predictions are written as the official tools read them (Ref-DAVIS17:
anno_<k>/<video>/<frame>.png; otherwise <video>/<exp_id>/<frame>.png) with the official
CSV tables. ``--predictions DIR`` scores such a folder with no checkpoint and prints the scores;
it writes nothing, and into ``DIR`` only when ``--out`` names it (``--out DIR``): the tables go
where ``--out`` says, never beside the predictions by default. Video names, expression ids and
frame names come from the dataset's files and are checked to be plain file names before any
work; every file written lies inside ``--out``. Ref-YouTube-VOS
(``--dataset ytvos``) writes the submission layout and zip; A2D-Sentences and JHMDB-Sentences
report both mAP variants, P@K and the IoUs.

``--inference-protocol NAME`` predicts every video as a published system's inference script
does (``mttr``, ``referformer-ytvos``, ``referformer-davis``, ``soc``, ``soc-davis``: the resize
from the original frames, one query per video or per clip, the upsampling and threshold;
``rvoslib.inference_protocols``), which needs the frames at their original size (no
``--size``); ``--clip-len`` and ``--threshold`` are then not used. The default is the
checkpoint's own (a converted published checkpoint's system), else ``rvoslib``. It does not
change ``--protocol`` (which frames are scored and how).

It prints a table of the per-sequence scores and a table of the summary (with ``--by-kind``, a
table per kind of expression); ``--json`` prints JSON lines instead (the protocol, one row per
sequence, the summary last), for programs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rvoslib._io import atomic_write_text
from rvoslib.cli.convert import CHECKPOINT_HELP, add_original_options, load_model
from rvoslib.cli.eval_report import EvalReport
from rvoslib.cli.options import CommandLine
from rvoslib.cli.predict import add_inference_protocol_option

__all__ = ["EVAL_DEFAULTS", "by_kind", "command_line", "run"]

PROTOCOL_CHOICES = ("all", "semi-supervised", "refer-davis")
#: DataConfig values of ``rvos eval`` that differ from training's: Ref-DAVIS17, 32 synthetic
#: videos, and each dataset's evaluation size.
EVAL_DEFAULTS = {"dataset": "davis", "val_videos": 32, "size": None}
#: DataConfig fields that only training reads.
_TRAINING_ONLY = ("train_split", "train_videos", "shuffle_text")


def command_line(argv: Sequence[str] = ()) -> CommandLine:
    """The parser of ``rvos eval``."""
    from rvoslib.data import DataConfig, list_datasets
    from rvoslib.data.builder import TASKS

    cli = CommandLine("rvos eval", __doc__)
    source = cli.mutually_exclusive(required=True)
    cli.add("--checkpoint", group=source, help=CHECKPOINT_HELP)
    add_original_options(cli)
    cli.add(
        "--predictions",
        group=source,
        help="a folder of predictions in the official DAVIS layout, scored without a model",
    )
    cli.add_dataclass(
        "data",
        DataConfig,
        EVAL_DEFAULTS,
        choices={"dataset": list_datasets(), "task": TASKS},
        skip=_TRAINING_ONLY,
    )
    cli.add(
        "--seed",
        type=int,
        default=0,
        help="seed of the training run: synthetic data is its held-out set (the videos of seed "
        "+ 100003)",
    )
    cli.add(
        "--protocol",
        choices=PROTOCOL_CHOICES,
        default=None,
        help="frames and matching scored (default: refer-davis for davis with task rvos, "
        "semi-supervised for task vos, all otherwise)",
    )
    cli.add(
        "--by-kind",
        action="store_true",
        help="synthetic: J, F and J&F per kind of expression (colour, motion, colour+shape...)",
    )
    cli.add("--clip-len", type=int | None, default=None, help="frames per forward pass")
    cli.add("--threshold", type=float, default=0.5, help="probability threshold of the masks")
    add_inference_protocol_option(cli)
    cli.add("--device", default="auto", help="auto, cpu, cuda, cuda:1...")
    cli.add(
        "--json",
        action="store_true",
        help="print JSON lines (the protocol, one row per sequence, the summary last) instead "
        "of tables",
    )
    cli.add(
        "--out",
        default=None,
        help="folder for the predictions and the tables (without it nothing is written; with "
        "--predictions DIR the tables go into DIR only with --out DIR)",
    )
    cli.deprecate("--data", "--dataset")
    cli.deprecate("--split", "--val-split")
    cli.deprecate("--videos", "--val-videos")
    cli.deprecate("--frames", "--val-frames", "--num-frames")
    return cli


def run(args: Any) -> int:
    """Evaluate; print the per-sequence rows and the summary (tables, or JSON lines)."""
    from rvoslib.data import DataConfig

    config = DataConfig(**args.data.as_dict())
    dataset, task = config.dataset, config.task  # the data's task (--task), not the model's
    default = "refer-davis" if dataset == "davis" else "all"
    protocol = args.protocol or ("semi-supervised" if task == "vos" else default)
    if protocol == "refer-davis" and (dataset != "davis" or task != "rvos"):
        raise ValueError(
            "--protocol refer-davis needs --dataset davis --task rvos, got --dataset "
            f"{dataset} --task {task}"
        )
    if not 0.0 < args.threshold < 1.0:
        raise ValueError(f"--threshold must be in (0, 1), got {args.threshold}")
    if args.predictions is not None:
        if config.dataset != "davis" or not config.root:
            raise ValueError(
                "--predictions scores a DAVIS-layout folder: it needs --dataset davis and --root"
            )
        return _score_folder(Path(args.predictions), args, config, protocol)
    if args.by_kind and config.dataset != "synthetic":
        raise ValueError("--by-kind needs --dataset synthetic (its expressions have kinds)")
    if config.dataset == "ytvos" and args.out is None:
        raise ValueError("--dataset ytvos writes a submission: give --out")
    model, dataset, collate, device = _load(args, config)
    if config.dataset == "ytvos":
        return _ytvos(model, dataset, collate, device, config, args)
    if config.dataset in ("a2d", "jhmdb"):
        return _annotated_frames(model, dataset, collate, device, config, args)
    _report(args).header({"protocol": protocol, **_inference_entry(args)})
    if protocol == "refer-davis":
        return _refer_davis(model, dataset, collate, device, config, args)
    kinds: dict[tuple[str, str], str] = {}
    writer = _mask_writer(args)

    def record(prediction: Any) -> None:
        item = prediction.item
        kinds[(item["video_id"], str(item["exp_id"]))] = str(item.get("kind", ""))
        if writer is not None:
            writer(prediction)

    result = _evaluate(model, dataset, collate, device, args, protocol, record)
    summary = {"protocol": protocol, **_inference_entry(args), **result.summary}
    if args.by_kind:
        summary["by_kind"] = by_kind(result.per_sequence, kinds)
    if args.out is not None:
        result.evaluator.to_csv(Path(args.out) / "per_sequence.csv")
        atomic_write_text(Path(args.out) / "summary.json", json.dumps(summary, indent=2))
    _report(args).rows(result.per_sequence)
    _report(args).summary(summary)
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


def _load(args: Any, config: Any) -> tuple[Any, Any, Any, Any]:
    """The model, the evaluation dataset, the collator built from the model's inputs, and the
    device; the data is checked to fit the model (the data functions name what is missing)."""
    from rvoslib.cli.train import check_fit
    from rvoslib.data import build_eval_dataset, collator_for
    from rvoslib.training import init_distributed

    dataset = build_eval_dataset(config, seed=args.seed)
    model = load_model(args)
    check_fit(model, dataset, config, fix="--task {task}")
    args.inference_protocol = (
        getattr(args, "inference_protocol", None)
        or getattr(model, "inference_protocol", None)
        or "rvoslib"
    )
    device = init_distributed(args.device).device
    return model.to(device).eval(), dataset, collator_for(model.inputs), device


def _report(args: Any) -> EvalReport:
    """The printer of the results: tables, or JSON lines with ``--json``."""
    return EvalReport(as_json=bool(getattr(args, "json", False)))


def _inference_entry(args: Any) -> dict[str, str]:
    """``{"inference_protocol": NAME}`` when it is not rvoslib's own (else nothing)."""
    name = getattr(args, "inference_protocol", None)
    return {"inference_protocol": name} if name not in (None, "rvoslib") else {}


def _evaluate(
    model: Any, dataset: Any, collate: Any, device: Any, args: Any, protocol: str, record: Any
) -> Any:
    from rvoslib.evaluation import evaluate

    return evaluate(
        model,
        dataset,
        collate_fn=collate,
        device=device,
        clip_len=args.clip_len,
        threshold=args.threshold,
        protocol="all" if protocol == "refer-davis" else protocol,
        on_prediction=record,
        compute_loss=False,  # scores only: a loss may need training-only keys (LoSh's flow)
        inference=getattr(args, "inference_protocol", None),
    )


def _mask_writer(args: Any) -> Any:
    """Write every prediction as ``<out>/<video>/<exp_id>/<frame>.png`` (0/255 at full size)."""
    if args.out is None:
        return None
    from rvoslib._paths import confined_path
    from rvoslib.metrics import write_davis_masks

    def write(prediction: Any) -> None:
        item = prediction.item
        folder = confined_path(
            args.out, str(item["video_id"]), str(item["exp_id"]), source="rvos eval --out"
        )
        write_davis_masks(prediction.masks.numpy().astype("uint8"), folder, item["frame_ids"])

    return write


def _refer_davis(
    model: Any, dataset: Any, collate: Any, device: Any, config: Any, args: Any
) -> int:
    """Predict every expression, write ``anno_<k>`` folders, score them officially."""
    import tempfile

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

            _evaluate(model, dataset, collate, device, args, "refer-davis", add)
        return _score_folder(out, args, config, "refer-davis")


def _score_folder(folder: Path, args: Any, config: Any, protocol: str) -> int:
    """Score a folder in the official layout against the DAVIS root; with ``--out``, write the
    CSV tables and ``summary.json`` there (never into ``folder`` unless ``--out`` is it)."""
    from rvoslib.metrics import evaluate_davis_folder, write_official_tables

    if not Path(config.root).is_dir():
        raise FileNotFoundError(f"--root {config.root!r} is not a folder")
    if not folder.is_dir():
        raise FileNotFoundError(f"predictions folder {str(folder)!r} does not exist")
    result = evaluate_davis_folder(folder, config.root, protocol, split=config.val_split)
    if args.out:
        write_official_tables(result, Path(args.out))
    _report(args).rows(
        [
            {"sequence": name, "J": j_value, "F": f_value}
            for name, j_value, f_value in result.per_sequence()
        ]
    )
    summary = {"protocol": protocol, "ground_truth": str(result.ground_truth), **result.summary()}
    _report(args).summary(summary)
    if args.out:
        atomic_write_text(Path(args.out) / "summary.json", json.dumps(summary, indent=2) + "\n")
    return 0


def _annotated_frames(
    model: Any, dataset: Any, collate: Any, device: Any, config: Any, args: Any
) -> int:
    """A2D-Sentences (test split) or JHMDB-Sentences: both mAP variants, P@K, IoUs."""
    from rvoslib.evaluation import evaluate_annotated_frames

    protocol = evaluate_annotated_frames(model, dataset, collate_fn=collate, device=device)
    summary = {"data": config.dataset, **protocol.summary()}
    _report(args).text(protocol.report())
    _report(args).summary(summary)
    if args.out:
        atomic_write_text(Path(args.out) / "summary.json", json.dumps(summary, indent=2) + "\n")
    return 0


def _ytvos(model: Any, dataset: Any, collate: Any, device: Any, config: Any, args: Any) -> int:
    """Ref-YouTube-VOS: the submission layout and zip of the split's expressions (scored when
    the split has ground truth, e.g. ReferFormer's converted Ref-DAVIS17)."""
    from rvoslib.evaluation import evaluate
    from rvoslib.metrics import write_ytvos_masks, zip_submission

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
        collate_fn=collate,
        device=device,
        clip_len=args.clip_len,
        threshold=args.threshold,
        on_prediction=write,
        compute_loss=False,
        inference=getattr(args, "inference_protocol", None),
    )
    archive = zip_submission(out)
    split = getattr(dataset, "split", config.val_split)
    summary = {"data": "ytvos", "split": split, "submission": str(archive), **result.summary}
    _report(args).summary(summary)
    return 0
