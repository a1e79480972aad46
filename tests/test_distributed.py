"""Data-parallel training under torchrun: 2 CPU processes (gloo) give the single-process numbers.

Tolerance: each process sums its shard's gradient, then the shards are summed over
the processes; one process sums the whole minibatch in its own order. The two
differ by rounding (about 1e-16 relative per gradient entry), and a few Adam steps
carry that into the weights and metrics at about 1e-14; we allow 1e-10 relative. A
wrong combination (unscaled shard losses, bumping or the silent push decided per
shard, unshared noise) changes them at 1e-3 or more.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# uneven shards (31 = 15 + 16; the last minibatch of 100 holds 7), bumping and the silent push
ARGV = ["train", "yinyang", "--train-size", "100", "--val-size", "64", "--hidden", "60", "--batch-size", "31",
        "--bump", "1e-3", "--max-silent-hidden", "0.5", "--silent-push", "3", "--jitter", "0.5", "--quiet"]  # fmt: skip
TOLERANCE = 1e-10


def _run(args: list[str], processes: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
    command = [*launcher, "-m", "eventprop", *args] if processes > 1 else [sys.executable, "-m", "eventprop", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=240, cwd=ROOT)


def _metrics(out: Path) -> list[dict[str, float]]:
    with open(out / "metrics.csv") as f:
        return [{k: float(v) for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def _close(a: list[dict[str, float]], b: list[dict[str, float]]) -> None:
    assert [r.keys() for r in a] == [r.keys() for r in b]
    for ra, rb in zip(a, b):
        for k in ra:
            assert ra[k] == pytest.approx(rb[k], rel=TOLERANCE, abs=1e-12), (k, ra[k], rb[k])


def _weights_close(a: Path, b: Path) -> None:
    wa = torch.load(a / "checkpoint.pt", weights_only=True)["model"]
    wb = torch.load(b / "checkpoint.pt", weights_only=True)["model"]
    for k in wa:
        scale = float(wb[k].abs().max())
        assert float((wa[k] - wb[k]).abs().max()) <= TOLERANCE * scale, k


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without torch.distributed")
def test_two_processes_give_the_single_process_numbers(tmp_path: Path) -> None:
    single, double = tmp_path / "single", tmp_path / "double"
    result = _run([*ARGV, "--epochs", "2", "--out", str(single)], 1)
    assert result.returncode == 0, result.stderr[-3000:]
    result = _run([*ARGV, "--epochs", "1", "--out", str(double)], 2)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("results in") == 1  # one process prints (and writes)
    result = _run([*ARGV, "--epochs", "2", "--resume", "--out", str(double)], 2)  # resume under torchrun
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming {double} after epoch 1" in result.stdout
    _close(_metrics(double), _metrics(single))
    _weights_close(double, single)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without torch.distributed")
def test_an_empty_shard(tmp_path: Path) -> None:
    """63 samples in minibatches of 31: the last one holds a single sample, so rank 0's shard is empty."""
    argv = [*ARGV[:2], "--train-size", "63", "--val-size", "32", "--hidden", "40", "--batch-size", "31", "--quiet", "--epochs", "1"]
    assert _run([*argv, "--out", str(tmp_path / "single")], 1).returncode == 0
    result = _run([*argv, "--out", str(tmp_path / "double")], 2)
    assert result.returncode == 0, result.stderr[-3000:]
    _close(_metrics(tmp_path / "double"), _metrics(tmp_path / "single"))
    _weights_close(tmp_path / "double", tmp_path / "single")


def test_seeds_under_torchrun_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from eventprop.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "yinyang", "--seeds", "2", "--out", str(tmp_path)]) == 2
    assert "--seeds: under torchrun every process trains a shard of one run" in capsys.readouterr().err
