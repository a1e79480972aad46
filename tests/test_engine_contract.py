"""The engine contract: registry behaviour, and what every registered engine must do.

Parametrised over the registry (``helpers.engines_for``): an engine registered in
:mod:`eventprop.engines` is tested here, in ``test_forward.py`` (spike times against the
reference simulator, horizon, coincident spikes, spike cap, float32) and in
``test_gradients.py`` (finite differences, ``gradcheck``) for every layer kind it
declares. This file adds bad input, dtypes, the saved-tensor contract and the
trajectory kind (voltages against the reference, gradients against finite differences).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import reference
from eventprop import LIFLayer, LIReadout, SpikeLimitError, lif_layer, lif_trajectory, max_voltage_cross_entropy, readout_trajectory
from eventprop.engines import Engine, LayerKind, engine_names, get_engine, register_engine, select_engine
from eventprop.engines.numba_cpu import NumbaEngine
from eventprop.engines.pytorch import TorchEngine
from helpers import (
    F64,
    FEEDFORWARD_ENGINES,
    RECURRENT_ENGINES,
    TRAJECTORY_ENGINES,
    assert_gradients_match,
    random_inputs,
    record,
    skip_if_simulated,
    to_lists,
)

CPU = torch.device("cpu")
SPIKING = [(False, e) for e in FEEDFORWARD_ENGINES] + [(True, e) for e in RECURRENT_ENGINES]


def test_registry_names_the_engines_and_auto_prefers_the_compiled_one() -> None:
    assert set(engine_names()) >= {"torch", "numba"}
    assert isinstance(get_engine("torch"), TorchEngine) and isinstance(get_engine("numba"), NumbaEngine)
    assert select_engine("auto", LayerKind.FEEDFORWARD, CPU, F64).name == "numba"
    assert select_engine("auto", LayerKind.RECURRENT, CPU, F64).name == "numba"
    assert select_engine("auto", LayerKind.TRAJECTORY, CPU, torch.float32).name == "numba"
    assert select_engine("auto", LayerKind.TRAJECTORY, torch.device("meta"), F64).name == "torch"
    assert select_engine("auto", LayerKind.FEEDFORWARD, torch.device("meta"), F64).name == "torch"  # numba: CPU only


@pytest.mark.parametrize(
    "name,kind,device,dtype,message",
    [
        ("numba", "trajectory", "meta", F64, "engine='numba' cannot serve a trajectory layer on meta in torch.float64: it runs on cpu tensors only, not meta"),
        ("numba", "feedforward", "meta", F64, "runs on cpu tensors only, not meta"),
        ("torch", "feedforward", "cpu", torch.float16, "computes in float32, float64 only, not float16"),
        ("nope", "feedforward", "cpu", F64, "engine must be 'auto' or one of"),
    ],
)
def test_an_engine_that_cannot_serve_raises_naming_it_and_why(name: str, kind: str, device: str, dtype: torch.dtype, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        select_engine(name, LayerKind(kind), torch.device(device), dtype)


def test_an_explicit_engine_that_cannot_serve_raises_instead_of_being_ignored() -> None:
    readout = LIReadout(2, 3, tau_mem=20.0, tau_syn=5.0, window=10.0, engine="numba", dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="engine='numba' cannot serve a trajectory layer on cpu in torch.bfloat16"):
        readout(torch.zeros(1, 2, 1, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="engine must be 'auto' or one of"):
        LIFLayer(2, 3, tau_mem=20.0, tau_syn=5.0, engine="gpu")


def test_register_engine_refuses_duplicates_and_auto() -> None:
    class Auto(TorchEngine):
        name = "auto"

    with pytest.raises(ValueError, match="cannot be registered"):
        register_engine(TorchEngine())
    with pytest.raises(ValueError, match="cannot be registered"):
        register_engine(Auto())
    with pytest.raises(ValueError, match="must be an Engine instance"):
        register_engine("torch")  # type: ignore[arg-type]


def test_an_unavailable_engine_says_so() -> None:
    class Missing(Engine):
        name = "missing"
        kinds = frozenset({LayerKind.FEEDFORWARD})

        def unavailable(self) -> str | None:
            return "it needs the frobnicate package"

    assert Missing().refusal(LayerKind.FEEDFORWARD, CPU, F64) == "it needs the frobnicate package"


def _layer_args(recurrent: bool, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    times = random_inputs(3, 4, 2, 20.0, gen)
    weight = torch.rand(5, 4, generator=gen, dtype=F64) * 2.0
    rec = (torch.rand(5, 5, generator=gen, dtype=F64) - 0.5) if recurrent else None
    return times, weight, rec


@pytest.mark.parametrize("recurrent,engine", SPIKING)
@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda t, w: (t.masked_fill(torch.isfinite(t) & (t < 10), math.nan), w), "times contains NaN"),
        (lambda t, w: (torch.where(torch.isfinite(t), -t, t), w), "negative spike times"),
        (lambda t, w: (t.flip(-1).nan_to_num(posinf=50.0), w), "must ascend"),
        (lambda t, w: (t[:, :3], w), "times has 3 neurons along dim 1, expected 4"),
        (lambda t, w: (t[0], w), "must have shape \\(batch, neurons, max_spikes\\)"),
        (lambda t, w: (t.long(), w), "must be a floating tensor"),
        (lambda t, w: (t, w.float()), "weight has dtype torch.float32 but times has dtype torch.float64"),
        (lambda t, w: (t, w * math.nan), "weight contains NaN or inf"),
    ],
)
def test_bad_input_raises_value_error(recurrent: bool, engine: str, mutate, message: str) -> None:  # noqa: ANN001
    times, weight, rec = _layer_args(recurrent, torch.Generator().manual_seed(1))
    times, weight = mutate(times, weight)
    with pytest.raises(ValueError, match=message):
        lif_layer(times, weight, rec, tau_mem=20.0, tau_syn=5.0, engine=engine)


@pytest.mark.parametrize("engine", RECURRENT_ENGINES)
def test_bad_recurrent_weight_raises_value_error(engine: str) -> None:
    times, weight, rec = _layer_args(True, torch.Generator().manual_seed(2))
    for bad, message in [(rec[:4], r"recurrent_weight must have shape \(5, 5\)"), (rec * math.inf, "recurrent_weight contains NaN or inf")]:
        with pytest.raises(ValueError, match=message):
            lif_layer(times, weight, bad, tau_mem=20.0, tau_syn=5.0, engine=engine)


@pytest.mark.parametrize("recurrent,engine", SPIKING)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_dtypes_an_engine_does_not_declare_are_refused(recurrent: bool, engine: str, dtype: torch.dtype) -> None:
    assert dtype not in get_engine(engine).dtypes
    times, weight, rec = _layer_args(recurrent, torch.Generator().manual_seed(3))
    with pytest.raises(ValueError, match=f"engine='{engine}' cannot serve .* not {str(dtype)[6:]}"):
        lif_layer(times.to(dtype), weight.to(dtype), None if rec is None else rec.to(dtype), tau_mem=20.0, tau_syn=5.0, engine=engine)


@pytest.mark.parametrize("recurrent,engine", SPIKING)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_outputs_follow_the_input_dtype_and_saved_tensors_are_per_event(recurrent: bool, engine: str, dtype: torch.dtype) -> None:
    times, weight, rec = _layer_args(recurrent, torch.Generator().manual_seed(4))
    times, weight = times.to(dtype), weight.to(dtype).requires_grad_(True)
    rec = None if rec is None else rec.to(dtype).requires_grad_(True)
    out = lif_layer(times, weight, rec, tau_mem=20.0, tau_syn=5.0, engine=engine)
    assert out.dtype == dtype and out.device == times.device
    saved = out.grad_fn.saved_tensors
    assert all(isinstance(t, torch.Tensor) for t in saved)
    grads = torch.autograd.grad(torch.where(torch.isfinite(out), out, 0.0).sum(), [weight] + ([rec] if rec is not None else []))
    assert all(g.dtype == dtype and torch.isfinite(g).all() for g in grads)


# The trajectory kind: exact V(t) of readouts and LIF layers.


@pytest.mark.parametrize("engine", TRAJECTORY_ENGINES)
@pytest.mark.parametrize("recurrent", [False, True])
def test_trajectories_match_the_reference(engine: str, recurrent: bool) -> None:
    gen = torch.Generator().manual_seed(5)
    times = random_inputs(2, 4, 2, 20.0, gen)
    torch.manual_seed(5)  # the layers draw their weights from the global generator
    layer = LIFLayer(4, 5, tau_mem=20.0, tau_syn=5.0, recurrent=recurrent, init_mean=1.2, init_std=0.8, dtype=F64)
    spikes = layer(times).detach()
    rec = layer.recurrent_weight
    traj = lif_trajectory(times, spikes, layer.weight.detach(), None if rec is None else rec.detach(), tau_mem=20.0, tau_syn=5.0, window=40.0, engine=engine)
    readout = LIReadout(5, 3, tau_mem=20.0, tau_syn=5.0, window=40.0, engine=engine, dtype=F64)
    ro = readout(spikes)
    grid = torch.linspace(0.0, 40.0, 41, dtype=F64)
    worst = 0.0
    for b in range(2):
        for k, t in enumerate(grid.tolist()):
            w_rec = None if rec is None else rec.tolist()
            ref = reference.voltage(to_lists(times)[b], layer.weight.tolist(), t, tau_mem=20.0, tau_syn=5.0, w_rec=w_rec)
            ref_ro = reference.voltage(to_lists(spikes)[b], readout.weight.tolist(), t, tau_mem=20.0, tau_syn=5.0, threshold=1e300)
            worst = max(worst, max(abs(a - r) for a, r in zip(traj.at(grid)[b, :, k].tolist(), ref)))
            worst = max(worst, max(abs(a - r) for a, r in zip(ro.at(grid)[b, :, k].tolist(), ref_ro)))
    record("voltage trajectory vs reference (absolute)", worst)
    assert worst < 1e-12
    assert torch.isfinite(spikes).sum() >= 3


@pytest.mark.parametrize("engine", TRAJECTORY_ENGINES)
def test_trajectory_gradients_match_finite_differences(engine: str) -> None:
    gen = torch.Generator().manual_seed(6)
    times = random_inputs(2, 3, 2, 20.0, gen).requires_grad_(True)
    weight = (torch.rand(3, 3, generator=gen, dtype=F64) * 2.0).requires_grad_(True)
    labels = torch.tensor([0, 2])

    def loss() -> torch.Tensor:
        traj = readout_trajectory(times, weight, tau_mem=10.0, tau_syn=5.0, window=40.0, engine=engine)
        return max_voltage_cross_entropy(traj, labels, scale=2.0)

    assert_gradients_match(loss, [weight, times], ["weight", "times"], "voltage loss gradient vs finite differences (relative)")


@pytest.mark.parametrize("engine", TRAJECTORY_ENGINES)
def test_trajectory_bad_input_raises(engine: str) -> None:
    times = torch.tensor([[[1.0], [2.0]]], dtype=F64)
    with pytest.raises(ValueError, match="window must be finite and positive"):
        readout_trajectory(times, torch.ones(2, 2, dtype=F64), tau_mem=5.0, tau_syn=5.0, window=math.inf, engine=engine)
    with pytest.raises(ValueError, match="weight contains NaN"):
        readout_trajectory(times, torch.full((2, 2), math.nan, dtype=F64), tau_mem=5.0, tau_syn=5.0, window=9.0, engine=engine)


@pytest.mark.parametrize("recurrent,engine", SPIKING)
def test_a_nan_or_infinite_gradient_at_a_real_spike_is_reported(recurrent: bool, engine: str) -> None:
    times, weight, rec = _layer_args(recurrent, torch.Generator().manual_seed(7))
    weight.requires_grad_(True)
    out = lif_layer(times, weight, rec, tau_mem=20.0, tau_syn=5.0, engine=engine)
    spiked = torch.isfinite(out)
    assert spiked.any() and (~spiked).any()
    nan_at_padding = torch.where(spiked, torch.ones_like(out), torch.full_like(out, math.nan))
    (g,) = torch.autograd.grad(out, weight, grad_outputs=nan_at_padding, retain_graph=True)  # padding is ignored
    assert torch.isfinite(g).all()
    for bad, what in ((math.nan, r"\(\d+ NaN, 0 infinite\)"), (math.inf, r"\(0 NaN, \d+ infinite\)"), (-math.inf, r"\(0 NaN, \d+ infinite\)")):
        bad_at_spike = torch.where(spiked, torch.full_like(out, bad), torch.zeros_like(out))
        with pytest.raises(ValueError, match=r"dL/d\(spike time\) is not finite at \d+ output spike\(s\) of a LIF layer " + what):
            torch.autograd.grad(out, weight, grad_outputs=bad_at_spike, retain_graph=True)


@pytest.mark.parametrize("engine", FEEDFORWARD_ENGINES)
def test_memory_is_linear_in_the_input_events(engine: str) -> None:
    """100,000 input events of one sample: an events x events tensor (80 GB) would not fit."""
    skip_if_simulated(engine, "100,000 input events")
    gen = torch.Generator().manual_seed(8)
    times = (torch.rand(1, 1000, 100, generator=gen, dtype=F64) * 1000.0).sort(dim=-1).values
    weight = (torch.rand(3, 1000, generator=gen, dtype=F64) * 0.02).requires_grad_(True)
    out = lif_layer(times, weight, tau_mem=20.0, tau_syn=5.0, engine=engine)
    assert torch.isfinite(out).sum() > 50
    (g,) = torch.autograd.grad(torch.where(torch.isfinite(out), out, 0.0).sum(), weight)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    reference_engine = FEEDFORWARD_ENGINES[-1]  # every engine agrees with the last (lowest priority) one
    if engine != reference_engine:
        ref = lif_layer(times, weight.detach(), tau_mem=20.0, tau_syn=5.0, engine=reference_engine)
        finite = torch.isfinite(ref)
        assert torch.equal(finite, torch.isfinite(out)) and (out[finite] - ref[finite]).abs().max() < 1e-9


@pytest.mark.parametrize("recurrent,engine", SPIKING)
@pytest.mark.parametrize("t_start", [1e4, 1e6])
def test_float32_long_trials_terminate_with_every_spike_to_the_float32_step(recurrent: bool, engine: str, t_start: float) -> None:
    """Spikes near t = 1e6 ms lie one float32 step (0.0625 ms) apart at best: no stall, the float64 count."""
    gen = torch.Generator().manual_seed(9)
    times = (t_start + 30.0 * torch.rand(4, 6, 2, generator=gen, dtype=F64)).sort(dim=-1).values.float()
    weight = (1.0 + 0.4 * torch.randn(5, 6, generator=gen, dtype=F64)).float()
    rec = (0.3 * torch.randn(5, 5, generator=gen, dtype=F64)).float() if recurrent else None
    out32 = lif_layer(times, weight, rec, tau_mem=20.0, tau_syn=5.0, engine=engine)
    out64 = lif_layer(times.double(), weight.double(), None if rec is None else rec.double(), tau_mem=20.0, tau_syn=5.0, engine=engine)
    finite = torch.isfinite(out64)
    assert finite.sum() > 10 and out32.shape == out64.shape and torch.equal(torch.isfinite(out32), finite)
    ulp = float(np.spacing(np.float32(t_start)))  # the float32 step at t_start (and up to t_start + 100 here)
    assert (out32.double() - out64)[finite].abs().max() <= ulp


@pytest.mark.parametrize("recurrent,engine", SPIKING)
def test_the_float32_stall_of_the_issue_terminates(recurrent: bool, engine: str) -> None:
    """One input at 1e6 ms with weight 1e3: 248 spikes, some closer than a float32 step would allow to stall."""
    weight = torch.tensor([[1e3]])
    rec = torch.zeros(1, 1) if recurrent else None
    out = lif_layer(torch.tensor([[[1e6]]]), weight, rec, tau_mem=20.0, tau_syn=5.0, engine=engine)
    ref = lif_layer(torch.tensor([[[1e6]]], dtype=F64), weight.double(), None if rec is None else rec.double(), tau_mem=20.0, tau_syn=5.0, engine=engine)
    assert int(torch.isfinite(out).sum()) == int(torch.isfinite(ref).sum()) == 248


def test_the_pytorch_feedforward_engine_in_blocks_is_the_same_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large layers are simulated in blocks of samples and neurons (memory linear in the
    events, whatever the spikes): the blocks give the unblocked spike trains bit for bit,
    the gradients to rounding, and the spike-limit error its layer-wide indices."""
    import eventprop.engines.pytorch.feedforward as ff

    gen = torch.Generator().manual_seed(21)
    times = (torch.rand(5, 30, 3, generator=gen, dtype=F64) * 50).sort(dim=-1).values.requires_grad_(True)
    weight = (torch.rand(7, 30, generator=gen, dtype=F64) * 0.6).requires_grad_(True)

    def run() -> tuple[torch.Tensor, ...]:
        out = lif_layer(times, weight, tau_mem=20.0, tau_syn=5.0, engine="torch")
        grads = torch.autograd.grad(torch.where(torch.isfinite(out), out * out, 0.0).sum(), [times, weight])
        return (out, *grads)

    whole = run()
    assert torch.isfinite(whole[0]).sum(-1).max() >= 3
    for budget in (1, 200, 1000):  # one neuron of one sample at a time, ..., several samples
        monkeypatch.setattr(ff, "_ROUND_ELEMENTS", budget)
        out, *grads = run()
        assert torch.equal(out, whole[0])
        for g, ref in zip(grads, whole[1:]):
            torch.testing.assert_close(g, ref, rtol=1e-12, atol=1e-12)
    monkeypatch.setattr(ff, "_ROUND_ELEMENTS", 1)
    loud = torch.zeros(7, 30, dtype=F64)
    loud[6] = 5.0  # only neuron 6 fires, only sample 4 has input
    quiet = times.detach().clone()
    quiet[:4] = math.inf
    with pytest.raises(SpikeLimitError, match=r"neuron 6 of sample 4 emitted more than max_spikes=2 spikes \(by t = "):
        lif_layer(quiet, loud, tau_mem=20.0, tau_syn=5.0, max_spikes=2, engine="torch")


