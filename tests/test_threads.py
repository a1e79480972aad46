"""Threads: the compiled engine leaves torch's thread count alone, survives forked
DataLoader workers, and training gives the same bits at any thread count.

Each check that depends on numba's threading layer runs in a fresh interpreter: the
layer is fixed at the first parallel launch of a process.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytest.importorskip("numba")

from eventprop.cli import main  # noqa: E402

SRC = str(Path(__file__).resolve().parents[1] / "src")

# A parallel launch of every kernel family (events, feed-forward, recurrent, trajectory).
PARALLEL_WORK = """
import torch, eventprop
import eventprop.engines.numba_cpu.threads as threads
threads.PARALLEL_MIN_WORK = 0
torch.manual_seed(0)
x = (torch.rand(64, 5, 3).sort(dim=-1).values * 20).requires_grad_()
hidden = eventprop.LIFLayer(5, 40, tau_mem=20.0, tau_syn=5.0, recurrent=True, init_mean=1.5, init_std=0.5, engine="numba")
readout = eventprop.LIReadout(40, 3, tau_mem=20.0, tau_syn=5.0, window=40.0, engine="numba")
h = hidden(x)
v_max = readout(h).max()[0]
(v_max.sum() + h[h.isfinite()].sum()).backward()
"""


def _python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    full_env = {**inherited, "PYTHONPATH": SRC, **(env or {})}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full_env, timeout=300)


@pytest.mark.parametrize("layer", [None, "omp", "workqueue"])
def test_parallel_kernels_keep_torchs_thread_count(layer: str | None) -> None:
    """torch.set_num_threads(1) survives the first parallel kernel, whichever layer runs it."""
    env = {"NUMBA_NUM_THREADS": "2"} | ({"NUMBA_THREADING_LAYER": layer} if layer else {})
    code = (
        "import torch\ntorch.set_num_threads(1)\na = torch.rand(300, 300); (a @ a).sum()\n"
        + PARALLEL_WORK
        + "import numba\nprint(torch.get_num_threads(), numba.threading_layer(), numba.get_num_threads())\n"
    )
    result = _python(code, env)
    assert result.returncode == 0, result.stderr
    threads, chosen, numba_threads = result.stdout.split()
    assert threads == "1"
    assert chosen == (layer or "workqueue")  # the engine's default; a user's choice is kept
    assert numba_threads == "2"


@pytest.mark.parametrize(
    "start", ["from eventprop.training import set_threads; set_threads(2)", "import numba; numba.set_num_threads(2)"]
)
def test_workqueue_when_the_pool_starts_before_any_layer(start: str) -> None:
    """Importing eventprop is enough: a pool started by the user (or set_threads) before any layer is fork-safe."""
    result = _python(f"import eventprop\n{start}\nimport numba\nprint(numba.threading_layer())", {"NUMBA_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "workqueue"


def test_forked_dataloader_workers_after_parallel_kernels() -> None:
    """The default (fork) DataLoader workers run the compiled engine after the parent has used its pool."""
    code = (
        PARALLEL_WORK
        + """
class Encoded(torch.utils.data.Dataset):
    def __len__(self):
        return 16
    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        with torch.no_grad():
            return hidden(torch.rand(1, 5, 3, generator=g).sort(dim=-1).values * 20)[0, :, :2]
loader = torch.utils.data.DataLoader(Encoded(), batch_size=4, num_workers=2, multiprocessing_context="fork")
got = torch.cat(list(loader))
want = torch.stack([Encoded()[i] for i in range(16)])
assert torch.equal(got, want), (got - want).abs().max()
print("ok", torch.isfinite(got).sum().item())
"""
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("ok") and int(result.stdout.split()[1]) > 0


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


@pytest.mark.skipif(__import__("numba").config.NUMBA_NUM_THREADS < 2, reason="numba's pool has one thread here")
def test_training_gives_the_same_bits_at_any_thread_count(tmp_path: Path) -> None:
    """README's main job, shortened: 1 and 2 threads give identical metrics and weights.

    Batches of 32 x 200 hidden neurons x 5 input events exceed the engine's parallel
    threshold, so the 2-thread run's kernels do run on the pool.
    """
    argv = ["train", "yinyang", "--epochs", "2", "--train-size", "192", "--val-size", "96", "--hidden", "200", "--quiet"]
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            assert main([*argv, "--threads", str(threads), "--out", str(tmp_path / str(threads))]) == 0
    finally:
        torch.set_num_threads(before)
    assert _rows(tmp_path / "1") == _rows(tmp_path / "2")
    one = torch.load(tmp_path / "1" / "checkpoint.pt", weights_only=True)["model"]
    two = torch.load(tmp_path / "2" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(one[k], two[k]) for k in one)


def test_threads_beyond_numbas_pool_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numba

    too_many = numba.config.NUMBA_NUM_THREADS + 1
    assert main(["train", "yinyang", "--threads", str(too_many), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert not (tmp_path / "r").exists()  # refused before the output folder
    assert f"--threads: {too_many} exceeds numba's pool of {too_many - 1} (raise it with NUMBA_NUM_THREADS={too_many})" in err
    assert "\n" not in err
    assert main(["train", "yinyang", "--threads", "0"]) == 2
    assert "--threads must be a positive int, got 0" in capsys.readouterr().err
