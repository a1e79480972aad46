"""Learnable time constants, thresholds and axonal delays: forward against the reference, gradients against finite differences."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from eventprop import LIFLayer, lif_layer
from eventprop.engines import LayerKind, get_engine, LayerSpec
from eventprop.model.neuron import NeuronParams, psp_kernel
from eventprop.model.sensitivity import psi, psi_derivative, psp_kernel_rate_derivatives
from helpers import (
    CONNECTION_ENGINES,
    F64,
    FEEDFORWARD_ENGINES,
    RECURRENT_ENGINES,
    assert_gradients_match,
    random_inputs,
    record,
    relative_error,
    spike_weighted_loss,
    to_lists,
)
from reference import simulate

TOL = 1e-6
TAUS = [(20.0, 5.0), (5.0, 8.0), (7.0, 7.0)]
LAYERS = [(False, e) for e in FEEDFORWARD_ENGINES] + [(True, e) for e in RECURRENT_ENGINES]


# --- the kernel's derivatives -------------------------------------------------------------
@pytest.mark.parametrize("tau_mem,tau_syn", [(20.0, 5.0), (5.0, 20.0), (7.0, 7.0), (7.0, 7.0 + 1e-9), (3.0, 3000.0)])
def test_kernel_rate_derivatives_match_differences_of_the_kernel(tau_mem: float, tau_syn: float) -> None:
    s = torch.tensor([0.0, 1e-3, 0.3, 2.0, 11.0, 60.0], dtype=F64)
    a, b = 1 / tau_mem, 1 / tau_syn
    dka, dkb = psp_kernel_rate_derivatives(s, NeuronParams(tau_mem, tau_syn))
    for got, bump in ((dka, lambda h: NeuronParams(1 / (a + h), tau_syn)), (dkb, lambda h: NeuronParams(tau_mem, 1 / (b + h)))):
        h = 1e-6 * max(a, b)
        g1 = (psp_kernel(s, bump(h)) - psp_kernel(s, bump(-h))) / (2 * h)
        g2 = (psp_kernel(s, bump(h / 2)) - psp_kernel(s, bump(-h / 2))) / h
        numeric = (4 * g2 - g1) / 3  # Richardson
        error = relative_error(got, numeric)
        record("dK/d(rate) vs finite differences (relative)", error)
        assert error <= 1e-7, error


def test_psi_series_meets_the_direct_formula() -> None:
    x = torch.tensor([0.0, 1e-8, 0.1, 0.4999999, 0.5, 0.7, 3.0, 50.0], dtype=F64)
    expected_psi = torch.tensor([1.0] + [-math.expm1(-v) / v for v in x.tolist()[1:]], dtype=F64)
    torch.testing.assert_close(psi(x), expected_psi, rtol=1e-15, atol=0)
    d = psi_derivative(x)
    assert d[0] == -0.5
    direct = [(math.exp(-v) * (1 + v) - 1) / v**2 for v in x.tolist()[2:]]
    torch.testing.assert_close(d[2:], torch.tensor(direct, dtype=F64), rtol=1e-13, atol=0)  # cancellation at 0.1: ~1e-15
    assert abs(d[1].item() + 0.5) < 1e-8


# --- forward ------------------------------------------------------------------------------
def _reference(times, weight, rec=None, **kw):
    return [simulate(s, weight.tolist(), w_rec=None if rec is None else rec.tolist(), **kw) for s in to_lists(times)]


def _compare(out: torch.Tensor, expected) -> None:
    worst = 0.0
    for b, (got_b, exp_b) in enumerate(zip(to_lists(out), expected)):
        for n, (g, e) in enumerate(zip(got_b, exp_b)):
            assert len(g) == len(e), f"sample {b} neuron {n}: {g} vs {e}"
            worst = max([worst, *(abs(x - y) for x, y in zip(g, e))])
    record("forward spike time vs reference (absolute, ms)", worst)
    assert worst <= 1e-9, worst


@pytest.mark.parametrize("recurrent,engine", LAYERS)
@pytest.mark.parametrize("tau_mem,tau_syn", TAUS)
def test_thresholds_and_delays_match_the_reference(recurrent: bool, engine: str, tau_mem: float, tau_syn: float) -> None:
    gen = torch.Generator().manual_seed(4)
    times = random_inputs(3, 6, 3, 25.0, gen)
    weight = (torch.rand(5, 6, generator=gen, dtype=F64) * 2.0 - 0.3) * 1.2
    rec = (torch.rand(5, 5, generator=gen, dtype=F64) - 0.5) * 0.8 if recurrent else None
    if rec is not None:
        rec.fill_diagonal_(0.0)
    threshold = torch.tensor([0.6, 1.0, 1.3, 0.9, 2.0], dtype=F64)
    delay = torch.rand(6, generator=gen, dtype=F64) * 8.0
    out = lif_layer(times, weight, rec, tau_mem=tau_mem, tau_syn=tau_syn, threshold=threshold, delay=delay, engine=engine)
    expected = _reference(
        times, weight, rec, tau_mem=tau_mem, tau_syn=tau_syn, threshold=threshold.tolist(), delays=delay.tolist()
    )
    assert sum(len(n) for s in expected for n in s) > 10
    _compare(out, expected)


def test_a_tensor_constant_with_the_float_value_changes_nothing() -> None:
    gen = torch.Generator().manual_seed(1)
    times = random_inputs(3, 6, 3, 25.0, gen)
    weight = torch.rand(4, 6, generator=gen, dtype=F64) * 2.0
    plain = lif_layer(times, weight, tau_mem=20.0, tau_syn=5.0)
    tensors = lif_layer(
        times, weight, tau_mem=torch.tensor(20.0, dtype=F64), tau_syn=torch.full((4,), 5.0, dtype=F64),
        threshold=torch.tensor(1.0, dtype=F64), delay=torch.zeros(6, dtype=F64),
    )  # fmt: skip
    assert torch.isfinite(plain).sum() > 5
    torch.testing.assert_close(tensors, plain, rtol=0, atol=1e-12)


# --- gradients ----------------------------------------------------------------------------
def _layer(n_in: int, n_out: int, mean: float, std: float, tau: tuple[float, float], **kw) -> LIFLayer:
    return LIFLayer(
        n_in, n_out, tau_mem=tau[0], tau_syn=tau[1], init_mean=mean, init_std=std, learn_tau=True, learn_threshold=True,
        delays="axon", init_delay=4.0, dtype=F64, **kw,
    )  # fmt: skip


def _check(model: nn.Module, times: torch.Tensor, min_spikes: int = 4) -> dict[str, float]:
    out = model(times)
    assert torch.isfinite(out).sum() >= min_spikes, "degenerate case: too few output spikes"
    assert torch.isfinite(model[0](times)).sum(-1).max() >= 2, "no neuron of the first layer fires twice"
    params = dict(model.named_parameters())
    names = [n for n in params if not n.endswith("weight")]
    return assert_gradients_match(
        lambda: spike_weighted_loss(model(times)), [params[n] for n in names], names,
        "learned constants and delays vs finite differences (relative)", TOL, richardson=True, per_name=True,
    )  # fmt: skip


# every ratio on the first (compiled) engine; the others, slow under finite differences, on the first ratio
@pytest.mark.parametrize(
    "engine,tau", [(FEEDFORWARD_ENGINES[0], tau) for tau in TAUS] + [(e, TAUS[0]) for e in FEEDFORWARD_ENGINES[1:]]
)
def test_deep_feedforward_gradients(engine: str, tau: tuple[float, float]) -> None:
    scale = {20.0: 1.0, 5.0: 0.35, 7.0: 0.4}[tau[0]]
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(
        _layer(5, 7, 1.6 * scale, 0.8 * scale, tau, engine=engine),
        _layer(7, 5, 1.2 * scale, 0.6 * scale, (tau[0] * 0.7, tau[1] * 1.2), engine=engine),
        _layer(5, 3, 1.3 * scale, 0.5 * scale, tau, engine=engine),
    )
    _check(model, random_inputs(2, 5, 3, 20.0, gen))


# the CUDA engine (in numba's simulator, each GPU thread a Python thread) at one tau ratio
@pytest.mark.parametrize("engine,tau", [(e, t) for e in RECURRENT_ENGINES for t in (TAUS[:1] if e == "cuda" else TAUS)])
def test_recurrent_gradients(engine: str, tau: tuple[float, float]) -> None:
    scale = {20.0: 1.0, 5.0: 0.35, 7.0: 0.4}[tau[0]]
    torch.manual_seed(1)
    gen = torch.Generator().manual_seed(1)
    model = nn.Sequential(
        _layer(4, 6, 1.5 * scale, 0.7 * scale, tau, recurrent=True, recurrent_init_std=0.4 * scale, engine=engine),
        _layer(6, 3, 1.2 * scale, 0.5 * scale, tau, engine=engine),
    )
    _check(model, random_inputs(2, 4, 3, 20.0, gen))


@pytest.mark.parametrize("recurrent,engine", LAYERS)
def test_functional_gradients_per_neuron_and_shared(recurrent: bool, engine: str) -> None:
    # tau tensors of shape (), per-neuron thresholds, axonal delays; a tau of shape (N,) with equal entries gets
    # one gradient per neuron, which add up to the shared one
    gen = torch.Generator().manual_seed(2)
    times = random_inputs(2, 5, 3, 20.0, gen)
    weight = (torch.rand(4, 5, generator=gen, dtype=F64) * 2.0) * 1.2
    rec = ((torch.rand(4, 4, generator=gen, dtype=F64) - 0.5) * 0.6).requires_grad_() if recurrent else None
    tau_mem = torch.tensor(15.0, dtype=F64, requires_grad=True)
    tau_syn = torch.tensor(6.0, dtype=F64, requires_grad=True)
    threshold = torch.tensor([0.8, 1.0, 1.2, 0.9], dtype=F64, requires_grad=True)
    delay = (torch.rand(5, generator=gen, dtype=F64) * 5).requires_grad_()
    weight.requires_grad_()
    times.requires_grad_()

    def loss() -> torch.Tensor:
        out = lif_layer(times, weight, rec, tau_mem=tau_mem, tau_syn=tau_syn, threshold=threshold, delay=delay, engine=engine)
        return spike_weighted_loss(out)

    tensors = [times, weight, tau_mem, tau_syn, threshold, delay] + ([rec] if recurrent else [])
    names = ["times", "weight", "tau_mem", "tau_syn", "threshold", "delay"] + (["recurrent_weight"] if recurrent else [])
    kind = "learned constants and delays vs finite differences (relative)"
    errors = assert_gradients_match(loss, tensors, names, kind, TOL, richardson=True, per_name=True)
    assert set(errors) == set(names)
    shared = torch.autograd.grad(loss(), [tau_syn])[0]
    tau_syn = torch.full((4,), 6.0, dtype=F64, requires_grad=True)  # per neuron: the synapse-list engines
    if engine not in CONNECTION_ENGINES:
        with pytest.raises(ValueError, match="tau_syn per neuron runs as a synapse list"):
            loss()
        return
    per_neuron = torch.autograd.grad(loss(), [tau_syn])[0]
    assert per_neuron.shape == (4,) and int((per_neuron != 0).sum()) >= 2
    torch.testing.assert_close(per_neuron.sum(), shared, rtol=1e-10, atol=0)


@pytest.mark.parametrize("recurrent", [False, True])
def test_engines_agree_on_the_adjoint_jumps(recurrent: bool) -> None:
    gen = torch.Generator().manual_seed(5)
    times = random_inputs(3, 5, 3, 20.0, gen)
    weight = torch.rand(4, 5, generator=gen, dtype=F64) * 2.0
    rec = (torch.rand(4, 4, generator=gen, dtype=F64) - 0.5) * 0.5 if recurrent else None
    if rec is not None:
        rec.fill_diagonal_(0.0)
    kind = LayerKind.RECURRENT if recurrent else LayerKind.FEEDFORWARD
    spec = LayerSpec(NeuronParams(20.0, 5.0), math.inf, None)
    jumps = []
    for name in RECURRENT_ENGINES if recurrent else FEEDFORWARD_ENGINES:
        engine = get_engine(name)
        out, saved = engine.simulate(kind, spec, times, weight, rec)
        grad_out = torch.linspace(-1, 1, out.numel(), dtype=F64).reshape(out.shape)
        grads = engine.adjoint(kind, spec, grad_out, saved, times.shape)
        assert grads.jumps.shape == out.shape
        assert bool((grads.jumps[~torch.isfinite(out)] == 0).all())
        jumps.append(grads.jumps)
    assert bool((jumps[0] != 0).any())
    for other in jumps[1:]:
        torch.testing.assert_close(other, jumps[0], rtol=1e-10, atol=1e-12)


# --- the layer's parameters ---------------------------------------------------------------
def test_layer_parameters_domain_and_projection() -> None:
    layer = LIFLayer(3, 2, tau_mem=20.0, tau_syn=5.0, threshold=1.5, learn_tau=True, learn_threshold=True, delays="axon", init_delay=2.0)
    assert set(dict(layer.named_parameters())) == {"weight", "log_tau_mem", "log_tau_syn", "log_threshold", "delay"}
    assert math.isclose(layer.tau_mem.item(), 20.0) and math.isclose(layer.tau_syn.item(), 5.0)
    torch.testing.assert_close(layer.threshold, torch.full((2,), 1.5))
    assert layer.params == NeuronParams(layer.tau_mem.item(), layer.tau_syn.item(), layer.threshold[0].item())
    assert bool(((layer.delay >= 0) & (layer.delay <= 2.0)).all())
    with torch.no_grad():
        layer.delay[0] = -1.0
        layer.log_threshold[1] = 0.0
    with pytest.raises(ValueError, match="one threshold per neuron and they differ"):
        _ = layer.params
    out = layer(torch.zeros(1, 3, 1))  # the forward uses the clamped delay
    assert out.shape[:2] == (1, 2)
    layer.project_()
    assert layer.delay[0].item() == 0.0
    assert "learn=tau+threshold" in repr(layer) and "delays='axon'" in repr(layer)
    plain = LIFLayer(3, 2, tau_mem=20.0, tau_syn=5.0)
    assert set(dict(plain.named_parameters())) == {"weight"} and plain.params == NeuronParams(20.0, 5.0, 1.0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"delay": torch.tensor([1.0, -0.5, 0.0])}, "delay must be finite and >= 0"),
        ({"delay": torch.tensor([1.0, math.nan, 0.0])}, "delay must be finite and >= 0"),
        ({"delay": torch.tensor([1.0, math.inf, 0.0])}, "delay must be finite and >= 0"),
        ({"delay": torch.zeros(4)}, r"delay must be a floating-point tensor of shape \(in_features,\) = \(3,\) or"),
        ({"delay": [0.0, 0.0, 0.0]}, "delay must be a floating-point tensor"),
        ({"delay": torch.tensor([0, 1, 2])}, "delay must be a floating-point tensor .* got a torch.int64 tensor"),
        ({"tau_mem": torch.tensor(-1.0)}, "tau_mem must be finite and positive"),
        ({"tau_syn": torch.tensor([5.0, math.nan])}, "tau_syn must be finite and positive"),
        ({"tau_mem": torch.zeros(3) + 1}, r"tau_mem must be a number or a tensor of shape \(\) or \(out_features,\)"),
        ({"threshold": torch.tensor([1.0, 0.0])}, "threshold must be finite and positive"),
        ({"threshold": torch.ones(2, 1)}, "threshold must be a number or a tensor"),
        ({"threshold": torch.tensor([1, 2])}, "threshold must be a real number or a floating-point tensor"),
    ],
)
def test_bad_constants_and_delays(kwargs: dict, match: str) -> None:
    args = {"tau_mem": 20.0, "tau_syn": 5.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        lif_layer(torch.zeros(1, 3, 1), torch.ones(2, 3), **args)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"delays": "dendrite"}, "delays must be one of"),
        ({"learn_tau": 1}, "learn_tau must be one of"),
        ({"learn_tau": "synapse"}, "learn_tau must be one of"),
        ({"learn_threshold": "yes"}, "learn_threshold must be True or False"),
        ({"delays": "axon", "init_delay": -1.0}, "init_delay"),
        ({"init_delay": 2.0}, "init_delay is set but delays is None"),
        ({"mask": torch.ones(2, 3)}, r"mask must be a bool tensor of shape \(out_features, in_features\) = \(2, 3\), got a torch.float32"),
    ],
)
def test_bad_layer_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LIFLayer(3, 2, tau_mem=20.0, tau_syn=5.0, **kwargs)


# --- the trainer ----------------------------------------------------------------------------
@pytest.mark.parametrize("learned", [{"learn_tau": "layer", "delays": "axon"}, {"learn_tau": "neuron", "learn_threshold": True, "delays": "synapse"}])
def test_training_learns_saves_and_reloads_the_new_parameters(tmp_path, learned: dict) -> None:
    from eventprop.training import load_model, preset_config, train

    config = preset_config("best", epochs=1, train_size=32, val_size=16, hidden=(6,), batch_size=16, init_delay=2.0, **learned)
    train(config, tmp_path, progress=False, log=lambda s: None)
    model, loaded = load_model(tmp_path / "best.pt")
    hidden = model[0]
    assert loaded.learn_tau == learned["learn_tau"] and loaded.delays == learned["delays"]
    assert hidden.learn_tau == learned["learn_tau"] and hidden.delays == learned["delays"]
    assert hidden.log_tau_mem.shape == ((6,) if learned["learn_tau"] == "neuron" else ())
    assert bool((hidden.delay >= 0).all())  # projected after every step
    initial = LIFLayer(5, 6, tau_mem=20.0, tau_syn=5.0, learn_tau=learned["learn_tau"])
    assert not torch.equal(hidden.log_tau_mem, initial.log_tau_mem.to(hidden.log_tau_mem.dtype))  # it learned


def test_trainer_refuses_bad_learning_options() -> None:
    from eventprop.training import preset_config

    with pytest.raises(ValueError, match="init_delay is set but delays is 'none'"):
        preset_config("best", init_delay=1.0).validate()
    with pytest.raises(ValueError, match="learn_tau must be 'off', 'layer' or 'neuron'"):
        preset_config("best", learn_tau=True).validate()


@pytest.mark.parametrize("kwargs", [{"delays": "axon"}, {"delays": "synapse"}, {"mask": torch.ones(2, 3, dtype=torch.bool)}])
def test_trace_tools_refuse_what_they_do_not_model(kwargs: dict) -> None:
    from eventprop.inspection.traces import voltage_traces

    layer = LIFLayer(3, 2, tau_mem=20.0, tau_syn=5.0, **kwargs)
    with pytest.raises(ValueError, match="traces do not support LIF layers with"):
        voltage_traces(layer, torch.zeros(1, 3, 1), [1.0])


@pytest.mark.parametrize("tau_mem,tau_syn", [(20.0, 5.0), (5.0, 20.0), (7.0, 7.0), (7.0, 7.0 + 1e-9), (3.0, 3000.0)])
def test_compiled_kernel_derivatives_equal_the_model(tau_mem: float, tau_syn: float) -> None:
    from eventprop.engines.numba_cpu.time_constants import _kernel_derivatives

    s = torch.tensor([0.0, 1e-9, 1e-3, 0.3, 2.0, 11.0, 60.0, 900.0], dtype=F64)
    dka, dkb = psp_kernel_rate_derivatives(s, NeuronParams(tau_mem, tau_syn))
    got = torch.tensor([_kernel_derivatives(u, 1 / tau_mem, 1 / tau_syn) for u in s.tolist()], dtype=F64)
    torch.testing.assert_close(got[:, 0], dka, rtol=1e-13, atol=1e-300)
    torch.testing.assert_close(got[:, 1], dkb, rtol=1e-13, atol=1e-300)


def test_delays_do_not_change_the_initial_weights() -> None:
    torch.manual_seed(3)
    plain = LIFLayer(4, 3, tau_mem=20.0, tau_syn=5.0, recurrent=True)
    torch.manual_seed(3)
    delayed = LIFLayer(4, 3, tau_mem=20.0, tau_syn=5.0, recurrent=True, delays="synapse", init_delay=2.0)
    assert torch.equal(plain.weight, delayed.weight) and torch.equal(plain.recurrent_weight, delayed.recurrent_weight)
    assert delayed.recurrent_delay.shape == (3, 3) and bool((delayed.recurrent_delay <= 2.0).all())
