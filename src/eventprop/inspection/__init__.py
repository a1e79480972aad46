"""Inspection tools: dense traces (:mod:`.traces`), gradient checks (:mod:`.gradcheck`),
plots (:mod:`.plotting`, needs matplotlib) and the paper's Figure 1 (:mod:`.figure1`)."""

from .gradcheck import GradcheckReport, gradcheck
from .traces import adjoint_traces, voltage_traces

__all__ = ["GradcheckReport", "adjoint_traces", "gradcheck", "voltage_traces"]
