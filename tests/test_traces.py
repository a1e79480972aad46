"""Dense traces: consistent with the layer's spikes, the model's ODEs and EventProp's gradient."""

from __future__ import annotations


import pytest
import torch

from eventprop import LIFLayer
from eventprop.inspection.traces import adjoint_traces, voltage_traces
from helpers import F64, random_inputs, spike_weighted_loss


def _setup(recurrent: bool, seed: int = 0) -> tuple[LIFLayer, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A small layer with several spikes per neuron, its output and ``g = dL/d out``."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 10)
    x = random_inputs(2, 6, 4, 30.0, gen)
    layer = LIFLayer(6, 4, tau_mem=10.0, tau_syn=5.0, recurrent=recurrent, init_mean=0.8, init_std=0.5, dtype=F64)
    out = layer(x)
    assert torch.isfinite(out).sum() >= 10, "degenerate case: too few spikes"
    (g,) = torch.autograd.grad(spike_weighted_loss(out), out)
    return layer, x, out.detach(), g


def _spikes(out: torch.Tensor, b: int, n: int) -> torch.Tensor:
    row = out[b, n]
    return row[torch.isfinite(row)]


@pytest.mark.parametrize("recurrent", [False, True])
def test_voltage_reaches_threshold_and_drops_by_theta(recurrent: bool) -> None:
    layer, x, out, _ = _setup(recurrent)
    theta = layer.params.threshold
    for b in range(out.shape[0]):
        for n in range(out.shape[1]):
            t = _spikes(out, b, n)
            if t.numel() == 0:
                continue
            v_left, i_left = voltage_traces(layer, x[b : b + 1], t, out_times=out[b : b + 1], side="left")
            v_right, i_right = voltage_traces(layer, x[b : b + 1], t, out_times=out[b : b + 1], side="right")
            assert torch.allclose(v_left[0, n], torch.full_like(t, theta), rtol=0, atol=1e-11)
            assert torch.allclose(v_left[0, n] - v_right[0, n], torch.full_like(t, theta), rtol=0, atol=1e-12)
            if not recurrent:  # a spike changes no current in a feed-forward layer
                assert torch.equal(i_left[0, n], i_right[0, n])


def test_voltage_continuous_at_inputs_and_current_jumps_by_weight() -> None:
    layer, x, out, _ = _setup(False)
    w = layer.weight.detach()
    for b in range(x.shape[0]):
        for i in range(x.shape[1]):
            t = x[b, i][torch.isfinite(x[b, i])]
            v_l, i_l = voltage_traces(layer, x[b : b + 1], t, out_times=out[b : b + 1], side="left")
            v_r, i_r = voltage_traces(layer, x[b : b + 1], t, out_times=out[b : b + 1], side="right")
            assert torch.allclose(v_r, v_l, rtol=0, atol=1e-12)
            jump = (i_r - i_l)[0]  # (N, spikes of input i)
            assert torch.allclose(jump, w[:, i : i + 1].expand_as(jump), rtol=0, atol=1e-12)


@pytest.mark.parametrize("recurrent", [False, True])
def test_voltage_obeys_the_ode_and_stays_below_threshold(recurrent: bool) -> None:
    layer, x, out, _ = _setup(recurrent)
    p = layer.params
    grid = torch.linspace(0.0, 60.0, 6001, dtype=F64)
    v, i = voltage_traces(layer, x, grid, out_times=out)
    assert v.shape == i.shape == (2, 4, 6001)
    assert float(v.max()) <= p.threshold + 1e-12  # every crossing is one of the layer's spikes
    # tau_mem dV/dt = I - V and tau_syn dI/dt = -I, away from events (central differences).
    events = torch.cat([x.reshape(2, -1), out.reshape(2, -1)], dim=1)
    dt = float(grid[1] - grid[0])
    mid = grid[1:-1]
    near = ((mid[None, :, None] - events[:, None, :]).abs() <= 1.5 * dt).any(-1)[:, None, :]  # (B, 1, G-2)
    dv = (v[..., 2:] - v[..., :-2]) / (2 * dt)
    di = (i[..., 2:] - i[..., :-2]) / (2 * dt)
    res_v = torch.where(near, 0.0, p.tau_mem * dv - (i[..., 1:-1] - v[..., 1:-1]))
    res_i = torch.where(near, 0.0, p.tau_syn * di + i[..., 1:-1])
    assert float(res_v.abs().max()) < 1e-4
    assert float(res_i.abs().max()) < 1e-4
    assert int((~near).sum()) > 1000


@pytest.mark.parametrize("recurrent", [False, True])
def test_adjoint_jumps_and_continuity(recurrent: bool) -> None:
    layer, x, out, g = _setup(recurrent)
    p = layer.params
    r = layer.recurrent_weight.detach() * (1 - torch.eye(4, dtype=F64)) if recurrent else torch.zeros(4, 4, dtype=F64)
    tr = adjoint_traces(layer, x, [0.0], g, out_times=out)
    assert torch.isfinite(tr.jumps).all()
    checked = 0
    for b in range(out.shape[0]):
        for n in range(out.shape[1]):
            t = _spikes(out, b, n)
            if t.numel() == 0:
                continue
            left = adjoint_traces(layer, x[b : b + 1], t, g[b : b + 1], out_times=out[b : b + 1], side="left")
            right = adjoint_traces(layer, x[b : b + 1], t, g[b : b + 1], out_times=out[b : b + 1], side="right")
            jump = left.lambda_v[0, n] - right.lambda_v[0, n]
            assert torch.allclose(jump, tr.jumps[b, n, : t.numel()], rtol=1e-12, atol=1e-12)
            assert torch.allclose(left.lambda_i, right.lambda_i, rtol=1e-12, atol=1e-12)  # lambda_I continuous
            # J_k from the paper's jump condition, with I(t_k^-) from the state traces.
            _, i_left = voltage_traces(layer, x[b : b + 1], t, out_times=out[b : b + 1], side="left")
            lv, li = right.lambda_v[0], right.lambda_i[0]  # (N, spikes) just after t_k
            sent = ((lv - li) * r[:, n : n + 1]).sum(0)
            expected = (p.threshold * lv[n] + sent + g[b, n, : t.numel()]) / (i_left[0, n] - p.threshold)
            assert torch.allclose(jump, expected, rtol=1e-10, atol=1e-12)
            checked += t.numel()
    assert checked >= 10


def test_adjoint_obeys_the_reverse_ode() -> None:
    layer, x, out, g = _setup(False)
    p = layer.params
    grid = torch.linspace(0.0, 60.0, 6001, dtype=F64)
    tr = adjoint_traces(layer, x, grid, g, out_times=out)
    dt = float(grid[1] - grid[0])
    near = ((grid[1:-1, None] - out.reshape(-1)[None, :]).abs() <= 1.5 * dt).any(-1)
    lv, li = tr.lambda_v, tr.lambda_i
    dlv = (lv[..., 2:] - lv[..., :-2]) / (2 * dt)
    dli = (li[..., 2:] - li[..., :-2]) / (2 * dt)
    # Table 2 in forward time: tau_mem dlambda_V/dt = lambda_V, tau_syn dlambda_I/dt = lambda_I - lambda_V.
    res_v = torch.where(near, 0.0, p.tau_mem * dlv - lv[..., 1:-1])
    res_i = torch.where(near, 0.0, p.tau_syn * dli - (li[..., 1:-1] - lv[..., 1:-1]))
    scale = float(lv.abs().max())
    assert scale > 0
    assert float(res_v.abs().max()) < 1e-4 * scale
    assert float(res_i.abs().max()) < 1e-4 * scale
    last = float(out[torch.isfinite(out)].max())
    assert float(lv[..., grid > last].abs().max()) == 0.0  # lambda(T) = 0 after the last spike


@pytest.mark.parametrize("recurrent", [False, True])
def test_accumulated_gradient_at_zero_equals_autograd(recurrent: bool) -> None:
    layer, x, out, g = _setup(recurrent)
    layer.zero_grad()
    spike_weighted_loss(layer(x)).backward()
    pairs = [(j, i) for j in range(4) for i in range(6)]
    rec_pairs = [(m, n) for m in range(4) for n in range(4) if m != n] if recurrent else []
    grid = torch.tensor([0.0, 10.0, 20.0, 1e3], dtype=F64)
    tr = adjoint_traces(layer, x, grid, g, out_times=out, weights=pairs, recurrent_weights=rec_pairs)
    assert tr.weight_grad.shape == (2, len(pairs), 4)
    acc = tr.weight_grad[:, :, 0].sum(0).reshape(4, 6)
    expected = layer.weight.grad
    assert float((acc - expected).abs().max()) <= 1e-10 * float(expected.abs().max())
    assert float(tr.weight_grad[..., -1].abs().max()) == 0.0  # nothing accumulated after the last event
    if recurrent:
        acc_r = torch.zeros(4, 4, dtype=F64)
        for q, (m, n) in enumerate(rec_pairs):
            acc_r[m, n] = tr.recurrent_grad[:, q, 0].sum()
        expected_r = layer.recurrent_weight.grad
        assert float((acc_r - expected_r).abs().max()) <= 1e-10 * float(expected_r.abs().max())


def test_accumulated_gradient_steps_only_at_the_inputs_spikes() -> None:
    layer, x, out, g = _setup(False)
    grid = torch.linspace(0.0, 60.0, 601, dtype=F64)
    tr = adjoint_traces(layer, x, grid, g, out_times=out, weights=[(1, 2)])
    acc = tr.weight_grad[0, 0]
    spikes = x[0, 2][torch.isfinite(x[0, 2])]
    lo, hi = grid[:-1], grid[1:]
    has_spike = ((spikes[None, :] > lo[:, None]) & (spikes[None, :] <= hi[:, None])).any(-1)
    changed = acc[1:] != acc[:-1]
    assert not bool((changed & ~has_spike).any())


def test_bad_arguments_raise() -> None:
    layer, x, out, g = _setup(False)
    with pytest.raises(ValueError, match="grad_out"):
        adjoint_traces(layer, x, [0.0], g[..., :1], out_times=out)
    with pytest.raises(ValueError, match="side"):
        voltage_traces(layer, x, [0.0], side="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="grid"):
        voltage_traces(layer, x, [[0.0]])
    with pytest.raises(ValueError, match="recurrent"):
        adjoint_traces(layer, x, [0.0], g, out_times=out, recurrent_weights=[(0, 1)])
