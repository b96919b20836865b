"""A self-contained report.html: inline CSS, plots as inline base64 PNGs, no network references.

Plots are drawn on bare matplotlib Figures with the Agg canvas (no pyplot
state), from the report dict alone: per_problem (n, c) is enough to redraw
the pass@k curve at every k up to the smallest n.
"""
from __future__ import annotations

import base64
import html
import io

import numpy as np

from .build import per_problem_pass_at_k
from .markdown import _value, integrity_note, pct
from .stats import bootstrap_means, percentile_interval

CURVE_POINTS = 24
CURVE_RESAMPLES = 2_000

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#1f2328;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.25rem .6rem;text-align:left;white-space:nowrap}th{background:#f6f8fa}
td.wrap{white-space:normal;max-width:28rem}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#656d76}.warn{color:#9a6700}
.plots{display:flex;flex-wrap:wrap;gap:1rem}.plots figure{margin:0}
.plots img{max-width:520px;border:1px solid #d0d7de}figcaption{font-size:.85rem;color:#656d76}
"""


def render_html(report: dict) -> str:
    """The whole page as one string."""
    esc = html.escape
    conf = f"{round(100 * report['confidence'])}% CI"
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>{esc(str(report['task']))} report</title><style>{CSS}</style></head><body>",
             f"<h1>{esc(str(report['task']))}: evaluation report</h1>",
             f"<p class='muted'>{report['n_problems']} problems evaluated"
             + (f" of {report['n_problems_total']}" if report.get("n_problems_total", report["n_problems"])
                != report["n_problems"] else "")
             + f", {report['n_samples']} samples, task fingerprint <code>{esc(str(report['task_fingerprint']))}"
               f"</code></p>"]
    if report.get("missing_problems"):
        parts.append(f"<p class='warn'>Missing results for {len(report['missing_problems'])} problem(s); pass@k "
                     "is over the evaluated problems only.</p>")
    integrity = report.get("integrity")
    if integrity:
        parts.append("<h2>Integrity</h2><p>" + esc(integrity_note(integrity).replace("**", "")) + "</p>")
        if integrity.get("not_served"):
            parts.append(f"<p>Not served ({len(integrity['not_served'])}): their checks cannot run on literal "
                         "inputs alone.</p>")
            parts.append(_table(["problem", "reason"], [[r["task_id"], r["reason"]] for r in integrity["not_served"]]))

    parts.append("<h2>pass@k</h2>")
    parts.append(_pass_table(report["pass_at_k"], conf))
    for suite, table in (report.get("pass_at_k_by_suite") or {}).items():
        parts.append(f"<h3>Suite {esc(suite)}</h3>" + _pass_table(table, conf))
    if report.get("best_temperature"):
        parts.append("<h3>Best temperature per k</h3>")
        parts.append(_table(["metric", "temperature", "estimate (%)", conf],
                            [[n, f"{b['temperature']:g}", pct(b["estimate"]),
                              f"[{pct(b['ci_low'])}, {pct(b['ci_high'])}]"]
                             for n, b in report["best_temperature"].items()]))

    plots = [("pass@k vs k, with the bootstrap CI band", pass_at_k_curve_png(report)),
             ("per-problem solve rate c/n, sorted", solve_rate_png(report)),
             ("samples by status", status_png(report))]
    mtp = mtp_png(report.get("speed") or {})
    if mtp:
        plots.append(("multi-token prediction: tokens per forward and draft acceptance per head", mtp))
    parts.append("<h2>Plots</h2><div class='plots'>")
    for caption, png in plots:
        if png:
            parts.append(f"<figure><img alt='{esc(caption)}' src='data:image/png;base64,{png}'>"
                         f"<figcaption>{esc(caption)}</figcaption></figure>")
    parts.append("</div>")

    total = max(1, report["n_samples"])
    parts.append("<h2>Status counts</h2>")
    parts.append(_table(["status", "samples", "share (%)"],
                        [[k, v, pct(v / total)] for k, v in report["status_counts"].items()]))
    if report.get("failure_taxonomy"):
        parts.append("<h2>Failure taxonomy</h2>")
        parts.append(_table(["failure", "samples", "share of failures (%)", "problems", "examples", "example detail"],
                            [[f["label"], f["count"], pct(f["share"]), f["n_problems"], ", ".join(f["examples"]),
                              f["example_detail"]] for f in report["failure_taxonomy"]]))
    if report.get("slowest_problems"):
        parts.append("<h2>Slowest problems</h2>")
        parts.append(_table(["problem", "mean s", "max s", "samples", "timeouts"],
                            [[s["task_id"], f"{s['mean_duration_s']:.3f}", f"{s['max_duration_s']:.3f}", s["n"],
                              s["timeouts"]] for s in report["slowest_problems"]]))
    if report.get("speed"):
        parts.append("<h2>Speed</h2>")
        parts.append(_table(["measure", "value"], [[k, _value(v)] for k, v in report["speed"].items()]))
    names = [n for n in report["pass_at_k"]]
    parts.append("<h2>Per problem</h2><details><summary>"
                 f"{len(report['per_problem'])} rows</summary>")
    has_t = any("temperature" in r for r in report["per_problem"])
    parts.append(_table(["problem"] + (["T"] if has_t else []) + ["n", "c"] + names,
                        [[r["task_id"]] + ([r.get("temperature")] if has_t else []) + [r["n"], r["c"]]
                         + [pct(r.get(n)) for n in names] for r in report["per_problem"]]))
    parts.append("</details></body></html>")
    return "\n".join(parts)


def _pass_table(table: dict, conf: str) -> str:
    rows = []
    for name, e in table.items():
        if e["computable"]:
            note = f"T={e['temperature']:g}" if e.get("temperature") is not None else ""
            rows.append([name, pct(e["estimate"]), f"[{pct(e['ci_low'])}, {pct(e['ci_high'])}]", note])
        else:
            rows.append([name, "n/a", "", f"not computable: {e['reason']}"])
    return _table(["metric", "estimate (%)", conf, "note"], rows)


def _table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        cls = ""
        if isinstance(v, (int, float)) or (isinstance(v, str) and _numeric(v)):
            cls = " class='num'"
        elif len(str(v)) > 40:
            cls = " class='wrap'"
        return f"<td{cls}>{html.escape(str(v))}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


# ---- plots -------------------------------------------------------------------------------------

def _figure(width=5.2, height=3.4):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _groups(report: dict) -> dict:
    """temperature (or None) -> (n, c) arrays over problems, from per_problem rows."""
    groups: dict = {}
    for r in report["per_problem"]:
        groups.setdefault(r.get("temperature"), []).append((r["n"], r["c"]))
    return {t: (np.array([x[0] for x in v]), np.array([x[1] for x in v])) for t, v in groups.items()}


def pass_at_k_curve_png(report: dict) -> str | None:
    groups = _groups(report)
    if not groups:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    seed = (report.get("bootstrap") or {}).get("seed", 0)
    for t, (n, c) in groups.items():
        ks = np.unique(np.geomspace(1, n.min(), CURVE_POINTS).round().astype(int))
        values = np.stack([per_problem_pass_at_k(n, c, k) for k in ks], axis=1)
        low, high = percentile_interval(bootstrap_means(values, CURVE_RESAMPLES, seed), report["confidence"])
        label = "pass@k" if t is None else f"T={t:g}"
        line, = ax.plot(ks, 100 * values.mean(axis=0), marker="o", markersize=3, label=label)
        ax.fill_between(ks, 100 * low, 100 * high, alpha=0.2, color=line.get_color())
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    largest = max(int(n.min()) for n, _ in groups.values())
    ax.set_xticks(sorted({1, largest} | {k for k in report.get("ks", []) if k <= largest}))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def solve_rate_png(report: dict) -> str | None:
    groups = _groups(report)
    if not groups:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    for t, (n, c) in groups.items():
        rate = np.sort(c / n)[::-1]
        ax.step(np.arange(1, len(rate) + 1), 100 * rate, where="mid",
                label="solve rate" if t is None else f"T={t:g}")
    ax.set_xlabel("problems, sorted by solve rate")
    ax.set_ylabel("c / n (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    return _png(fig)


def status_png(report: dict) -> str | None:
    counts = report["status_counts"]
    if not counts:
        return None
    labels = list(counts)[::-1]
    fig = _figure(height=max(2.0, 0.35 * len(labels) + 1.0))
    ax = fig.add_subplot()
    colors = ["#2da44e" if lab == "passed" else "#cf222e" for lab in labels]
    ax.barh(labels, [counts[lab] for lab in labels], color=colors)
    ax.set_xlabel("samples")
    return _png(fig)


def mtp_png(speed: dict) -> str | None:
    """Acceptance rate per draft head, and tokens per forward (a histogram when given per sample)."""
    heads = speed.get("acceptance_per_head")
    tpf = speed.get("tokens_per_forward")
    if heads is None and tpf is None:
        return None
    panels = (heads is not None) + isinstance(tpf, list)
    fig = _figure(width=5.2 if panels <= 1 else 8.0)
    i = 1
    if heads is not None:
        ax = fig.add_subplot(1, max(panels, 1), i)
        i += 1
        rates = [float("nan") if a is None else a for a in heads]  # None: that head drafted nothing
        ax.bar([str(h + 1) for h in range(len(heads))], rates, color="#0969da")
        ax.set_xlabel("draft head")
        ax.set_ylabel("acceptance")
        title = "draft acceptance per head"
        if isinstance(tpf, (int, float)):
            title += f"\n{tpf:.2f} tokens per forward"
        ax.set_title(title, fontsize=9)
    if isinstance(tpf, list):
        ax = fig.add_subplot(1, max(panels, 1), i)
        ax.hist(tpf, bins=20, color="#8250df")
        ax.set_xlabel("tokens per forward")
        ax.set_ylabel("samples")
    elif heads is None:
        ax = fig.add_subplot()
        ax.bar(["tokens per forward"], [tpf], color="#8250df")
    return _png(fig)
