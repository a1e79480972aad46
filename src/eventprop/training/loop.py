"""The training loop: one run = one seed of a configured classifier.

A run trains a stack of hidden LIF layers and a readout (:mod:`.network`,
:mod:`.readouts`) on a task's spike times (:mod:`.tasks`: built-in rows encoded once, or
event data read per minibatch, :mod:`.splits`) with Adam and an exponential
learning-rate decay, optional weight bumping (:mod:`.activity`), gradient clipping,
input jitter and spike deletion and a weight EMA, in one process or data-parallel under torchrun
(:mod:`.distributed`), and leaves in its output folder:

- ``metrics.csv``: one row per epoch (train/validation loss and accuracy, spikes per
  sample and silent fraction of every spiking layer, the number of tangential spikes
  met in the backward passes (:class:`~eventprop.errors.TangentialCrossingWarning`),
  learning rate, seconds);
- ``checkpoint.pt`` (every epoch, atomic; ``resume=True`` continues from it and ends
  with the same numbers as an uninterrupted run) and ``best.pt`` (the model of the best
  validation accuracy, used for the test score and by ``eventprop evaluate``), see
  :mod:`.checkpoints`;
- ``summary.json``: configuration, best epoch, validation and test accuracy;
- ``training.png``: validation error and loss per epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..datasets.events import ToSpikeTimes
from ..datasets.sources import event_split
from ..errors import TangentialCrossingWarning
from ..layers import LIFLayer
from .activity import Activity, bump_first_silent, layer_names
from .checkpoints import FORMAT, RunLock, check_resumable, load_checkpoint, load_model, save_atomic
from .config import NOISE_SEED_OFFSET, TrainConfig
from .network import build_model, forward_layers, readout_of
from .distributed import DataParallel
from .outputs import TensorBoardLog, plot_runs, write_json, write_metrics
from .readouts import Readout
from .splits import DatasetSplit, EncodedSplit, Split
from .tasks import TASKS, EventTask

__all__ = ["train", "evaluate_model", "encode", "load_split"]


def encode(config: TrainConfig, features: np.ndarray) -> Tensor:
    """Spike times of raw ``(n, features)`` rows of ``config.task`` with its encoder, plus the bias spike(s)."""
    task = TASKS[config.task]
    x = torch.as_tensor(np.asarray(features), dtype=config.torch_dtype, device=config.device) / task.scale
    return task.encoder(x, t_first=config.t_first, t_last=config.t_last, bias_times=config.bias_times)


def load_split(config: TrainConfig, name: str) -> Split:
    """A split of ``config.task`` (``train`` / ``validation`` cut to ``train_size`` / ``val_size``):
    a built-in task's rows encoded once, an event task's samples read from ``config.data``
    as minibatches ask for them."""
    task = TASKS[config.task]
    size = {"train": config.train_size, "validation": config.val_size}.get(name)
    if isinstance(task, EventTask):
        to_times = ToSpikeTimes(task.sensor_size, t_stop=task.trial_ms * 1000.0, dtype=config.torch_dtype)
        dataset, labels = event_split(task.source, config.data, name, transform=to_times)
        if size is not None:
            dataset, labels = torch.utils.data.Subset(dataset, range(min(size, len(labels)))), labels[:size]
        labels = torch.as_tensor(labels, dtype=torch.long, device=config.device)
        return DatasetSplit(dataset, labels, task.n_features, device=config.device, dtype=config.torch_dtype)
    x, y = task.split(name, config.data) if task.needs_data else task.split(name)
    if size is not None:
        x, y = x[:size], y[:size]
    return EncodedSplit(encode(config, x), torch.as_tensor(y, dtype=torch.long, device=config.device))


def _spiking(model: nn.Sequential, readout: Readout, outs: list[Tensor]) -> tuple[list[nn.Module], list[Tensor]]:
    """The spiking layers and their outputs (the output layer only if the readout spikes)."""
    n = len(model) if readout.spiking else len(model) - 1
    return list(model)[:n], outs[:n]


@torch.no_grad()
def evaluate_model(
    model: nn.Sequential, config: TrainConfig, x: Tensor | Split, y: Tensor | None = None, batch_size: int = 1000, *,
    predictions: list[Tensor] | None = None,
) -> dict[str, float]:  # fmt: skip
    """Mean loss, accuracy and spiking activity of every layer on ``(x, y)`` (spike times and
    labels) or on a :class:`~eventprop.training.splits.Split` ``x``.

    ``predictions``: a list to which the ``(batch,)`` predicted classes of every
    evaluated batch are appended (``-1`` where the readout names none, see
    :meth:`~eventprop.training.readouts.Readout.predict`).
    """
    split = x if isinstance(x, Split) else EncodedSplit(x, y)
    readout = readout_of(config)
    loss_sum, correct = 0.0, 0
    activity = Activity(layer_names(len(model) - 1, readout.spiking))
    n = len(split)
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(start + batch_size, n), device=split.labels.device)
        outs = forward_layers(model, readout, split.batch(idx))
        labels = split.labels[idx]
        loss_sum += float(readout.loss(outs[-1], labels)) * labels.shape[0]
        correct += int(readout.correct(outs[-1], labels).sum())
        activity.add(_spiking(model, readout, outs)[1])
        if predictions is not None:
            predictions.append(readout.predict(outs[-1]))
    n = max(n, 1)
    return {"loss": loss_sum / n, "accuracy": correct / n, **activity.summary()}


def _augment(times: Tensor, sigma: float, dropout: float, gen: torch.Generator) -> Tensor:
    """Training-time augmentation: every input spike moves by ``N(0, sigma^2)`` (clamped at
    0), and is deleted with probability ``dropout``; the trains are sorted again (deleted
    spikes become the ``+inf`` padding)."""
    if sigma == 0 and dropout == 0:
        return times
    if sigma > 0:
        shift = torch.randn(times.shape, generator=gen, dtype=times.dtype).to(times.device) * sigma
        times = (times + shift).clamp(min=0)
    if dropout > 0:
        deleted = (torch.rand(times.shape, generator=gen, dtype=times.dtype) < dropout).to(times.device)
        times = times.masked_fill(deleted, math.inf)
    return times.sort(dim=-1).values


def _backward(loss: Tensor) -> int:
    """``loss.backward()``; returns the number of tangential spikes the layers reported
    (:class:`~eventprop.errors.TangentialCrossingWarning`), other warnings pass through."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TangentialCrossingWarning)
        loss.backward()
    count = 0
    for w in caught:
        if isinstance(w.message, TangentialCrossingWarning):
            count += w.message.count
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return count


