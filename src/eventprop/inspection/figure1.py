r"""The paper's Figure 1: EventProp in two LIF neurons, checked against finite differences.

Set-up (paper Figure 1 A): an *upper* neuron receives ``100`` independent Poisson
spike trains (``200 Hz``) through random weights ``W ~ N(0.02, 0.01^2)`` and drives a
*lower* neuron through one weight ``w = 4``; ``tau_mem = 20 ms``, ``tau_syn = 5 ms``,
``theta = 1``, trial length ``T = 100 ms`` (no spike after ``T``). The loss is the sum
of the lower neuron's spike times, ``L = sum_k t_k^lower`` (ms). It is built from two
:class:`~eventprop.LIFLayer` (``100 -> 1 -> 1``) in float64.

EventProp (autograd through the layers) gives ``dL/dW[0, i]`` for the 100 input
weights and ``dL/dw``; these are compared with central finite differences

    dL/dx ~ (L(x + h) - L(x - h)) / (2 h),     h = eps * max(1, |x|),  eps = 1e-6,

all in float64. The 200 perturbed upper neurons are simulated at once as 200 rows of
one layer (feed-forward neurons are independent), then the 200 resulting spike
trains as a batch for the lower neuron: the same simulator, just batched.
With ``eps = 1e-6`` the truncation error ``O(h^2)`` and the rounding error
``O(eps_mach L / h)`` are both around ``1e-9`` relative here.

A finite-difference check is only meaningful away from critical points (a spike
appearing or vanishing between ``x - h`` and ``x + h``); :func:`criticality` measures
how far the seed is from one (slowest threshold crossing, closest sub-threshold
maximum) and :func:`run_figure1` warns when it is near-critical.

Panels drawn (``figure1.png``): A input raster; B, C membrane potentials of the upper
and lower neuron (upper spikes marked by arrows); D, E ``lambda_I`` of both neurons
(E with arrows at the upper spikes, where the lower neuron sends back
``w (lambda_V - lambda_I)``); F, G the gradient of one input weight and of ``w``
accumulated from ``t = T`` backwards, with the finite-difference value at ``t = 0``.

Run it with ``eventprop figure1 --out DIR`` or ``python -m eventprop.inspection.figure1``.
"""

from __future__ import annotations

import argparse
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..layers import LIFLayer, lif_layer
from ..model.neuron import free_voltage, voltage_extremum
from .traces import adjoint_traces, spike_times_finite, voltage_traces

__all__ = [
    "Figure1Config",
    "Figure1Network",
    "Figure1Gradients",
    "poisson_trains",
    "build_network",
    "figure1_loss",
    "eventprop_gradients",
    "finite_difference_gradients",
    "relative_deviation",
    "criticality",
    "run_figure1",
    "main",
]

F64 = torch.float64


@dataclass(frozen=True)
class Figure1Config:
    """Parameters of the Figure 1 set-up (times in ms, rates in Hz, voltages in ``theta``)."""

    n_inputs: int = 100
    rate_hz: float = 200.0
    duration: float = 100.0
    tau_mem: float = 20.0
    tau_syn: float = 5.0
    threshold: float = 1.0
    input_mean: float = 0.02
    input_std: float = 0.01
    w: float = 4.0
    fd_eps: float = 1e-6
    grid_step: float = 0.02
    critical_slope: float = 1e-3
    critical_margin: float = 1e-4


@dataclass
class Figure1Network:
    """The two neurons and their input: ``inputs (1, n_inputs, S)``, ``upper``, ``lower``."""

    inputs: Tensor
    upper: LIFLayer
    lower: LIFLayer
    config: Figure1Config


@dataclass
class Figure1Gradients:
    """A forward/backward pass of the set-up.

    Attributes:
        upper_out, lower_out: ``(1, 1, K)`` spike times of the two neurons.
        grad_upper_out, grad_lower_out: ``dL/d`` those spike times (same shapes).
        input_weights: ``(n_inputs,)`` EventProp ``dL/dW[0, i]``.
        w: EventProp ``dL/dw``.
        loss: ``L`` (ms).
    """

    upper_out: Tensor
    lower_out: Tensor
    grad_upper_out: Tensor
    grad_lower_out: Tensor
    input_weights: Tensor
    w: float
    loss: float


