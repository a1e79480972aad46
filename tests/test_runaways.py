"""A runaway network stops with the numbers instead of running for ever (default spike budget)."""

from __future__ import annotations

import math

import pytest
import torch

from eventprop import LIFLayer, SpikeLimitError, lif_layer
from eventprop.cli import main
from eventprop.errors import DEFAULT_MAX_SPIKES
from helpers import F64, FEEDFORWARD_ENGINES, RECURRENT_ENGINES

ONE_INPUT = torch.tensor([[[1.0]]], dtype=F64)


@pytest.mark.parametrize("engine", RECURRENT_ENGINES)
@pytest.mark.parametrize("horizon", [math.inf, 1000.0])
def test_an_excitatory_recurrent_pair_raises_the_default_budget(engine: str, horizon: float) -> None:
    weight = torch.tensor([[20.0], [0.0]], dtype=F64)
    rec = torch.tensor([[0.0, 20.0], [20.0, 0.0]], dtype=F64)
    with pytest.raises(SpikeLimitError, match=r"neuron [01] of sample 0 emitted more than max_spikes=1000 spikes \(by t = "):
        lif_layer(ONE_INPUT, weight, rec, tau_mem=20.0, tau_syn=5.0, horizon=horizon, engine=engine)


@pytest.mark.parametrize("engine", FEEDFORWARD_ENGINES)
@pytest.mark.parametrize("weight,threshold", [(1e6, 1.0), (1.0, 1e-300)])
def test_huge_drive_or_tiny_threshold_raises_the_default_budget(engine: str, weight: float, threshold: float) -> None:
    w = torch.tensor([[0.0], [weight]], dtype=F64)  # neuron 0 silent, neuron 1 runs away
    with pytest.raises(SpikeLimitError, match="neuron 1 of sample 0 emitted more than max_spikes=1000"):
        lif_layer(ONE_INPUT, w, tau_mem=20.0, tau_syn=5.0, threshold=threshold, engine=engine)


@pytest.mark.parametrize("engine", FEEDFORWARD_ENGINES)
def test_the_budget_can_be_raised_or_lifted(engine: str) -> None:
    w = torch.tensor([[6000.0]], dtype=F64)  # 1,498 spikes: over the default budget, finite
    with pytest.raises(SpikeLimitError):
        lif_layer(ONE_INPUT, w, tau_mem=20.0, tau_syn=5.0, engine=engine)
    out = lif_layer(ONE_INPUT, w, tau_mem=20.0, tau_syn=5.0, max_spikes=None, engine=engine)
    n = int(torch.isfinite(out).sum())
    assert n > DEFAULT_MAX_SPIKES
    assert torch.equal(out, lif_layer(ONE_INPUT, w, tau_mem=20.0, tau_syn=5.0, max_spikes=n, engine=engine))
    assert LIFLayer(1, 1, tau_mem=20.0, tau_syn=5.0).max_spikes == DEFAULT_MAX_SPIKES


@pytest.mark.parametrize(
    "flags",
    [["--hidden-init", "1e6", "0"], ["--threshold", "1e-300"], ["--hidden", "4", "--recurrent", "--recurrent-init", "30", "0"]],
)
def test_the_cli_turns_a_runaway_into_a_one_line_error(flags: list[str], tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    argv = ["train", "yinyang", "--epochs", "1", "--train-size", "8", "--val-size", "8", "--batch-size", "8", "--hidden", "6"]
    argv += ["--quiet", "--out", str(tmp_path / "run"), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "emitted more than max_spikes=1000 spikes" in err and "--max-spikes" in err and "\n" not in err


@pytest.mark.parametrize("engine", FEEDFORWARD_ENGINES)
@pytest.mark.parametrize("name,value", [("tau_mem", 1e-300), ("tau_mem", 1e300), ("tau_syn", 1e-300), ("tau_syn", 1e300), ("threshold", 1e300)])
def test_extreme_constants_give_finite_answers_or_the_budget_error(engine: str, name: str, value: float) -> None:
    """No ZeroDivisionError, math domain error, NaN or hang at any positive constant."""
    x = torch.tensor([[[1.0], [3.0]]], dtype=F64, requires_grad=True)
    w = torch.tensor([[2.0, 1.5]], dtype=F64, requires_grad=True)
    kw = {"tau_mem": 20.0, "tau_syn": 5.0, "threshold": 1.0, name: value}
    try:
        out = lif_layer(x, w, engine=engine, max_spikes=50, **kw)  # a small budget keeps the runaway cases short
    except SpikeLimitError:
        return
    assert not torch.isnan(out).any()
    grads = torch.autograd.grad(torch.where(torch.isfinite(out), out, 0.0).sum(), [x, w])
    assert all(torch.isfinite(g).all() for g in grads)
    if value > 1 and name in ("tau_mem", "threshold"):  # no leak to speak of, or an unreachable threshold: silent
        assert torch.isinf(out).all()
