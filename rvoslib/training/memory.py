"""Activation checkpointing: recompute the activations of backbone and transformer blocks in
the backward pass instead of storing them, trading compute for memory."""

from __future__ import annotations

import functools
from typing import Any

from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["CHECKPOINTED_BLOCKS", "enable_activation_checkpointing"]

#: Class names of the blocks whose forward is checkpointed: ResNet blocks, (Video-)Swin blocks,
#: Hugging Face encoder layers, the transformer layers of the query-based architectures.
CHECKPOINTED_BLOCKS = (
    "BasicBlock",
    "Bottleneck",
    "SwinTransformerBlock",
    "BertLayer",
    "RobertaLayer",
    "TransformerEncoderLayer",
    "TransformerDecoderLayer",
    "DeformableEncoderLayer",
    "DeformableDecoderLayer",
)


def enable_activation_checkpointing(
    model: nn.Module, names: tuple[str, ...] = CHECKPOINTED_BLOCKS
) -> int:
    """Checkpoint the forward of every block of ``model`` whose class name is in ``names``.

    Outputs and gradients are unchanged (blocks with dropout recompute with the same random
    state, ``torch.utils.checkpoint``'s default); the state dict is untouched. Only training
    with gradients is affected.

    Args:
        model: Any module.
        names: Class names of the blocks to checkpoint.

    Returns:
        The number of blocks checkpointed.

    Example:
        >>> from rvoslib import create_model
        >>> enable_activation_checkpointing(create_model("tiny"))  # its 2 BERT layers
        2
    """
    count = 0
    for module in model.modules():
        if type(module).__name__ in names and not getattr(module, "_rvos_checkpointed", False):
            module.forward = functools.partial(_checkpointed, module.forward)
            module._rvos_checkpointed = True
            count += 1
    return count


def _checkpointed(forward: Any, *args: Any, **kwargs: Any) -> Any:
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)
