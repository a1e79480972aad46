"""The CUDA engine (numba-cuda) against the compiled CPU engine, in numba's CUDA simulator.

The engine contract suite (``test_engine_contract.py``, ``test_forward.py``,
``test_gradients.py``, ...) already runs the CUDA engine wherever it declares a layer
kind, through the simulator (``conftest.py`` sets ``NUMBA_ENABLE_CUDASIM=1``). This file
adds what is particular to it: bitwise agreement of spike times with the CPU engine
whose scalar functions it compiles (in the simulator, whose arithmetic is Python's; on a
GPU, fused multiply-adds and the GPU's ``exp`` make it agreement to rounding, which
``benchmarks/bench_gpu.py`` checks), gradient agreement to 1e-12 (its sums are atomic,
in another order), more neurons than one thread block holds, the capacity re-run,
``max_spikes``, registry behaviour, and (where numba-cuda and its compiler are
installed, not in CI) a compilation of every kernel to PTX for a real GPU.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numba
import pytest
import torch
from numba import cuda  # the simulator swaps a kernel's module-level ``cuda`` for its fake

from eventprop import SpikeLimitError, lif_layer, lif_trajectory, readout_trajectory
from eventprop.engines import LayerKind, get_engine, select_engine
from eventprop.engines.numba_cuda import SIMULATED
from eventprop.engines.numba_cuda import feedforward as cuda_ff
from eventprop.engines.numba_cuda import recurrent as cuda_rec
from helpers import F64, random_inputs

pytestmark = pytest.mark.skipif(not SIMULATED, reason="the CUDA engine's tests run in numba's CUDA simulator")

CPU = torch.device("cpu")


def _network(seed: int, batch: int, n_in: int, n_out: int, slots: int, mean: float, std: float):  # noqa: ANN202
    gen = torch.Generator().manual_seed(seed)
    times = random_inputs(batch, n_in, slots, 40.0, gen)
    times[:, 0, 0] = 0.0  # an event at t = 0
    times[:, 1, 0] = times[:, 2, 0]  # and a tie
    times = times.sort(dim=-1).values
    weight = mean + std * torch.randn(n_out, n_in, generator=gen, dtype=F64)
    return times.requires_grad_(True), weight.requires_grad_(True)


def _run(engine: str, times: torch.Tensor, weight: torch.Tensor, rec: torch.Tensor | None = None, **kw):  # noqa: ANN003, ANN202
    out = lif_layer(times, weight, rec, tau_mem=kw.pop("tau_mem", 20.0), tau_syn=kw.pop("tau_syn", 5.0), engine=engine, **kw)
    finite = torch.isfinite(out)
    loss = (torch.where(finite, out, 0.0) * torch.linspace(0.5, 1.5, out.shape[1], dtype=F64)[:, None]).sum()
    return out, torch.autograd.grad(loss, [times, weight] + ([rec] if rec is not None else []))


def _recurrent(seed: int, n: int, scale: float) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    rec = scale * (torch.rand(n, n, generator=gen, dtype=F64) - 0.5)
    return rec.fill_diagonal_(0.0).requires_grad_(True)


def _assert_agree(grads: tuple[torch.Tensor, ...], ref: tuple[torch.Tensor, ...]) -> None:
    for g, r in zip(grads, ref):
        assert r.abs().max() > 0
        assert (g - r).abs().max() <= 1e-12 * r.abs().max()


@pytest.mark.parametrize("taus", [(20.0, 5.0), (10.0, 10.0), (5.0, 10.0)])
@pytest.mark.parametrize("horizon", [math.inf, 25.0])
def test_spike_times_are_the_cpu_engines_bitwise_and_gradients_agree(taus: tuple[float, float], horizon: float) -> None:
    times, weight = _network(1, 3, 8, 6, 3, 1.2, 0.8)
    kw = dict(tau_mem=taus[0], tau_syn=taus[1], horizon=horizon)
    out, (g_t, g_w) = _run("cuda", times, weight, **dict(kw))
    ref, (r_t, r_w) = _run("numba", times, weight, **dict(kw))
    assert torch.isfinite(ref).sum() >= 10 and ref.shape[-1] >= 2  # several spikes per neuron
    assert torch.equal(out, ref)
    _assert_agree((g_t, g_w), (r_t, r_w))


def test_more_neurons_than_a_block_and_a_capacity_rerun() -> None:
    # 130 neurons: two blocks of threads; a strong drive makes neurons fire more often
    # than the starting capacity (4), so the kernel runs again with room for all
    times, weight = _network(2, 2, 4, 130, 4, 3.0, 1.0)
    cuda_ff._CAPACITY.clear()
    out, (g_t, g_w) = _run("cuda", times, weight)
    ref, (r_t, r_w) = _run("numba", times, weight)
    assert ref.shape[-1] > 4
    assert torch.equal(out, ref)
    assert (g_w - r_w).abs().max() <= 1e-12 * r_w.abs().max()
    assert (g_t - r_t).abs().max() <= 1e-12 * r_t.abs().max()


@pytest.mark.parametrize("taus", [(20.0, 5.0), (5.0, 10.0)])
@pytest.mark.parametrize("horizon", [math.inf, 25.0])
def test_recurrent_spike_times_are_the_cpu_engines_bitwise_and_gradients_agree(taus: tuple[float, float], horizon: float) -> None:
    times, weight = _network(5, 3, 6, 7, 3, 1.2, 0.8)
    rec = _recurrent(5, 7, 1.0)
    kw = dict(tau_mem=taus[0], tau_syn=taus[1], horizon=horizon)
    out, grads = _run("cuda", times, weight, rec, **dict(kw))
    ref, ref_grads = _run("numba", times, weight, rec, **dict(kw))
    assert torch.isfinite(ref).sum() >= 20 and ref.shape[-1] >= 2
    assert torch.equal(out, ref)
    _assert_agree(grads, ref_grads)


def test_recurrent_coincident_spikes_fire_together_in_neuron_order() -> None:
    # one input spike drives three identical neurons: they cross at the same instant, fire
    # together, and their recurrent inputs then reach the others
    times = torch.tensor([[[1.0]]], dtype=F64, requires_grad=True)
    weight = torch.tensor([[10.0], [7.0], [10.0], [10.0]], dtype=F64, requires_grad=True)
    rec = torch.tensor([[0, 0.3, 0.2, 0.1], [0.5, 0, 0.4, 0.3], [0.1, 0.2, 0, 0.3], [0.2, 0.1, 0.3, 0]], dtype=F64)
    rec.requires_grad_(True)
    out, grads = _run("cuda", times, weight, rec)
    ref, ref_grads = _run("numba", times, weight, rec)
    assert out[0, 0, 0] == out[0, 2, 0] == out[0, 3, 0] and torch.isfinite(out[0, 1, 0])
    assert torch.equal(out, ref)
    _assert_agree(grads, ref_grads)
    saved = get_engine("cuda").simulate(LayerKind.RECURRENT, _spec(), times.detach(), weight.detach(), rec.detach())[1]
    assert saved[6][0, :3].tolist() == [0, 2, 3]  # the tape lists the group in neuron order


def _spec():  # noqa: ANN202
    from eventprop.engines import LayerSpec
    from eventprop.model.neuron import NeuronParams

    return LayerSpec(NeuronParams(tau_mem=20.0, tau_syn=5.0, threshold=1.0), math.inf, None)


def test_recurrent_spike_list_capacity_rerun() -> None:
    # more spikes in a sample than the first capacity (64): the layer runs again with more room
    times, weight = _network(6, 2, 4, 12, 4, 3.0, 0.5)
    rec = _recurrent(6, 12, 0.6)
    cuda_rec._CAPACITY.clear()
    out, grads = _run("cuda", times, weight, rec)
    ref, ref_grads = _run("numba", times, weight, rec)
    assert torch.isfinite(ref).sum(dim=(1, 2)).max() > 64
    assert torch.equal(out, ref)
    _assert_agree(grads, ref_grads)


def test_float32_inputs_give_float32_results_rounded_from_float64() -> None:
    times, weight = _network(3, 2, 6, 5, 2, 1.2, 0.8)
    out32 = lif_layer(times.detach().float(), weight.detach().float(), tau_mem=20.0, tau_syn=5.0, engine="cuda")
    ref32 = lif_layer(times.detach().float(), weight.detach().float(), tau_mem=20.0, tau_syn=5.0, engine="numba")
    assert out32.dtype == torch.float32 and torch.equal(out32, ref32)


@pytest.mark.parametrize("spiking", [False, True])
def test_trajectory_queries_are_the_cpu_engines_bitwise_and_gradients_agree(spiking: bool) -> None:
    # a readout's trajectory, or a LIF layer's own (its spikes reset it): the maximum,
    # values at given (differentiable) times and an exponentially weighted integral
    times, weight = _network(7, 3, 6, 5, 3, 1.5 if spiking else 0.5, 0.8)
    query = torch.tensor([[5.0, 20.0, 35.0]] * 3, dtype=F64, requires_grad=True)
    results = {}
    for engine in ("numba", "cuda"):
        if spiking:
            spikes = lif_layer(times, weight, tau_mem=20.0, tau_syn=5.0, engine="numba")
            traj = lif_trajectory(times, spikes, weight, tau_mem=20.0, tau_syn=5.0, window=60.0, engine=engine)
        else:
            traj = readout_trajectory(times, weight, tau_mem=20.0, tau_syn=5.0, window=60.0, engine=engine)
        v_max, t_peak = traj.max()
        values = traj.at(query)
        loss = (v_max * torch.linspace(0.5, 1.5, 5, dtype=F64)).sum() + 0.1 * values.square().sum() + 0.01 * traj.weighted_integral(10.0).sum()
        results[engine] = (v_max, t_peak, values, torch.autograd.grad(loss, [times, weight, query]))
    (a_max, a_peak, a_values, a_grads), (b_max, b_peak, b_values, b_grads) = results["cuda"], results["numba"]
    assert torch.equal(a_max, b_max) and torch.equal(a_peak, b_peak) and torch.equal(a_values, b_values)
    _assert_agree(a_grads, b_grads)


class _HostReads:
    """Counts the tensor methods that read a value back to the host (a GPU synchronisation):
    ``with _HostReads(monkeypatch) as reads: ...; reads.count``. The simulator's own views
    of kernel arguments (``as_kernel_array``) are not reads on a GPU and are not counted."""

    METHODS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "numpy", "cpu")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count, self.sites, self.on = 0, [], False
        for name in self.METHODS:
            monkeypatch.setattr(torch.Tensor, name, self._counted(getattr(torch.Tensor, name), name))

    def _counted(self, method, name: str):  # noqa: ANN001, ANN202
        def counted(tensor: torch.Tensor, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            caller = sys._getframe(1).f_code
            if self.on and caller.co_name != "as_kernel_array":
                self.count += 1
                self.sites.append(f"{name} in {caller.co_name} ({Path(caller.co_filename).name})")
            return method(tensor, *args, **kwargs)

        return counted

    def __enter__(self) -> "_HostReads":
        self.count, self.sites, self.on = 0, [], True
        return self

    def __exit__(self, *exc: object) -> None:
        self.on = False


def test_a_layer_call_reads_the_device_once_forward_and_once_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    # On a GPU every read of a value to the host waits for the device. A layer's forward
    # reads once (the value checks, the event count and the output's size together), its
    # backward once (the check of dL/dt and the tangential count together); a trajectory
    # once when built (checks and event count), its queries' kernels never.
    times, weight = _network(31, 3, 6, 5, 3, 0.9, 0.5)
    rec = _recurrent(32, 5, 0.6)
    reads = _HostReads(monkeypatch)
    for r in (None, rec):
        lif_layer(times, weight, r, tau_mem=20.0, tau_syn=5.0, engine="cuda")  # (sizes its capacity)
        with reads:
            out = lif_layer(times, weight, r, tau_mem=20.0, tau_syn=5.0, engine="cuda")
        assert reads.count == 1, reads.sites
        loss = torch.where(torch.isfinite(out), out, 0.0).sum()
        with reads:
            loss.backward()
        assert reads.count == 1, reads.sites
        with reads:
            trajectory = lif_trajectory(times, out, weight, r, tau_mem=20.0, tau_syn=5.0, window=60.0, engine="cuda")
        assert reads.count == 1, reads.sites
    with reads:
        trajectory = readout_trajectory(times, weight, tau_mem=20.0, tau_syn=5.0, window=60.0, engine="cuda")
        v_max, _ = trajectory.max()
        v_max.sum().backward()
    assert reads.count == 1, reads.sites


@pytest.mark.parametrize("recurrent", [False, True])
def test_max_spikes_raises_naming_the_neuron_as_the_cpu_engine_does(recurrent: bool) -> None:
    times, weight = _network(4, 2, 4, 3, 4, 3.0, 0.1)
    rec = _recurrent(4, 3, 0.5).detach() if recurrent else None
    messages = []
    for engine in ("numba", "cuda"):
        with pytest.raises(SpikeLimitError, match="max_spikes=1 ") as caught:
            lif_layer(times.detach(), weight.detach(), rec, tau_mem=20.0, tau_syn=5.0, engine=engine, max_spikes=1)
        messages.append(str(caught.value))
    assert messages[0] == messages[1]


def test_auto_keeps_the_cpu_engine_for_cpu_tensors_and_the_cuda_engine_serves_by_name() -> None:
    assert select_engine("auto", LayerKind.FEEDFORWARD, CPU, F64).name == "numba"
    assert select_engine("cuda", LayerKind.FEEDFORWARD, CPU, torch.float32).name == "cuda"
    engine = get_engine("cuda")
    assert engine.priority > get_engine("torch").priority  # auto prefers it on CUDA tensors
    assert "serves feedforward, recurrent, trajectory layers only" in (engine.refusal(LayerKind.CONNECTIONS, CPU, F64) or "")


_PTX_SCRIPT = Path(__file__).with_name("cuda_ptx.py")


def test_every_kernel_compiles_to_ptx_for_a_gpu() -> None:
    """numba-cuda's real compiler (not the simulator) on every kernel, for compute capability 9.0.

    Needs numba-cuda with its compiler libraries (``pip install eventprop[cuda]``); skipped
    where they are missing (CI installs neither)."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    done = subprocess.run([sys.executable, str(_PTX_SCRIPT)], env=env, capture_output=True, text=True, timeout=600)
    if done.returncode == 3:
        pytest.skip(done.stdout.strip() or done.stderr.strip()[-300:])
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "compiled" in done.stdout