def train(
    config: TrainConfig,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    tensorboard: bool = False,
) -> dict[str, Any]:
    """Train one seed; returns the summary also written to ``out_dir/summary.json``.

    ``progress`` shows a bar per epoch on a terminal (never in a redirected log, nor in
    a notebook, whose output stream is no terminal);
    ``log`` receives one line per epoch and notices. ``tensorboard=True`` also writes
    the per-epoch metrics as TensorBoard scalars to ``out_dir/tensorboard``
    (:class:`~eventprop.training.outputs.TensorBoardLog`).

    ``resume=True`` continues the run in ``out_dir`` from its ``checkpoint.pt`` (which
    must exist and hold the same configuration, up to ``epochs``). The run holds
    ``out_dir/run.lock`` while it trains (:class:`~eventprop.training.checkpoints.RunLock`).

    Under ``torchrun`` every process calls this with the same arguments and trains its
    shard of every minibatch (:mod:`.distributed`); rank 0 holds the lock, writes the
    files and logs; every process returns the summary. An error in one process (a
    spike limit, a file rank 0 cannot write) ends that process; torchrun then stops the
    others (a launcher that does not would leave them waiting at the next collective
    until torch.distributed's timeout).
    """
    config.validate()
    out = Path(out_dir)
    group = DataParallel.from_environment(config.device)
    if not group.writer:
        progress, tensorboard = False, False
        log = _silent
    with RunLock(out) if group.writer else contextlib.nullcontext():
        return _train(config, out, resume, progress, log, tensorboard, group)


