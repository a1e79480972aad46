"""``LIFConv2d``: a 2-D convolutional layer of LIF neurons, a thin ``nn.Module`` over :func:`eventprop.lif_connections`."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..engines import check_engine_name
from ..errors import DEFAULT_MAX_SPIKES
from ..model.neuron import NeuronParams
from ..validation import check_float_dtype, non_negative_int, optional_positive_int
from .connected import lif_connections
from .connectivity import Connectivity, pair
from .constants import constant_value
from .functional import check_horizon
from .lif import normal_init

__all__ = ["LIFConv2d"]


class LIFConv2d(nn.Module):
    r"""A convolutional layer of LIF neurons: spike maps in, spike maps out, in continuous time.

    Output neuron ``(o, y, x)`` receives input ``(c, y s - p + u, x s - p + v)``
    through the shared kernel entry ``kernel[o, c, u, v]`` (zero padding: inputs outside
    the image do not exist), for every input channel ``c`` and kernel offset ``(u, v)``;
    the dynamics are those of :func:`eventprop.lif_layer`. The synapses are listed once
    (:meth:`~eventprop.layers.connectivity.Connectivity.conv2d`, buffers) and every
    forward gathers their weights from the kernel, so the exact EventProp gradient of
    each synapse sums into the kernel entry it shares. Each neuron simulates only its
    receptive field's spikes.

    Args:
        in_channels, out_channels: channels of the input and output spike maps.
        kernel_size, stride, padding: as in :class:`torch.nn.Conv2d` (ints or pairs).
        input_size: ``(H, W)`` of the input map.
        tau_mem, tau_syn, threshold: as in :class:`eventprop.LIFLayer`.
        learn_tau: learn one ``tau_mem`` and one ``tau_syn`` for the layer (logarithms
            ``log_tau_mem``, ``log_tau_syn``).
        learn_threshold: learn one threshold per output channel (``log_threshold``).
        horizon, max_spikes, engine, tangent_safeguard: as in :class:`eventprop.LIFLayer`
            (the engine must serve connection lists: ``"numba"``).
        init_mean, init_std: kernel ~ ``N(init_mean, init_std^2)`` (default std:
            ``threshold / sqrt(in_channels kh kw)``).
        device, dtype: of the parameters.

    Shape:
        - input: ``(batch, in_channels * H * W, max_in)`` spike times, channel-major
          (``torch.flatten`` of ``(C, H, W)``)
        - output: ``(batch, out_channels * H_out * W_out, max_out)``, the same layout,
          ``H_out = (H + 2 padding - kh) // stride + 1`` (:attr:`output_size`)

    Examples:
        >>> conv = LIFConv2d(2, 4, 3, input_size=(8, 8), tau_mem=20.0, tau_syn=5.0, init_mean=1.0)
        >>> conv(torch.zeros(1, 2 * 8 * 8, 1)).shape[:2], conv.output_size
        (torch.Size([1, 144]), (6, 6))
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        *,
        input_size: tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        tau_mem: float,
        tau_syn: float,
        threshold: float = 1.0,
        learn_tau: bool = False,
        learn_threshold: bool = False,
        horizon: float = math.inf,
        max_spikes: int | None = DEFAULT_MAX_SPIKES,
        engine: str = "auto",
        tangent_safeguard: bool = False,
        init_mean: float = 0.0,
        init_std: float | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(input_size, (tuple, list)) or len(input_size) != 2:
            raise ValueError(f"input_size must be a pair (H, W), got {input_size!r}")
        connectivity, kernel_index, self.output_size = Connectivity.conv2d(
            in_channels, out_channels, kernel_size, input_size, stride, padding, device
        )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.kernel_size = pair("kernel_size", kernel_size)
        self.stride, self.padding = pair("stride", stride), pair("padding", padding, non_negative_int)
        self.in_features = connectivity.in_features
        self.out_features = connectivity.out_features
        self._fixed = NeuronParams(tau_mem, tau_syn, threshold)
        for name, flag in (("learn_tau", learn_tau), ("learn_threshold", learn_threshold), ("tangent_safeguard", tangent_safeguard)):
            if not isinstance(flag, bool):
                raise ValueError(f"{name} must be True or False, got {flag!r}")
        self.horizon = check_horizon(horizon)
        self.max_spikes = optional_positive_int("max_spikes", max_spikes)
        self.engine = check_engine_name(engine)
        self.tangent_safeguard = tangent_safeguard
        check_float_dtype("dtype", dtype)
        factory = {"device": device, "dtype": dtype}
        self.kernel = nn.Parameter(torch.empty(out_channels, in_channels, *self.kernel_size, **factory))
        fan_in = in_channels * self.kernel_size[0] * self.kernel_size[1]
        normal_init(self.kernel, init_mean, threshold / math.sqrt(fan_in) if init_std is None else init_std, "init")
        self.register_buffer("source", connectivity.source, persistent=False)
        self.register_buffer("pointer", connectivity.pointer, persistent=False)
        self.register_buffer("kernel_index", kernel_index, persistent=False)
        self.log_tau_mem = self.log_tau_syn = self.log_threshold = None
        if learn_tau:
            self.log_tau_mem = nn.Parameter(torch.tensor(math.log(tau_mem), **factory))
            self.log_tau_syn = nn.Parameter(torch.tensor(math.log(tau_syn), **factory))
        if learn_threshold:
            self.log_threshold = nn.Parameter(torch.full((out_channels,), math.log(threshold), **factory))

    @property
    def connectivity(self) -> Connectivity:
        """The layer's synapses."""
        return Connectivity(self.source, self.pointer, self.in_features)

    def forward(self, times: Tensor) -> Tensor:
        positions = self.output_size[0] * self.output_size[1]
        tau_mem = self.log_tau_mem.exp() if self.log_tau_mem is not None else self._fixed.tau_mem
        tau_syn = self.log_tau_syn.exp() if self.log_tau_syn is not None else self._fixed.tau_syn
        threshold = (
            self.log_threshold.exp().repeat_interleave(positions) if self.log_threshold is not None else self._fixed.threshold
        )
        return lif_connections(
            times,
            self.kernel.reshape(-1)[self.kernel_index],
            self.connectivity,
            tau_mem=tau_mem,
            tau_syn=tau_syn,
            threshold=threshold,
            horizon=self.horizon,
            max_spikes=self.max_spikes,
            engine=self.engine,
            tangent_safeguard=self.tangent_safeguard,
        )

    def extra_repr(self) -> str:
        def now(log: Tensor | None, fixed: float) -> str:
            if log is None:
                return f"{fixed:g}"
            value = constant_value(log.exp())
            return "learned per channel" if value is None else f"{value:g}"

        p = self._fixed
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, input_size={self.input_size}, "
            f"stride={self.stride}, padding={self.padding}, output_size={self.output_size}, "
            f"tau_mem={now(self.log_tau_mem, p.tau_mem)}, tau_syn={now(self.log_tau_syn, p.tau_syn)}, "
            f"threshold={now(self.log_threshold, p.threshold)}"
        )