def test_without_numba_cuda_the_engine_says_why_it_cannot_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from eventprop.engines.numba_cuda import device

    monkeypatch.setattr(device, "SIMULATED", False)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "numba_cuda" else real(name, *a))
    assert device.cuda_missing() == "it needs numba-cuda (pip install eventprop[cuda])"


def test_a_blocks_threads_get_one_shared_array_when_a_thread_switch_falls_inside_its_creation(monkeypatch: pytest.MonkeyPatch) -> None:
    # numba's simulator creates a block's shared array with an unlocked check-then-set; a
    # thread switch between the two (forced here: np.empty sleeps) gave threads separate
    # arrays, the cause of rare IndexErrors in the recurrent kernel. device.py locks it.
    import time

    import numpy as np

    @cuda.jit
    def count_threads(out):  # noqa: ANN001, ANN202 - a kernel
        shared = cuda.shared.array(1, numba.int64)
        if cuda.threadIdx.x == 0:
            shared[0] = 0
        cuda.syncthreads()
        cuda.atomic.add(shared, 0, 1)
        cuda.syncthreads()
        out[cuda.threadIdx.x] = shared[0]

    empty = np.empty

    def switching_empty(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        time.sleep(0.002)
        return empty(*args, **kwargs)

    monkeypatch.setattr(np, "empty", switching_empty)
    out = np.full(4, -1, dtype=np.int64)
    count_threads[1, 4](out)
    assert out.tolist() == [4, 4, 4, 4]
