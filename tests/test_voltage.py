"""Voltage trajectories, the leaky-integrator readout and voltage losses.

Forward values against the scalar reference simulator; gradients of every voltage
loss against central finite differences in float64 (relative error <= 1e-6), with and
without hidden-layer spikes just inside / just outside the window's end; quadrature
against closed forms, 64-node rules and scipy's adaptive quadrature. Every test that
computes a trajectory runs on every engine with the trajectory capability.
"""

from __future__ import annotations

import math

import pytest
import torch

import reference
from eventprop import (
    LIFLayer,
    LIReadout,
    label_voltage_gap,
    lif_trajectory,
    max_voltage_cross_entropy,
    readout_trajectory,
    shaped_voltage_cross_entropy,
    voltage_correct,
    voltage_cross_entropy,
    voltage_integral_loss,
)
from helpers import F64, TRAJECTORY_ENGINES, assert_gradients_match, random_inputs, record, relative_error, to_lists

TAUS = [(20.0, 5.0, 1.0), (10.0, 10.0, 0.45), (5.0, 8.0, 0.35)]
LABELS = torch.tensor([0, 2])


@pytest.fixture(params=TRAJECTORY_ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """The trajectory engine under test."""
    return request.param


def _net(
    seed: int, tau_mem: float, tau_syn: float, scale: float, recurrent: bool = False, batch: int = 2, engine: str = "auto"
) -> tuple[torch.Tensor, LIFLayer, LIReadout]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x = random_inputs(batch, 4, 2, 20.0, gen).requires_grad_(True)
    kw = {"recurrent_init_mean": 0.1, "recurrent_init_std": 0.4 * scale, "max_spikes": 100} if recurrent else {}
    hidden = LIFLayer(4, 6, tau_mem=tau_mem, tau_syn=tau_syn, init_mean=1.2 * scale, init_std=0.8 * scale, recurrent=recurrent, dtype=F64, **kw)
    readout = LIReadout(6, 3, tau_mem=tau_mem, tau_syn=tau_syn, window=40.0, init_mean=0.3, init_std=1.0, engine=engine, dtype=F64)
    return x, hidden, readout


def _window(spikes: torch.Tensor, where: str) -> float:
    """``T`` placing the last hidden spike 0.02 ms inside (``"inside"``) or outside the window."""
    last = float(spikes.detach()[torch.isfinite(spikes)].max())
    return {"inside": last + 0.02, "outside": last - 0.02, "far": last + 25.0}[where]


def _loss_v(v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A smooth, nonlinear, time-dependent l_V whose jump l_V(theta) - l_V(0) is non-zero."""
    return (v - 0.2 * torch.sin(t / 7.0)) ** 2 * torch.exp(-t / 30.0) + 0.1 * torch.nn.functional.softplus(3 * v)


# ----------------------------------------------------------------------------- forward


@pytest.mark.parametrize("tau_mem,tau_syn,scale", TAUS)
@pytest.mark.parametrize("recurrent", [False, True])
def test_trajectories_match_the_reference_simulator(tau_mem: float, tau_syn: float, scale: float, recurrent: bool, engine: str) -> None:
    x, hidden, readout = _net(1, tau_mem, tau_syn, scale, recurrent, engine=engine)
    spikes = hidden(x)
    assert torch.isfinite(spikes).sum() >= 3
    grid = torch.linspace(0.0, 39.9, 12, dtype=F64) + 0.0137
    rec = None if hidden.recurrent_weight is None else hidden.recurrent_weight.detach()
    lif = lif_trajectory(x, spikes, hidden.weight, rec, tau_mem=tau_mem, tau_syn=tau_syn, window=40.0, engine=engine).at(grid)
    ro = readout(spikes).at(grid)
    worst = 0.0
    for b in range(2):
        w_rec = None if rec is None else rec.tolist()
        for g, t in enumerate(grid.tolist()):
            ref_lif = reference.voltage(to_lists(x.detach())[b], hidden.weight.tolist(), t, tau_mem=tau_mem, tau_syn=tau_syn, w_rec=w_rec)
            ref_ro = reference.voltage(to_lists(spikes.detach())[b], readout.weight.tolist(), t, tau_mem=tau_mem, tau_syn=tau_syn, threshold=1e300)
            worst = max(worst, max(abs(a - r) for a, r in zip(lif[b, :, g].tolist(), ref_lif)))
            worst = max(worst, max(abs(a - r) for a, r in zip(ro[b, :, g].tolist(), ref_ro)))
    record("voltage trajectory vs reference (absolute)", worst)
    assert worst < 1e-10


def test_reset_makes_the_voltage_drop_by_threshold_at_each_spike(engine: str) -> None:
    x, hidden, _ = _net(0, 20.0, 5.0, 1.0, engine=engine)
    spikes = hidden(x)
    traj = lif_trajectory(x, spikes, hidden.weight, tau_mem=20.0, tau_syn=5.0, window=40.0, engine=engine)
    b, n, k = torch.nonzero(torch.isfinite(spikes))[0].tolist()
    t = spikes[b, n, k].detach()
    before = traj.at(torch.stack([t - 1e-9] * 2))[b, n, 0]
    after = traj.at(torch.stack([t] * 2))[b, n, 0]
    assert abs(float(before.detach()) - 1.0) < 1e-7 and abs(float(after.detach())) < 1e-7


@pytest.mark.parametrize("tau_mem,tau_syn,scale", TAUS)
def test_max_is_the_maximum_over_the_window(tau_mem: float, tau_syn: float, scale: float, engine: str) -> None:
    x, hidden, readout = _net(2, tau_mem, tau_syn, scale, engine=engine)
    traj = readout(hidden(x))
    v_max, t_max = traj.max()
    dense = traj.at(torch.linspace(0.0, 40.0, 200_001, dtype=F64)).max(dim=-1).values
    assert bool((dense <= v_max + 1e-12).all()), "a grid point exceeds the reported maximum"
    assert float((v_max - dense).max().detach()) < 1e-6, "the reported maximum is not attained near the grid"
    at_t = torch.stack([traj.at(t_max[b])[b].diagonal() for b in range(2)])
    assert torch.allclose(at_t, v_max, rtol=0, atol=1e-13)


def test_silent_inputs_give_zero_voltage_and_no_nan(engine: str) -> None:
    readout = LIReadout(3, 2, tau_mem=20.0, tau_syn=5.0, window=30.0, engine=engine, dtype=F64)
    times = torch.full((2, 3, 2), math.inf, dtype=F64, requires_grad=True)
    traj = readout(times)
    v_max, t_max = traj.max()
    assert v_max.abs().max() == 0 and t_max.abs().max() == 0
    loss = max_voltage_cross_entropy(traj, torch.tensor([0, 1])) + shaped_voltage_cross_entropy(traj, torch.tensor([0, 1]), tau_w=5.0)
    loss = loss + voltage_integral_loss(traj, _loss_v)
    loss.backward()
    assert torch.isfinite(readout.weight.grad).all() and torch.isfinite(times.grad).all()
    assert readout.weight.grad.abs().max() == 0


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("where", ["inside", "outside", "far"])
@pytest.mark.parametrize("tau_mem,tau_syn,scale", TAUS)
def test_max_voltage_cross_entropy_gradients(tau_mem: float, tau_syn: float, scale: float, where: str, engine: str) -> None:
    """Maxima at T, at kinks on input spikes and (window far past the inputs) inside segments."""
    x, hidden, readout = _net(0, tau_mem, tau_syn, scale, engine=engine)
    readout.window = _window(hidden(x), where)
    if where == "far":
        traj = readout(hidden(x))
        t_max = traj.max()[1]
        at_event = (t_max[..., None] - traj.times.detach()[:, None, :]).abs().min(-1).values < 1e-12
        assert bool((~at_event & (t_max < readout.window)).any()), "want an interior maximum"
        assert bool((at_event & (t_max > 0)).any()), "want a maximum at an input spike (kink)"
    loss = lambda: max_voltage_cross_entropy(readout(hidden(x)), LABELS, scale=3.0)  # noqa: E731
    assert_gradients_match(loss, [x, hidden.weight, readout.weight], ["input_times", "hidden.weight", "readout.weight"], "voltage loss gradient vs finite differences (relative)")


@pytest.mark.parametrize("where", ["inside", "outside"])
@pytest.mark.parametrize("tau_mem,tau_syn,scale", TAUS)
def test_readout_integral_loss_gradients(tau_mem: float, tau_syn: float, scale: float, where: str, engine: str) -> None:
    x, hidden, readout = _net(3, tau_mem, tau_syn, scale, engine=engine)
    readout.window = _window(hidden(x), where)
    loss = lambda: voltage_integral_loss(readout(hidden(x)), _loss_v)  # noqa: E731
    assert_gradients_match(loss, [x, hidden.weight, readout.weight], ["input_times", "hidden.weight", "readout.weight"], "voltage loss gradient vs finite differences (relative)")


@pytest.mark.parametrize("where", ["inside", "outside"])
@pytest.mark.parametrize("tau_mem,tau_syn,scale", TAUS[:2])
def test_shaped_cross_entropy_gradients(tau_mem: float, tau_syn: float, scale: float, where: str, engine: str) -> None:
    x, hidden, readout = _net(4, tau_mem, tau_syn, scale, engine=engine)
    readout.window = _window(hidden(x), where)
    loss = lambda: shaped_voltage_cross_entropy(readout(hidden(x)), LABELS, tau_w=8.0, scale=5.0)  # noqa: E731
    assert_gradients_match(loss, [x, hidden.weight, readout.weight], ["input_times", "hidden.weight", "readout.weight"], "voltage loss gradient vs finite differences (relative)")


def _spiking_case(tau_mem: float, tau_syn: float, scale: float, recurrent: bool, where: str, engine: str):  # noqa: ANN202
    # The recurrent engine is a Python event loop: one sample keeps finite differences quick.
    x, hidden, _ = _net(5, tau_mem, tau_syn, scale, recurrent, batch=1 if recurrent else 2, engine=engine)
    spikes = hidden(x)
    assert (torch.isfinite(spikes).sum(-1) >= 2).any(), "want a neuron with several spikes (several resets)"
    window = _window(spikes, where)
    p = hidden.params

    def trajectory(detach_spikes: bool = False):  # noqa: ANN202
        out = hidden(x)
        return lif_trajectory(
            x, out.detach() if detach_spikes else out, hidden.weight, hidden.recurrent_weight,
            tau_mem=p.tau_mem, tau_syn=p.tau_syn, threshold=p.threshold, window=window, engine=engine,
        )  # fmt: skip

    leaves = [x, hidden.weight] + ([hidden.recurrent_weight] if recurrent else [])
    names = ["input_times", "weight"] + (["recurrent_weight"] if recurrent else [])
    return trajectory, leaves, names


@pytest.mark.parametrize(
    "tau_mem,tau_syn,scale,recurrent,where",
    [(*taus, False, where) for taus in TAUS for where in ("inside", "outside", "far")]
    + [(20.0, 5.0, 1.0, True, "inside"), (10.0, 10.0, 0.45, True, "outside")],
)
def test_spiking_integral_loss_gradients(tau_mem: float, tau_syn: float, scale: float, recurrent: bool, where: str, engine: str) -> None:
    """The paper's int l_V dt on spiking neurons: source term and jump term at every reset."""
    trajectory, leaves, names = _spiking_case(tau_mem, tau_syn, scale, recurrent, where, engine)
    loss = lambda: voltage_integral_loss(trajectory(), _loss_v)  # noqa: E731
    assert_gradients_match(loss, leaves, names, "voltage loss gradient vs finite differences (relative)")


@pytest.mark.parametrize("recurrent,where", [(False, "inside"), (False, "far"), (True, "inside")])
def test_spiking_weighted_integral_gradients(recurrent: bool, where: str, engine: str) -> None:
    trajectory, leaves, names = _spiking_case(20.0, 5.0, 1.0, recurrent, where, engine)
    weights = torch.linspace(-1.0, 1.0, 6, dtype=F64)
    loss = lambda: (trajectory().weighted_integral(12.0) * weights).sum()  # noqa: E731
    assert_gradients_match(loss, leaves, names, "voltage loss gradient vs finite differences (relative)")


def test_spike_time_path_matters(engine: str) -> None:
    """Control: without the spike times' gradient (jump and reset terms) the result is wrong."""
    trajectory, leaves, _ = _spiking_case(20.0, 5.0, 1.0, False, "inside", engine)
    full = torch.autograd.grad(voltage_integral_loss(trajectory(), _loss_v), leaves[1])[0]
    partial = torch.autograd.grad(voltage_integral_loss(trajectory(detach_spikes=True), _loss_v), leaves[1])[0]
    assert relative_error(partial, full) > 1e-2


# ----------------------------------------------------------------------------- quadrature


@pytest.mark.parametrize("tau_mem,tau_syn,scale", TAUS)
@pytest.mark.parametrize("tau_w", [math.inf, 6.0])
def test_quadrature_matches_the_closed_form(tau_mem: float, tau_syn: float, scale: float, tau_w: float, engine: str) -> None:
    x, hidden, _ = _net(6, tau_mem, tau_syn, scale, engine=engine)
    traj = lif_trajectory(x, hidden(x), hidden.weight, tau_mem=tau_mem, tau_syn=tau_syn, window=60.0, engine=engine)
    closed = traj.weighted_integral(tau_w)
    quad = traj.integral(lambda v, t: v * torch.exp(-t / tau_w))
    err = relative_error(quad, closed)
    record("quadrature (16 nodes) vs closed form (relative)", err)
    assert err < 1e-10


@pytest.mark.parametrize("tau_mem,tau_syn,scale", TAUS)
def test_default_quadrature_is_converged(tau_mem: float, tau_syn: float, scale: float, engine: str) -> None:
    x, hidden, readout = _net(7, tau_mem, tau_syn, scale, engine=engine)
    readout.window = 60.0  # a 40 ms gap after the last input: 8 tau_syn for the default rule
    traj = readout(hidden(x))
    err = relative_error(traj.integral(_loss_v), traj.integral(_loss_v, n_nodes=64))
    record("quadrature (16 nodes) vs 64 nodes (relative)", err)
    assert err < 1e-10


def test_quadrature_matches_scipy_on_the_reference_voltage(engine: str) -> None:
    integrate = pytest.importorskip("scipy.integrate")
    x, hidden, readout = _net(8, 20.0, 5.0, 1.0, engine=engine)
    spikes = hidden(x)
    window = 45.0
    traj = lif_trajectory(x, spikes, hidden.weight, tau_mem=20.0, tau_syn=5.0, window=window, engine=engine)
    ours = traj.integral(_loss_v).detach()
    inputs = to_lists(x.detach())[0]
    events = sorted({t for row in inputs + to_lists(spikes.detach())[0] for t in row if t < window})
    worst = 0.0
    for n in range(2):

        def f(t: float) -> float:
            v = reference.voltage(inputs, hidden.weight.tolist(), t, tau_mem=20.0, tau_syn=5.0)[n]
            return float(_loss_v(torch.tensor(v, dtype=F64), torch.tensor(t, dtype=F64)))

        edges = [0.0, *events, window]
        ref = sum(integrate.quad(f, a, b, epsabs=1e-14, epsrel=1e-13)[0] for a, b in zip(edges, edges[1:]) if b > a)
        worst = max(worst, abs(float(ours[0, n]) - ref) / abs(ref))
    record("quadrature (16 nodes) vs scipy quad on the reference (relative)", worst)
    assert worst < 1e-10


# ----------------------------------------------------------------------------- metrics and validation


def test_cross_entropy_and_correct() -> None:
    scores = torch.tensor([[1.0, 2.0, 0.5], [0.3, 0.3, 0.1]], dtype=F64)
    labels = torch.tensor([1, 0])
    expected = torch.nn.functional.cross_entropy(2 * scores, labels)
    assert torch.allclose(voltage_cross_entropy(scores, labels, scale=2.0), expected)
    assert voltage_correct(scores, labels).tolist() == [True, False]  # a tie is wrong


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda r, t: LIReadout(3, 2, tau_mem=5.0, tau_syn=5.0, window=0.0), "window"),
        (lambda r, t: LIReadout(3, 2, tau_mem=5.0, tau_syn=5.0, window=math.inf), "window"),
        (lambda r, t: LIReadout(0, 2, tau_mem=5.0, tau_syn=5.0, window=1.0), "in_features"),
        (lambda r, t: LIReadout(3, 2, tau_mem=-1.0, tau_syn=5.0, window=1.0), "tau_mem"),
        (lambda r, t: r(t[:, :2]), "weight has 3 inputs"),
        (lambda r, t: r(t.float()), "weight has dtype torch.float64 but times has dtype torch.float32"),
        (lambda r, t: readout_trajectory(t, r.weight.detach() * math.nan, tau_mem=5.0, tau_syn=5.0, window=1.0), "weight contains NaN"),
        (lambda r, t: lif_trajectory(t[:, :2], t[:, :2], torch.full((2, 2), math.nan, dtype=F64), tau_mem=5.0, tau_syn=5.0, window=1.0), "weight contains NaN"),
        (lambda r, t: r(t).integral(3.0), "loss_v must be callable"),
        (lambda r, t: r(t).integral(lambda v, s: v.sum()), "loss_v must return"),
        (lambda r, t: r(t).integral(lambda v, s: v, n_nodes=0), "n_nodes"),
        (lambda r, t: r(t).weighted_integral(-1.0), "tau_w"),
        (lambda r, t: r(t).at(torch.tensor([31.0])), "t must lie in"),
        (lambda r, t: max_voltage_cross_entropy(r(t), torch.tensor([0, 5])), "labels must lie"),
        (lambda r, t: max_voltage_cross_entropy(r(t), torch.tensor([0])), "labels must have shape"),
        (lambda r, t: max_voltage_cross_entropy(r(t), torch.tensor([0, 1]), scale=0.0), "scale"),
        (lambda r, t: max_voltage_cross_entropy(t, torch.tensor([0, 1])), "trajectory must be"),
        (lambda r, t: voltage_integral_loss(r(t), _loss_v, reduction="avg"), "reduction"),
        (lambda r, t: readout_trajectory(t, r.weight.T, tau_mem=5.0, tau_syn=5.0, window=1.0), "weight has 2 inputs"),
        (lambda r, t: lif_trajectory(t, t, r.weight.detach(), tau_mem=5.0, tau_syn=5.0, window=1.0), "spikes has 3 neurons"),
    ],
)
def test_bad_input_raises(call, message: str) -> None:  # noqa: ANN001
    readout = LIReadout(3, 2, tau_mem=5.0, tau_syn=5.0, window=30.0, dtype=F64)
    times = torch.tensor([[[1.0], [2.0], [math.inf]], [[0.5], [math.inf], [3.0]]], dtype=F64)
    with pytest.raises(ValueError, match=message):
        call(readout, times)


