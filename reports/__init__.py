"""Reports: pass@k, confidence intervals, comparisons, gates and renderers over plain records."""
from .passk import estimate_pass_at_k, pass_at_k_entry

__all__ = ["estimate_pass_at_k", "pass_at_k_entry"]
