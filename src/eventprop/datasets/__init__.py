"""Built-in data sets."""

from eventprop.datasets.yinyang import YINYANG_SPLITS, yinyang, yinyang_split

__all__ = ["YINYANG_SPLITS", "yinyang", "yinyang_split"]
