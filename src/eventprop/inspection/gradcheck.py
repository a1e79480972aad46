r"""Check a model's EventProp gradients against central finite differences.

For every checked entry ``x`` (a parameter entry or a finite input spike time)::

    fd(x) = (L(x + h) - L(x - h)) / (2 h),      h = eps * max(1, |x|),

computed on a float64 copy of the model (``copy.deepcopy(model).double()``; the
caller's model is never touched). Per tensor the report gives the worst error
relative to the gradient's scale::

    error = max_k |g_k - fd_k| / max_k |fd_k|

(``0`` when both vanish, ``inf`` when only ``fd`` does). Scaling the gradient by
``1 + delta`` gives ``error = delta``; with ``eps = 1e-6`` exact gradients give
``~1e-8`` or less away from critical points.

Near a critical point (a spike appearing, vanishing or reordering within ``x +- h``)
the loss is discontinuous and finite differences mean nothing. The check watches
the number of spikes every :class:`~eventprop.LIFLayer` and :class:`~eventprop.LIFConv2d` in the model emits:
an entry whose perturbation changes any count is *discontinuous*, left out of the
error and counted in the report; :meth:`GradcheckReport.ok` fails on them unless
told otherwise.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..layers import LIFConv2d, LIFLayer
from ..validation import positive

__all__ = ["GradcheckEntry", "GradcheckReport", "gradcheck"]

INPUT_NAME = "input times"


@dataclass
class GradcheckEntry:
    """The check of one tensor (a parameter, or the input spike times).

    Attributes:
        name: parameter name (``model.named_parameters()``) or ``"input times"``.
        shape: the tensor's shape.
        checked: number of entries compared.
        max_abs_grad: ``max |fd|`` (the gradient's scale).
        max_abs_error: ``max |eventprop - fd|`` over the compared entries.
        error: ``max_abs_error / max_abs_grad`` (see the module docstring).
        discontinuous: entries left out because a spike count changed under ``x +- h``.
        eventprop, numeric: the two gradients (``nan`` where not compared).
    """

    name: str
    shape: tuple[int, ...]
    checked: int
    max_abs_grad: float
    max_abs_error: float
    error: float
    discontinuous: int
    eventprop: Tensor = field(repr=False)
    numeric: Tensor = field(repr=False)


@dataclass
class GradcheckReport:
    """Result of :func:`gradcheck`: one :class:`GradcheckEntry` per checked tensor."""

    entries: list[GradcheckEntry]
    eps: float

    @property
    def max_error(self) -> float:
        """The worst ``error`` over all tensors (0 when nothing was checked)."""
        return max((e.error for e in self.entries), default=0.0)

    @property
    def errors(self) -> dict[str, float]:
        """``{name: error}``."""
        return {e.name: e.error for e in self.entries}

    @property
    def discontinuous(self) -> int:
        """Entries left out because the perturbation changed a spike count."""
        return sum(e.discontinuous for e in self.entries)

    def __getitem__(self, name: str) -> GradcheckEntry:
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def ok(self, tol: float = 1e-6, *, allow_discontinuous: bool = False) -> bool:
        """``True`` when every error is ``<= tol`` (and no entry was discontinuous)."""
        if not allow_discontinuous and self.discontinuous:
            return False
        return all(e.error <= tol for e in self.entries)

    def __str__(self) -> str:
        header = ("tensor", "shape", "checked", "max |grad|", "max |err|", "rel. error", "skipped")
        rows = [
            (
                e.name,
                "x".join(map(str, e.shape)) or "scalar",
                str(e.checked),
                f"{e.max_abs_grad:.3e}",
                f"{e.max_abs_error:.3e}",
                f"{e.error:.3e}",
                str(e.discontinuous),
            )
            for e in self.entries
        ]
        widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]
        line = "  ".join("-" * w for w in widths)
        fmt = lambda r: "  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
        lines = [f"EventProp vs central differences (eps = {self.eps:g}, float64)", fmt(header), line]
        lines += [fmt(r) for r in rows]
        lines += [line, f"max relative error {self.max_error:.3e}"]
        if self.discontinuous:
            lines.append(f"{self.discontinuous} entries skipped: a spike count changed within x +- h (near-critical)")
        return "\n".join(lines)


def _spike_counter(model: nn.Module) -> tuple[Callable[[], list[int]], Callable[[], None]]:
    """Forward hooks recording the spike count of every LIF layer; returns (read, remove)."""
    counts: list[int] = []
    handles = []

    def hook(_module: nn.Module, _inputs: object, output: Tensor) -> None:
        counts.append(int(torch.isfinite(output).sum()))

    for module in model.modules():
        if isinstance(module, (LIFLayer, LIFConv2d)):
            handles.append(module.register_forward_hook(hook))

    def read() -> list[int]:
        out = list(counts)
        counts.clear()
        return out

    def remove() -> None:
        for h in handles:
            h.remove()

    return read, remove


def _select(n: int, max_entries: int | None) -> list[int]:
    if max_entries is None or n <= max_entries:
        return list(range(n))
    return sorted({round(k * (n - 1) / max(max_entries - 1, 1)) for k in range(max_entries)})


def _finite_differences(
    loss: Callable[[], tuple[float, list[int]]],
    tensor: Tensor,
    indices: list[int],
    eps: float,
    base_counts: list[int],
    nonnegative: bool = False,
) -> tuple[Tensor, Tensor]:
    """Central differences at ``indices`` of the flattened ``tensor`` (perturbed in place).

    With ``nonnegative`` (spike times), an entry with ``x - h < 0`` uses the one-sided
    second-order formula ``(-3 L(x) + 4 L(x + h) - L(x + 2h)) / (2h)`` instead.

    Returns ``(fd, discontinuous)`` flattened; ``fd`` is ``nan`` where not computed.
    """
    flat = tensor.data.view(-1)
    fd = torch.full((flat.numel(),), math.nan, dtype=torch.float64)
    jump = torch.zeros(flat.numel(), dtype=torch.bool)
    for idx in indices:
        x = float(flat[idx])
        h = eps * max(1.0, abs(x))
        if nonnegative and x - h < 0:
            values, counts = [], []
            for k in (0, 1, 2):
                flat[idx] = x + k * h
                value, count = loss()
                values.append(value)
                counts.append(count)
            flat[idx] = x
            fd[idx] = (-3 * values[0] + 4 * values[1] - values[2]) / (2 * h)
            jump[idx] = any(c != base_counts for c in counts)
            continue
        flat[idx] = x + h
        up, counts_up = loss()
        flat[idx] = x - h
        down, counts_down = loss()
        flat[idx] = x
        fd[idx] = (up - down) / (2 * h)
        jump[idx] = counts_up != base_counts or counts_down != base_counts
    return fd, jump


def _entry(name: str, shape: torch.Size, eventprop: Tensor, fd: Tensor, jump: Tensor) -> GradcheckEntry:
    compared = ~torch.isnan(fd) & ~jump
    ev = eventprop.detach().reshape(-1).to(torch.float64).cpu()
    err = (ev - fd).abs()[compared]
    scale = float(fd.abs()[compared].max()) if bool(compared.any()) else 0.0
    max_err = float(err.max()) if err.numel() else 0.0
    if max_err == 0.0:
        rel = 0.0
    else:
        rel = max_err / scale if scale > 0 else math.inf
    shown = torch.where(compared, fd, torch.full_like(fd, math.nan))
    return GradcheckEntry(
        name=name,
        shape=tuple(shape),
        checked=int(compared.sum()),
        max_abs_grad=scale,
        max_abs_error=max_err,
        error=rel,
        discontinuous=int(jump.sum()),
        eventprop=ev.reshape(shape),
        numeric=shown.reshape(shape),
    )


def gradcheck(
    model: nn.Module,
    inputs: Tensor,
    loss_fn: Callable[[Tensor], Tensor],
    *,
    eps: float = 1e-6,
    params: Sequence[str] | None = None,
    check_inputs: bool = True,
    max_entries: int | None = None,
) -> GradcheckReport:
    r"""Compare the EventProp gradient of ``loss_fn(model(inputs))`` with central differences.

    Args:
        model: an ``nn.Module`` of LIF layers, ``model(times) -> times``. A float64
            deep copy is checked; ``model`` itself is not modified.
        inputs: ``(batch, in_features, max_spikes)`` input spike times (cast to float64).
        loss_fn: maps the model's output to a scalar loss tensor.
        eps: relative finite-difference step (``h = eps * max(1, |x|)``).
        params: names of the parameters to check (default: all with
            ``requires_grad``).
        check_inputs: also check ``dL/d inputs`` at the finite input spike times.
        max_entries: check at most this many evenly spaced entries per tensor
            (default: all).

    Returns:
        A :class:`GradcheckReport`; ``print(report)`` shows a table,
        ``report.max_error`` the worst relative error, ``report.ok(tol)`` the verdict.
    """
    eps = positive("eps", eps)
    net = copy.deepcopy(model).double()
    x = inputs.detach().to(torch.float64).clone()
    named = dict(net.named_parameters())
    names = [n for n, p in named.items() if p.requires_grad] if params is None else list(params)
    for n in names:
        if n not in named:
            raise ValueError(f"model has no parameter {n!r} (has {sorted(named)})")

    # EventProp gradients by autograd.
    net.zero_grad(set_to_none=True)
    x_leaf = x.clone().requires_grad_(check_inputs)
    loss = loss_fn(net(x_leaf))
    if loss.dim() != 0:
        raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
    loss.backward()
    grads = {n: (named[n].grad if named[n].grad is not None else torch.zeros_like(named[n])) for n in names}
    grad_x = x_leaf.grad if check_inputs and x_leaf.grad is not None else torch.zeros_like(x)

    read, remove = _spike_counter(net)
    try:

        @torch.no_grad()
        def evaluate() -> tuple[float, list[int]]:
            value = float(loss_fn(net(x)))
            return value, read()

        _, base = evaluate()
        entries = []
        for n in names:
            p = named[n]
            fd, jump = _finite_differences(evaluate, p, _select(p.numel(), max_entries), eps, base)
            entries.append(_entry(n, p.shape, grads[n], fd, jump))
        if check_inputs:
            finite = torch.nonzero(torch.isfinite(x).reshape(-1)).reshape(-1).tolist()
            chosen = [finite[k] for k in _select(len(finite), max_entries)]
            fd, jump = _finite_differences(evaluate, x, chosen, eps, base, nonnegative=True)
            entries.append(_entry(INPUT_NAME, x.shape, grad_x, fd, jump))
    finally:
        remove()
    return GradcheckReport(entries=entries, eps=eps)
