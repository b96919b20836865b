"""Execution backends: run one program under limits, return an honest verdict."""
from .types import STATUSES, Job, Limits, Verdict

__all__ = ["STATUSES", "Job", "Limits", "Verdict"]
