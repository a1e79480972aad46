import os
import sys
from pathlib import Path

# The CUDA engine's kernels run in numba's CUDA simulator (on CPU tensors), so the engine
# contract suite checks them on every machine; set NUMBA_ENABLE_CUDASIM=0 to opt out.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

sys.path.insert(0, str(Path(__file__).parent))

import helpers  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_thread_counts():  # noqa: ANN202
    """The CLI sets torch's and numba's thread counts (``--threads``); no test leaks its setting to the next."""
    import numba

    torch_threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    yield
    torch.set_num_threads(torch_threads)
    numba.set_num_threads(numba_threads)


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ANN001, ANN201
    if helpers.WORST:
        terminalreporter.section("worst measured errors")
        for kind, value in sorted(helpers.WORST.items()):
            terminalreporter.write_line(f"{kind}: {value:.3e}")
