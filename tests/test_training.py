"""Trainer and CLI: a one-epoch smoke run, exact resume, evaluation, one-line errors."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from eventprop.cli import main
from eventprop.training import build_model, encode, preset_config, train
from eventprop.training.activity import bump_first_silent, silent_counts
from eventprop.training.network import forward_layers, readout_of

SMALL = ["--train-size", "96", "--val-size", "64", "--hidden", "20", "--quiet"]


def _metrics(path: Path) -> list[dict[str, str]]:
    with open(path / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_cli_one_epoch_smoke(tmp_path: Path) -> None:
    """The README's main job, one short epoch, through the console entry point."""
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "eventprop", "train", "yinyang", "--epochs", "1", "--out", str(out), *SMALL],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout
    rows = _metrics(out)
    assert len(rows) == 1 and set(rows[0]) >= {"train_loss", "val_accuracy", "hidden1_spikes", "hidden1_silent", "output_spikes", "output_silent", "seconds"}
    summary = json.loads((out / "summary.json").read_text())
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert (out / "training.png").stat().st_size > 0
    assert (out / "checkpoint.pt").exists() and (out / "best.pt").exists()


@pytest.mark.parametrize("ema,jitter,dropout", [(0.0, 0.0, 0.0), (0.9, 0.5, 0.2)])
def test_resume_gives_the_same_numbers(tmp_path: Path, ema: float, jitter: float, dropout: float) -> None:
    kw = {"train_size": 64, "val_size": 32, "hidden": 12, "batch_size": 16, "ema": ema, "jitter": jitter, "input_dropout": dropout}
    straight = train(preset_config("best", epochs=2, **kw), tmp_path / "a", progress=False, log=lambda s: None)
    train(preset_config("best", epochs=1, **kw), tmp_path / "b", progress=False, log=lambda s: None)
    resumed = train(preset_config("best", epochs=2, **kw), tmp_path / "b", resume=True, progress=False, log=lambda s: None)
    a, b = _metrics(tmp_path / "a"), _metrics(tmp_path / "b")
    for ra, rb in zip(a, b):
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "hidden1_spikes"):
            assert ra[key] == rb[key], key
    assert straight["test_accuracy"] == resumed["test_accuracy"]
    assert len(b) == 2


def test_resume_refuses_a_different_configuration(tmp_path: Path) -> None:
    kw = {"train_size": 32, "val_size": 16, "hidden": 8}
    train(preset_config("best", epochs=1, **kw), tmp_path, progress=False, log=lambda s: None)
    with pytest.raises(ValueError, match="configuration differs"):
        train(preset_config("best", epochs=1, lr=1.0, **kw), tmp_path, resume=True, progress=False, log=lambda s: None)


def test_evaluate_split_and_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "yinyang", "--epochs", "1", "--out", str(out), *SMALL]) == 0
    assert main(["evaluate", str(out / "best.pt"), "--split", "validation"]) == 0
    assert "on 1000 points of the validation split" in capsys.readouterr().out
    x = np.random.default_rng(0).uniform(0, 1, size=(10, 2))
    np.save(tmp_path / "X.npy", np.concatenate([x, 1 - x], axis=1))
    np.save(tmp_path / "y.npy", np.zeros(10, dtype=np.int64))
    assert main(["evaluate", str(out / "best.pt"), "--inputs", str(tmp_path / "X.npy"), "--labels", str(tmp_path / "y.npy")]) == 0
    assert "on 10 points" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["evaluate", "missing.pt"], "does not exist"),
        (["train", "yinyang", "--preset", "nope"], "preset must be one of"),
        (["train", "yinyang", "--epochs", "0"], "--epochs: epochs must be a positive int"),
        (["train", "yinyang", "--device", "cuda"], "CUDA is not available"),
        (["train", "yinyang", "--device", "foo"], "device must be 'cpu' or 'cuda[:N]', got 'foo'"),
        (["train", "yinyang", "--device", "meta"], "device must be 'cpu' or 'cuda[:N]', got 'meta'"),
        (["train", "yinyang", "--workers", "-1"], "--workers must be a positive int"),
        (["train", "yinyang", "--hidden-init", "1", "nan"], "--hidden-init: hidden_init[1] (a std) must be finite and non-negative"),
        (["train", "yinyang", "--seed", str(10**20)], "--seed: seed must lie in 0..9223372036853775804"),
        (["train", "yinyang", "--seed", "-1"], "--seed: seed must lie in 0..9223372036853775804"),
        (["train", "yinyang", "--out", "/dev/null/sub", "--epochs", "1", "--train-size", "8", "--val-size", "8"],
         "output folder '/dev/null/sub' (--out) cannot be created: Not a directory"),
        (["train", "yinyang", "--hidden-init", "0", "-1"], "hidden_init[1] (a std) must be finite and non-negative"),
        (["train", "yinyang", "--output-init", "nan", "1"], "output_init[0] (a mean) must be finite"),
        (["train", "yinyang", "--grad-clip", "nan"], "grad_clip must be finite and non-negative"),
        (["train", "yinyang", "--bump", "inf"], "bump must be finite and non-negative"),
        (["train", "yinyang", "--tau-syn", "0"], "tau_syn must be finite and positive"),
    ],
)
def test_bad_input_is_one_line_error(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_evaluate_rejects_wrong_feature_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "yinyang", "--epochs", "1", "--out", str(out), *SMALL]) == 0
    capsys.readouterr()
    np.save(tmp_path / "X.npy", np.zeros((5, 3)))
    np.save(tmp_path / "y.npy", np.zeros(5, dtype=np.int64))
    assert main(["evaluate", str(out / "best.pt"), "--inputs", str(tmp_path / "X.npy"), "--labels", str(tmp_path / "y.npy")]) == 2
    assert "--inputs must have shape (n, 4)" in capsys.readouterr().err


