"""Slow, scalar reference simulator for exact continuous-time LIF networks.

This module is a test oracle: the fast, vectorised engine in ``eventprop`` is
compared against it.  It is written to be checked line by line, not to be
fast.  It uses plain Python floats (float64) and the ``math`` module only
(numpy is accepted as input but never used for arithmetic); no torch.

Model (Wunderlich & Pehle, "Event-based backpropagation can compute exact
gradients for spiking neural networks", Table 1).  A layer of N neurons, each
with membrane potential V and synaptic current I:

    tau_mem dV/dt = -V + I,        tau_syn dI/dt = -I,        V(0) = I(0) = 0.

* Input spike of input neuron i at time t:   I_j += w_in[j][i]  for every j.
* When V_n reaches ``threshold`` from below at time t, neuron n spikes at t:
  V_n -> V_n - threshold (reset by subtraction) and, with a recurrent matrix,
  I_m += w_rec[m][n] for every m (w_rec[m][n] = weight from n to m).
* Several neurons crossing at the same instant all spike (each resets, each
  transmits).  A spike and an input spike at the same instant: the spike is
  processed first (V is continuous, an input only changes I, so the crossing
  happened before the input had any effect on V).
* Spikes at times > t_max are not emitted (t_max may be inf).  Beyond t_max the
  threshold is switched off: the neurons keep integrating but never spike.

Between events every neuron evolves freely.  From a state (V0, I0), after a
time s >= 0 (variation of constants):

    I(s) = I0 exp(-s/tau_syn)
    V(s) = V0 exp(-s/tau_mem) + (I0/tau_mem) * int_0^s exp(-(s-x)/tau_mem) exp(-x/tau_syn) dx

and the integral equals  exp(-s/tau_slow) * g(s)  with
tau_slow = max(tau_mem, tau_syn),  b = |1/tau_mem - 1/tau_syn|  and
g(s) = int_0^s exp(-b y) dy = -expm1(-b s)/b  (g(s) = s when b == 0).
This is algebraically identical to the textbook forms

    tau_mem != tau_syn:  V(s) = (V0 - c) e^{-s/tau_mem} + c e^{-s/tau_syn},
                         c = I0 tau_syn / (tau_syn - tau_mem)
    tau_mem == tau_syn:  V(s) = (V0 + I0 s/tau) e^{-s/tau}

but has no cancellation when the two time constants are close, no overflow,
and covers every ratio tau_mem/tau_syn (including equality) with one formula.
(``tests/test_reference.py`` checks the identity numerically.)

Method: a scalar event loop in true time order.  Between the current time and
the next input spike (or t_max / the end), each neuron's earliest threshold
crossing is searched for; the earliest crossing over all neurons is a spike;
all neurons are advanced to it in closed form; every neuron with V >= threshold
at that instant spikes (resets, transmits); repeat.  If no neuron crosses
before the next input spike, advance to it and apply the input.

Finding the earliest crossing of one neuron on [t0, t1] (see
``_first_crossing``): V is a sum of two exponentials (or (a + b s) e^{-s/tau}),
so dV/ds has at most one zero on s > 0: V has at most ONE extremum between
events, at the s where -V + I = 0.  The candidate points are a uniform grid of
GRID_POINTS intervals over [t0, t1] plus that extremum.  On every interval
between consecutive candidate points V is monotone (the only turning point is
itself a candidate), so the first candidate with V >= threshold brackets the
first crossing exactly once, and bisection on that bracket (until it cannot
shrink any more) gives the crossing time to full float64 precision.
"""

from __future__ import annotations

import heapq
import math
from typing import Sequence

import numpy as np

#: uniform grid intervals per search window (in addition to the extremum)
GRID_POINTS = 200
#: an open-ended search window (no more inputs, t_max = inf) is cut after this
#: many max(tau_mem, tau_syn) beyond the extremum; past the extremum V is
#: monotone and tends to 0 < threshold, so no crossing can happen later.
OPEN_END_TAUS = 50.0


# --------------------------------------------------------------------------
# closed-form free dynamics of one neuron
# --------------------------------------------------------------------------
def _g(s: float, tau_mem: float, tau_syn: float) -> float:
    """g(s) = int_0^s exp(-b y) dy with b = |1/tau_mem - 1/tau_syn| (= s if b == 0)."""
    b = abs(1.0 / tau_mem - 1.0 / tau_syn)
    if b == 0.0:
        return s
    return -math.expm1(-b * s) / b


