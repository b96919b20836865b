"""Execution backends: run untrusted programs under limits, return honest verdicts."""
from .pool import TIERS, SandboxPool, probe_tier, probe_tiers
from .types import STATUSES, Job, Limits, SandboxUnavailable, Verdict

__all__ = ["STATUSES", "TIERS", "Job", "Limits", "SandboxPool", "SandboxUnavailable", "Verdict",
           "probe_tier", "probe_tiers"]
