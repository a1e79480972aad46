"""Training spiking classifiers (Yin-Yang, digits) with exact EventProp gradients.

One run = one seed: a ``in -> hidden -> classes`` network, latency-encoded inputs,
Adam with an exponential learning-rate decay, and optional weight bumping (paper
section 3: when more than an allowed fraction of a layer's neurons is silent on a
minibatch, all that layer's weights grow by ``bump``; only the first such layer).
Two readouts:

- ``first-spike``: the output layer is a :class:`~eventprop.LIFLayer`, trained with the
  first-spike cross-entropy of the paper (eq. 35); the label neuron must fire first.
  Optionally (``silent_push``) samples whose label neuron stays silent, which eq. 35
  leaves without gradient, add ``silent_push * (threshold - max_t V_label) / batch``
  (exact gradient through the output layer's voltage trajectory); the reported
  training loss is eq. 35 alone.
- ``voltage``: the output layer is a :class:`~eventprop.LIReadout` (leaky integrators,
  no threshold) over the window ``[0, window]``, trained with the max-over-time
  voltage cross-entropy; the prediction is the neuron with the largest ``max V``.

A task (:data:`TASKS`) supplies the data splits, the encoder and its presets; the
trainer itself is task-agnostic.

What a run leaves in its output folder:
- ``metrics.csv``: one row per epoch (train/validation loss and accuracy, mean spikes
  per sample and silent fraction per layer, seconds);
- ``checkpoint.pt``: written atomically every epoch (model, optimiser, scheduler,
  RNG states, epoch, best validation accuracy, metrics so far); ``resume=True``
  continues from it and ends with the same numbers as an uninterrupted run;
- ``best.pt``: the model with the best validation accuracy (used for the test score
  and by ``eventprop evaluate``);
- ``summary.json``: configuration, best epoch, validation and test accuracy;
- ``training.png``: validation error and loss per epoch.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .datasets import digits_split, yinyang_split
from .encoding import intensity_encode, latency_encode
from .layers import LIFLayer
from .losses import first_spike_correct, first_spike_cross_entropy, first_spikes
from .readout import LIReadout
from .trajectory import lif_trajectory
from .voltage_losses import label_voltage_gap, voltage_correct, voltage_cross_entropy

__all__ = [
    "TrainConfig",
    "Task",
    "TASKS",
    "PRESETS",
    "READOUTS",
    "preset_config",
    "build_model",
    "encode",
    "train",
    "train_seeds",
    "evaluate_model",
    "load_model",
]

READOUTS = ("first-spike", "voltage")

METRIC_FIELDS = [
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "hidden_spikes",
    "output_spikes",
    "hidden_silent",
    "output_silent",
    "lr",
    "seconds",
]


@dataclass
class TrainConfig:
    """Every hyperparameter of a run (times in ms). Defaults are Yin-Yang's ``best`` preset except
    ``grad_clip`` (the preset clips at 1.0).

    ``readout``, ``window`` and ``voltage_scale`` select and shape the output layer
    (module docstring); ``tau0``, ``tau1``, ``alpha``, ``t_silent`` belong to the
    first-spike loss and ``window``, ``voltage_scale`` to the voltage readout.
    """

    task: str = "yinyang"
    preset: str = "best"
    readout: str = "first-spike"
    epochs: int = 100
    batch_size: int = 32
    lr: float = 5e-3
    lr_decay: float = 0.95
    hidden: int = 200
    tau_mem: float = 20.0
    tau_syn: float = 5.0
    threshold: float = 1.0
    t_min: float = 0.0
    t_max: float = 30.0
    bias_times: tuple[float, ...] = (0.0,)
    hidden_init: tuple[float, float] = (1.5, 0.78)
    output_init: tuple[float, float] = (0.93, 0.1)
    tau0: float = 0.5
    tau1: float = 6.4
    alpha: float = 3e-3
    t_silent: float = 60.0
    window: float = 60.0
    voltage_scale: float = 1.0
    bump: float = 0.0
    ema: float = 0.0
    jitter: float = 0.0
    grad_clip: float = 0.0
    silent_push: float = 0.0
    silent_hidden: float = 1.0
    silent_output: float = 1.0
    train_size: int | None = None
    val_size: int | None = None
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float64"

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        positive = [
            "epochs", "batch_size", "hidden", "lr", "tau_mem", "tau_syn", "threshold", "tau0", "tau1", "t_silent",
            "window", "voltage_scale",
        ]  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must lie in (0, 1], got {self.lr_decay!r}")
        if self.t_min < 0 or self.t_max < self.t_min:
            raise ValueError(f"need 0 <= t_min <= t_max, got t_min={self.t_min}, t_max={self.t_max}")
        if not math.isfinite(self.jitter) or self.jitter < 0:
            raise ValueError(f"jitter must be finite and non-negative, got {self.jitter!r}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must lie in [0, 1), got {self.ema!r}")
        for name in ("alpha", "bump", "grad_clip", "silent_push"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)!r}")
        for name in ("silent_hidden", "silent_output"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {sorted(TASKS)}, got {self.task!r}")
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {list(READOUTS)}, got {self.readout!r}")
        for name in ("train_size", "val_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} requested but CUDA is not available")

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == "float64" else torch.float32


@dataclass(frozen=True)
class Task:
    """A classification data set as the trainer sees it.

    Attributes:
        split: ``name -> (X, y)`` for ``"train"``, ``"validation"``, ``"test"``.
        n_features, n_classes: sizes of ``X``'s rows and of the label range.
        encoder: ``(values in [0, 1], t_min, t_max, bias_times) -> spike times``.
        scale: divides the raw features into ``[0, 1]``.
        features: what a row of ``X`` is (for messages).
        presets: name -> field overrides; the optional key ``"readouts"`` maps a
            readout to further overrides applied when it is selected.
    """

    split: Callable[[str], tuple[np.ndarray, np.ndarray]]
    n_features: int
    n_classes: int
    encoder: Callable[..., Tensor]
    scale: float
    features: str
    presets: dict[str, dict[str, Any]]


# Digits: 64 pixels (about half blank, hence silent) + a bias spike at 0 -> 100 hidden -> 10.
# Chosen from a handful of 12-40 epoch runs of seed 0 on the validation split: validation
# accuracy peaks after 10-20 epochs, then the network overfits the 1079 training images.
DIGITS_BEST: dict[str, Any] = {
    "epochs": 30,
    "hidden": 100,
    "t_min": 0.0,
    "t_max": 30.0,
    "bias_times": (0.0,),
    "hidden_init": (0.5, 0.3),
    "output_init": (0.5, 0.2),
    "readouts": {"voltage": {"hidden_init": (0.3, 0.3), "output_init": (0.0, 0.3), "window": 60.0, "voltage_scale": 5.0}},
}

# Readout fields that suit any task with inputs in [0, 30] ms and tau = 20 / 5 ms.
_VOLTAGE_READOUT = {"output_init": (0.0, 0.3), "window": 60.0, "voltage_scale": 5.0}

TASKS: dict[str, Task] = {
    "yinyang": Task(
        split=yinyang_split,
        n_features=4,
        n_classes=3,
        encoder=latency_encode,
        scale=1.0,
        features="[x, y, 1-x, 1-y]",
        presets={
            # The authors' final set-up (eventprop/eventprop repository) with 400 hidden
            # neurons (output init scaled by 200/400), gradient-norm clipping at 1 and the
            # silent-label push; chosen on validation accuracy (README), our default.
            "best": {
                "readouts": {
                    "first-spike": {"hidden": 400, "output_init": (0.465, 0.05), "grad_clip": 1.0, "silent_push": 3.0},
                    "voltage": _VOLTAGE_READOUT,
                }
            },
            # The arXiv paper, Figure 4. The original ran 30,000 minibatch iterations (1200 epochs).
            "paper": {
                "epochs": 1200,
                "batch_size": 200,
                "lr": 1e-3,
                "lr_decay": 1.0,
                "t_min": 10.0,
                "t_max": 40.0,
                "bias_times": (20.0,),
                "hidden_init": (2.0, 1.0),
                "output_init": (0.4, 0.4),
                "tau0": 0.4 * 5.0,
                "tau1": 2.0 * 5.0,
                "alpha": 1e-2,
                "t_silent": 80.0,
                "bump": 1e-4,
                "silent_hidden": 0.15,
                "silent_output": 0.0,
                "readouts": {"voltage": {**_VOLTAGE_READOUT, "window": 70.0}},
            },
        },
    ),
    "digits": Task(
        split=digits_split,
        n_features=64,
        n_classes=10,
        encoder=intensity_encode,
        scale=16.0,
        features="64 pixel intensities 0..16 (row-major 8x8)",
        presets={
            # Tuned briefly on the validation split (README, "Digits results").
            "best": DIGITS_BEST,
        },
    ),
}

#: Presets of each task (``TASKS[task].presets``), kept under the historical name.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {name: task.presets for name, task in TASKS.items()}


def preset_config(name: str, **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` from a preset of ``overrides["task"]`` (default Yin-Yang) plus overrides.

    Order: dataclass defaults, the preset, the preset's entry for the chosen readout,
    then the explicit (non-``None``) overrides.
    """
    explicit = {k: v for k, v in overrides.items() if v is not None}
    task = explicit.get("task", "yinyang")
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    presets = TASKS[task].presets
    if name not in presets:
        raise ValueError(f"preset must be one of {sorted(presets)}, got {name!r}")
    readout = explicit.get("readout", "first-spike")
    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {list(READOUTS)}, got {readout!r}")
    base = {k: v for k, v in presets[name].items() if k != "readouts"}
    fields = {**base, **presets[name].get("readouts", {}).get(readout, {}), **explicit}
    return TrainConfig(preset=name, **fields)


