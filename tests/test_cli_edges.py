"""The command line's edges: output folders, resume and multi-seed folders, evaluate,
progress bars, runs without matplotlib, TensorBoard, packaging metadata."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys

from pathlib import Path

import pytest
import torch

from eventprop.cli import main
from eventprop.compat import TORCH_FLOOR, check_torch_version

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--epochs", "1", "--train-size", "64", "--val-size", "32", "--hidden", "10", "--quiet"]


def _one_line_error(capsys: pytest.CaptureFixture[str], message: str) -> None:
    err = capsys.readouterr().err.strip()
    assert message in err, err
    assert "\n" not in err and "Traceback" not in err


def test_device_gpu_leaves_no_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "yinyang", "--device", "gpu", "--out", str(tmp_path / "run")]) == 2
    _one_line_error(capsys, "--device: device must be 'cpu' or 'cuda[:N]', got 'gpu'")
    assert not (tmp_path / "run").exists()


def test_out_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    assert main(["train", "yinyang", *TINY, "--out", str(tmp_path / "file")]) == 2
    _one_line_error(capsys, "(--out) is a file")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_a_read_only_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert main(["train", "yinyang", *TINY, "--out", str(locked / "run")]) == 2
        _one_line_error(capsys, "(--out) cannot be created: Permission denied")
        assert main(["train", "yinyang", *TINY, "--out", str(locked)]) == 2
        _one_line_error(capsys, "(--out) cannot be written: Permission denied")
    finally:
        locked.chmod(0o755)


def test_out_that_cannot_be_written_leaves_no_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The write probe failing (as in a read-only folder, also for root) removes the folders it made."""
    import tempfile

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    assert main(["train", "yinyang", *TINY, "--out", str(tmp_path / "a" / "b")]) == 2
    _one_line_error(capsys, "(--out) cannot be written: Permission denied")
    assert not (tmp_path / "a").exists()


def test_evaluate_on_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(tmp_path)]) == 2
    _one_line_error(capsys, f"checkpoint {str(tmp_path)!r} is a folder: pass the model file in it, e.g. {tmp_path / 'best.pt'}")


