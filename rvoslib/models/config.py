"""Architecture configs: the part specs and options of one architecture, saved as ``config.json``.

Each architecture declares a dataclass deriving from :class:`ArchitectureConfig`. Its fields are
either *part specs* (``{"name": <registered name>, **keywords}``, listed in ``parts``, in build
order, each with the :class:`Part` saying which registry it resolves through and what it
receives from the parts built before it) or plain options (numbers of queries, levels). The
architecture's base class builds the parts in that order and calls ``__init__(**parts,
**options)`` (:meth:`~rvoslib.models.base.SegmentationModel.build`): the one build path of
every architecture.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from rvoslib.registry import Registry, normalize_spec

__all__ = ["CONFIG_FORMAT_VERSION", "MODEL_LEVEL_FIELDS", "ArchitectureConfig", "Part"]

#: ``inject(built, config) -> keywords``: what a part receives from the parts built before it
#: (``built``: field name -> module) and from the config's options.
Injector = Callable[[Mapping[str, Any], Any], Mapping[str, Any]]


@dataclasses.dataclass(frozen=True)
class Part:
    """How an architecture builds the part of one config field.

    Attributes:
        registry: The registry the field's spec names a part of.
        inject: ``inject(built, config) -> dict`` of keywords the part receives from the parts
            built before it (``built``, by field name) and the config's options, e.g. a
            temporal module's ``channels``; ``None``: nothing.

    Example:
        >>> from rvoslib.models.registry import TEMPORAL_MODULES
        >>> part = Part(TEMPORAL_MODULES, lambda built, config: {"channels": 8})
        >>> part.registry.kind
        'temporal module'
    """

    registry: Registry
    inject: Injector | None = None

    def build(self, spec: Any, built: Mapping[str, Any], config: Any, pretrained: bool) -> Any:
        """The part of ``spec``, given the parts built so far and the config."""
        injected = dict(self.inject(built, config)) if self.inject is not None else {}
        return self.registry.build(spec, pretrained=pretrained, **injected)


#: Version of the ``config.json`` layout written by ``save_pretrained`` (older layouts are
#: converted on load by :mod:`rvoslib.models.legacy`; 3: one ``criterion`` spec per config).
CONFIG_FORMAT_VERSION = 3

#: Fields of every config that are not given to the architecture's ``__init__``: the model
#: keeps them as attributes (``inference`` -> ``model.inference_protocol``), and ``to_dict``
#: leaves them out while they are ``None`` (configs saved before them read back unchanged).
MODEL_LEVEL_FIELDS = ("inference",)


@dataclasses.dataclass
class ArchitectureConfig:
    """Base of the configs of registered architectures.

    Each subclass sets ``architecture`` (the architecture's registered name) and ``parts``
    (field name -> :class:`Part`, or a bare :class:`~rvoslib.registry.Registry` for a part
    that receives nothing from its neighbours), in build order.

    Attributes:
        inference: The registered :class:`~rvoslib.inference_protocols.InferenceProtocol`
            that :class:`~rvoslib.inference.VideoPredictor`, ``rvos predict`` and ``rvos eval``
            run by default (a published preset's: its system's inference script); ``None``:
            rvoslib's own (``"rvoslib"``). Keyword-only; not an ``__init__`` option.
    """

    architecture: ClassVar[str] = ""
    parts: ClassVar[dict[str, Part | Registry]] = {}
    inference: str | None = dataclasses.field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        for field_name in self.parts:
            value = getattr(self, field_name)
            registry = self.part_registry(field_name)
            setattr(self, field_name, normalize_spec(value, registry.kind))
        if self.inference is not None:
            from rvoslib.inference_protocols import INFERENCE_PROTOCOLS

            if not isinstance(self.inference, str) or self.inference not in INFERENCE_PROTOCOLS:
                raise ValueError(
                    f"{type(self).__name__} inference must be a registered inference protocol "
                    f"({', '.join(INFERENCE_PROTOCOLS.names())}) or None, got "
                    f"{self.inference!r}"
                )

    @classmethod
    def field_names(cls) -> list[str]:
        """The config's field names."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def part_slots(cls) -> dict[str, Part]:
        """Field name -> :class:`Part`, in build order."""
        return {
            name: part if isinstance(part, Part) else Part(part) for name, part in cls.parts.items()
        }

    @classmethod
    def part_registry(cls, field_name: str) -> Registry:
        """The registry of the part field ``field_name``."""
        part = cls.parts[field_name]
        return part.registry if isinstance(part, Part) else part

    def options(self) -> dict[str, Any]:
        """The fields that are neither part specs nor :data:`MODEL_LEVEL_FIELDS` (deep
        copies): the architecture's ``__init__`` options."""
        return {
            name: copy.deepcopy(getattr(self, name))
            for name in self.field_names()
            if name not in self.parts and name not in MODEL_LEVEL_FIELDS
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict with ``architecture`` first (``inference`` only when set)."""
        data = copy.deepcopy(dataclasses.asdict(self))
        for name in MODEL_LEVEL_FIELDS:
            if data.get(name) is None:
                data.pop(name, None)
        return {"architecture": self.architecture, **data}

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
            ValueError: a key is not a field (the message lists the fields).
        """
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise ValueError(
                f"{unknown} not fields of {type(self).__name__}; valid fields: {self.field_names()}"
            )
        data = copy.deepcopy(dataclasses.asdict(self))
        for key, value in changes.items():
            if key in self.parts and isinstance(value, dict) and "name" not in value:
                data[key] = {**data[key], **copy.deepcopy(value)}
            else:
                data[key] = copy.deepcopy(value)
        return type(self)(**data)