def test_values_checks_its_arguments(engine: str) -> None:
    readout = LIReadout(3, 2, tau_mem=5.0, tau_syn=5.0, window=30.0, engine=engine, dtype=F64)
    traj = readout(torch.tensor([[[1.0], [2.0], [math.inf]], [[0.5], [math.inf], [3.0]]], dtype=F64))
    t = torch.tensor([[1.5, 2.5], [0.7, 4.0]], dtype=F64)
    good = torch.tensor([[0, 1], [0, 1]])
    assert torch.allclose(traj.values(t, good), traj.at(t), rtol=0, atol=1e-15)
    for governing, message in [
        (torch.tensor([[1, 0], [0, 1]]), "nondecreasing"),
        (torch.tensor([[0, 2], [0, 1]]), r"in \[-1, 2\)"),
        (torch.tensor([[-2, 0], [0, 1]]), "nondecreasing"),
        (torch.tensor([[1, 1], [0, 1]]), "at or after the time of its governing event"),
        (good.float(), "long tensor"),
        (good[:, :1], "long tensor of t's shape"),
    ]:
        with pytest.raises(ValueError, match=message):
            traj.values(t, governing)


@pytest.mark.parametrize("tau_mem,tau_syn,scale", TAUS)
def test_label_voltage_gap_gradients(tau_mem: float, tau_syn: float, scale: float, engine: str) -> None:
    """threshold - max V of silent label neurons of a spiking output layer, through the hidden layer."""
    x, hidden, _ = _net(11, tau_mem, tau_syn, scale, engine=engine)
    output = LIFLayer(6, 3, tau_mem=tau_mem, tau_syn=tau_syn, threshold=hidden.params.threshold, init_mean=0.1, init_std=0.3, dtype=F64)
    with torch.no_grad():
        output.weight[LABELS] *= 0.3  # keep the label neurons below threshold
    p = output.params

    def loss() -> torch.Tensor:
        h = hidden(x)
        trajectory = lif_trajectory(h, output(h), output.weight, tau_mem=p.tau_mem, tau_syn=p.tau_syn, threshold=p.threshold, window=60.0, engine=engine)
        return label_voltage_gap(trajectory, LABELS)

    h = hidden(x)
    assert torch.isfinite(h).sum() >= 4, "the hidden layer must spike"
    assert torch.isinf(output(h).detach()[torch.arange(2), LABELS, 0]).all(), "the label neurons must stay silent"
    assert 0 < loss().item() < p.threshold
    assert_gradients_match(
        loss, [x, hidden.weight, output.weight], ["input_times", "hidden.weight", "output.weight"], "voltage loss gradient vs finite differences (relative)"
    )


def test_voltage_predictions_and_correct_agree_on_the_largest_score() -> None:
    from eventprop import voltage_predictions

    scores = torch.tensor([[0.1, 0.9, 0.3], [0.5, 0.5, 0.2], [-1.0, -2.0, -0.5]], dtype=F64)
    assert voltage_predictions(scores).tolist() == [1, 0, 2]
    assert voltage_correct(scores, torch.tensor([1, 0, 2])).tolist() == [True, False, True]  # a tie is wrong
    with pytest.raises(ValueError, match="scores contains NaN"):
        voltage_predictions(scores * math.nan)
