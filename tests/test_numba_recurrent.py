"""The compiled recurrent engine against the PyTorch one (which the reference checks), at SHD-like shapes and its own edges."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

pytest.importorskip("numba")

import numba  # noqa: E402

import eventprop.engines.numba_cpu.recurrent as numba_recurrent  # noqa: E402
from eventprop import LIFLayer, lif_layer  # noqa: E402
from helpers import F64, central_differences, record, relative_error, spike_weighted_loss  # noqa: E402


def _poisson(batch: int, channels: int, rate_hz: float, trial_ms: float, gen: torch.Generator, dtype: torch.dtype = F64) -> Tensor:
    """Poisson trains ``(batch, channels, slots)`` at ``rate_hz`` over ``[0, trial_ms]``, +inf padded."""
    slots = max(1, int(rate_hz * trial_ms / 1000 * 3) + 4)
    gaps = -torch.log(torch.rand(batch, channels, slots, generator=gen, dtype=F64)) * (1000.0 / rate_hz)
    times = gaps.cumsum(-1)
    return torch.where(times <= trial_ms, times, torch.full_like(times, math.inf)).to(dtype)


def _layer_args(n_in: int, n: int, gen: torch.Generator, w_mean: float, w_std: float, r_std: float) -> tuple[Tensor, Tensor]:
    weight = torch.randn(n, n_in, generator=gen, dtype=F64) * w_std + w_mean
    rec = torch.randn(n, n, generator=gen, dtype=F64) * r_std
    return weight, rec.fill_diagonal_(0.0)


def _forward_backward(engine: str, times: Tensor, weight: Tensor, rec: Tensor, seed: int = 3, **kw) -> tuple[Tensor, ...]:
    times = times.clone().requires_grad_(True)
    weight = weight.clone().requires_grad_(True)
    rec = rec.clone().requires_grad_(True)
    out = lif_layer(times, weight, rec, tau_mem=20.0, tau_syn=5.0, engine=engine, **kw)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    (torch.where(torch.isfinite(out), out, 0.0) * g).sum().backward()
    return out.detach(), times.grad, weight.grad, rec.grad


def _compare(a: tuple[Tensor, ...], b: tuple[Tensor, ...], t_tol: float = 1e-9, g_tol: float = 1e-8) -> None:
    spiked = torch.isfinite(a[0])
    assert torch.equal(spiked, torch.isfinite(b[0])), "the engines disagree on which spikes exist"
    dt = float((a[0][spiked] - b[0][spiked]).abs().max())
    record("recurrent numba vs torch, spike time (ms)", dt)
    assert dt <= t_tol
    for name, x, y in zip(("times", "weight", "recurrent_weight"), a[1:], b[1:]):
        error = float((x - y).abs().max() / x.abs().max())
        record("recurrent numba vs torch, gradient (relative)", error)
        assert error <= g_tol, f"{name}: {error:.2e}"


@pytest.mark.slow
def test_an_shd_shaped_batch_agrees_with_the_pytorch_engine() -> None:
    # 700 channels at ~11 Hz over 1 s (~8,000 input spikes per sample), 64 recurrent neurons
    gen = torch.Generator().manual_seed(0)
    times = _poisson(2, 700, 11.0, 1000.0, gen)
    weight, rec = _layer_args(700, 64, gen, 0.022, 0.05, 0.08)
    a = _forward_backward("torch", times, weight, rec)
    b = _forward_backward("numba", times, weight, rec)
    n_spikes = int(torch.isfinite(a[0]).sum())
    assert 300 <= n_spikes <= 3000, n_spikes  # about 5-25 Hz: a regime that exercises recurrence
    _compare(a, b)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_busy_small_layer_agrees_with_the_pytorch_engine(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    times = _poisson(3, 30, 40.0, 300.0, gen)
    weight, rec = _layer_args(30, 12, gen, 0.15, 0.3, 0.4)
    a = _forward_backward("torch", times, weight, rec, horizon=250.0)
    b = _forward_backward("numba", times, weight, rec, horizon=250.0)
    assert int(torch.isfinite(a[0]).sum()) >= 50
    _compare(a, b)


def test_a_stack_of_two_recurrent_layers_has_the_finite_difference_gradient() -> None:
    torch.manual_seed(4)
    gen = torch.Generator().manual_seed(4)

    def layer(n_in: int, n: int, mean: float) -> LIFLayer:
        return LIFLayer(n_in, n, tau_mem=20.0, tau_syn=5.0, recurrent=True, init_mean=mean, init_std=0.6,
                        recurrent_init_mean=0.1, recurrent_init_std=0.5, engine="numba", dtype=F64)

    model = nn.Sequential(layer(4, 5, 1.5), layer(5, 3, 1.2))
    times = _poisson(2, 4, 60.0, 40.0, gen).requires_grad_(True)
    out = model(times)
    assert torch.isfinite(out).sum() >= 4
    params = [times, *model.parameters()]
    grads = torch.autograd.grad(spike_weighted_loss(out), params)
    numeric = central_differences(lambda: spike_weighted_loss(model(times.detach())), params)
    for g, n in zip(grads, numeric):
        assert n.abs().max() > 0
        error = relative_error(g, n)
        record("gradient vs finite differences (relative)", error)
        assert error <= 1e-6


def test_results_do_not_depend_on_the_number_of_threads() -> None:
    gen = torch.Generator().manual_seed(5)
    times = _poisson(7, 20, 40.0, 200.0, gen)
    weight, rec = _layer_args(20, 10, gen, 0.2, 0.3, 0.4)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _forward_backward("numba", times, weight, rec)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = _forward_backward("numba", times, weight, rec)
    finally:
        numba.set_num_threads(before)
    for x, y in zip(one, many):
        assert torch.equal(x, y)


def test_a_full_spike_list_is_simulated_again_with_room_for_every_spike(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(6)
    times = _poisson(3, 20, 40.0, 200.0, gen)
    weight, rec = _layer_args(20, 10, gen, 0.2, 0.3, 0.4)
    roomy = _forward_backward("numba", times, weight, rec)
    monkeypatch.setattr(numba_recurrent, "_CAPACITY", {(10, 20): 1})
    tight = _forward_backward("numba", times, weight, rec)
    assert int(torch.isfinite(roomy[0]).sum()) > 3
    for x, y in zip(roomy, tight):
        assert torch.equal(x, y)


def test_float32_at_a_million_milliseconds_ends_and_matches_float64() -> None:
    # the case that hung the float32 PyTorch engines: spikes closer than a float32 step of the time
    times = torch.tensor([[[1e6]]])
    weight = torch.tensor([[1e3]])
    rec = torch.zeros(1, 1)
    out32 = lif_layer(times, weight, rec, tau_mem=20.0, tau_syn=5.0, engine="numba")
    out64 = lif_layer(times.double(), weight.double(), rec.double(), tau_mem=20.0, tau_syn=5.0, engine="numba")
    assert out32.dtype == torch.float32
    assert torch.equal(out32, out64.float())
    assert int(torch.isfinite(out64).sum()) == 248
