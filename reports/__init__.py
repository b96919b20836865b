"""Reports: pass@k, confidence intervals, comparisons, gates and renderers over plain records."""
from .build import (REPORT_KEYS, build_report, decoding_groups, decoding_totals, failure_taxonomy, pass_at_k_table,
                    per_problem_pass_at_k, row_key, speed_from_samples, status_label)
from .compare import SPEED_METRICS, ComparisonError, compare, gate, parse_metric, speed_metric
from .header import (SCHEMA_VERSION, ReportFormatError, decoding_differences, decoding_label, model_name,
                     report_header, run_label, validate_report)
from .html import render_html
from .markdown import render_comparison_markdown, render_gate_markdown, render_gate_refusal, render_markdown
from .passk import estimate_pass_at_k, pass_at_k_entry
from .stats import (bca_interval, bootstrap_ci, bootstrap_means, mcnemar_exact, paired_bootstrap,
                    percentile_interval, wilson_interval)
from .view import drilldown, report_view

__all__ = [
    "REPORT_KEYS", "build_report", "speed_from_samples", "decoding_groups", "decoding_totals", "failure_taxonomy",
    "pass_at_k_table", "per_problem_pass_at_k", "row_key", "status_label",
    "SPEED_METRICS", "ComparisonError", "compare", "gate", "parse_metric", "speed_metric",
    "SCHEMA_VERSION", "ReportFormatError", "decoding_differences", "decoding_label", "model_name", "report_header",
    "run_label", "validate_report",
    "render_html", "render_markdown", "render_comparison_markdown", "render_gate_markdown", "render_gate_refusal",
    "estimate_pass_at_k", "pass_at_k_entry",
    "bca_interval", "bootstrap_ci", "bootstrap_means", "mcnemar_exact", "paired_bootstrap", "percentile_interval",
    "wilson_interval", "drilldown", "report_view",
]
