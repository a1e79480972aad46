"""Command line: ``eventprop train TASK``, ``eventprop evaluate``, ``eventprop figure1``.

The flags of ``train`` come from the field declarations of
:class:`~eventprop.training.config.TrainConfig` (one declaration: name, parser, help);
``eventprop train TASK --help`` lists them with that task's preset values. Errors in
the user's input end with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .training import Task

__all__ = ["main", "build_parser"]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _naming_the_flag(message: str) -> str:
    """A configuration error that starts with a field's name, prefixed with its flag."""
    from .training.config import cli_fields

    name = re.match(r"[a-z_0-9]+", message)
    if name and name.group() in {f.name for f in cli_fields()}:
        return f"{_flag(name.group())}: {message}"
    return message


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(_show(v) for v in value) if value else "(none)"
    if isinstance(value, bool):
        return "on" if value else "off"
    return "unset" if value is None else str(value)


def _preset_values(task_name: str, name: str) -> str:
    """``best: X; paper: Y`` for a field, with the voltage readout's value where it differs."""
    from .training import READOUTS, TASKS, preset_config

    parts = []
    for preset in TASKS[task_name].presets:
        values = {r: getattr(preset_config(preset, task=task_name, readout=r), name) for r in READOUTS}
        first = next(iter(values.values()))
        text = _show(first)
        others = [f"{r} readout {_show(v)}" for r, v in values.items() if v != first]
        parts.append(f"{preset}: {text}" + (f" ({', '.join(others)})" if others else ""))
    return "; ".join(parts)


