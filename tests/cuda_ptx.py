"""Compile every CUDA-engine kernel to PTX with numba-cuda's real compiler (no GPU needed).

Run by ``test_cuda_engine.py`` in a subprocess with ``NUMBA_ENABLE_CUDASIM=0``. Exit
status 3 (with the reason on stdout) where numba-cuda or its compiler is missing.
numba-cuda compiles the ``@njit`` functions a kernel calls for the current device's
compute capability; without a GPU there is none, so it is given one (9.0) here.
"""

from __future__ import annotations

import sys
import types

try:
    import numba_cuda  # noqa: F401 - NVIDIA's package (numba's built-in CUDA target is deprecated)
    import numba.cuda.dispatcher as dispatcher
    from numba import cuda
    from numba import types as nt

    cuda.cudadrv.nvvm.NVVM()  # the compiler library (from the nvidia-cuda-nvcc wheel)
except Exception as exc:  # noqa: BLE001 - any missing piece means: cannot check here
    print(f"numba-cuda's compiler is not installed ({type(exc).__name__}: {exc})".splitlines()[0])
    sys.exit(3)

dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))

from eventprop.engines.numba_cuda import feedforward, recurrent, trajectory  # noqa: E402


def array(dtype: nt.Type, ndim: int) -> nt.Array:
    return nt.Array(dtype, ndim, "C")


F1, F2, F3 = (array(nt.float64, d) for d in (1, 2, 3))
I1, I2 = array(nt.int64, 1), array(nt.int64, 2)
CONSTANTS = nt.UniTuple(nt.float64, 23)

KERNELS = {
    "feedforward forward": (feedforward._forward_kernel, (F2, I2, I1, F2, CONSTANTS, nt.int64, F3, F3, I2, F2)),
    "feedforward backward": (feedforward._backward_kernel, (F3, F3, F3, F2, F2, I2, I2, I1, CONSTANTS, F2, F2, I1, F3)),
    "recurrent forward": (
        recurrent._forward_kernel,
        (F2, I2, I1, F2, F2, CONSTANTS, nt.int64, F2, I2, F2, I2, I1, I2, I1, F2, F2, F2, F2, F2, F2),
    ),
    "recurrent spike trains": (recurrent._trains_kernel, (F2, I2, I1, F3)),
    "recurrent backward": (
        recurrent._backward_kernel,
        (F3, F2, I2, I2, F2, F2, F2, I2, F2, I2, I1, I2, CONSTANTS, F2, F2, F2, I1, F3, F2, F2, I2, F2),
    ),
    "trajectory maximum": (trajectory._max_kernel, (F2, I2, F2, nt.int64, nt.float64, CONSTANTS, F2, F2, I2, F2, I2, F2)),
    "trajectory maximum adjoint": (
        trajectory._max_adjoint_kernel, (F2, F2, I2, F2, nt.int64, CONSTANTS, I2, F2, I2, F2, F2, F2)
    ),
    "trajectory values": (trajectory._values_kernel, (F2, I2, F2, I2, F2, nt.int64, CONSTANTS, F3, F3)),
    "trajectory values adjoint": (
        trajectory._values_adjoint_kernel, (F3, F2, I2, F3, F2, I2, F2, nt.int64, CONSTANTS, F2, F2, F2)
    ),
}

for name, (kernel, signature) in KERNELS.items():
    ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))
    print(f"{name}: compiled, {len(ptx)} characters of PTX")
