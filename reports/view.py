"""The report model: one structure both templates (report.md.j2, report.html.j2) render, so they cannot drift.

`report_view(report, details)` turns a report.json dict (plus, when the run's
files are at hand, the per-problem drill-down from `drilldown`) into display
rows: every number formatted once, every section present or absent for both
renderings alike. Plots are not part of it (the HTML adds them).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path

from .header import decoding_label

DRILL_SAMPLES = 10  # samples shown per problem and temperature in the HTML drill-down
TRACEBACK_LINES = 12
COMPLETION_CHARS = 4_000


def pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def ci(e: dict) -> str:
    return f"[{pct(e['ci_low'])}, {pct(e['ci_high'])}]" if e.get("ci_low") is not None else ""


def drilldown(samples: list[dict], results: list[dict], prompts: dict[str, str] | None = None,
              per_problem: int = DRILL_SAMPLES) -> dict:
    """{task_id: {"prompt", "groups": {temperature: {"statuses", "truncated", "samples"}}}} from the
    run's samples.jsonl and results.jsonl rows.

    Status counts and truncation cover every sample; the samples shown are, per problem
    and temperature, the first of each status, then the rest in index order, up to
    `per_problem`: every kind of outcome gets an example.
    """
    key = lambda r: (r["task_id"], r.get("sample_idx"), r.get("temperature"))  # noqa: E731
    completions = {key(s): s for s in samples}
    rows_by_group: dict = defaultdict(list)
    for r in sorted({key(r): r for r in results}.values(), key=lambda r: r.get("sample_idx") or 0):
        rows_by_group[(r["task_id"], r.get("temperature"))].append(r)
    out: dict = {}
    for (task_id, temperature), rows in rows_by_group.items():
        firsts = list({_label(r): r for r in reversed(rows)}.values())[::-1]
        chosen = firsts + [r for r in rows if r not in firsts]
        shown = []
        for r in sorted(chosen[:per_problem], key=lambda r: r.get("sample_idx") or 0):
            s = completions.get(key(r), {})
            detail = (r.get("detail") or "").strip() if not r.get("passed") else ""
            completion = s.get("completion")
            shown.append({
                "sample_idx": r.get("sample_idx"), "temperature": temperature,
                "status": _label(r), "passed": bool(r.get("passed")),
                "finish_reason": s.get("finish_reason"), "tokens": s.get("tokens"),
                "completion": None if completion is None else completion[:COMPLETION_CHARS],
                "error": detail.splitlines()[-1].strip() if detail else "",
                "traceback": "\n".join(detail.splitlines()[-TRACEBACK_LINES:]),
                "decision": r.get("decision"),
            })
        entry = out.setdefault(task_id, {"prompt": (prompts or {}).get(task_id), "groups": {}})
        entry["groups"][temperature] = {
            "statuses": dict(Counter(_label(r) for r in rows).most_common()),
            "truncated": sum(completions.get(key(r), {}).get("finish_reason") == "length" for r in rows),
            "samples": shown}
    return out


def table(header: list[str], rows: list[list]) -> dict:
    """A table as both templates take it: header cells and rows of display strings."""
    return {"header": header, "rows": [["" if c is None else str(c) for c in row] for row in rows]}


def report_view(report: dict, details: dict | None = None) -> dict:
    """Everything the templates show, in display form: text, and tables as {"header", "rows"}."""
    conf = f"{round(100 * report['confidence'])}% CI"
    names = list(report["pass_at_k"])
    pass_header = ["metric", "estimate (%)", conf, "note"]
    integrity = report.get("integrity")
    problems = _problem_rows(report, names, details or {})
    has_t = len({r.get("temperature") for r in report["per_problem"]}) > 1  # a sweep: one row per temperature
    metrics = [n for n in names if _any_value(report["per_problem"], n)]
    return {
        "task": str(report["task"]),
        "header": header_rows(report.get("header") or {}),
        "summary": _summary(report),
        "missing": report.get("missing_problems") or [],
        "integrity": integrity and {
            "note": (f"Integrity mode {integrity['mode']}: the checks ran in the trusted parent and only the "
                     f"solution in the sandbox, fed literal inputs. {integrity['served']} of {integrity['total']} "
                     "problems served; pass@k is over the served problems only."),
            "not_served": table(["problem", "reason"], [[r["task_id"], r["reason"]]
                                                        for r in integrity.get("not_served") or []])},
        "pass_at_k": table(pass_header, _pass_rows(report["pass_at_k"])),
        "not_computable": _not_computable(report["pass_at_k"]),
        "interval_note": _interval_note(report),
        "suites": [{"name": s, "table": table(pass_header, _pass_rows(t)), "not_computable": _not_computable(t)}
                   for s, t in (report.get("pass_at_k_by_suite") or {}).items()],
        "by_temperature": _by_temperature(report, names, conf),
        "statuses": table(["status", "samples", "share (%)"],
                          [[k, v, pct(v / max(1, report["n_samples"]))] for k, v in report["status_counts"].items()]),
        "truncated": _truncated(report),
        "decisions": table(["problem", "sample", "status", "decision"],
                           [[d["task_id"], _sample_name(d), d["status"], d["decision"]]
                            for d in report.get("decisions") or []]),
        "failures": table(["failure", "samples", "share of failures (%)", "problems", "examples", "example detail"],
                          [[f["label"], f["count"], pct(f["share"]), f["n_problems"], ", ".join(f["examples"]),
                            f["example_detail"]] for f in report.get("failure_taxonomy") or []]),
        "slowest": table(["problem", "mean s", "max s", "samples", "timeouts"],
                         [[s["task_id"], f"{s['mean_duration_s']:.3f}", f"{s['max_duration_s']:.3f}", s["n"],
                           s["timeouts"]] for s in report.get("slowest_problems") or []]),
        "speed": speed_view(report.get("speed"), report.get("decoding_stats")),
        "problems": table(["problem"] + (["T"] if has_t else []) + ["n", "c"] + metrics
                          + (["statuses", "truncated"] if details else []),
                          [[r["task_id"]] + ([_t(r["temperature"])] if has_t else []) + [r["n"], r["c"]]
                           + r["values"] + ([r["statuses"], r["truncated"]] if details else []) for r in problems]),
        "drill": problems,
        "unknown": report.get("unknown_task_ids") or [],
    }


def _t(t) -> str:
    return "" if t is None else f"{t:g}"


def _sample_name(d: dict) -> str:
    return f"{d.get('sample_idx')}" + (f" (T={d['temperature']:g})" if d.get("temperature") is not None else "")


def header_rows(header: dict) -> list[tuple[str, str]]:
    """(label, value) pairs for the top of a report; only what the run recorded."""
    if not header:
        return []
    model, task = header.get("model") or {}, header.get("task") or {}
    rows = []
    if model.get("name") or model.get("path"):
        text = str(model.get("name") or model.get("path"))
        facts = [f"{_count(model['n_params'])} parameters" if model.get("n_params") else None,
                 f"{model['heads']} heads" if model.get("heads") else None,
                 model.get("dtype"), model.get("device")]
        facts = [f for f in facts if f]
        rows.append(("model", text + (f" ({', '.join(facts)})" if facts else "")))
        if model.get("path") and model.get("path") != model.get("name"):
            rows.append(("checkpoint", str(model["path"])))
        if model.get("fingerprint"):
            rows.append(("model fingerprint", str(model["fingerprint"])))
    if header.get("samples_file"):
        fmt = f" ({header['samples_format']})" if header.get("samples_format") else ""
        rows.append(("samples", str(header["samples_file"]) + fmt))
    if header.get("generated_by"):
        rows.append(("generated by", f"the run in {header['generated_by']}"))
    settings = decoding_label(header)
    if settings:
        seed = (header.get("decoding") or {}).get("seed")
        rows.append(("decoding", settings + (f", seed {seed}" if seed is not None else "")))
    if task.get("name"):
        version = f" v{task['version']}" if task.get("version") else ""
        rows.append(("task", f"{task['name']}{version}, fingerprint {task.get('fingerprint')}"))
    tier = (header.get("sandbox") or {}).get("tier")
    if tier:
        rows.append(("sandbox", f"{tier} tier, integrity {header.get('integrity') or 'standard'}"))
    made = [x for x in (header.get("created"), header.get("command")) if x]
    if made:
        rows.append(("made", " by ".join([made[0], f"`evalharness {made[1]}`"]) if len(made) == 2 else made[0]))
    rows.append(("harness", f"evalharness {header.get('harness_version') or 'unknown version'}"))
    return rows


def _count(n: int) -> str:
    """7.30B, 2.27M, 980."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def speed_view(speed: dict | None, groups: list[dict] | None) -> dict | None:
    """Readable decoding speed: measures with units, and per group (temperature x plain/speculative)
    the tokens per forward and acceptance of draft heads 2..k. Nothing unknown is shown."""
    speed = speed or {}
    rows = []
    for key, label, fmt in (("tokens_per_s", "tokens per second (generation)", "{:,.1f}"),
                            ("tokens_per_forward", "tokens per forward", "{:.2f}"),
                            ("tokens_generated", "tokens generated", "{:,}"),
                            ("samples_generated", "samples generated", "{:,}"),
                            ("generate_s", "generation time (s)", "{:,.1f}"),
                            ("programs_per_s", "programs per second (sandbox)", "{:,.1f}"),
                            ("execute_s", "execution time (s)", "{:,.1f}"),
                            ("total_s", "total time (s)", "{:,.1f}")):
        value = speed.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and (value or key.endswith("_s")):
            rows.append((label, fmt.format(value)))
    heads = [g for g in groups or [] if g.get("tokens_per_forward") is not None]
    if not heads and speed.get("acceptance_per_head"):  # a report of 0.1.x: one overall group
        heads = [{"temperature": None, "mode": "speculative", "samples": speed.get("samples_generated"),
                  "tokens_per_forward": speed.get("tokens_per_forward"),
                  "acceptance_per_draft_head": speed["acceptance_per_head"][1:]}]
    width = max((len(g.get("acceptance_per_draft_head") or []) for g in heads), default=0)
    head_rows = [{"group": _group_label(g), "samples": g.get("samples"),
                  "tokens_per_forward": f"{g['tokens_per_forward']:.2f}",
                  "acceptance": [pct(a) if a is not None else "–"
                                 for a in (g.get("acceptance_per_draft_head") or [])] + [""] * (
                      width - len(g.get("acceptance_per_draft_head") or []))} for g in heads]
    if width == 0 and len(head_rows) <= 1:
        head_rows = []  # plain decoding alone: tokens per forward is in the measures (1.00)
    modes = {g.get("mode") for g in heads}
    ratio = None
    if {"plain", "speculative"} <= modes:
        tpf = {m: sum(g["tokens"] for g in heads if g.get("mode") == m) /
               max(1, sum(g["forwards"] for g in heads if g.get("mode") == m)) for m in modes}
        ratio = f"{tpf['speculative'] / tpf['plain']:.2f}x the tokens per forward of plain decoding"
    if not rows and not head_rows:
        return None
    return {"measures": table(["measure", "value"], rows),
            "heads": table(["decoding", "samples", "tokens per forward"]
                           + [f"acceptance head {h + 2} (%)" for h in range(width)],
                           [[g["group"], g["samples"], g["tokens_per_forward"]] + g["acceptance"] for g in head_rows]),
            "has_draft_heads": width > 0, "speculative_vs_plain": ratio}


