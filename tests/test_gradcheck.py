"""gradcheck: passes exact EventProp gradients, catches wrong ones and near-critical points."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from eventprop import LIFLayer
from eventprop.inspection.gradcheck import GradcheckReport, gradcheck
from eventprop.model.neuron import NeuronParams, psp_kernel, voltage_extremum
from helpers import F64, random_inputs, spike_weighted_loss


def _model(seed: int = 0, recurrent: bool = True) -> nn.Sequential:
    """Feed-forward 3 -> 5, then a 5 -> 2 layer (recurrent or not); float32 like a user's model."""
    torch.manual_seed(seed)
    return nn.Sequential(
        LIFLayer(3, 5, tau_mem=10.0, tau_syn=5.0, init_mean=1.2, init_std=0.5),
        LIFLayer(5, 2, tau_mem=10.0, tau_syn=5.0, recurrent=recurrent, init_mean=1.0, init_std=0.4, recurrent_init_std=0.3),
    )


def _inputs(seed: int = 1) -> Tensor:
    x = random_inputs(1, 3, 2, 20.0, torch.Generator().manual_seed(seed), p_missing=0.0).float()
    x[0, 0, 0] = 0.0  # a spike at t = 0: one-sided differences for its time
    return x.sort(dim=-1).values


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by ``factor``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, factor: float) -> Tensor:
        ctx.factor = factor
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.factor, None


class _WrongGradient(nn.Module):
    """A LIF network whose backward is scaled by 1.01 (a deliberately wrong gradient)."""

    def __init__(self, inner: nn.Module, factor: float = 1.01) -> None:
        super().__init__()
        self.inner = inner
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return _ScaleGrad.apply(self.inner(x), self.factor)


@pytest.fixture(scope="module")
def report() -> GradcheckReport:
    model = _model()
    x = _inputs()
    with torch.no_grad():
        out = model(x)
    assert torch.isfinite(model[0](x)).sum() >= 4 and torch.isfinite(out).sum() >= 3, "degenerate case: too few spikes"
    return gradcheck(model, x, spike_weighted_loss)


def test_exact_gradients_pass(report: GradcheckReport) -> None:
    assert [e.name for e in report.entries] == ["0.weight", "1.weight", "1.recurrent_weight", "input times"]
    for entry in report.entries:
        assert entry.checked > 0 and entry.max_abs_grad > 0, f"{entry.name}: vacuous check"
    assert report["input times"].checked == int(torch.isfinite(_inputs()).sum())
    assert report.discontinuous == 0
    assert report.max_error < 1e-6
    assert report.ok(1e-6)
    assert not report.ok(0.0)  # the verdict depends on the tolerance


def test_report_table(report: GradcheckReport) -> None:
    text = str(report)
    for name in ("0.weight", "1.recurrent_weight", "input times", "rel. error", "max relative error"):
        assert name in text
    assert report.errors["1.weight"] == report["1.weight"].error
    with pytest.raises(KeyError):
        report["nope"]


def test_model_is_not_modified() -> None:
    model = _model(recurrent=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gradcheck(model, _inputs(), spike_weighted_loss, params=["1.weight"], check_inputs=False)
    for k, v in model.state_dict().items():
        assert v.dtype == torch.float32
        assert torch.equal(v, before[k])
    assert all(p.grad is None for p in model.parameters())


def test_wrong_gradient_is_caught() -> None:
    wrong = _WrongGradient(_model(recurrent=False))
    rep = gradcheck(wrong, _inputs(), spike_weighted_loss, params=["inner.0.weight", "inner.1.weight"], max_entries=6)
    assert not rep.ok(1e-6)
    for entry in rep.entries:
        assert entry.error == pytest.approx(0.01, rel=0.05), entry
    # The same network without the scaling passes on the same entries.
    right = gradcheck(_model(recurrent=False), _inputs(), spike_weighted_loss, params=["0.weight", "1.weight"], max_entries=6)
    assert right.ok(1e-6)


def test_near_critical_point_is_flagged() -> None:
    """One input spike with a weight that leaves V's peak 1e-9 below threshold."""
    p = NeuronParams(10.0, 5.0, 1.0)
    one = torch.ones((), dtype=F64)
    peak = float(psp_kernel(voltage_extremum(torch.zeros((), dtype=F64), one, p), p))
    layer = LIFLayer(1, 1, tau_mem=10.0, tau_syn=5.0, dtype=F64)
    with torch.no_grad():
        layer.weight.fill_(p.threshold / peak * (1 - 1e-9))
    x = torch.tensor([[[1.0]]], dtype=F64)
    assert not torch.isfinite(layer(x)).any()

    def loss(out: Tensor) -> Tensor:
        return torch.where(torch.isfinite(out), out, torch.full_like(out, 50.0)).sum()

    rep = gradcheck(layer, x, loss)
    assert rep["weight"].discontinuous == 1
    assert not rep.ok(1e-6)
    assert rep.ok(1e-6, allow_discontinuous=True)
    assert "near-critical" in str(rep)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="no parameter"):
        gradcheck(_model(recurrent=False), _inputs(), spike_weighted_loss, params=["missing"])
    with pytest.raises(ValueError, match="eps"):
        gradcheck(_model(recurrent=False), _inputs(), spike_weighted_loss, eps=0.0)
    with pytest.raises(ValueError, match="scalar"):
        gradcheck(_model(recurrent=False), _inputs(), lambda out: out)
