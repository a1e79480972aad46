r"""Which input reaches which neuron: dense, masked and convolutional connectivity as synapse lists.

A :class:`Connectivity` lists a feed-forward layer's synapses grouped by target neuron
(the layout of :class:`eventprop.engines.Connections`): synapse ``c`` in
``pointer[j] <= c < pointer[j + 1]`` connects input ``source[c]`` to neuron ``j``.
Weights (and delays) are then one value per synapse, ``(C,)``; a convolution's synapses
share the entries of its kernel (``kernel_index``: the flat kernel entry of each
synapse), so that gathering ``kernel.reshape(-1)[kernel_index]`` sends every synapse's
gradient into the kernel by autograd.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..validation import non_negative_int, positive_int

__all__ = ["Connectivity", "conv2d_output_size", "pair"]


def pair(name: str, value: int | tuple[int, int], check: Callable[[str, Any], int] = positive_int) -> tuple[int, int]:
    """An int or a pair of ints (a tuple or list) as a pair, each checked by ``check``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return check(f"{name}[0]", value[0]), check(f"{name}[1]", value[1])
    v = check(name, value)
    return v, v


def conv2d_output_size(
    input_size: tuple[int, int], kernel_size: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> tuple[int, int]:
    """``(H_out, W_out) = (H + 2 padding - kernel) // stride + 1`` (``ValueError`` when the kernel does not fit)."""
    out = []
    for axis, (n, k, s, p) in enumerate(zip(input_size, kernel_size, stride, padding)):
        if k > n + 2 * p:
            raise ValueError(
                f"kernel_size[{axis}] = {k} is larger than the padded input ({n} + 2 x {p} = {n + 2 * p}); the "
                "convolution has no output"
            )
        out.append((n + 2 * p - k) // s + 1)
    return out[0], out[1]


@dataclass(frozen=True)
class Connectivity:
    """The synapses of a feed-forward layer, grouped by target neuron (module docstring).

    Attributes:
        source: ``(C,)`` int64, the input neuron of each synapse.
        pointer: ``(out_features + 1,)`` int64: neuron ``j``'s synapses are
            ``pointer[j]:pointer[j + 1]``.
        in_features: number of input neurons.
    """

    source: Tensor
    pointer: Tensor
    in_features: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "in_features", positive_int("in_features", self.in_features))
        for name in ("source", "pointer"):
            value = getattr(self, name)
            if not isinstance(value, Tensor) or value.dim() != 1 or value.dtype != torch.int64:
                got = f"{value.dtype} tensor of shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(f"Connectivity.{name} must be a 1-D int64 tensor, got a {got}")
        source, pointer = self.source, self.pointer
        if pointer.shape[0] < 2 or int(pointer[0]) != 0 or int(pointer[-1]) != source.shape[0]:
            raise ValueError(
                f"Connectivity.pointer must start at 0 and end at the number of synapses ({source.shape[0]}), with at "
                f"least one neuron; got {pointer.shape[0]} entries from {int(pointer[0]) if pointer.numel() else None} "
                f"to {int(pointer[-1]) if pointer.numel() else None}"
            )
        if bool((pointer[1:] < pointer[:-1]).any()):
            raise ValueError("Connectivity.pointer must be non-decreasing (the synapses are grouped by neuron, in order)")
        if source.numel() and (int(source.min()) < 0 or int(source.max()) >= self.in_features):
            raise ValueError(
                f"Connectivity.source must name input neurons in [0, {self.in_features}), got values in "
                f"[{int(source.min())}, {int(source.max())}]"
            )

    @property
    def out_features(self) -> int:
        """Number of neurons."""
        return int(self.pointer.shape[0]) - 1

    @property
    def n_synapses(self) -> int:
        """``C``."""
        return int(self.source.shape[0])

    @property
    def target(self) -> Tensor:
        """``(C,)`` int64, the neuron of each synapse."""
        counts = self.pointer[1:] - self.pointer[:-1]
        return torch.repeat_interleave(torch.arange(self.out_features, device=self.pointer.device), counts)

    def to(self, device: torch.device | str) -> Connectivity:
        """The same lists on ``device``."""
        return Connectivity(self.source.to(device), self.pointer.to(device), self.in_features)

    @classmethod
    def dense(cls, out_features: int, in_features: int, device: torch.device | str | None = None) -> Connectivity:
        """Every input to every neuron; synapse ``c = j * in_features + i`` (``weight.reshape(-1)``'s order)."""
        n_out, n_in = positive_int("out_features", out_features), positive_int("in_features", in_features)
        source = torch.arange(n_in, device=device).repeat(n_out)
        pointer = torch.arange(0, n_out * n_in + 1, n_in, device=device)
        return cls(source, pointer, n_in)

    @classmethod
    def from_mask(cls, mask: Tensor) -> Connectivity:
        """The synapses where ``mask`` ``(out_features, in_features)`` is true, in ``weight[mask]``'s (row-major) order."""
        if not isinstance(mask, Tensor) or mask.dim() != 2 or mask.dtype != torch.bool:
            shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(f"mask must be a bool tensor of shape (out_features, in_features), got {shape}")
        if mask.shape[0] == 0 or mask.shape[1] == 0:
            raise ValueError(f"mask must have at least one row and one column, got shape {tuple(mask.shape)}")
        rows, cols = mask.nonzero(as_tuple=True)
        counts = mask.sum(dim=1)
        pointer = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        return cls(cols, pointer, int(mask.shape[1]))

    @classmethod
    def conv2d(
        cls,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        input_size: tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        device: torch.device | str | None = None,
    ) -> tuple[Connectivity, Tensor, tuple[int, int]]:
        r"""The synapses of a 2-D convolution, channel-major (``torch.flatten`` of ``(C, H, W)``).

        Output neuron ``(o, y, x)`` (index ``(o H_out + y) W_out + x``) receives input
        ``(c, y s - p + u, x s - p + v)`` (index ``(c H + ...) W + ...``) through kernel
        entry ``(o, c, u, v)`` wherever that input lies inside the image (zero padding:
        no synapse).

        Returns:
            ``(connectivity, kernel_index, (H_out, W_out))``: ``kernel_index`` ``(C,)``
            int64 into ``kernel.reshape(-1)`` of a kernel ``(out_channels,
            in_channels, kh, kw)``.
        """
        c_in, c_out = positive_int("in_channels", in_channels), positive_int("out_channels", out_channels)
        kh, kw = pair("kernel_size", kernel_size)
        h, w = pair("input_size", input_size)
        sh, sw = pair("stride", stride)
        ph, pw = pair("padding", padding, non_negative_int)
        ho, wo = conv2d_output_size((h, w), (kh, kw), (sh, sw), (ph, pw))
        def axis(n: int, k: int) -> Tensor:  # arange(n) along axis k of (c_out, ho, wo, c_in, kh, kw), broadcastable
            shape = [1] * 6
            shape[k] = n
            return torch.arange(n, device=device).reshape(shape)

        # output-major, so the synapses come grouped by output neuron; only the two index
        # arrays are materialised at full size (the rest broadcasts)
        o, y, x, c, u, v = (axis(n, k) for k, n in enumerate((c_out, ho, wo, c_in, kh, kw)))
        iy, ix = y * sh - ph + u, x * sw - pw + v
        full = (c_out, ho, wo, c_in, kh, kw)
        inside = ((iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)).expand(full)
        source = ((c * h + iy) * w + ix).expand(full)[inside]
        kernel_index = (((o * c_in + c) * kh + u) * kw + v).expand(full)[inside]
        counts = inside.reshape(c_out * ho * wo, -1).sum(dim=1)
        pointer = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        return cls(source, pointer, c_in * h * w), kernel_index, (ho, wo)
