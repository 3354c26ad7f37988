"""``rvos train``: run a training recipe.

With no arguments it runs the ``quickstart`` recipe (the tiny preset on built-in synthetic
videos, a few minutes on two CPU cores). ``--config`` names another shipped recipe or a YAML
file. Every field of the recipe's sections is also an option with the same name
(``--max-time``, ``--batch-size``, ...): values come from the dataclass defaults, then the
recipe, then the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

from rvoslib._io import atomic_write_text
from rvoslib.cli.options import add_dataclass_options, given_options

__all__ = ["RUN_FILES", "add_parser", "resolve_recipe", "run"]

RUN_FILES = ("last", "best", "history.jsonl", "metrics.json", "overlays", "recipe.yaml")
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


def _prepare_output(out: Path, resume: bool, overwrite: bool) -> None:
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if resume:
        if not (out / "last").is_dir():
            raise FileNotFoundError(f"--resume: no checkpoint at {str(out / 'last')!r}")
        return
    if existing and not overwrite:
        raise ValueError(
            f"--output-dir {str(out)!r} already holds a run ({', '.join(existing)}); "
            "pass --resume to continue it or --overwrite to replace it"
        )
    for name in existing:
        target = out / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()


def run(args: argparse.Namespace) -> int:
    """Train, validate, and write checkpoints, history, metrics and overlays."""
    import torch
    import yaml

    from rvoslib.data.builder import build_datasets
    from rvoslib.models.presets import create_model, get_preset_config
    from rvoslib.models.registry import ARCHITECTURES
    from rvoslib.training import Trainer, init_distributed
    from rvoslib.viz import write_overlay_strips

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
    context = init_distributed(trainer_config.device)
    if context.is_main:
        _prepare_output(out, recipe.run.resume, recipe.run.overwrite)
        atomic_write_text(out / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    context.barrier()
    train_data, val_data = build_datasets(data_config, seed=trainer_config.seed)
    torch.manual_seed(trainer_config.seed)
    model = create_model(
        recipe.model.preset, pretrained=recipe.model.pretrained, **recipe.model.overrides
    )
    started = time.perf_counter()
    trainer = Trainer(
        model,
        train_data,
        val_data,
        trainer_config,
        resume=out / "last" if recipe.run.resume else None,
        context=context,
        run_info={"data": data_config.to_dict()},
    )
    history = trainer.fit()
    wall_time = time.perf_counter() - started
    if context.is_main and history:
        final = history[-1]
        metrics = {
            **{key: final.get(key) for key in ("J", "F", "JF")},
            "best_JF": trainer.best_metric if trainer.best_epoch >= 0 else None,
            "best_epoch": trainer.best_epoch,
            "epochs": trainer.epoch,
            "steps": trainer.step,
            "world_size": context.world_size,
            "wall_time_s": round(wall_time, 1),
            "preset": recipe.model.preset,
            "dataset": data_config.dataset,
            "shuffle_text": data_config.shuffle_text,
        }
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        if recipe.run.overlays > 0:
            write_overlay_strips(
                trainer.model,
                val_data,
                out / "overlays",
                recipe.run.overlays,
                collate_fn=trainer.collate_fn,
                device=trainer.device,
                threshold=trainer_config.threshold,
                clip_len=trainer_config.val_clip_len,
            )
        print(json.dumps(metrics))
    if context.is_distributed:
        torch.distributed.destroy_process_group()
    return 0


def recipe_fields() -> dict[str, list[str]]:
    """Section -> field names (for the docs and the tests)."""
    from rvoslib.recipes import SECTIONS

    return {name: [f.name for f in dataclasses.fields(cls)] for name, cls in SECTIONS.items()}
