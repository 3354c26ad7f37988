"""Recipes: named YAML files holding every setting of a training job.

A recipe has four sections: ``model`` (:class:`ModelRecipe`), ``data``
(:class:`~rvoslib.data.DataConfig`), ``trainer`` (:class:`~rvoslib.training.TrainerConfig`) and
``run`` (:class:`RunOptions`). A field a recipe leaves out keeps its dataclass default. The
recipes shipped with the package (``quickstart``, the job ``rvos train`` runs with no arguments)
live next to this file; any YAML file with the same sections is a recipe too.

The ``model`` section names a preset, or gives a whole architecture config: the path of a
model folder written by ``save_pretrained`` (``config: runs/rvos/best``), or the dict of its
``config.json`` (with its ``architecture`` key) under ``config:`` or pasted into the section
itself::

    model:
      architecture: fusion
      backbone: {name: tinycnn, channels: [16, 32, 64, 128]}
      ...

Example:
    >>> recipe = load_recipe("quickstart")
    >>> recipe.model.preset, recipe.trainer.batch_size, recipe.data.dataset
    ('tiny-motion', 16, 'synthetic')
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rvoslib.data.builder import DataConfig
from rvoslib.training.config import TrainerConfig

__all__ = [
    "SECTIONS",
    "ModelRecipe",
    "Recipe",
    "RunOptions",
    "build_model",
    "list_recipes",
    "load_recipe",
    "model_config",
    "recipe_from_dict",
]


@dataclass
class ModelRecipe:
    """The model of a job.

    Attributes:
        preset: A preset name (:func:`rvoslib.list_presets`); ``None`` when ``config`` gives
            the architecture.
        config: A whole architecture config instead of a preset: the path of a model folder
            written by ``save_pretrained`` (or of its ``config.json``), or such a config as a
            dict (with its ``architecture`` key; a ``text_encoder.tokenizer`` of null, which
            names the files saved beside it, must then be set).
        pretrained: Load the pretrained weights of the parts that have them (may download).
        overrides: Config fields to change, e.g. ``{"temporal": {"name": "identity"}}``
            (see :func:`rvoslib.create_model`).
    """

    preset: str | None = "tiny"
    config: dict[str, Any] | str | None = None
    pretrained: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunOptions:
    """What ``rvos train`` does around the Trainer.

    Attributes:
        resume: Continue the run in ``output_dir`` from its ``last/`` checkpoint.
        overwrite: Replace a finished run in ``output_dir`` (kept in
            ``output_dir/previous-run`` until the new run's first complete checkpoint).
        restore_previous: Put back the run an interrupted ``--overwrite`` left in
            ``output_dir/previous-run`` (removing the interrupted run's files), then exit.
        auto_resume: Continue the run in ``output_dir`` from its ``last/`` checkpoint when
            there is one, else start it: the same command line for the first launch and for
            every restart of a ``torchrun --max-restarts`` run.
        overlays: Number of held-out clips drawn with their predictions at the end.
        json: End with the summary as one JSON line instead of a table.
    """

    resume: bool = False
    overwrite: bool = False
    restore_previous: bool = False
    auto_resume: bool = False
    overlays: int = 4
    json: bool = False


#: Section name -> dataclass.
SECTIONS: dict[str, type] = {
    "model": ModelRecipe,
    "data": DataConfig,
    "trainer": TrainerConfig,
    "run": RunOptions,
}


@dataclass
class Recipe:
    """A resolved recipe: one dataclass per section."""

    model: ModelRecipe = field(default_factory=ModelRecipe)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    run: RunOptions = field(default_factory=RunOptions)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The recipe as nested dicts (what a recipe file holds)."""
        data = {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}
        data["trainer"]["betas"] = list(self.trainer.betas)
        return data


def list_recipes() -> list[str]:
    """Names of the recipes shipped with rvoslib."""
    folder = resources.files(__name__)
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_recipe(name_or_path: str | os.PathLike) -> Recipe:
    """Read a shipped recipe by name or a YAML file by path.

    Raises:
        FileNotFoundError: neither a shipped recipe nor a file (lists the shipped ones).
        ValueError: the YAML is malformed, or has unknown sections or fields (named, with
            the valid ones).
    """
    import yaml

    path = Path(name_or_path)
    if not path.suffix and str(name_or_path) in list_recipes():
        text = resources.files(__name__).joinpath(f"{name_or_path}.yaml").read_text()
        where = f"recipe {str(name_or_path)!r}"
    elif path.is_file():
        text, where = path.read_text(encoding="utf-8"), repr(str(path))
    else:
        raise FileNotFoundError(
            f"recipe {str(name_or_path)!r} is neither a file nor a shipped recipe "
            f"({', '.join(list_recipes())})"
        )
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{where} is not valid YAML: {error}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{where} must hold a mapping of sections, got {type(values).__name__}")
    return recipe_from_dict(values, where)


def recipe_from_dict(values: dict[str, Any], where: str = "recipe") -> Recipe:
    """Build a :class:`Recipe` from nested dicts (unknown sections/fields are errors)."""
    unknown = sorted(set(values) - set(SECTIONS))
    if unknown:
        raise ValueError(f"{where}: unknown sections {unknown}; valid sections: {list(SECTIONS)}")
    sections = {}
    for name, cls in SECTIONS.items():
        given = values.get(name) or {}
        if not isinstance(given, dict):
            raise ValueError(f"{where}: section {name!r} must be a mapping of field: value")
        valid = [f.name for f in dataclasses.fields(cls)]
        if name == "model":
            given = _model_section(given, valid, where)
        bad = sorted(set(given) - set(valid))
        if bad:
            raise ValueError(f"{where}: unknown {name} fields {bad}; valid fields: {valid}")
        sections[name] = cls(**given)
    return Recipe(**sections)


def _model_section(given: dict[str, Any], valid: list[str], where: str) -> dict[str, Any]:
    """A ``model`` section with a pasted architecture config moved under ``config``; the
    preset is ``None`` when a config is given and the section names no preset."""
    given = dict(given)
    if "architecture" in given:
        if given.get("config") is not None:
            raise ValueError(
                f"{where}: the model section has both an inline architecture config and "
                "config:; give one"
            )
        given["config"] = {k: given.pop(k) for k in list(given) if k not in valid}
    if given.get("config") is not None:
        given.setdefault("preset", None)
    return given


def model_config(model: ModelRecipe) -> Any:
    """The :class:`~rvoslib.models.config.ArchitectureConfig` a model section describes: its
    ``config`` (or its preset's) with its ``overrides`` applied.

    Raises:
        ValueError: both or neither of ``preset`` and ``config``; an override or a config key
            that is not a field (named, with the valid ones).
        KeyError: unknown preset or architecture (lists the valid names).
    """
    from rvoslib.models.presets import get_preset_config

    if (model.preset is None) == (model.config is None):
        raise ValueError(
            "the model section needs a preset or a config (an architecture config dict, or the "
            f"path of a config.json), exactly one; got preset {model.preset!r} and "
            f"config {_describe(model.config)}"
        )
    if model.config is None:
        return get_preset_config(model.preset, **model.overrides)
    from rvoslib.models.registry import ARCHITECTURES

    data = _read_config(model.config) if isinstance(model.config, str) else dict(model.config)
    text = data.get("text_encoder")
    if isinstance(text, dict) and "tokenizer" in text and text["tokenizer"] is None:
        raise ValueError(
            "the model config's text_encoder.tokenizer is null: save_pretrained wrote the "
            "tokenizer's files beside config.json; give model.config as the path of that folder "
            "(or set text_encoder.tokenizer)"
        )
    if "architecture" not in data:
        raise ValueError(
            "the model config has no 'architecture' key (one of "
            f"{', '.join(ARCHITECTURES.names())}); a config.json written by save_pretrained has it"
        )
    config = ARCHITECTURES.get(data["architecture"]).config_class.from_dict(data)
    return config.replace(**model.overrides) if model.overrides else config


def build_model(model: ModelRecipe) -> Any:
    """The model a model section describes (random weights, or the parts' pretrained ones
    with ``pretrained``)."""
    from rvoslib.models import SegmentationModel

    return SegmentationModel.from_config(model_config(model), pretrained=model.pretrained)


def _read_config(path: str) -> dict[str, Any]:
    """The config dict of a model folder or its ``config.json`` (old formats converted), with
    the tokenizer saved beside it."""
    from rvoslib.models.saving import CONFIG_FILE, TOKENIZER_FILES, read_config

    folder = Path(path)
    if folder.name == CONFIG_FILE and folder.is_file():
        folder = folder.parent
    if not (folder / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"model config {path!r}: no such {CONFIG_FILE} or model folder")
    config = read_config(folder)
    if "text_encoder" in config and any((folder / n).exists() for n in TOKENIZER_FILES):
        config["text_encoder"]["tokenizer"] = str(folder)
    return config


def _describe(config: Any) -> str:
    if isinstance(config, dict):
        return f"of architecture {config.get('architecture')!r}"
    return repr(config)
