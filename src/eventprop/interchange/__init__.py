"""Interchange with other tools: the Neuromorphic Intermediate Representation (:mod:`.nir`).

The ``nir`` package is imported only when :func:`to_nir` or :func:`from_nir` is called
(``pip install eventprop[nir]``), so importing this package never needs it.
"""

from .nir import from_nir, require_nir, to_nir

__all__ = ["from_nir", "require_nir", "to_nir"]
