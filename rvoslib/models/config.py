"""Architecture configs: the part specs and options of one architecture, saved as ``config.json``.

Each architecture declares a dataclass deriving from :class:`ArchitectureConfig`. Its fields are
either *part specs* (``{"name": <registered name>, **keywords}``, listed in ``parts`` with the
registry they resolve through) or plain options (loss weights, numbers of queries).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, ClassVar

from rvoslib.models.registry import Registry, normalize_spec

__all__ = ["CONFIG_FORMAT_VERSION", "ArchitectureConfig"]

#: Version of the ``config.json`` layout written by ``save_pretrained`` (1: the flat fields of
#: rvoslib 0.1's ``RVOSConfig``, converted on load; 2: architecture + part specs).
CONFIG_FORMAT_VERSION = 2


@dataclasses.dataclass
class ArchitectureConfig:
    """Base of the configs of registered architectures.

    Each subclass sets ``architecture`` (the architecture's registered name) and ``parts``
    (field name -> the :class:`~rvoslib.models.registry.Registry` its spec names a part of).
    """

    architecture: ClassVar[str] = ""
    parts: ClassVar[dict[str, Registry]] = {}

    def __post_init__(self) -> None:
        for field_name in self.parts:
            value = getattr(self, field_name)
            setattr(self, field_name, normalize_spec(value, self.parts[field_name].kind))

    @classmethod
    def field_names(cls) -> list[str]:
        """The config's field names."""
        return [f.name for f in dataclasses.fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict with ``architecture`` first."""
        return {"architecture": self.architecture, **copy.deepcopy(dataclasses.asdict(self))}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchitectureConfig:
        """Build from a dict (an ``architecture`` key, if present, must match).

        Raises:
            ValueError: unknown keys (lists the valid ones) or another architecture's config.
        """
        data = dict(data)
        architecture = data.pop("architecture", cls.architecture)
        data.pop("format_version", None)
        if architecture != cls.architecture:
            raise ValueError(
                f"config of architecture {architecture!r} given to {cls.__name__} "
                f"(architecture {cls.architecture!r})"
            )
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise ValueError(
                f"unknown {cls.__name__} keys {unknown}; valid keys: {cls.field_names()}"
            )
        return cls(**copy.deepcopy(data))

    def replace(self, **changes: Any) -> ArchitectureConfig:
        """A copy with fields changed.

        A part spec with a ``"name"`` replaces the part's spec; one without a name changes
        only the keywords it lists, e.g. ``config.replace(fusion={"num_heads": 2})``.

        Raises:
            ValueError: a key is not a field (the message lists the fields and, for options
                of rvoslib 0.1's flat ``RVOSConfig``, where they went).
        """
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            from rvoslib.models.legacy import moved_option_hint

            hints = "".join(moved_option_hint(key) for key in unknown)
            raise ValueError(
                f"{unknown} not fields of {type(self).__name__}; valid fields: "
                f"{self.field_names()}{hints}"
            )
        data = copy.deepcopy(dataclasses.asdict(self))
        for key, value in changes.items():
            if key in self.parts and isinstance(value, dict) and "name" not in value:
                data[key] = {**data[key], **copy.deepcopy(value)}
            else:
                data[key] = copy.deepcopy(value)
        return type(self)(**data)