def _free_v(v0: float, i0: float, s: float, tau_mem: float, tau_syn: float) -> float:
    """V after a time s of free evolution from state (v0, i0)."""
    tau_slow = max(tau_mem, tau_syn)
    return v0 * math.exp(-s / tau_mem) + (i0 / tau_mem) * math.exp(-s / tau_slow) * _g(s, tau_mem, tau_syn)


def _free_i(i0: float, s: float, tau_syn: float) -> float:
    """I after a time s of free evolution from current i0."""
    return i0 * math.exp(-s / tau_syn)


def _extremum(v0: float, i0: float, tau_mem: float, tau_syn: float) -> float | None:
    """The s > 0 where V has its (only) extremum, i.e. where -V(s) + I(s) = 0; or None.

    With a = 1/tau_mem - 1/tau_syn, V(s) = I(s) reads (divide both sides by
    exp(-s/tau_mem) and write u = exp(a s)):
        v0 + i0 (u - 1)/(a tau_mem) = i0 u      =>
        u = 1 + a tau_syn (i0 - v0)/i0          =>
        s = log1p(a tau_syn (i0 - v0)/i0) / a,
    whose a -> 0 limit (tau_mem == tau_syn) is s = tau_syn (i0 - v0)/i0.
    """
    if i0 == 0.0:  # pure exponential decay of V: no extremum
        return None
    z = tau_syn * (i0 - v0) / i0
    a = 1.0 / tau_mem - 1.0 / tau_syn
    if a == 0.0:
        s = z
    else:
        if a * z <= -1.0:  # u <= 0: no real solution
            return None
        s = math.log1p(a * z) / a
    if not (s > 0.0 and math.isfinite(s)):
        return None
    return s


def _first_crossing(
    v0: float, i0: float, t0: float, t1: float, *, theta: float, tau_mem: float, tau_syn: float
) -> float | None:
    """Earliest absolute time t in (t0, t1] with V(t) >= theta, or None.

    The neuron is in state (v0, i0) at time t0 and evolves freely; t1 may be inf.
    V is always evaluated as ``_free_v(v0, i0, t - t0, ...)`` so that the caller,
    advancing the state to the returned time with the same expression, gets
    exactly the same (>= theta) value.
    """
    assert v0 < theta, "invariant violated: a neuron starts a free stretch at/above threshold"

    def v(t: float) -> float:
        return _free_v(v0, i0, t - t0, tau_mem, tau_syn)

    s_ext = _extremum(v0, i0, tau_mem, tau_syn)
    if math.isinf(t1):
        t1 = t0 + (s_ext if s_ext is not None else 0.0) + OPEN_END_TAUS * max(tau_mem, tau_syn)
    if not t1 > t0:
        return None
    t_ext = t0 + s_ext if (s_ext is not None and t0 + s_ext < t1) else None

    # Quick rejection.  V has at most one extremum, so max_{[t0,t1]} V is
    # attained at t0, at t1 or at the extremum.  V(t0) < theta, so if neither
    # V(t1) nor V(t_ext) reaches theta, V stays below theta on the whole window.
    if v(t1) < theta and (t_ext is None or v(t_ext) < theta):
        return None

    # Candidate points: uniform grid (endpoints exact) plus the extremum.
    points = [t0 + (t1 - t0) * k / GRID_POINTS for k in range(GRID_POINTS)] + [t1]
    if t_ext is not None:
        points.append(t_ext)
    points.sort()

    # First candidate with V >= theta; the previous one has V < theta.
    k = next(k for k, t in enumerate(points) if v(t) >= theta)
    assert k > 0  # points[0] == t0 and v(t0) < theta
    lo, hi = points[k - 1], points[k]  # v(lo) < theta <= v(hi), V monotone on [lo, hi]

    # Bisection until the bracket cannot shrink (adjacent float64 numbers).
    while True:
        mid = lo + 0.5 * (hi - lo)
        if not (lo < mid < hi):
            break
        if v(mid) >= theta:
            hi = mid
        else:
            lo = mid
    return hi  # the earliest float with V >= theta


# --------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------
def _as_matrix(w, name: str) -> list[list[float]]:
    if isinstance(w, np.ndarray):
        w = w.tolist()
    m = [[float(x) for x in row] for row in w]
    if m and any(len(row) != len(m[0]) for row in m):
        raise ValueError(f"{name} is ragged")
    return m


