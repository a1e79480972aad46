"""Near-tangential threshold crossings: resolved where floating point can resolve them,
counted and optionally clipped where it cannot; never a division error or the peak time."""

from __future__ import annotations

import math
import warnings

import mpmath
import numpy as np
import pytest
import torch

from eventprop import lif_layer
from eventprop.errors import TangentialCrossingWarning
from helpers import F64, FEEDFORWARD_ENGINES

# One input spike at 3 ms into a neuron with tau_mem = 20 ms, tau_syn = 5 ms: the voltage
# peak w K(s_peak) equals the threshold at w = W_TOUCH.
W_TOUCH = 6.34960420787279790
S_PEAK = math.log(4) / (1 / 5 - 1 / 20)


def _true_root(w: float) -> tuple[float, float]:
    """(spike time - 3, dt/dw) of the first crossing, in 50-digit arithmetic."""
    mpmath.mp.dps = 50
    w = mpmath.mpf(w)
    kernel = lambda s: mpmath.mpf(5) / (5 - 20) * (mpmath.e ** (-s / 5) - mpmath.e ** (-s / 20))  # noqa: E731
    slope = lambda s: mpmath.mpf(5) / (5 - 20) * (-mpmath.e ** (-s / 5) / 5 + mpmath.e ** (-s / 20) / 20)  # noqa: E731
    lo, hi = mpmath.mpf("0.1"), mpmath.log(4) / (mpmath.mpf(1) / 5 - mpmath.mpf(1) / 20)  # V rises on [lo, peak]
    for _ in range(200):  # bisection: w K - 1 < 0 at lo, > 0 at the peak
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if w * kernel(mid) < 1 else (lo, mid)
    return float(lo), float(-kernel(lo) / (w * slope(lo)))


def _spike_and_gradients(w: float, engine: str, dtype: torch.dtype = F64, **kw: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = torch.tensor([[[3.0]]], dtype=dtype, requires_grad=True)
    weight = torch.tensor([[w]], dtype=dtype, requires_grad=True)
    out = lif_layer(x, weight, tau_mem=20.0, tau_syn=5.0, engine=engine, **kw)
    assert torch.isfinite(out[0, 0, 0])
    gx, gw = torch.autograd.grad(out[0, 0, 0], [x, weight])
    return out[0, 0, 0].detach(), gx, gw


def _first_spiking(w: float, engine: str, dtype: torch.dtype) -> float:
    """The smallest weight from ``w`` upwards, one ulp of ``dtype`` at a time, at which the neuron fires."""
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    x = torch.tensor([[[3.0]]], dtype=dtype)
    for _ in range(64):
        if torch.isfinite(lif_layer(x, torch.tensor([[w]], dtype=dtype), tau_mem=20.0, tau_syn=5.0, engine=engine)).any():
            return w
        w = float(np.nextafter(np_dtype(w), np_dtype(np.inf)))
    raise AssertionError("no spike within 64 ulps")


def _sweep(w_first: float, dtype: torch.dtype) -> list[float]:
    """``w_first`` plus 0, 1, 2, 3, 4, 7, ... ulps of ``dtype``, up to a relative overshoot of about 1e-10."""
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    ulp = float(np.spacing(np_dtype(w_first)))
    top = 1e-10 * w_first / ulp if dtype == F64 else 64
    steps = sorted({0, *(round(1.6**j) for j in range(64) if 1.6**j <= top)})
    return [float(np_dtype(w_first + k * ulp)) for k in steps]


@pytest.mark.parametrize("engine", FEEDFORWARD_ENGINES)
def test_near_tangential_crossings_are_resolved_to_rounding_and_counted_where_they_cannot_be(engine: str) -> None:
    """An ulp sweep of the weight upwards from the first one that fires (overshoot of
    the peak over the threshold from 1.4e-16 to 1e-10 relative), against a 50-digit root.

    The relative rounding error ``eps`` of ``V`` limits what any float64 solver can do:
    the crossing moves by about ``eps / V'`` (one ulp of the weight moves it as much)
    and the gradient's ``1 / (I - theta)`` by a relative ``eps / overshoot``. The
    engines meet those bounds at every weight; where the slope is below the tangent
    tolerance the spike is counted (warned), never returned at the peak time with a
    gradient 1e7 too large, as the numba solver once did (its convergence test on the
    step size stopped at the maximum, where a Halley step is tiny).
    """
    eps = float(np.finfo(np.float64).eps)
    w_first = _first_spiking(W_TOUCH, engine, F64)
    warned = []
    for w in _sweep(w_first, F64):
        overshoot = w / W_TOUCH - 1
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TangentialCrossingWarning)
            t, gx, gw = _spike_and_gradients(w, engine)
        s_true, dw_true = _true_root(w)
        where = f"w = {w!r} (overshoot {overshoot:.2g})"
        assert abs(float(gx) - 1.0) < 1e-6, where  # translation invariance: dt/dt_in = 1 exactly
        assert abs(float(t) - 3.0 - s_true) <= 8 * eps * w * abs(dw_true), where  # within 8 ulps of the weight
        if caught:
            warned.append(overshoot)
        else:
            assert abs(float(gw) / dw_true - 1) <= 2 * eps / overshoot, where
    # counted exactly where the slope is below the tolerance: the first weights of the sweep
    assert warned and max(warned) < 2.5e-15 and len(warned) < len(_sweep(w_first, F64)) - 20


