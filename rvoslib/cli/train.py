"""``rvos train``: run a training recipe.

With no arguments it runs the ``quickstart`` recipe (the tiny-motion preset on built-in synthetic
videos, a few minutes on two CPU cores). ``--config`` names another shipped recipe or a YAML
file. Every field of the recipe's sections is also an option with the same name
(``--max-time``, ``--batch-size``, ...): values come from the dataclass defaults, then the
recipe, then the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from rvoslib._io import atomic_write_text
from rvoslib.cli.options import add_dataclass_options, given_options

__all__ = ["add_parser", "resolve_recipe", "run"]

ATTRIBUTE_CHOICES = ("color", "shape", "motion", "position")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``rvos train``."""
    from rvoslib.data.builder import DataConfig, dataset_names
    from rvoslib.recipes import ModelRecipe, RunOptions
    from rvoslib.training.config import TrainerConfig

    parser = subparsers.add_parser(
        "train",
        help="train a model (runs the quickstart recipe by default)",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--config",
        default="quickstart",
        help="a shipped recipe name or a YAML recipe file; 'none' starts from the defaults",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved recipe and exit"
    )
    add_dataclass_options(parser.add_argument_group("model"), ModelRecipe, dest_prefix="model.")
    add_dataclass_options(
        parser.add_argument_group("data"),
        DataConfig,
        choices={"dataset": dataset_names(), "attributes": ATTRIBUTE_CHOICES},
        dest_prefix="data.",
    )
    add_dataclass_options(
        parser.add_argument_group("trainer"),
        TrainerConfig,
        choices={"amp": ("auto", "bf16", "fp16", "off")},
        aliases={"output_dir": ("--out",)},
        dest_prefix="trainer.",
    )
    add_dataclass_options(parser.add_argument_group("run"), RunOptions, dest_prefix="run.")
    parser.set_defaults(func=run, _parser=parser)
    return parser


def resolve_recipe(args: argparse.Namespace) -> Any:
    """The recipe of ``args``: dataclass defaults < ``--config`` recipe < explicit options."""
    from rvoslib.recipes import Recipe, load_recipe, recipe_from_dict

    recipe = Recipe() if str(args.config).lower() == "none" else load_recipe(args.config)
    values = recipe.to_dict()
    for dest in given_options(args._parser, args._argv):
        if "." in dest:
            section, name = dest.split(".", 1)
            values[section][name] = getattr(args, dest)
    return recipe_from_dict(values, "the options")


def run(args: argparse.Namespace) -> int:
    """Train, validate, and write checkpoints, history, metrics and overlays.

    Every argument, path and range is checked, and the data and model are built, before the
    output folder is touched; ``--overwrite`` moves the previous run aside and deletes it only
    once the new run has saved its first checkpoint. Exit code 0, or 3 when steps were skipped
    for non-finite losses or gradients (counted in ``metrics.json``).
    """
    import contextlib

    import torch
    import yaml

    from rvoslib.data.builder import build_datasets
    from rvoslib.models.presets import create_model, get_preset_config
    from rvoslib.models.registry import ARCHITECTURES
    from rvoslib.training import LambdaCallback, Trainer, init_distributed
    from rvoslib.training.run_folder import RunFolder

    recipe = resolve_recipe(args)
    if args.print_config:
        print(yaml.safe_dump(recipe.to_dict(), sort_keys=False), end="")
        return 0
    trainer_config, data_config = recipe.trainer, recipe.data
    model_config = get_preset_config(recipe.model.preset, **recipe.model.overrides)
    task = ARCHITECTURES.get(model_config.architecture).task
    if task != data_config.task:
        raise ValueError(
            f"preset {recipe.model.preset!r} solves the {task!r} task but the data is for "
            f"{data_config.task!r} (--task {task} or another --preset)"
        )
    if not trainer_config.output_dir:
        raise ValueError("--output-dir is required")
    out = Path(trainer_config.output_dir)
    folder = RunFolder(out, resume=recipe.run.resume, overwrite=recipe.run.overwrite)
    folder.check()
    context = init_distributed(trainer_config.device)
    train_data, val_data = build_datasets(data_config, seed=trainer_config.seed)
    torch.manual_seed(trainer_config.seed)
    model = create_model(
        recipe.model.preset, pretrained=recipe.model.pretrained, **recipe.model.overrides
    )
    started = time.perf_counter()
    with folder if context.is_main else contextlib.nullcontext():
        context.barrier()
        if context.is_main:
            atomic_write_text(
                out / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False)
            )
        trainer = Trainer(
            model,
            train_data,
            val_data,
            trainer_config,
            resume=out / "last" if recipe.run.resume else None,
            context=context,
            run_info={"data": data_config.to_dict()},
            callbacks=[LambdaCallback(on_epoch_end=lambda *_: folder.started())],
        )
        history = trainer.fit()
        if context.is_main and history:
            _finish(trainer, recipe, history, val_data, time.perf_counter() - started, out)
    if context.is_distributed:
        torch.distributed.destroy_process_group()
    return 3 if trainer.nonfinite_steps else 0


def _finish(
    trainer: Any, recipe: Any, history: list, val_data: Any, wall: float, out: Path
) -> None:
    """Write ``metrics.json`` and the overlays; say why training ended early."""
    from rvoslib.training.step import finite_or_none
    from rvoslib.viz import write_overlay_strips

    final = history[-1]
    metrics = {
        **{key: final.get(key) for key in ("J", "F", "JF")},
        "best_JF": trainer.best_metric if trainer.best_epoch >= 0 else None,
        "best_epoch": trainer.best_epoch,
        "epochs": trainer.epoch,
        "steps": trainer.step,
        "nonfinite_steps": trainer.nonfinite_steps,
        "stopped_by": trainer.stopped_by,
        "world_size": trainer.context.world_size,
        "wall_time_s": round(wall, 1),
        "preset": recipe.model.preset,
        "dataset": recipe.data.dataset,
        "shuffle_text": recipe.data.shuffle_text,
    }
    atomic_write_text(
        out / "metrics.json", json.dumps(finite_or_none(metrics), indent=2, allow_nan=False) + "\n"
    )
    if trainer.stopped_by == "max_time":
        print(
            f"rvos train: stopped after {trainer.epoch} of {recipe.trainer.epochs} epochs: "
            f"max_time ({recipe.trainer.max_time:g} s) reached",
            file=sys.stderr,
        )
    if trainer.nonfinite_steps:
        print(
            f"rvos train: {trainer.nonfinite_steps} steps were skipped for non-finite losses or "
            "gradients (exit code 3)",
            file=sys.stderr,
        )
    if recipe.run.overlays > 0:
        write_overlay_strips(
            trainer.model,
            val_data,
            out / "overlays",
            recipe.run.overlays,
            collate_fn=trainer.collate_fn,
            device=trainer.device,
            threshold=recipe.trainer.threshold,
            clip_len=recipe.trainer.val_clip_len,
        )
    print(json.dumps(finite_or_none(metrics)))


def recipe_fields() -> dict[str, list[str]]:
    """Section -> field names (for the docs and the tests)."""
    from rvoslib.recipes import SECTIONS

    return {name: [f.name for f in dataclasses.fields(cls)] for name, cls in SECTIONS.items()}
