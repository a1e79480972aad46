r"""Losses and metrics on first-spike times.

The first-spike cross-entropy of the paper (eq. 35), for first output spike times
``t_k`` (``k`` = class) and label ``l``::

    L = -log( exp(-t_l / tau0) / sum_k exp(-t_k / tau0) ) + alpha (exp(t_l / tau1) - 1)

with ``tau0 = xi tau_syn`` and ``tau1 = beta tau_syn`` in the paper's notation. The
first term is a softmax over negative spike times; the second rewards an early label
spike.

Silent neurons (``t = +inf``) are handled as in the authors' code: a silent wrong
neuron drops out of the softmax sum (``exp(-inf) = 0``); a sample whose label neuron
is silent carries no gradient (no spike time can be moved to make it fire; weight
bumping is the remedy) and reports the finite loss it would have with the label
spiking at ``t_silent``. The softmax term is evaluated as a log-softmax and stays
finite for any finite spike times; the regulariser ``exp(t_l / tau1)`` grows without
bound and exceeds the dtype's range for ``t_l > tau1 log(max)`` (``88.7 tau1`` in
float32, ``709.8 tau1`` in float64), or ``alpha`` times it does: there the loss raises
``ValueError`` with the numbers instead of returning ``inf``, as does a batch sum that
overflows (:func:`~eventprop.losses.common.reduce_loss`). The loss is never NaN.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..errors import refuse_create_graph
from ..validation import all_finite, non_negative, positive, smallest
from .common import check_labels, reduce_loss

__all__ = ["first_spikes", "first_spike_cross_entropy", "first_spike_correct", "first_spike_predictions"]


def first_spikes(times: Tensor) -> Tensor:
    """First-spike time of every neuron, ``(batch, neurons)`` from ``(batch, neurons, max_spikes)``."""
    return times[..., 0]


def _check(first: Tensor, labels: Tensor) -> None:
    if first.dim() != 2:
        raise ValueError(f"first must have shape (batch, classes), got {tuple(first.shape)}")
    low = smallest(first)
    if math.isnan(low):
        raise ValueError("first contains NaN")
    if low < 0:
        raise ValueError(f"first contains negative spike times (min {low})")
    check_labels(labels, first.shape[0], first.shape[1])


def first_spike_cross_entropy(
    first: Tensor,
    labels: Tensor,
    *,
    tau0: float,
    tau1: float,
    alpha: float,
    t_silent: float,
    reduction: str = "mean",
) -> Tensor:
    """Paper eq. 35 on first-spike times ``first`` ``(batch, classes)`` (see module docstring).

    Args:
        labels: ``(batch,)`` integer classes.
        tau0: softmax temperature (time unit), > 0.
        tau1: regulariser time constant (time unit), > 0.
        alpha: regulariser weight, >= 0.
        t_silent: label spike time used for the reported loss of samples whose
            label neuron is silent (those samples carry no gradient).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """
    _check(first, labels)
    tau0, tau1, t_silent = positive("tau0", tau0), positive("tau1", tau1), positive("t_silent", t_silent)
    alpha = non_negative("alpha", alpha)
    return reduce_loss(_FirstSpikeCrossEntropy.apply(first, labels, tau0, tau1, alpha, t_silent), reduction)


class _FirstSpikeCrossEntropy(torch.autograd.Function):
    r"""Per-sample eq. 35, ``(batch,)``, with its gradient computed in the same pass.

    With ``z_k = -t_k / tau0`` (``-inf`` for a silent wrong neuron, ``-t_silent / tau0``
    for a silent label neuron) and ``p = softmax(z)``::

        dL/dt_k = (delta_kl - p_k) / tau0 + delta_kl (alpha / tau1) exp(t_l / tau1)

    and zero for every entry of a sample whose label neuron is silent. One analytic
    pass instead of an autograd graph of a dozen small operations per minibatch.
    """

    @staticmethod
    def forward(ctx: Any, first: Tensor, labels: Tensor, tau0: float, tau1: float, alpha: float, t_silent: float) -> Tensor:
        finite = torch.isfinite(first)
        label = labels[:, None]
        is_label = torch.zeros_like(finite).scatter_(1, label, True)
        t = torch.where(finite, first, t_silent)
        log_p = torch.log_softmax(torch.where(finite | is_label, t * (-1.0 / tau0), -math.inf), dim=1)
        growth = torch.expm1(t.gather(1, label) / tau1) if alpha > 0 else torch.zeros_like(t[:, :1])
        if not all_finite(growth):
            late = float(t.gather(1, label).max())
            raise ValueError(
                f"first_spike_cross_entropy: the regulariser exp(t / tau1) overflows {first.dtype} for a label spike at "
                f"t = {late:g} (tau1 = {tau1:g}: finite up to t = {tau1 * math.log(torch.finfo(first.dtype).max):g}); "
                "raise tau1, compute in float64, or set alpha = 0"
            )
        penalty = alpha * growth
        slope = (alpha / tau1) * (growth + 1)  # d penalty / dt_l
        if not (all_finite(penalty) and all_finite(slope)):
            late = float(t.gather(1, label).max())
            raise ValueError(
                f"first_spike_cross_entropy: the regulariser alpha (exp(t / tau1) - 1) or its slope overflows {first.dtype} "
                f"for a label spike at t = {late:g} (alpha = {alpha:g}, tau1 = {tau1:g}); lower alpha, raise tau1 or "
                "compute in float64"
            )
        loss = (penalty - log_p.gather(1, label)).squeeze(1)
        if ctx.needs_input_grad[0]:
            grad = (is_label.to(first.dtype) - log_p.exp()) / tau0
            grad.scatter_add_(1, label, slope)
            grad.mul_(finite.gather(1, label))  # silent label neuron: no gradient
            ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor) -> tuple[Tensor | None, ...]:
        refuse_create_graph("first_spike_cross_entropy")
        (grad,) = ctx.saved_tensors
        return grad * grad_loss[:, None], None, None, None, None, None


def first_spike_correct(first: Tensor, labels: Tensor) -> Tensor:
    """``(batch,)`` bool: the label neuron spikes, strictly before every other neuron.

    Silence of the label neuron or a tie for first place counts as wrong.
    """
    _check(first, labels)
    t_label = first.gather(1, labels[:, None]).squeeze(1)
    others = first.scatter(1, labels[:, None], math.inf)
    return torch.isfinite(t_label) & (t_label < others.min(dim=1).values)


def first_spike_predictions(first: Tensor) -> Tensor:
    """``(batch,)`` predicted class: the unique earliest neuron, ``-1`` for silence or ties."""
    if first.dim() != 2:
        raise ValueError(f"first must have shape (batch, classes), got {tuple(first.shape)}")
    best = first.min(dim=1)
    unique = (first == best.values[:, None]).sum(dim=1) == 1
    return torch.where(torch.isfinite(best.values) & unique, best.indices, torch.full_like(best.indices, -1))
