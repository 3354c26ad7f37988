"""Registries of model parts and architectures, and building parts from specs.

Every kind of part has a :class:`Registry`. A *spec* names a registered part and its keyword
arguments, ``{"name": "conv3d", "expansion": 2}``; :meth:`Registry.build` turns it into a module,
adding the keyword arguments that come from the neighbouring parts (a temporal module receives
``channels`` from the fusion before it). What each kind receives, and what it must provide:

========================  ===========================  ==========================================
registry                  receives from the builder    provides
========================  ===========================  ==========================================
``BACKBONES``             ``pretrained``               ``out_channels``, ``strides`` (lists, fine
                                                       to coarse); ``forward(frames (B, T, 3, H,
                                                       W)) -> [(B, T, C_i, H/s_i, W/s_i)]``
``TEXT_ENCODERS``         ``pretrained``               ``out_dim``, ``max_length``,
                                                       ``tokenize(texts)``; ``forward(text_ids,
                                                       text_mask) -> TextFeatures``
``FUSIONS``               ``visual_channels``,         ``out_channels``; ``forward(visual (B, T,
                          ``text_dim``                 C, h, w), text) -> (B, T, C', h, w)``
``TEMPORAL_MODULES``      ``channels``                 ``forward(features (B, T, C, h, w)) ->
                                                       (B, T, C, h, w)``
``HEADS``                 ``in_channels``,             ``forward(fused (B, T, C, h, w), *,
                          ``skip_channels`` (coarse    skips, text, output_size) -> (B, T, 1,
                          to fine), ``text_dim``,      H, W)`` logits
                          ``skip_strides``
``TRANSFORMERS``          ``visual_channels`` (of      ``d_model``, ``num_queries``;
                          the levels it takes, fine    ``forward(levels [(B, T, C_i, h_i, w_i)],
                          to coarse), ``text_dim``     text) -> dict`` with ``"queries" (Ly, B,
                                                       T, N, D)``, ``"memory"`` (the fused levels
                                                       ``[(B, T, D, h_i, w_i)]``) and optionally
                                                       ``"boxes" (Ly, B, T, N, 4)``,
                                                       ``"text"`` (fused TextFeatures)
``PIXEL_DECODERS``        ``in_channels`` (fine to     ``out_channels``; ``forward(levels, text)
                          coarse), ``text_dim``        -> (B, T, P, h_0, w_0)`` (finest stride)
``MASK_HEADS``            ``query_dim``,               ``forward(queries (Ly, B, T, N, D),
                          ``pixel_channels``           pixels (B, T, P, h, w), **extras) ->
                                                       (Ly, B, T, N, h, w)`` mask logits
``ARCHITECTURES``         (parts, built by             an :class:`~rvoslib.models.RVOSModel`
                          ``from_config``)             subclass
========================  ===========================  ==========================================

A part receives only the builder's keywords that its ``__init__`` names. Registering a class
also records, on every instance, the arguments it was built with, so that a model whose parts
were built by hand or swapped later still saves the right specs (:meth:`Registry.spec_of`).

Example:
    >>> from torch import nn
    >>> @TEMPORAL_MODULES.register("doc_example_gru")
    ... class FrameGRU(nn.Module):
    ...     def __init__(self, channels: int, layers: int = 1) -> None:
    ...         super().__init__()
    ...         self.gru = nn.GRU(channels, channels, layers, batch_first=True)
    >>> part = TEMPORAL_MODULES.build({"name": "doc_example_gru", "layers": 2}, channels=8)
    >>> TEMPORAL_MODULES.spec_of(part)
    {'name': 'doc_example_gru', 'layers': 2}
    >>> TEMPORAL_MODULES.unregister("doc_example_gru")
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from torch import nn

__all__ = [
    "ARCHITECTURES",
    "BACKBONES",
    "FUSIONS",
    "HEADS",
    "MASK_HEADS",
    "PIXEL_DECODERS",
    "TEMPORAL_MODULES",
    "TEXT_ENCODERS",
    "TRANSFORMERS",
    "Registry",
    "normalize_spec",
]

#: Arguments that only matter while building (weights to load), never saved in a spec.
BUILD_ONLY_ARGUMENTS = ("pretrained", "checkpoint_path")
_ARGUMENTS_ATTRIBUTE = "_rvos_part_arguments"


def normalize_spec(spec: str | Mapping[str, Any], kind: str = "part") -> dict[str, Any]:
    """A spec as a new dict: a bare name becomes ``{"name": name}``.

    Raises:
        TypeError: ``spec`` is neither a string nor a mapping.
        ValueError: the mapping has no ``"name"``.
    """
    if isinstance(spec, str):
        return {"name": spec}
    if not isinstance(spec, Mapping):
        raise TypeError(
            f"a {kind} spec must be a dict like {{'name': ..., <keyword>: ...}} or a name, "
            f"got {type(spec).__name__}"
        )
    if "name" not in spec:
        raise ValueError(f"a {kind} spec needs a 'name' key, got keys {sorted(spec)}")
    return dict(spec)


class _Entry:
    """One registered name: a class and the keyword arguments the name fixes."""

    def __init__(self, name: str, cls: type, fixed: dict[str, Any]) -> None:
        self.name, self.cls, self.fixed = name, cls, fixed


class Registry:
    """Names -> part classes of one kind (see the module docstring for the contracts).

    Args:
        kind: What the registry holds, used in messages (``"temporal module"``).
        injected: Keyword arguments the builder supplies from the neighbouring parts; they are
            left out of saved specs and may not appear in a spec.
    """

    def __init__(self, kind: str, injected: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.injected = tuple(injected)
        self._entries: dict[str, _Entry] = {}

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def register(self, name: str | None = None, **fixed: Any) -> Callable[[type], type]:
        """Class decorator adding the class under ``name`` (default: the class name).

        Args:
            name: The spec name.
            **fixed: Keyword arguments this name implies, e.g.
                ``BACKBONES.register("resnet50", model="resnet50")``: one class may be
                registered under several names.

        Raises:
            ValueError: the name is taken by another class.
        """

        def decorator(cls: type) -> type:
            key = name or cls.__name__
            existing = self._entries.get(key)
            if existing is not None and existing.cls is not cls:
                raise ValueError(
                    f"{self.kind} {key!r} is already registered "
                    f"({existing.cls.__module__}.{existing.cls.__qualname__})"
                )
            _record_arguments(cls)
            self._entries[key] = _Entry(key, cls, dict(fixed))
            return cls

        return decorator

    def unregister(self, name: str) -> None:
        """Remove a name (for tests and interactive sessions)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> type:
        """The class registered under ``name``.

        Raises:
            KeyError: unknown name; the message lists the registered ones.
        """
        return self._entry(name).cls

    def _entry(self, name: str) -> _Entry:
        if name not in self._entries:
            raise KeyError(
                f"unknown {self.kind} {name!r}; registered {self.kind}s: "
                f"{', '.join(self.names()) or '(none)'}. A part from your own code must be "
                "registered (its module imported) before it is built or loaded"
            )
        return self._entries[name]

    def accepted_keywords(self, name: str) -> list[str]:
        """The keywords a spec of ``name`` may set (neither injected nor fixed by the name)."""
        entry = self._entry(name)
        parameters, _ = _init_parameters(entry.cls)
        return [p for p in parameters if p not in entry.fixed and p not in self.injected]

    def build(self, spec: str | Mapping[str, Any], **injected: Any) -> nn.Module:
        """Build a part from its spec.

        Args:
            spec: ``{"name": <registered name>, **keyword_arguments}`` or a bare name.
            **injected: Keywords from the neighbouring parts (``channels=...``) and build
                options (``pretrained=...``); each is passed only if the class names it.

        Raises:
            KeyError: unknown name (lists the registered names).
            ValueError: the spec has a keyword the class does not accept (lists the accepted
                ones), or sets one the builder supplies.
        """
        spec = normalize_spec(spec, self.kind)
        entry = self._entry(spec.pop("name"))
        parameters, open_ended = _init_parameters(entry.cls)
        supplied = sorted(set(spec) & set(self.injected))
        if supplied:
            raise ValueError(
                f"{self.kind} {entry.name!r}: {supplied} are set by the builder from the "
                "neighbouring parts; remove them from the spec"
            )
        unknown = sorted(k for k in spec if k not in parameters or k in entry.fixed)
        if unknown and not open_ended:
            raise ValueError(
                f"{self.kind} {entry.name!r} got unknown keyword(s) {unknown}; it accepts: "
                f"{', '.join(self.accepted_keywords(entry.name)) or '(nothing)'}"
            )
        offered = {k: v for k, v in injected.items() if k in parameters}
        return entry.cls(**entry.fixed, **offered, **spec)

    def spec_of(self, module: nn.Module) -> dict[str, Any]:
        """The spec that rebuilds ``module`` (without injected and build-only arguments).

        Raises:
            ValueError: the module's class is not registered here (the message says how to
                register it).
        """
        recorded = module.__dict__.get(_ARGUMENTS_ATTRIBUTE)
        entries = [e for e in self._entries.values() if e.cls is type(module)]
        if recorded is None or recorded[0] is not type(module) or not entries:
            raise ValueError(
                f"{type(module).__module__}.{type(module).__qualname__} is not a registered "
                f"{self.kind}: decorate it with @{self.kind.upper().replace(' ', '_')}S"
                f".register('<name>') so that models using it can be saved and restored; "
                f"registered: {', '.join(self.names())}"
            )
        arguments = recorded[1]
        for entry in entries:  # the name whose fixed arguments the instance was built with
            if all(arguments.get(k, _MISSING) == v for k, v in entry.fixed.items()):
                break
        else:
            entry = entries[0]
        skipped = set(entry.fixed) | set(self.injected) | set(BUILD_ONLY_ARGUMENTS)
        spec = {"name": entry.name}
        spec.update({k: _plain(v) for k, v in arguments.items() if k not in skipped})
        if hasattr(module, "adjust_saved_spec"):
            spec = module.adjust_saved_spec(spec)
        return spec


