"""Recipes: named YAML files holding every setting of a training job.

A recipe has four sections: ``model`` (:class:`ModelRecipe`), ``data``
(:class:`~rvoslib.data.DataConfig`), ``trainer`` (:class:`~rvoslib.training.TrainerConfig`) and
``run`` (:class:`RunOptions`). A field a recipe leaves out keeps its dataclass default. The
recipes shipped with the package (``quickstart``, the job ``rvos train`` runs with no arguments)
live next to this file; any YAML file with the same sections is a recipe too.

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
    "list_recipes",
    "load_recipe",
    "recipe_from_dict",
]


@dataclass
class ModelRecipe:
    """The model of a job.

    Attributes:
        preset: A preset name (:func:`rvoslib.list_presets`).
        pretrained: Load the pretrained weights of the parts that have them (may download).
        overrides: Config fields to change, e.g. ``{"temporal": {"name": "identity"}}``
            (see :func:`rvoslib.create_model`).
    """

    preset: str = "tiny"
    pretrained: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunOptions:
    """What ``rvos train`` does around the Trainer.

    Attributes:
        resume: Continue the run in ``output_dir`` from its ``last/`` checkpoint.
        overwrite: Replace a finished run in ``output_dir``.
        overlays: Number of held-out clips drawn with their predictions at the end.
    """

    resume: bool = False
    overwrite: bool = False
    overlays: int = 4


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
        bad = sorted(set(given) - set(valid))
        if bad:
            raise ValueError(f"{where}: unknown {name} fields {bad}; valid fields: {valid}")
        sections[name] = cls(**given)
    return Recipe(**sections)
