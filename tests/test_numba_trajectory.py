"""The compiled trajectory queries against the PyTorch engine's (which the reference and finite differences check).

SHD-shaped readouts and recurrent LIF trajectories in float64 (voltages and peak
times to 1e-9, gradients to 1e-8 relative), events tied in time, float32 rounding and
independence of the thread count.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

pytest.importorskip("numba")

import numba  # noqa: E402

from eventprop import (  # noqa: E402
    label_voltage_gap,
    lif_layer,
    lif_trajectory,
    max_voltage_cross_entropy,
    readout_trajectory,
    voltage_integral_loss,
)
from helpers import F64, record  # noqa: E402


def _poisson(batch: int, channels: int, rate_hz: float, trial_ms: float, gen: torch.Generator) -> Tensor:
    """Poisson trains ``(batch, channels, slots)`` at ``rate_hz`` over ``[0, trial_ms]``, +inf padded."""
    slots = max(1, int(rate_hz * trial_ms / 1000 * 3) + 4)
    times = (-torch.log(torch.rand(batch, channels, slots, generator=gen, dtype=F64)) * (1000.0 / rate_hz)).cumsum(-1)
    return torch.where(times <= trial_ms, times, torch.full_like(times, math.inf))


def _loss_v(v: Tensor, t: Tensor) -> Tensor:
    return (v - 0.3) ** 2 * torch.exp(-t / 400.0)


def _readout_queries(
    engine: str, times: Tensor, weight: Tensor, labels: Tensor, window: float, max_loss: bool = True
) -> tuple[Tensor, ...]:
    """Values, peak and the gradient of a sum of the queries w.r.t. weight and input times.

    Without ``max_loss`` the maximum is left out of the loss (it is not differentiable
    where it sits on events tied in time).
    """
    times = times.clone().requires_grad_(True)
    weight = weight.clone().requires_grad_(True)
    traj = readout_trajectory(times, weight, tau_mem=20.0, tau_syn=5.0, window=window, engine=engine)
    v_max, t_peak = traj.max()
    grid = torch.linspace(0.0, window, 97).to(times.dtype)  # float32-representable
    on_grid = traj.at(grid)
    loss = (
        (max_voltage_cross_entropy(traj, labels, scale=4.0) if max_loss else 0.0)
        + voltage_integral_loss(traj, _loss_v) / window
        + (on_grid * torch.linspace(-1.0, 1.0, 97, dtype=times.dtype)).mean()
        + traj.weighted_integral(50.0).mean() / window
    )
    loss.backward()
    return v_max.detach(), t_peak, on_grid.detach(), loss.detach(), times.grad, weight.grad


def _compare(name: str, a: tuple[Tensor, ...], b: tuple[Tensor, ...], t_tol: float = 1e-9, g_tol: float = 1e-8) -> None:
    v_err = max(float((x - y).abs().max()) for x, y in zip((a[0], a[2], a[3]), (b[0], b[2], b[3])))
    record(f"{name}: numba vs torch, voltage (absolute)", v_err)
    assert v_err <= 1e-10
    if a[1] is not None:
        t_err = float((a[1] - b[1]).abs().max())
        record(f"{name}: numba vs torch, peak time (ms)", t_err)
        assert t_err <= t_tol
    for x, y in zip(a[4:], b[4:]):
        scale = float(x.abs().max())
        assert scale > 0
        error = float((x - y).abs().max()) / scale
        record(f"{name}: numba vs torch, gradient (relative)", error)
        assert error <= g_tol


def test_an_shd_shaped_readout_agrees_with_the_pytorch_engine() -> None:
    # a 256-neuron hidden layer at ~8 Hz over 1 s (~2,000 spikes per sample) into 20 classes
    gen = torch.Generator().manual_seed(0)
    spikes = _poisson(2, 256, 8.0, 1000.0, gen)
    weight = torch.randn(20, 256, generator=gen, dtype=F64) * 0.3
    labels = torch.tensor([3, 17])
    assert 3000 <= int(torch.isfinite(spikes).sum()) <= 5200
    a = _readout_queries("torch", spikes, weight, labels, 1000.0)
    b = _readout_queries("numba", spikes, weight, labels, 1000.0)
    _compare("SHD readout", a, b)


def test_a_recurrent_lif_trajectory_of_shd_shape_agrees_with_the_pytorch_engine() -> None:
    # 700 channels (~2,800 input spikes), 48 recurrent neurons, their own spikes carrying gradients
    gen = torch.Generator().manual_seed(1)
    times = _poisson(1, 700, 4.0, 1000.0, gen)
    weight = torch.randn(48, 700, generator=gen, dtype=F64) * 0.06 + 0.07
    rec = (torch.randn(48, 48, generator=gen, dtype=F64) * 0.1).fill_diagonal_(0.0)
    labels = torch.tensor([5])

    def run(engine: str) -> tuple[Tensor, ...]:
        x, w, r = (a.clone().requires_grad_(True) for a in (times, weight, rec))
        spikes = lif_layer(x, w, r, tau_mem=20.0, tau_syn=5.0, engine="numba")
        traj = lif_trajectory(x, spikes, w, r, tau_mem=20.0, tau_syn=5.0, window=990.0, engine=engine)
        v_max, _ = traj.max()
        grid = torch.linspace(0.0, 990.0, 33, dtype=F64)
        on_grid = traj.at(grid)
        loss = voltage_integral_loss(traj, _loss_v) / 1000 + label_voltage_gap(traj, labels) + on_grid.mean()
        loss = loss + (v_max * torch.linspace(0.0, 1.0, 48, dtype=F64)).sum()
        loss.backward()
        n_spikes = int(torch.isfinite(spikes).sum())
        assert 200 <= n_spikes <= 2000, n_spikes
        return v_max.detach(), None, on_grid.detach(), loss.detach(), x.grad, w.grad, r.grad

    _compare("SHD recurrent LIF trajectory", run("torch"), run("numba"))


def test_events_tied_in_time_agree_with_the_pytorch_engine() -> None:
    # whole-millisecond input times: many inputs share a time, and segments of zero length;
    # a maximum on tied events has one-sided derivatives only, so its value is compared
    gen = torch.Generator().manual_seed(2)
    times = torch.floor(_poisson(3, 40, 60.0, 100.0, gen))
    weight = torch.randn(5, 40, generator=gen, dtype=F64) * 0.8
    labels = torch.tensor([0, 2, 4])
    ties = times[torch.isfinite(times)]
    assert ties.unique().numel() < ties.numel() / 2
    a = _readout_queries("torch", times, weight, labels, 100.0, max_loss=False)
    b = _readout_queries("numba", times, weight, labels, 100.0, max_loss=False)
    _compare("tied events", a, b)


def test_float32_trajectories_are_the_float64_results_rounded() -> None:
    gen = torch.Generator().manual_seed(3)
    times = _poisson(4, 30, 20.0, 500.0, gen).float().double()  # float32-representable
    weight = (torch.randn(6, 30, generator=gen, dtype=F64) * 0.5).float().double()
    labels = torch.tensor([0, 1, 2, 5])
    wide = _readout_queries("numba", times, weight, labels, 500.0)
    narrow = _readout_queries("numba", times.float(), weight.float(), labels, 500.0)
    for name, x, y in zip(("v_max", "t_peak", "values"), wide[:3], narrow[:3]):
        assert y.dtype == torch.float32
        assert torch.equal(x.float(), y), name
    for x, y in zip(wide[4:], narrow[4:]):  # the float32 loss's own rounding enters the gradient
        assert float((x.float() - y).abs().max() / x.abs().max()) < 1e-5


def test_results_do_not_depend_on_the_number_of_threads() -> None:
    gen = torch.Generator().manual_seed(4)
    spikes = _poisson(9, 64, 30.0, 300.0, gen)
    weight = torch.randn(10, 64, generator=gen, dtype=F64) * 0.4
    labels = torch.arange(9) % 10
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _readout_queries("numba", spikes, weight, labels, 300.0)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = _readout_queries("numba", spikes, weight, labels, 300.0)
    finally:
        numba.set_num_threads(before)
    for x, y in zip(one, many):
        assert torch.equal(x, y)


def test_a_nan_voltage_is_the_maximum_as_in_the_pytorch_engine() -> None:
    # three inputs at the same time: I overflows to inf after two, and on the zero-length
    # segment before the third V = inf * K(0) = inf * 0 is NaN
    times = torch.tensor([[[1.0], [1.0], [1.0]]], dtype=F64)
    weight = torch.full((1, 3), 1e308, dtype=F64)
    results = [readout_trajectory(times, weight, tau_mem=20.0, tau_syn=5.0, window=10.0, engine=e).max() for e in ("torch", "numba")]
    (v_torch, t_torch), (v_numba, t_numba) = results
    assert torch.isnan(v_torch).all() and torch.isnan(v_numba).all()
    assert torch.equal(t_torch, t_numba)


def test_second_derivatives_through_compiled_trajectories_are_refused() -> None:
    gen = torch.Generator().manual_seed(8)
    times = _poisson(2, 6, 40.0, 50.0, gen)
    weight = torch.randn(3, 6, generator=gen, dtype=F64).requires_grad_(True)
    for query in (lambda tr: tr.max()[0].sum(), lambda tr: (tr.integral(lambda v, t: v**2)).sum()):
        loss = query(readout_trajectory(times, weight, tau_mem=20.0, tau_syn=5.0, window=50.0, engine="numba"))
        with pytest.raises(RuntimeError, match="cannot be differentiated twice"):
            torch.autograd.grad(loss, weight, create_graph=True)
        torch.autograd.grad(query(readout_trajectory(times, weight, tau_mem=20.0, tau_syn=5.0, window=50.0, engine="numba")), weight)


def test_empty_batches_and_queries_before_any_event() -> None:
    for engine in ("torch", "numba"):
        empty = readout_trajectory(torch.zeros(0, 3, 2, dtype=F64), torch.ones(2, 3, dtype=F64), tau_mem=20.0, tau_syn=5.0, window=9.0, engine=engine)
        assert empty.max()[0].shape == (0, 2) and empty.integral(lambda v, t: v).shape == (0, 2)
        silent = readout_trajectory(torch.full((2, 3, 1), math.inf, dtype=F64), torch.ones(2, 3, dtype=F64), tau_mem=20.0, tau_syn=5.0, window=9.0, engine=engine)
        t = torch.tensor([[0.5], [3.0]], dtype=F64)
        assert torch.equal(silent.values(t, torch.full((2, 1), -1)), torch.zeros(2, 2, 1, dtype=F64))
