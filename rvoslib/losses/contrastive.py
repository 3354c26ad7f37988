"""SOC's video-text contrastive loss: the matched video query must be the one closest to the text.

The score of video query ``n`` of clip ``b`` is ``s_bn = (v_bn . t_b) / C`` (a dot product scaled
by the channel count, no L2 normalisation, as SOC's ``vl_loss``); the loss is the cross-entropy
of the softmax over the ``N`` queries against the query matched to the referred target, averaged
over the clips. SOC's text vector ``t_b`` is the mean of the text-side fused token features over
the real (non-padding) tokens (:func:`mean_token_features`). Weight 1 in SOC; not a matching cost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib._checks import check_tensor, format_shape, is_compiling

__all__ = ["VideoTextContrastiveLoss", "mean_token_features", "video_text_contrastive_loss"]


def mean_token_features(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token features over the real tokens (``mask`` true); zeros if there are none.

    Args:
        tokens: ``(B, L, C)`` token features.
        mask: ``(B, L)`` bool, true for real tokens, false for padding.

    Returns:
        ``(B, C)`` float32.

    Example:
        >>> tokens = torch.tensor([[[1.0], [3.0], [100.0]]])
        >>> mean_token_features(tokens, torch.tensor([[True, True, False]])).tolist()
        [[2.0]]
    """
    if not is_compiling():
        check_tensor(tokens, "tokens", ("B", "L", "C"), floating=True)
        check_tensor(mask, "mask", ("B", "L"), floating=False)
        if mask.shape != tokens.shape[:2]:
            raise ValueError(
                f"mask must be (B, L) = {tuple(tokens.shape[:2])} of tokens, "
                f"got {format_shape(mask.shape)}"
            )
    weight = mask.float()[..., None]
    return (tokens.float() * weight).sum(1) / weight.sum(1).clamp_min(1.0)


def video_text_contrastive_loss(
    video_queries: torch.Tensor, text: torch.Tensor, positive: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy over queries of the scores ``(v_n . t) / C`` against the positive query.

    Args:
        video_queries: ``(B, N, C)`` video-level query embeddings.
        text: ``(B, C)`` text vectors.
        positive: ``(B,)`` long, the positive query of each clip (the one matched to the
            referred target); ``-1`` leaves a clip out (e.g. no referred target). Indices are
            not range-checked (that would synchronise with the device).

    Returns:
        Scalar float32: the mean over the clips with a positive (0 if there are none).

    Example:
        >>> queries, text = torch.tensor([[[2.0, 0.0], [0.0, 2.0]]]), torch.tensor([[1.0, 0.0]])
        >>> loss = video_text_contrastive_loss(queries, text, torch.tensor([0]))
        >>> round(loss.item(), 4)  # scores (1, 0): -log(e / (e + 1))
        0.3133
    """
    if not is_compiling():
        check_tensor(video_queries, "video_queries", ("B", "N", "C"), floating=True)
        batch, _, channels = video_queries.shape
        check_tensor(text, "text", (batch, channels), floating=True)
        check_tensor(positive, "positive", (batch,), floating=False)
    with torch.autocast(device_type=video_queries.device.type, enabled=False):
        scores = torch.einsum("bnc,bc->bn", video_queries.float(), text.float())
        scores = scores / video_queries.shape[-1]
        has_positive = positive >= 0
        per_clip = F.cross_entropy(scores, positive.long().clamp_min(0), reduction="none")
        weight = has_positive.float()
        return (per_clip * weight).sum() / weight.sum().clamp_min(1.0)


class VideoTextContrastiveLoss(nn.Module):
    """Module form of :func:`video_text_contrastive_loss` (SOC's ``loss_con``).

    Example:
        >>> loss = VideoTextContrastiveLoss()
        >>> loss(torch.randn(2, 5, 8), torch.randn(2, 8), torch.tensor([1, 4])).shape
        torch.Size([])
    """

    def forward(
        self, video_queries: torch.Tensor, text: torch.Tensor, positive: torch.Tensor
    ) -> torch.Tensor:
        """See :func:`video_text_contrastive_loss`."""
        return video_text_contrastive_loss(video_queries, text, positive)