_MISSING = object()


def _plain(value: Any) -> Any:
    """Tuples as lists, so that a spec equals its JSON round trip."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _init_parameters(cls: type) -> tuple[list[str], bool]:
    """Keyword-passable ``__init__`` parameters, and whether it takes ``**kwargs``."""
    signature = inspect.signature(inspect.unwrap(cls.__init__))
    names, open_ended = [], False
    for parameter in list(signature.parameters.values())[1:]:
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            open_ended = True
        elif parameter.kind is not inspect.Parameter.VAR_POSITIONAL:
            names.append(parameter.name)
    return names, open_ended


def _record_arguments(cls: type) -> None:
    """Wrap ``cls.__init__`` to store the arguments of every instance (once per class)."""
    if getattr(cls.__dict__.get("__init__"), "_records_arguments", False):
        return
    original = cls.__init__
    signature = inspect.signature(inspect.unwrap(original))

    @functools.wraps(original)
    def __init__(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        if _ARGUMENTS_ATTRIBUTE not in self.__dict__:  # the outermost class records
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            arguments: dict[str, Any] = {}
            for key, value in list(bound.arguments.items())[1:]:
                kind = signature.parameters[key].kind
                if kind is inspect.Parameter.VAR_KEYWORD:
                    arguments.update(value)
                elif kind is not inspect.Parameter.VAR_POSITIONAL:
                    arguments[key] = value
            object.__setattr__(self, _ARGUMENTS_ATTRIBUTE, (cls, arguments))
        original(self, *args, **kwargs)

    __init__._records_arguments = True  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[method-assign]


BACKBONES = Registry("backbone", injected=("pretrained",))
TEXT_ENCODERS = Registry("text encoder", injected=("pretrained",))
FUSIONS = Registry("fusion", injected=("visual_channels", "text_dim"))
TEMPORAL_MODULES = Registry("temporal module", injected=("channels",))
HEADS = Registry("head", injected=("in_channels", "skip_channels", "skip_strides", "text_dim"))
TRANSFORMERS = Registry("transformer", injected=("visual_channels", "text_dim"))
PIXEL_DECODERS = Registry("pixel decoder", injected=("in_channels", "text_dim"))
MASK_HEADS = Registry("mask head", injected=("query_dim", "pixel_channels"))
ARCHITECTURES = Registry("architecture")
