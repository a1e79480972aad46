"""First-spike cross-entropy (paper eq. 35) and the strict first-spike accuracy."""

from __future__ import annotations

import math

import pytest
import torch

from eventprop.losses import first_spike_correct, first_spike_cross_entropy, first_spike_predictions

F64 = torch.float64
KW = {"tau0": 2.0, "tau1": 10.0, "alpha": 1e-2, "t_silent": 80.0}


def test_matches_equation_35() -> None:
    t = torch.tensor([[10.0, 12.0, 15.0], [20.0, 11.0, 30.0]], dtype=F64)
    labels = torch.tensor([0, 2])
    loss = first_spike_cross_entropy(t, labels, reduction="none", **KW)
    for b in range(2):
        l = int(labels[b])
        soft = math.exp(-t[b, l] / 2.0) / sum(math.exp(-float(x) / 2.0) for x in t[b])
        expected = -math.log(soft) + 1e-2 * (math.exp(float(t[b, l]) / 10.0) - 1)
        assert loss[b].item() == pytest.approx(expected, rel=1e-12)


def test_silent_neurons_finite_and_nan_free() -> None:
    t = torch.tensor([[math.inf, 12.0, math.inf], [math.inf] * 3, [10.0, 12.0, math.inf]], dtype=F64, requires_grad=True)
    loss = first_spike_cross_entropy(t, torch.tensor([0, 1, 0]), reduction="none", **KW)
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert not torch.isnan(t.grad).any()
    assert t.grad[:2].abs().sum() == 0  # silent label neuron: no spike to move, no gradient
    assert t.grad[2, 1] < 0 and t.grad[2, 0] > 0  # descent: label earlier, wrong neuron later
    assert t.grad[2, 2] == 0  # a silent wrong neuron drops out of the softmax
    # the third sample's loss ignores the silent neuron entirely
    expected = -math.log(math.exp(-5.0) / (math.exp(-5.0) + math.exp(-6.0))) + 1e-2 * math.expm1(1.0)
    assert loss[2].item() == pytest.approx(expected, rel=1e-12)


def test_accuracy_is_strict() -> None:
    t = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 3.0], [math.inf, math.inf, math.inf], [math.inf, 2.0, 3.0]], dtype=F64)
    correct = first_spike_correct(t, torch.tensor([0, 0, 0, 1]))
    assert correct.tolist() == [True, False, False, True]
    assert first_spike_predictions(t).tolist() == [0, -1, -1, 1]


def test_bad_arguments() -> None:
    t = torch.ones(2, 3, dtype=F64)
    with pytest.raises(ValueError, match="labels must lie in"):
        first_spike_cross_entropy(t, torch.tensor([0, 3]), **KW)
    with pytest.raises(ValueError, match="labels must have shape"):
        first_spike_cross_entropy(t, torch.tensor([0]), **KW)
    with pytest.raises(ValueError, match="tau0 must be finite and positive"):
        first_spike_cross_entropy(t, torch.tensor([0, 1]), **{**KW, "tau0": 0.0})
    with pytest.raises(ValueError, match="first contains NaN"):
        first_spike_cross_entropy(torch.full((2, 3), math.nan), torch.tensor([0, 1]), **KW)


