"""The trainer builds any stack: several hidden layers, feed-forward or recurrent, either readout;
configuration fields, their CLI flags and deprecated spellings."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import eventprop
from eventprop import LIFLayer, LIReadout
from eventprop.cli import main
from eventprop.training import READOUTS, FirstSpikeReadout, TrainConfig, VoltageReadout, build_model, preset_config, train
from eventprop.training.config import cli_fields, config_from_dict
from eventprop.training.network import readout_of
from eventprop.training.outputs import read_metrics

QUIET = {"progress": False, "log": lambda s: None}


@pytest.mark.parametrize("readout", list(READOUTS))
def test_two_hidden_layers_one_recurrent_train_and_resume_exactly(tmp_path: Path, readout: str) -> None:
    kw = {"train_size": 48, "val_size": 24, "hidden": (12, 8), "recurrent": (False, True), "batch_size": 16,
          "hidden_init": (1.5, 0.78, 1.0, 0.5), "readout": readout, "bump": 1e-3, "max_silent_hidden": (0.5, 0.9)}  # fmt: skip
    straight = train(preset_config("best", epochs=2, **kw), tmp_path / "a", **QUIET)
    train(preset_config("best", epochs=1, **kw), tmp_path / "b", **QUIET)
    resumed = train(preset_config("best", epochs=2, **kw), tmp_path / "b", resume=True, **QUIET)
    assert straight["test_accuracy"] == resumed["test_accuracy"]
    rows = read_metrics(tmp_path / "a" / "metrics.csv")
    resumed_rows = read_metrics(tmp_path / "b" / "metrics.csv")
    assert len(resumed_rows) == 2
    assert all(ra[k] == rb[k] for ra, rb in zip(rows, resumed_rows) for k in ra if k != "seconds")
    spiking = {"hidden1", "hidden2"} | ({"output"} if readout == "first-spike" else set())
    assert {k.rsplit("_", 1)[0] for k in rows[0] if k.endswith(("_spikes", "_silent")) and k != "tangential_spikes"} == spiking
    assert rows[-1]["hidden2_spikes"] > 0


def test_build_model_follows_the_configuration() -> None:
    config = preset_config("best", hidden=(6, 5, 4), recurrent=(True,), hidden_init=(1.0, 0.1), recurrent_init=(0.0, 0.2, 0.1, 0.3, 0.2, 0.4))
    model = build_model(config, 5, 3)
    assert [type(m) for m in model] == [LIFLayer, LIFLayer, LIFLayer, LIFLayer]
    assert [(m.in_features, m.out_features, m.recurrent) for m in model] == [(5, 6, True), (6, 5, True), (5, 4, True), (4, 3, False)]
    voltage = build_model(dataclasses.replace(config, readout="voltage"), 5, 3)
    assert isinstance(voltage[-1], LIReadout) and voltage[-1].window == config.window
    assert readout_of(config) == FirstSpikeReadout(config.tau0, config.tau1, config.alpha, config.t_silent, config.silent_push)
    assert readout_of(dataclasses.replace(config, readout="voltage")) == VoltageReadout(config.window, config.voltage_scale)


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"hidden": ()}, "hidden must name at least one"),
        ({"hidden": (4, 0)}, r"hidden\[1\] must be a positive int"),
        ({"hidden": (4, 4, 4), "recurrent": (True, False)}, "recurrent needs one value for all 3 hidden layers or one per layer"),
        ({"hidden": (4, 4), "hidden_init": (1.0, 0.5, 2.0)}, r"hidden_init needs one MEAN STD pair .* \(2 or 4 values\), got 3 values"),
        ({"hidden_init": (1.0, -0.5)}, r"hidden_init\[1\] \(a std\) must be finite and non-negative"),
        ({"max_silent_hidden": (1.5,)}, r"max_silent_hidden\[0\] must be finite and lie in \[0, 1\]"),
        ({"engine": "gpu"}, "engine must be 'auto' or one of"),
        ({"lr": "a"}, "lr must be a real number, got 'a'"),
        ({"seed": 1.5}, "seed must be an int"),
    ],
)
def test_bad_configuration_names_the_field(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        preset_config("best", **fields).validate()


def test_an_engine_that_cannot_serve_a_layer_of_the_network_is_refused_before_training(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import eventprop.engines as engines
    from eventprop.engines.numba_cpu import NumbaEngine

    class FeedForwardOnly(NumbaEngine):
        name = "ff-only"
        kinds = frozenset({engines.LayerKind.FEEDFORWARD})

    monkeypatch.setitem(engines._REGISTRY, "ff-only", FeedForwardOnly())
    engines._select.cache_clear()
    try:
        preset_config("best", engine="ff-only", silent_push=0.0).validate()
        with pytest.raises(ValueError, match="engine: engine='ff-only' cannot serve a recurrent layer"):
            preset_config("best", engine="ff-only", silent_push=0.0, recurrent=(True,)).validate()
        with pytest.raises(ValueError, match="engine: engine='ff-only' cannot serve a trajectory layer"):
            preset_config("best", engine="ff-only", silent_push=0.5).validate()  # the push needs a trajectory
    finally:
        engines._select.cache_clear()


def test_deprecated_field_names_still_work_and_warn() -> None:
    with pytest.warns(DeprecationWarning, match="silent_hidden is deprecated, use max_silent_hidden"):
        config = preset_config("paper", silent_hidden=0.3)
    assert config.max_silent_hidden == (0.3,)
    saved = {k: v for k, v in dataclasses.asdict(config).items() if k != "t_first"}  # as written before the rename
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a saved file: mapped silently, the user cannot edit it
        old = config_from_dict({**saved, "t_min": 5.0, "hidden": 7})
    assert old.t_first == 5.0 and "t_min" not in dataclasses.asdict(old) and old.hidden == (7,)
    with pytest.raises(ValueError, match="unknown configuration fields: bogus"):
        preset_config("best", bogus=1)


def test_every_flag_comes_from_one_field_declaration() -> None:
    flags = {"--" + f.name.replace("_", "-") for f in cli_fields()}
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert {f.name for f in cli_fields()} == names - {"task", "preset"}
    assert all(f.metadata["help"] for f in cli_fields())
    proc = subprocess.run([sys.executable, "-m", "eventprop", "train", "yinyang", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert all(flag in proc.stdout for flag in flags)
    help_text = " ".join(proc.stdout.split())
    assert "[best: 100; paper: 1200]" in help_text  # --epochs: the task's preset values
    assert "best: 400 (voltage readout 200); paper: 200" in help_text  # --hidden per preset and readout
    digits = subprocess.run([sys.executable, "-m", "eventprop", "train", "digits", "--help"], capture_output=True, text=True, timeout=120)
    assert "[best: 50]" in " ".join(digits.stdout.split())


def test_cli_deprecated_flags_work_with_a_notice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["train", "yinyang", "--epochs", "1", "--train-size", "32", "--val-size", "16", "--hidden", "6", "3",
            "--recurrent", "--quiet", "--t-max", "25", "--silent-hidden", "0.5", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "--t-max is deprecated, use --t-last" in captured.err
    saved = eventprop.training.checkpoints.load_checkpoint(out / "checkpoint.pt")[1]
    assert saved.t_last == 25.0 and saved.max_silent_hidden == (0.5,) and saved.hidden == (6, 3) and saved.recurrent == (True,)
    assert main([*argv[:-2], "--t-last", "25", "--out", str(tmp_path / "x")]) == 2
    assert "pass --t-last only" in capsys.readouterr().err


def test_resume_names_the_fields_that_differ(tmp_path: Path) -> None:
    kw = {"train_size": 32, "val_size": 16, "hidden": (8,)}
    train(preset_config("best", epochs=1, **kw), tmp_path, **QUIET)
    match = r"differs from the one in .* in lr \(checkpoint 0\.005, now 1\.0\); hidden \(checkpoint \(8,\), now \(9,\)\) "
    with pytest.raises(ValueError, match=match):
        train(preset_config("best", epochs=1, lr=1.0, **{**kw, "hidden": (9,)}), tmp_path, resume=True, **QUIET)


def test_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    assert eventprop.__version__ == version("eventprop")


def test_deprecated_layer_and_encoder_names() -> None:
    with pytest.warns(DeprecationWarning, match="t_max= is deprecated, use horizon="):
        layer = LIFLayer(2, 2, tau_mem=20.0, tau_syn=5.0, t_max=30.0)
    assert layer.horizon == 30.0
    with pytest.warns(DeprecationWarning, match="LIFLayer.t_max is deprecated"):
        assert layer.t_max == 30.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LIFLayer(2, 2, tau_mem=20.0, tau_syn=5.0, horizon=30.0)  # the current name: no warning
    with pytest.warns(DeprecationWarning, match="lif_layer: t_max= is deprecated"):
        eventprop.lif_layer(torch.zeros(1, 2, 1), layer.weight.detach(), tau_mem=20.0, tau_syn=5.0, t_max=3.0)


def test_a_checkpoint_of_the_previous_format_is_refused_on_resume_and_its_model_still_loads(tmp_path: Path) -> None:
    from eventprop.training import load_model

    kw = {"train_size": 32, "val_size": 16, "hidden": (8,)}
    train(preset_config("best", epochs=1, **kw), tmp_path, **QUIET)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    old = {k: v for k, v in state.items() if k not in ("format", "sha256")}  # as written before per-layer metrics
    old["config"] = {("silent_hidden" if k == "max_silent_hidden" else k): v for k, v in old["config"].items()}
    torch.save(old, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="holds format 1, this version resumes format 2 checkpoints only"):
        train(preset_config("best", epochs=2, **kw), tmp_path, resume=True, **QUIET)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a saved file with old field names loads without warnings
        model, config = load_model(tmp_path / "checkpoint.pt")
    assert config.max_silent_hidden == (1.0,) and model[0].weight.shape == (8, 5)


def test_train_config_accepts_and_reads_the_deprecated_field_names() -> None:
    with pytest.warns(DeprecationWarning) as caught:
        config = TrainConfig(t_max=25.0, silent_output=0.2)
    assert sorted(str(w.message) for w in caught) == [
        "TrainConfig: silent_output is deprecated, use max_silent_output",
        "TrainConfig: t_max is deprecated, use t_last",
    ]
    assert caught[0].filename == __file__  # attributed to the caller
    assert config.t_last == 25.0 and config.max_silent_output == 0.2
    assert "t_max" not in dataclasses.asdict(config)
    with pytest.warns(DeprecationWarning, match="TrainConfig.silent_output is deprecated"):
        assert config.silent_output == 0.2
    assert dataclasses.replace(config, epochs=3).t_last == 25.0


def test_recurrent_init_without_a_recurrent_layer_is_an_error() -> None:
    with pytest.raises(ValueError, match="recurrent_init is set but no hidden layer is recurrent"):
        preset_config("best", recurrent_init=(0.0, 0.1)).validate()


def test_engine_names_the_engine_of_every_layer_and_trajectory(tmp_path: Path) -> None:
    config = preset_config("best", engine="torch", train_size=32, val_size=16, hidden=(8,), epochs=1)
    config.validate()
    model = build_model(config, 5, 3)
    assert [m.engine for m in model] == ["torch", "torch"]
    assert build_model(dataclasses.replace(config, readout="voltage"), 5, 3)[-1].engine == "torch"
    numba = dataclasses.replace(config, engine="numba")
    numba.validate()
    train(numba, tmp_path, **QUIET)
