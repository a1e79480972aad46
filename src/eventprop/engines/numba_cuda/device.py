r"""CUDA engine plumbing: numba-cuda, its simulator, and torch tensors as kernel arguments.

The kernels are written with numba's CUDA target (``numba.cuda``, provided by the
``numba-cuda`` package: ``pip install eventprop[cuda]``). On a machine with an NVIDIA
GPU they compile to PTX at first use and run on torch's current CUDA stream, reading
and writing torch tensors in place through ``__cuda_array_interface__`` (no copies, no
host round trips). With ``NUMBA_ENABLE_CUDASIM=1`` numba runs the same kernels in its
CUDA simulator on the CPU (each GPU thread a Python thread): the engine then serves CPU
tensors, which is how the test suite checks the kernels on machines without a GPU.

Where a kernel needs a sum over the neurons of a layer (the gradient of an input spike
time, say), :func:`warp_sum` reduces a warp's 32 values with shuffles and the warp's
first lane (:func:`leads_warp`) adds the total atomically; the simulator has no
shuffles, so there every thread adds its own value atomically (the same total, summed in
another order). The atomic addition itself stays in the kernel: the simulator swaps a
module's ``cuda`` for its fake during each device-function call, which is not safe when
simulated threads call device functions of one module at once.

The simulator hands a block's threads one ``cuda.shared.array`` per source line, but its
check-then-create of that array is unlocked: a thread switch between the two gives two
threads two different "shared" arrays (seen as a recurrent kernel's spike counter split
in two, two neurons writing the same spike-list slot, and a garbage index read after
the barrier). :func:`_lock_simulated_shared_arrays` makes the check and the creation one
step, under a lock, when the simulator is in use.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import threading
import warnings
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

try:  # pragma: no cover - exercised only where numba is missing
    import numba
    from numba import cuda
except ImportError:  # pragma: no cover
    numba = None
    cuda = None

__all__ = ["SIMULATED", "cuda_missing", "devices_served", "as_kernel_array", "shared_function", "on_device", "stream_for", "block_size", "warp_sum", "leads_warp"]

#: Whether numba's CUDA simulator stands in for a GPU (``NUMBA_ENABLE_CUDASIM=1``).
SIMULATED: bool = numba is not None and bool(numba.config.ENABLE_CUDASIM)

_SHARED_LOCK = threading.Lock()


def _lock_simulated_shared_arrays() -> None:
    """Make the simulator's ``cuda.shared.array`` give every thread of a block the same array.

    numba's ``FakeCUDAShared.array`` keys a block's shared arrays by the calling source
    line and creates a missing one with an unlocked ``get`` then ``set``; this replaces
    it by the same lookup done under a lock (dynamic shared memory, ``shape == 0``, is
    left to the original: it is one buffer made before the threads start).
    """
    from numba.cuda.simulator import kernelapi
    from numba.np.numpy_support import as_dtype

    shared = kernelapi.FakeCUDAShared
    if getattr(shared.array, "_eventprop_locked", False) or not isinstance(getattr(shared(0), "_allocations", None), dict):
        return  # already locked, or a simulator whose shared arrays work otherwise
    unlocked = shared.array

    def array(self, shape, dtype):  # noqa: ANN001, ANN202 - the simulator's own signature
        if shape == 0:
            return unlocked(self, shape, dtype)
        if isinstance(dtype, numba.types.Type):
            dtype = as_dtype(dtype)
        caller = sys._getframe(1)
        key = (caller.f_code.co_filename, caller.f_lineno)
        with _SHARED_LOCK:
            res = self._allocations.get(key)
            if res is None:
                res = np.empty(shape, dtype)
                self._allocations[key] = res
        return res

    array._eventprop_locked = True
    shared.array = array


if SIMULATED:
    _lock_simulated_shared_arrays()

#: Threads per block on a GPU (a multiple of the warp size).
GPU_BLOCK = 128


def cuda_missing() -> str | None:
    """Why the CUDA engine cannot run here (``None``: it can)."""
    if cuda is None:
        return "it needs numba-cuda (pip install eventprop[cuda])"
    if SIMULATED:
        return None
    if importlib.util.find_spec("numba_cuda") is None:  # numba's own CUDA target is deprecated and finds no compiler
        return "it needs numba-cuda (pip install eventprop[cuda])"
    if not torch.cuda.is_available():
        return "no CUDA device is available to torch"
    try:
        if not cuda.is_available():
            return "numba-cuda finds no CUDA driver (pip install eventprop[cuda])"
    except Exception as exc:  # noqa: BLE001 - the driver's own errors vary by version
        return f"numba-cuda cannot use the CUDA driver ({exc})"
    return None


def devices_served() -> frozenset[str]:
    """``{"cuda"}``; under the simulator also ``"cpu"`` (the kernels then run on the CPU)."""
    return frozenset({"cuda", "cpu"}) if SIMULATED else frozenset({"cuda"})


def as_kernel_array(x: Tensor):  # noqa: ANN201 - a numba device array or a numpy array
    """``x`` (contiguous, on the engine's device) as a kernel argument sharing its memory.

    On a GPU a numba device array over the tensor's memory (``__cuda_array_interface__``);
    under the simulator the numpy view of the CPU tensor. Kernels write into it in place.
    """
    if not x.is_contiguous():
        raise ValueError("internal error: a CUDA-engine kernel argument must be contiguous")
    x = x.detach()
    if SIMULATED:
        return x.numpy()
    return cuda.as_cuda_array(x, sync=False)


@contextlib.contextmanager
def _quick_thread_switches() -> Iterator[None]:
    # The simulator runs a block's threads as Python threads under one poller that spins
    # until all reach a barrier; at Python's default switch interval (5 ms) every
    # barrier costs milliseconds. A short interval while kernels run makes them ~6x faster.
    # Kernels run on bad input too (its checks are read after them, on a GPU as here):
    # numpy's warnings for NaN arithmetic in simulated threads are silenced.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            yield
    finally:
        sys.setswitchinterval(interval)


def on_device(device: torch.device) -> contextlib.AbstractContextManager:
    """numba's context for the tensors' GPU; under the simulator, quick thread switches."""
    if SIMULATED:
        return _quick_thread_switches()
    index = device.index if device.index is not None else torch.cuda.current_device()
    return cuda.gpus[index]


def stream_for(device: torch.device):  # noqa: ANN201 - a numba stream, or 0 under the simulator
    """torch's current stream on ``device`` as a numba stream (kernels queue behind torch's work)."""
    if SIMULATED:
        return 0
    return cuda.external_stream(torch.cuda.current_stream(device).cuda_stream)


def shared_function(f):  # noqa: ANN001, ANN201 - a numba dispatcher
    """A compiled CPU function (``@njit``) that a kernel calls, as the kernel should call it.

    numba-cuda compiles an ``@njit`` function called from a kernel for the GPU. The
    simulator runs kernels as Python with wrapped arrays, which compiled CPU functions do
    not accept: there the function's Python source runs instead (its own calls of
    scalar-only compiled functions stay compiled).
    """
    return f.py_func if SIMULATED else f


def block_size(n: int) -> int:
    """Threads per block for ``n`` neurons: :data:`GPU_BLOCK`, or under the simulator at most
    ``n`` (each simulated thread is a Python thread: idle ones would cost as much as busy ones)."""
    if SIMULATED:
        return max(1, min(GPU_BLOCK, n))
    return GPU_BLOCK


if cuda is not None:
    if SIMULATED:

        @cuda.jit(device=True)
        def warp_sum(value):
            # the simulator has no warp shuffles: every thread is its own leader
            return value

        @cuda.jit(device=True)
        def leads_warp():
            return True

    else:  # pragma: no cover - needs a GPU

        @cuda.jit(device=True)
        def warp_sum(value):
            # the sum of ``value`` over the 32 lanes of the warp, in lane 0 (every lane calls it)
            offset = 16
            while offset > 0:
                value += cuda.shfl_down_sync(0xFFFFFFFF, value, offset)
                offset //= 2
            return value

        @cuda.jit(device=True)
        def leads_warp():
            return cuda.laneid == 0
