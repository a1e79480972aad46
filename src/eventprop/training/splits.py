"""A data split as the training loop reads it: labels, and spike-time minibatches by index.

:class:`EncodedSplit` holds a whole split as one spike-time tensor (the built-in tasks:
a few thousand rows, encoded once). :class:`DatasetSplit` reads samples from a
``torch.utils.data.Dataset`` of ``(times (channels, spikes), label)`` items when a
minibatch asks for them (event data sets, too large to hold padded), and pads them with
:func:`eventprop.datasets.collate`. The loop draws the same indices either way, so a
task's numbers do not depend on which one serves it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor

from ..datasets.events import collate

__all__ = ["Split", "EncodedSplit", "DatasetSplit"]


class Split(ABC):
    """``len(split)`` samples of ``n_inputs`` input neurons with their ``labels``."""

    labels: Tensor
    n_inputs: int

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @abstractmethod
    def batch(self, idx: Tensor) -> Tensor:
        """Spike times ``(len(idx), n_inputs, max_spikes)`` of the samples ``idx``, ``+inf``-padded."""


class EncodedSplit(Split):
    """A split held as one tensor.

    Args:
        times: ``(n, n_inputs, max_spikes)`` spike times.
        labels: ``(n,)`` classes.
    """

    def __init__(self, times: Tensor, labels: Tensor) -> None:
        if times.dim() != 3 or labels.shape != (times.shape[0],):
            raise ValueError(f"times (n, inputs, spikes) and labels (n,) must agree, got {tuple(times.shape)} and {tuple(labels.shape)}")
        self.times, self.labels, self.n_inputs = times, labels, int(times.shape[1])

    def batch(self, idx: Tensor) -> Tensor:
        return self.times[idx]


class DatasetSplit(Split):
    """A split read item by item from ``dataset`` (items ``(times (n_inputs, k), label)``).

    Args:
        dataset: the items (e.g. a tonic dataset with an
            :class:`~eventprop.datasets.ToSpikeTimes` transform).
        labels: every item's class (read once, without the spikes).
        n_inputs: channels per item.
        device, dtype: of the minibatches.
    """

    def __init__(self, dataset: Any, labels: Tensor, n_inputs: int, *, device: torch.device | str, dtype: torch.dtype) -> None:
        if len(dataset) != labels.shape[0]:
            raise ValueError(f"labels must have one entry per item ({len(dataset)}), got {labels.shape[0]}")
        self.dataset, self.labels, self.n_inputs = dataset, labels, int(n_inputs)
        self.device, self.dtype = device, dtype

    def batch(self, idx: Tensor) -> Tensor:
        times, _ = collate([self.dataset[int(i)] for i in idx])
        if times.shape[1] != self.n_inputs:
            raise ValueError(f"items have {times.shape[1]} channels, the split declares {self.n_inputs}")
        return times.to(self.device, self.dtype)