def _add_task_parser(sub: argparse._SubParsersAction, task_name: str, task: Task) -> None:
    from .training.config import RENAMED_FIELDS, cli_fields

    presets = list(task.presets)
    p = sub.add_parser(
        task_name,
        help=f"{task.features} -> {task.n_classes} classes",
        description=f"Train on {task_name}: {task.features}, {task.n_classes} classes; encoding: {task.encoding}. "
        f"Every hyperparameter defaults to the preset (values shown per preset).",
    )
    p.add_argument("--preset", default=presets[0], help=f"hyperparameter preset: {', '.join(presets)} (default: {presets[0]})")
    p.add_argument("--out", default=None, help="output folder (default: runs/<task>-<preset>[-voltage])")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--seeds", type=int, default=1, help="train this many seeds (seed, seed+1, ...) in parallel processes")
    p.add_argument("--workers", type=int, default=None, help="processes for --seeds (default: number of cores)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads per training process, for torch and the compiled kernels (default 1: results are the "
        "same at any count; on 2 cores a second thread saves Yin-Yang under 10%% and triples the time when "
        "another process holds a core)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars (they never go to a redirected log)")
    if getattr(task, "source", None) is not None:
        p.add_argument("--download", action="store_true", help="fetch missing files into --data first (needs the internet)")
    p.add_argument(
        "--tensorboard", action="store_true", help="also log the per-epoch metrics for TensorBoard into OUT/tensorboard"
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in cli_fields():
        meta = f.metadata
        if meta["group"] not in groups:
            groups[meta["group"]] = p.add_argument_group(meta["group"])
        group = groups[meta["group"]]
        shown = "" if f.name == "readout" else f" [{_preset_values(task_name, f.name)}]"
        kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": meta["help"] + shown}
        for key in ("type", "nargs", "metavar", "choices"):
            if meta[key] is not None:
                kwargs[key] = meta[key]
        group.add_argument(_flag(f.name), **kwargs)
    deprecated = p.add_argument_group("deprecated spellings")
    for old, new in RENAMED_FIELDS.items():
        meta = next(f.metadata for f in cli_fields() if f.name == new)
        kwargs = {"dest": f"deprecated_{new}", "default": None, "help": f"use {_flag(new)}", "type": meta["type"]}
        for key in ("nargs", "metavar"):
            if meta[key] is not None:
                kwargs[key] = meta[key]
        kwargs.setdefault("metavar", new.upper())
        deprecated.add_argument(_flag(old), **kwargs)
    p.set_defaults(func=_cmd_train, task=task_name, download=False)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from .training.config import RENAMED_FIELDS, cli_fields, parse_bool

    overrides: dict[str, Any] = {}
    for f in cli_fields():
        value = getattr(args, f.name)
        old = getattr(args, f"deprecated_{f.name}", None)
        if old is not None:
            old_flag = next(_flag(k) for k, v in RENAMED_FIELDS.items() if v == f.name)
            if value is not None:
                raise ValueError(f"pass {_flag(f.name)} only ({old_flag} is its deprecated spelling)")
            print(f"eventprop: note: {old_flag} is deprecated, use {_flag(f.name)}", file=sys.stderr)
            value = old
        if isinstance(value, list):
            value = tuple(value) if value or f.metadata["type"] is not parse_bool else (True,)
        overrides[f.name] = value
    return overrides


def _cmd_train(args: argparse.Namespace) -> int:
    from .training import TASKS, preset_config, set_threads, train, train_seeds
    from .training.outputs import TensorBoardLog

    try:
        config = preset_config(args.preset, task=args.task, **_overrides(args))
        config.validate()
    except ValueError as exc:
        raise ValueError(_naming_the_flag(str(exc))) from None
    for flag in ("seeds", "workers", "threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag} must be a positive int, got {value}")
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and args.seeds > 1:
        raise ValueError("--seeds: under torchrun every process trains a shard of one run; train seeds one after another")
    if distributed and ":" in config.device:
        raise ValueError(f"--device: under torchrun pass cuda without an index (each process uses its LOCAL_RANK GPU), got {config.device!r}")
    if args.tensorboard:
        TensorBoardLog.require()
    if args.download:
        if distributed:
            raise ValueError("--download: fetch the data once without torchrun, then start the processes")
        _download(config)
    try:
        set_threads(args.threads)
    except ValueError as exc:
        raise ValueError(f"--{exc}") from None
    say = print if int(os.environ.get("RANK", "0")) == 0 else _quiet
    suffix = "" if config.readout == TASKS[args.task].default_readout else f"-{config.readout}"
    out = Path(args.out or f"runs/{args.task}-{args.preset}{suffix}")
    _check_output_folder(out, resume=args.resume, seeds=args.seeds)
    say(f"training {args.task} ({args.preset} preset, {config.readout} readout) into {out}: " + json.dumps(dataclasses.asdict(config)))
    if args.seeds == 1:
        summary = train(config, out, resume=args.resume, progress=not args.quiet, tensorboard=args.tensorboard)
        say(f"test accuracy {100 * summary['test_accuracy']:.2f}% (best validation {100 * summary['best_val_accuracy']:.2f}% at epoch {summary['best_epoch']})")
    else:
        agg = train_seeds(
            config,
            args.seeds,
            out,
            resume=args.resume,
            workers=args.workers,
            threads=args.threads,
            progress=not args.quiet,
            tensorboard=args.tensorboard,
        )
        say(
            f"test accuracy over {args.seeds} seeds: {100 * agg['test_accuracy_mean']:.2f} +- {100 * agg['test_accuracy_std']:.2f}% "
            f"(best validation {100 * agg['best_val_accuracy_mean']:.2f} +- {100 * agg['best_val_accuracy_std']:.2f}%)"
        )
    say(f"results in {out}")
    if distributed:
        import torch.distributed as dist

        dist.destroy_process_group()
    return 0


def _download(config: Any) -> None:
    """Let tonic fetch an event task's missing files into ``config.data``."""
    from .datasets.sources import event_split
    from .training import TASKS

    Path(config.data).mkdir(parents=True, exist_ok=True)
    for name in ("train", "validation", "test"):
        event_split(TASKS[config.task].source, config.data, name, download=True)


def _quiet(*_args: Any, **_kwargs: Any) -> None:
    """``print`` of the processes above rank 0 in a torchrun run."""


def _check_output_folder(out: Path, *, resume: bool, seeds: int) -> None:
    """Refuse, before any work, an ``--out`` that is a file, cannot be created or written, already
    holds a run (without ``--resume``) or holds no checkpoint to resume (with it)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {str(out)!r} (--out) is a file")
    single = (out / "checkpoint.pt").exists()
    several = any(out.glob("seed_*/checkpoint.pt"))
    if (single or several or (out / "summary.json").exists()) and not resume:
        raise ValueError(f"--out: {out} already holds a run: pass --resume to continue it or choose another --out")
    if resume and not (single if seeds == 1 else several):
        wanted = "checkpoint.pt" if seeds == 1 else "seed_<k>/checkpoint.pt"
        hint = " (it holds a multi-seed run: pass its --seeds)" if several else " (it holds a single-seed run: drop --seeds)" if single else ""
        raise ValueError(f"--resume: {out} holds no {wanted} to continue from{hint}")
    created = [p for p in (out, *out.parents) if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"output folder {str(out)!r} (--out) cannot be created: {exc.strerror or exc}") from None
    try:
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        for p in created:  # leave no empty folder behind
            p.rmdir()
        raise ValueError(f"output folder {str(out)!r} (--out) cannot be written: {exc.strerror or exc}") from None


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from .training import TASKS, encode, evaluate_model, load_model
    from .training.loop import load_split
    from .training.splits import EncodedSplit
    from .training.tasks import EventTask

    if Path(args.checkpoint).is_dir():
        raise ValueError(f"checkpoint {args.checkpoint!r} is a folder: pass the model file in it, e.g. {Path(args.checkpoint) / 'best.pt'}")
    model, config = load_model(args.checkpoint, device=args.device)
    task = TASKS[config.task]
    if args.inputs is not None or args.labels is not None:
        if isinstance(task, EventTask):
            raise ValueError(f"--inputs/--labels: the {config.task} task reads its samples from --data")
        if args.inputs is None or args.labels is None:
            raise ValueError("--inputs and --labels must be given together")
        x, y = _load_points(args.inputs, args.labels, task)
        split = EncodedSplit(encode(config, x), torch.as_tensor(y, dtype=torch.long, device=config.device))
        source = f"{args.inputs}"
    else:  # the whole split
        whole = dataclasses.replace(config, train_size=None, val_size=None, data=args.data or config.data)
        split = load_split(whole, args.split)
        source = f"the {args.split} split"
    predictions: list[torch.Tensor] = []
    y = split.labels.cpu().numpy()
    result = evaluate_model(model, config, split, predictions=predictions)
    print(f"accuracy {100 * result['accuracy']:.2f}% on {len(y)} points of {source} ({config.task}, loss {result['loss']:.4f})")
    if args.predictions is not None:
        predicted = torch.cat(predictions).cpu().numpy() if predictions else np.zeros(0, dtype=np.int64)
        _write_predictions(Path(args.predictions), np.asarray(y), predicted)
        print(f"predictions in {args.predictions}")
    return 0


def _write_predictions(path: Path, labels: np.ndarray, predicted: np.ndarray) -> None:
    """``index,label,prediction`` rows (prediction ``-1``: the readout named no class)."""
    rows = ["index,label,prediction"] + [f"{i},{int(a)},{int(b)}" for i, (a, b) in enumerate(zip(labels, predicted))]
    try:
        path.write_text("\n".join(rows) + "\n")
    except OSError as exc:
        raise ValueError(f"--predictions: cannot write {path} ({exc.strerror or exc})") from None


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
    from .inspection.figure1 import main as figure1_main

    return figure1_main(["--out", args.out, "--seed", str(args.seed)]) or 0


def build_parser() -> argparse.ArgumentParser:
    """The ``eventprop`` argument parser."""
    from .training import TASKS

    parser = argparse.ArgumentParser(prog="eventprop", description="Exact EventProp training of spiking networks.")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a network", description="Train a spiking classifier on a task.")
    tasks = t.add_subparsers(dest="task", required=True, metavar="TASK", title="tasks")
    for name, task in TASKS.items():
        _add_task_parser(tasks, name, task)
    e = sub.add_parser("evaluate", help="accuracy of a saved model")
    e.add_argument("checkpoint", help="best.pt or checkpoint.pt of a training run")
    e.add_argument("--split", default="test", choices=["train", "validation", "test"])
    e.add_argument("--inputs", help="X.npy of shape (n, features): Yin-Yang [x, y, 1-x, 1-y]; digits 64 pixels 0..16")
    e.add_argument("--labels", help="y.npy of shape (n,): classes (Yin-Yang 0..2, digits 0..9)")
    e.add_argument("--device", default=None, help="cpu or cuda[:N] (default: the run's)")
    e.add_argument("--data", default=None, help="event tasks: the data folder (default: the run's --data)")
    e.add_argument("--predictions", metavar="FILE.csv", help="also write index,label,prediction per point (-1: no class)")
    e.set_defaults(func=_cmd_evaluate)
    f = sub.add_parser("figure1", help="reproduce the paper's Figure 1 and its gradient check")
    f.add_argument("--out", default="runs/figure1")
    f.add_argument("--seed", type=int, default=0)
    f.set_defaults(func=_cmd_figure1)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``eventprop`` console script."""
    from .errors import SpikeLimitError

    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the CLI prints its own notes
            return int(args.func(args))
    except (ValueError, FileNotFoundError, SpikeLimitError) as exc:
        print(f"eventprop: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eventprop: interrupted (resume with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