def build_model(config: TrainConfig, n_inputs: int, n_classes: int) -> nn.Sequential:
    """``n_inputs -> hidden -> n_classes`` network: LIF hidden layer, LIF or leaky-integrator output."""
    common = {"tau_mem": config.tau_mem, "tau_syn": config.tau_syn, "threshold": config.threshold}
    factory = {"dtype": config.torch_dtype, "device": config.device}
    hidden = LIFLayer(n_inputs, config.hidden, init_mean=config.hidden_init[0], init_std=config.hidden_init[1], **common, **factory)
    out_init = {"init_mean": config.output_init[0], "init_std": config.output_init[1]}
    if config.readout == "voltage":
        tau = {"tau_mem": config.tau_mem, "tau_syn": config.tau_syn}
        output: nn.Module = LIReadout(config.hidden, n_classes, window=config.window, **tau, **out_init, **factory)
    else:
        output = LIFLayer(config.hidden, n_classes, **out_init, **common, **factory)
    return nn.Sequential(hidden, output)


def encode(config: TrainConfig, features: np.ndarray) -> Tensor:
    """Spike times of raw ``(n, features)`` rows of ``config.task`` with its encoder, plus the bias spike(s)."""
    task = TASKS[config.task]
    x = torch.as_tensor(np.asarray(features), dtype=config.torch_dtype, device=config.device) / task.scale
    return task.encoder(x, t_min=config.t_min, t_max=config.t_max, bias_times=config.bias_times)


