"""Tests of the scalar reference simulator (tests/reference.py) against
closed-form solutions and an independent time-stepped simulation."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

try:  # tests/ on sys.path (pytest's default rootdir-less import)
    from reference import _extremum, _free_v, simulate, voltage
except ImportError:  # tests/ is a package
    from tests.reference import _extremum, _free_v, simulate, voltage

THETA = 1.0


# ---------------------------------------------------------------------------
# independent closed forms (written from the model's textbook formulas, not
# from reference.py)
# ---------------------------------------------------------------------------
def psp(s: float, tau_mem: float, tau_syn: float) -> float:
    """V(s) after a unit current jump at s=0 from rest (PSP kernel)."""
    if s < 0:
        return 0.0
    if tau_mem == tau_syn:
        return s / tau_mem * math.exp(-s / tau_mem)
    return tau_syn / (tau_syn - tau_mem) * (math.exp(-s / tau_syn) - math.exp(-s / tau_mem))


def textbook_v(v0: float, i0: float, s: float, tau_mem: float, tau_syn: float) -> float:
    if tau_mem == tau_syn:
        return (v0 + i0 * s / tau_mem) * math.exp(-s / tau_mem)
    c = i0 * tau_syn / (tau_syn - tau_mem)
    return (v0 - c) * math.exp(-s / tau_mem) + c * math.exp(-s / tau_syn)


def psp_peak_time(tau_mem: float, tau_syn: float) -> float:
    if tau_mem == tau_syn:
        return tau_mem
    return tau_mem * tau_syn / (tau_mem - tau_syn) * math.log(tau_mem / tau_syn)


def quadratic_crossing(v0: float, i0: float, tau_mem: float) -> float:
    """tau_mem == 2 tau_syn: with x = exp(-s/tau_mem), c = -i0, so
    V = (v0 + i0) x - i0 x^2.  Earliest s with V = THETA (largest root x)."""
    b = v0 + i0
    disc = b * b - 4.0 * i0 * THETA
    assert disc > 0
    x = (b + math.sqrt(disc)) / (2.0 * i0)
    assert 0 < x < 1
    return -tau_mem * math.log(x)


# ---------------------------------------------------------------------------
# closed-form helpers of reference.py
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("ratio", [0.25, 0.5, 1.0, 1.0 + 1e-3, 2.0, 4.0])
def test_free_dynamics_match_textbook_form(ratio: float) -> None:
    tau_syn = 5.0
    tau_mem = tau_syn * ratio
    rng = random.Random(1)
    for _ in range(200):
        v0, i0, s = rng.uniform(-2, 1), rng.uniform(-3, 3), rng.uniform(0, 40)
        got = _free_v(v0, i0, s, tau_mem, tau_syn)
        # textbook two-exponential form cancels for close taus: looser there
        tol = 1e-12 if abs(ratio - 1.0) > 0.1 or ratio == 1.0 else 1e-9
        assert abs(got - textbook_v(v0, i0, s, tau_mem, tau_syn)) < tol
        # the extremum is where dV/ds = 0 (central difference)
        s_ext = _extremum(v0, i0, tau_mem, tau_syn)
        if s_ext is not None:
            h = 1e-5
            dv = (_free_v(v0, i0, s_ext + h, tau_mem, tau_syn) - _free_v(v0, i0, s_ext - h, tau_mem, tau_syn)) / (2 * h)
            assert abs(dv) < 1e-8


# ---------------------------------------------------------------------------
# (a) single neuron, single input spike
# ---------------------------------------------------------------------------
def test_single_psp_peak_and_crossing() -> None:
    tau_mem, tau_syn, t_in = 20.0, 5.0, 2.0
    s_peak = psp_peak_time(tau_mem, tau_syn)
    k_peak = psp(s_peak, tau_mem, tau_syn)
    w_crit = THETA / k_peak
    kw = dict(tau_mem=tau_mem, tau_syn=tau_syn, threshold=THETA)

    # below threshold: no spike, and the maximum of V is the analytic PSP peak
    w = 0.9 * w_crit
    assert simulate([[t_in]], [[w]], **kw) == [[]]
    v_peak = voltage([[t_in]], [[w]], t_in + s_peak, **kw)[0]
    assert v_peak == pytest.approx(0.9, abs=1e-12)
    assert abs(v_peak - w * k_peak) < 1e-12
    for ds in (-0.5, -0.01, 0.01, 0.5):
        assert voltage([[t_in]], [[w]], t_in + s_peak + ds, **kw)[0] < v_peak

    # above threshold: spike exactly where the closed form reaches theta
    for factor in (1.001, 1.7, 5.0, 50.0):
        w = factor * w_crit
        out = simulate([[t_in]], [[w]], **kw)
        assert len(out) == 1 and len(out[0]) >= 1
        t_s = out[0][0]
        assert t_in < t_s < t_in + s_peak  # on the rising flank
        assert abs(w * psp(t_s - t_in, tau_mem, tau_syn) - THETA) < 1e-12
        assert w * psp(t_s - t_in - 1e-9, tau_mem, tau_syn) < THETA  # first crossing
        # just after the spike V was reset by subtraction
        assert abs(voltage([[t_in]], [[w]], t_s, **kw)[0]) < 1e-12


# ---------------------------------------------------------------------------
# (b) tau_mem = 2 tau_syn: crossing in closed form (quadratic in exp(-s/tau_mem))
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("w", [4.01, 4.5, 6.0, 10.0, 30.0, 1000.0])
def test_quadratic_case_single_input(w: float) -> None:
    tau_mem, tau_syn, t_in = 10.0, 5.0, 1.3
    out = simulate([[t_in]], [[w]], tau_mem=tau_mem, tau_syn=tau_syn, threshold=THETA)
    expected = t_in + quadratic_crossing(0.0, w, tau_mem)
    assert abs(out[0][0] - expected) < 1e-12


def test_quadratic_case_below_threshold() -> None:
    # peak of w x (1 - x) is w/4
    assert simulate([[1.0]], [[3.99]], tau_mem=10.0, tau_syn=5.0) == [[]]


def test_quadratic_case_two_inputs() -> None:
    tau_mem, tau_syn = 10.0, 5.0
    t0, w0, t1, w1 = 1.0, 2.0, 4.0, 3.5
    kw = dict(tau_mem=tau_mem, tau_syn=tau_syn, threshold=THETA)
    # each input alone is sub-threshold (peak w/4 < 1)
    assert simulate([[t0], []], [[w0, w1]], **kw) == [[]]
    assert simulate([[], [t1]], [[w0, w1]], **kw) == [[]]
    out = simulate([[t0], [t1]], [[w0, w1]], **kw)
    # state just after the second input, in closed form
    x = math.exp(-(t1 - t0) / tau_mem)
    v0 = w0 * (x - x * x)
    i0 = w0 * math.exp(-(t1 - t0) / tau_syn) + w1
    assert abs(out[0][0] - (t1 + quadratic_crossing(v0, i0, tau_mem))) < 1e-12


# ---------------------------------------------------------------------------
# (c) tau_mem == tau_syn
# ---------------------------------------------------------------------------
def test_equal_time_constants() -> None:
    tau, t_in = 8.0, 0.7
    kw = dict(tau_mem=tau, tau_syn=tau, threshold=THETA)
    # peak of w (s/tau) e^{-s/tau} is w/e at s = tau
    w = 0.9 * math.e
    assert simulate([[t_in]], [[w]], **kw) == [[]]
    assert abs(voltage([[t_in]], [[w]], t_in + tau, **kw)[0] - 0.9) < 1e-12

    for w in (2.8, 5.0, 40.0):
        t_s = simulate([[t_in]], [[w]], **kw)[0][0]
        s = t_s - t_in
        assert 0 < s < tau
        assert abs(w * s / tau * math.exp(-s / tau) - THETA) < 1e-12
        # continuity in tau_syn -> tau_mem
        for eps in (1e-9, -1e-9):
            t_near = simulate([[t_in]], [[w]], tau_mem=tau, tau_syn=tau * (1 + eps))[0][0]
            assert abs(t_near - t_s) < 1e-6


# ---------------------------------------------------------------------------
# (d) against an independent fine time-stepped simulation
# ---------------------------------------------------------------------------
def stepped_simulation(input_steps, w_in, w_rec, tau_mem, tau_syn, dt, n_steps):
    """Exact-exponential time stepping: inputs at step boundaries, threshold
    checked at the end of every step (spike time = end of that step)."""
    n = len(w_in)
    alpha = math.exp(-dt / tau_mem)
    beta = math.exp(-dt / tau_syn)
    kappa = psp(dt, tau_mem, tau_syn)
    inputs_at = {}
    for i, steps in enumerate(input_steps):
        for k in steps:
            inputs_at.setdefault(k, []).append(i)
    v = [0.0] * n
    cur = [0.0] * n
    spikes = [[] for _ in range(n)]
    neurons = range(n)
    for k in range(n_steps):
        for i in inputs_at.get(k, ()):
            for j in neurons:
                cur[j] += w_in[j][i]
        fired = []
        for j in neurons:
            v[j] = alpha * v[j] + kappa * cur[j]
            cur[j] *= beta
            if v[j] >= THETA:
                fired.append(j)
        for j in fired:
            v[j] -= THETA
            spikes[j].append((k + 1) * dt)
        for j in fired:
            for m in neurons:
                cur[m] += w_rec[m][j]
    return spikes


@pytest.mark.parametrize("tau_mem,tau_syn", [(10.0, 5.0), (5.0, 10.0), (8.0, 8.0)])
def test_against_time_stepped_network(tau_mem: float, tau_syn: float) -> None:
    dt, n_steps = 1e-4, 500_000  # 50 ms
    rs = np.random.default_rng(2)
    n_in, n = 5, 4
    input_steps = [sorted(set(rs.integers(0, 350_000, size=6).tolist())) for _ in range(n_in)]
    input_times = [[k * dt for k in steps] for steps in input_steps]
    w_in = rs.uniform(0.0, 1.2, size=(n, n_in))
    w_rec = rs.normal(0.0, 0.4, size=(n, n))
    np.fill_diagonal(w_rec, 0.0)

    ref = simulate(input_times, w_in, tau_mem=tau_mem, tau_syn=tau_syn, w_rec=w_rec, t_max=n_steps * dt)
    stepped = stepped_simulation(input_steps, w_in.tolist(), w_rec.tolist(), tau_mem, tau_syn, dt, n_steps)

    assert all(len(s) >= 3 for s in ref)  # several spikes per neuron
    assert all(s == sorted(s) for s in ref)
    assert [len(s) for s in ref] == [len(s) for s in stepped]
    err = max(abs(a - b) for r, s in zip(ref, stepped) for a, b in zip(r, s))
    assert err < 1e-3


# ---------------------------------------------------------------------------
# (e) recurrent connections
# ---------------------------------------------------------------------------
def test_recurrent_spike_drives_target() -> None:
    tau_mem, tau_syn, t_in = 10.0, 5.0, 1.0
    kw = dict(tau_mem=tau_mem, tau_syn=tau_syn, threshold=THETA)
    w_in = [[4.5], [0.0]]  # only neuron 0 receives input
    w_r = 6.0
    w_rec = [[0.0, 0.0], [w_r, 0.0]]  # 0 -> 1

    assert simulate([[t_in]], w_in, **kw)[1] == []  # without recurrence: silent
    out = simulate([[t_in]], w_in, w_rec=w_rec, **kw)
    assert len(out[0]) == 1
    t0 = out[0][0]
    assert abs(t0 - (t_in + quadratic_crossing(0.0, 4.5, tau_mem))) < 1e-12
    # neuron 1: a PSP of weight w_r starting at t0
    assert len(out[1]) >= 1
    assert abs(out[1][0] - (t0 + quadratic_crossing(0.0, w_r, tau_mem))) < 1e-12
    # its current jumped at t0: V follows w_r * psp(t - t0) before it spikes
    t_probe = t0 + 0.5
    assert t_probe < out[1][0]
    v1 = voltage([[t_in]], w_in, t_probe, w_rec=w_rec, **kw)[1]
    assert abs(v1 - w_r * psp(0.5, tau_mem, tau_syn)) < 1e-12
    assert voltage([[t_in]], w_in, t0 - 1e-9, w_rec=w_rec, **kw)[1] == 0.0


def test_recurrent_inhibition_delays_target() -> None:
    kw = dict(tau_mem=10.0, tau_syn=5.0, threshold=THETA)
    inputs = [[1.0], [1.0]]
    w_in = [[6.0, 0.0], [0.0, 4.5]]  # neuron 0 spikes before neuron 1
    alone = simulate(inputs, w_in, **kw)
    assert alone[0][0] < alone[1][0]
    inhibited = simulate(inputs, w_in, w_rec=[[0.0, 0.0], [-0.5, 0.0]], **kw)
    assert inhibited[0] == alone[0]
    assert inhibited[1] == [] or inhibited[1][0] > alone[1][0]


def test_coincident_spikes_all_transmit() -> None:
    tau_mem, tau_syn = 10.0, 5.0
    kw = dict(tau_mem=tau_mem, tau_syn=tau_syn, threshold=THETA)
    w_in = [[4.5], [4.5], [0.0]]  # neurons 0 and 1 identical
    # one kick of 3.0 is sub-threshold (peak 0.75), two kicks (6.0) are not
    one = simulate([[1.0]], w_in, w_rec=[[0, 0, 0], [0, 0, 0], [3.0, 0, 0]], **kw)
    assert one[2] == []
    out = simulate([[1.0]], w_in, w_rec=[[0, 0, 0], [0, 0, 0], [3.0, 3.0, 0]], **kw)
    assert out[0] == out[1] and len(out[0]) == 1
    t0 = out[0][0]
    assert abs(out[2][0] - (t0 + quadratic_crossing(0.0, 6.0, tau_mem))) < 1e-12


def test_runaway_raises() -> None:
    with pytest.raises(RuntimeError):
        simulate([[0.0]], [[5.0], [0.0]], tau_mem=10.0, tau_syn=5.0, w_rec=[[0.0, 10.0], [10.0, 0.0]], max_events=300)


# ---------------------------------------------------------------------------
# (f) t_max
# ---------------------------------------------------------------------------
def test_t_max_suppresses_later_spikes() -> None:
    kw = dict(tau_mem=10.0, tau_syn=5.0, threshold=THETA)
    inputs = [[1.0], [3.0]]
    w_in = [[30.0, 20.0]]
    full = simulate(inputs, w_in, **kw)[0]
    assert len(full) >= 4
    assert simulate(inputs, w_in, t_max=0.5 * (full[1] + full[2]), **kw)[0] == full[:2]
    assert simulate(inputs, w_in, t_max=full[1], **kw)[0] == full[:2]  # t == t_max is emitted
    assert simulate(inputs, w_in, t_max=math.nextafter(full[1], 0.0), **kw)[0] == full[:1]
    assert simulate(inputs, w_in, t_max=0.9 * full[0], **kw)[0] == []
    # beyond t_max there is no threshold: V rises freely above it
    s_peak = psp_peak_time(10.0, 5.0)
    v = voltage([[1.0]], [[30.0]], 1.0 + s_peak, t_max=1.0, **kw)[0]
    assert abs(v - 30.0 * psp(s_peak, 10.0, 5.0)) < 1e-12 and v > THETA


# ---------------------------------------------------------------------------
# misc
# ---------------------------------------------------------------------------
def test_padding_and_order_of_inputs() -> None:
    kw = dict(tau_mem=10.0, tau_syn=5.0)
    w_in = np.array([[1.5, 2.5], [3.0, -1.0]])
    a = simulate([[2.0, 6.0], [4.0]], w_in, **kw)
    b = simulate([[6.0, math.inf, 2.0], [math.inf, 4.0]], w_in.tolist(), **kw)
    assert a == b and sum(map(len, a)) > 0
