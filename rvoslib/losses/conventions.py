"""Named conventions of the set criterion: rvoslib's own, MTTR's and ReferFormer's.

The matcher (:class:`~rvoslib.losses.HungarianMatcher`) and the criterion
(:class:`~rvoslib.losses.SetCriterion`) read one :class:`SetConventions`. Each field is a
choice in which the published systems differ from rvoslib's own (the ``"rvoslib"`` default):

=====================  ==============================  ====================================
field                  ``"rvoslib"`` (default)         the originals
=====================  ==============================  ====================================
``visibility``         ``"masks"``: visible where the  ``"labels"`` (MTTR): the batch's
                       (training-size) mask is         ``visible`` labels of the referred
                       non-empty                       object (MTTR's ``is_ref_inst_visible``,
                                                       computed on the full-size mask), all
                                                       frames visible when the batch has none
``mask_resolution``    ``"upsample"``: predictions     ``"subsample"`` (ReferFormer): targets
                       upsampled (bilinear) to the     zero-padded to ``stride x`` the
                       target size                     prediction size, then
                                                       ``[stride // 2::stride]``
``mask_reduction``     ``"frame"``: one Dice and one   ``"clip"`` (ReferFormer): one Dice
                       focal mean per (target, frame)  over ``T x H x W`` and one focal mean
                                                       per (target, clip), matcher included
``mask_normaliser``    ``"count"``: mask terms divided ``"visible"`` (ReferFormer): divided by
                       by the number of terms summed   the number of visible (target, valid
                                                       frame) pairs (its ``num_boxes``)
``box_frames``         ``"visible"``: box terms over   ``"valid"`` (ReferFormer): over every
                       the visible frames              valid frame; an absent object's box is
                                                       the zero box
``class_cost_frames``  ``"valid"``: class cost         ``"visible"`` (ReferFormer): averaged
                       averaged over the valid frames  over the target's visible frames
``class_cost_eps``     ``None``: exact log-sigmoid     ``1e-8`` (ReferFormer's matcher):
                                                       ``-log(p + eps)``, ``-log(1 - p + eps)``
``giou_smooth``        ``0``: exact GIoU               ``1e-6`` (ReferFormer's ``box_ops``):
                                                       added to both sides of both ratios
``box_extent``         ``"pixels"``: a box ends after  ``"indices"`` (ReferFormer's datasets):
                       its last pixel (``x_max + 1``)  at its last pixel's index (``x_max``)
``objects``            ``"all"``: every annotated      ``"referred"`` (ReferFormer): only the
                       object is a target              referred object
=====================  ==============================  ====================================

``"mttr"`` and ``"referformer"`` bundle the choices of those systems
(:data:`CONVENTIONS`); with them one training step gives the original loss terms (see
``tests/test_original_criteria.py``). A criterion spec names a bundle (``"conventions":
"referformer"``) or gives fields over a bundle (``{"base": "referformer", "box_extent":
"pixels"}``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["CONVENTIONS", "SetConventions", "resolve_conventions"]

_CHOICES: dict[str, tuple[str, ...]] = {
    "visibility": ("masks", "labels"),
    "mask_resolution": ("upsample", "subsample"),
    "mask_reduction": ("frame", "clip"),
    "mask_normaliser": ("count", "visible"),
    "box_frames": ("visible", "valid"),
    "class_cost_frames": ("valid", "visible"),
    "box_extent": ("pixels", "indices"),
    "objects": ("all", "referred"),
}


@dataclasses.dataclass(frozen=True)
class SetConventions:
    """The set criterion's conventions (see the module docstring for each field).

    Raises:
        ValueError: a field outside its choices, a ``mask_stride`` that is not an int >= 1, a
            ``class_cost_eps`` that is not ``None`` or a number in ``[0, 1)`` or a negative
            ``giou_smooth``.

    Example:
        >>> SetConventions(mask_reduction="clip").mask_reduction
        'clip'
    """

    visibility: str = "masks"
    mask_resolution: str = "upsample"
    mask_stride: int = 4
    mask_reduction: str = "frame"
    mask_normaliser: str = "count"
    box_frames: str = "visible"
    class_cost_frames: str = "valid"
    class_cost_eps: float | None = None
    giou_smooth: float = 0.0
    box_extent: str = "pixels"
    objects: str = "all"

    def __post_init__(self) -> None:
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise ValueError(f"conventions {name} must be one of {choices}, got {value!r}")
        stride = self.mask_stride
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"conventions mask_stride must be an int >= 1, got {stride!r}")
        eps = self.class_cost_eps
        if eps is not None and (
            isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps < 1
        ):
            raise ValueError(
                f"conventions class_cost_eps must be None or a number in [0, 1), got {eps!r}"
            )
        smooth = self.giou_smooth
        if isinstance(smooth, bool) or not isinstance(smooth, (int, float)) or not smooth >= 0:
            raise ValueError(f"conventions giou_smooth must be a number >= 0, got {smooth!r}")


#: The named bundles: rvoslib's own choices, MTTR's and ReferFormer's.
CONVENTIONS: Mapping[str, SetConventions] = {
    "rvoslib": SetConventions(),
    "mttr": SetConventions(visibility="labels"),
    "referformer": SetConventions(
        mask_resolution="subsample",
        mask_reduction="clip",
        mask_normaliser="visible",
        box_frames="valid",
        class_cost_frames="visible",
        class_cost_eps=1e-8,
        giou_smooth=1e-6,
        box_extent="indices",
        objects="referred",
    ),
}


def resolve_conventions(value: Any) -> SetConventions:
    """A :class:`SetConventions` from a bundle name, a dict of fields or an instance.

    Args:
        value: ``None`` (``"rvoslib"``), a name of :data:`CONVENTIONS`, a
            :class:`SetConventions`, or a dict of fields with an optional ``"base"`` name
            (default ``"rvoslib"``) whose bundle the fields override.

    Raises:
        ValueError: an unknown name (lists the names) or an invalid field value.
        KeyError: an unknown field (lists the fields).
        TypeError: any other type.

    Example:
        >>> resolve_conventions({"base": "referformer", "box_extent": "pixels"}).box_extent
        'pixels'
    """
    if value is None:
        return CONVENTIONS["rvoslib"]
    if isinstance(value, SetConventions):
        return value
    if isinstance(value, str):
        if value not in CONVENTIONS:
            raise ValueError(f"unknown conventions {value!r}; named ones are {sorted(CONVENTIONS)}")
        return CONVENTIONS[value]
    if isinstance(value, Mapping):
        fields = dict(value)
        base = resolve_conventions(fields.pop("base", "rvoslib"))
        names = [field.name for field in dataclasses.fields(SetConventions)]
        unknown = sorted(set(fields) - set(names))
        if unknown:
            raise KeyError(f"unknown conventions fields {unknown}; valid: ['base', *{names}]")
        return dataclasses.replace(base, **fields)
    raise TypeError(
        f"conventions must be a name, a dict or a SetConventions, got {type(value).__name__}"
    )