def _split(config: TrainConfig, name: str) -> tuple[Tensor, Tensor]:
    x, y = TASKS[config.task].split(name)
    size = {"train": config.train_size, "validation": config.val_size}.get(name)
    if size is not None:
        x, y = x[:size], y[:size]
    return encode(config, x), torch.as_tensor(y, dtype=torch.long, device=config.device)


def _loss(config: TrainConfig, out: Tensor, labels: Tensor) -> Tensor:
    """Loss of the network output: output spike times, or ``max V`` per readout neuron."""
    if config.readout == "voltage":
        return voltage_cross_entropy(out, labels, scale=config.voltage_scale)
    return first_spike_cross_entropy(
        first_spikes(out), labels, tau0=config.tau0, tau1=config.tau1, alpha=config.alpha, t_silent=config.t_silent
    )


def _silent_label_push(model: nn.Sequential, outs: list[Tensor], labels: Tensor, config: TrainConfig) -> Tensor | None:
    """``silent_push / batch * sum (threshold - max_t V_label)`` over samples whose label neuron is silent.

    The first-spike loss gives those samples no gradient; this term's exact gradient
    raises the silent label neuron's peak voltage on ``[0, t_silent]`` (see
    :func:`~eventprop.voltage_losses.label_voltage_gap`). ``None`` when off or when
    every label neuron fires.
    """
    if config.silent_push == 0 or config.readout != "first-spike":
        return None
    silent = torch.isinf(first_spikes(outs[-1]).gather(1, labels[:, None]).squeeze(1))
    if not bool(silent.any()):
        return None
    idx = silent.nonzero().squeeze(1)
    layer = model[-1]
    p = layer.params
    trajectory = lif_trajectory(
        outs[-2][idx], outs[-1][idx], layer.weight, tau_mem=p.tau_mem, tau_syn=p.tau_syn, threshold=p.threshold, window=config.t_silent
    )
    gap = label_voltage_gap(trajectory, labels[idx], reduction="sum")
    return config.silent_push * gap / labels.shape[0]


