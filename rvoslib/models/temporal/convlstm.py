"""Convolutional LSTM (Shi et al., NeurIPS 2015) with peephole connections.

A ConvLSTM is an LSTM whose gates are 3x3 convolutions over feature maps, so the memory keeps a
spatial layout. With input ``x_t`` and previous state ``(h, c)``, per pixel and channel::

    i   = sigmoid(W_xi * x_t + W_hi * h + p_i . c + b_i)       input gate
    f   = sigmoid(W_xf * x_t + W_hf * h + p_f . c + b_f)       forget gate
    c~  = act(W_xc * x_t + W_hc * h + b_c)                     candidate memory
    c'  = f . c + i . c~
    o   = sigmoid(W_xo * x_t + W_ho * h + p_o . c' + b_o)      output gate (peeks at c')
    h'  = o . act(c')

``*`` is a convolution, ``.`` an elementwise product; ``act`` is ReLU as in the seq2seq VOS
model of Xu et al. (ECCV 2018, seed ``003``) or ``tanh`` as in Shi et al.

The peephole weights ``p_i, p_f, p_o`` are trainable ``nn.Parameter`` s (saved and restored
with the model; the sequence-to-sequence VOS code this module was specified from kept them
in plain tensors, re-drawn at random at every run).
They have shape ``(C_h, 1, 1)``: one weight per channel, shared by all positions. A weight
per position ``(C_h, h, w)``, as in that code, would tie the module to one input size (one
frame resolution) and gives a position-dependent gate with no reason to exist in a
translation-equivariant model; per-channel peepholes work at any size.
"""

from __future__ import annotations

import torch
from torch import nn

from rvoslib._checks import check_tensor, format_shape, is_compiling
from rvoslib.models.registry import TEMPORAL_MODULES

__all__ = ["ACTIVATIONS", "ConvLSTM", "ConvLSTMCell"]

#: Activations of the candidate memory and of the output (``act`` above).
ACTIVATIONS = ("relu", "tanh")

State = tuple[torch.Tensor, torch.Tensor]


class ConvLSTMCell(nn.Module):
    """One ConvLSTM step (the equations in the module docstring).

    The input and hidden-state convolutions are separate (``input_conv`` with the gate biases,
    ``hidden_conv`` without), each producing the four gates stacked in the order input,
    forget, candidate, output. Keeping them apart lets :class:`ConvLSTM` convolve the inputs
    of all time steps in one batched call; only the hidden-state convolution is sequential.

    Args:
        input_channels: Channels ``C`` of the input maps.
        hidden_channels: Channels ``C_h`` of the hidden state and memory.
        kernel_size: Odd size of the square gate convolutions (3 as in the paper).
        activation: ``"relu"`` (the sequence-to-sequence VOS model) or ``"tanh"`` (Shi et al.).
        peephole: Add the peephole terms ``p . c`` to the input, forget and output gates.

    Attributes:
        peephole_input, peephole_forget, peephole_output: ``(C_h, 1, 1)`` trainable peephole
            weights (zero at initialisation), or None when ``peephole`` is False.

    The forget-gate bias starts at 1 (Jozefowicz et al., 2015), so that the memory is kept
    early in training.

    Example:
        >>> cell = ConvLSTMCell(4, 8)
        >>> hidden, memory = cell(torch.randn(2, 4, 5, 7))
        >>> hidden.shape, memory.shape
        (torch.Size([2, 8, 5, 7]), torch.Size([2, 8, 5, 7]))
    """

    def __init__(
        self,
        input_channels: int,
        hidden_channels: int,
        kernel_size: int = 3,
        activation: str = "relu",
        peephole: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (
            ("input_channels", input_channels),
            ("hidden_channels", hidden_channels),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
            raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size!r}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same-size output), got {kernel_size}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.input_channels = input_channels
        self.hidden_channels = hidden_channels
        self.activation = activation
        padding = kernel_size // 2
        self.input_conv = nn.Conv2d(
            input_channels, 4 * hidden_channels, kernel_size, padding=padding
        )
        self.hidden_conv = nn.Conv2d(
            hidden_channels, 4 * hidden_channels, kernel_size, padding=padding, bias=False
        )
        with torch.no_grad():
            self.input_conv.bias.zero_()
            self.input_conv.bias[hidden_channels : 2 * hidden_channels].fill_(1.0)
        self.peephole_input: nn.Parameter | None
        self.peephole_forget: nn.Parameter | None
        self.peephole_output: nn.Parameter | None
        for gate in ("input", "forget", "output"):
            weight = nn.Parameter(torch.zeros(hidden_channels, 1, 1)) if peephole else None
            self.register_parameter(f"peephole_{gate}", weight)

    def _act(self, values: torch.Tensor) -> torch.Tensor:
        return torch.relu(values) if self.activation == "relu" else torch.tanh(values)

    def zero_state(self, like: torch.Tensor) -> State:
        """All-zero ``(h, c)`` of shape ``(B, C_h, h, w)`` for an input like ``like``
        ``(B, C, h, w)``."""
        zeros = like.new_zeros(like.shape[0], self.hidden_channels, *like.shape[-2:])
        return zeros, zeros

    def step(self, input_gates: torch.Tensor, state: State) -> State:
        """One step from precomputed input convolutions.

        Args:
            input_gates: ``(B, 4 C_h, h, w)``, ``input_conv(x_t)``.
            state: ``(h, c)``, each ``(B, C_h, h, w)``.

        Returns:
            The new ``(h, c)``, each ``(B, C_h, h, w)``.
        """
        hidden, memory = state
        gates = input_gates + self.hidden_conv(hidden)
        input_gate, forget_gate, candidate, output_gate = gates.chunk(4, dim=1)
        if self.peephole_input is not None:
            input_gate = input_gate + self.peephole_input * memory
            forget_gate = forget_gate + self.peephole_forget * memory
        memory = torch.sigmoid(forget_gate) * memory + torch.sigmoid(input_gate) * self._act(
            candidate
        )
        if self.peephole_output is not None:
            output_gate = output_gate + self.peephole_output * memory
        hidden = torch.sigmoid(output_gate) * self._act(memory)
        return hidden, memory

    def forward(self, inputs: torch.Tensor, state: State | None = None) -> State:
        """One step.

        Args:
            inputs: ``(B, C, h, w)`` input maps ``x_t``.
            state: Previous ``(h, c)``, each ``(B, C_h, h, w)``; None for zeros.

        Returns:
            The new ``(h, c)``, each ``(B, C_h, h, w)``.
        """
        if not is_compiling():
            check_tensor(inputs, "inputs", ("B", self.input_channels, "h", "w"), floating=True)
        if state is None:
            state = self.zero_state(inputs)
        elif not is_compiling():
            _check_state(state, inputs.shape[0], self.hidden_channels, inputs.shape[-2:])
        return self.step(self.input_conv(inputs), state)


