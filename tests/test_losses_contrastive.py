"""SOC's video-text contrastive loss against its definition."""

from __future__ import annotations

import math

import pytest
import torch

from rvoslib.losses.contrastive import (
    VideoTextContrastiveLoss,
    mean_token_features,
    video_text_contrastive_loss,
)


def _direct(queries: torch.Tensor, text: torch.Tensor, positive: list[int]) -> float:
    """Mean over clips of -log softmax_n((v_n . t) / C)[positive], with explicit loops."""
    batch, num_queries, channels = queries.shape
    total = 0.0
    for b in range(batch):
        scores = [
            sum(queries[b, n, c].item() * text[b, c].item() for c in range(channels)) / channels
            for n in range(num_queries)
        ]
        log_z = math.log(sum(math.exp(s) for s in scores))
        total += log_z - scores[positive[b]]
    return total / batch


def test_equals_the_definition_on_random_inputs() -> None:
    for seed in range(5):
        generator = torch.Generator().manual_seed(seed)
        queries = torch.randn(3, 6, 8, generator=generator) * 3
        text = torch.randn(3, 8, generator=generator) * 3
        positive = torch.randint(6, (3,), generator=generator)
        loss = video_text_contrastive_loss(queries, text, positive)
        assert loss.item() == pytest.approx(_direct(queries, text, positive.tolist()), rel=1e-5)
        torch.testing.assert_close(VideoTextContrastiveLoss()(queries, text, positive), loss)


def test_invariant_to_the_order_of_the_negatives() -> None:
    queries, text = torch.randn(2, 7, 16), torch.randn(2, 16)
    positive = torch.tensor([2, 5])
    loss = video_text_contrastive_loss(queries, text, positive)
    permuted = queries.clone()
    for b, pos in enumerate(positive.tolist()):
        negatives = [n for n in range(7) if n != pos]
        shuffled = [negatives[i] for i in torch.randperm(len(negatives)).tolist()]
        permuted[b, negatives] = queries[b, shuffled]
    torch.testing.assert_close(video_text_contrastive_loss(permuted, text, positive), loss)
    moved = queries.clone()
    moved[0, [2, 3]] = queries[0, [3, 2]]  # moving the positive does change the loss
    assert not torch.allclose(video_text_contrastive_loss(moved, text, positive), loss)


def test_no_l2_normalisation_and_scale_by_channels() -> None:
    queries = torch.tensor([[[4.0, 0.0], [0.0, 0.0]]])
    text = torch.tensor([[1.0, 0.0]])
    loss = video_text_contrastive_loss(queries, text, torch.tensor([0]))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2.0)), rel=1e-6)  # scores (2, 0)


def test_clips_without_positive_are_left_out_and_gradients_finite() -> None:
    queries = torch.randn(3, 4, 8, requires_grad=True)
    text = torch.randn(3, 8)
    loss = video_text_contrastive_loss(queries, text, torch.tensor([1, -1, 3]))
    expected = _direct(queries[[0, 2]].detach(), text[[0, 2]], [1, 3])
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    none = video_text_contrastive_loss(queries, text, torch.tensor([-1, -1, -1]))
    none.backward()
    assert none.item() == 0.0 and torch.isfinite(queries.grad).all()


def test_bfloat16_inputs_give_a_float32_loss() -> None:
    loss = video_text_contrastive_loss(
        torch.randn(2, 3, 4).bfloat16(), torch.randn(2, 4).bfloat16(), torch.tensor([0, 1])
    )
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_mean_token_features_equals_loop() -> None:
    tokens = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    text = mean_token_features(tokens, mask)
    for b in range(3):
        real = [tokens[b, i] for i in range(5) if mask[b, i]]
        expected = torch.stack(real).mean(0) if real else torch.zeros(4)
        torch.testing.assert_close(text[b], expected)


def test_errors() -> None:
    queries, text, positive = torch.randn(2, 3, 4), torch.randn(2, 4), torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"video_queries must be \(B, N, C\), got \(3, 4\)"):
        video_text_contrastive_loss(queries[0], text, positive)
    with pytest.raises(ValueError, match=r"text must be \(2, 4\), got \(2, 5\)"):
        video_text_contrastive_loss(queries, torch.randn(2, 5), positive)
    with pytest.raises(ValueError, match=r"positive must be \(2\), got \(3\)"):
        video_text_contrastive_loss(queries, text, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="positive must have an integer or bool dtype"):
        video_text_contrastive_loss(queries, text, torch.tensor([0.0, 1.0]))
    with pytest.raises(TypeError, match="video_queries must have a floating dtype"):
        video_text_contrastive_loss(queries.long(), text, positive)
    with pytest.raises(
        ValueError, match=r"mask must be \(B, L\) = \(2, 3\) of tokens, got \(2, 4\)"
    ):
        mean_token_features(torch.randn(2, 3, 4), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"tokens must be \(B, L, C\), got \(2, 3\)"):
        mean_token_features(torch.randn(2, 3), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask must have an integer or bool dtype"):
        mean_token_features(torch.randn(2, 3, 4), torch.ones(2, 3))
