"""``rvos train``: train a preset on synthetic data, Ref-DAVIS17 or Ref-YouTube-VOS.

With no arguments it trains the ``tiny`` preset on the built-in synthetic dataset (the
quickstart "main job": a few minutes on two CPU cores). Every option can also come from a YAML
file (``--config run.yaml``) whose keys are the option names; command-line flags win.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

from rvoslib._io import atomic_write_text

__all__ = [
    "DATASETS",
    "add_arguments",
    "add_attributes_argument",
    "add_parser",
    "build_datasets",
    "run",
]

DATASETS = ("synthetic", "davis", "ytvos")
RUN_FILES = ("last", "best", "history.jsonl", "metrics.json", "overlays")
ATTRIBUTE_CHOICES = ("color", "shape", "motion", "position")  # rvoslib.data.synthetic.ATTRIBUTES
SYNTHETIC_ATTRIBUTES = ("color", "shape", "position")  # the main job's expressions
SYNTHETIC_CACHE_BYTES = 2**30  # synthetic videos are kept in memory up to this total size


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``rvos train``."""
    parser = subparsers.add_parser(
        "train",
        help="train a model",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run, _parser=parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rvos train`` (also used by the examples)."""
    model = parser.add_argument_group("model")
    model.add_argument("--preset", default="tiny", help="model preset (see rvoslib.list_presets())")
    model.add_argument("--pretrained", action="store_true", help="load pretrained weights")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default="synthetic", choices=DATASETS)
    data.add_argument("--root", help="dataset root (davis, ytvos)")
    data.add_argument("--train-split", default="train", help="split to train on")
    data.add_argument("--val-split", default="val", help="split to validate on (davis)")
    data.add_argument("--num-frames", type=int, default=4, help="frames per training clip")
    data.add_argument("--size", type=int, default=64, help="training image size (short side)")
    data.add_argument("--train-videos", type=int, default=4096, help="synthetic training videos")
    data.add_argument("--val-videos", type=int, default=96, help="synthetic held-out videos")
    data.add_argument(
        "--val-frames", type=int, default=8, help="frames of held-out synthetic videos"
    )
    add_attributes_argument(data)
    data.add_argument("--val-fraction", type=float, default=0.05, help="ytvos videos held out")
    data.add_argument(
        "--shuffle-text",
        action="store_true",
        help="control: pair clips with other clips' expressions",
    )
    data.add_argument("--num-workers", type=int, default=0)
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=int, default=10)
    optim.add_argument(
        "--max-minutes",
        type=float,
        default=9.0,
        help="safety limit: end training after this many minutes (then validate and save)",
    )
    optim.add_argument(
        "--max-steps", type=int, default=None, help="stop after this many optimizer steps"
    )
    optim.add_argument("--batch-size", type=int, default=16)
    optim.add_argument("--lr", type=float, default=2e-3)
    optim.add_argument("--weight-decay", type=float, default=1e-4)
    optim.add_argument("--backbone-lr-mult", type=float, default=1.0)
    optim.add_argument("--text-lr-mult", type=float, default=1.0)
    optim.add_argument(
        "--accumulation", type=int, default=1, help="micro-batches per optimizer step"
    )
    optim.add_argument("--clip-grad-norm", type=float, default=1.0)
    optim.add_argument("--t0", type=int, default=10, help="epochs of the first cosine cycle")
    optim.add_argument(
        "--warmup-steps", type=int, default=0, help="optimizer steps of linear LR warm-up"
    )
    optim.add_argument("--patience", type=int, default=None, help="early-stopping patience")
    optim.add_argument("--seed", type=int, default=0)
    run_group = parser.add_argument_group("run")
    run_group.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    run_group.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "off"))
    run_group.add_argument("--fast", action="store_true", help="use the fast path (GPU)")
    run_group.add_argument("--compile", action="store_true", help="torch.compile the model")
    run_group.add_argument("--sync-batchnorm", action="store_true")
    run_group.add_argument("--out", default="runs/rvos", help="output folder")
    run_group.add_argument("--resume", action="store_true", help="continue the run in --out")
    run_group.add_argument("--overwrite", action="store_true", help="replace a run in --out")
    run_group.add_argument("--overlays", type=int, default=4, help="validation clips to draw")
    run_group.add_argument("--no-progress", action="store_true", help="hide progress bars")
    run_group.add_argument("--config", help="YAML file with option values")


def add_attributes_argument(group: argparse._ActionsContainer) -> None:
    """``--attributes``: what synthetic expressions may name (``rvos train`` and ``rvos eval``)."""
    group.add_argument(
        "--attributes",
        nargs="+",
        default=list(SYNTHETIC_ATTRIBUTES),
        choices=ATTRIBUTE_CHOICES,
        help="what synthetic expressions may name (add 'motion' for motion words)",
    )


def apply_yaml_defaults(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.Namespace:
    """Re-parse with the YAML file's values as defaults, so explicit flags still win.

    Raises:
        FileNotFoundError: the YAML file does not exist.
        ValueError: it has keys that are not options (lists the valid ones).
    """
    import yaml

    path = Path(args.config)
    if not path.is_file():
        raise FileNotFoundError(f"--config file {str(path)!r} does not exist")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"--config file {str(path)!r} must hold a mapping of option: value")
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    valid = sorted(vars(args))
    unknown = sorted(set(values) - set(valid) - {"config"})
    if unknown:
        raise ValueError(f"unknown options {unknown} in {str(path)!r}; valid options: {valid}")
    parser.set_defaults(**values)
    return parser.parse_args(args._argv)


def build_datasets(args: argparse.Namespace) -> tuple[Any, Any]:
    """The training and held-out datasets the options describe."""
    from rvoslib.data import (
        RefDAVISDataset,
        RefYouTubeVOSDataset,
        SyntheticRVOSDataset,
        eval_transform,
        train_transform,
    )

    if args.dataset == "synthetic":
        # frames (3 bytes per pixel) and labels (1 byte); generation is ~20 % of a CPU step
        video_bytes = 4 * args.num_frames * args.size**2
        train = SyntheticRVOSDataset(
            args.train_videos,
            args.num_frames,
            args.size,
            seed=args.seed,
            attributes=args.attributes,
            cache=args.train_videos * video_bytes <= SYNTHETIC_CACHE_BYTES,
        )
        val = SyntheticRVOSDataset(
            args.val_videos,
            args.val_frames,
            args.size,
            seed=args.seed + 100_003,
            attributes=args.attributes,
        )
    else:
        if not args.root:
            raise ValueError(f"--root is required for --dataset {args.dataset}")
        if args.dataset == "davis":
            train = RefDAVISDataset(
                args.root,
                split=args.train_split,
                num_frames=args.num_frames,
                transform=train_transform(args.size),
            )
            val = RefDAVISDataset(
                args.root, split=args.val_split, transform=eval_transform(args.size)
            )
        else:
            from torch.utils.data import Subset

            full = RefYouTubeVOSDataset(
                args.root,
                split="train",
                num_frames=args.num_frames,
                transform=train_transform(args.size),
            )
            held_out = max(1, int(len(full) * args.val_fraction))
            train = Subset(full, range(held_out, len(full)))
            whole = RefYouTubeVOSDataset(
                args.root, split="train", transform=eval_transform(args.size)
            )
            val = Subset(whole, range(held_out))
    if args.shuffle_text:
        from rvoslib.training import ShuffledTextDataset

        train = ShuffledTextDataset(train, seed=args.seed)
    return train, val


def _prepare_output(out: Path, resume: bool, overwrite: bool) -> None:
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if resume:
        if not (out / "last").is_dir():
            raise FileNotFoundError(f"--resume: no checkpoint at {str(out / 'last')!r}")
        return
    if existing and not overwrite:
        raise ValueError(
            f"--out {str(out)!r} already holds a run ({', '.join(existing)}); "
            "pass --resume to continue it or --overwrite to replace it"
        )
    for name in existing:
        target = out / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()


def run(args: argparse.Namespace) -> int:
    """Train, validate, and write checkpoints, history, metrics and overlays into ``--out``."""
    import torch

    from rvoslib import create_model
    from rvoslib.models.presets import get_preset_config
    from rvoslib.training import Trainer, TrainerConfig, init_distributed

    if args.config:
        args = apply_yaml_defaults(args._parser, args)
    get_preset_config(args.preset)  # unknown preset: KeyError listing the valid ones
    out = Path(args.out)
    context = init_distributed(args.device)
    if context.is_main:
        _prepare_output(out, args.resume, args.overwrite)
    context.barrier()
    train_data, val_data = build_datasets(args)
    torch.manual_seed(args.seed)
    model = create_model(args.preset, pretrained=args.pretrained)
    config = TrainerConfig(
        epochs=args.epochs,
        max_steps=args.max_steps,
        max_time=args.max_minutes * 60 if args.max_minutes else None,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        lr=args.lr,
        weight_decay=args.weight_decay,
        backbone_lr_mult=args.backbone_lr_mult,
        text_lr_mult=args.text_lr_mult,
        t_0=args.t0,
        warmup_steps=args.warmup_steps,
        amp=args.amp,
        accumulation_steps=args.accumulation,
        clip_grad_norm=args.clip_grad_norm,
        early_stopping_patience=args.patience,
        seed=args.seed,
        device=args.device,
        output_dir=str(out),
        sync_batchnorm=args.sync_batchnorm,
        fast=args.fast,
        compile=args.compile,
        progress=not args.no_progress,
    )
    started = time.perf_counter()
    trainer = Trainer(
        model,
        train_data,
        val_data,
        config,
        resume=out / "last" if args.resume else None,
        context=context,
    )
    history = trainer.fit()
    wall_time = time.perf_counter() - started
    if context.is_main and history:
        final = history[-1]
        metrics = {
            "J": final.get("J"),
            "F": final.get("F"),
            "JF": final.get("JF"),
            "best_JF": trainer.best_metric if trainer.best_epoch >= 0 else None,
            "best_epoch": trainer.best_epoch,
            "epochs": trainer.epoch,
            "steps": trainer.step,
            "world_size": context.world_size,
            "wall_time_s": round(wall_time, 1),
            "preset": args.preset,
            "dataset": args.dataset,
            "shuffle_text": args.shuffle_text,
        }
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        if args.overlays > 0:
            trainer.write_overlays(val_data, out / "overlays", args.overlays)
        print(json.dumps(metrics))
    if context.is_distributed:
        torch.distributed.destroy_process_group()
    return 0
