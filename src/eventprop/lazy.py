"""Package attributes imported on first use (PEP 562), so that ``eventprop --help`` and
``import eventprop`` need no torch until something that computes is touched.

A package lists ``{name: submodule}``; ``package.name`` (or ``from package import
name``) imports the submodule then, and caches the attribute. Submodules themselves
are reachable as attributes too (``eventprop.training.checkpoints``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose public ``exports`` live in submodules.

    Args:
        package: the package's ``__name__``.
        exports: public name -> the relative module that defines it (``".layers"``).

    Examples:
        >>> __getattr__, __dir__ = lazy_exports(__name__, {"LIFLayer": ".layers"})  # doctest: +SKIP
    """

    def __getattr__(name: str) -> Any:
        module = sys.modules[package]
        if name in exports:
            value = getattr(importlib.import_module(exports[name], package), name)
        else:
            try:
                value = importlib.import_module(f".{name}", package)
            except ModuleNotFoundError as err:
                if err.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        setattr(module, name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
