"""Engine contract, forward: spike times of every registered engine against the slow scalar reference (tests/reference.py)."""

from __future__ import annotations

import math

import pytest
import torch

from eventprop import LIFLayer, SpikeLimitError, lif_layer
from helpers import F64, FEEDFORWARD_ENGINES, RECURRENT_ENGINES, random_inputs, record, to_lists
from reference import simulate

TAUS = [(20.0, 5.0), (10.0, 10.0), (5.0, 10.0), (10.0, 5.0 + 1e-7), (8.0, 4.0)]
def _compare(out: torch.Tensor, expected: list[list[list[float]]], tol: float = 1e-9) -> float:
    worst = 0.0
    got = to_lists(out)
    for b, (got_b, exp_b) in enumerate(zip(got, expected)):
        for n, (g, e) in enumerate(zip(got_b, exp_b)):
            assert len(g) == len(e), f"sample {b} neuron {n}: {len(g)} spikes, reference {len(e)}: {g} vs {e}"
            for x, y in zip(g, e):
                worst = max(worst, abs(x - y))
    record("forward spike time vs reference (absolute, ms)", worst)
    assert worst <= tol, worst
    return worst


def _reference(times, weight, rec=None, **kw):
    return [simulate(sample, weight.tolist(), w_rec=None if rec is None else rec.tolist(), **kw) for sample in to_lists(times)]


