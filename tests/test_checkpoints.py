"""Checkpoints: every corrupt or foreign file is a one-line error before any training, a
flipped bit is detected, a second run on the same folder refuses to start, nothing runs code."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from eventprop.cli import main
from eventprop.training import preset_config, train
from eventprop.training.checkpoints import RunLock, content_hash, load_checkpoint

KW = {"train_size": 32, "val_size": 16, "hidden": (6,), "batch_size": 16}
QUIET = {"progress": False, "log": lambda s: None}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    train(preset_config("best", epochs=1, **KW), out, **QUIET)
    return out


class _Evil:
    def __reduce__(self):  # noqa: ANN204
        return (print, ("code ran",))


def _corruptions(good: bytes) -> dict[str, object]:
    return {
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "random": bytes(range(256)) * 64,
        "a list": "list",
        "a pickle with code": "evil",
        "a folder": "folder",
    }


@pytest.mark.parametrize("kind", list(_corruptions(b"")))
def test_a_corrupt_or_foreign_checkpoint_is_a_one_line_error(run: Path, tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "copy"
    out.mkdir()
    good = (run / "checkpoint.pt").read_bytes()
    bad = _corruptions(good)[kind]
    path = out / "checkpoint.pt"
    if bad == "folder":
        path.mkdir()
    elif bad == "list":
        torch.save([1, 2, 3], path)
    elif bad == "evil":
        path.write_bytes(pickle.dumps(_Evil()))
    else:
        path.write_bytes(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError) as caught:
        train(preset_config("best", epochs=2, **KW), out, resume=True, **QUIET)
    message = str(caught.value)
    assert "checkpoint" in message and str(path) in message and "\n" not in message
    assert not (out / "metrics.csv").exists()  # refused before any training
    capsys.readouterr()
    assert main(["evaluate", str(path)]) == 2
    err = capsys.readouterr()
    assert "code ran" not in err.out  # weights_only: the pickle's code never runs
    assert err.err.count("\n") == 1 and "eventprop: error: checkpoint" in err.err


def test_a_flipped_bit_in_a_weight_is_detected(run: Path, tmp_path: Path) -> None:
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["sha256"] == content_hash(state)
    weight = state["model"]["0.weight"]
    bits = weight.view(torch.int64)
    bits[0, 0] ^= 1  # the least significant bit of one float64
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="is corrupt: its content does not match its SHA-256 hash"):
        load_checkpoint(tmp_path / "checkpoint.pt")
    for name in ("best.pt", "checkpoint.pt"):
        load_checkpoint(run / name)  # the untouched files pass


def test_a_second_run_on_the_same_folder_refuses_to_start(run: Path, tmp_path: Path) -> None:
    with RunLock(tmp_path):
        with pytest.raises(ValueError, match=r"is in use by another run \(pid \d+\)"):
            train(preset_config("best", epochs=1, **KW), tmp_path, **QUIET)
        assert not (tmp_path / "metrics.csv").exists()
    train(preset_config("best", epochs=1, **KW), tmp_path, **QUIET)  # released: it runs


def test_resume_without_a_checkpoint_says_so(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds no checkpoint.pt to continue from"):
        train(preset_config("best", epochs=1, **KW), tmp_path, resume=True, **QUIET)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        train(preset_config("best", epochs=1, **KW), tmp_path / "file", **QUIET)


def _tampered(state: dict, kind: str) -> dict:
    state = dict(state)
    if kind == "model not a dict":
        state["model"] = [1, 2]
    elif kind == "unknown task":
        state["config"] = {**state["config"], "task": "nope"}
    elif kind == "no generator state":
        del state["shuffle_rng"]
    elif kind == "negative epoch":
        state["epoch"] = -1
    elif kind == "another optimiser":
        opt = state["optimizer"]
        state["optimizer"] = {**opt, "param_groups": [{**opt["param_groups"][0], "params": [0]}]}
    state["sha256"] = content_hash(state)  # consistent: only the checks on the content can catch these
    return state


@pytest.mark.parametrize(
    "kind,message",
    [
        ("model not a dict", "its model is not a dict of tensors"),
        ("unknown task", "holds a configuration this version cannot read (task must be one of"),
        ("no generator state", "is not a complete checkpoint (it has no 'shuffle_rng')"),
        ("negative epoch", "'epoch' must be an epoch index >= 0"),
        ("another optimiser", "does not fit this run's model, optimiser or generators"),
        ("no best.pt", "best.pt' does not exist"),
    ],
)
def test_a_well_hashed_checkpoint_with_wrong_content_is_a_one_line_error_before_training(
    run: Path, tmp_path: Path, kind: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "copy"
    out.mkdir()
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    if kind != "no best.pt":
        (out / "best.pt").write_bytes((run / "best.pt").read_bytes())
        state = _tampered(state, kind)
    torch.save(state, out / "checkpoint.pt")
    (out / "metrics.csv").write_text("untouched")
    with pytest.raises(ValueError) as caught:
        train(preset_config("best", epochs=2, **KW), out, resume=True, **QUIET)
    assert message in str(caught.value) and "checkpoint.pt" in str(caught.value).replace("best.pt", "checkpoint.pt")
    assert "\n" not in str(caught.value) and (out / "metrics.csv").read_text() == "untouched"  # before any training
    if kind in ("model not a dict", "unknown task"):  # the model itself is unusable: evaluate says so too
        capsys.readouterr()
        assert main(["evaluate", str(out / "checkpoint.pt")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err
