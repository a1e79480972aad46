r"""Numba engine: the compiled scalar mathematics of one LIF neuron between events.

The counterpart of :mod:`eventprop.model.neuron` for the compiled kernels
(:mod:`.feedforward`, :mod:`.recurrent`, :mod:`.trajectory`): the closed-form flow
``exp(-s/tau_mem), exp(-s/tau_syn), K(s)``, the extremum of ``V`` and its value, the
crossing test and the crossing solver (regula-falsi guess, then safeguarded Halley
steps, with the convergence tests of :func:`eventprop.model.neuron.solve_crossing`).
The kernels compute in float64; all constants reach them as one tuple of float64
scalars (:func:`_constants`), passed by value.

Numba's on-disk cache (``cache=True``) keys a compiled function on its own source file
only, so an edit here would not reach kernels compiled from another module. Each kernel
module therefore records this file's SHA-256 (``SCALAR_SHA256``) and compiles without
the cache when it does not match (``tests/test_numba_engine.py`` fails until the record
is updated, which also refreshes the kernels' cache).
"""

from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path

import numpy as np

from ...model.neuron import GRADIENT_TOLERANCE, NeuronParams

try:  # pragma: no cover - exercised only where numba is missing
    import numba
    from numba import njit
except ImportError:  # pragma: no cover
    numba = None

__all__ = ["numba_available", "require_numba", "source_sha256"]

# Indices into the constants tuple ``c`` passed to the kernels (all of the data dtype).
(_TM, _TS, _THETA, _TSLOW, _GAP, _EXT, _RATIO, _FTOL, _TTOL, _MINTAU, _HALF, _ONE, _ZERO, _HORIZON, _INF, _KMAX,
 _MARGIN, _SPEAK, _PEAK_TIME, _PEAK_K, _GRADTOL, _CLIP, _DOUBLE_ROOT) = range(23)


def numba_available() -> bool:
    """Whether the compiled engine can run (``numba`` is importable)."""
    return numba is not None


def require_numba() -> None:
    """``RuntimeError`` unless numba is importable."""
    if numba is None:
        raise RuntimeError("the numba engine needs the 'numba' package (pip install numba)")


def source_sha256() -> str | None:
    """SHA-256 of this module's source (``None`` where it cannot be read)."""
    try:
        return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    except OSError:  # pragma: no cover - frozen installs
        return None


@functools.lru_cache(maxsize=64)
def _constants(p: NeuronParams, horizon: float = math.inf, clip: float = 0.0) -> tuple:
    # A tuple of float64 scalars: passed by value (no reference counting in the inner calls).
    eps = float(np.finfo(np.float64).eps)
    values = [0.0] * 23
    values[_TM] = p.tau_mem
    values[_TS] = p.tau_syn
    values[_THETA] = p.threshold
    values[_TSLOW] = p.tau_slow
    values[_GAP] = p.rate_gap
    values[_EXT] = (p.tau_syn - p.tau_mem) / p.tau_mem
    values[_RATIO] = p.tau_mem / p.tau_syn
    values[_FTOL] = 8 * eps
    values[_TTOL] = 16 * eps
    values[_GRADTOL] = GRADIENT_TOLERANCE
    values[_CLIP] = clip
    values[_DOUBLE_ROOT] = 8 * math.sqrt(eps) * p.threshold  # neuron.tangent_tolerance
    values[_MINTAU] = min(p.tau_mem, p.tau_syn)
    values[_HALF] = 0.5
    values[_ONE] = 1.0
    values[_ZERO] = 0.0
    values[_HORIZON] = float(horizon)
    values[_INF] = math.inf
    # Upper bound of K (its maximum, enlarged a little), the time of that maximum
    # (shrunk a little) and a relative rounding margin: on [0, L],
    # V <= max(v0, 0) + max(i0, 0) K(min(L, s_peak)) rules out most intervals cheaply.
    ext = values[_EXT]
    if ext == 0:
        s_peak = p.tau_syn
    elif 1 + ext > 0:
        s_peak = p.tau_syn * (math.log1p(ext) / ext)
    else:  # tau_syn / tau_mem below rounding (ext rounds to -1): the same peak, as a ratio of logs
        s_peak = math.log(p.tau_mem / p.tau_syn) / (1 / p.tau_syn - 1 / p.tau_mem)
    k_peak = (s_peak / p.tau_mem) * math.exp(-s_peak / p.tau_slow) * (
        math.expm1(-s_peak * p.rate_gap) / (-s_peak * p.rate_gap) if p.rate_gap * s_peak != 0 else 1.0
    )
    values[_KMAX] = k_peak * (1 + 1e-6)
    values[_MARGIN] = 64 * eps
    values[_SPEAK] = s_peak * (1 - 1e-6)  # K increases on [0, s_peak]
    # exact extremum of V when V = 0 (at t = 0 and after every reset): at s_peak,
    # V = I = i0 exp(-s_peak / tau_syn) (= i0 K(s_peak))
    values[_PEAK_TIME] = s_peak
    values[_PEAK_K] = math.exp(-s_peak / p.tau_syn)
    return tuple(np.float64(v) for v in values)



