"""``nn.Module`` wrappers: :class:`LIFLayer`, a thin shell over :func:`eventprop.functional.lif_layer`."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .functional import ENGINES, lif_layer, validate_options
from .neuron import NeuronParams

__all__ = ["LIFLayer"]


def check_features(in_features: int, out_features: int) -> None:
    """Raise ``ValueError`` unless both layer sizes are positive ints."""
    for name, value in (("in_features", in_features), ("out_features", out_features)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


class LIFLayer(nn.Module):
    r"""A layer of leaky integrate-and-fire neurons simulated exactly in continuous time.

    ``layer(times) -> times``: input spike times ``(batch, in_features, max_in)`` to
    output spike times ``(batch, out_features, max_out)``, both ascending along the last
    axis and padded with ``+inf``. Gradients (weights and input times) are exact,
    computed by EventProp. See :func:`eventprop.functional.lif_layer` for the model.

    Args:
        in_features, out_features: layer sizes.
        tau_mem, tau_syn: membrane and synaptic time constants (> 0, any ratio).
        threshold: firing threshold (> 0); reset is by subtraction.
        recurrent: add ``recurrent_weight`` ``(out_features, out_features)``; its
            diagonal is zero and stays zero (it is masked out, so it gets no gradient).
        t_max: horizon after which no spike is emitted (default: none).
        max_spikes: optional per-neuron cap that raises when exceeded.
        engine: ``"auto"``, ``"torch"`` or ``"numba"`` (see
            :func:`eventprop.functional.lif_layer`).
        init_mean, init_std: the weights are drawn from ``N(init_mean, init_std^2)``;
            default ``init_std`` is ``threshold / sqrt(in_features)``.
        recurrent_init_mean, recurrent_init_std: the same for ``recurrent_weight``
            (default ``N(0, (threshold / sqrt(out_features))^2)``).
        device, dtype: of the parameters, as in ``torch.nn.Linear``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        tau_mem: float,
        tau_syn: float,
        threshold: float = 1.0,
        recurrent: bool = False,
        t_max: float = math.inf,
        max_spikes: int | None = None,
        engine: str = "auto",
        init_mean: float = 0.0,
        init_std: float | None = None,
        recurrent_init_mean: float = 0.0,
        recurrent_init_std: float | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_features(in_features, out_features)
        self.params = NeuronParams(tau_mem, tau_syn, threshold)
        validate_options(t_max, max_spikes)
        self.in_features = in_features
        self.out_features = out_features
        self.t_max = float(t_max)
        self.max_spikes = max_spikes
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.engine = engine
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **factory))
        self.recurrent_weight = (
            nn.Parameter(torch.empty(out_features, out_features, **factory)) if recurrent else None
        )
        self.reset_parameters(init_mean, init_std, recurrent_init_mean, recurrent_init_std)

    @property
    def recurrent(self) -> bool:
        return self.recurrent_weight is not None

    def reset_parameters(
        self,
        mean: float = 0.0,
        std: float | None = None,
        recurrent_mean: float = 0.0,
        recurrent_std: float | None = None,
    ) -> None:
        """Redraw the weights from normal distributions (see the class docstring)."""
        theta = self.params.threshold
        with torch.no_grad():
            self.weight.normal_(mean, theta / math.sqrt(self.in_features) if std is None else std)
            if self.recurrent_weight is not None:
                rstd = theta / math.sqrt(self.out_features) if recurrent_std is None else recurrent_std
                self.recurrent_weight.normal_(recurrent_mean, rstd)
                self.recurrent_weight.fill_diagonal_(0.0)

    def forward(self, times: Tensor) -> Tensor:
        p = self.params
        return lif_layer(
            times,
            self.weight,
            self.recurrent_weight,
            tau_mem=p.tau_mem,
            tau_syn=p.tau_syn,
            threshold=p.threshold,
            t_max=self.t_max,
            max_spikes=self.max_spikes,
            engine=self.engine,
        )

    def extra_repr(self) -> str:
        p = self.params
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, tau_mem={p.tau_mem}, "
            f"tau_syn={p.tau_syn}, threshold={p.threshold}, recurrent={self.recurrent}, t_max={self.t_max}"
        )
