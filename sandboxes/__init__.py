"""Execution backends: run untrusted programs under limits, return honest verdicts."""
from .pool import SandboxPool
from .tiers import TIER_NAMES, TIERS, Tier, probe_tier, probe_tiers
from .types import STATUSES, Job, Limits, SandboxUnavailable, Verdict

__all__ = ["STATUSES", "TIERS", "TIER_NAMES", "Job", "Limits", "SandboxPool", "SandboxUnavailable", "Tier",
           "Verdict", "probe_tier", "probe_tiers"]
