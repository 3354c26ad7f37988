"""Warping, the forward-backward check, the flow consistency loss and the RAFT wrapper."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torchvision.models.optical_flow import raft_small

from rvoslib.models.flow import (
    FlowConsistencyLoss,
    FlowEstimator,
    flow_consistency_loss,
    forward_backward_occlusion,
    warp,
)


def _constant_flow(n: int, height: int, width: int, dx: float, dy: float) -> torch.Tensor:
    flow = torch.zeros(n, 2, height, width)
    flow[:, 0], flow[:, 1] = dx, dy
    return flow


def _reference_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Bilinear backward warping written out pixel by pixel (zero outside the frame)."""
    n, c, height, width = x.shape
    out = torch.zeros(n, c, height, width, dtype=torch.float64)
    for i in range(n):
        for y in range(height):
            for xx in range(width):
                sx = xx + float(flow[i, 0, y, xx])
                sy = y + float(flow[i, 1, y, xx])
                x0, y0 = math.floor(sx), math.floor(sy)
                for yy, wy in ((y0, 1 - (sy - y0)), (y0 + 1, sy - y0)):
                    for xc, wx in ((x0, 1 - (sx - x0)), (x0 + 1, sx - x0)):
                        if 0 <= yy < height and 0 <= xc < width:
                            out[i, :, y, xx] += wy * wx * x[i, :, yy, xc].double()
    return out


def test_warp_matches_explicit_bilinear_sampling() -> None:
    x = torch.randn(2, 3, 5, 6)
    flow = torch.randn(2, 2, 5, 6) * 2.0
    expected = _reference_warp(x, flow)
    assert torch.allclose(warp(x, flow).double(), expected, atol=1e-5)


def test_constant_integer_shift_is_exact() -> None:
    x = torch.randn(1, 2, 7, 9)
    out = warp(x, _constant_flow(1, 7, 9, dx=2.0, dy=-1.0))
    # output(y, x) = x(y - 1, x + 2) wherever that pixel exists (float32 grid rounding only)
    assert torch.allclose(out[:, :, 1:, :-2], x[:, :, :-1, 2:], rtol=0, atol=1e-5)
    assert out[:, :, 0].abs().max() < 1e-5 and out[:, :, :, -2:].abs().max() < 1e-5
    x64 = x.double()
    out64 = warp(x64, _constant_flow(1, 7, 9, dx=2.0, dy=-1.0).double())
    assert torch.allclose(out64[:, :, 1:, :-2], x64[:, :, :-1, 2:], rtol=0, atol=1e-12)


def test_zero_flow_is_identity_and_dtype_kept() -> None:
    x = torch.randn(2, 1, 4, 5, dtype=torch.float64)
    out = warp(x, torch.zeros(2, 2, 4, 5, dtype=torch.float64))
    assert out.dtype == torch.float64 and torch.allclose(out, x, rtol=0, atol=1e-12)
    half = torch.randn(1, 1, 4, 5).to(torch.bfloat16)
    assert warp(half, torch.zeros(1, 2, 4, 5)).dtype == torch.bfloat16


def test_warp_of_a_linear_image_follows_any_flow() -> None:
    """Bilinear sampling reproduces a linear image exactly, so warp(ramp) = ramp(p + flow)."""
    height, width = 9, 11
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64),
        torch.arange(width, dtype=torch.float64),
        indexing="ij",
    )
    ramp = (0.3 * xs - 0.7 * ys + 2.0)[None, None]
    flow = (torch.rand(1, 2, height, width, dtype=torch.float64) - 0.5) * 3.0
    expected = 0.3 * (xs + flow[0, 0]) - 0.7 * (ys + flow[0, 1]) + 2.0
    inside = (
        (xs + flow[0, 0] >= 0)
        & (xs + flow[0, 0] <= width - 1)
        & (ys + flow[0, 1] >= 0)
        & (ys + flow[0, 1] <= height - 1)
    )
    out = warp(ramp, flow)[0, 0]
    assert torch.allclose(out[inside], expected[inside], atol=1e-10)


