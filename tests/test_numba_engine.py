"""The compiled (Numba) feed-forward engine against the PyTorch engine.

Forward spike times and currents must agree to ~1e-12 relative, backward gradients to 1e-10 relative, on random networks covering several
batch sizes, several spikes per neuron, tau_mem / tau_syn in {4, 1, 0.5}, finite and
infinite horizons, +inf padded inputs, no input events at all, and max_spikes. Every
test runs twice: with the serial kernels and with the parallel (thread-pool) kernels.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

numba = pytest.importorskip("numba")

from eventprop.engines.numba_cpu.feedforward import (  # noqa: E402
    feedforward_backward_numba,
    feedforward_forward_numba,
)
from eventprop.engines.numba_cpu.scalar import numba_available  # noqa: E402
from eventprop import SpikeLimitError
from eventprop.engines.pytorch.feedforward import feedforward_backward, feedforward_forward  # noqa: E402
from eventprop.model.neuron import NeuronParams  # noqa: E402

import eventprop.engines.numba_cpu.threads as numba_threads  # noqa: E402


@pytest.fixture(autouse=True, params=["serial", "parallel"])
def kernel_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Force the serial or the parallel kernels whatever the size of the work (and the
    thread count an earlier CLI test left; the conftest restores it afterwards)."""
    monkeypatch.setattr(numba_threads, "PARALLEL_MIN_WORK", 10**18 if request.param == "serial" else 0)
    if request.param == "parallel":
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    return request.param


TAUS = {"ratio4": (20.0, 5.0), "ratio1": (10.0, 10.0), "ratio0.5": (5.0, 10.0)}


def _inputs(batch: int, n_in: int, slots: int, t_end: float, gen: torch.Generator, dtype=torch.float64, p_missing=0.25) -> Tensor:
    t = torch.rand(batch, n_in, slots, generator=gen, dtype=torch.float64) * t_end
    drop = torch.rand(batch, n_in, slots, generator=gen, dtype=torch.float64) < p_missing
    t = torch.where(drop, torch.full_like(t, math.inf), t)
    # a few coincident events (ties) and events at t = 0
    t[:, 0, 0] = 0.0
    if n_in > 2:
        t[:, 1, 0] = t[:, 2, 0]
    return t.sort(dim=-1).values.to(dtype)


