"""Several seeds of one configuration, in parallel processes, and their aggregate."""

from __future__ import annotations

import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import threading
from dataclasses import asdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .checkpoints import RunLock
from .config import TrainConfig
from .loop import train
from .outputs import plot_runs, read_metrics, write_json
from .threads import set_threads

__all__ = ["train_seeds"]


def _exit_with_parent() -> None:
    """Pool initializer: end this worker process as soon as the process that started it ends.

    Without it a worker whose parent was killed (``SIGKILL``, or ``SIGTERM``, which ends
    Python without cleanup) would train its seed to the end, writing into a folder whose
    run lock is gone. Checkpoints are written atomically, so the seed can be resumed.
    """
    parent = multiprocessing.parent_process()
    if parent is None:  # pragma: no cover - a pool worker always has a parent
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])  # ready once the parent has ended
        os._exit(1)

    threading.Thread(target=watch, name="eventprop-parent-watch", daemon=True).start()


def _train_worker(args: tuple[TrainConfig, str, bool, int, bool]) -> dict[str, Any]:
    config, out_dir, resume, threads, tensorboard = args
    set_threads(threads)
    return train(config, out_dir, resume=resume, progress=False, tensorboard=tensorboard)


def train_seeds(
    config: TrainConfig,
    n_seeds: int,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    workers: int | None = None,
    threads: int = 1,
    progress: bool = True,
    log: Callable[[str], None] = print,
    tensorboard: bool = False,
) -> dict[str, Any]:
    """Train seeds ``config.seed ... config.seed + n_seeds - 1`` in parallel processes.

    Each seed writes to ``out_dir/seed_<k>``; the aggregate (mean and standard
    deviation of test and best validation accuracy) goes to ``out_dir/summary.json``
    and the curves of all seeds (mean bold, each seed grey) to ``out_dir/training.png``.
    ``workers`` processes (default: one per core, at most ``n_seeds``) train with
    ``threads`` threads each; results do not depend on either. A worker ends as soon as
    this process ends, however it ended (killed too). With ``resume=True``
    each seed that has a checkpoint continues from it and the others start afresh
    (``log`` names them); a folder with no checkpoint at all is an error. The whole
    run holds ``out_dir/run.lock``. ``progress`` shows a bar over the seeds on a terminal;
    ``tensorboard`` logs every seed's metrics into ``out_dir/seed_<k>/tensorboard``.
    """
    config.validate()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("train_seeds: under torchrun every process trains a shard of one run; train seeds one after another")
    out = Path(out_dir)
    with RunLock(out):
        return _train_seeds(config, n_seeds, out, resume, workers, threads, progress, log, tensorboard)


def _train_seeds(
    config: TrainConfig,
    n_seeds: int,
    out: Path,
    resume: bool,
    workers: int | None,
    threads: int,
    progress: bool,
    log: Callable[[str], None],
    tensorboard: bool,
) -> dict[str, Any]:
    from concurrent.futures import ProcessPoolExecutor

    workers = max(1, min(n_seeds, workers or os.cpu_count() or 1))
    dirs = [out / f"seed_{config.seed + k}" for k in range(n_seeds)]
    has_checkpoint = [(d / "checkpoint.pt").exists() for d in dirs]
    if resume:
        if not any(has_checkpoint):
            raise ValueError(f"--resume: {out} holds no seed_<k>/checkpoint.pt to continue from")
        for d, found in zip(dirs, has_checkpoint):
            if not found:
                log(f"{d.name} has no checkpoint.pt: it starts afresh")
    jobs = [
        (dataclasses.replace(config, seed=config.seed + k), str(d), resume and found, threads, tensorboard)
        for k, (d, found) in enumerate(zip(dirs, has_checkpoint))
    ]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_exit_with_parent) as pool:
        bar = tqdm(pool.map(_train_worker, jobs), total=n_seeds, desc="seeds", disable=None if progress else True)
        summaries = list(bar)
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
    write_json(out / "summary.json", aggregate)
    title = (
        f"{config.task} ({config.preset} preset), {n_seeds} seeds: test accuracy "
        f"{100 * aggregate['test_accuracy_mean']:.2f} +- {100 * aggregate['test_accuracy_std']:.2f} %"
    )
    skipped = plot_runs(out / "training.png", [read_metrics(Path(job[1]) / "metrics.csv") for job in jobs], title=title)
    if skipped:
        log(skipped)
    return aggregate
