"""Engine contract, gradients: EventProp of every registered engine against central finite differences in float64 (relative error <= 1e-6)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from eventprop import LIFLayer, lif_layer
from helpers import F64, FEEDFORWARD_ENGINES, RECURRENT_ENGINES, central_differences, random_inputs, record, relative_error, spike_weighted_loss

TOL = 1e-6


def _check(model: nn.Module, times: torch.Tensor, min_spikes: int = 3) -> dict[str, float]:
    times = times.clone().requires_grad_(True)
    out = model(times)
    assert torch.isfinite(out).sum() >= min_spikes, "degenerate case: too few output spikes"
    loss = spike_weighted_loss(out)
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(loss, [times, *params.values()])
    numeric = central_differences(lambda: spike_weighted_loss(model(times.detach())), [times, *params.values()])
    errors = {}
    for name, g, n in zip(["input_times", *params], grads, numeric):
        errors[name] = relative_error(g, n)
        record("gradient vs finite differences (relative)", errors[name])
        assert n.abs().max() > 0, f"{name}: gradient is identically zero, the test would be vacuous"
        assert errors[name] <= TOL, f"{name}: relative error {errors[name]:.3e}"
    return errors


def _layer(n_in: int, n_out: int, mean: float, std: float, tau_mem: float = 20.0, tau_syn: float = 5.0, **kw) -> LIFLayer:
    return LIFLayer(n_in, n_out, tau_mem=tau_mem, tau_syn=tau_syn, init_mean=mean, init_std=std, dtype=F64, **kw)


@pytest.mark.parametrize("engine", FEEDFORWARD_ENGINES)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("tau_mem,tau_syn,scale", [(20.0, 5.0, 1.0), (10.0, 10.0, 0.45), (5.0, 8.0, 0.35)])
def test_two_layer_network(seed: int, tau_mem: float, tau_syn: float, scale: float, engine: str) -> None:
    """``scale`` compensates the PSP peak of each time-constant pair (0.16, 0.37, 0.46)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(
        _layer(5, 8, 1.2 * scale, 0.8 * scale, tau_mem, tau_syn, engine=engine),
        _layer(8, 3, 1.0 * scale, 0.6 * scale, tau_mem, tau_syn, engine=engine),
    )
    _check(model, random_inputs(2, 5, 2, 20.0, gen))


@pytest.mark.parametrize("engine", FEEDFORWARD_ENGINES)
def test_three_layer_network(engine: str) -> None:
    torch.manual_seed(3)
    gen = torch.Generator().manual_seed(3)
    model = nn.Sequential(
        _layer(4, 6, 1.5, 0.7, engine=engine),
        _layer(6, 5, 1.4, 0.6, 15.0, 5.0, engine=engine),
        _layer(5, 2, 1.6, 0.5, 10.0, 4.0, engine=engine),
    )
    _check(model, random_inputs(2, 4, 2, 15.0, gen))


@pytest.mark.parametrize("engine", RECURRENT_ENGINES)
@pytest.mark.parametrize("seed", [0, 1])
def test_recurrent_network(seed: int, engine: str) -> None:
    torch.manual_seed(10 + seed)
    gen = torch.Generator().manual_seed(seed)
    rec = _layer(4, 5, 1.6, 0.7, recurrent=True, recurrent_init_mean=0.2, recurrent_init_std=0.6, max_spikes=100, engine=engine)
    model = nn.Sequential(rec, _layer(5, 2, 1.6, 0.5))
    errors = _check(model, random_inputs(2, 4, 2, 20.0, gen))
    assert "0.recurrent_weight" in errors


@pytest.mark.parametrize("engine", FEEDFORWARD_ENGINES)
def test_multi_spike_regime(engine: str) -> None:
    """Several spikes per neuron; the loss weighs every spike, not only the first."""
    torch.manual_seed(7)
    gen = torch.Generator().manual_seed(7)
    model = nn.Sequential(_layer(3, 4, 3.0, 1.0, engine=engine), _layer(4, 2, 1.5, 0.5, engine=engine))
    times = random_inputs(2, 3, 3, 10.0, gen, p_missing=0.0)
    out = model(times)
    assert (torch.isfinite(out).sum(-1) >= 3).any(), "want several spikes per output neuron"
    _check(model, times)


