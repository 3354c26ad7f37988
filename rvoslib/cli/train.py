"""``rvos train``: run a training recipe.

With no arguments it runs the ``quickstart`` recipe (the tiny-motion preset on built-in
synthetic videos, a few minutes on two CPU cores). ``--config`` names another shipped recipe
or a YAML file (``none``: the dataclass defaults alone). Every field of the recipe's sections
is an option, dotted (``--trainer.max_time``) and flat (``--max-time``); values come from the
dataclass defaults, then the recipe, then the command line, and the defaults below are the
selected recipe's. Fields of the model's architecture config are dotted options too:
``--model.temporal.name identity``. ``--print-config`` prints the resolved recipe, which
``--config`` reads back.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rvoslib._io import atomic_write_text
from rvoslib.cli.options import CommandLine

__all__ = ["TASK_OF_INPUTS", "check_fit", "command_line", "resolve_recipe", "run"]

DEFAULT_RECIPE = "quickstart"
#: What a model declaring these inputs (``model.inputs.kind``) is trained on (``--task``).
TASK_OF_INPUTS = {"text": "rvos", "first_mask": "vos"}


def _recipe_argument(argv: Sequence[str]) -> str:
    """The value of ``--config`` in ``argv`` (the last one), or the default recipe."""
    value = DEFAULT_RECIPE
    for index, token in enumerate(argv):
        if token == "--config" and index + 1 < len(argv):
            value = argv[index + 1]
        elif token.startswith("--config="):
            value = token.split("=", 1)[1]
    return value


def _base_recipe(name: str) -> Any:
    from rvoslib.recipes import Recipe, load_recipe

    return Recipe() if name.lower() == "none" else load_recipe(name)


def command_line(argv: Sequence[str] = ()) -> CommandLine:
    """The parser of ``rvos train``, with the defaults of the recipe ``argv`` selects."""
    from rvoslib.data import DataConfig, list_datasets
    from rvoslib.data.builder import TASKS
    from rvoslib.recipes import ModelRecipe, RunOptions
    from rvoslib.training.config import TrainerConfig

    recipe = _base_recipe(_recipe_argument(argv)).to_dict()
    cli = CommandLine("rvos train", __doc__)
    cli.add(
        "--config",
        default=DEFAULT_RECIPE,
        help="a shipped recipe name or a YAML recipe file; 'none' starts from the defaults",
    )
    cli.add("--print-config", action="store_true", help="print the resolved recipe and exit")
    cli.add_dataclass("model", ModelRecipe, recipe["model"])
    cli.open_section("model")
    cli.add_dataclass(
        "data", DataConfig, recipe["data"], choices={"dataset": list_datasets(), "task": TASKS}
    )
    cli.add_dataclass(
        "trainer",
        TrainerConfig,
        recipe["trainer"],
        aliases={"output_dir": ("--out",)},
        choices={"amp": ("auto", "bf16", "fp16", "off")},
    )
    cli.add_dataclass("run", RunOptions, recipe["run"])
    return cli


def resolve_recipe(argv: Sequence[str]) -> Any:
    """The recipe of the ``rvos train`` options ``argv``: dataclass defaults < ``--config``
    recipe < options.

    Raises:
        UsageError: unknown options or bad values (named).
        ValueError: a section's values are invalid (named).
    """
    return _recipe_of(command_line(argv).parse(argv))


def _recipe_of(args: Any) -> Any:
    from rvoslib.cli.options import set_nested
    from rvoslib.recipes import SECTIONS, recipe_from_dict

    values = {name: args[name].as_dict() for name in SECTIONS}
    model = values["model"]
    for path, value in _leaves(args._extras.get("model", {})):
        set_nested(model["overrides"], path, value)
    given = {token.split("=")[0] for token in args._argv}
    if model["config"] is not None and not given & {"--preset", "--model.preset"}:
        model["preset"] = None  # a config given without a preset replaces the recipe's preset
    return recipe_from_dict(values, "the options")


def _leaves(values: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[tuple, Any]]:
    leaves: list[tuple[tuple, Any]] = []
    for key, value in values.items():
        if isinstance(value, dict) and value:
            leaves.extend(_leaves(value, (*prefix, key)))
        else:
            leaves.append(((*prefix, key), value))
    return leaves


def run(args: Any) -> int:
    """Train, validate, and write checkpoints, history, metrics and overlays.

    Every argument, path and range is checked, and the data and model are built, before the
    output folder is touched; ``--overwrite`` moves the previous run to ``OUT/previous-run``
    and deletes it only once the new run has saved its first complete checkpoint;
    ``--restore-previous`` puts it back (and trains nothing). Exit code 0, or 3 when steps were
    skipped for non-finite losses or gradients (counted in ``metrics.json``).
    """
    import contextlib

    import yaml

    from rvoslib.recipes import build_model, model_config
    from rvoslib.training.logs import enable_console_logging

    recipe = _recipe_of(args)
    architecture = model_config(recipe.model)  # bad presets and overrides: named before any work
    if args.print_config:
        print(yaml.safe_dump(recipe.to_dict(), sort_keys=False), end="")
        return 0

    import torch

    from rvoslib._hub import require_text_encoder_files
    from rvoslib.data import build_datasets
    from rvoslib.training import AUTO_RESUME, LambdaCallback, Trainer, init_distributed
    from rvoslib.training.run_folder import RunFolder

    # a Hub text model that cannot be had is named within seconds, before the data is read
    require_text_encoder_files(getattr(architecture, "text_encoder", None))
    trainer_config, data_config = recipe.trainer, recipe.data
    if not trainer_config.output_dir:
        raise ValueError("--output-dir is required")
    out = Path(trainer_config.output_dir)
    run_options = recipe.run
    if run_options.auto_resume and (
        run_options.resume or run_options.overwrite or run_options.restore_previous
    ):
        raise ValueError("--auto-resume excludes --resume, --overwrite and --restore-previous")
    if recipe.run.restore_previous:
        if recipe.run.resume or recipe.run.overwrite:
            raise ValueError("--restore-previous excludes --resume and --overwrite")
        RunFolder(out).restore_previous()
        return 0
    resume, overwrite = _resume_or_start(recipe.run, out)
    folder = RunFolder(out, resume=resume, overwrite=overwrite)
    folder.check()
    enable_console_logging()
    context = init_distributed(trainer_config.device)
    train_data, val_data = build_datasets(data_config, seed=trainer_config.seed)
    torch.manual_seed(trainer_config.seed)
    model = build_model(recipe.model)
    check_fit(model, train_data, data_config)
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
            resume=AUTO_RESUME if recipe.run.auto_resume else (out / "last" if resume else None),
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


def _resume_or_start(run: Any, out: Path) -> tuple[bool, bool]:
    """``(resume, overwrite)`` for the run folder: the options themselves, or with
    ``--auto-resume`` whether ``out/last`` holds a checkpoint to continue from (a folder that
    holds only the ``recipe.yaml`` of a run killed before its first checkpoint is started
    again, its recipe kept aside until the new run's first checkpoint)."""
    if not run.auto_resume:
        return run.resume, run.overwrite
    import os

    from rvoslib._io import recover_directory
    from rvoslib.training.run_folder import RunFolder

    if os.environ.get("RANK", "0") == "0":  # a save interrupted by the kill is put back
        recover_directory(out / "last")
    if (out / "last").is_dir() or any(out.glob(".last.*.old")):
        return True, False
    return False, RunFolder(out).existing() == ["recipe.yaml"]


def check_fit(
    model: Any, data: Any, config: Any, fix: str = "--task {task} or another --preset"
) -> None:
    """Check that ``data`` is for the task the model's inputs declare (``model.inputs.kind``)
    and that one of its items, collated for the model, is a batch the model takes (the data
    and model functions name what is missing).

    Args:
        model: The model (its ``inputs`` declaration and ``check_batch``).
        data: A dataset.
        config: The DataConfig of ``data``.
        fix: What to change, said in the message (``{task}``: the task the model solves).

    Raises:
        ValueError: the data does not give what the model takes (with the option to change).
    """
    from rvoslib.data import collator_for

    kind = model.inputs.kind
    wanted = TASK_OF_INPUTS.get(kind, kind)
    problem = None
    if wanted != config.task:
        problem = f"a model taking {kind!r} inputs solves the {wanted!r} task"
    else:
        try:
            model.check_batch(collator_for(model.inputs)([data[0]]))
        except ValueError as error:
            problem = str(error)
    if problem is not None:
        raise ValueError(
            f"the data (task {config.task!r}) does not fit the model, which takes {kind!r} "
            f"inputs ({fix.format(task=wanted)}): {problem}"
        )


def _finish(
    trainer: Any, recipe: Any, history: list, val_data: Any, wall: float, out: Path
) -> None:
    """Write ``metrics.json`` and the overlays; say why training ended early."""
    from rvoslib.training.logs import summary_table
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
            f"max_time ({recipe.trainer.max_time:g} s) reached; the recipe's documented result "
            f"is that of all {recipe.trainer.epochs} epochs, so this one is not it (raise "
            "--max-time, or --resume with a larger one, to finish the run)",
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
    if recipe.run.json:
        print(json.dumps(finite_or_none(metrics)))
    else:
        print(summary_table(finite_or_none(metrics)))
