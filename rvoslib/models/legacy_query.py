"""Conversion of the query architectures' ``config.json`` fields of format version 2.

Version 2 configs of MTTR, LoSh, ReferFormer and SOC spread the training loss over several
fields; version 3 has one ``criterion`` spec (``CRITERIA``) and spec fields for SOC's cluster
and LoSh's cross-attention. :func:`convert_v2_query_config` is called lazily by
:mod:`rvoslib.models.legacy` when an old folder is read.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["convert_v2_query_config"]

#: Fields of a v2 LoSh config that are criterion keywords in v3.
_LOSH_CRITERION_FIELDS = (
    "intersection_weight",
    "intersection_cost_weight",
    "flow_weight",
    "flow_loss",
    "flow_estimator",
)
#: What v2 used where a field was absent (the defaults of the v2 configs).
_V2_DEFAULTS = {
    "mttr": {"aux_loss": True, "no_object_weight": 0.1},
    "losh": {"aux_loss": True, "no_object_weight": 0.1, "intersection_weight": 0.8,
             "intersection_cost_weight": 0.8, "flow_weight": 0.0, "flow_loss": "l1",
             "flow_estimator": None},
    "referformer": {},
    "soc": {"contrastive_weight": 1.0},
}  # fmt: skip


def convert_v2_query_config(config: dict[str, Any]) -> dict[str, Any]:
    """A version-3 copy of a version-2 config dict of ``mttr``, ``losh``, ``referformer`` or
    ``soc`` (other architectures, and configs that already have a ``criterion``, are returned
    as copies, unchanged; ``format_version`` is left to the caller).

    * MTTR, LoSh: ``loss_weights``, ``no_object_weight``, ``matcher`` and ``aux_loss`` become
      ``criterion = {"name": "set" | "losh", "weights", "no_object_weight", "class_loss":
      "softmax", "matcher", "aux_loss"}``; LoSh's ``intersection_weight``,
      ``intersection_cost_weight``, ``flow_weight``, ``flow_loss`` and ``flow_estimator``
      (FlowEstimator keywords -> ``{"name": "raft", ...}``) move into it; its
      ``cross_attention`` dict becomes ``{"name": "long_short", ...}`` (``None`` stays).
    * ReferFormer, SOC: ``loss`` and ``matcher`` become ``criterion = {"name": "set" | "soc",
      "weights", "no_object_weight": 0.1, "class_loss": "focal", "matcher", "aux_loss":
      True}``; SOC's ``contrastive_weight`` moves into it and its ``voc`` dict becomes
      ``{"name": "voc", ...}``.

    Args:
        config: The raw dict of a ``config.json`` (with ``"architecture"``).

    Returns:
        A new dict.

    Example:
        >>> old = {"architecture": "soc", "loss": {"dice": 5.0}, "matcher": {"dice_weight": 5.0},
        ...        "voc": {"num_heads": 4}, "contrastive_weight": 1.0}
        >>> new = convert_v2_query_config(old)
        >>> new["criterion"]["name"], new["criterion"]["contrastive_weight"], new["voc"]
        ('soc', 1.0, {'name': 'voc', 'num_heads': 4})
    """
    data = copy.deepcopy(dict(config))
    architecture = data.get("architecture")
    if architecture not in _V2_DEFAULTS or "criterion" in data:
        return data
    old = {**_V2_DEFAULTS[architecture], **data}
    if architecture in ("mttr", "losh"):
        criterion = {
            "name": "set" if architecture == "mttr" else "losh",
            "weights": old.pop("loss_weights", {"class": 2.0, "dice": 5.0, "mask_focal": 2.0}),
            "no_object_weight": old.pop("no_object_weight"),
            "class_loss": "softmax",
            "matcher": old.pop("matcher", {"class_weight": 2.0, "dice_weight": 5.0}),
            "aux_loss": old.pop("aux_loss"),
        }
        if architecture == "losh":
            criterion.update({key: old.pop(key) for key in _LOSH_CRITERION_FIELDS})
            estimator = criterion["flow_estimator"]
            if isinstance(estimator, dict) and "name" not in estimator:
                criterion["flow_estimator"] = {"name": "raft", **estimator}
            attention = old.get("cross_attention", {"num_heads": 8, "dropout": 0.0})
            if isinstance(attention, dict) and "name" not in attention:
                old["cross_attention"] = {"name": "long_short", **attention}
    else:
        criterion = {
            "name": "set" if architecture == "referformer" else "soc",
            "weights": old.pop("loss"),
            "no_object_weight": 0.1,
            "class_loss": "focal",
            "matcher": old.pop("matcher"),
            "aux_loss": True,
        }
        if architecture == "soc":
            criterion["contrastive_weight"] = old.pop("contrastive_weight")
            voc = old.get("voc") or {}
            if isinstance(voc, dict) and "name" not in voc:
                old["voc"] = {"name": "voc", **voc}
    for key in ("loss", "loss_weights", "no_object_weight", "matcher", "aux_loss"):
        old.pop(key, None)
    old["criterion"] = criterion
    return old
