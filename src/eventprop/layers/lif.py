"""``LIFLayer``: a layer of LIF neurons, a thin ``nn.Module`` over :func:`eventprop.lif_layer`."""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn

from ..engines import check_engine_name
from ..errors import DEFAULT_MAX_SPIKES
from ..model.neuron import NeuronParams
from ..validation import check_float_dtype, non_negative, optional_positive_int, positive_int, real, renamed
from .constants import check_mask, constant_value
from .functional import check_horizon, lif_layer

__all__ = ["LIFLayer", "check_features", "normal_init", "DELAY_KINDS", "TAU_KINDS"]

#: The values of ``LIFLayer(delays=...)``.
DELAY_KINDS = (None, "axon", "synapse")
#: The values of ``LIFLayer(learn_tau=...)`` (``True`` is ``"layer"``).
TAU_KINDS = (False, True, "layer", "neuron")


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
    axis and padded with ``+inf``. Gradients (weights, input times and, where they are
    learned, time constants, thresholds and delays) are exact, computed by EventProp. See :func:`eventprop.lif_layer` for the model.

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
        learn_tau: learn ``tau_mem`` and ``tau_syn``: ``False``; ``True`` or
            ``"layer"``: one of each for the layer; ``"neuron"``: one of each per
            neuron. Held as their logarithms ``log_tau_mem``,
            ``log_tau_syn`` (positivity kept by that parametrisation; exact gradients,
            :mod:`eventprop.model.sensitivity`).
        learn_threshold: learn one threshold per neuron, held as ``log_threshold``
            ``(out_features,)``.
        delays: ``None``; ``"axon"``: a learnable delay per input neuron, parameter
            ``delay`` ``(in_features,)`` (every spike of input ``i`` arrives
            ``delay[i]`` later); ``"synapse"``: one per synapse, ``delay``
            ``(out_features, in_features)`` and, in a recurrent layer,
            ``recurrent_delay`` ``(out_features, out_features)``. Delays stay ``>= 0``:
            the forward uses ``delay.clamp(min=0)`` and :meth:`project_` (which the
            trainer calls after every optimiser step) clamps the parameters
            themselves.
        init_delay: the delays are drawn uniformly from ``[0, init_delay]`` (default 0),
            after the weights (the same seed draws the same weights with or without
            delays). At a delay of exactly 0 the clamp's derivative is one-sided:
            autograd gives the right-hand one, what a projected gradient step uses
            (central finite differences there see half of it).
        mask: ``None`` or a bool ``(out_features, in_features)``: fixed sparse
            connectivity of the input weights (a buffer; the weights outside it are
            never used and get zero gradient).
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
        learn_tau: bool | str = False,
        learn_threshold: bool = False,
        delays: str | None = None,
        init_delay: float = 0.0,
        mask: Tensor | None = None,
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
        initial = NeuronParams(tau_mem, tau_syn, threshold)
        if not isinstance(learn_threshold, bool):
            raise ValueError(f"learn_threshold must be True or False, got {learn_threshold!r}")
        if not (isinstance(learn_tau, bool) or (isinstance(learn_tau, str) and learn_tau in TAU_KINDS)):
            raise ValueError(f"learn_tau must be one of {list(TAU_KINDS)}, got {learn_tau!r}")
        tau_shape = (out_features,) if learn_tau == "neuron" else ()
        if delays not in DELAY_KINDS:
            raise ValueError(f"delays must be one of {list(DELAY_KINDS)}, got {delays!r}")
        init_delay = non_negative("init_delay", init_delay)
        if init_delay > 0 and delays is None:
            raise ValueError("init_delay is set but delays is None (choose delays='axon' or 'synapse')")
        if mask is not None:
            check_mask(mask, (self.out_features, self.in_features))
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
        self._fixed = initial  # the constants that are not learned
        self.log_tau_mem = self.log_tau_syn = self.log_threshold = self.delay = self.recurrent_delay = None
        if learn_tau:
            self.log_tau_mem = nn.Parameter(torch.full(tau_shape, math.log(initial.tau_mem), **factory))
            self.log_tau_syn = nn.Parameter(torch.full(tau_shape, math.log(initial.tau_syn), **factory))
        if learn_threshold:
            self.log_threshold = nn.Parameter(torch.full((out_features,), math.log(initial.threshold), **factory))
        if delays is not None:
            shape = (in_features,) if delays == "axon" else (out_features, in_features)
            self.delay = nn.Parameter(torch.empty(shape, **factory))
        if delays == "synapse" and recurrent:
            self.recurrent_delay = nn.Parameter(torch.empty(out_features, out_features, **factory))
        self.register_buffer("mask", mask.to(device) if mask is not None else None)
        self.reset_parameters(init_mean, init_std, recurrent_init_mean, recurrent_init_std)
        with torch.no_grad():  # after the weights: the same seed draws the same weights with or without delays
            for delay in (self.delay, self.recurrent_delay):
                if delay is not None:
                    delay.uniform_(0.0, init_delay)

    @property
    def learn_tau(self) -> bool | str:
        """``False``, ``"layer"`` or ``"neuron"``: whether (and how) the time constants are parameters."""
        if self.log_tau_mem is None:
            return False
        return "neuron" if self.log_tau_mem.dim() else "layer"

    @property
    def delays(self) -> str | None:
        """``None``, ``"axon"`` or ``"synapse"``: what the ``delay`` parameter holds."""
        if self.delay is None:
            return None
        return "axon" if self.delay.dim() == 1 else "synapse"

    @property
    def learn_threshold(self) -> bool:
        """Whether the thresholds are parameters."""
        return self.log_threshold is not None

    @property
    def tau_mem(self) -> float | Tensor:
        """The membrane time constant: a float, or the learned ``exp(log_tau_mem)`` (``()`` or ``(out_features,)``)."""
        return self.log_tau_mem.exp() if self.log_tau_mem is not None else self._fixed.tau_mem

    @property
    def tau_syn(self) -> float | Tensor:
        """The synaptic time constant: a float, or the learned ``exp(log_tau_syn)``."""
        return self.log_tau_syn.exp() if self.log_tau_syn is not None else self._fixed.tau_syn

    @property
    def threshold(self) -> float | Tensor:
        """The threshold: a float, or the learned ``exp(log_threshold)`` ``(out_features,)``."""
        return self.log_threshold.exp() if self.log_threshold is not None else self._fixed.threshold

    @property
    def params(self) -> NeuronParams:
        """The constants' current values (``ValueError`` where learned per-neuron values differ)."""
        values = {}
        for name in ("tau_mem", "tau_syn", "threshold"):
            value = constant_value(getattr(self, name))
            if value is None:
                raise ValueError(
                    f"this layer learns one {name} per neuron and they differ: it has no single NeuronParams (read "
                    f"LIFLayer.{name} instead)"
                )
            values[name] = value
        return NeuronParams(**values)

    def project_(self) -> None:
        """Put the parameters back into their domain in place: delays ``>= 0`` (after an optimiser step)."""
        with torch.no_grad():
            for delay in (self.delay, self.recurrent_delay):
                if delay is not None:
                    delay.clamp_(min=0.0)

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
        theta = self._fixed.threshold
        normal_init(self.weight, mean, theta / math.sqrt(self.in_features) if std is None else std, "init")
        if self.recurrent_weight is not None:
            rstd = theta / math.sqrt(self.out_features) if recurrent_std is None else recurrent_std
            normal_init(self.recurrent_weight, recurrent_mean, rstd, "recurrent_init")
            with torch.no_grad():
                self.recurrent_weight.fill_diagonal_(0.0)

    def forward(self, times: Tensor) -> Tensor:
        return lif_layer(
            times,
            self.weight,
            self.recurrent_weight,
            tau_mem=self.tau_mem,
            tau_syn=self.tau_syn,
            threshold=self.threshold,
            delay=self.delay.clamp(min=0.0) if self.delay is not None else None,
            recurrent_delay=self.recurrent_delay.clamp(min=0.0) if self.recurrent_delay is not None else None,
            mask=self.mask,
            horizon=self.horizon,
            max_spikes=self.max_spikes,
            engine=self.engine,
            tangent_safeguard=self.tangent_safeguard,
        )

    def extra_repr(self) -> str:
        def now(name: str) -> str:  # the current value: a number, or "learned, per neuron" where they differ
            value = constant_value(getattr(self, name))
            return "learned per neuron" if value is None else f"{value:g}"

        learned = [name for name, on in (("tau", self.learn_tau), ("threshold", self.learn_threshold)) if on]
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, tau_mem={now('tau_mem')}, "
            f"tau_syn={now('tau_syn')}, threshold={now('threshold')}, recurrent={self.recurrent}, horizon={self.horizon}"
            + (f", learn={'+'.join(learned)}" if learned else "")
            + (f", delays={self.delays!r}" if self.delays else "")
            + (", mask" if self.mask is not None else "")
        )