def _group_label(g: dict) -> str:
    t = g.get("temperature")
    parts = [g.get("mode") or "", "greedy" if t == 0 else (f"T={t:g}" if t is not None else "")]
    return ", ".join(p for p in parts if p)


def _summary(report: dict) -> str:
    text = f"{report['n_problems']} problems evaluated"
    if report.get("n_problems_total", report["n_problems"]) != report["n_problems"]:
        text += f" of {report['n_problems_total']}"
    return text + f", {report['n_samples']} samples. Task fingerprint `{report.get('task_fingerprint')}`."


def _pass_rows(entries: dict) -> list[list]:
    return [[name, pct(e["estimate"]), ci(e), _temperature_note(e.get("temperature"))]
            for name, e in entries.items() if e["computable"]]


def _temperature_note(t) -> str:
    return "" if t is None else "greedy" if t == 0 else f"T={t:g}"


def _not_computable(entries: dict) -> str:
    return "; ".join(f"{name} ({e['reason']})" for name, e in entries.items() if not e["computable"])


def _interval_note(report: dict) -> str:
    boot = report.get("bootstrap") or {}
    method = boot.get("method") or "bootstrap over problems"
    if method.startswith("percentile"):  # reports of 0.1.x
        method = "percentile bootstrap over problems"
    resamples = boot.get("resamples")
    return f"Intervals: {method}; {resamples:,} resamples, seed {boot.get('seed', 0)}." if isinstance(
        resamples, int) else f"Intervals: {method}."


