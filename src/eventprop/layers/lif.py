"""``LIFLayer``: a layer of LIF neurons, a thin ``nn.Module`` over :func:`eventprop.lif_layer`."""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn

from ..engines import check_engine_name
from ..errors import DEFAULT_MAX_SPIKES
from ..model.neuron import NeuronParams
from ..validation import check_float_dtype, optional_positive_int, positive_int, real, renamed
from .functional import check_horizon, lif_layer

__all__ = ["LIFLayer", "check_features", "normal_init"]


def check_features(in_features: int, out_features: int) -> tuple[int, int]:
    """Both layer sizes as ints; ``ValueError`` unless they are positive integers."""
    return positive_int("in_features", in_features), positive_int("out_features", out_features)


def normal_init(tensor: Tensor, mean: float, std: float, name: str) -> None:
    """Fill ``tensor`` from ``N(mean, std^2)`` in place (``ValueError`` for a non-finite mean or a negative std)."""
    mean = real(f"{name}_mean", mean)
    std = real(f"{name}_std", std, low=0.0)
    with torch.no_grad():
        tensor.normal_(mean, std)


class LIFLayer(nn.Module):
    r"""A layer of leaky integrate-and-fire neurons simulated exactly in continuous time.

    ``layer(times) -> times``: input spike times ``(batch, in_features, max_in)`` to
    output spike times ``(batch, out_features, max_out)``, both ascending along the last
    axis and padded with ``+inf``. Gradients (weights and input times) are exact,
    computed by EventProp. See :func:`eventprop.lif_layer` for the model.

    Args:
        in_features, out_features: layer sizes.
        tau_mem, tau_syn: membrane and synaptic time constants (> 0, any ratio).
        threshold: firing threshold (> 0); reset is by subtraction.
        recurrent: add ``recurrent_weight`` ``(out_features, out_features)``; its
            diagonal is zero and stays zero (it is masked out, so it gets no gradient).
        horizon: no spike is emitted after it (default: none).
        max_spikes: spike budget per neuron and sample (default 1000, ``None``: no
            limit); exceeding it raises :class:`~eventprop.SpikeLimitError`.
        engine: ``"auto"`` or a registered engine name (see :func:`eventprop.lif_layer`).
        tangent_safeguard: clip the gradient at tangential spikes (see
            :func:`eventprop.lif_layer`; off by default).
        init_mean, init_std: the weights are drawn from ``N(init_mean, init_std^2)``;
            default ``init_std`` is ``threshold / sqrt(in_features)``.
        recurrent_init_mean, recurrent_init_std: the same for ``recurrent_weight``
            (default ``N(0, (threshold / sqrt(out_features))^2)``).
        device, dtype: of the parameters, as in ``torch.nn.Linear``.
        t_max: deprecated spelling of ``horizon``.

    Shape:
        - input: ``(batch, in_features, max_in)`` spike times
        - output: ``(batch, out_features, max_out)`` spike times

    Examples:
        >>> layer = LIFLayer(5, 3, tau_mem=20.0, tau_syn=5.0, init_mean=1.5, init_std=0.5)
        >>> layer(torch.zeros(2, 5, 1)).shape[:2]
        torch.Size([2, 3])
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
        horizon: float = math.inf,
        max_spikes: int | None = DEFAULT_MAX_SPIKES,
        engine: str = "auto",
        tangent_safeguard: bool = False,
        init_mean: float = 0.0,
        init_std: float | None = None,
        recurrent_init_mean: float = 0.0,
        recurrent_init_std: float | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        t_max: float | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = check_features(in_features, out_features)
        self.params = NeuronParams(tau_mem, tau_syn, threshold)
        self.horizon = check_horizon(renamed("LIFLayer", "t_max", t_max, "horizon", horizon, math.inf))
        self.max_spikes = optional_positive_int("max_spikes", max_spikes)
        self.engine = check_engine_name(engine)
        if not isinstance(tangent_safeguard, bool):
            raise ValueError(f"tangent_safeguard must be True or False, got {tangent_safeguard!r}")
        self.tangent_safeguard = tangent_safeguard
        check_float_dtype("dtype", dtype)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **factory))
        self.recurrent_weight = (
            nn.Parameter(torch.empty(out_features, out_features, **factory)) if recurrent else None
        )
        self.reset_parameters(init_mean, init_std, recurrent_init_mean, recurrent_init_std)

    @property
    def recurrent(self) -> bool:
        """Whether the layer has recurrent connections."""
        return self.recurrent_weight is not None

    @property
    def t_max(self) -> float:
        """Deprecated name of :attr:`horizon`."""
        warnings.warn("LIFLayer.t_max is deprecated, use LIFLayer.horizon", DeprecationWarning, stacklevel=2)
        return self.horizon

    @t_max.setter
    def t_max(self, value: float) -> None:
        warnings.warn("LIFLayer.t_max is deprecated, use LIFLayer.horizon", DeprecationWarning, stacklevel=2)
        self.horizon = check_horizon(value)

    def reset_parameters(
        self,
        mean: float = 0.0,
        std: float | None = None,
        recurrent_mean: float = 0.0,
        recurrent_std: float | None = None,
    ) -> None:
        """Redraw the weights from normal distributions (see the class docstring)."""
        theta = self.params.threshold
        normal_init(self.weight, mean, theta / math.sqrt(self.in_features) if std is None else std, "init")
        if self.recurrent_weight is not None:
            rstd = theta / math.sqrt(self.out_features) if recurrent_std is None else recurrent_std
            normal_init(self.recurrent_weight, recurrent_mean, rstd, "recurrent_init")
            with torch.no_grad():
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
            horizon=self.horizon,
            max_spikes=self.max_spikes,
            engine=self.engine,
            tangent_safeguard=self.tangent_safeguard,
        )

    def extra_repr(self) -> str:
        p = self.params
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, tau_mem={p.tau_mem}, "
            f"tau_syn={p.tau_syn}, threshold={p.threshold}, recurrent={self.recurrent}, horizon={self.horizon}"
        )