def poisson_trains(n: int, rate_hz: float, duration: float, gen: torch.Generator) -> Tensor:
    """``n`` independent homogeneous Poisson spike trains on ``[0, duration)`` ms.

    Spike counts are ``Poisson(rate * duration)``, times uniform (the conditional law
    of a Poisson process), sorted. Returns ``(1, n, S)`` float64, ``+inf`` padded.
    """
    mean = torch.full((n,), rate_hz * 1e-3 * duration, dtype=F64)
    counts = torch.poisson(mean, generator=gen).long()
    slots = max(int(counts.max()), 1)
    t = torch.rand(n, slots, generator=gen, dtype=F64) * duration
    keep = torch.arange(slots)[None, :] < counts[:, None]
    return torch.where(keep, t, torch.full_like(t, math.inf)).sort(dim=-1).values[None]


def build_network(seed: int = 0, config: Figure1Config | None = None) -> Figure1Network:
    """Draw the inputs and the input weights from ``seed`` and build the two layers."""
    c = config or Figure1Config()
    gen = torch.Generator().manual_seed(seed)
    inputs = poisson_trains(c.n_inputs, c.rate_hz, c.duration, gen)
    common = {"tau_mem": c.tau_mem, "tau_syn": c.tau_syn, "threshold": c.threshold, "horizon": c.duration, "dtype": F64}
    upper = LIFLayer(c.n_inputs, 1, **common)
    lower = LIFLayer(1, 1, **common)
    with torch.no_grad():
        upper.weight.copy_(c.input_mean + c.input_std * torch.randn(1, c.n_inputs, generator=gen, dtype=F64))
        lower.weight.fill_(c.w)
    return Figure1Network(inputs, upper, lower, c)


def figure1_loss(lower_out: Tensor) -> Tensor:
    """``L = sum_k t_k`` over the finite spike times, per batch element: ``(B, 1, K) -> (B,)``."""
    finite = torch.isfinite(lower_out)
    return torch.where(finite, lower_out, torch.zeros_like(lower_out)).sum(dim=(1, 2))


def eventprop_gradients(net: Figure1Network) -> Figure1Gradients:
    """EventProp gradients of ``L`` through the two layers (autograd), and ``dL/d spikes``."""
    net.upper.zero_grad(set_to_none=True)
    net.lower.zero_grad(set_to_none=True)
    upper_out = net.upper(net.inputs)
    lower_out = net.lower(upper_out)
    loss = figure1_loss(lower_out).sum()
    g_upper, g_lower = torch.autograd.grad(loss, (upper_out, lower_out), retain_graph=True)
    loss.backward()
    assert net.upper.weight.grad is not None and net.lower.weight.grad is not None
    return Figure1Gradients(
        upper_out=upper_out.detach(),
        lower_out=lower_out.detach(),
        grad_upper_out=g_upper,
        grad_lower_out=g_lower,
        input_weights=net.upper.weight.grad[0].clone(),
        w=float(net.lower.weight.grad[0, 0]),
        loss=float(loss.detach()),
    )


def _losses(net: Figure1Network, upper_rows: Tensor, w_rows: Tensor | None = None) -> Tensor:
    """Loss for each row of upper weights ``(P, n_in)`` (and, optionally, each lower weight)."""
    c = net.config
    kw = {"tau_mem": c.tau_mem, "tau_syn": c.tau_syn, "threshold": c.threshold, "horizon": c.duration}
    upper = lif_layer(net.inputs, upper_rows, **kw)  # (1, P, K): P independent upper neurons
    if w_rows is None:
        lower = lif_layer(upper.transpose(0, 1).contiguous(), net.lower.weight.detach(), **kw)  # batch of P
        return figure1_loss(lower)
    lower = lif_layer(upper, w_rows, **kw)  # (1, Q, K'): Q lower neurons sharing one upper train
    return figure1_loss(lower.transpose(0, 1))


@torch.no_grad()
def finite_difference_gradients(net: Figure1Network, eps: float | None = None) -> tuple[Tensor, float]:
    """Central differences of ``L`` for every input weight and for ``w`` (float64).

    Returns:
        ``(fd_input_weights (n_inputs,), fd_w)``.
    """
    eps = net.config.fd_eps if eps is None else eps
    weight = net.upper.weight.detach()[0]
    step = eps * weight.abs().clamp(min=1.0)
    shifts = torch.diag(step)
    rows = torch.cat([weight + shifts, weight - shifts])  # (2 n_in, n_in)
    losses = _losses(net, rows)
    n = weight.shape[0]
    fd_inputs = (losses[:n] - losses[n:]) / (2 * step)
    w = float(net.lower.weight[0, 0])
    h = eps * max(1.0, abs(w))
    w_rows = torch.tensor([[w + h], [w - h]], dtype=F64)
    up, down = _losses(net, net.upper.weight.detach(), w_rows).tolist()
    return fd_inputs, (up - down) / (2 * h)


