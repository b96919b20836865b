"""Reports: pass@k, confidence intervals, comparisons, gates and renderers over plain records."""
from .build import (REPORT_KEYS, build_report, failure_taxonomy, pass_at_k_table, per_problem_pass_at_k,
                    row_key, speed_from_samples, decoding_totals, status_label)
from .compare import ComparisonError, compare, gate, parse_metric
from .html import render_html
from .markdown import render_comparison_markdown, render_gate_markdown, render_markdown
from .passk import estimate_pass_at_k, pass_at_k_entry
from .stats import bootstrap_ci, bootstrap_means, mcnemar_exact, paired_bootstrap, percentile_interval

__all__ = [
    "REPORT_KEYS", "build_report", "speed_from_samples", "decoding_totals", "failure_taxonomy", "pass_at_k_table", "per_problem_pass_at_k", "row_key", "status_label",
    "ComparisonError", "compare", "gate", "parse_metric",
    "render_html", "render_markdown", "render_comparison_markdown", "render_gate_markdown",
    "estimate_pass_at_k", "pass_at_k_entry",
    "bootstrap_ci", "bootstrap_means", "mcnemar_exact", "paired_bootstrap", "percentile_interval",
]