def _correct(config: TrainConfig, out: Tensor, labels: Tensor) -> int:
    """Correct samples: label neuron strictly first (first-spike) or strictly highest ``max V`` (voltage)."""
    if config.readout == "voltage":
        return int(voltage_correct(out, labels).sum())
    return int(first_spike_correct(first_spikes(out), labels).sum())


@dataclass
class _Activity:
    """Spike statistics accumulated over batches (NaN for a non-spiking output layer)."""

    spiking_output: bool = True
    samples: int = 0
    spikes: list[float] = field(default_factory=lambda: [0.0, 0.0])
    silent: list[float] = field(default_factory=lambda: [0.0, 0.0])
    neurons: list[int] = field(default_factory=lambda: [0, 0])

    def add(self, layer_outputs: list[Tensor]) -> None:
        self.samples += layer_outputs[0].shape[0]
        for k, out in enumerate(layer_outputs if self.spiking_output else layer_outputs[:1]):
            self.spikes[k] += float(torch.isfinite(out).sum())
            self.silent[k] += float(torch.isinf(out[..., 0]).sum())
            self.neurons[k] += out.shape[0] * out.shape[1]

    def summary(self) -> dict[str, float]:
        out_spikes = self.spikes[1] / max(self.samples, 1) if self.spiking_output else math.nan
        return {
            "hidden_spikes": self.spikes[0] / max(self.samples, 1),
            "output_spikes": out_spikes,
            "hidden_silent": self.silent[0] / max(self.neurons[0], 1),
            "output_silent": self.silent[1] / max(self.neurons[1], 1) if self.spiking_output else math.nan,
        }


def _forward(model: nn.Sequential, x: Tensor) -> list[Tensor]:
    """Output of every layer; a leaky-integrator readout gives ``max_t V`` ``(batch, classes)``."""
    outs = []
    for layer in model:
        x = layer(x).max()[0] if isinstance(layer, LIReadout) else layer(x)
        outs.append(x)
    return outs


@torch.no_grad()
def evaluate_model(model: nn.Sequential, config: TrainConfig, x: Tensor, y: Tensor, batch_size: int = 1000) -> dict[str, float]:
    """Mean loss, accuracy (see :func:`_correct`) and activity on ``(x, y)``."""
    loss_sum, correct = 0.0, 0
    activity = _Activity(config.readout == "first-spike")
    for start in range(0, x.shape[0], batch_size):
        outs = _forward(model, x[start : start + batch_size])
        labels = y[start : start + batch_size]
        loss_sum += float(_loss(config, outs[-1], labels)) * labels.shape[0]
        correct += _correct(config, outs[-1], labels)
        activity.add(outs)
    n = max(x.shape[0], 1)
    return {"loss": loss_sum / n, "accuracy": correct / n, **activity.summary()}


def _jitter(times: Tensor, sigma: float, gen: torch.Generator) -> Tensor:
    """Training-time augmentation: every input spike moves by ``N(0, sigma^2)`` (clamped at 0).

    Each input neuron of the encoders fires once, so the trains stay ordered.
    """
    if sigma == 0:
        return times
    shift = torch.randn(times.shape, generator=gen, dtype=times.dtype).to(times.device) * sigma
    return (times + shift).clamp(min=0).sort(dim=-1).values