def _input_events(input_times: Sequence[Sequence[float]], n: int, delays=None) -> list[tuple[float, int, int]]:
    """All input spike arrivals as (time, input index, target), in time order;
    target -1: every neuron.  +inf entries (padding) are ignored.  ``delays``:
    None, one per input (delays[i]: every spike of input i arrives that much
    later, at every neuron) or N x n_inputs (delays[j][i]: at neuron j)."""
    per_synapse = delays is not None and len(delays) > 0 and isinstance(delays[0], (list, tuple, np.ndarray))
    events = []
    for i, times in enumerate(input_times):
        for t in times:
            t = float(t)
            if math.isnan(t) or t < 0.0:
                raise ValueError(f"invalid input spike time {t} for input {i}")
            if math.isinf(t):
                continue
            if delays is None:
                events.append((t, i, -1))
            elif per_synapse:
                events.extend((t + float(delays[j][i]), i, j) for j in range(n))
            else:
                events.append((t + float(delays[i]), i, -1))
    events.sort()
    return events


# --------------------------------------------------------------------------
# the event loop
# --------------------------------------------------------------------------
def _run(
    input_times,
    w_in,
    *,
    tau_mem: float,
    tau_syn: float,
    threshold: float,
    w_rec,
    t_max: float,
    t_stop: float,
    max_events: int,
    delays=None,
    rec_delays=None,
) -> tuple[list[list[float]], list[float], list[float]]:
    """Simulate up to t_stop (may be inf: until nothing can happen any more).
    Spikes only at times <= t_max.  Returns (spikes, V, I); V, I are the states
    at t_stop after every event at times <= t_stop (meaningless if t_stop is inf).
    ``threshold``: one for all neurons, or a list with one per neuron."""
    t_max, t_stop = float(t_max), float(t_stop)

    w_in = _as_matrix(w_in, "w_in")
    n = len(w_in)  # number of neurons

    def per_neuron(x) -> list[float]:
        return [float(y) for y in x] if isinstance(x, (list, tuple, np.ndarray)) else [float(x)] * n

    tms, tss = per_neuron(tau_mem), per_neuron(tau_syn)
    if len(tms) != n or len(tss) != n or not all(x > 0.0 for x in tms + tss):
        raise ValueError("time constants must be positive (one, or one per neuron)")
    thetas = [float(x) for x in threshold] if isinstance(threshold, (list, tuple, np.ndarray)) else [float(threshold)] * n
    if len(thetas) != n or not all(x > 0.0 for x in thetas):
        raise ValueError("threshold must be positive (one, or one per neuron)")
    if n and len(w_in[0]) != len(input_times):
        raise ValueError(f"w_in has {len(w_in[0])} columns but there are {len(input_times)} inputs")
    if w_rec is not None:
        w_rec = _as_matrix(w_rec, "w_rec")
        if len(w_rec) != n or any(len(row) != n for row in w_rec):
            raise ValueError("w_rec must be N x N")
    events = _input_events(input_times, n, delays)

    v = [0.0] * n
    i_syn = [0.0] * n
    spikes: list[list[float]] = [[] for _ in range(n)]
    t_cur = 0.0
    k_ev = 0  # index of the next unprocessed input event
    n_spikes = 0

    def advance(t: float) -> None:
        """Move every neuron from t_cur to t in closed form (no events in between)."""
        nonlocal t_cur
        s = t - t_cur
        for j in range(n):
            v[j], i_syn[j] = _free_v(v[j], i_syn[j], s, tms[j], tss[j]), _free_i(i_syn[j], s, tss[j])
        t_cur = t

    pending: list[tuple[float, int, int]] = []  # delayed recurrent arrivals (time, source, target), a heap

    while True:
        t_in = events[k_ev][0] if k_ev < len(events) else math.inf
        if pending:
            t_in = min(t_in, pending[0][0])
        t_free_end = min(t_in, t_stop)  # we may evolve freely at most up to here
        t_search_end = min(t_free_end, t_max)  # spikes only up to t_max

        # 1. earliest threshold crossing over all neurons in (t_cur, t_search_end]
        t_spike = math.inf
        if t_search_end > t_cur:
            for j in range(n):
                tc = _first_crossing(
                    v[j], i_syn[j], t_cur, t_search_end, theta=thetas[j], tau_mem=tms[j], tau_syn=tss[j]
                )
                if tc is not None and tc < t_spike:
                    t_spike = tc

        if t_spike < math.inf:
            # 2a. a spike: advance everybody, then every neuron at/above threshold
            # at this instant spikes (this includes the one that determined t_spike,
            # since advance() evaluates exactly the expression _first_crossing did).
            advance(t_spike)
            spiking = [j for j in range(n) if v[j] >= thetas[j]]
            assert spiking, "internal error: no neuron at threshold at a spike time"
            for j in spiking:
                v[j] -= thetas[j]  # reset by subtraction
                spikes[j].append(t_spike)
            if w_rec is not None:
                for j in spiking:  # every spiking neuron transmits
                    for m in range(n):
                        if rec_delays is None:
                            i_syn[m] += w_rec[m][j]
                        elif m != j:  # delayed (possibly by 0): an arrival event
                            heapq.heappush(pending, (t_spike + float(rec_delays[m][j]), j, m))
            n_spikes += len(spiking)
            if n_spikes > max_events:
                raise RuntimeError(f"more than max_events={max_events} spikes (runaway activity?)")
            continue

        # 2b. no spike before t_free_end
        if math.isinf(t_free_end):  # no inputs left, open-ended: nothing can happen any more
            break
        advance(t_free_end)
        while k_ev < len(events) and events[k_ev][0] == t_cur:  # all inputs at this instant
            _, i, target = events[k_ev]
            for j in range(n) if target < 0 else (target,):
                i_syn[j] += w_in[j][i]
            k_ev += 1
        while pending and pending[0][0] == t_cur:  # and all delayed recurrent arrivals
            _, j, m = heapq.heappop(pending)
            i_syn[m] += w_rec[m][j]
        if t_cur >= t_stop:
            break

    return spikes, v, i_syn


