"""A procedurally generated RVOS dataset: coloured shapes moving over a textured background.

Each video holds a few objects (a colour from a small palette, a shape, a straight motion in
one of four directions). Each expression names one object by a combination of attributes
("the red circle", "the square moving left", "the green object at the top") and is checked to
match exactly that object, so a model that ignores the text can do no better than guessing
among the objects. Videos are generated lazily from ``(seed, video index)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import combinations, product
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from rvoslib.data.synthetic_scene import (
    _POSITION_WORDS,
    ATTRIBUTES,
    COLORS,
    DIRECTIONS,
    MOVING,
    SHAPES,
    SyntheticExpression,
    SyntheticObject,
    SyntheticScene,
    describe,
    exact_flow,
    expression_kind,
    referents,
    relation_clause,
    shape_mask,
    short_description,
)
from rvoslib.data.transforms import to_tensors

__all__ = [
    "ATTRIBUTES",
    "COLORS",
    "DIRECTIONS",
    "SHAPES",
    "SyntheticExpression",
    "SyntheticObject",
    "SyntheticRVOSDataset",
    "SyntheticScene",
    "referents",
]

_MAX_TRIES = 200


def _check(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def _check_subset(name: str, value: Sequence[str], allowed: Sequence[str]) -> None:
    if isinstance(value, str) or not value or not set(value) <= set(allowed):
        raise ValueError(f"{name} must be a non-empty list from {list(allowed)}, got {value!r}")


class SyntheticRVOSDataset(Dataset):
    """Coloured shapes over a textured background, each item one (video, expression).

    Items have the same keys as the real datasets (``frames`` ``(T, 3, H, W)`` normalised,
    ``masks`` ``(T, H, W)`` exact visible pixels of the target, ``valid`` all True, ...).

    Args:
        num_videos: Number of videos; the dataset has ``num_videos * expressions_per_video`` items.
        num_frames: Frames per video.
        size: Frame size, an int or ``(H, W)``.
        min_objects: Fewest objects per video.
        max_objects: Most objects per video.
        seed: Video ``i`` depends only on ``(seed, i)``.
        expressions_per_video: Expressions per video (different targets where possible).
        object_size: Range of object diameters, as a fraction of the shorter side.
        speed: Range of speeds, in fractions of the shorter side per frame (reduced where the
            object would leave the frame; objects never bounce).
        texture_strength: Contrast of the background texture in [0, 1] (0 = flat grey).
        noise: Standard deviation of pixel noise, as a fraction of 255.
        colors: Palette names (keys of ``COLORS``).
        shapes: Shape names (from ``SHAPES``).
        directions: Motions (keys of ``DIRECTIONS``; ``still`` objects do not move).
        attributes: Attributes expressions may use (from ``ATTRIBUTES``; motion is left out
            when ``num_frames`` is 1).
        max_attributes: Most attributes in one expression.
        attribute_sharing: Probability that an object copies the colour, shape or direction of
            an earlier one (independently per attribute), making distractors similar.
        min_visible: Every object keeps at least this fraction of its area visible in every
            frame (limits occlusion).
        position_margin: How far (fraction of the frame) an object must lead the others to be
            "at the top", "on the left", ...
        transform: Optional clip transform on the numpy sample.
        cache: Keep every generated video in memory (about ``T * H * W * 4`` bytes each), so
            later epochs skip generation. Each DataLoader worker holds its own cache, so use it
            with ``num_workers=0`` or ``persistent_workers=True``.
        long_expressions: Append a true relation to another object ("the red circle that
            moves towards the blue square"); items then carry ``short_expression`` ("the red
            circle"), LoSh's short form.
        with_flow: Items carry the exact optical flow, ``flow_forward`` and ``flow_backward``
            ``(T - 1, 2, H, W)`` float32 ``(dx, dy)`` pixels from frame ``t`` to ``t + 1``
            (at frame ``t``'s pixels) and back (at frame ``t + 1``'s pixels).

    Example:
        >>> dataset = SyntheticRVOSDataset(num_videos=2, num_frames=4, size=64)
        >>> item = dataset[0]
        >>> tuple(item["frames"].shape), tuple(item["masks"].shape)
        ((4, 3, 64, 64), (4, 64, 64))
    """

    def __init__(
        self,
        num_videos: int = 64,
        num_frames: int = 8,
        size: int | Sequence[int] = 64,
        min_objects: int = 2,
        max_objects: int = 4,
        seed: int = 0,
        *,
        expressions_per_video: int = 1,
        object_size: tuple[float, float] = (0.25, 0.4),
        speed: tuple[float, float] = (0.03, 0.06),
        texture_strength: float = 0.25,
        noise: float = 0.02,
        colors: Sequence[str] = ("red", "green", "blue", "yellow"),
        shapes: Sequence[str] = ("circle", "square", "triangle", "cross"),
        directions: Sequence[str] = ("left", "right", "up", "down", "still"),
        attributes: Sequence[str] = ATTRIBUTES,
        max_attributes: int = 2,
        attribute_sharing: float = 0.3,
        min_visible: float = 0.6,
        position_margin: float = 0.15,
        transform: Any = None,
        cache: bool = False,
        long_expressions: bool = False,
        with_flow: bool = False,
    ) -> None:
        height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        _check(num_videos >= 1, "num_videos", num_videos, "a positive int")
        _check(num_frames >= 1, "num_frames", num_frames, "a positive int")
        _check(min(height, width) >= 8, "size", size, "an int or (H, W), at least 8")
        _check(1 <= min_objects <= max_objects, "min_objects", min_objects, "in [1, max_objects]")
        _check(max_objects <= 255, "max_objects", max_objects, "at most 255")
        _check(expressions_per_video >= 1, "expressions_per_video", expressions_per_video, ">= 1")
        _check(0 < object_size[0] <= object_size[1] < 1, "object_size", object_size, "0<lo<=hi<1")
        _check(0 <= speed[0] <= speed[1], "speed", speed, "0 <= lo <= hi")
        _check(0 <= texture_strength <= 1, "texture_strength", texture_strength, "in [0, 1]")
        _check(noise >= 0, "noise", noise, ">= 0")
        _check_subset("colors", colors, COLORS)
        _check_subset("shapes", shapes, SHAPES)
        _check_subset("directions", directions, DIRECTIONS)
        _check_subset("attributes", attributes, ATTRIBUTES)
        _check(max_attributes >= 1, "max_attributes", max_attributes, ">= 1")
        _check(0 <= attribute_sharing <= 1, "attribute_sharing", attribute_sharing, "in [0, 1]")
        _check(0 <= min_visible <= 1, "min_visible", min_visible, "in [0, 1]")
        _check(position_margin >= 0, "position_margin", position_margin, ">= 0")
        self.num_videos, self.num_frames, self.size = num_videos, num_frames, (height, width)
        self.min_objects, self.max_objects, self.seed = min_objects, max_objects, seed
        self.expressions_per_video = expressions_per_video
        self.object_size, self.speed = tuple(object_size), tuple(speed)
        self.texture_strength, self.noise = texture_strength, noise
        self.colors, self.shapes = tuple(colors), tuple(shapes)
        self.directions, self.attributes = tuple(directions), tuple(attributes)
        # motion cannot be seen in a single frame: such videos are described otherwise
        self._usable = tuple(a for a in self.attributes if a != "motion" or num_frames > 1)
        _check(
            bool(self._usable), "attributes", attributes, "more than motion when num_frames is 1"
        )
        self.max_attributes, self.attribute_sharing = max_attributes, attribute_sharing
        self.min_visible, self.position_margin = min_visible, position_margin
        if with_flow and transform is not None:
            raise ValueError(
                "with_flow=True needs transform=None (a transform would not move the flow)"
            )
        self.transform = transform
        self.cache = cache
        self.long_expressions, self.with_flow = long_expressions, with_flow
        self._scenes: dict[int, SyntheticScene] = {}
        self._grid = (
            np.arange(height, dtype=np.float32)[None, :, None] + 0.5,
            np.arange(width, dtype=np.float32)[None, None, :] + 0.5,
        )

    def __len__(self) -> int:
        return self.num_videos * self.expressions_per_video

    def video_id(self, video: int) -> str:
        """Name of video ``video``, e.g. ``"syn0_00003"``."""
        return f"syn{self.seed}_{video:05d}"

    def scene(self, video: int) -> SyntheticScene:
        """Generate video ``video`` (deterministic in ``(seed, video)``)."""
        if not 0 <= video < self.num_videos:
            raise IndexError(f"video {video} out of range for {self.num_videos} videos")
        scene = self._scenes.get(video)
        if scene is None:
            scene = self._generate(video)
            if self.cache:  # read-only: a transform must not alter the cached video
                scene.frames.flags.writeable = scene.labels.flags.writeable = False
                self._scenes[video] = scene
        return scene

    def _generate(self, video: int) -> SyntheticScene:
        rng = np.random.default_rng([self.seed, video])
        for _ in range(_MAX_TRIES):
            objects = self._sample_objects(rng)
            labels, visible_ok = self._render_labels(objects)
            if not visible_ok:
                continue
            expressions = self._choose_expressions(rng, objects)
            if expressions:
                return SyntheticScene(
                    self._paint(rng, objects, labels), labels, objects, expressions
                )
        raise ValueError(
            f"could not generate video {video} with a uniquely describable object in {_MAX_TRIES} "
            "tries; allow more colors/shapes/directions/attributes or fewer objects"
        )

    def _sample_objects(self, rng: np.random.Generator) -> list[SyntheticObject]:
        height, width = self.size
        short, steps = min(height, width), max(self.num_frames - 1, 1)
        count = int(rng.integers(self.min_objects, self.max_objects + 1))
        chosen: dict[str, list[str]] = {"color": [], "shape": [], "direction": []}
        pools = {"color": self.colors, "shape": self.shapes, "direction": self.directions}
        objects = []
        for index in range(count):
            for name, pool in pools.items():
                if index > 0 and rng.random() < self.attribute_sharing:
                    chosen[name].append(chosen[name][int(rng.integers(index))])
                else:
                    chosen[name].append(pool[int(rng.integers(len(pool)))])
            radius = rng.uniform(*self.object_size) * short / 2
            step_y, step_x = DIRECTIONS[chosen["direction"][index]]
            extent = height if step_y else width
            room = extent - 2 * radius
            travel = min(rng.uniform(*self.speed) * short * steps, 0.9 * room)
            along = rng.uniform(radius, radius + room - travel) + (
                travel if step_y + step_x < 0 else 0
            )
            across = rng.uniform(radius, (width if step_y else height) - radius)
            offsets = np.linspace(0, travel, self.num_frames) * (step_y + step_x)
            centers = np.stack([along + offsets, np.full_like(offsets, across)], axis=1)
            if not step_y:
                centers = centers[:, ::-1]
            centers = np.ascontiguousarray(centers)
            objects.append(
                SyntheticObject(
                    obj_id=index + 1,
                    color=chosen["color"][index],
                    shape=chosen["shape"][index],
                    direction=chosen["direction"][index],
                    radius=float(radius),
                    centers=centers,
                    mean_center=(float(centers[:, 0].mean()), float(centers[:, 1].mean())),
                )
            )
        return objects

    def _render_labels(self, objects: list[SyntheticObject]) -> tuple[np.ndarray, bool]:
        grid_y, grid_x = self._grid
        labels = np.zeros((self.num_frames, *self.size), np.uint8)
        areas = []
        for obj in objects:
            dy = grid_y - obj.centers[:, 0, None, None].astype(np.float32)
            dx = grid_x - obj.centers[:, 1, None, None].astype(np.float32)
            inside = shape_mask(obj.shape, dy, dx, obj.radius)
            labels[inside] = obj.obj_id
            areas.append(inside.sum(axis=(1, 2)))
        for obj, area in zip(objects, areas):
            visible = (labels == obj.obj_id).sum(axis=(1, 2))
            if np.any(visible < self.min_visible * area) or np.any(area == 0):
                return labels, False
        return labels, True

    def _choose_expressions(
        self, rng: np.random.Generator, objects: list[SyntheticObject]
    ) -> list[SyntheticExpression]:
        margin = self.position_margin * min(self.size)
        options: dict[int, dict[tuple[str, ...], list[dict[str, str]]]] = {}
        for obj in objects:
            motions = [obj.direction] + ([MOVING] if obj.direction != "still" else [])
            for count in range(1, self.max_attributes + 1):
                for names in combinations(self._usable, count):
                    wheres = _POSITION_WORDS if "position" in names else [None]
                    for where, motion in product(wheres, motions if "motion" in names else [None]):
                        values = {"color": obj.color, "shape": obj.shape, "motion": motion}
                        attrs = {name: values[name] for name in names if name != "position"}
                        if where is not None:
                            attrs["position"] = where
                        if referents(attrs, objects, margin) == [obj.obj_id]:
                            options.setdefault(obj.obj_id, {}).setdefault(names, []).append(attrs)
        if not options:
            return []
        targets = [int(t) for t in rng.permutation(sorted(options))]
        expressions = []
        for index in range(self.expressions_per_video):
            target = targets[index % len(targets)]
            kinds = list(options[target])  # attribute combinations; shorter ones are likelier
            weights = np.array([0.5 ** len(names) for names in kinds])
            names = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
            attrs = options[target][names][int(rng.integers(len(options[target][names])))]
            subject = objects[target - 1]
            text = describe(attrs)
            if self.long_expressions:  # the subject's appearance, its attributes, a relation
                named = {**attrs, "color": subject.color, "shape": subject.shape}
                text = f"{describe(named)} {relation_clause(subject, objects)}".strip()
            short = short_description(attrs, subject)
            expressions.append(SyntheticExpression(target, text, attrs, short))
        return expressions

    def _paint(
        self, rng: np.random.Generator, objects: list[SyntheticObject], labels: np.ndarray
    ) -> np.ndarray:
        height, width = self.size
        coarse = rng.random((max(2, height // 8), max(2, width // 8)), dtype=np.float32)
        texture = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC) - 0.5
        base = rng.uniform(90, 150) + rng.uniform(-12, 12, size=3)
        background = base + (2 * 255 * self.texture_strength) * texture[..., None]
        background = np.clip(background, 0, 255).astype(np.uint8)
        lut = np.zeros((len(objects) + 1, 3), np.uint8)
        lut[1:] = [COLORS[obj.color] for obj in objects]
        frames = np.where((labels == 0)[..., None], background, np.take(lut, labels, axis=0))
        amplitude = min(round(self.noise * 255 * 3**0.5), 127)  # uniform noise of that std
        if amplitude > 0:
            flat = frames.reshape(-1, width, 3)
            table = ((np.arange(256) * (2 * amplitude + 1)) >> 8).astype(np.uint8)
            offsets = cv2.LUT(np.frombuffer(rng.bytes(flat.size), np.uint8), table)
            flat = cv2.add(flat, offsets.reshape(flat.shape))
            frames = cv2.subtract(flat, (amplitude,) * 3 + (0,)).reshape(frames.shape)
        return frames

    def load_sample(self, index: int) -> dict[str, Any]:
        """Item ``index`` before tensor conversion (numpy frames ``(T, H, W, 3)`` uint8)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        video, slot = divmod(index % len(self), self.expressions_per_video)
        scene = self.scene(video)
        expression = scene.expressions[slot]
        sample = {
            "frames": scene.frames,
            "masks": (scene.labels == expression.obj_id).astype(np.uint8),
            "valid": np.ones(self.num_frames, bool),
            "expression": expression.text,
            "video_id": self.video_id(video),
            "frame_ids": [f"{t:05d}" for t in range(self.num_frames)],
            "obj_id": expression.obj_id,
            "exp_id": str(slot),
            "orig_size": self.size,
            "unpadded_size": self.size,
            "kind": expression_kind(expression.attributes),
        }
        if self.long_expressions:
            sample["short_expression"] = expression.short
        if self.with_flow:
            sample["flow_forward"], sample["flow_backward"] = exact_flow(scene)
        return self.transform(sample) if self.transform is not None else sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One item in the format of :class:`~rvoslib.data.RefDAVISDataset` (plus ``kind``,
        the expression's attributes, e.g. ``"color+motion"``)."""
        item = to_tensors(self.load_sample(index))
        for key in ("flow_forward", "flow_backward"):
            if key in item:
                item[key] = torch.from_numpy(item[key])
        return item

    def write_davis(
        self,
        root: str | os.PathLike,
        split: str = "train",
        frame_format: str = "jpg",
        quality: int = 95,
        resolution: str = "480p",
    ) -> Path:
        """Write the dataset in the DAVIS-2017 layout with a ``meta_expressions.json``
        (:func:`rvoslib.data.synthetic_io.write_davis_layout`)."""
        from rvoslib.data.synthetic_io import write_davis_layout

        return write_davis_layout(self, root, split, frame_format, quality, resolution)