def test_round_trip_is_identity_away_from_borders() -> None:
    x = torch.randn(1, 3, 10, 12, dtype=torch.float64)
    forward = _constant_flow(1, 10, 12, dx=3.0, dy=2.0).double()
    there = warp(x, -forward)  # x moved by (3, 2)
    back = warp(there, forward)
    assert torch.allclose(back[:, :, :-2, :-3], x[:, :, :-2, :-3], rtol=0, atol=1e-12)
    # an affine flow p -> A p + b and its inverse, on a linear image, round-trip exactly too
    ys, xs = torch.meshgrid(
        torch.arange(10, dtype=torch.float64), torch.arange(12, dtype=torch.float64), indexing="ij"
    )
    scale = 0.9
    fw = torch.stack([(scale - 1) * xs + 0.5, (scale - 1) * ys + 0.25])[None]
    bw = torch.stack([(1 / scale - 1) * xs - 0.5 / scale, (1 / scale - 1) * ys - 0.25 / scale])[
        None
    ]
    ramp = (xs + 2 * ys)[None, None]
    round_trip = warp(warp(ramp, fw), bw)
    interior = (slice(None), slice(None), slice(1, -2), slice(1, -2))
    assert torch.allclose(round_trip[interior], ramp[interior], atol=1e-9)


def test_occlusion_flags_pixels_that_leave_the_frame() -> None:
    forward = _constant_flow(2, 6, 8, dx=2.0, dy=0.0)
    occluded = forward_backward_occlusion(forward, -forward)
    assert occluded.shape == (2, 1, 6, 8) and occluded.dtype == torch.bool
    expected = torch.zeros(2, 1, 6, 8, dtype=torch.bool)
    expected[..., -2:] = True
    assert torch.equal(occluded, expected)
    up = _constant_flow(1, 6, 8, dx=0.0, dy=-1.5)
    assert torch.equal(forward_backward_occlusion(up, -up)[0, 0, :2], torch.ones(2, 8).bool())
    assert not forward_backward_occlusion(up, -up)[0, 0, 2:].any()


def test_occlusion_flags_inconsistent_flows() -> None:
    forward = _constant_flow(1, 6, 8, dx=1.0, dy=1.0)
    # backward flow zero: |fw + 0|^2 = 2 > 0.01 * 2 + 0.5 everywhere
    assert forward_backward_occlusion(forward, torch.zeros_like(forward)).all()
    # a small disagreement stays within alpha2
    nearly = -forward + 0.3
    occluded = forward_backward_occlusion(forward, nearly)[0, 0]
    assert not occluded[:-1, :-1].any()


def test_occlusion_matches_the_formula_pixel_by_pixel() -> None:
    forward = torch.randn(1, 2, 5, 6) * 1.5
    backward = torch.randn(1, 2, 5, 6) * 1.5
    warped = _reference_warp(backward, forward)[0]
    occluded = forward_backward_occlusion(forward, backward, alpha1=0.05, alpha2=0.4)[0, 0]
    for y in range(5):
        for x in range(6):
            f = forward[0, :, y, x].double()
            b = warped[:, y, x]
            lhs = float((f + b).square().sum())
            rhs = 0.05 * float(f.square().sum() + b.square().sum()) + 0.4
            tx, ty = x + float(f[0]), y + float(f[1])
            outside = not (0 <= tx <= 5 and 0 <= ty <= 4)
            assert bool(occluded[y, x]) == (lhs > rhs or outside), (y, x)


def _shifted_pair(kind: str) -> tuple[torch.Tensor, ...]:
    """Logits of frame s and of frame t = s seen through a 2-pixel shift, and the flows."""
    pred_s = torch.randn(2, 1, 8, 10)
    pred_t = torch.randn(2, 1, 8, 10)
    pred_t[..., :-2] = pred_s[..., 2:]  # t(p) = s(p + (2, 0)) where it exists
    forward = _constant_flow(2, 8, 10, dx=2.0, dy=0.0)
    return pred_t, pred_s, forward, -forward


@pytest.mark.parametrize("kind", ["l1", "dice"])
def test_loss_is_zero_for_consistent_predictions(kind: str) -> None:
    pred_t, pred_s, forward, backward = _shifted_pair(kind)
    loss = flow_consistency_loss(pred_t, pred_s, forward, backward, kind=kind)
    assert loss.dtype == torch.float32 and loss.ndim == 0
    assert float(loss) == pytest.approx(0.0, abs=1e-6)
    assert float(FlowConsistencyLoss(kind)(pred_t, pred_s, forward, backward)) == float(loss)