def test_resume_without_checkpoint_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "yinyang", *TINY, "--resume", "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, f"--resume: {tmp_path} holds no checkpoint.pt to continue from")
    assert main(["train", "yinyang", *TINY, "--resume", "--seeds", "2", "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, f"--resume: {tmp_path} holds no seed_<k>/checkpoint.pt to continue from")
    assert not any(tmp_path.iterdir())


def test_multi_seed_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A finished multi-seed run is refused without --resume; a resume names the seeds it starts afresh."""
    out = tmp_path / "seeds"
    argv = ["train", "yinyang", *TINY, "--seeds", "2", "--workers", "2", "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 2
    _one_line_error(capsys, f"--out: {out} already holds a run: pass --resume to continue it")
    assert main(["train", "yinyang", *TINY, "--out", str(out)]) == 2  # a single seed into it neither
    _one_line_error(capsys, "already holds a run")
    assert main(["train", "yinyang", *TINY, "--resume", "--out", str(out)]) == 2
    _one_line_error(capsys, "(it holds a multi-seed run: pass its --seeds)")
    assert main([*argv[:-2], "--seeds", "3", "--resume", "--out", str(out)]) == 0
    assert "seed_2 has no checkpoint.pt: it starts afresh" in capsys.readouterr().out


def test_progress_bars_stay_out_of_redirected_logs(tmp_path: Path) -> None:
    """Without --quiet, a log redirected to a file holds lines, not carriage-return bar frames."""
    argv = [a for a in TINY if a != "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for extra in ([], ["--seeds", "2", "--workers", "1"]):
        result = subprocess.run(
            [sys.executable, "-m", "eventprop", "train", "yinyang", *argv, *extra, "--out", str(tmp_path / str(len(extra)))],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "\r" not in result.stdout + result.stderr
        assert "it/s" not in result.stderr and "s/it" not in result.stderr


def test_quiet_hides_every_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Even on a terminal, --quiet shows no bar (neither per epoch nor over seeds)."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert main(["train", "yinyang", *TINY, "--seeds", "2", "--workers", "1", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "it/s" not in err and "s/it" not in err and "%|" not in err


def test_evaluate_writes_predictions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "yinyang", *TINY, "--out", str(out)]) == 0
    assert main(["evaluate", str(out / "best.pt"), "--split", "validation", "--predictions", str(tmp_path / "p.csv")]) == 0
    accuracy = float(re.search(r"accuracy ([0-9.]+)%", capsys.readouterr().out).group(1))
    with open(tmp_path / "p.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["index"]) for r in rows] == list(range(len(rows))) and len(rows) == 1000
    assert all(-1 <= int(r["prediction"]) < 3 and 0 <= int(r["label"]) < 3 for r in rows)
    share = sum(r["prediction"] == r["label"] for r in rows) / len(rows)
    assert abs(100 * share - accuracy) < 0.051  # the printed accuracy counts the same predictions
    assert main(["evaluate", str(out / "best.pt"), "--predictions", str(tmp_path / "no" / "p.csv")]) == 2
    _one_line_error(capsys, "--predictions: cannot write")


def test_training_png_of_a_single_run(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    assert main(["train", "yinyang", *TINY, "--out", str(tmp_path)]) == 0
    assert (tmp_path / "training.png").stat().st_size > 10_000


def _without_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError


def test_training_without_matplotlib_keeps_the_result(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _without_matplotlib(monkeypatch)
    assert main(["train", "yinyang", *TINY, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "training.png skipped: plotting needs matplotlib (pip install matplotlib)" in out
    assert "test accuracy" in out and (tmp_path / "summary.json").exists() and not (tmp_path / "training.png").exists()


def test_figure1_without_matplotlib_prints_its_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _without_matplotlib(monkeypatch)
    assert main(["figure1", "--out", str(tmp_path / "f")]) == 0
    out = capsys.readouterr().out
    assert "input_weights_max_relative_deviation" in out and "w_relative_deviation" in out
    assert "figure skipped: plotting needs matplotlib" in out


def test_tensorboard_scalars(tmp_path: Path) -> None:
    """--tensorboard writes every metrics.csv column per epoch; a resume continues without duplicates."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    argv = ["train", "yinyang", *TINY, "--tensorboard", "--out", str(tmp_path)]
    assert main(argv) == 0
    assert main([*argv, "--epochs", "2", "--resume"]) == 0
    board = EventAccumulator(str(tmp_path / "tensorboard"))
    board.Reload()
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert set(board.Tags()["scalars"]) >= {"train/loss", "train/accuracy", "val/loss", "val/accuracy", "activity/hidden1_spikes", "run/lr"}
    events = board.Scalars("val/accuracy")
    assert [e.step for e in events] == [1, 2]
    assert [e.value for e in events] == pytest.approx([float(r["val_accuracy"]) for r in rows], rel=1e-6)


def _project() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_declared_torch_floor_is_checked() -> None:
    """pyproject's torch floor is the one the package enforces at import (fused Adam on CPU needs 2.4)."""
    deps = _project()["dependencies"]
    floor = next(d for d in deps if d.startswith("torch"))
    assert floor == "torch>=" + ".".join(map(str, TORCH_FLOOR)) and TORCH_FLOOR >= (2, 4)
    check_torch_version(torch.__version__)
    check_torch_version("2.4.0")
    with pytest.raises(ImportError, match=r"eventprop needs torch >= 2.4, found torch 2.3.1"):
        check_torch_version("2.3.1")
    with pytest.raises(ImportError, match="cannot read the torch version"):
        check_torch_version("nightly")


def test_packaging_metadata() -> None:
    """Licence in PEP 639 form with its file; build outputs ignored."""
    project = _project()
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert "build/" in (ROOT / ".gitignore").read_text().split()


def test_help_needs_no_torch() -> None:
    """``eventprop --help`` and ``eventprop train TASK --help`` answer without importing torch;
    the lazy package still hands out every public name."""
    code = """
import sys
import eventprop
from eventprop.cli import main
for argv in (["--help"], ["train", "--help"], ["train", "yinyang", "--help"], ["train", "digits", "--help"]):
    try:
        main(argv)
    except SystemExit as exit:
        assert exit.code == 0, argv
assert "torch" not in sys.modules, "torch was imported"
assert set(eventprop.__all__) <= set(dir(eventprop))
from eventprop import *  # noqa: F403
assert eventprop.LIFLayer.__name__ == "LIFLayer" and "torch" in sys.modules
assert eventprop.training.checkpoints.load_checkpoint  # submodules as attributes
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def _children(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:  # the process ended meanwhile
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has ended


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the process table from /proc")
def test_seed_workers_end_when_the_parent_is_killed(tmp_path: Path) -> None:
    """SIGKILL on a multi-seed run's parent ends its workers too (they would train on otherwise)."""
    import signal
    import time

    argv = ["--epochs", "100000", "--train-size", "64", "--val-size", "32", "--hidden", "10", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    parent = subprocess.Popen(
        [sys.executable, "-m", "eventprop", "train", "yinyang", *argv, "--seeds", "2", "--workers", "2", "--out", str(tmp_path)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while not all((tmp_path / f"seed_{k}" / "checkpoint.pt").exists() for k in range(2)):
            assert parent.poll() is None and time.monotonic() < deadline, "the run did not start training"
            time.sleep(0.2)
        workers = [pid for pid in _children(parent.pid) if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
        assert len(workers) == 2
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 30
        while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_running(pid) for pid in workers), "a seed worker outlived its killed parent"
    finally:
        parent.kill()
        for pid in workers:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
