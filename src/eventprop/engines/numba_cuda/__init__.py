"""The CUDA engine: numba-cuda kernels on NVIDIA GPUs, tested on the CPU through numba's simulator.

Serves feed-forward LIF layers (:mod:`.feedforward`: one GPU thread per sample and
neuron) and recurrent ones (:mod:`.recurrent`: one thread block per sample), forward and
EventProp backward, and voltage trajectories (:mod:`.trajectory`: every query and its
adjoint, one thread per sample and neuron), on CUDA tensors in float32 and float64,
computing in float64 (``compute_dtype``) with the compiled CPU engine's scalar
functions: under the simulator (Python arithmetic) spike times agree with it bitwise; on
a GPU to rounding (the GPU compiler fuses multiply-adds and its ``exp``, ``expm1`` and
``log1p`` round differently from the CPU's; ``benchmarks/bench_gpu.py`` checks 1e-9 ms
and 1e-8 relative in float64). ``engine="auto"`` picks it for CUDA
tensors (its priority is above the PyTorch engine's, below the CPU engine's, which
serves CPU tensors only); connection-list layers (kind ``connections``) it does not serve.

Host synchronisations: one per call, none per event, spike or crossing. A layer's
forward runs its kernel on the full sorted input (:mod:`.events`) and then reads back,
together, the data contract's value checks of times and weights (``checks_values``:
:class:`~eventprop.model.spikes.ValueChecks`), the event count and the largest spike
count, which size the saved events and the output (a second read only when a capacity
re-run is needed, or to name the neuron of a :class:`~eventprop.errors.SpikeLimitError`);
its backward reads the check of ``dL/dt`` with the tangential count
(:func:`~eventprop.errors.checked_adjoint`). A trajectory reads its checks and event count
once when built; its queries' kernels never read (``at`` and ``values`` read their
arguments' range check once). ``tests/test_cuda_engine.py`` counts these reads. Not yet
on the device: the gradients of learnable time constants of a layer
(:func:`~eventprop.engines.numba_cpu.time_constants.time_constant_gradients`, compiled
for the CPU) copy the layer's events to the host in the backward.

Why numba-cuda: it installs from the package index with the CUDA compiler libraries as
wheels (``pip install eventprop[cuda]`` pulls ``numba-cuda[cu12]``: NVVM and NVRTC, no
toolkit download), it compiles the very functions the CPU kernels use (the model's
mathematics is written once), and its simulator runs the kernels on any machine, so
the engine contract suite checks them in CI without a GPU (:mod:`.device`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...model.neuron import NeuronParams
from ...model.spikes import EventList, ValueChecks
from ...model.trajectory import VoltageTrajectory
from ..base import Engine, LayerGradients, LayerKind, LayerSpec
from .device import SIMULATED, cuda_missing, devices_served
from .feedforward import feedforward_backward_cuda, feedforward_forward_cuda
from .recurrent import NumbaRecurrentTape, recurrent_backward_cuda, recurrent_forward_cuda
from .trajectory import CudaTrajectory

__all__ = ["CudaEngine", "SIMULATED"]


class CudaEngine(Engine):
    """numba-cuda kernels: feed-forward and recurrent LIF layers and trajectories on CUDA tensors (CPU tensors under the simulator)."""

    name = "cuda"
    kinds = frozenset({LayerKind.FEEDFORWARD, LayerKind.RECURRENT, LayerKind.TRAJECTORY})
    devices = devices_served()
    priority = 5
    compute_dtype = torch.float64
    checks_values = True

    def unavailable(self) -> str | None:
        return cuda_missing()

    def simulate(
        self, kind: LayerKind, spec: LayerSpec, times: Tensor, weight: Tensor, recurrent_weight: Tensor | None
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        if kind is LayerKind.RECURRENT:
            out, events, tape = recurrent_forward_cuda(
                times, weight, recurrent_weight, spec.params, spec.horizon, spec.max_spikes
            )
            return out, (weight, recurrent_weight, events.times, events.source, events.position, *tape.tensors())
        out, current, events = feedforward_forward_cuda(times, weight, spec.params, spec.horizon, spec.max_spikes)
        return out, (weight, events.times, events.source, events.position, out, current)

    def adjoint(
        self,
        kind: LayerKind,
        spec: LayerSpec,
        grad_out: Tensor,
        saved: tuple[Tensor, ...],
        input_shape: torch.Size,
        want_times: bool = True,
    ) -> LayerGradients:
        clip = spec.clip(grad_out.dtype)
        if kind is LayerKind.RECURRENT:
            weight, recurrent_weight, ev_times, ev_source, ev_position, *parts = saved
            events = EventList(ev_times, ev_source, ev_position)
            return LayerGradients(
                *recurrent_backward_cuda(
                    grad_out, weight, recurrent_weight, events, NumbaRecurrentTape(*parts), spec.params, input_shape, clip
                )
            )
        weight, ev_times, ev_source, ev_position, out, current = saved
        events = EventList(ev_times, ev_source, ev_position)
        grad_times, grad_weight, n_tangential, jumps = feedforward_backward_cuda(
            grad_out, weight, events, out, current, spec.params, input_shape, clip
        )
        return LayerGradients(grad_times, grad_weight, None, n_tangential, jumps)

    def trajectory(
        self,
        times: Tensor,
        spikes: Tensor | None,
        weight: Tensor,
        recurrent_weight: Tensor | None,
        params: NeuronParams,
        window: float,
    ) -> VoltageTrajectory:
        checks = ValueChecks({"times": times, "spikes": spikes}, {"weight": weight, "recurrent_weight": recurrent_weight})
        return CudaTrajectory.from_spikes(times, spikes, weight, recurrent_weight, params, window, checks)
