"""The world of the synthetic benchmark: objects, their attributes, expressions, shapes.

An object has a colour, a shape and a motion: a direction (``left``, ``right``, ``up``,
``down``) or ``still``. Expressions name it by colour, shape, motion and/or position; motion
words are specific ("moving left"), coarse ("the one that moves") or "still" ("the still one").
A *long* expression names the subject's colour and shape, its other attributes and a true
relation to another object ("the red circle moving left that heads towards the blue square");
its *short* form keeps the subject's appearance ("the red circle").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ATTRIBUTES",
    "COLORS",
    "DIRECTIONS",
    "SHAPES",
    "SyntheticExpression",
    "SyntheticObject",
    "SyntheticScene",
    "describe",
    "exact_flow",
    "expression_kind",
    "referents",
    "relation_clause",
    "shape_mask",
    "short_description",
]

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40), "green": (40, 190, 60), "blue": (40, 90, 240),
    "yellow": (240, 220, 40), "magenta": (210, 50, 210), "cyan": (40, 210, 220),
    "orange": (250, 140, 20), "white": (245, 245, 245),
}  # fmt: skip
SHAPES = ("circle", "square", "triangle", "cross", "diamond")
DIRECTIONS: dict[str, tuple[int, int]] = {
    "left": (0, -1),
    "right": (0, 1),
    "up": (-1, 0),
    "down": (1, 0),
    "still": (0, 0),
}
#: Motion words: a direction, ``moving`` (any direction) or ``still``.
MOVING = "moving"
ATTRIBUTES = ("color", "shape", "motion", "position")
_POSITION_WORDS = {"top": "at the top", "bottom": "at the bottom", "left": "on the left",
                   "right": "on the right"}  # fmt: skip
_POSITION_AXES = {"top": (0, -1), "bottom": (0, 1), "left": (1, -1), "right": (1, 1)}
_MAX_TRIES = 200


@dataclass(frozen=True)
class SyntheticObject:
    """One object. ``centers`` is ``(T, 2)`` float (y, x) pixels; ``radius`` in pixels."""

    obj_id: int
    color: str
    shape: str
    direction: str
    radius: float
    centers: np.ndarray = field(repr=False)
    mean_center: tuple[float, float] = (0.0, 0.0)  # (y, x) over the video: position words


@dataclass(frozen=True)
class SyntheticExpression:
    """A referring expression and the attributes it uses (``position`` holds a direction).

    ``short`` is the subject's appearance only (colour and shape), LoSh's short expression.
    """

    obj_id: int
    text: str
    attributes: dict[str, str]
    short: str = ""


@dataclass(frozen=True)
class SyntheticScene:
    """A generated video: ``frames`` ``(T, H, W, 3)`` uint8, ``labels`` ``(T, H, W)`` uint8
    visible object ids (0 = background)."""

    frames: np.ndarray
    labels: np.ndarray
    objects: list[SyntheticObject]
    expressions: list[SyntheticExpression]


def referents(
    attributes: dict[str, str], objects: Sequence[SyntheticObject], margin: float
) -> list[int]:
    """Ids of the objects an attribute description matches.

    Colour, shape and motion filter the objects (motion ``moving`` matches every object that
    is not still); ``position`` then keeps the object that is extreme in that direction (by
    mean centre) ahead of all other candidates by ``margin`` pixels, or none.
    """
    color, shape = attributes.get("color"), attributes.get("shape")
    motion, where = attributes.get("motion"), attributes.get("position")
    found = [
        obj
        for obj in objects
        if (color is None or obj.color == color)
        and (shape is None or obj.shape == shape)
        and (
            motion is None
            or obj.direction == motion
            or (motion == MOVING and obj.direction != "still")
        )
    ]
    if where is None:
        return [obj.obj_id for obj in found]
    if len(found) < 2:
        return []
    axis, sign = _POSITION_AXES[where]
    scores = sorted((sign * obj.mean_center[axis], obj.obj_id) for obj in found)
    return [scores[-1][1]] if scores[-1][0] >= scores[-2][0] + margin else []


def describe(attributes: dict[str, str]) -> str:
    """The expression of an attribute description.

    Example:
        >>> describe({"color": "red", "shape": "circle", "motion": "left"})
        'the red circle moving left'
        >>> describe({"motion": "moving"}), describe({"shape": "square", "motion": "still"})
        ('the one that moves', 'the still square')
    """
    color, shape, motion = (attributes.get(k) for k in ("color", "shape", "motion"))
    words = ["the"]
    if motion == "still":
        words.append("still")
    if color:
        words.append(color)
    words.append(shape or ("object" if color or motion not in (MOVING, "still") else "one"))
    if motion == MOVING:
        words.append("that moves")
    elif motion and motion != "still":
        words.append(f"moving {motion}")
    if "position" in attributes:
        words.append(_POSITION_WORDS[attributes["position"]])
    return " ".join(words)


def short_description(attributes: dict[str, str], obj: SyntheticObject) -> str:
    """LoSh's short expression: the subject's colour and shape, nothing else.

    Example:
        >>> obj = SyntheticObject(1, "red", "circle", "left", 3.0, np.zeros((2, 2)))
        >>> short_description({"motion": "left"}, obj)
        'the red circle'
    """
    return f"the {obj.color} {obj.shape}"


def relation_clause(target: SyntheticObject, objects: Sequence[SyntheticObject]) -> str:
    """A true relation of ``target`` to another object, as a clause.

    ``that heads towards/away from the <colour> <shape>`` when the target moves and its
    direction points within 45 degrees of another object (or away from it); otherwise
    ``next to the <colour> <shape>`` for the nearest object. Empty without another object.
    """
    others = [obj for obj in objects if obj.obj_id != target.obj_id]
    if not others:
        return ""
    start = np.asarray(target.centers[0], dtype=np.float64)
    step = np.asarray(DIRECTIONS[target.direction], dtype=np.float64)
    nearest = min(others, key=lambda obj: float(np.linalg.norm(obj.centers[0] - start)))
    if step.any():
        for obj in sorted(others, key=lambda o: float(np.linalg.norm(o.centers[0] - start))):
            offset = np.asarray(obj.centers[0], dtype=np.float64) - start
            cosine = float(offset @ step) / max(float(np.linalg.norm(offset)), 1e-9)
            if cosine > 0.7071:
                return f"that heads towards the {obj.color} {obj.shape}"
            if cosine < -0.7071:
                return f"that heads away from the {obj.color} {obj.shape}"
    return f"next to the {nearest.color} {nearest.shape}"


def expression_kind(attributes: dict[str, str]) -> str:
    """The kind of an expression: the attributes it uses, ``+``-joined in a fixed order.

    Example:
        >>> expression_kind({"shape": "circle", "color": "red"})
        'color+shape'
    """
    return "+".join(name for name in ATTRIBUTES if name in attributes)


def shape_mask(shape: str, dy: np.ndarray, dx: np.ndarray, radius: float) -> np.ndarray:
    """Pixels inside ``shape`` of ``radius`` at offsets ``(dy, dx)`` from its centre."""
    ady, adx = np.abs(dy), np.abs(dx)
    if shape == "circle":
        return dy * dy + dx * dx <= radius * radius
    if shape == "square":
        return np.maximum(ady, adx) <= 0.85 * radius
    if shape == "diamond":
        return ady + adx <= 1.15 * radius
    if shape == "cross":
        arm = 0.38 * radius
        return ((adx <= arm) & (ady <= radius)) | ((ady <= arm) & (adx <= radius))
    top, bottom, half = -radius, 0.8 * radius, 1.05 * radius  # triangle pointing up
    return (dy >= top) & (dy <= bottom) & (adx <= half * (dy - top) / (bottom - top))


def exact_flow(scene: SyntheticScene) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward flow ``(T - 1, 2, H, W)`` float32 ``(dx, dy)`` of a scene: each
    object's pixels move by its centre's step, the background stays. Forward flow is at frame
    ``t``'s pixels (towards ``t + 1``), backward flow at frame ``t + 1``'s pixels."""
    frames, height, width = scene.labels.shape
    forward = np.zeros((max(frames - 1, 0), 2, height, width), np.float32)
    backward = np.zeros_like(forward)
    for obj in scene.objects:
        steps = np.diff(obj.centers, axis=0)  # (T - 1, 2) as (dy, dx)
        for t in range(frames - 1):
            here, there = scene.labels[t] == obj.obj_id, scene.labels[t + 1] == obj.obj_id
            forward[t, 0][here], forward[t, 1][here] = steps[t, 1], steps[t, 0]
            backward[t, 0][there], backward[t, 1][there] = -steps[t, 1], -steps[t, 0]
    return forward, backward
