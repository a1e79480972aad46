r"""Losses and metrics on membrane voltages, with exact gradients.

All take a :class:`~eventprop.VoltageTrajectory` (from
:class:`~eventprop.LIReadout` or :func:`~eventprop.lif_trajectory`) and are
differentiated exactly by autograd through its closed form (see
:mod:`eventprop.model.trajectory` for why this equals the paper's adjoint with the
``dl_V/dV`` source term and the ``(l_V^- - l_V^+)`` jump term).

- :func:`max_voltage_cross_entropy`: softmax cross-entropy over readout neurons of
  ``scale * max_{t in [0, T]} V_n(t)`` (the max-over-time readout of the authors'
  later MNIST code).
- :func:`voltage_integral_loss`: the paper's ``int_0^T l_V(V(t), t) dt`` (eq. 1) for
  any smooth user ``l_V``, by Gauss-Legendre quadrature of the exact trajectory.
- :func:`shaped_voltage_cross_entropy`: "loss shaping" (as in the GeNN EventProp
  work): softmax cross-entropy of the exponentially time-weighted mean voltage
  ``(1/T) int_0^T exp(-t / tau_w) V_n(t) dt``, in closed form. A small ``tau_w``
  rewards the correct neuron for rising early.
- :func:`label_voltage_gap`: ``threshold - max_t V_l(t)`` of each sample's label
  neuron ``l``: a learning signal for samples whose label neuron never fires, which a
  spike-time loss leaves without any gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..model.trajectory import DEFAULT_NODES, VoltageTrajectory
from ..validation import positive
from .common import check_labels, reduce_loss

__all__ = [
    "voltage_cross_entropy",
    "max_voltage_cross_entropy",
    "shaped_voltage_cross_entropy",
    "voltage_integral_loss",
    "label_voltage_gap",
    "voltage_predictions",
    "voltage_correct",
]


def _check_scores(scores: Tensor, labels: Tensor | None = None) -> None:
    if not isinstance(scores, Tensor) or scores.dim() != 2:
        raise ValueError("scores must be a tensor of shape (batch, classes)")
    if bool(torch.isnan(scores).any()):
        raise ValueError("scores contains NaN")
    if labels is not None:
        check_labels(labels, scores.shape[0], scores.shape[1])


def _check_trajectory(trajectory: VoltageTrajectory) -> None:
    if not isinstance(trajectory, VoltageTrajectory):
        raise ValueError(f"trajectory must be a VoltageTrajectory, got {type(trajectory).__name__}")


def voltage_cross_entropy(scores: Tensor, labels: Tensor, *, scale: float = 1.0, reduction: str = "mean") -> Tensor:
    """``-log softmax(scale * scores)[label]`` for ``scores`` ``(batch, classes)``, labels ``(batch,)``."""
    _check_scores(scores, labels)
    scale = positive("scale", scale)
    return reduce_loss(F.cross_entropy(scale * scores, labels, reduction="none"), reduction)


def max_voltage_cross_entropy(
    trajectory: VoltageTrajectory, labels: Tensor, *, scale: float = 1.0, reduction: str = "mean"
) -> Tensor:
    """Cross-entropy of ``scale * v_max`` with ``v_max[b, n] = max_{[0, T]} V_n(t)``.

    Args:
        trajectory: readout trajectory, ``neurons = classes``.
        labels: ``(batch,)`` classes.
        scale: inverse softmax temperature (1 / voltage unit), > 0.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """
    _check_trajectory(trajectory)
    return voltage_cross_entropy(trajectory.max()[0], labels, scale=scale, reduction=reduction)


def shaped_voltage_cross_entropy(
    trajectory: VoltageTrajectory, labels: Tensor, *, tau_w: float, scale: float = 1.0, reduction: str = "mean"
) -> Tensor:
    """Cross-entropy of ``scale * (1/T) int_0^T exp(-t / tau_w) V_n(t) dt`` (closed form).

    Args:
        tau_w: weighting time constant (> 0; ``math.inf``: the plain time average).
        scale, reduction: as in :func:`max_voltage_cross_entropy`.
    """
    _check_trajectory(trajectory)
    scores = trajectory.weighted_integral(tau_w) / trajectory.window
    return voltage_cross_entropy(scores, labels, scale=scale, reduction=reduction)


def voltage_integral_loss(
    trajectory: VoltageTrajectory,
    loss_v: Callable[[Tensor, Tensor], Tensor],
    *,
    n_nodes: int = DEFAULT_NODES,
    reduction: str = "mean",
) -> Tensor:
    """``sum_n int_0^T l_V(V_n(t), t) dt`` per sample, reduced over the batch.

    See :meth:`~eventprop.VoltageTrajectory.integral` for the contract of
    ``loss_v`` and the quadrature error.
    """
    _check_trajectory(trajectory)
    return reduce_loss(trajectory.integral(loss_v, n_nodes).sum(dim=1), reduction)


def label_voltage_gap(trajectory: VoltageTrajectory, labels: Tensor, *, reduction: str = "mean") -> Tensor:
    r"""``threshold - max_{t in [0, T]} V_l(t)`` of each sample's label neuron ``l``, reduced.

    Meant for samples whose label neuron stays silent: a first-spike loss gives them no
    gradient (there is no spike time to move), while this gap is positive and its exact
    gradient (envelope theorem at the maximum, see
    :meth:`~eventprop.VoltageTrajectory.max`) raises the label neuron's peak
    voltage towards threshold. For a neuron that fires, ``max V = threshold`` (just
    before its first spike) and the gap is 0. ``threshold`` is the trajectory's own
    (``trajectory.params.threshold``: the layer's, for :func:`~eventprop.lif_trajectory`).

    Args:
        trajectory: of the output layer, e.g. from :func:`~eventprop.lif_trajectory`.
        labels: ``(batch,)`` label neuron of each sample.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """
    _check_trajectory(trajectory)
    v_max = trajectory.max()[0]
    _check_scores(v_max, labels)
    return reduce_loss(trajectory.params.threshold - v_max.gather(1, labels[:, None]).squeeze(1), reduction)


def voltage_predictions(scores: Tensor) -> Tensor:
    """``(batch,)`` predicted class: the neuron with the largest score (e.g. ``v_max``)."""
    _check_scores(scores)
    return scores.argmax(dim=1)


def voltage_correct(scores: Tensor, labels: Tensor) -> Tensor:
    """``(batch,)`` bool: the label neuron has the strictly largest score (ties count as wrong)."""
    _check_scores(scores, labels)
    label = scores.gather(1, labels[:, None]).squeeze(1)
    others = scores.scatter(1, labels[:, None], -math.inf)
    return label > others.max(dim=1).values