@pytest.mark.parametrize("engine", RECURRENT_ENGINES)
def test_equal_taus_recurrent_multispike(engine: str) -> None:
    torch.manual_seed(11)
    gen = torch.Generator().manual_seed(11)
    model = _layer(3, 4, 1.2, 0.4, 10.0, 10.0, recurrent=True, recurrent_init_std=0.5, max_spikes=100, engine=engine)
    _check(model, random_inputs(1, 3, 3, 10.0, gen, p_missing=0.0), min_spikes=6)


def _finite_outputs(fn):
    """Wrap a layer so gradcheck sees finite outputs only (padding mapped to 0, no gradient)."""

    def wrapped(*args: torch.Tensor) -> torch.Tensor:
        out = fn(*args)
        return torch.where(torch.isfinite(out), out, torch.zeros_like(out))

    return wrapped


def _nondet(engine: str) -> float:
    """gradcheck's tolerance for run-to-run differences: the CUDA engine sums atomically
    (the order, hence the last bits, may change between runs); the others are deterministic."""
    return 1e-12 if engine == "cuda" else 0.0


@pytest.mark.parametrize("engine", FEEDFORWARD_ENGINES)
def test_torch_gradcheck_feedforward(engine: str) -> None:
    times = torch.tensor([[[1.0, 4.0], [2.0, 7.0], [0.5, 3.0]]], dtype=F64, requires_grad=True)
    weight = torch.tensor([[2.0, 1.5, 1.0], [1.2, 2.5, 0.8]], dtype=F64, requires_grad=True)
    fn = _finite_outputs(lambda t, w: lif_layer(t, w, tau_mem=10.0, tau_syn=5.0, engine=engine))
    assert torch.isfinite(lif_layer(times, weight, tau_mem=10.0, tau_syn=5.0)).sum() >= 3
    assert torch.autograd.gradcheck(fn, (times, weight), eps=1e-6, atol=1e-7, rtol=1e-6, nondet_tol=_nondet(engine))


@pytest.mark.parametrize("engine", RECURRENT_ENGINES)
def test_torch_gradcheck_recurrent(engine: str) -> None:
    times = torch.tensor([[[1.0, 4.0], [2.0, 7.0]]], dtype=F64, requires_grad=True)
    weight = torch.tensor([[2.5, 1.5], [1.2, 2.0], [0.5, 0.4]], dtype=F64, requires_grad=True)
    rec = torch.tensor([[0.0, 0.3, -0.2], [0.4, 0.0, 0.1], [1.5, 1.2, 0.0]], dtype=F64, requires_grad=True)
    fn = _finite_outputs(lambda t, w, r: lif_layer(t, w, r, tau_mem=10.0, tau_syn=5.0, engine=engine))
    out = lif_layer(times, weight, rec, tau_mem=10.0, tau_syn=5.0, engine=engine)
    assert math.isfinite(out[0, 2, 0].item())  # neuron 2 fires only through recurrence
    assert torch.autograd.gradcheck(fn, (times, weight, rec), eps=1e-6, atol=1e-7, rtol=1e-6, nondet_tol=_nondet(engine))


def test_recurrent_diagonal_stays_zero_through_training() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    layer = _layer(3, 4, 1.5, 0.5, recurrent=True, recurrent_init_std=0.5, max_spikes=100)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    times = random_inputs(4, 3, 2, 10.0, gen)
    for _ in range(5):
        opt.zero_grad()
        spike_weighted_loss(layer(times)).backward()
        assert layer.recurrent_weight.grad.diagonal().abs().max() == 0
        opt.step()
    assert layer.recurrent_weight.diagonal().abs().max() == 0
    assert layer.recurrent_weight.grad.abs().sum() > 0


def test_float32_gradients_close_to_float64() -> None:
    torch.manual_seed(2)
    gen = torch.Generator().manual_seed(2)
    model = nn.Sequential(_layer(5, 8, 1.2, 0.8), _layer(8, 3, 1.0, 0.6))
    times = random_inputs(3, 5, 2, 20.0, gen)
    spike_weighted_loss(model(times)).backward()
    g64 = [p.grad.clone() for p in model.parameters()]
    model32 = model.float()
    model32.zero_grad()
    spike_weighted_loss(model32(times.float())).backward()
    for a, b in zip(model32.parameters(), g64):
        assert a.grad.dtype == torch.float32
        assert relative_error(a.grad.double(), b) < 1e-3
