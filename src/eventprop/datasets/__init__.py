"""Data: the built-in data sets (Yin-Yang, 8x8 digits) and the encoders that turn values into spike times."""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports
from .digits import DIGITS_SPLITS, digits_split, digits_split_indices, load_digits
from .yinyang import YINYANG_SPLITS, yinyang, yinyang_split

# the encoders need torch: loaded on first use
__getattr__, __dir__ = lazy_exports(__name__, {"intensity_encode": ".encoding", "latency_encode": ".encoding"})

if TYPE_CHECKING:  # pragma: no cover - for type checkers
    from .encoding import intensity_encode, latency_encode

__all__ = [
    "DIGITS_SPLITS",
    "YINYANG_SPLITS",
    "digits_split",
    "digits_split_indices",
    "intensity_encode",
    "latency_encode",
    "load_digits",
    "yinyang",
    "yinyang_split",
]