if numba is not None:

    @njit(cache=True)
    def _phi(x, c):
        # expm1(x) / x with phi(0) = 1, for x <= 0
        if x == 0:
            return c[_ONE]
        return math.expm1(x) / x

    @njit(cache=True)
    def _flow(s, c):
        # (exp(-s/tau_mem), exp(-s/tau_syn), K(s)) with
        # K(s) = (s / tau_mem) exp(-s / tau_slow) phi(-s |1/tau_syn - 1/tau_mem|);
        # exp(-s/tau_slow) is shared (bitwise the same value) with the other two.
        e_slow = math.exp(-s / c[_TSLOW])
        e_mem = e_slow if c[_TM] == c[_TSLOW] else math.exp(-s / c[_TM])
        e_syn = e_slow if c[_TS] == c[_TSLOW] else math.exp(-s / c[_TS])
        return e_mem, e_syn, (s / c[_TM]) * e_slow * _phi(-s * c[_GAP], c)

    @njit(cache=True)
    def _extremum_voltage(v0, i0, s, c):
        # V at its extremum s (from _extremum): there V' = (I - V) / tau_mem = 0, so
        # V(s) = I(s) = i0 exp(-s / tau_syn): one exponential instead of three. Within
        # rounding of the threshold (a near-tangential crossing) the value is recomputed
        # as _solve computes V, so that the crossing decision and the root agree.
        if v0 == 0 and s == c[_PEAK_TIME]:
            v = i0 * c[_PEAK_K]
        else:
            v = i0 * math.exp(-s / c[_TS])
        if abs(v - c[_THETA]) <= c[_MARGIN] * c[_THETA]:
            e_mem, e_syn, k = _flow(s, c)
            v = v0 * e_mem + i0 * k
        return v

    @njit(cache=True)
    def _extremum(v0, i0, c):
        # local time of the single extremum of V (+inf if none), as neuron.voltage_extremum
        if i0 == 0:
            return c[_INF]
        if v0 == 0:  # at t = 0 and after a reset: the peak of the PSP kernel
            return c[_PEAK_TIME]
        q = (i0 - v0) / i0
        y = c[_EXT] * q
        if not (q > 0 and c[_ONE] + y > 0):
            return c[_INF]
        psi = c[_ONE]
        if y != 0:
            psi = math.log1p(y) / y
        return c[_TS] * q * psi

    @njit(cache=True)
    def _solve(v0, i0, lo, hi, v_lo, v_hi, c):
        # Root of V(s) = theta in [lo, hi] (V(lo) = v_lo < theta <= V(hi) = v_hi; v_lo
        # may be NaN = unknown) with the convergence tests of neuron.solve_crossing: a
        # regula-falsi first guess, then Halley steps (V'' costs no extra exponential:
        # tau_mem V' = I - V, tau_mem V'' = -I / tau_syn - V'), falling back to Newton
        # and then to bisection whenever a step leaves the bracket or is not below half
        # the previous step (as rtsafe does). Never converged on the step size alone:
        # near the maximum of V a Halley step is tiny however far the root is.
        theta = c[_THETA]
        tau_mem = c[_TM]
        tau_syn = c[_TS]
        half = c[_HALF]
        gradient_tol = c[_GRADTOL]
        x = half * (lo + hi)
        if v_hi > v_lo:
            guess = lo + (hi - lo) * ((theta - v_lo) / (v_hi - v_lo))
            if guess >= lo and guess <= hi:
                x = guess
        f_tol = c[_FTOL] * (theta + abs(v0) + abs(i0))
        t_tol = c[_TTOL] * (abs(hi) + c[_MINTAU])
        step_last = c[_INF]  # the previous step
        for _ in range(100):
            e_mem, e_syn, k = _flow(x, c)
            v = v0 * e_mem + i0 * k
            f = v - theta
            i = i0 * e_syn
            slope = (i - v) / tau_mem
            curvature = (-i / tau_syn - slope) / tau_mem
            size = abs(f)
            if size <= f_tol and slope > 0 and (
                size <= slope * t_tol or size * abs(curvature) <= gradient_tol * slope * slope
            ):
                return x
            if f < 0:
                lo = x
            else:
                hi = x
            width = hi - lo
            if width <= t_tol:
                return half * (lo + hi)
            x_new = half * (lo + hi)
            if slope > 0:
                denominator = 2 * slope * slope - f * curvature  # may underflow to 0 (time constants ~1e300)
                halley = c[_INF]  # no Halley step
                if denominator > 0:
                    halley = x - 2 * f * slope / denominator
                newton = x - f / slope
                limit = half * step_last
                if halley >= lo and halley <= hi and abs(halley - x) <= limit:
                    x_new = halley
                elif newton >= lo and newton <= hi and abs(newton - x) <= limit:
                    x_new = newton
            step_last = abs(x_new - x)
            x = x_new
        return x

    # The three sums over a layer's neurons below are compiled with reassociation allowed
    # (``fastmath={"reassoc"}``) and nothing else: the compiler may then split the running
    # sum into vector lanes (a single running sum is one dependent addition per neuron).
    # The order is fixed by the compiled code for this machine's vector width: it does
    # not depend on threads or on the data, so results repeat bit for bit here; between
    # machines with other vector units the sums may differ in their last bits. The
    # products inside each term are not reassociated (one operation each).

    @njit(cache=True, fastmath={"reassoc"})
    def _dot(w, x, y, cx, cy):
        # sum_m w[m] (cx x[m] + cy y[m])
        s = 0.0
        for m in range(x.shape[0]):
            s += w[m] * (cx * x[m] + cy * y[m])
        return s

    @njit(cache=True, fastmath={"reassoc"})
    def _input_gradients(lv, li, w, g, tau_syn):
        # At an input event of an EventProp backward, with the adjoint just after it:
        # dL/dW[:, src] (g[m] += -tau_syn lambda_I,m) and the returned
        # dL/dt_e = sum_m w[m] (lambda_V,m - lambda_I,m), in one pass.
        s = 0.0
        for m in range(lv.shape[0]):
            l_i = li[m]
            g[m] += -tau_syn * l_i
            s += w[m] * (lv[m] - l_i)
        return s

    @njit(cache=True, fastmath={"reassoc"})
    def _input_adjoint(lv, li, e_mem, e_syn, k_lam, w, g, tau_syn):
        # _input_gradients after carrying every neuron's adjoint back over the interval
        # to the event (lambda_I <- lambda_I e_syn + lambda_V k_lam, lambda_V <- lambda_V
        # e_mem), in the same pass.
        s = 0.0
        for m in range(lv.shape[0]):
            l_v = lv[m]
            l_i = li[m] * e_syn + l_v * k_lam
            l_v = l_v * e_mem
            li[m] = l_i
            lv[m] = l_v
            g[m] += -tau_syn * l_i
            s += w[m] * (l_v - l_i)
        return s

    @njit(cache=True)
    def _input_flow(lv, li, e_mem, e_syn, k_lam, g, tau_syn):
        # _input_adjoint where the input times need no gradient: the adjoint carried back
        # and dL/dW[:, src] only (the same operations, without the sum)
        for m in range(lv.shape[0]):
            l_v = lv[m]
            l_i = li[m] * e_syn + l_v * k_lam
            li[m] = l_i
            lv[m] = l_v * e_mem
            g[m] += -tau_syn * l_i

    @njit(cache=True)
    def _weight_gradients(li, g, tau_syn):
        # _input_gradients without dL/dt_e: g[m] += -tau_syn lambda_I,m
        for m in range(li.shape[0]):
            g[m] += -tau_syn * li[m]

    @njit(cache=True)
    def _neuron_interval(b, j, te, end, v_s, i_s, e_mem, e_syn, k, c, limit, out_t, out_i, counts, stop_t):
        # (The feed-forward kernels' per-neuron step, CPU, synapse-list and CUDA alike.)
        # Neuron j of sample b over [te, end] from the state (v_s, i_s) just after the
        # event at te, where _may_cross holds for the whole interval (flow factors
        # e_mem, e_syn, k over it when finite): every crossing, each followed by the
        # reset V = 0 and the search from the spike on. Returns V at ``end`` (when
        # finite), or NaN once the neuron exceeded the limit (stop_t[b, j]: that time).
        cap = out_t.shape[2]
        i_ev = i_s
        t_s = te
        v_end = v_s * e_mem + i_s * k
        while True:
            length = end - t_s
            if not (length > 0):
                return v_s
            finite = math.isfinite(length)
            if t_s != te and finite:
                e_mem, e_syn, k = _flow(length, c)
                v_end = v_s * e_mem + i_s * k
            i_end = i_s * e_syn
            s = c[_INF]
            if t_s == te or _may_cross(v_s, i_s, length, v_end, i_end, k, c):
                s = _crossing(v_s, i_s, length, v_end, c)
            if not (s < c[_INF]):
                return v_end
            t_k = t_s + s
            count = counts[b, j] + 1
            counts[b, j] = count
            if count > limit:
                stop_t[b, j] = t_k
                return math.nan
            if count <= cap:
                out_t[b, j, count - 1] = t_k
                out_i[b, j, count - 1] = i_s * math.exp(-s / c[_TS])
            # reset by subtraction: V = theta - theta = 0; I unchanged
            v_s = c[_ZERO]
            i_s = i_ev * math.exp(-(t_k - te) / c[_TS])
            t_s = t_k

    @njit(cache=True)
    def _adjoint_jump(numerator, current, c):
        # (the jump of lambda_V at a spike with current I, whether the spike is tangential):
        # numerator / (I - theta) as neuron.adjoint_jump, the spike tangential where
        # |I - theta| <= tangent_tolerance theta, the denominator clipped to that bound
        # where the safeguard is on (c[_CLIP] > 0) and a double root bounded
        denominator = current - c[_THETA]
        tangential = abs(denominator) <= c[_DOUBLE_ROOT]
        if abs(denominator) < c[_CLIP]:
            denominator = -c[_CLIP] if denominator < 0 else c[_CLIP]
        if denominator == 0:  # a double root: the exact value is infinite
            denominator = c[_DOUBLE_ROOT]
        return numerator / denominator, tangential

    @njit(cache=True)
    def _near(v0, i0, v_end, i_end, k_bound, c):
        # 1 where a neuron with state (v0, i0) may reach theta in an interval whose end
        # state is (v_end, i_end) (K bounded by k_bound on it), 0 where it cannot: the
        # tests of _may_cross, branch-free (selects, no calls), for the kernels'
        # vectorised per-event pass; the flagged neurons then go through _may_cross
        # itself. For an open-ended interval the kernels pass v_end = i_end = 0, which
        # rules nothing out by the last test.
        theta = c[_THETA]
        zero = c[_ZERO]
        margin = c[_MARGIN]
        v_pos = v0 if v0 > zero else zero
        i_pos = i0 if i0 > zero else zero
        bound = v_pos + i_pos * k_bound
        bound = bound if bound < i0 else i0
        near = bound + margin * (theta + abs(v0) + abs(i0) * k_bound) >= theta
        # V still rising at the end: no inner maximum (as in _may_cross)
        peaks = ~(i_end - v_end > margin * (abs(i_end) + abs(v_end)))
        return np.uint8((v_end >= theta) | ((i0 > v0) & near & peaks))

    @njit(cache=True)
    def _may_cross(v_s, i_s, length, v_end, i_end, k, c):
        # Whether V can reach theta in [0, length] from the state (v_s, i_s) at s = 0;
        # (v_end, i_end, k) are V, I and K at s = length when length is finite (ignored
        # otherwise). A few comparisons, no exponential: V reaching theta at the end, or
        # an inner maximum (V rises at the start, not clearly at the end) under an upper bound
        # of V that reaches theta (max V <= max(v0, 0) + max(i0, 0) max K, and at an
        # inner maximum V = I <= i0). False means no crossing; True is decided by
        # _crossing.
        theta = c[_THETA]
        zero = c[_ZERO]
        rising = i_s > v_s
        finite = math.isfinite(length)
        if finite and v_end >= theta:
            return True
        if not rising:
            return False
        k_bound = k if finite and length <= c[_SPEAK] else c[_KMAX]
        bound = min(max(v_s, zero) + max(i_s, zero) * k_bound, i_s)
        if not (bound + c[_MARGIN] * (theta + abs(v_s) + abs(i_s) * k_bound) >= theta):
            return False
        # V still rising at the end (I > V there) rules out an inner maximum, unless
        # I - V is at rounding level (V tracks I where tau_mem << tau_syn)
        return not (i_end - v_end > c[_MARGIN] * (abs(i_end) + abs(v_end))) if finite else True

    @njit(cache=True)
    def _crossing(v_s, i_s, length, v_end, c):
        # Local time of the first threshold crossing in [0, length] from the state
        # (v_s, i_s) at s = 0, +inf if none, where _may_cross holds; v_end is V at
        # s = length when length is finite. Same decisions as neuron.crossing_bracket:
        # at most one extremum, whose voltage (V = I there) costs one exponential.
        theta = c[_THETA]
        lo = c[_ZERO]
        hi = length
        v_lo = v_s
        v_hi = v_end
        s_ext = _extremum(v_s, i_s, c)
        if math.isfinite(length) and v_end >= theta:
            if s_ext < length:
                if i_s > v_s:  # maximum inside: crossing before it
                    hi = s_ext
                    v_hi = _extremum_voltage(v_s, i_s, s_ext, c)
                    if not (v_hi >= theta):
                        return c[_INF]
                else:  # minimum inside: crossing after it
                    lo = s_ext
                    v_lo = math.nan  # not computed: no regula-falsi guess
        else:
            # a maximum inside the interval (open-ended: V -> 0, so only a maximum crosses)
            if not (s_ext < length):
                return c[_INF]
            hi = s_ext
            v_hi = _extremum_voltage(v_s, i_s, s_ext, c)
            if not (v_hi >= theta):
                return c[_INF]
        return _solve(v_s, i_s, lo, hi, v_lo, v_hi, c)
