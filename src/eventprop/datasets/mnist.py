"""MNIST from its IDX files as distributed (LeCun, Cortes & Burges), gzipped or not.

The four files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``) are read
from ``DIR`` itself or from torchvision's layout ``DIR/MNIST/raw``. IDX: a big-endian
header (two zero bytes, the type code 0x08 = unsigned byte, the number of dimensions,
then one 4-byte size per dimension) followed by the data.

Splits: ``train`` is the first five sixths of the training file (50,000 images),
``validation`` the last sixth (10,000), ``test`` the t10k file (10,000). Rows are the 784
pixel intensities 0..255, row-major 28 x 28; numpy only.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

__all__ = ["MNIST_FILES", "read_idx", "mnist_split"]

#: split -> (images stem, labels stem)
MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: str | Path) -> np.ndarray:
    """The unsigned-byte array of an IDX file (``.gz`` read through gzip).

    Raises:
        ValueError: not an unsigned-byte IDX file, or shorter than its header says; the
            message names the file.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ValueError(f"--data: cannot read {path} ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or not 1 <= raw[3] <= 4:
        raise ValueError(f"--data: {path} is not an unsigned-byte IDX file (header {raw[:4].hex()})")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"--data: {path} is truncated (no room for its {ndim} sizes)")
    shape = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    size, start = int(np.prod(shape)), 4 + 4 * ndim
    if len(raw) - start != size:
        raise ValueError(f"--data: {path} holds {len(raw) - start} data bytes, its header {shape} says {size}")
    return np.frombuffer(raw, dtype=np.uint8, count=size, offset=start).reshape(shape).copy()  # writable


def _find(folder: Path, stem: str) -> Path:
    for base in (folder, folder / "MNIST" / "raw"):
        for name in (stem, f"{stem}.gz"):
            if (base / name).is_file():
                return base / name
    raise ValueError(f"--data: {folder} holds no {stem}[.gz] (nor does {folder / 'MNIST' / 'raw'}): place MNIST's four IDX files there")


def mnist_split(data_dir: str | Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(X (n, 784) uint8, y (n,) int64)`` of split ``name`` (module docstring).

    Raises:
        ValueError: unknown split, a folder or file missing or malformed, image and label
            counts that differ, images not 28 x 28, labels outside 0..9; each names the file.
    """
    if name not in ("train", "validation", "test"):
        raise ValueError(f"name must be one of ['test', 'train', 'validation'], got {name!r}")
    folder = Path(data_dir)
    if not folder.is_dir():
        raise ValueError(f"--data: folder {folder} does not exist")
    image_stem, label_stem = MNIST_FILES["test" if name == "test" else "train"]
    image_path, label_path = _find(folder, image_stem), _find(folder, label_stem)
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"--data: {image_path} must hold 28 x 28 images, got shape {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"--data: {label_path} holds {labels.shape} labels for the {images.shape[0]} images of {image_path}")
    if labels.size and labels.max() > 9:
        raise ValueError(f"--data: {label_path}: labels must lie in 0..9, got up to {labels.max()}")
    x, y = images.reshape(images.shape[0], 784), labels.astype(np.int64)
    if name == "test":
        return x, y
    cut = x.shape[0] - x.shape[0] // 6
    return (x[:cut], y[:cut]) if name == "train" else (x[cut:], y[cut:])