def test_bumping_raises_only_the_first_too_silent_layer() -> None:
    config = preset_config("paper", hidden=4)
    model = build_model(config, 5, 3)
    inf = math.inf
    quiet_hidden = torch.tensor([[[1.0], [inf], [inf], [2.0]]])  # 50 % silent > 15 %
    active_hidden = torch.tensor([[[1.0], [2.0], [3.0], [4.0]]])
    quiet_output = torch.tensor([[[1.0], [inf], [2.0]]])  # any silence > 0 %
    active_output = torch.tensor([[[1.0], [2.0], [3.0]]])
    cases = [
        (quiet_hidden, quiet_output, 0),  # the hidden layer first; the output waits
        (active_hidden, quiet_output, 1),
        (active_hidden, active_output, None),
    ]
    limits = [config.max_silent_hidden[0], config.max_silent_output]
    for hidden_out, output_out, expected in cases:
        before = [layer.weight.detach().clone() for layer in model]
        assert bump_first_silent(list(model), [hidden_out, output_out], limits, config.bump) == expected
        for k, (layer, old) in enumerate(zip(model, before)):
            shift = config.bump if k == expected else 0.0
            assert torch.allclose(layer.weight.detach(), old + shift, rtol=0, atol=1e-15)


def test_bumping_fraction_is_the_float32_mean_alone_and_across_processes() -> None:
    """At 6000 silent of 40000 pairs the float32 fraction (0.15000000596) exceeds 0.15:
    one process bumps, as it always did, and so does a split over two processes."""
    config = preset_config("paper", hidden=200)
    model = build_model(config, 5, 3)
    out = torch.zeros(200, 200, 1)
    out.view(-1)[:6000] = math.inf
    limits = [0.15]
    assert bump_first_silent(list(model)[:1], [out], limits, config.bump) == 0
    halves = [out[:100], out[100:]]
    totals = sum(silent_counts([h], 1) for h in halves)
    assert bump_first_silent(list(model)[:1], [halves[0]], limits, config.bump, total=lambda _local: totals) == 0
    out.view(-1)[5999] = 0.0  # 5999 / 40000 < 0.15
    assert bump_first_silent(list(model)[:1], [out], limits, config.bump) is None


def test_silent_label_push_gives_silent_label_neurons_a_gradient() -> None:
    config = preset_config("best", hidden=30, silent_push=0.5)
    model = build_model(config, 5, 3)
    with torch.no_grad():
        model[1].weight[0] = 3.0  # class 0's neuron fires for every sample
        model[1].weight[2] = 0.01  # class 2's neuron stays below threshold
    x = encode(config, np.array([[0.2, 0.7, 0.8, 0.3], [0.6, 0.1, 0.4, 0.9], [0.5, 0.5, 0.5, 0.5]]))
    labels = torch.tensor([2, 0, 2])
    readout = readout_of(config)
    outs = forward_layers(model, readout, x)
    assert torch.isinf(outs[-1][:, 2, 0]).all() and torch.isfinite(outs[-1][:, 0, 0]).all()
    # The spike-time loss alone: no gradient reaches the silent label neuron's weights.
    (g_loss,) = torch.autograd.grad(readout.loss(outs[-1], labels), model[1].weight, retain_graph=True)
    assert g_loss[2].abs().max() == 0
    push = readout.auxiliary_loss(model[1], outs[0], outs[1], labels)
    assert push is not None and 0 < push.item() < 0.5 * 2 / 3 * 1.0 + 1e-12
    (g_push,) = torch.autograd.grad(push, model[1].weight)
    assert (g_push[2] <= 0).all() and g_push[2].min() < 0  # descent raises the silent neuron's weights
    assert g_push[[0, 1]].abs().max() <= 1e-12 * g_push[2].abs().max()  # other neurons: zero up to rounding
    assert readout.auxiliary_loss(model[1], outs[0], outs[1], torch.tensor([0, 0, 0])) is None  # every label neuron fires
    off = readout_of(preset_config("best", hidden=30, silent_push=0.0))
    assert off.auxiliary_loss(model[1], outs[0], outs[1], labels) is None


def test_input_dropout_deletes_that_share_of_the_spikes_and_keeps_the_trains_sorted() -> None:
    from eventprop.training.loop import _augment

    times = torch.rand(200, 50, 3, dtype=torch.float64).sort(dim=-1).values
    times[:, :, 2] = math.inf
    out = _augment(times, 0.0, 0.25, torch.Generator().manual_seed(0))
    kept = torch.isfinite(out).sum().item() / torch.isfinite(times).sum().item()
    assert abs(kept - 0.75) < 0.01
    assert (out[..., 1:] >= out[..., :-1]).all()  # ascending, deletions padded at the end
    assert set(out[torch.isfinite(out)].tolist()) <= set(times[torch.isfinite(times)].tolist())
    assert _augment(times, 0.0, 0.0, torch.Generator()) is times
    with pytest.raises(ValueError, match="input_dropout"):
        preset_config("best", input_dropout=1.0).validate()
