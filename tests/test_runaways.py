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
    with pytest.raises(SpikeLimitError, match=r"neuron 1 of sample 0 emitted more than max_spikes=1000 spikes \(by t = 1"):
        lif_layer(ONE_INPUT, w, tau_mem=20.0, tau_syn=5.0, threshold=threshold, engine=engine)


@pytest.mark.parametrize("engine", FEEDFORWARD_ENGINES)
def test_the_budget_can_be_raised_or_lifted(engine: str) -> None:
    w = torch.tensor([[6000.0]], dtype=F64)  # 1,498 spikes: over the default budget, finite
    with pytest.raises(SpikeLimitError, match=r"\(by t = \d"):  # the time reached, also when few were stored
        lif_layer(ONE_INPUT, w, tau_mem=20.0, tau_syn=5.0, engine=engine)
    out = lif_layer(ONE_INPUT, w, tau_mem=20.0, tau_syn=5.0, max_spikes=None, engine=engine)
    n = int(torch.isfinite(out).sum())
    assert n > DEFAULT_MAX_SPIKES
    assert torch.equal(out, lif_layer(ONE_INPUT, w, tau_mem=20.0, tau_syn=5.0, max_spikes=n, engine=engine))
    few = torch.tensor([[30.0]], dtype=F64)
    unlimited = lif_layer(ONE_INPUT, few, tau_mem=20.0, tau_syn=5.0, max_spikes=None, engine=engine)
    assert int(torch.isfinite(unlimited).sum()) > 3
    for huge in (2**63, 10**20):  # beyond int64: the same as no limit, never an OverflowError
        assert torch.equal(unlimited, lif_layer(ONE_INPUT, few, tau_mem=20.0, tau_syn=5.0, max_spikes=huge, engine=engine))
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


def test_the_cli_accepts_a_budget_beyond_int64(tmp_path) -> None:  # noqa: ANN001
    argv = ["train", "yinyang", "--epochs", "1", "--train-size", "8", "--val-size", "8", "--batch-size", "8", "--hidden", "6"]
    assert main([*argv, "--quiet", "--out", str(tmp_path / "run"), "--max-spikes", str(10**20), "--engine", "numba"]) == 0


@pytest.mark.parametrize("engine", FEEDFORWARD_ENGINES)
@pytest.mark.parametrize("tau_mem,tau_syn", [(1e200, 1e200), (1e300, 1e300), (1e-300, 1e-300), (1e300, 1e299), (1e299, 1e-1)])
def test_extreme_pairs_of_time_constants_agree_with_the_closed_form(engine: str, tau_mem: float, tau_syn: float) -> None:
    """Once a ZeroDivisionError (numba: a Halley denominator underflowing to zero).
    Equal time constants: V = I (t / tau) exp(-t / tau) peaks at I / e, so 2 + 1.5 fires
    (at tau x the root of x exp(-x) = 1 / 3.5) only where the current has not decayed."""
    x = torch.tensor([[[1.0], [3.0]]], dtype=F64, requires_grad=True)
    w = torch.tensor([[2.0, 1.5]], dtype=F64, requires_grad=True)
    out = lif_layer(x, w, tau_mem=tau_mem, tau_syn=tau_syn, engine=engine)
    (gw,) = torch.autograd.grad(torch.where(torch.isfinite(out), out, 0.0).sum(), [w])
    assert torch.isfinite(gw).all()
    if tau_mem == tau_syn and tau_mem > 1:
        x_root = 0.4465426855126359  # x exp(-x) = 1 / 3.5, the smaller root (mpmath)
        assert int(torch.isfinite(out).sum()) == 1 and abs(float(out[0, 0, 0].detach()) / (x_root * tau_mem) - 1) < 1e-12
    else:
        assert torch.isinf(out).all() and torch.equal(gw, torch.zeros_like(gw))


@pytest.mark.parametrize("engine", FEEDFORWARD_ENGINES)
@pytest.mark.parametrize("tau_mem", [1e-9, 1e-20, 1e-50, 1e-300])
def test_a_voltage_that_follows_the_current_runs_away_at_the_input(engine: str, tau_mem: float) -> None:
    """tau_mem << tau_syn: V follows I, which stays above threshold for 0.069 ms after
    the first input, so the neuron fires about 0.069 ms / tau_mem times from t = 1: the
    budget stops it there (the numba engine once decided from the rounding of I - V at
    the interval's end that V peaked nowhere, and fired from the next input on)."""
    x = torch.tensor([[[1.0], [3.0]]], dtype=F64)
    w = torch.tensor([[2.0, 1.5]], dtype=F64)
    with pytest.raises(SpikeLimitError, match=r"max_spikes=300 spikes \(by t = 1\)"):
        lif_layer(x, w, tau_mem=tau_mem, tau_syn=0.1, max_spikes=300, engine=engine)


@pytest.mark.parametrize("tau_mem,tau_syn", [(1e-300, 1e300), (1e300, 1e-300), (1e-160, 1e160), (1e-154, 1e154)])
def test_time_constants_more_than_1e307_apart_are_refused(tau_mem: float, tau_syn: float) -> None:
    with pytest.raises(ValueError, match=r"tau_mem / tau_syn = .* is outside \[1e-307, 1e307\]"):
        lif_layer(ONE_INPUT, torch.ones(1, 1, dtype=F64), tau_mem=tau_mem, tau_syn=tau_syn)


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
