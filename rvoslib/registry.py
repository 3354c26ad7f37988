"""One registry API for everything rvoslib looks up by name.

A :class:`Registry` maps names to objects of one kind: part classes (backbones, fusions,
criteria, ...), architectures, preset config factories, dataset builders. Every kind has the
same calls: ``register`` (a decorator, or ``register(name, obj)``), ``get``, ``list`` (sorted
names, optionally filtered by a shell-style pattern), ``unregister``, and errors that list the
valid names. Registries of part classes also build parts from *specs*
(``{"name": "conv3d", "expansion": 2}``) and give back the spec of a built part
(:meth:`Registry.build`, :meth:`Registry.spec_of`); the registries of model parts are in
:mod:`rvoslib.models.registry`.

Example:
    >>> COLOURS = Registry("colour")
    >>> _ = COLOURS.register("red", (255, 0, 0))
    >>> _ = COLOURS.register("rose", (255, 0, 127), description="a pink red")
    >>> COLOURS.list("r*"), COLOURS.get("red"), COLOURS.describe("rose")
    (['red', 'rose'], (255, 0, 0), 'a pink red')
"""

from __future__ import annotations

import fnmatch
import functools
import inspect
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

__all__ = ["BUILD_ONLY_ARGUMENTS", "Registry", "normalize_spec"]

#: Arguments that only matter while building (weights to load), never saved in a spec.
BUILD_ONLY_ARGUMENTS = ("pretrained", "checkpoint_path")
_MISSING: Any = object()
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
    """One registered name: the object (a class, a function, a value), the keyword arguments
    the name fixes (part classes) and a one-line description."""

    def __init__(self, name: str, obj: Any, fixed: dict[str, Any], description: str) -> None:
        self.name, self.cls, self.fixed, self.description = name, obj, fixed, description


class Registry:
    """Names -> objects of one kind (see the module docstring).

    Args:
        kind: What the registry holds, used in messages (``"temporal module"``).
        injected: For part classes: keyword arguments the builder supplies from the
            neighbouring parts; they are left out of saved specs and may not appear in a spec.
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

    def list(self, pattern: str | None = None) -> list[str]:
        """The registered names matching a shell-style ``pattern`` (``"mttr*"``), sorted;
        every name when ``pattern`` is None."""
        names = self.names()
        return names if pattern is None else fnmatch.filter(names, pattern)

    def describe(self, name: str) -> str:
        """The description ``name`` was registered with ("" if none).

        Raises:
            KeyError: unknown name (lists the registered names).
        """
        return self._entry(name).description

    def register(
        self, name: str | None = None, obj: Any = _MISSING, *, description: str = "", **fixed: Any
    ) -> Any:
        """Add an object under ``name``: ``@registry.register("name")`` on a class or function
        (default name: its ``__name__``), or ``registry.register("name", obj)``.

        Args:
            name: The name to look it up by (a spec's ``"name"``).
            obj: The object, when not used as a decorator.
            description: One line shown in listings.
            **fixed: For part classes: keyword arguments this name implies, e.g.
                ``BACKBONES.register("resnet50", model="resnet50")``: one class may be
                registered under several names.

        Returns:
            ``obj`` (or the decorator, which returns the decorated object unchanged).

        Raises:
            ValueError: the name is taken by another object.
        """

        def decorator(target: Any) -> Any:
            key = name or target.__name__
            existing = self._entries.get(key)
            if existing is not None and existing.cls is not target:
                owner = getattr(existing.cls, "__qualname__", type(existing.cls).__name__)
                raise ValueError(
                    f"{self.kind} {key!r} is already registered "
                    f"({getattr(existing.cls, '__module__', '')}.{owner}); unregister it first "
                    "or choose another name"
                )
            if isinstance(target, type):
                _record_arguments(target)
            self._entries[key] = _Entry(key, target, dict(fixed), description)
            return target

        return decorator if obj is _MISSING else decorator(obj)

    def unregister(self, name: str) -> None:
        """Remove a name (for tests and interactive sessions)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> Any:
        """The object registered under ``name``.

        Raises:
            KeyError: unknown name; the message lists the registered ones.
        """
        return self._entry(name).cls

    def _entry(self, name: str) -> _Entry:
        if name not in self._entries:
            raise KeyError(
                f"unknown {self.kind} {name!r}; registered {self.kind}s: "
                f"{', '.join(self.names()) or '(none)'}. One from your own code must be "
                "registered (its module imported) before it is used"
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