def _network(seed: int, batch: int, n_in: int, n_out: int, slots: int, w_mean: float, w_std: float, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    times = _inputs(batch, n_in, slots, 40.0, gen, dtype)
    weight = (w_mean + w_std * torch.randn(n_out, n_in, generator=gen, dtype=torch.float64)).to(dtype)
    return times, weight, gen


def _assert_spikes_close(a: Tensor, b: Tensor, rtol: float, atol: float) -> None:
    assert a.shape == b.shape
    assert a.dtype == b.dtype
    fin_a, fin_b = torch.isfinite(a), torch.isfinite(b)
    assert torch.equal(fin_a, fin_b), "spike counts differ"
    assert torch.equal(a[~fin_a], b[~fin_b])
    torch.testing.assert_close(a[fin_a], b[fin_b], rtol=rtol, atol=atol)


def _compare(times, weight, p, t_max=math.inf, rtol=1e-12, grad_rtol=1e-10, seed=0, check_grad=True):
    ref_t, ref_i, ref_ev = feedforward_forward(times, weight, p, t_max)
    out_t, out_i, ev = feedforward_forward_numba(times, weight, p, t_max)
    _assert_spikes_close(out_t, ref_t, rtol, rtol)
    scale = max(ref_i.abs().max().item(), 1.0)
    torch.testing.assert_close(out_i, ref_i, rtol=rtol, atol=rtol * scale)
    assert torch.equal(ev.times, ref_ev.times)
    real = ev.finite  # the padding's source/position are never read
    for x, y in zip((ev.source, ev.position), (ref_ev.source, ref_ev.position)):
        assert torch.equal(x[real], y[real])
    if check_grad:
        gen = torch.Generator().manual_seed(seed + 1)
        # arbitrary values at padding too: they must be ignored
        grad_out = torch.randn(ref_t.shape, generator=gen, dtype=torch.float64).to(times.dtype)
        ref = feedforward_backward(grad_out, weight, ref_ev, ref_t, ref_i, p, times.shape)
        got = feedforward_backward_numba(grad_out, weight, ref_ev, ref_t, ref_i, p, times.shape)
        for g, r in zip((*got[:2], got[3]), ref):  # grad_times, grad_weight, jumps
            assert g.shape == r.shape and g.dtype == r.dtype
            scale = max(r.abs().max().item(), 1e-300)
            torch.testing.assert_close(g, r, rtol=grad_rtol, atol=grad_rtol * scale)
    return ref_t


def test_available() -> None:
    assert numba_available()


@pytest.mark.parametrize("taus", list(TAUS), ids=list(TAUS))
@pytest.mark.parametrize("t_max", [math.inf, 25.0], ids=["tinf", "t25"])
@pytest.mark.parametrize("batch", [1, 5, 16])
def test_matches_torch_float64(taus: str, t_max: float, batch: int) -> None:
    tau_mem, tau_syn = TAUS[taus]
    p = NeuronParams(tau_mem, tau_syn, 1.0)
    # weights scaled so that neurons fire several times (the charge grows with tau_syn)
    w_mean = {"ratio4": 0.8, "ratio1": 0.3, "ratio0.5": 0.2}[taus]
    times, weight, _ = _network(batch * 7 + len(taus), batch, 12, 9, 3, w_mean, 0.6)
    weight[0] = -weight[0].abs()  # one silent neuron next to active ones
    out = _compare(times, weight, p, t_max, seed=batch)
    counts = torch.isfinite(out).sum(-1)
    assert counts.max() >= 2, "test network should fire several spikes per neuron"
    assert (counts[:, 0] == 0).all() and (counts[:, 1:] > 0).any()


def test_matches_torch_two_layers_yinyang_like() -> None:
    """Hidden layer with few inputs, output layer with hundreds of events and many spikes."""
    p = NeuronParams(20.0, 5.0, 1.0)
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(8, 2, generator=gen, dtype=torch.float64)
    times = torch.cat([30 * torch.cat([x, 1 - x], 1), torch.zeros(8, 1, dtype=torch.float64)], 1)[..., None]
    w1 = 1.5 + 0.78 * torch.randn(200, 5, generator=gen, dtype=torch.float64)
    w2 = 0.93 + 0.1 * torch.randn(3, 200, generator=gen, dtype=torch.float64)
    hidden = _compare(times, w1, p)
    out = _compare(hidden, w2, p, rtol=1e-11)
    assert torch.isfinite(out).sum(-1).max() >= 5


def test_padded_and_empty_inputs() -> None:
    p = NeuronParams(20.0, 5.0, 1.0)
    times, weight, _ = _network(5, 4, 6, 5, 4, 0.6, 0.5)
    times[1] = math.inf  # one sample without any input event
    times[2, :, 2:] = math.inf  # extra padding
    _compare(times, weight, p)
    # no input event in the whole batch
    empty = torch.full((3, 6, 2), math.inf, dtype=torch.float64)
    out_t, out_i, ev = feedforward_forward_numba(empty, weight, p)
    assert out_t.shape == (3, 5, 1) and torch.isinf(out_t).all() and (out_i == 0).all()
    assert ev.times.shape == (3, 0)
    gt, gw, _, _ = feedforward_backward_numba(torch.ones_like(out_t), weight, ev, out_t, out_i, p, empty.shape)
    assert gt.shape == empty.shape and gw.shape == weight.shape
    assert (gt == 0).all() and (gw == 0).all()
    # no slots at all
    none = torch.empty(2, 6, 0, dtype=torch.float64)
    out_t, _, _ = feedforward_forward_numba(none, weight, p)
    assert out_t.shape == (2, 5, 1) and torch.isinf(out_t).all()


def test_silent_layer_and_inhibition() -> None:
    p = NeuronParams(10.0, 5.0, 1.0)
    times, weight, _ = _network(8, 5, 6, 4, 2, -0.5, 0.3)
    out = _compare(times, weight, p)
    assert out.shape == (5, 4, 1) and torch.isinf(out).all()
    # mixed excitation / inhibition: extrema that are minima
    times, weight, _ = _network(9, 5, 10, 6, 3, 0.1, 1.2)
    _compare(times, weight, p)


def test_max_spikes() -> None:
    p = NeuronParams(20.0, 5.0, 1.0)
    times, weight, _ = _network(2, 4, 12, 6, 3, 0.6, 0.4)
    ref_t, _, _ = feedforward_forward(times, weight, p)
    most = int(torch.isfinite(ref_t).sum(-1).max())
    assert most >= 2
    # exactly enough is fine, one fewer raises (as the torch engine does)
    out_t, _, _ = feedforward_forward_numba(times, weight, p, max_spikes=most)
    _assert_spikes_close(out_t, ref_t, 1e-12, 1e-12)
    with pytest.raises(SpikeLimitError):
        feedforward_forward(times, weight, p, max_spikes=most - 1)
    with pytest.raises(SpikeLimitError):
        feedforward_forward_numba(times, weight, p, max_spikes=most - 1)


def test_capacity_grows() -> None:
    """A layer shape seen first with few spikes, then with many: no spike is dropped."""
    p = NeuronParams(20.0, 5.0, 1.0)
    times, weight, _ = _network(4, 3, 7, 3, 2, 0.2, 0.1)
    _compare(times, weight, p, check_grad=False)
    out = _compare(times, weight * 12, p, check_grad=False)
    assert torch.isfinite(out).sum(-1).max() > 4


def test_kernel_modules_record_the_scalar_source() -> None:
    # numba's cache keys a kernel on its own file: a kernel module that records a stale
    # digest of scalar.py compiles without the cache (correct but slow); update the record
    import hashlib
    from pathlib import Path

    from eventprop.engines.numba_cpu import feedforward, recurrent, scalar, trajectory

    digest = hashlib.sha256(Path(scalar.__file__).read_bytes()).hexdigest()
    for module in (feedforward, recurrent, trajectory):
        assert module.SCALAR_SHA256 == digest, f"set SCALAR_SHA256 = {digest!r} in {module.__name__}"


def test_an_shd_shaped_batch_agrees_with_the_pytorch_engine() -> None:
    # 700 channels, ~2,800 input spikes per sample over 1 s, 64 neurons near 8 Hz
    p = NeuronParams(20.0, 5.0, 1.0)
    gen = torch.Generator().manual_seed(11)
    times = _inputs(2, 700, 6, 1000.0, gen, p_missing=0.33)
    weight = 0.07 + 0.06 * torch.randn(64, 700, generator=gen, dtype=torch.float64)
    out = _compare(times, weight, p, rtol=1e-12, grad_rtol=1e-9)
    assert 300 <= int(torch.isfinite(out).sum()) <= 3000


def test_gradients_do_not_depend_on_the_number_of_threads() -> None:
    import numba

    p = NeuronParams(20.0, 5.0, 1.0)
    times, weight, gen = _network(12, 9, 30, 20, 4, 0.5, 0.6)
    out_t, out_i, ev = feedforward_forward_numba(times, weight, p)
    grad_out = torch.randn(out_t.shape, generator=gen, dtype=torch.float64)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = feedforward_backward_numba(grad_out, weight, ev, out_t, out_i, p, times.shape)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = feedforward_backward_numba(grad_out, weight, ev, out_t, out_i, p, times.shape)
    finally:
        numba.set_num_threads(before)
    assert torch.isfinite(out_t).sum() > 20
    for x, y in zip(one[:2], many[:2]):
        assert torch.equal(x, y)


@pytest.mark.parametrize("recurrent", [False, True])
def test_without_input_gradients_the_weight_gradients_are_the_same(recurrent: bool) -> None:
    # Data inputs need no dL/dt: the engine then skips its sum over the neurons per input
    # event. The weight gradients must not change by a bit (the same operations).
    from eventprop import lif_layer

    times, weight, gen = _network(13, 6, 40, 24, 4, 0.5, 0.6)
    rec = (0.3 * torch.randn(24, 24, generator=gen, dtype=torch.float64)).requires_grad_(True) if recurrent else None
    grads = []
    for needs in (True, False):
        x = times.detach().clone().requires_grad_(needs)
        w = weight.detach().clone().requires_grad_(True)
        r = rec.detach().clone().requires_grad_(True) if rec is not None else None
        out = lif_layer(x, w, r, tau_mem=20.0, tau_syn=5.0, engine="numba")
        finite = torch.isfinite(out)
        assert finite.sum() > 20
        torch.where(finite, out * torch.linspace(0.5, 1.5, out.shape[1], dtype=torch.float64)[:, None], 0.0).sum().backward()
        grads.append([w.grad] + ([r.grad] if r is not None else []))
        assert (x.grad is not None) == needs
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_the_event_order_is_numpys_stable_sort() -> None:
    # the bucket pass of the event merge, on spread-out, tied, all-zero, crowded-with-an-outlier
    # and short inputs: exactly the order of a stable sort
    import numpy as np

    from eventprop.engines.numba_cpu.events import _time_order

    rng = np.random.default_rng(0)
    cases = [
        rng.random(10_000) * 1000,
        np.floor(rng.random(10_000) * 50),
        np.zeros(5000),
        np.r_[rng.random(5000) * 1e-6, [1e6]],
        rng.random(50),
        np.r_[np.zeros(100), rng.random(200)],
    ]
    for times in cases:
        assert np.array_equal(_time_order(times), np.argsort(times, kind="mergesort"))