def relative_deviation(eventprop: Tensor | float, numeric: Tensor | float) -> float:
    """``max |eventprop - numeric| / |numeric|`` (elementwise relative, worst entry)."""
    a = torch.as_tensor(eventprop, dtype=F64)
    b = torch.as_tensor(numeric, dtype=F64)
    return float(((a - b).abs() / b.abs().clamp(min=1e-300)).max())


def _layer_criticality(layer: LIFLayer, inputs: Tensor, out: Tensor, horizon: float) -> tuple[float, float]:
    """``(min slope, min margin)`` of a layer's neurons (batch element 0).

    slope: ``I(t_k^-) - theta = tau_mem dV/dt`` at each spike (0 = tangential crossing).
    margin: ``theta - V`` at every sub-threshold local maximum of ``V`` before the
    horizon and at the horizon itself (0 = a spike about to appear).
    """
    p = layer.params
    ev = inputs[0][torch.isfinite(inputs[0])]
    spikes = out[0][torch.isfinite(out[0])]
    starts = torch.unique(torch.cat([torch.zeros(1, dtype=F64), ev, spikes]))
    starts = starts[starts < horizon]
    ends = torch.cat([starts[1:], torch.tensor([horizon], dtype=F64)])
    v0, i0 = voltage_traces(layer, inputs[:1], starts, out_times=out[:1], side="right")
    s_star = voltage_extremum(v0, i0, p)
    inside = (s_star < (ends - starts)) & (i0 > v0)
    v_max = free_voltage(v0, i0, torch.where(inside, s_star, torch.zeros_like(s_star)), p)
    v_end, _ = voltage_traces(layer, inputs[:1], [horizon], out_times=out[:1], side="left")
    peaks = torch.cat([v_max[inside], v_end.reshape(-1)])
    margin = float((p.threshold - peaks).min())
    slope = math.inf
    if spikes.numel():
        _, i_spk = voltage_traces(layer, inputs[:1], spikes, out_times=out[:1], side="left")
        slope = float((i_spk.reshape(out.shape[1], -1) - p.threshold).min())
    return slope, margin


def criticality(net: Figure1Network, grads: Figure1Gradients) -> dict[str, float]:
    """Distance of the set-up from a critical point, over both neurons.

    Returns ``{"min_crossing_slope": min (I(t_k) - theta), "min_subthreshold_margin":
    min (theta - V_max)}`` (units of ``theta``).
    """
    T = net.config.duration
    s1, m1 = _layer_criticality(net.upper, net.inputs, grads.upper_out, T)
    s2, m2 = _layer_criticality(net.lower, grads.upper_out, grads.lower_out, T)
    return {"min_crossing_slope": min(s1, s2), "min_subthreshold_margin": min(m1, m2)}


def _with_jumps(grid: Tensor, values: Tensor, at: Sequence[float], left: Tensor, right: Tensor) -> tuple[list[float], list[float]]:
    """Merge a trace on ``grid`` with exact left/right values at the jump times ``at``."""
    points = [(float(t), 0, float(v)) for t, v in zip(grid.tolist(), values.tolist())]
    points += [(t, -1, float(v)) for t, v in zip(at, left.tolist())]
    points += [(t, 1, float(v)) for t, v in zip(at, right.tolist())]
    points.sort()
    return [p[0] for p in points], [p[2] for p in points]