@TEMPORAL_MODULES.register("convlstm")
class ConvLSTM(nn.Module):
    """A ConvLSTM over the frames of a clip: ``(B, T, C, h, w) -> (B, T, C_h, h, w)``.

    As a temporal module (``{"name": "convlstm"}``) it receives ``channels`` from the part
    before it, and its hidden channels default to ``channels``, so it keeps the
    ``(B, T, C, h, w)`` contract of ``TEMPORAL_MODULES``. The inputs of all frames go through
    the input convolution in one batched call; only the recurrence loops over ``T``.

    Args:
        channels: Input channels ``C``.
        hidden_channels: Hidden channels ``C_h`` (None: ``channels``).
        kernel_size: Odd size of the gate convolutions.
        activation: ``"relu"`` (the sequence-to-sequence VOS model) or ``"tanh"`` (Shi et al.).
        peephole: Use peephole connections (per-channel, trainable).

    Example:
        >>> lstm = ConvLSTM(8)
        >>> lstm(torch.randn(2, 3, 8, 5, 7)).shape
        torch.Size([2, 3, 8, 5, 7])
        >>> outputs, (hidden, memory) = lstm.forward_with_state(torch.randn(2, 3, 8, 5, 7))
        >>> torch.equal(outputs[:, -1], hidden)
        True
    """

    def __init__(
        self,
        channels: int,
        hidden_channels: int | None = None,
        kernel_size: int = 3,
        activation: str = "relu",
        peephole: bool = True,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.hidden_channels = channels if hidden_channels is None else hidden_channels
        self.cell = ConvLSTMCell(channels, self.hidden_channels, kernel_size, activation, peephole)

    def forward(self, features: torch.Tensor, state: State | None = None) -> torch.Tensor:
        """Run the recurrence over the frames.

        Args:
            features: ``(B, T, C, h, w)`` float, ``T >= 1``.
            state: Optional initial ``(h0, c0)``, each ``(B, C_h, h, w)`` (None: zeros).

        Returns:
            ``(B, T, C_h, h, w)``: the hidden state after each frame.
        """
        return self.forward_with_state(features, state)[0]

    def forward_with_state(
        self, features: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        """Like :meth:`forward`, also returning the final ``(h, c)`` to continue from (a long
        video in chunks: pass it as ``state`` of the next chunk).

        Returns:
            ``(B, T, C_h, h, w)`` hidden states and the final ``(h, c)``, each
            ``(B, C_h, h, w)``.

        Raises:
            ValueError: ``features`` is not ``(B, T, C, h, w)`` with ``T >= 1``, or ``state``
                does not fit (the message gives the expected and the actual shapes).
        """
        if not is_compiling():
            check_tensor(features, "features", ("B", "T", self.channels, "h", "w"), floating=True)
            if features.shape[1] < 1:
                raise ValueError(
                    f"features must have at least one frame, got {format_shape(features.shape)}"
                )
            if state is not None:
                _check_state(state, features.shape[0], self.hidden_channels, features.shape[-2:])
        batch, steps = features.shape[:2]
        input_gates = self.cell.input_conv(features.flatten(0, 1)).unflatten(0, (batch, steps))
        if state is None:
            state = self.cell.zero_state(features[:, 0])
        outputs = []
        for step in range(steps):
            state = self.cell.step(input_gates[:, step], state)
            outputs.append(state[0])
        return torch.stack(outputs, dim=1), state


def _check_state(state: object, batch: int, channels: int, size: torch.Size) -> None:
    """Raise a clear error unless ``state`` is ``(h, c)`` of shape ``(B, C_h, h, w)``."""
    expected = f"({batch}, {channels}, {size[0]}, {size[1]})"
    if not isinstance(state, (tuple, list)) or len(state) != 2:
        raise TypeError(f"state must be a pair (h0, c0) of tensors {expected}, got {state!r}")
    for name, value in zip(("h0", "c0"), state):
        check_tensor(value, f"state {name}", (batch, channels, size[0], size[1]), floating=True)
