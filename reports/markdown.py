"""Markdown renderings of a report, a comparison and a gate decision (GitHub-flavoured tables)."""
from __future__ import annotations

import json

MAX_LISTED = 20


def pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def points(x) -> str:
    return "–" if x is None else f"{x:+.1f}"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _listing(ids: list[str]) -> str:
    shown = ", ".join(f"`{t}`" for t in ids[:MAX_LISTED])
    return shown + (f" and {len(ids) - MAX_LISTED} more" if len(ids) > MAX_LISTED else "")


def _ci(e: dict) -> str:
    return f"[{pct(e['ci_low'])}, {pct(e['ci_high'])}]" if e.get("ci_low") is not None else ""


def pass_at_k_rows(table: dict) -> list[list]:
    rows = []
    for name, e in table.items():
        note = "" if e["computable"] else f"not computable: {e['reason']}"
        if e.get("temperature") is not None:
            note = f"T={e['temperature']:g}"
        rows.append([name, pct(e["estimate"]) if e["computable"] else "n/a", _ci(e), note])
    return rows


def render_markdown(report: dict) -> str:
    """report.md: summary, pass@k with CIs, temperatures, statuses, failures, slowest problems, speed."""
    conf = f"{round(100 * report['confidence'])}% CI"
    out = [f"# {report['task']}: evaluation report", ""]
    summary = f"{report['n_problems']} problems evaluated"
    if report.get("n_problems_total", report["n_problems"]) != report["n_problems"]:
        summary += f" of {report['n_problems_total']}"
    summary += f", {report['n_samples']} samples. Task fingerprint `{report['task_fingerprint']}`."
    out += [summary, ""]
    if report.get("missing_problems"):
        out += [f"**Missing results** for {len(report['missing_problems'])} problem(s): "
                f"{_listing(report['missing_problems'])}. pass@k is over the evaluated problems only.", ""]
    if report.get("integrity"):
        out += integrity_section(report["integrity"])

    out += ["## pass@k", "", _table(["metric", "estimate (%)", conf, "note"], pass_at_k_rows(report["pass_at_k"])),
            "", f"Intervals: bootstrap over problems ({report.get('bootstrap', {}).get('resamples', '?')} "
            "resamples, percentile).", ""]
    for suite, table in (report.get("pass_at_k_by_suite") or {}).items():
        out += [f"### Suite `{suite}`", "", _table(["metric", "estimate (%)", conf, "note"], pass_at_k_rows(table)), ""]

    if report.get("by_temperature"):
        names = list(report["pass_at_k"])
        rows = [[f"{t}", block["n_samples"]] +
                [f"{pct(block['pass_at_k'][n]['estimate'])} {_ci(block['pass_at_k'][n])}".strip()
                 if block["pass_at_k"][n]["computable"] else "n/a" for n in names]
                for t, block in report["by_temperature"].items()]
        out += ["## pass@k by temperature", "", _table(["temperature", "samples"] + names, rows), ""]
        best = report.get("best_temperature") or {}
        out += ["## Best temperature per k", "",
                _table(["metric", "temperature", "estimate (%)", conf],
                       [[n, f"{b['temperature']:g}", pct(b["estimate"]), _ci(b)] for n, b in best.items()]),
                ""]
        if report.get("headline_rule"):
            rule = ", ".join(f"{n} at T={t:g}" for n, t in report["headline_rule"].items())
            out += [f"The headline pass@k above uses fixed temperatures per k ({rule}), as in the MTP paper.", ""]
        else:
            out += ["The headline pass@k above takes each k at its best temperature (the MTP paper's "
                    "selection); choosing the maximum makes it slightly optimistic.", ""]

    total = max(1, report["n_samples"])
    out += ["## Status counts", "", _table(["status", "samples", "share (%)"],
                                           [[k, v, pct(v / total)] for k, v in report["status_counts"].items()]), ""]
    if report.get("failure_taxonomy"):
        out += ["## Failure taxonomy", "", _table(
            ["failure", "samples", "share of failures (%)", "problems", "examples", "example detail"],
            [[f["label"], f["count"], pct(f["share"]), f["n_problems"], ", ".join(f["examples"]),
              f["example_detail"][:80]] for f in report["failure_taxonomy"]]), ""]
    if report.get("slowest_problems"):
        out += ["## Slowest problems", "", _table(
            ["problem", "mean s", "max s", "samples", "timeouts"],
            [[s["task_id"], f"{s['mean_duration_s']:.3f}", f"{s['max_duration_s']:.3f}", s["n"], s["timeouts"]]
             for s in report["slowest_problems"]]), ""]
    if report.get("speed"):
        out += ["## Speed", "", _table(["measure", "value"], [[k, _value(v)] for k, v in report["speed"].items()]), ""]
    if report.get("unknown_task_ids"):
        out += [f"Ignored results for task ids not in the task: {_listing(report['unknown_task_ids'])}.", ""]
    return "\n".join(out)