def _draw(path: Path, net: Figure1Network, grads: Figure1Gradients, shown: int, fd_shown: float, fd_w: float) -> None:
    """Render panels A-G into ``path`` (matplotlib, Agg canvas, no pyplot)."""
    from .plotting import new_figure, plot_raster

    c = net.config
    grid = torch.arange(0.0, c.duration + 0.5 * c.grid_step, c.grid_step, dtype=F64)
    up_t = spike_times_finite(grads.upper_out)
    lo_t = spike_times_finite(grads.lower_out)

    def voltage(layer: LIFLayer, x: Tensor, out: Tensor, spikes: list[float]) -> tuple[list[float], list[float]]:
        v, _ = voltage_traces(layer, x, grid, out_times=out)
        if not spikes:
            return grid.tolist(), v[0, 0].tolist()
        vl, _ = voltage_traces(layer, x, spikes, out_times=out, side="left")
        vr, _ = voltage_traces(layer, x, spikes, out_times=out, side="right")
        return _with_jumps(grid, v[0, 0], spikes, vl[0, 0], vr[0, 0])

    upper_adj = adjoint_traces(net.upper, net.inputs, grid, grads.grad_upper_out, out_times=grads.upper_out, weights=[(0, shown)])
    lower_adj = adjoint_traces(net.lower, grads.upper_out, grid, grads.grad_lower_out, out_times=grads.lower_out, weights=[(0, 0)])

    fig = new_figure(figsize=(10.0, 10.5), layout="constrained")
    gs = fig.add_gridspec(4, 2, height_ratios=[0.8, 1, 1, 1])
    ax_a = fig.add_subplot(gs[0, :])
    plot_raster(net.inputs, ax=ax_a, color="0.4", marker_size=2.0)
    row = net.inputs[0, shown][torch.isfinite(net.inputs[0, shown])].tolist()
    ax_a.scatter(row, [shown] * len(row), s=6, c="C0", marker="o", label=f"input {shown} (panel F)")
    ax_a.set_title(f"A  {c.n_inputs} Poisson inputs at {c.rate_hz:g} Hz -> upper neuron -(w = {c.w:g})-> lower neuron", loc="left")
    ax_a.set_xlim(0, c.duration)
    ax_a.set_xlabel("t [ms]")
    ax_a.legend(loc="upper right", fontsize=8)

    axes = [fig.add_subplot(gs[r, k]) for r in (1, 2, 3) for k in (0, 1)]
    ax_b, ax_c, ax_d, ax_e, ax_f, ax_g = axes
    ax_b.plot(*voltage(net.upper, net.inputs, grads.upper_out, up_t), color="k", lw=0.9)
    ax_c.plot(*voltage(net.lower, grads.upper_out, grads.lower_out, lo_t), color="k", lw=0.9)
    for ax, spikes, title in ((ax_b, up_t, "B  upper neuron: V"), (ax_c, lo_t, "C  lower neuron: V")):
        ax.axhline(c.threshold, color="grey", ls="--", lw=0.8)
        ax.set_ylabel(r"$V$ [$\vartheta$]")
        ax.set_title(title, loc="left")
    for ax in (ax_b, ax_c):
        for t in up_t:  # arrows: upper spikes (sent to the lower neuron)
            ax.annotate("", xy=(t, 1.05 * c.threshold), xytext=(t, 1.3 * c.threshold),
                        arrowprops={"arrowstyle": "->", "color": "C3", "lw": 1.0})
        ax.set_ylim(top=1.35 * c.threshold)
    for t in lo_t:
        ax_c.axvline(t, color="C0", lw=0.6, ls=":")

    ax_d.plot(grid.tolist(), upper_adj.lambda_i[0, 0].tolist(), color="C2", lw=1.0)
    ax_d.set_title(r"D  upper neuron: $\lambda_I$", loc="left")
    ax_e.plot(grid.tolist(), lower_adj.lambda_i[0, 0].tolist(), color="C2", lw=1.0)
    ax_e.set_title(r"E  lower neuron: $\lambda_I$ (arrows: upper spikes)", loc="left")
    top = float(lower_adj.lambda_i.max()) if lower_adj.lambda_i.numel() else 0.0
    bottom = float(lower_adj.lambda_i.min()) if lower_adj.lambda_i.numel() else 0.0
    span = max(top - bottom, 1e-12)
    for t in up_t:
        ax_e.annotate("", xy=(t, top + 0.05 * span), xytext=(t, top + 0.3 * span),
                      arrowprops={"arrowstyle": "->", "color": "C3", "lw": 1.0})
    ax_e.set_ylim(bottom - 0.05 * span, top + 0.35 * span)
    for ax in (ax_d, ax_e):
        ax.set_ylabel(r"$\lambda_I$ [1 / $\vartheta$]")
        ax.axhline(0.0, color="grey", lw=0.5)

    for ax, acc, final, fd, name, letter in (
        (ax_f, upper_adj.weight_grad[0, 0], float(grads.input_weights[shown]), fd_shown, f"W[0, {shown}]", "F"),
        (ax_g, lower_adj.weight_grad[0, 0], grads.w, fd_w, "w", "G"),
    ):
        ax.plot(grid.tolist(), acc.tolist(), color="C0", lw=1.2, label="EventProp, accumulated from T")
        ax.plot([0.0], [fd], ls="none", marker="o", mfc="none", mec="C3", ms=10, mew=1.5, label="central differences")
        rel = relative_deviation(final, fd)
        ax.set_title(f"{letter}  accumulated dL/d{name}   (rel. dev. {rel:.1e})", loc="left")
        ax.set_ylabel("gradient [ms / weight]")
        ax.axhline(0.0, color="grey", lw=0.5)
        ax.legend(loc="best", fontsize=8)
    for ax in axes:
        ax.set_xlim(-1.0, c.duration)
    for ax in (ax_f, ax_g):
        ax.set_xlabel("t [ms]")
    fig.savefig(path, dpi=120)