def simulate(
    input_times: Sequence[Sequence[float]],
    w_in,
    *,
    tau_mem: float,
    tau_syn: float,
    threshold: float = 1.0,
    w_rec=None,
    t_max: float = math.inf,
    max_events: int = 100000,
    delays=None,
    rec_delays=None,
) -> list[list[float]]:
    """Spike times of a (possibly recurrent) LIF layer.

    input_times[i]: spike times of input neuron i (any order; +inf = padding).
    w_in: N x n_inputs (w_in[j][i] = weight from input i to neuron j).
    tau_mem, tau_syn, threshold: one each, or lists with one per neuron.
    w_rec: optional N x N (w_rec[m][n] = weight from neuron n to neuron m).
    delays: optional input delays, one per input or N x n_inputs (see _input_events).
    rec_delays: optional N x N recurrent delays (rec_delays[m][n]: a spike of n reaches
    m that much later; 0 allowed; the diagonal is unused).
    Returns, for each of the N neurons, its ascending list of spike times (<= t_max).
    Raises RuntimeError if more than max_events spikes occur.
    """
    spikes, _, _ = _run(
        input_times,
        w_in,
        tau_mem=tau_mem,
        tau_syn=tau_syn,
        threshold=threshold,
        w_rec=w_rec,
        t_max=t_max,
        t_stop=t_max,
        max_events=max_events,
        delays=delays,
        rec_delays=rec_delays,
    )
    return spikes


def voltage(
    input_times: Sequence[Sequence[float]],
    w_in,
    t: float,
    *,
    tau_mem: float,
    tau_syn: float,
    threshold: float = 1.0,
    w_rec=None,
    t_max: float = math.inf,
    max_events: int = 100000,
) -> list[float]:
    """Membrane potential of every neuron at time t (finite, >= 0).

    The value is right-continuous: it is taken after every event at times <= t
    (so at a neuron's own spike time it is the post-reset value).  Spiking is
    active only up to min(t, t_max); after t_max neurons integrate without a
    threshold.
    """
    t = float(t)
    if not (math.isfinite(t) and t >= 0.0):
        raise ValueError("t must be finite and >= 0")
    _, v, _ = _run(
        input_times,
        w_in,
        tau_mem=tau_mem,
        tau_syn=tau_syn,
        threshold=threshold,
        w_rec=w_rec,
        t_max=t_max,
        t_stop=t,
        max_events=max_events,
    )
    return v
