"""SOC's video object cluster: frame-order invariance, the sentence as content, shapes."""

from __future__ import annotations

import pytest
import torch

from rvoslib.models.transformer.voc import VideoClusterOutput, VideoObjectCluster


def _tiny(**kwargs: int) -> VideoObjectCluster:
    options = {"dim": 16, "num_queries": 4, "num_heads": 2, "ffn_dim": 32}
    options.update(kwargs)
    return VideoObjectCluster(**options)


def test_shapes_single_and_layered_input() -> None:
    voc = _tiny(num_decoder_layers=2).eval()
    out = voc(torch.randn(2, 5, 4, 16), torch.randn(2, 16))
    assert isinstance(out, VideoClusterOutput)
    assert out.video_queries.shape == (2, 4, 16)
    assert out.frame_queries.shape == (2, 5, 4, 16)
    assert out.layer_video_queries.shape == (2, 2, 4, 16)
    assert torch.equal(out.layer_video_queries[-1], out.video_queries)
    layered = voc(torch.randn(3, 2, 5, 4, 16), torch.randn(2, 16))
    assert layered.video_queries.shape == (3, 2, 4, 16)
    assert layered.frame_queries.shape == (3, 2, 5, 4, 16)
    assert layered.layer_video_queries.shape == (2, 3, 2, 4, 16)


def test_layered_input_equals_one_call_per_layer_and_clips_stay_apart() -> None:
    voc = _tiny().eval()
    frame_queries, sentence = torch.randn(3, 2, 5, 4, 16), torch.randn(2, 16)
    layered = voc(frame_queries, sentence)
    for layer in range(3):
        single = voc(frame_queries[layer], sentence)
        assert torch.allclose(layered.video_queries[layer], single.video_queries, atol=1e-5)
        assert torch.allclose(layered.frame_queries[layer], single.frame_queries, atol=1e-5)
        for clip in range(2):  # batch items are independent
            alone = voc(frame_queries[layer, clip : clip + 1], sentence[clip : clip + 1])
            assert torch.allclose(single.video_queries[clip], alone.video_queries[0], atol=1e-5)


def test_frame_queries_get_their_video_query_added() -> None:
    voc = _tiny().eval()
    frame_queries = torch.randn(2, 3, 4, 16)
    out = voc(frame_queries, torch.randn(2, 16))
    for t in range(3):
        assert torch.allclose(out.frame_queries[:, t], frame_queries[:, t] + out.video_queries)


def test_permuting_frames_leaves_video_queries_unchanged() -> None:
    voc = _tiny(dim=32, num_queries=5, num_heads=4).eval()
    frame_queries, sentence = torch.randn(2, 6, 5, 32), torch.randn(2, 32)
    order = torch.tensor([3, 0, 5, 1, 4, 2])
    out = voc(frame_queries, sentence)
    permuted = voc(frame_queries[:, order], sentence)
    assert torch.allclose(permuted.video_queries, out.video_queries, atol=1e-5)
    assert torch.allclose(permuted.frame_queries, out.frame_queries[:, order], atol=1e-5)
    # ... while permuting the query slots within a frame does change them (slot positions)
    slots = torch.tensor([1, 0, 2, 3, 4])
    swapped = voc(frame_queries[:, :, slots], sentence)
    assert not torch.allclose(swapped.video_queries, out.video_queries, atol=1e-3)


def test_sentence_changes_the_video_queries() -> None:
    voc = _tiny().eval()
    frame_queries = torch.randn(1, 3, 4, 16)
    first = voc(frame_queries, torch.randn(1, 16)).video_queries
    second = voc(frame_queries, torch.randn(1, 16)).video_queries
    assert (first - second).abs().max() > 1e-2


def test_gradients_reach_inputs_and_parameters() -> None:
    voc = _tiny(num_encoder_layers=1)
    voc.train()
    frame_queries = torch.randn(2, 3, 4, 16, requires_grad=True)
    sentence = torch.randn(2, 16, requires_grad=True)
    out = voc(frame_queries, sentence)
    (out.video_queries.square().sum() + out.frame_queries.sum()).backward()
    assert frame_queries.grad is not None and frame_queries.grad.abs().sum() > 0
    assert sentence.grad is not None and sentence.grad.abs().sum() > 0
    for name, parameter in voc.named_parameters():
        assert parameter.grad is not None, name


def test_no_encoder_layers_is_allowed() -> None:
    voc = _tiny(num_encoder_layers=0).eval()
    assert voc(torch.randn(1, 2, 4, 16), torch.randn(1, 16)).video_queries.shape == (1, 4, 16)


def test_input_errors() -> None:
    voc = _tiny()
    with pytest.raises(ValueError, match=r"frame_queries must be \(B, T, 4, 16\) or \(Ly, B, T"):
        voc(torch.randn(4, 16), torch.randn(1, 16))
    with pytest.raises(ValueError, match=r"frame_queries must be \(B, T, 4, 16\), got \(1, 2, 5"):
        voc(torch.randn(1, 2, 5, 16), torch.randn(1, 16))
    with pytest.raises(ValueError, match=r"must be \(Ly, B, T, 4, 16\), got \(2, 1, 2, 4, 8\)"):
        voc(torch.randn(2, 1, 2, 4, 8), torch.randn(1, 16))
    with pytest.raises(ValueError, match=r"sentence must be \(2, 16\), got \(1, 16\)"):
        voc(torch.randn(2, 3, 4, 16), torch.randn(1, 16))
    with pytest.raises(TypeError, match="frame_queries must have a floating dtype"):
        voc(torch.zeros(1, 2, 4, 16, dtype=torch.long), torch.randn(1, 16))


def test_construction_errors() -> None:
    with pytest.raises(ValueError, match=r"num_heads \(3\) must divide dim \(16\)"):
        _tiny(num_heads=3)
    with pytest.raises(ValueError, match="num_queries must be >= 1, got 0"):
        _tiny(num_queries=0)
    with pytest.raises(ValueError, match="num_decoder_layers >= 1, got 1 and 0"):
        _tiny(num_encoder_layers=1, num_decoder_layers=0)