def _by_temperature(report: dict, names: list[str], conf: str) -> dict | None:
    if not report.get("by_temperature"):
        return None
    rows = [[t, block["n_samples"]] + [(f"{pct(block['pass_at_k'][n]['estimate'])} {ci(block['pass_at_k'][n])}".strip()
                                        if block["pass_at_k"][n]["computable"] else "n/a") for n in names]
            for t, block in report["by_temperature"].items()]
    best = [[n, f"{b['temperature']:g}", pct(b["estimate"]), ci(b)]
            for n, b in (report.get("best_temperature") or {}).items()]
    if report.get("headline_rule"):
        rule = ", ".join(f"{n} at T={t:g}" for n, t in report["headline_rule"].items())
        note = f"The headline pass@k uses fixed temperatures per k ({rule}), as in the MTP paper."
    else:
        note = ("The headline pass@k takes each k at its best temperature (the MTP paper's selection); "
                "choosing the maximum makes it slightly optimistic.")
    return {"table": table(["temperature", "samples"] + names, rows),
            "best": table(["metric", "temperature", "estimate (%)", conf], best), "note": note}


def _truncated(report: dict) -> str | None:
    t = report.get("truncated")
    if not t or not t.get("of"):
        return None
    judged = ", ".join(f"{k} {v}" for k, v in (t.get("by_status") or {}).items())
    return (f"{t['samples']} of {t['of']} completions ({pct(t['samples'] / t['of'])}%) were cut at the token "
            f"budget (finish_reason `length`)" + (f"; judged: {judged}" if judged else "") + ".")


