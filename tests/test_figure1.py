"""The paper's Figure 1 set-up: every gradient shown matches central differences to 1e-7."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("matplotlib")

from eventprop.inspection import figure1  # noqa: E402
from eventprop.inspection.figure1 import (  # noqa: E402
    build_network,
    eventprop_gradients,
    figure1_loss,
    finite_difference_gradients,
    relative_deviation,
    run_figure1,
)
from eventprop.inspection.traces import adjoint_traces  # noqa: E402

TOL = 1e-7
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, float], Path]:
    out = tmp_path_factory.mktemp("figure1")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # seed 0 must not be near-critical
        res = run_figure1(out, seed=0)
    return res, out


def test_set_up_is_like_the_paper(result: tuple[dict[str, float], Path]) -> None:
    res, _ = result
    net = build_network(0)
    assert net.inputs.shape[:2] == (1, 100)
    rate = torch.isfinite(net.inputs).sum().item() / 100 / (net.config.duration * 1e-3)
    assert 170 < rate < 230  # 200 Hz Poisson inputs
    assert net.upper.weight.dtype == torch.float64 and net.lower.weight.shape == (1, 1)
    assert res["upper_spikes"] >= 4 and res["lower_spikes"] >= 2  # a figure with something to show
    # Far from critical points: no slow crossing, no near-miss of the threshold.
    assert res["min_crossing_slope"] > 0.1
    assert res["min_subthreshold_margin"] > 1e-2


def test_every_gradient_matches_finite_differences(result: tuple[dict[str, float], Path]) -> None:
    res, out = result
    assert res["input_weights"] < TOL  # worst of the 100 input weights, elementwise relative
    assert res["w"] < TOL
    assert res["shown_input"] < TOL
    assert (out / "figure1.png").read_bytes()[:8] == PNG_MAGIC


def test_batched_differences_equal_plain_ones() -> None:
    """The batched FD (200 perturbed upper neurons at once) against plain layer calls."""
    net = build_network(0)
    fd_inputs, fd_w = finite_difference_gradients(net)
    grads = eventprop_gradients(net)
    i = int(grads.input_weights.abs().argmax())
    eps = net.config.fd_eps

    def loss() -> float:
        with torch.no_grad():
            return float(figure1_loss(net.lower(net.upper(net.inputs))).sum())

    for param, index, expected in ((net.upper.weight, (0, i), float(fd_inputs[i])), (net.lower.weight, (0, 0), fd_w)):
        x = float(param.detach()[index])
        h = eps * max(1.0, abs(x))
        with torch.no_grad():
            param[index] = x + h
        up = loss()
        with torch.no_grad():
            param[index] = x - h
        down = loss()
        with torch.no_grad():
            param[index] = x
        plain = (up - down) / (2 * h)
        assert plain == pytest.approx(expected, rel=1e-8)
        assert relative_deviation(grads.input_weights[i] if param is net.upper.weight else grads.w, plain) < TOL


def test_accumulated_gradients_end_at_the_autograd_gradient() -> None:
    net = build_network(0)
    grads = eventprop_gradients(net)
    grid = torch.tensor([0.0, net.config.duration], dtype=torch.float64)
    upper = adjoint_traces(net.upper, net.inputs, grid, grads.grad_upper_out, out_times=grads.upper_out,
                           weights=[(0, i) for i in range(100)])
    lower = adjoint_traces(net.lower, grads.upper_out, grid, grads.grad_lower_out, out_times=grads.lower_out,
                           weights=[(0, 0)])
    assert torch.allclose(upper.weight_grad[0, :, 0], grads.input_weights, rtol=1e-12, atol=1e-10)
    assert float(lower.weight_grad[0, 0, 0]) == pytest.approx(grads.w, rel=1e-12)
    assert float(upper.weight_grad[..., 1].abs().max()) == 0.0  # nothing accumulated at t = T
    # The loss is the sum of the lower spike times: dL/dt_k = 1 for each of them.
    lower_spikes = torch.isfinite(grads.lower_out)
    assert torch.equal(grads.grad_lower_out[lower_spikes], torch.ones(int(lower_spikes.sum()), dtype=torch.float64))


def test_main_prints_the_deviations(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    seen: dict[str, object] = {}

    def fake(out_dir: Path, seed: int = 0, *, draw: bool = True) -> dict[str, float]:
        seen.update(out_dir=out_dir, seed=seed, draw=draw)
        return {"input_weights": 1.5e-9, "w": 2.5e-10}

    monkeypatch.setattr(figure1, "run_figure1", fake)
    assert figure1.main(["--out", str(tmp_path / "f"), "--seed", "3"]) == 0
    assert seen == {"out_dir": tmp_path / "f", "seed": 3, "draw": True}
    lines = capsys.readouterr().out.splitlines()
    assert float(lines[0].split()[-1]) == 1.5e-9
    assert float(lines[1].split()[-1]) == 2.5e-10