@pytest.mark.parametrize("engine", FEEDFORWARD_ENGINES)
def test_float32_near_tangential_crossings_are_the_float64_results_rounded(engine: str) -> None:
    """float32 layers compute in float64: a float32 ulp sweep across the weight at which
    the float32 peak touches the threshold gives the float64 spike times and gradients
    rounded (the numba engine once solved them in float32, with dt/dt_in from 0.4 to 1.6)."""
    w_first = _first_spiking(float(np.float32(W_TOUCH)), engine, torch.float32)
    for w in _sweep(w_first, torch.float32):
        t32, gx32, gw32 = _spike_and_gradients(w, engine, torch.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TangentialCrossingWarning)
            t64, gx64, gw64 = _spike_and_gradients(w, engine, F64)
        assert t32.dtype == torch.float32 and gw32.dtype == torch.float32
        assert torch.equal(t32, t64.float()) and torch.equal(gx32, gx64.float()) and torch.equal(gw32, gw64.float())


@pytest.mark.parametrize("engine", FEEDFORWARD_ENGINES)
def test_a_tangential_spike_is_counted_never_a_division_error_and_the_safeguard_bounds_it(engine: str) -> None:
    """The weight of the issue: the float64 voltage peak equals the threshold to the last bit."""
    w = _first_spiking(6.349604207872799, engine, F64)  # the weight itself may round to a peak just below the threshold
    with pytest.warns(TangentialCrossingWarning, match=r"1 of 1 spikes crossed the threshold tangentially.*exact formula"):
        _, gx, gw = _spike_and_gradients(w, engine)
    assert torch.isfinite(gw) and torch.isfinite(gx)  # never NaN or inf, never ZeroDivisionError
    with pytest.warns(TangentialCrossingWarning, match="clipped to the tolerance"):
        _, gx_safe, gw_safe = _spike_and_gradients(w, engine, tangent_safeguard=True)
    assert torch.isfinite(gw_safe) and torch.isfinite(gx_safe)
    tol = 8 * math.sqrt(torch.finfo(torch.float64).eps)
    # dt/dw = -K / (w K') with w K' = (I - theta) / tau_mem, clipped to tol * theta: |dt/dw| <= tau_mem K / tol
    assert abs(float(gw_safe)) <= 20.0 * 0.2 / tol * 1.01


@pytest.mark.parametrize("engine", FEEDFORWARD_ENGINES)
def test_ordinary_spikes_raise_no_warning_and_the_safeguard_changes_nothing_there(engine: str) -> None:
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(4, 5, 2, generator=gen, dtype=F64) * 20).sort(dim=-1).values
    w = (torch.rand(6, 5, generator=gen, dtype=F64) * 2).requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TangentialCrossingWarning)
        out = lif_layer(x, w, tau_mem=20.0, tau_syn=5.0, engine=engine)
        (g,) = torch.autograd.grad(torch.where(torch.isfinite(out), out, 0.0).sum(), w)
        out_s = lif_layer(x, w, tau_mem=20.0, tau_syn=5.0, engine=engine, tangent_safeguard=True)
        (g_s,) = torch.autograd.grad(torch.where(torch.isfinite(out_s), out_s, 0.0).sum(), w)
    assert torch.isfinite(out).sum() > 5 and torch.equal(g, g_s)


def test_the_trainer_counts_tangential_spikes_per_epoch(tmp_path) -> None:  # noqa: ANN001
    from eventprop.training import preset_config, train
    from eventprop.training.outputs import read_metrics

    config = preset_config("best", epochs=1, train_size=32, val_size=16, hidden=(8,), tangent_safeguard=True)
    train(config, tmp_path, progress=False, log=lambda s: None)
    rows = read_metrics(tmp_path / "metrics.csv")
    assert "tangential_spikes" in rows[0] and rows[0]["tangential_spikes"] >= 0
    with pytest.raises(ValueError, match="tangent_safeguard must be True or False"):
        lif_layer(torch.zeros(1, 1, 1), torch.ones(1, 1), tau_mem=20.0, tau_syn=5.0, tangent_safeguard=1)  # type: ignore[arg-type]
