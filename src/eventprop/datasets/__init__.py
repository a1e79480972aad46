"""Data: the built-in data sets (Yin-Yang, 8x8 digits) and the encoders that turn values into spike times."""

from .digits import DIGITS_SPLITS, digits_split, digits_split_indices, load_digits
from .encoding import intensity_encode, latency_encode
from .yinyang import YINYANG_SPLITS, yinyang, yinyang_split

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