@pytest.mark.parametrize("kind", ["l1", "dice"])
def test_loss_is_positive_for_inconsistent_predictions_and_has_gradients(kind: str) -> None:
    pred_t, pred_s, forward, backward = _shifted_pair(kind)
    pred_t = (pred_t + torch.randn_like(pred_t)).requires_grad_()
    pred_s = pred_s.clone().requires_grad_()
    loss = flow_consistency_loss(pred_t, pred_s, forward, backward, kind=kind)
    assert float(loss.detach()) > 1e-3
    loss.backward()
    assert pred_t.grad is not None and pred_t.grad.abs().sum() > 0
    assert pred_s.grad is not None and pred_s.grad.abs().sum() > 0
    # occluded pixels (the last two columns) get no gradient from frame t's side
    assert torch.equal(pred_t.grad[..., -2:], torch.zeros_like(pred_t.grad[..., -2:]))


def test_dice_loss_matches_its_definition() -> None:
    pred_t, pred_s = torch.randn(2, 1, 6, 7), torch.randn(2, 1, 6, 7)
    forward, backward = torch.randn(2, 2, 6, 7), torch.randn(2, 2, 6, 7)
    warped = _reference_warp(pred_s.sigmoid(), forward)
    valid = ~forward_backward_occlusion(forward, backward)
    expected = 0.0
    for i in range(2):
        w, p = warped[i][valid[i]], pred_t[i].sigmoid().double()[valid[i]]
        expected += 1 - (2 * float((w * p).sum()) + 1) / (float((w * w).sum() + (p * p).sum()) + 1)
    loss = flow_consistency_loss(pred_t, pred_s, forward, backward, kind="dice")
    assert float(loss) == pytest.approx(expected / 2, abs=1e-5)


def test_l1_loss_matches_its_definition() -> None:
    pred_t, pred_s = torch.randn(2, 1, 6, 7), torch.randn(2, 1, 6, 7)
    forward, backward = torch.randn(2, 2, 6, 7), torch.randn(2, 2, 6, 7)
    warped = _reference_warp(pred_s.sigmoid(), forward)
    valid = ~forward_backward_occlusion(forward, backward)
    per_pair = [
        float((warped[i] - pred_t[i].sigmoid().double()).abs()[valid[i]].sum())
        / max(int(valid[i].sum()), 1)
        for i in range(2)
    ]
    loss = flow_consistency_loss(pred_t, pred_s, forward, backward)
    assert float(loss) == pytest.approx(sum(per_pair) / 2, abs=1e-5)


def test_loss_errors() -> None:
    logits, flow = torch.randn(1, 1, 4, 4), torch.zeros(1, 2, 4, 4)
    with pytest.raises(ValueError, match="kind must be one of"):
        flow_consistency_loss(logits, logits, flow, flow, kind="l2")
    with pytest.raises(ValueError, match="kind must be one of"):
        FlowConsistencyLoss(kind="bce")
    with pytest.raises(ValueError, match=r"pred_t must be \(N, 1, H, W\), got \(1, 2, 4, 4\)"):
        flow_consistency_loss(torch.randn(1, 2, 4, 4), logits, flow, flow)
    with pytest.raises(ValueError, match=r"pred_s must have pred_t's shape \(1, 1, 4, 4\)"):
        flow_consistency_loss(logits, torch.randn(1, 1, 4, 5), flow, flow)
    with pytest.raises(ValueError, match=r"flow_s_to_t must be \(1, 2, 4, 4\) to match pred_t"):
        flow_consistency_loss(logits, logits, flow, torch.zeros(1, 2, 4, 6))