def _silent(_line: str) -> None:
    """The log of a process that does not write (ranks above 0)."""


def _train(
    config: TrainConfig,
    out: Path,
    resume: bool,
    progress: bool,
    log: Callable[[str], None],
    tensorboard: bool,
    group: DataParallel,
) -> dict[str, Any]:
    ckpt_path = out / "checkpoint.pt"
    if resume and not ckpt_path.exists():
        raise ValueError(f"--resume: {out} holds no checkpoint.pt to continue from")
    train_split, val_split = load_split(config, "train"), load_split(config, "validation")
    n_inputs, n_classes = train_split.n_inputs, TASKS[config.task].n_classes

    torch.manual_seed(config.seed)
    readout = readout_of(config)
    model = build_model(config, n_inputs, n_classes)
    group.broadcast(list(model.parameters()))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=True)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)
    # The evaluated model: the weights themselves, or their exponential moving average.
    averaged = (
        torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(config.ema))
        if config.ema > 0
        else None
    )
    limits = [plan.max_silent for plan in config.hidden_layers()] + [config.max_silent_output]
    names = layer_names(len(config.hidden), readout.spiking)
    shuffle = torch.Generator().manual_seed(config.seed)
    noise = torch.Generator().manual_seed(config.seed + NOISE_SEED_OFFSET)
    rows: list[dict[str, float]] = []
    best_acc, best_epoch, start_epoch = -1.0, -1, 0
    if resume:
        state, saved = load_checkpoint(ckpt_path)
        check_resumable(state, ckpt_path)
        differ = [
            f"{f.name} (checkpoint {getattr(saved, f.name)!r}, now {getattr(config, f.name)!r})"
            for f in dataclasses.fields(config)
            if f.name not in ("epochs", "data") and getattr(saved, f.name) != getattr(config, f.name)
        ]
        if differ:
            raise ValueError(
                f"--resume: the configuration differs from the one in {ckpt_path} in {'; '.join(differ)} "
                "(only --epochs and --data may change)"
            )
        try:
            model.load_state_dict(state["model"])
            if averaged is not None:
                averaged.load_state_dict(state["averaged"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            shuffle.set_state(state["shuffle_rng"])
            noise.set_state(state["noise_rng"])
            torch.set_rng_state(state["torch_rng"])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ValueError(f"--resume: {ckpt_path} does not fit this run's model, optimiser or generators ({first[:200]})") from None
        rows, best_acc, best_epoch, start_epoch = state["metrics"], state["best_accuracy"], state["best_epoch"], state["epoch"] + 1
        load_checkpoint(out / "best.pt")  # the best model it records must be there and intact, before any training
        log(f"resuming {out} after epoch {state['epoch'] + 1}")

    meta = {"format": FORMAT, "config": asdict(config), "n_inputs": n_inputs, "n_classes": n_classes}
    n_train = len(train_split)
    spiking_layers = list(model)[: len(names)]
    board = TensorBoardLog(out / "tensorboard", start_epoch + 1) if tensorboard else None
    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n_train, generator=shuffle).to(config.device)
        # per epoch, summed over the ranks at its end: loss x samples, correct, tangential spikes
        totals = torch.zeros(3, dtype=torch.float64, device=config.device)
        activity = Activity(names)
        batches = range(0, n_train, config.batch_size)
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False, disable=None if progress else True)
        for start in bar:
            batch = perm[start : start + config.batch_size]
            inputs = _augment(train_split.batch(batch), config.jitter, config.input_dropout, noise)
            inputs = inputs[group.shard(batch.shape[0])]
            idx = batch[group.shard(batch.shape[0])]
            labels = train_split.labels[idx]
            share = idx.shape[0] / batch.shape[0]
            optimizer.zero_grad()
            if idx.shape[0]:
                outs = forward_layers(model, readout, inputs)
                loss = readout.loss(outs[-1], labels)
            else:  # a shard of nothing: the last minibatch has fewer samples than processes
                outs, loss = [], torch.zeros((), dtype=config.torch_dtype, device=config.device)
            batch_loss = float(group.sum(loss.detach().to(torch.float64) * share))
            if not math.isfinite(batch_loss):
                raise FloatingPointError(f"non-finite loss {batch_loss} at epoch {epoch + 1}")
            push = readout.auxiliary_loss(model[-1], outs[-2], outs[-1], labels) if outs else None
            tangential = _backward((loss if push is None else loss + push) * share) if outs else 0
            group.sum_gradients(model.parameters())
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            for layer in model.modules():
                if isinstance(layer, LIFLayer):
                    layer.project_()  # delays back to >= 0
            spiking_outs = _spiking(model, readout, outs)[1] if outs else []
            bump_first_silent(spiking_layers, spiking_outs, limits, config.bump, total=group.sum if group.world > 1 else None)
            if averaged is not None:
                averaged.update_parameters(model)
            correct = int(readout.correct(outs[-1].detach(), labels).sum()) if outs else 0
            local = float(loss.detach()) * idx.shape[0]
            totals += torch.tensor([local, correct, tangential], dtype=torch.float64, device=config.device)
            if outs:
                activity.add([o.detach() for o in spiking_outs])
            bar.set_postfix(loss=f"{batch_loss:.4f}")
        loss_sum, correct_sum, tangential_sum = group.sum(totals).tolist()
        activity.total(group.sum, config.device)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        evaluated = model if averaged is None else averaged.module
        val = evaluate_model(evaluated, config, val_split)
        row = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / n_train,
            "train_accuracy": correct_sum / n_train,
            "val_loss": val["loss"],
            "val_accuracy": val["accuracy"],
            **activity.summary(),
            "tangential_spikes": int(tangential_sum),
            "lr": lr,
            "seconds": time.perf_counter() - t0,
        }
        rows.append(row)
        if val["accuracy"] > best_acc:
            best_acc, best_epoch = val["accuracy"], epoch + 1
            if group.writer:
                save_atomic({**meta, "model": evaluated.state_dict(), "epoch": epoch}, out / "best.pt")
        if group.writer:
            write_metrics(out / "metrics.csv", rows)
            save_atomic(
                {
                    **meta,
                    "model": model.state_dict(),
                    "averaged": None if averaged is None else averaged.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "shuffle_rng": shuffle.get_state(),
                    "noise_rng": noise.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "epoch": epoch,
                    "best_accuracy": best_acc,
                    "best_epoch": best_epoch,
                    "metrics": rows,
                },
                ckpt_path,
            )
        if board is not None:
            board.add(row)
        spikes = " ".join(f"{row[f'{name}_spikes']:.1f}" for name in names[: len(config.hidden)])
        log(
            f"seed {config.seed} epoch {epoch + 1:3d}: train loss {row['train_loss']:.4f} acc {100 * row['train_accuracy']:.2f}% | "
            f"val loss {row['val_loss']:.4f} acc {100 * row['val_accuracy']:.2f}% | hidden spikes {spikes} | "
            f"{row['seconds']:.1f} s"
        )
    if board is not None:
        board.close()

    group.barrier()  # best.pt is written
    best_model, _ = load_model(out / "best.pt", device=config.device)
    test = evaluate_model(best_model, config, load_split(config, "test"))
    summary = {
        "config": asdict(config),
        "best_epoch": best_epoch,
        "best_val_accuracy": best_acc,
        "final_val_accuracy": rows[-1]["val_accuracy"] if rows else None,
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "train_seconds": sum(r["seconds"] for r in rows),
        "processes": group.world,
    }
    if group.writer:
        write_json(out / "summary.json", summary)
        title = f"{config.task} ({config.preset} preset), seed {config.seed}: test accuracy {100 * test['accuracy']:.2f} %"
        skipped = plot_runs(out / "training.png", [rows], title=title, best_epoch=best_epoch)
        if skipped:
            log(skipped)
    return summary