def integrity_note(integrity: dict) -> str:
    """One sentence: the mode and what pass@k is over."""
    return (f"Integrity mode **{integrity['mode']}**: the checks ran in the trusted parent and only the "
            f"solution in the sandbox, fed literal inputs. {integrity['served']} of {integrity['total']} "
            f"problems served; pass@k is over the served problems only.")


def integrity_section(integrity: dict) -> list[str]:
    out = ["## Integrity", "", integrity_note(integrity), ""]
    if integrity.get("not_served"):
        out += [f"Not served ({len(integrity['not_served'])}): their checks cannot run on literal inputs alone.",
                "", _table(["problem", "reason"], [[r["task_id"], r["reason"]] for r in integrity["not_served"]]),
                ""]
    return out


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return ", ".join(_value(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    return str(v)


def render_comparison_markdown(cmp: dict, label_a: str = "A", label_b: str = "B") -> str:
    conf = f"{round(100 * cmp['confidence'])}% CI"
    out = [f"## {cmp['task']}: {label_b} vs {label_a}", "",
           f"{cmp['n_common']} problems in common. Differences are {label_b} − {label_a} in points.", ""]
    rows = []
    for name, m in cmp["metrics"].items():
        if not m["computable"]:
            rows.append([name, "n/a", "n/a", "", "", "", f"not computable: {m['reason']}"])
            continue
        ci = f"[{points(100 * m['ci_low'])}, {points(100 * m['ci_high'])}]"
        rows.append([name, pct(m["a"]), pct(m["b"]), points(100 * m["difference"]), ci, f"{m['p_value']:.3g}",
                     m["test"]])
    out += [_table(["metric", f"{label_a} (%)", f"{label_b} (%)", "Δ (points)", conf, "p", "test"], rows), ""]
    out += _flips(cmp["lost"], cmp["gained"], label_a, label_b)
    for side, ids in ((label_a, cmp["only_a"]), (label_b, cmp["only_b"])):
        if ids:
            out += [f"Only in {side} ({len(ids)}, not compared): {_listing(ids)}", ""]
    return "\n".join(out)


def _flips(lost: list[str], gained: list[str], label_a: str, label_b: str) -> list[str]:
    return [f"**Solved in {label_a}, unsolved in {label_b}** ({len(lost)}): {_listing(lost) or 'none'}", "",
            f"**Unsolved in {label_a}, solved in {label_b}** ({len(gained)}): {_listing(gained) or 'none'}", ""]


def render_gate_markdown(g: dict) -> str:
    """A PR-comment-sized table: verdict, metric before/after, drop with CI and p, flipped problems."""
    mark = "✅ passed" if g["passed"] else "❌ failed"
    conf = f"{round(100 * g['confidence'])}% CI"
    out = [f"### Regression gate {mark}: {g['task']} {g['metric']}", "", g["verdict"] + ".", "",
           _table(["metric", "baseline (%)", "run (%)", "change (points)", conf, "p", "test", "allowed drop"],
                  [[g["metric"], pct(g["baseline"]), pct(g["candidate"]), points(-g["drop_points"]),
                    f"[{points(g['ci_low_points'])}, {points(g['ci_high_points'])}]", f"{g['p_value']:.3g}",
                    g["test"], f"{g['max_drop']:g}"]]), ""]
    out += _flips(g["lost"], g["gained"], "baseline", "run")
    if g["only_baseline"]:
        out += [f"Not evaluated in the run ({len(g['only_baseline'])}): {_listing(g['only_baseline'])}", ""]
    return "\n".join(out)