def run_figure1(out_dir: Path, seed: int = 0, config: Figure1Config | None = None, *, draw: bool = True) -> dict[str, float]:
    """Compute, check and (``draw=True``) draw Figure 1 into ``out_dir / "figure1.png"``.

    Args:
        out_dir: output folder (created when drawing).
        seed: draws the Poisson inputs and the input weights.
        config: set-up parameters (default :class:`Figure1Config`).
        draw: write the figure (needs matplotlib); ``False``: the numbers only.

    Returns:
        ``{"input_weights": max_i |g_i - fd_i| / |fd_i| over the input weights,
        "w": |g_w - fd_w| / |fd_w|, "shown_input": the deviation of the input shown in
        panel F}`` plus diagnostics: ``"shown_input_index"``, ``"upper_spikes"``,
        ``"lower_spikes"``, ``"loss"`` (ms), ``"min_crossing_slope"``,
        ``"min_subthreshold_margin"`` (see :func:`criticality`).

    Raises:
        ImportError: matplotlib is missing (``pip install eventprop[plot]``).
    """
    if draw:
        from .plotting import require_matplotlib

        require_matplotlib()  # before the work, not after it
    net = build_network(seed, config)
    c = net.config
    grads = eventprop_gradients(net)
    fd_inputs, fd_w = finite_difference_gradients(net)
    crit = criticality(net, grads)
    if crit["min_crossing_slope"] < c.critical_slope or crit["min_subthreshold_margin"] < c.critical_margin:
        warnings.warn(
            f"Figure 1 seed {seed} is near-critical ({crit}): a spike may appear or vanish within the "
            "finite-difference step, so deviations may be large; try another seed",
            RuntimeWarning,
            stacklevel=2,
        )
    shown = int(grads.input_weights.abs().argmax())
    if draw:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        _draw(out / "figure1.png", net, grads, shown, float(fd_inputs[shown]), fd_w)
    return {
        "input_weights": relative_deviation(grads.input_weights, fd_inputs),
        "w": relative_deviation(grads.w, fd_w),
        "shown_input": relative_deviation(grads.input_weights[shown], fd_inputs[shown]),
        "shown_input_index": float(shown),
        "upper_spikes": float(torch.isfinite(grads.upper_out).sum()),
        "lower_spikes": float(torch.isfinite(grads.lower_out).sum()),
        "loss": grads.loss,
        **crit,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``eventprop figure1 [--out DIR] [--seed S]``: draw Figure 1, print the deviations."""
    parser = argparse.ArgumentParser(prog="eventprop figure1", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/figure1", help="output folder (default: runs/figure1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of inputs and weights (default: 0)")
    args = parser.parse_args(argv)
    try:
        import matplotlib  # noqa: F401

        draw = True
    except ImportError:
        draw = False
    result = run_figure1(Path(args.out), seed=args.seed, draw=draw)
    print(f"input_weights_max_relative_deviation {result['input_weights']:.3e}")
    print(f"w_relative_deviation {result['w']:.3e}")
    if draw:
        print(f"figure {Path(args.out) / 'figure1.png'}")
    else:
        print("figure skipped: plotting needs matplotlib (pip install matplotlib)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