def test_warp_and_occlusion_errors() -> None:
    x = torch.randn(2, 3, 4, 5)
    with pytest.raises(ValueError, match=r"x must be \(N, C, H, W\), got \(3, 4, 5\)"):
        warp(x[0], torch.zeros(2, 2, 4, 5))
    with pytest.raises(ValueError, match=r"flow must be \(N, 2, H, W\), got \(2, 3, 4, 5\)"):
        warp(x, torch.zeros(2, 3, 4, 5))
    with pytest.raises(ValueError, match=r"flow must be \(2, 2, 4, 5\) to match x \(2, 3, 4, 5\)"):
        warp(x, torch.zeros(2, 2, 4, 6))
    with pytest.raises(TypeError, match="flow must have a floating dtype"):
        warp(x, torch.zeros(2, 2, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"flow_bw must be \(1, 2, 4, 5\) to match flow_fw"):
        forward_backward_occlusion(torch.zeros(1, 2, 4, 5), torch.zeros(2, 2, 4, 5))


# --- RAFT wrapper (random weights: never downloads) --------------------------------------------


def test_flow_estimator_runs_frozen_on_a_tiny_input() -> None:
    estimator = FlowEstimator(num_flow_updates=1)
    assert not any(parameter.requires_grad for parameter in estimator.parameters())
    estimator.train()
    assert estimator.training and not estimator.raft.training
    frames, targets = torch.randn(1, 3, 20, 29), torch.randn(1, 3, 20, 29)
    flow = estimator(frames, targets)
    assert flow.shape == (1, 2, 20, 29) and flow.dtype == torch.float32
    assert torch.isfinite(flow).all() and not flow.requires_grad
    assert "mean" not in estimator.state_dict()  # normalisation constants are not weights


class _FakeRaft(torch.nn.Module):
    """Records what RAFT would receive."""

    def __init__(self, seen: list[torch.Tensor]) -> None:
        super().__init__()
        self.seen = seen

    def forward(self, source: torch.Tensor, target: torch.Tensor, num_flow_updates: int) -> list:
        self.seen.extend([source, target])
        return [torch.zeros(source.shape[0], 2, *source.shape[-2:])]


def test_flow_estimator_feeds_raft_its_input_range(monkeypatch: pytest.MonkeyPatch) -> None:
    estimator = FlowEstimator(num_flow_updates=1)
    seen: list[torch.Tensor] = []
    monkeypatch.setattr(estimator, "raft", _FakeRaft(seen))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    white = (torch.ones(1, 3, 12, 140) - mean) / std  # pixel value 1.0 -> RAFT's +1
    black = (torch.zeros(1, 3, 12, 140) - mean) / std  # pixel value 0.0 -> RAFT's -1
    assert estimator(white, black).shape == (1, 2, 12, 140)
    assert seen[0].shape == (1, 3, 128, 144)  # height up to RAFT's minimum, width to 8k
    assert torch.allclose(seen[0], torch.ones_like(seen[0]), atol=1e-5)
    assert torch.allclose(seen[1], -torch.ones_like(seen[1]), atol=1e-5)


def test_flow_estimator_loads_a_local_weights_file(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = raft_small(weights=None)
    path = tmp_path / "raft_small.pth"
    torch.save(source.state_dict(), path)
    estimator = FlowEstimator(checkpoint_path=path, num_flow_updates=1)
    for name, value in source.state_dict().items():
        assert torch.equal(estimator.raft.state_dict()[name], value), name
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": {f"raft.{k}": v for k, v in source.state_dict().items()}}, wrapped)
    again = FlowEstimator(checkpoint_path=str(wrapped), pretrained=True)  # file wins, no download
    name = next(iter(source.state_dict()))
    assert torch.equal(again.raft.state_dict()[name], source.state_dict()[name])


def test_flow_estimator_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint_path .*missing.pth' does not exist"):
        FlowEstimator(checkpoint_path=tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="is not a raft_small state dict"):
        FlowEstimator(checkpoint_path=bad)
    listed = tmp_path / "list.pth"
    torch.save([1, 2], listed)
    with pytest.raises(ValueError, match="must hold a raft_small state dict, got list"):
        FlowEstimator(checkpoint_path=listed)
    with pytest.raises(ValueError, match="num_flow_updates must be >= 1, got 0"):
        FlowEstimator(num_flow_updates=0)
    estimator = FlowEstimator(num_flow_updates=1)
    with pytest.raises(ValueError, match=r"frames must be \(N, 3, H, W\), got \(1, 1, 8, 8\)"):
        estimator(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"targets must have frames' shape \(1, 3, 8, 8\)"):
        estimator(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))
