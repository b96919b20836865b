"""A self-contained report.html: inline CSS, plots as inline base64 PNGs, no network references.

Plots are drawn on bare matplotlib Figures with the Agg canvas (no pyplot
state), from the report dict alone: per_problem (n, c) is enough to redraw
the pass@k curve at every k up to the smallest n.
"""
from __future__ import annotations

import base64
import io

import numpy as np

from .build import per_problem_pass_at_k
from .stats import bootstrap_means, percentile_interval
from .view import report_view, templates

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
dl.header{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;margin:.8rem 0;font-size:.92rem}
dl.header dt{color:#656d76}dl.header dd{margin:0}
.plots{display:flex;flex-wrap:wrap;gap:1rem}.plots figure{margin:0}
.plots img{max-width:520px;border:1px solid #d0d7de}figcaption{font-size:.85rem;color:#656d76}
.controls{display:flex;gap:.8rem;align-items:center;margin:.5rem 0}.controls input[type=search]{width:20rem}
#problems th{cursor:pointer;user-select:none}#problems th[data-dir=asc]::after{content:" \\25B2"}
#problems th[data-dir=desc]::after{content:" \\25BC"}
#problems tr.row{cursor:pointer}#problems tr.row:hover{background:#f6f8fa}
#problems td[colspan]{white-space:normal;background:#fbfcfd}
.sample{border-left:4px solid #cf222e;margin:.6rem 0;padding:.2rem .6rem}.sample.pass{border-color:#2da44e}
.sample .meta{font-size:.85rem;color:#656d76}.error{color:#cf222e;font-family:ui-monospace,monospace;font-size:.85rem}
.decision{color:#9a6700;font-size:.85rem}
pre{background:#f6f8fa;padding:.5rem;overflow-x:auto;font-size:.82rem;margin:.3rem 0;max-height:30rem}
body.focus>:not(h1):not(dl):not(.per-problem){display:none}.only-focus{display:none}body.focus .only-focus{display:block}
"""

# Sorting, filtering and the drill-down toggle of the per-problem table; #p-<task_id> opens one problem.
SCRIPT = """
(function () {
  var table = document.getElementById('problems');
  if (!table) return;
  var bodies = Array.prototype.slice.call(table.tBodies);
  var filter = document.getElementById('filter'), status = document.getElementById('status');
  var unsolved = document.getElementById('unsolved'), count = document.getElementById('count');
  function apply() {
    var q = filter.value.toLowerCase(), st = status.value, shown = 0;
    bodies.forEach(function (b) {
      var ok = (!q || b.dataset.text.indexOf(q) >= 0) && (!st || b.dataset.status.split(' ').indexOf(st) >= 0)
        && (!unsolved.checked || b.dataset.solved === '0');
      b.hidden = !ok; shown += ok ? 1 : 0;
    });
    count.textContent = shown + ' of ' + bodies.length + ' shown';
  }
  [filter, status, unsolved].forEach(function (el) { el.addEventListener('input', apply); });
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, i) {
    th.addEventListener('click', function () {
      var dir = th.dataset.dir === 'asc' ? 'desc' : 'asc';
      Array.prototype.forEach.call(heads, function (h) { delete h.dataset.dir; });
      th.dataset.dir = dir;
      var key = function (b) { var t = b.rows[0].cells[i].textContent.trim(), n = parseFloat(t.replace(/,/g, ''));
        return /^[-+]?[0-9.]/.test(t) && !isNaN(n) ? n : t; };
      bodies.sort(function (a, b) {
        var x = key(a), y = key(b);
        var r = typeof x === 'number' && typeof y === 'number' ? x - y
          : String(x).localeCompare(String(y), undefined, {numeric: true});
        return dir === 'asc' ? r : -r;
      });
      bodies.forEach(function (b) { table.appendChild(b); });
    });
  });
  table.addEventListener('click', function (e) {
    var row = e.target.closest('tr.row');
    if (row) row.nextElementSibling.hidden = !row.nextElementSibling.hidden;
  });
  // #p-<id> shows that problem alone, opened, under the report's header (a link to share); # shows all
  function openHash() {
    var id = decodeURIComponent(location.hash.slice(1)), b = id && document.getElementById(id);
    var focus = !!(b && b.classList.contains('problem'));
    document.body.classList.toggle('focus', focus);
    if (!focus) { apply(); return; }
    bodies.forEach(function (x) { x.hidden = x !== b; });
    b.rows[1].hidden = false;
    count.textContent = '1 of ' + bodies.length + ' shown';
  }
  window.addEventListener('hashchange', openHash);
  openHash();
})();
"""


def render_html(report: dict, details: dict | None = None) -> str:
    """The whole page as one string, from the report model the Markdown renders too, plus plots."""
    return templates().get_template("report.html.j2").render(
        v=report_view(report, details), plots=plots(report), css=CSS, script=SCRIPT)


def plots(report: dict) -> list[tuple[str, str]]:
    """(caption, base64 PNG) pairs; a plot with nothing to show (a one-point curve) is left out."""
    out = [("pass@k vs k, with a bootstrap CI band", pass_at_k_curve_png(report)),
           ("per-problem solve rate c/n, sorted", solve_rate_png(report)),
           ("samples by status", status_png(report)),
           ("multi-token prediction: draft acceptance per head and tokens per forward",
            mtp_png(report.get("decoding_stats") or _legacy_groups(report.get("speed") or {})))]
    return [(caption, png) for caption, png in out if png]


def _legacy_groups(speed: dict) -> list[dict]:
    """A 0.1.x report's overall speed as one group (acceptance_per_head included head 1)."""
    heads = speed.get("acceptance_per_head")
    if not heads or speed.get("tokens_per_forward") is None:
        return []
    return [{"temperature": None, "mode": "speculative", "tokens_per_forward": speed["tokens_per_forward"],
             "acceptance_per_draft_head": heads[1:]}]


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
    if not groups or max(int(n.min()) for n, _ in groups.values()) < 2:
        return None  # one sample per problem: a curve of one point says nothing
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


def mtp_png(groups: list[dict]) -> str | None:
    """Acceptance of draft heads 2..k per decoding group (temperature, mode), tokens per forward in the legend."""
    groups = [g for g in groups if any(a is not None for a in g.get("acceptance_per_draft_head") or [])]
    if not groups:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    width = 0.8 / len(groups)
    for i, g in enumerate(groups):
        rates = [np.nan if a is None else a for a in g["acceptance_per_draft_head"]]
        t = g.get("temperature")
        label = ("greedy" if t == 0 else f"T={t:g}" if t is not None else g.get("mode", "")) + \
            f": {g['tokens_per_forward']:.2f} tokens/forward"
        ax.bar(np.arange(2, len(rates) + 2) + (i - (len(groups) - 1) / 2) * width, rates, width, label=label)
    ax.set_xticks(range(2, max(len(g["acceptance_per_draft_head"]) for g in groups) + 2))
    ax.set_xlabel("draft head")
    ax.set_ylabel("acceptance")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="upper right")
    return _png(fig)
