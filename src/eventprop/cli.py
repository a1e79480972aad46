"""Command line: ``eventprop train yinyang|digits``, ``eventprop evaluate``, ``eventprop figure1``.

Errors in the user's input end with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .training import Task

__all__ = ["main"]


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    from .training import READOUTS, TASKS

    presets = "; ".join(f"{task}: {', '.join(sorted(t.presets))}" for task, t in TASKS.items())
    p.add_argument("task", choices=sorted(TASKS), help="data set to train on (digits: 8x8 handwritten digits, bundled)")
    p.add_argument("--preset", default="best", help=f"hyperparameter preset ({presets}; default: best)")
    p.add_argument(
        "--readout",
        default=None,
        choices=READOUTS,
        help="output layer: first-spike (LIF neurons, first-spike cross-entropy; default) or voltage "
        "(leaky integrators, max-over-time voltage cross-entropy)",
    )
    p.add_argument("--out", default=None, help="output folder (default: runs/<task>-<preset>[-voltage])")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    p.add_argument("--seeds", type=int, default=1, help="train this many seeds (seed, seed+1, ...) in parallel processes")
    p.add_argument("--workers", type=int, default=None, help="processes for --seeds (default: number of cores)")
    p.add_argument("--device", default=None, help="cpu or cuda[:N]")
    p.add_argument("--dtype", default=None, choices=["float32", "float64"])
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    h = p.add_argument_group("hyperparameters (override the preset)")
    h.add_argument("--epochs", type=int)
    h.add_argument("--batch-size", type=int)
    h.add_argument("--lr", type=float, help="Adam learning rate")
    h.add_argument("--lr-decay", type=float, help="learning-rate factor per epoch")
    h.add_argument("--hidden", type=int, help="hidden neurons")
    h.add_argument("--tau-mem", type=float, help="membrane time constant (ms)")
    h.add_argument("--tau-syn", type=float, help="synaptic time constant (ms)")
    h.add_argument("--threshold", type=float)
    h.add_argument("--t-min", type=float, help="encoding: time of value 0 (Yin-Yang) or of the brightest pixel (digits) (ms)")
    h.add_argument("--t-max", type=float, help="encoding: time of value 1 (Yin-Yang) or of the faintest pixel (digits) (ms)")
    h.add_argument("--bias-times", type=float, nargs="*", help="bias spike times (ms)")
    h.add_argument("--hidden-init", type=float, nargs=2, metavar=("MEAN", "STD"))
    h.add_argument("--output-init", type=float, nargs=2, metavar=("MEAN", "STD"))
    h.add_argument("--tau0", type=float, help="loss: softmax time constant (ms) = xi * tau_syn")
    h.add_argument("--tau1", type=float, help="loss: regulariser time constant (ms) = beta * tau_syn")
    h.add_argument("--alpha", type=float, help="loss: regulariser weight")
    h.add_argument("--t-silent", type=float, help="loss: time given to silent output neurons (ms)")
    h.add_argument("--window", type=float, help="voltage readout: window [0, T] of the max over time (ms)")
    h.add_argument("--voltage-scale", type=float, help="voltage readout: softmax scale on max V (1/threshold)")
    h.add_argument("--bump", type=float, help="weight bump when a layer is too silent")
    h.add_argument("--silent-hidden", type=float, help="allowed silent fraction, hidden layer")
    h.add_argument("--silent-output", type=float, help="allowed silent fraction, output layer")
    h.add_argument("--jitter", type=float, help="training augmentation: Gaussian jitter of input spike times (ms; 0 = off)")
    h.add_argument("--ema", type=float, help="evaluate an exponential moving average of the weights (decay per step; 0 = off)")
    h.add_argument("--grad-clip", type=float, help="clip the gradient norm (0 = off)")
    h.add_argument(
        "--silent-push",
        type=float,
        help="first-spike readout: weight of (threshold - max V) of a silent label neuron, which the spike-time loss leaves without gradient (0 = off)",
    )
    h.add_argument("--train-size", type=int, help="use only the first N training points (quick runs)")
    h.add_argument("--val-size", type=int, help="use only the first N validation points (quick runs)")


_HYPER = [
    "epochs", "batch_size", "lr", "lr_decay", "hidden", "tau_mem", "tau_syn", "threshold", "t_min", "t_max",
    "bias_times", "hidden_init", "output_init", "tau0", "tau1", "alpha", "t_silent", "window", "voltage_scale",
    "readout", "bump", "silent_hidden",
    "silent_output", "jitter", "ema", "grad_clip", "silent_push", "train_size", "val_size", "seed", "device", "dtype",
]  # fmt: skip


def _cmd_train(args: argparse.Namespace) -> int:
    from .training import preset_config, train, train_seeds

    overrides = {k: getattr(args, k) for k in _HYPER}
    for k in ("bias_times", "hidden_init", "output_init"):
        if overrides[k] is not None:
            overrides[k] = tuple(overrides[k])
    config = preset_config(args.preset, task=args.task, **overrides)
    config.validate()
    if args.seeds < 1:
        raise ValueError(f"--seeds must be a positive int, got {args.seeds}")
    suffix = "-voltage" if config.readout == "voltage" else ""
    out = Path(args.out or f"runs/{args.task}-{args.preset}{suffix}")
    if (out / "checkpoint.pt").exists() and not args.resume and args.seeds == 1:
        raise ValueError(f"{out} already holds a run: pass --resume to continue it or choose another --out")
    print(f"training {args.task} ({args.preset} preset, {config.readout} readout) into {out}: " + json.dumps(dataclasses.asdict(config)))
    if args.seeds == 1:
        summary = train(config, out, resume=args.resume, progress=not args.quiet)
        print(f"test accuracy {100 * summary['test_accuracy']:.2f}% (best validation {100 * summary['best_val_accuracy']:.2f}% at epoch {summary['best_epoch']})")
    else:
        agg = train_seeds(config, args.seeds, out, resume=args.resume, workers=args.workers)
        print(
            f"test accuracy over {args.seeds} seeds: {100 * agg['test_accuracy_mean']:.2f} +- {100 * agg['test_accuracy_std']:.2f}% "
            f"(best validation {100 * agg['best_val_accuracy_mean']:.2f} +- {100 * agg['best_val_accuracy_std']:.2f}%)"
        )
    print(f"results in {out}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from .training import TASKS, encode, evaluate_model, load_model

    model, config = load_model(args.checkpoint, device=args.device)
    task = TASKS[config.task]
    if args.inputs is not None or args.labels is not None:
        if args.inputs is None or args.labels is None:
            raise ValueError("--inputs and --labels must be given together")
        x, y = _load_points(args.inputs, args.labels, task)
        source = f"{args.inputs}"
    else:
        x, y = task.split(args.split)
        source = f"the {args.split} split"
    result = evaluate_model(model, config, encode(config, x), torch.as_tensor(y, dtype=torch.long, device=config.device))
    print(f"accuracy {100 * result['accuracy']:.2f}% on {len(y)} points of {source} ({config.task}, loss {result['loss']:.4f})")
    return 0


def _load_points(inputs: str, labels: str, task: Task) -> tuple[np.ndarray, np.ndarray]:
    for path in (inputs, labels):
        if not Path(path).is_file():
            raise ValueError(f"file {path!r} does not exist")
    try:
        x = np.load(inputs, allow_pickle=False)
        y = np.load(labels, allow_pickle=False)
    except Exception as exc:
        raise ValueError(f"cannot read .npy arrays: {exc}") from None
    if x.ndim != 2 or x.shape[1] != task.n_features:
        raise ValueError(f"--inputs must have shape (n, {task.n_features}) with rows of {task.features}, got {x.shape}")
    if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"--labels must be integers of shape ({x.shape[0]},), got {y.dtype} {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= task.n_classes):
        raise ValueError(f"--labels must lie in 0..{task.n_classes - 1}")
    return x, y


def _cmd_figure1(args: argparse.Namespace) -> int:
    from .figure1 import main as figure1_main

    return figure1_main(["--out", args.out, "--seed", str(args.seed)]) or 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventprop", description="Exact EventProp training of spiking networks.")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a network (Yin-Yang or digits)")
    _add_train_arguments(t)
    t.set_defaults(func=_cmd_train)
    e = sub.add_parser("evaluate", help="accuracy of a saved model")
    e.add_argument("checkpoint", help="best.pt or checkpoint.pt of a training run")
    e.add_argument("--split", default="test", choices=["train", "validation", "test"])
    e.add_argument("--inputs", help="X.npy of shape (n, features): Yin-Yang [x, y, 1-x, 1-y]; digits 64 pixels 0..16")
    e.add_argument("--labels", help="y.npy of shape (n,): classes (Yin-Yang 0..2, digits 0..9)")
    e.add_argument("--device", default=None)
    e.set_defaults(func=_cmd_evaluate)
    f = sub.add_parser("figure1", help="reproduce the paper's Figure 1 and its gradient check")
    f.add_argument("--out", default="runs/figure1")
    f.add_argument("--seed", type=int, default=0)
    f.set_defaults(func=_cmd_figure1)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``eventprop`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError) as exc:
        print(f"eventprop: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eventprop: interrupted (resume with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
