"""ConvLSTM: the gate equations against a hand computation, peepholes as trained parameters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rvoslib.models.registry import TEMPORAL_MODULES
from rvoslib.models.temporal.convlstm import ConvLSTM, ConvLSTMCell


def _randomise(module: torch.nn.Module) -> None:
    """Random values everywhere, peepholes included (they start at zero)."""
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn_like(param) * 0.5)


def _reference(lstm: ConvLSTM, features: torch.Tensor, state=None, activation="relu"):
    """The ConvLSTM equations written out gate by gate with explicit conv2d calls."""
    cell = lstm.cell
    hidden_channels = cell.hidden_channels
    act = torch.relu if activation == "relu" else torch.tanh
    w_x, b_x, w_h = cell.input_conv.weight, cell.input_conv.bias, cell.hidden_conv.weight
    pad = w_x.shape[-1] // 2

    def gate(index: int, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        rows = slice(index * hidden_channels, (index + 1) * hidden_channels)
        return F.conv2d(x, w_x[rows], b_x[rows], padding=pad) + F.conv2d(h, w_h[rows], padding=pad)

    batch, steps, _, height, width = features.shape
    if state is None:
        h = torch.zeros(batch, hidden_channels, height, width)
        c = torch.zeros_like(h)
    else:
        h, c = state
    outputs = []
    for t in range(steps):
        x = features[:, t]
        i = torch.sigmoid(gate(0, x, h) + cell.peephole_input * c)
        f = torch.sigmoid(gate(1, x, h) + cell.peephole_forget * c)
        candidate = act(gate(2, x, h))
        c = f * c + i * candidate
        o = torch.sigmoid(gate(3, x, h) + cell.peephole_output * c)
        h = o * act(c)
        outputs.append(h)
    return torch.stack(outputs, 1), (h, c)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_one_step_equals_hand_computation(activation: str) -> None:
    lstm = ConvLSTM(2, hidden_channels=3, activation=activation)
    _randomise(lstm)
    features = torch.randn(1, 1, 2, 4, 5)
    state = (torch.randn(1, 3, 4, 5), torch.randn(1, 3, 4, 5))
    with torch.no_grad():
        outputs, (h, c) = lstm.forward_with_state(features, state)
        expected, (h_ref, c_ref) = _reference(lstm, features, state, activation)
    assert outputs.shape == (1, 1, 3, 4, 5)
    torch.testing.assert_close(outputs, expected)
    torch.testing.assert_close(h, h_ref)
    torch.testing.assert_close(c, c_ref)


def _sig(value: float | torch.Tensor) -> torch.Tensor:
    return 1 / (1 + torch.exp(-torch.as_tensor(value, dtype=torch.float64)))


def test_one_step_scalar_case_by_hand() -> None:
    """1x1 kernel, one channel, one pixel: the equations with plain numbers."""
    lstm = ConvLSTM(1, kernel_size=1)
    cell = lstm.cell
    with torch.no_grad():
        cell.input_conv.weight.copy_(torch.tensor([0.5, -1.0, 2.0, 1.5]).view(4, 1, 1, 1))
        cell.input_conv.bias.copy_(torch.tensor([0.1, 0.2, -0.3, 0.0]))
        cell.hidden_conv.weight.copy_(torch.tensor([1.0, 0.5, -0.5, 0.25]).view(4, 1, 1, 1))
        cell.peephole_input.fill_(0.3)
        cell.peephole_forget.fill_(-0.2)
        cell.peephole_output.fill_(0.7)
    x, h0, c0 = 2.0, 0.4, -1.0
    i = _sig(0.5 * x + 0.1 + 1.0 * h0 + 0.3 * c0)
    f = _sig(-1.0 * x + 0.2 + 0.5 * h0 - 0.2 * c0)
    candidate = max(2.0 * x - 0.3 - 0.5 * h0, 0.0)
    c1 = f * c0 + i * candidate
    o = _sig(1.5 * x + 0.0 + 0.25 * h0 + 0.7 * c1)
    h1 = o * torch.relu(c1)
    with torch.no_grad():
        out, (_, c) = lstm.forward_with_state(
            torch.full((1, 1, 1, 1, 1), x),
            (torch.full((1, 1, 1, 1), h0), torch.full((1, 1, 1, 1), c0)),
        )
    assert out.item() == pytest.approx(h1.item(), rel=1e-5)
    assert c.item() == pytest.approx(c1.item(), rel=1e-5)


def test_several_steps_zero_state_and_chunks_carry_state() -> None:
    lstm = ConvLSTM(3, hidden_channels=4)
    _randomise(lstm)
    features = torch.randn(2, 5, 3, 6, 7)
    with torch.no_grad():
        full, _ = lstm.forward_with_state(features)
        expected, _ = _reference(lstm, features)
        first, state = lstm.forward_with_state(features[:, :2])
        rest, _ = lstm.forward_with_state(features[:, 2:], state)
    torch.testing.assert_close(full, expected)
    torch.testing.assert_close(torch.cat([first, rest], 1), full)


def test_peepholes_are_parameters_with_gradients_and_in_state_dict() -> None:
    lstm = ConvLSTM(4, hidden_channels=6)
    names = dict(lstm.named_parameters())
    for gate in ("input", "forget", "output"):
        key = f"cell.peephole_{gate}"
        assert key in names and key in lstm.state_dict()
        assert names[key].shape == (6, 1, 1) and names[key].requires_grad
    features = torch.randn(2, 3, 4, 5, 5)
    lstm(features).square().sum().backward()
    for gate in ("input", "forget", "output"):
        grad = getattr(lstm.cell, f"peephole_{gate}").grad
        assert grad is not None and grad.abs().sum() > 0


def test_per_channel_peepholes_work_at_any_size() -> None:
    lstm = ConvLSTM(2)
    for size in ((3, 4), (9, 13)):
        assert lstm(torch.randn(1, 2, 2, *size)).shape == (1, 2, 2, *size)


def test_without_peepholes() -> None:
    lstm = ConvLSTM(2, peephole=False)
    assert lstm.cell.peephole_input is None
    assert not any("peephole" in name for name, _ in lstm.named_parameters())
    assert lstm(torch.randn(1, 2, 2, 3, 3)).shape == (1, 2, 2, 3, 3)


def test_forget_bias_starts_at_one() -> None:
    bias = ConvLSTMCell(2, 3).input_conv.bias
    assert bias[3:6].tolist() == [1.0, 1.0, 1.0]
    assert bias[:3].abs().sum() == 0 and bias[6:].abs().sum() == 0


def test_cell_step_matches_module() -> None:
    lstm = ConvLSTM(2, hidden_channels=3)
    _randomise(lstm)
    features = torch.randn(2, 1, 2, 4, 4)
    with torch.no_grad():
        h, c = lstm.cell(features[:, 0])
        _, (h2, c2) = lstm.forward_with_state(features)
    torch.testing.assert_close(h, h2)
    torch.testing.assert_close(c, c2)


def test_registered_temporal_module_hidden_defaults_to_channels() -> None:
    lstm = TEMPORAL_MODULES.build({"name": "convlstm", "activation": "tanh"}, channels=8)
    assert isinstance(lstm, ConvLSTM)
    assert (lstm.channels, lstm.hidden_channels) == (8, 8)
    assert TEMPORAL_MODULES.spec_of(lstm) == {
        "name": "convlstm",
        "hidden_channels": None,
        "kernel_size": 3,
        "activation": "tanh",
        "peephole": True,
    }
    assert lstm(torch.randn(1, 2, 8, 3, 3)).shape == (1, 2, 8, 3, 3)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="activation must be one of"):
        ConvLSTM(2, activation="gelu")
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        ConvLSTM(2, kernel_size=4)
    with pytest.raises(ValueError, match="kernel_size must be a positive odd int"):
        ConvLSTM(2, kernel_size=0)
    with pytest.raises(ValueError, match="input_channels must be a positive int, got 0"):
        ConvLSTM(0)
    with pytest.raises(ValueError, match="hidden_channels must be a positive int, got -1"):
        ConvLSTM(2, hidden_channels=-1)


def test_bad_inputs() -> None:
    lstm = ConvLSTM(2, hidden_channels=3)
    with pytest.raises(ValueError, match=r"features must be \(B, T, 2, h, w\), got \(1, 3, 4, 4\)"):
        lstm(torch.randn(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"features must be \(B, T, 2, h, w\), got \(1, 1, 5"):
        lstm(torch.randn(1, 1, 5, 4, 4))
    with pytest.raises(TypeError, match="features must have a floating dtype"):
        lstm(torch.ones(1, 1, 2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="at least one frame, got \\(1, 0, 2, 4, 4\\)"):
        lstm(torch.randn(1, 0, 2, 4, 4))
    with pytest.raises(
        TypeError, match=r"state must be a pair \(h0, c0\) of tensors \(1, 3, 4, 4\)"
    ):
        lstm(torch.randn(1, 1, 2, 4, 4), torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"state c0 must be \(1, 3, 4, 4\), got \(1, 3, 2, 2\)"):
        lstm(torch.randn(1, 1, 2, 4, 4), (torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 2, 2)))
    with pytest.raises(ValueError, match=r"inputs must be \(B, 2, h, w\), got \(1, 1, 2, 4, 4\)"):
        lstm.cell(torch.randn(1, 1, 2, 4, 4))
    with pytest.raises(ValueError, match=r"state h0 must be \(2, 3, 4, 4\), got \(1, 3, 4, 4\)"):
        lstm.cell(torch.randn(2, 2, 4, 4), (torch.zeros(1, 3, 4, 4), torch.zeros(2, 3, 4, 4)))