ENGINES = FEEDFORWARD_ENGINES
LAYERS = [(False, e) for e in FEEDFORWARD_ENGINES] + [(True, e) for e in RECURRENT_ENGINES]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("tau_mem,tau_syn", TAUS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_feedforward_matches_reference(tau_mem: float, tau_syn: float, seed: int, engine: str) -> None:
    gen = torch.Generator().manual_seed(seed)
    times = random_inputs(4, 7, 3, 30.0, gen)
    weight = (torch.rand(5, 7, generator=gen, dtype=F64) * 2.0 - 0.3) * 1.5
    out = lif_layer(times, weight, tau_mem=tau_mem, tau_syn=tau_syn, engine=engine)
    expected = _reference(times, weight, tau_mem=tau_mem, tau_syn=tau_syn)
    assert sum(len(n) for s in expected for n in s) > 10  # the case is not trivial
    _compare(out, expected)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("tau_mem,tau_syn", TAUS[:3])
def test_multispike_regime(tau_mem: float, tau_syn: float, engine: str) -> None:
    """Strong drive: many spikes per neuron, several inside one inter-event interval."""
    gen = torch.Generator().manual_seed(5)
    times = random_inputs(3, 4, 2, 10.0, gen, p_missing=0.0)
    weight = torch.rand(3, 4, generator=gen, dtype=F64) * 6 + 2
    out = lif_layer(times, weight, tau_mem=tau_mem, tau_syn=tau_syn, engine=engine)
    assert out.shape[-1] >= 5
    _compare(out, _reference(times, weight, tau_mem=tau_mem, tau_syn=tau_syn))


@pytest.mark.parametrize("engine", RECURRENT_ENGINES)
@pytest.mark.parametrize("tau_mem,tau_syn", TAUS[:3])
@pytest.mark.parametrize("seed", [0, 1])
def test_recurrent_matches_reference(tau_mem: float, tau_syn: float, seed: int, engine: str) -> None:
    gen = torch.Generator().manual_seed(10 + seed)
    times = random_inputs(3, 5, 3, 30.0, gen)
    weight = torch.rand(6, 5, generator=gen, dtype=F64) * 2.0
    rec = (torch.rand(6, 6, generator=gen, dtype=F64) - 0.5) * 1.5
    rec.fill_diagonal_(0)
    out = lif_layer(times, weight, rec, tau_mem=tau_mem, tau_syn=tau_syn, max_spikes=200, engine=engine)
    expected = _reference(times, weight, rec, tau_mem=tau_mem, tau_syn=tau_syn)
    _compare(out, expected)
    # the recurrent weights matter in this case
    plain = _reference(times, weight, tau_mem=tau_mem, tau_syn=tau_syn)
    assert plain != expected


@pytest.mark.parametrize("engine", RECURRENT_ENGINES)
def test_recurrent_engine_equals_feedforward_engine_without_recurrence(engine: str) -> None:
    gen = torch.Generator().manual_seed(3)
    times = random_inputs(5, 6, 3, 30.0, gen)
    weight = torch.rand(8, 6, generator=gen, dtype=F64) * 2.5
    ff = lif_layer(times, weight, tau_mem=20.0, tau_syn=5.0)
    rec = lif_layer(times, weight, torch.zeros(8, 8, dtype=F64), tau_mem=20.0, tau_syn=5.0, engine=engine)
    assert ff.shape == rec.shape
    assert torch.equal(torch.isfinite(ff), torch.isfinite(rec))
    finite = torch.isfinite(ff)
    assert (ff[finite] - rec[finite]).abs().max() < 1e-12


@pytest.mark.parametrize("recurrent,engine", LAYERS)
def test_horizon(recurrent: bool, engine: str) -> None:
    gen = torch.Generator().manual_seed(4)
    times = random_inputs(3, 5, 3, 30.0, gen)
    weight = torch.rand(4, 5, generator=gen, dtype=F64) * 3.0
    rec = torch.zeros(4, 4, dtype=F64) if recurrent else None
    full = lif_layer(times, weight, rec, tau_mem=20.0, tau_syn=5.0, engine=engine)
    # halfway between two spikes: a horizon exactly at a spike time is a knife edge that
    # one ulp of rounding decides either way
    spikes = full[torch.isfinite(full)].sort().values
    middle = spikes.shape[0] // 2
    t_max = float(0.5 * (spikes[middle] + spikes[middle + 1]))
    cut = lif_layer(times, weight, rec, tau_mem=20.0, tau_syn=5.0, horizon=t_max, engine=engine)
    _compare(cut, _reference(times, weight, tau_mem=20.0, tau_syn=5.0, t_max=t_max))
    assert (cut[torch.isfinite(cut)] <= t_max).all()
    assert torch.isfinite(cut).sum() < torch.isfinite(full).sum()


@pytest.mark.parametrize("engine", RECURRENT_ENGINES)
def test_coincident_spikes_recurrent(engine: str) -> None:
    """Two identical neurons cross together; both spike and both transmit (paper's rule)."""
    times = torch.tensor([[[1.0], [math.inf]]], dtype=F64)
    weight = torch.tensor([[5.0, 0.0], [5.0, 0.0], [0.0, 0.0]], dtype=F64)
    rec = torch.zeros(3, 3, dtype=F64)
    rec[2, 0] = rec[2, 1] = 3.0  # one kick is sub-threshold, two kicks fire neuron 2
    out = lif_layer(times, weight, rec, tau_mem=10.0, tau_syn=5.0, engine=engine)
    assert out[0, 0, 0] == out[0, 1, 0]
    assert math.isfinite(out[0, 2, 0].item())
    expected = simulate([[1.0], []], weight.tolist(), w_rec=rec.tolist(), tau_mem=10.0, tau_syn=5.0)
    _compare(out, [expected])
    single = rec.clone()
    single[2, 1] = 0.0
    out_single = lif_layer(times, weight, single, tau_mem=10.0, tau_syn=5.0, engine=engine)
    assert not math.isfinite(out_single[0, 2, 0].item())


def test_data_contract_of_output() -> None:
    gen = torch.Generator().manual_seed(6)
    times = random_inputs(4, 5, 2, 20.0, gen)
    out = LIFLayer(5, 7, tau_mem=20.0, tau_syn=5.0, init_mean=1.5, init_std=1.0, dtype=F64)(times)
    assert out.shape[:2] == (4, 7) and out.shape[2] >= 1
    assert out.dtype == F64
    assert (out[..., 1:] >= out[..., :-1]).all()  # ascending, inf padding last
    assert not torch.isnan(out).any()
    # the last column holds at least one spike: no wasted padding, nothing truncated
    assert torch.isfinite(out[..., -1]).any()


@pytest.mark.parametrize("recurrent,engine", LAYERS)
def test_no_input_spikes_gives_one_silent_column(recurrent: bool, engine: str) -> None:
    times = torch.full((2, 3, 2), math.inf, dtype=F64)
    rec = torch.zeros(4, 4, dtype=F64) if recurrent else None
    out = lif_layer(times, torch.ones(4, 3, dtype=F64), rec, tau_mem=20.0, tau_syn=5.0, engine=engine)
    assert out.shape == (2, 4, 1) and torch.isinf(out).all()


@pytest.mark.parametrize("recurrent,engine", LAYERS)
def test_max_spikes_raises_instead_of_truncating(recurrent: bool, engine: str) -> None:
    times = torch.tensor([[[0.0]]], dtype=F64)
    rec = torch.zeros(1, 1, dtype=F64) if recurrent else None
    out = lif_layer(times, torch.tensor([[40.0]], dtype=F64), rec, tau_mem=20.0, tau_syn=5.0, engine=engine)
    assert out.shape[-1] > 3
    with pytest.raises(SpikeLimitError, match="max_spikes=3"):
        lif_layer(times, torch.tensor([[40.0]], dtype=F64), rec, tau_mem=20.0, tau_syn=5.0, max_spikes=3, engine=engine)


@pytest.mark.parametrize("recurrent,engine", LAYERS)
def test_float32_is_float64_rounded(recurrent: bool, engine: str) -> None:
    """Every engine computes spiking layers in float64 (``compute_dtype``): a float32
    layer's spike times are the float64 ones rounded, bit for bit."""
    gen = torch.Generator().manual_seed(8)
    times = random_inputs(8, 5, 2, 30.0, gen)
    weight = torch.rand(10, 5, generator=gen, dtype=F64) * 2.0
    rec = (torch.rand(10, 10, generator=gen, dtype=F64) - 0.5) * 0.5 if recurrent else None
    out32 = lif_layer(times.float(), weight.float(), None if rec is None else rec.float(), tau_mem=20.0, tau_syn=5.0, engine=engine)
    out64 = lif_layer(times.float().double(), weight.float().double(), None if rec is None else rec.float().double(), tau_mem=20.0, tau_syn=5.0, engine=engine)
    assert out32.dtype == torch.float32 and torch.isfinite(out64).sum() > 10
    assert torch.equal(out32, out64.float())
