"""LoSh-M's released checkpoints -> rvoslib's ``losh`` architecture.

LoSh's released code (LoSh-M, ``models/mttr.py`` of LinfengYuan1997/LoSh) is MTTR run on a
long and a short expression with the same weights: its checkpoints have exactly MTTR's keys
(:mod:`rvoslib.convert.mttr` renames them). Nothing in the weights tells a LoSh-M checkpoint
from an MTTR one, so ``--from losh`` or ``--from mttr`` must say which (both converters accept
either). The converted model is ``losh-mttr-swin-t`` with the detected sizes: joint
prediction, LoSh's criterion, no long-short cross-attention and no flow term (neither is in
the released code). Its :meth:`~rvoslib.models.LoShModel.forward` with one expression is the
long branch, what LoSh's post-processing reports.

Original behaviour not copied (documented differences):

* With clips of more than one frame, the released forward pairs the transformer's memory of
  one frame with the backbone features of other frames in the spatial decoder: the backbone
  levels are repeated as ``[(t b); (t b)]`` while the memory is ordered ``(t, [long b; short
  b])``. rvoslib pairs every frame with its own features (``[levels; levels]`` on the batch
  axis with the memory ordered the same way), which equals the original for one-frame clips.
* The ``--text_condition`` option (off in LoSh's configs) averages the text memory over the
  wrong axis (the token list is iterated over its sequence axis); it adds no weights and is not
  reproduced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch

from rvoslib.convert.base import CONVERTERS, Conversion
from rvoslib.convert.mttr import mttr_parts

__all__ = ["convert_losh"]


@CONVERTERS.register("losh")
def convert_losh(state: Mapping[str, torch.Tensor]) -> Conversion:
    """Convert LoSh-M's ``model_state_dict`` into an rvoslib ``losh`` model.

    Raises:
        UnexpectedKeysError: a key outside LoSh-M's (= MTTR's) modules or left over, named.
        KeyError: a tensor the detected variant needs is missing (named).
        ValueError: shapes of no known variant (the tensor and its shape named).
    """
    from rvoslib.models.presets_query_mttr import losh_mttr_swin_t

    fields, conversion = mttr_parts(state, "losh")
    conversion.config = dataclasses.replace(losh_mttr_swin_t(), **fields)
    conversion.notes.append(
        "LoSh-M: no long-short cross-attention and no flow term (not in the released code); "
        "multi-frame clips pair each frame with its own features (the released forward mixes "
        "frames in its spatial decoder)"
    )
    return conversion