def _autograd_reference(first: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 35 composed from autograd operations (silent label: value kept, gradient cut)."""
    finite = torch.isfinite(first)
    is_label = torch.zeros_like(finite).scatter(1, labels[:, None], True)
    t = torch.where(finite, first, torch.full_like(first, KW["t_silent"]))
    logits = torch.where(finite | is_label, -t / KW["tau0"], torch.full_like(t, -math.inf))
    t_label = t.gather(1, labels[:, None]).squeeze(1)
    loss = torch.nn.functional.cross_entropy(logits, labels, reduction="none") + KW["alpha"] * torch.expm1(t_label / KW["tau1"])
    return torch.where(~finite.gather(1, labels[:, None]).squeeze(1), loss.detach(), loss)


def test_analytic_gradient_matches_autograd_and_finite_differences() -> None:
    gen = torch.Generator().manual_seed(3)
    first = 5 + 20 * torch.rand(64, 4, generator=gen, dtype=F64)
    first[torch.rand(64, 4, generator=gen) < 0.25] = math.inf  # silent neurons, labels included
    labels = torch.randint(0, 4, (64,), generator=gen)
    weights = torch.rand(64, generator=gen, dtype=F64)  # a non-uniform upstream gradient
    a = first.clone().requires_grad_()
    (first_spike_cross_entropy(a, labels, reduction="none", **KW) * weights).sum().backward()
    b = first.clone().requires_grad_()
    (_autograd_reference(b, labels) * weights).sum().backward()
    assert torch.allclose(first_spike_cross_entropy(first, labels, reduction="none", **KW), _autograd_reference(first, labels), rtol=1e-13)
    assert torch.allclose(a.grad, b.grad, rtol=1e-12, atol=1e-15)
    assert a.grad.abs().sum() > 0
    finite = first.clone()
    finite[~torch.isfinite(finite)] = 100.0  # finite differences need finite inputs
    torch.autograd.gradcheck(
        lambda t: first_spike_cross_entropy(t, labels[:8], reduction="sum", **KW), (finite[:8].requires_grad_(),)
    )


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"tau0": "a"}, "tau0 must be a real number, got 'a'"),
        ({"tau1": 0.0}, "tau1 must be finite and positive"),
        ({"alpha": -1.0}, "alpha must be finite and non-negative"),
        ({"t_silent": True}, "t_silent must be a real number, got True"),
    ],
)
def test_loss_parameters_follow_the_one_rule_for_numbers(kwargs: dict, message: str) -> None:
    args = {"tau0": 0.5, "tau1": 6.4, "alpha": 3e-3, "t_silent": 60.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        first_spike_cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1]), **args)


def test_numpy_scalars_are_real_numbers_and_labels_must_be_integers() -> None:
    import numpy as np

    first = torch.tensor([[1.0, 2.0], [3.0, 1.0]])
    a = first_spike_cross_entropy(first, torch.tensor([0, 1]), tau0=np.float32(0.5), tau1=np.int64(6), alpha=3e-3, t_silent=60.0)
    b = first_spike_cross_entropy(first, torch.tensor([0, 1]), tau0=0.5, tau1=6.0, alpha=3e-3, t_silent=60.0)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="labels must be an integer tensor, got dtype torch.float32"):
        first_spike_correct(first, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="labels must be an integer tensor, got list"):
        first_spike_correct(first, [0, 1])  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype,late", [(torch.float32, 600.0), (torch.float64, 4600.0)])
def test_an_overflowing_regulariser_raises_with_the_numbers_instead_of_returning_inf(dtype: torch.dtype, late: float) -> None:
    labels = torch.tensor([0, 1])
    early = torch.tensor([[late - 100.0 * (dtype == torch.float32) - 400.0, 20.0], [3.0, 500.0]], dtype=dtype)
    loss = first_spike_cross_entropy(early, labels, tau0=0.5, tau1=6.4, alpha=3e-3, t_silent=60.0)
    assert torch.isfinite(loss)
    first = torch.tensor([[late, 20.0], [3.0, 5.0]], dtype=dtype)
    with pytest.raises(ValueError, match=f"overflows {dtype} for a label spike at t = {late:g}"):
        first_spike_cross_entropy(first, labels, tau0=0.5, tau1=6.4, alpha=3e-3, t_silent=60.0)
    ok = first_spike_cross_entropy(first, labels, tau0=0.5, tau1=6.4, alpha=0.0, t_silent=60.0)  # no regulariser
    assert torch.isfinite(ok)


@pytest.mark.parametrize("bad", [-1.0, -math.inf])
def test_negative_first_spike_times_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="first contains negative spike times"):
        first_spike_cross_entropy(torch.tensor([[bad, 2.0]]), torch.tensor([0]), tau0=0.5, tau1=6.4, alpha=3e-3, t_silent=60.0)


def test_a_huge_alpha_raises_instead_of_an_infinite_loss() -> None:
    first = torch.tensor([[10.0, 20.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"alpha \(exp\(t / tau1\) - 1\) or its slope overflows torch.float64 .*alpha = 1e\+308"):
        first_spike_cross_entropy(first, torch.tensor([0]), tau0=0.5, tau1=6.4, alpha=1e308, t_silent=60.0)


def test_batch_reductions_stay_finite_or_raise_and_an_empty_mean_is_refused() -> None:
    from eventprop.losses import voltage_cross_entropy

    first = torch.tensor([[1e38, 0.0], [1e38, 0.0]], dtype=torch.float32)  # each loss 2e38, finite in float32
    labels = torch.tensor([0, 0])
    kw = {"tau0": 0.5, "tau1": 6.4, "alpha": 0.0, "t_silent": 60.0}
    per_sample = first_spike_cross_entropy(first, labels, reduction="none", **kw)
    assert torch.isfinite(per_sample).all()
    mean = first_spike_cross_entropy(first, labels, **kw)  # summed as loss / n: finite
    assert torch.isfinite(mean) and float(mean) == pytest.approx(2e38, rel=1e-6)
    with pytest.raises(ValueError, match=r"reduction='sum': the sum of 2 finite losses \(largest 2e\+38\) overflows torch.float32"):
        first_spike_cross_entropy(first, labels, reduction="sum", **kw)
    empty, no_labels = torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)
    assert float(first_spike_cross_entropy(empty, no_labels, reduction="sum", **kw)) == 0.0
    for loss in (lambda r: first_spike_cross_entropy(empty, no_labels, reduction=r, **kw), lambda r: voltage_cross_entropy(empty, no_labels, reduction=r)):
        with pytest.raises(ValueError, match="reduction='mean' of an empty batch is undefined"):
            loss("mean")