def _problem_rows(report: dict, names: list[str], details: dict) -> list[dict]:
    shown_metrics = [n for n in names if _any_value(report["per_problem"], n)]
    sweep = len({r.get("temperature") for r in report["per_problem"]}) > 1
    rows = []
    for r in report["per_problem"]:
        d = details.get(r["task_id"]) or {}
        group = (d.get("groups") or {}).get(r.get("temperature")) or {}
        statuses = group.get("statuses") or {}
        anchor = f"p-{r['task_id']}" + (f"@{r['temperature']:g}" if sweep else "")
        rows.append({
            "task_id": r["task_id"], "anchor": anchor, "temperature": r.get("temperature"), "n": r["n"], "c": r["c"],
            "values": [pct(r.get(n)) for n in shown_metrics],
            "statuses": ", ".join(f"{k} {v}" for k, v in statuses.items()),
            "status_set": " ".join(sorted(statuses)),
            "truncated": group.get("truncated", 0),
            "prompt": d.get("prompt"), "samples": group.get("samples") or [],
        })
    return rows


def _any_value(rows: list[dict], name: str) -> bool:
    return any(r.get(name) is not None for r in rows)


def _label(row: dict) -> str:
    status = row.get("status") or ("passed" if row.get("passed") else "failed")
    return f"error:{row['error_type']}" if status == "error" and row.get("error_type") else status


# ---- templates ---------------------------------------------------------------------------------

MAX_LISTED = 20
CELL_CHARS = 120


@lru_cache(maxsize=1)
def templates():
    """The jinja2 environment over reports/templates (HTML templates autoescape, Markdown ones do not)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
                             autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",)),
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters.update(cell=md_cell, listing=listing, cellclass=_cell_class, code=_code)
    return env


def md_cell(value) -> str:
    """A Markdown table cell: one line, pipes escaped, long text cut."""
    text = " ".join(str(value).split())
    if len(text) > CELL_CHARS:
        text = text[:CELL_CHARS - 1] + "…"
    return text.replace("|", "\\|")


def listing(ids) -> str:
    ids = list(ids)
    shown = ", ".join(f"`{t}`" for t in ids[:MAX_LISTED])
    return shown + (f" and {len(ids) - MAX_LISTED} more" if len(ids) > MAX_LISTED else "")


def _cell_class(value):
    from markupsafe import Markup

    text = str(value)
    if _numeric(text):
        return Markup(" class='num'")
    return Markup(" class='wrap'") if len(text) > 40 else ""


def _code(text):
    """Escape, then show `x` as code."""
    import re

    from markupsafe import Markup, escape

    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


def _numeric(text: str) -> bool:
    try:
        float(text.replace(",", ""))
        return True
    except ValueError:
        return False
