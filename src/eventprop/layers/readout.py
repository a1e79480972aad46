"""``LIReadout``: a layer of non-spiking leaky integrators reading out spike trains."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..engines import check_engine_name
from ..model.neuron import NeuronParams
from ..model.trajectory import VoltageTrajectory
from ..validation import check_float_dtype, positive
from .functional import readout_trajectory
from .lif import check_features, normal_init

__all__ = ["LIReadout"]


class LIReadout(nn.Module):
    r"""Leaky-integrator readout: LIF dynamics without threshold, on a window ``[0, T]``.

    ``tau_mem dV/dt = -V + I``, ``tau_syn dI/dt = -I``; an input spike of neuron ``i``
    adds ``weight[n, i]`` to ``I_n``; ``V`` never resets. So::

        V_n(t) = sum_i weight[n, i] sum_{t_i <= t} K(t - t_i)

    with the PSP kernel ``K`` (:func:`eventprop.model.neuron.psp_kernel`).

    ``readout(times)`` returns a :class:`~eventprop.VoltageTrajectory`, the
    exact, differentiable ``V(t)`` of every readout neuron, from which each voltage
    loss takes what it needs: ``.max()`` (maximum over ``[0, T]`` and its time),
    ``.at(t)`` (``V`` on a time grid), ``.integral(l_V)`` and ``.weighted_integral(tau_w)``
    (see :mod:`eventprop.losses.voltage`). Returning the trajectory rather than one
    reduction keeps the layer independent of the loss.

    Args:
        in_features, out_features: sizes.
        tau_mem, tau_syn: time constants (> 0, any ratio, equal included).
        window: ``T`` (> 0, finite, time unit): inputs at or after ``T`` are ignored.
        init_mean, init_std: ``weight ~ N(init_mean, init_std^2)``; default
            ``init_std = 1 / sqrt(in_features)``.
        engine: ``"auto"`` or a registered engine with the ``trajectory`` capability.
        device, dtype: of ``weight``, as in ``torch.nn.Linear``.

    Shape:
        - input: ``(batch, in_features, max_spikes)`` spike times
        - output: a trajectory of ``(batch, out_features)`` neurons on ``[0, window]``

    Examples:
        >>> readout = LIReadout(4, 2, tau_mem=20.0, tau_syn=5.0, window=50.0)
        >>> v_max, t_peak = readout(torch.zeros(3, 4, 1)).max()
        >>> v_max.shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        tau_mem: float,
        tau_syn: float,
        window: float,
        init_mean: float = 0.0,
        init_std: float | None = None,
        engine: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = check_features(in_features, out_features)
        self.params = NeuronParams(tau_mem, tau_syn)
        self.window = positive("window", window)
        self.engine = check_engine_name(engine)
        check_float_dtype("dtype", dtype)
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        normal_init(self.weight, init_mean, 1 / math.sqrt(in_features) if init_std is None else init_std, "init")

    def forward(self, times: Tensor) -> VoltageTrajectory:
        """Exact trajectory of the readout for input spike times ``(batch, in_features, max_spikes)``."""
        p = self.params
        return readout_trajectory(
            times, self.weight, tau_mem=p.tau_mem, tau_syn=p.tau_syn, window=self.window, engine=self.engine
        )

    def extra_repr(self) -> str:
        p = self.params
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, tau_mem={p.tau_mem}, "
            f"tau_syn={p.tau_syn}, window={self.window}"
        )
