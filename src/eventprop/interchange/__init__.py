"""Interchange with other tools: the Neuromorphic Intermediate Representation (:mod:`.nir`: export and the shared conventions; :mod:`.nir_import`).

The ``nir`` package is imported only when :func:`to_nir` or :func:`from_nir` is called
(``pip install eventprop[nir]``), so importing this package never needs it.
"""

from .nir import require_nir, to_nir
from .nir_import import from_nir

__all__ = ["from_nir", "require_nir", "to_nir"]