def _bump(model: nn.Sequential, outs: list[Tensor], config: TrainConfig) -> LIFLayer | None:
    """Paper's weight bumping; returns the bumped layer (or ``None``).

    The first spiking layer (in network order) whose silent fraction on this minibatch
    (silent (sample, neuron) pairs / all pairs) exceeds its allowed fraction gets all its
    weights raised by ``bump``; later layers wait until it is active enough, as in the
    authors' code (a silent hidden layer also silences the output, and raising the
    output weights cannot help then).
    """
    if config.bump == 0:
        return None
    with torch.no_grad():
        for layer, out, allowed in zip(model, outs, (config.silent_hidden, config.silent_output)):
            if isinstance(layer, LIFLayer) and float(torch.isinf(out[..., 0]).float().mean()) > allowed:
                layer.weight += config.bump
                return layer
    return None


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _config_from_dict(d: dict[str, Any]) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    d = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
    return TrainConfig(**d)


def load_model(path: str | os.PathLike[str], device: str | None = None) -> tuple[nn.Sequential, TrainConfig]:
    """Load a model saved by :func:`train` (``best.pt`` or ``checkpoint.pt``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        config = _config_from_dict(state["config"])
    except Exception as exc:  # a file that is not one of our checkpoints
        raise ValueError(f"checkpoint {str(path)!r} is not an eventprop checkpoint ({exc})") from None
    if device is not None:
        config.device = device
    model = build_model(config, state["n_inputs"], state["n_classes"])
    model.load_state_dict(state["model"])
    return model, config


def _write_metrics(path: Path, rows: list[dict[str, float]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def train(
    config: TrainConfig,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train one seed; returns the summary also written to ``out_dir/summary.json``."""
    config.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    x_train, y_train = _split(config, "train")
    x_val, y_val = _split(config, "validation")
    n_inputs, n_classes = x_train.shape[1], TASKS[config.task].n_classes

    torch.manual_seed(config.seed)
    model = build_model(config, n_inputs, n_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=True)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)
    # The evaluated model: the weights themselves, or their exponential moving average.
    averaged = (
        torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(config.ema))
        if config.ema > 0
        else None
    )
    shuffle = torch.Generator().manual_seed(config.seed)
    noise = torch.Generator().manual_seed(config.seed + 1_000_003)
    rows: list[dict[str, float]] = []
    best_acc, best_epoch, start_epoch = -1.0, -1, 0
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if dataclasses.replace(_config_from_dict(state["config"]), epochs=config.epochs) != config:
            raise ValueError(f"--resume: the configuration differs from the one in {ckpt_path} (only --epochs may change)")
        model.load_state_dict(state["model"])
        if averaged is not None:
            averaged.load_state_dict(state["averaged"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        shuffle.set_state(state["shuffle_rng"])
        if "noise_rng" in state:  # absent in checkpoints written before jitter existed
            noise.set_state(state["noise_rng"])
        torch.set_rng_state(state["torch_rng"])
        rows, best_acc, best_epoch, start_epoch = state["metrics"], state["best_accuracy"], state["best_epoch"], state["epoch"] + 1
        log(f"resuming {out} after epoch {state['epoch'] + 1}")

    meta = {"config": asdict(config), "n_inputs": n_inputs, "n_classes": n_classes}
    n_train = x_train.shape[0]
    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n_train, generator=shuffle).to(config.device)
        loss_sum, correct = 0.0, 0
        activity = _Activity(config.readout == "first-spike")
        batches = range(0, n_train, config.batch_size)
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False, disable=not progress)
        for start in bar:
            idx = perm[start : start + config.batch_size]
            outs = _forward(model, _jitter(x_train[idx], config.jitter, noise))
            loss = _loss(config, outs[-1], y_train[idx])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {float(loss)} at epoch {epoch + 1}")
            push = _silent_label_push(model, outs, y_train[idx], config)
            optimizer.zero_grad()
            (loss if push is None else loss + push).backward()
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            _bump(model, outs, config)
            if averaged is not None:
                averaged.update_parameters(model)
            loss_sum += float(loss.detach()) * idx.shape[0]
            correct += _correct(config, outs[-1].detach(), y_train[idx])
            activity.add([o.detach() for o in outs])
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        evaluated = model if averaged is None else averaged.module
        val = evaluate_model(evaluated, config, x_val, y_val)
        row = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / n_train,
            "train_accuracy": correct / n_train,
            "val_loss": val["loss"],
            "val_accuracy": val["accuracy"],
            **activity.summary(),
            "lr": lr,
            "seconds": time.perf_counter() - t0,
        }
        rows.append(row)
        if val["accuracy"] > best_acc:
            best_acc, best_epoch = val["accuracy"], epoch + 1
            _save_atomic({**meta, "model": evaluated.state_dict(), "epoch": epoch}, out / "best.pt")
        _write_metrics(out / "metrics.csv", rows)
        _save_atomic(
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
        log(
            f"seed {config.seed} epoch {epoch + 1:3d}: train loss {row['train_loss']:.4f} acc {100 * row['train_accuracy']:.2f}% | "
            f"val loss {row['val_loss']:.4f} acc {100 * row['val_accuracy']:.2f}% | hidden spikes {row['hidden_spikes']:.1f} | "
            f"{row['seconds']:.1f} s"
        )

    best_model, _ = load_model(out / "best.pt", device=config.device)
    x_test, y_test = _split(config, "test")
    test = evaluate_model(best_model, config, x_test, y_test)
    summary = {
        "config": asdict(config),
        "best_epoch": best_epoch,
        "best_val_accuracy": best_acc,
        "final_val_accuracy": rows[-1]["val_accuracy"] if rows else None,
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "train_seconds": sum(r["seconds"] for r in rows),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _plot(out / "training.png", [rows])
    return summary


def _plot(path: Path, runs: list[list[dict[str, float]]]) -> None:
    from .plotting import plot_training_curves

    curves = [{k: [r[k] for r in rows] for k in ("epoch", "val_accuracy", "val_loss")} for rows in runs]
    for c in curves:
        c["val_error"] = [1 - a for a in c["val_accuracy"]]
    plot_training_curves(curves, path)


def _train_worker(args: tuple[TrainConfig, str, bool, int]) -> dict[str, Any]:
    config, out_dir, resume, threads = args
    torch.set_num_threads(threads)
    try:
        import numba

        numba.set_num_threads(threads)
    except ImportError:
        pass
    return train(config, out_dir, resume=resume, progress=False)


def train_seeds(config: TrainConfig, n_seeds: int, out_dir: str | os.PathLike[str], *, resume: bool = False, workers: int | None = None) -> dict[str, Any]:
    """Train seeds ``config.seed ... config.seed + n_seeds - 1`` in parallel processes.

    Each seed writes to ``out_dir/seed_<k>``; the aggregate (mean and standard
    deviation of test and best validation accuracy) goes to ``out_dir/summary.json``
    and the curves of all seeds (mean bold, each seed grey) to ``out_dir/training.png``.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    config.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    workers = max(1, min(n_seeds, workers or cores))
    threads = max(1, cores // workers)
    jobs = [(dataclasses.replace(config, seed=config.seed + k), str(out / f"seed_{config.seed + k}"), resume, threads) for k in range(n_seeds)]
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        summaries = list(tqdm(pool.map(_train_worker, jobs), total=n_seeds, desc="seeds"))
    test = np.array([s["test_accuracy"] for s in summaries])
    val = np.array([s["best_val_accuracy"] for s in summaries])
    aggregate = {
        "seeds": [s["config"]["seed"] for s in summaries],
        "test_accuracy": test.tolist(),
        "best_val_accuracy": val.tolist(),
        "test_accuracy_mean": float(test.mean()),
        "test_accuracy_std": float(test.std()),
        "best_val_accuracy_mean": float(val.mean()),
        "best_val_accuracy_std": float(val.std()),
        "config": asdict(config),
    }
    (out / "summary.json").write_text(json.dumps(aggregate, indent=2))
    runs = []
    for _, job_dir, _, _ in jobs:
        with open(Path(job_dir) / "metrics.csv") as f:
            runs.append([{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)])
    _plot(out / "training.png", runs)
    return aggregate