@pytest.mark.parametrize("recurrent,engine", SPIKING)
@pytest.mark.parametrize("t_input", [1.0, 1e4])
def test_a_float32_dense_burst_is_the_float64_burst_rounded(recurrent: bool, engine: str, t_input: float) -> None:
    """w = 200 fires a burst of spikes a fraction of a millisecond apart; the numba engine
    once computed it in float32, 0.025 ms off and one spike short."""
    weight = torch.tensor([[200.0]])
    rec = torch.zeros(1, 1) if recurrent else None
    out32 = lif_layer(torch.tensor([[[t_input]]]), weight, rec, tau_mem=20.0, tau_syn=5.0, engine=engine)
    out64 = lif_layer(
        torch.tensor([[[t_input]]], dtype=F64), weight.double(), None if rec is None else rec.double(), tau_mem=20.0, tau_syn=5.0, engine=engine
    )
    assert int(torch.isfinite(out64).sum()) > 40 and torch.equal(out32, out64.float())


@pytest.mark.parametrize("recurrent,engine", SPIKING)
def test_second_derivatives_are_refused_not_silently_wrong(recurrent: bool, engine: str) -> None:
    from eventprop import first_spike_cross_entropy, first_spikes

    times, weight, rec = _layer_args(recurrent, torch.Generator().manual_seed(9))
    weight.requires_grad_(True)
    out = lif_layer(times, weight, rec, tau_mem=20.0, tau_syn=5.0, engine=engine)
    loss = (torch.where(torch.isfinite(out), out, 0.0) ** 2).sum()
    with pytest.raises(RuntimeError, match="LIF layer's EventProp gradient cannot be differentiated twice"):
        torch.autograd.grad(loss, weight, create_graph=True)
    first = first_spikes(out.detach()).requires_grad_(True)
    ce = first_spike_cross_entropy(first, torch.zeros(first.shape[0], dtype=torch.long), tau0=0.5, tau1=6.4, alpha=3e-3, t_silent=60.0)
    with pytest.raises(RuntimeError, match="first_spike_cross_entropy cannot be differentiated twice"):
        torch.autograd.grad(ce, first, create_graph=True)
    assert torch.autograd.grad(loss, weight)[0].abs().sum() > 0  # a first derivative still works
