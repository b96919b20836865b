"""Markdown renderings of a report, a comparison and a gate decision (GitHub-flavoured tables)."""
from __future__ import annotations

from .view import MAX_LISTED, report_view, templates


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


def render_markdown(report: dict, details: dict | None = None) -> str:
    """report.md: the header, pass@k with CIs, temperatures, statuses, decisions, failures, speed and the
    per-problem table, from the report model the HTML renders too (view.report_view)."""
    return templates().get_template("report.md.j2").render(v=report_view(report, details)).rstrip() + "\n"


def _sides(pairs) -> list[str]:
    """'**baseline**: 7B_200B_4 (greedy, 512 new tokens) · evalharness 0.2.0 · 2026-11-24' lines."""
    out = []
    for name, side in pairs:
        header = (side or {}).get("header") or {}
        facts = [f"evalharness {header['harness_version']}" if header.get("harness_version") else None,
                 header.get("created"),
                 f"model {(header.get('model') or {}).get('fingerprint')}"
                 if (header.get("model") or {}).get("fingerprint") else None]
        label = (side or {}).get("label") or name
        out.append(f"- **{name}**: {label}" + "".join(f" · {f}" for f in facts if f))
    return out + [""]


def _warnings(items) -> list[str]:
    return [f"> ⚠️ {w}" for w in items or []] + ([""] if items else [])


def render_comparison_markdown(cmp: dict, label_a: str = "A", label_b: str = "B") -> str:
    conf = f"{round(100 * cmp['confidence'])}% CI"
    out = [f"## {cmp['task']}: {label_b} vs {label_a}", ""]
    out += _sides([(label_a, cmp.get("a")), (label_b, cmp.get("b"))])
    out += _warnings(cmp.get("warnings"))
    out += [f"{cmp['n_common']} problems in common. Differences are {label_b} − {label_a} in points.", ""]
    rows = []
    for name, m in cmp["metrics"].items():
        if not m["computable"]:
            rows.append([name, "n/a", "n/a", "", "", "", f"not computable: {m['reason']}"])
            continue
        ci = f"[{points(100 * m['ci_low'])}, {points(100 * m['ci_high'])}]"
        rows.append([name, pct(m["a"]), pct(m["b"]), points(100 * m["difference"]), ci, f"{m['p_value']:.3g}",
                     m["test"]])
    out += [_table(["metric", f"{label_a} (%)", f"{label_b} (%)", "Δ (points)", conf, "p", "test"], rows), ""]
    speed_a, speed_b = (cmp.get("a") or {}).get("speed") or {}, (cmp.get("b") or {}).get("speed") or {}
    shared = [k for k in speed_a if k in speed_b]
    if shared:
        names = {"tokens_per_forward": "tokens per forward", "tokens_per_s": "tokens per second"}
        out += [_table(["speed", label_a, label_b, f"{label_b} / {label_a}"],
                       [[names.get(k, k), f"{speed_a[k]:.2f}", f"{speed_b[k]:.2f}",
                         f"{speed_b[k] / speed_a[k]:.2f}x" if speed_a[k] else "–"] for k in shared]), ""]
    out += _flips(cmp["lost"], cmp["gained"], label_a, label_b)
    for side, ids in ((label_a, cmp["only_a"]), (label_b, cmp["only_b"])):
        if ids:
            out += [f"Only in {side} ({len(ids)}, not compared): {_listing(ids)}", ""]
    return "\n".join(out)


def _flips(lost: list[str], gained: list[str], label_a: str, label_b: str) -> list[str]:
    return [f"**Solved in {label_a}, unsolved in {label_b}** ({len(lost)}): {_listing(lost) or 'none'}", "",
            f"**Unsolved in {label_a}, solved in {label_b}** ({len(gained)}): {_listing(gained) or 'none'}", ""]


def render_gate_markdown(g: dict) -> str:
    """A PR-comment-sized table: both runs named, verdict, metric before/after, drop with CI and p, flips."""
    mark = "✅ passed" if g["passed"] else "❌ failed"
    out = [f"### Regression gate {mark}: {g['task']} {g['metric']}", ""]
    out += _sides([("baseline", g.get("baseline_run")), ("run", g.get("candidate_run"))])
    out += _warnings(g.get("warnings"))
    out += [g["verdict"] + ".", ""]
    if g.get("kind") == "speed":
        out += [_table(["metric", "baseline", "run", "change (%)", "allowed drop (%)", "test"],
                       [[g["metric"], f"{g['baseline']:.2f}", f"{g['candidate']:.2f}", points(-g["drop_percent"]),
                         f"{g['max_drop']:g}", g["test"]]]), ""]
        return "\n".join(out)
    conf = f"{round(100 * g['confidence'])}% CI"
    out += [_table(["metric", "baseline (%)", "run (%)", "change (points)", conf, "p", "test", "allowed drop"],
                   [[g["metric"], pct(g["baseline"]), pct(g["candidate"]), points(-g["drop_points"]),
                     f"[{points(g['ci_low_points'])}, {points(g['ci_high_points'])}]", f"{g['p_value']:.3g}",
                     g["test"], f"{g['max_drop']:g}"]]), ""]
    out += _flips(g["lost"], g["gained"], "baseline", "run")
    if g["only_baseline"]:
        out += [f"Not evaluated in the run ({len(g['only_baseline'])}): {_listing(g['only_baseline'])}", ""]
    return "\n".join(out)


def render_gate_refusal(message: str) -> str:
    """What --out holds when the gate could not decide (exit 2): why, in a few lines."""
    return ("### Regression gate ⚠️ not evaluated\n\n"
            f"The gate could not compare the runs: {message}\n\n"
            "Exit code 2: the comparison itself is invalid (a broken pipeline, not a regression).\n")
