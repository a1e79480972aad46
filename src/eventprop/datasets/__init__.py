"""Built-in data sets."""

from eventprop.datasets.digits import DIGITS_SPLITS, digits_split, digits_split_indices, load_digits
from eventprop.datasets.yinyang import YINYANG_SPLITS, yinyang, yinyang_split

__all__ = ["DIGITS_SPLITS", "YINYANG_SPLITS", "digits_split", "digits_split_indices", "load_digits", "yinyang", "yinyang_split"]
