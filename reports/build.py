"""report.json from plain result rows: pass@k with bootstrap CIs, status counts, failures, timing.

Inputs are the rows of results.jsonl (dicts); nothing here knows where they
came from. Problems of the task without any result are listed as missing, and
pass@k is the mean over the evaluated problems only. Rows that carry a
"temperature" (the paper's protocol: several sampling passes in one run) get
per-temperature pass@k, and the headline pass@k takes, per k, the best
temperature, as the MTP paper reports it.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from .header import SCHEMA_VERSION
from .passk import estimate_pass_at_k, pass_at_k_entry
from .stats import DEFAULT_RESAMPLES, bca_interval, bootstrap_means, check_confidence, wilson_interval

INTERVAL_METHOD = ("BCa bootstrap over problems; Wilson score interval over problems where every "
                   "problem's value is 0 or 1, as in greedy runs or when nothing or everything is solved")
N_SLOWEST = 10
N_EXAMPLES = 5
# Every top-level key build_report can write; anything else in a stored report came in through `extra`.
REPORT_KEYS = ("schema_version", "header", "truncated", "decisions", "decoding_stats", "task", "task_fingerprint", "n_problems", "n_problems_total", "missing_problems", "n_samples",
               "confidence", "ks", "bootstrap", "status_counts", "pass_at_k", "pass_at_k_by_suite",
               "temperatures", "by_temperature", "best_temperature", "failure_taxonomy", "slowest_problems",
               "per_problem", "speed", "unknown_task_ids", "headline_rule", "integrity")


@dataclass
class ProblemCounts:
    """Samples n and correct c per evaluated problem (in task order), overall and per suite."""

    task_ids: list[str]
    n: np.ndarray
    c: np.ndarray
    c_by_suite: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: list[dict], order: list[str], suites: list[str]) -> "ProblemCounts":
        n, c = Counter(), Counter()
        c_suite = {s: Counter() for s in suites}
        for r in rows:
            tid = r["task_id"]
            n[tid] += 1
            c[tid] += bool(r["passed"])
            for s in suites:
                c_suite[s][tid] += bool(((r.get("suites") or {}).get(s) or {}).get("passed"))
        ids = [t for t in order if n[t]]
        as_array = lambda counter: np.array([counter[t] for t in ids], dtype=np.int64)  # noqa: E731
        return cls(ids, as_array(n), as_array(c), {s: as_array(c_suite[s]) for s in suites})


def status_label(row) -> str:
    """`error:<Type>` for errors, the status otherwise: of a result row, or of anything with `status`
    and `error_type` attributes (a sandbox Verdict). The one definition of a verdict's label."""
    if not isinstance(row, dict):
        row = vars(row)
    status = row.get("status") or ("passed" if row.get("passed") else "failed")
    return f"error:{row['error_type']}" if status == "error" and row.get("error_type") else status


def per_problem_pass_at_k(n, c, k: int) -> np.ndarray:
    """Per-problem pass@k; NaN where the problem has fewer than k samples."""
    n, c = np.asarray(n), np.asarray(c)
    out = np.full(n.shape, np.nan)
    ok = n >= k
    out[ok] = estimate_pass_at_k(n[ok], c[ok], k)
    return out


def pass_at_k_table(n, c, ks, confidence: float = 0.9, seed: int = 0,
                    n_resamples: int = DEFAULT_RESAMPLES) -> dict:
    """{"pass@k": entry} with estimate and CI for every computable k (method: INTERVAL_METHOD).

    Each entry names its interval: "wilson" when every problem's value is 0 or 1 (greedy
    runs, or nothing / everything solved: the problems are then Bernoulli trials and a
    bootstrap would collapse to a point at 0% and 100%), "bca" otherwise.
    """
    entries = {f"pass@{k}": pass_at_k_entry(n, c, k) for k in ks}
    computable = [k for k in ks if entries[f"pass@{k}"]["computable"]]
    if computable:
        values = np.stack([estimate_pass_at_k(n, c, k) for k in computable], axis=1)
        binary = np.all((values == 0) | (values == 1), axis=0)
        low, high = np.zeros(len(computable)), np.zeros(len(computable))
        if binary.any():
            low[binary], high[binary] = wilson_interval(values[:, binary].sum(axis=0), len(values), confidence)
        if not binary.all():
            spread = values[:, ~binary]
            low[~binary], high[~binary] = bca_interval(spread, bootstrap_means(spread, n_resamples, seed),
                                                       confidence)
        for j, k in enumerate(computable):
            entries[f"pass@{k}"].update(ci_low=float(low[j]), ci_high=float(high[j]),
                                        interval="wilson" if binary[j] else "bca")
    return entries


def build_report(results_rows: list[dict], *, task: str, task_fingerprint: str, problem_ids: list[str],
                 ks=(1, 10, 100), confidence: float = 0.9, seed: int = 0, speed: dict | None = None,
                 extra: dict | None = None, n_resamples: int = DEFAULT_RESAMPLES,
                 temperature_for_k: dict[int, float] | None = None, integrity: dict | None = None,
                 header: dict | None = None, samples: list[dict] | None = None) -> dict:
    """The report.json dict (schema: report.schema.json) for one run's result rows.

    `header` (see header.report_header) says what was evaluated; `samples` (the
    run's samples.jsonl rows, when there are any) give the count of completions
    cut at the token budget.

    In a temperature sweep the headline pass@k takes each k at its best
    temperature, unless `temperature_for_k` fixes the temperature per k
    (the MTP paper's protocol: pass@1 at 0.1, pass@10/100 at 0.8).
    `integrity` (strict mode: {"mode", "served", "total", "not_served": [{"task_id",
    "reason"}]}) is kept as is; `problem_ids` are then the served problems only.
    """
    check_confidence(confidence)
    ks = tuple(sorted({int(k) for k in ks}))
    rows = list({row_key(r): r for r in results_rows}.values())  # a re-executed key: the last row wins
    known = set(problem_ids)
    unknown = sorted({r["task_id"] for r in rows} - known)
    rows = [r for r in rows if r["task_id"] in known]
    order = list(dict.fromkeys(problem_ids))
    suites = _suite_names(rows)
    temperatures = sorted({r.get("temperature") for r in rows}, key=_temperature_sort_key) or [None]
    sweep = len(temperatures) > 1  # one temperature (or none): a plain run, reported as such

    def pass_at_k(n, c) -> dict:
        return pass_at_k_table(n, c, ks, confidence, seed, n_resamples)

    counts, blocks = {}, {}  # per temperature (None when the rows carry none)
    for t in temperatures:
        group = [r for r in rows if r.get("temperature") == t]
        counts[t] = ProblemCounts.from_rows(group, order, suites)
        blocks[t] = {"n_problems": len(counts[t].task_ids), "n_samples": len(group),
                     "pass_at_k": pass_at_k(counts[t].n, counts[t].c)}
        if suites:
            blocks[t]["pass_at_k_by_suite"] = {s: pass_at_k(counts[t].n, counts[t].c_by_suite[s]) for s in suites}

    evaluated = {r["task_id"] for r in rows}
    report = {"schema_version": SCHEMA_VERSION, "header": header} if header is not None else {}
    report.update({
        "task": task,
        "task_fingerprint": task_fingerprint,
        "n_problems": len(evaluated),
        "n_problems_total": len(order),
        "missing_problems": [t for t in order if t not in evaluated],
        "n_samples": len(rows),
        "confidence": confidence,
        "ks": list(ks),
        "bootstrap": {"method": INTERVAL_METHOD, "resamples": n_resamples, "seed": seed},
        "status_counts": dict(Counter(status_label(r) for r in rows).most_common()),
    })
    if samples:
        report["truncated"] = truncation(samples, rows)
        groups = decoding_groups(samples)
        if groups:
            report["decoding_stats"] = groups
    decided = [r for r in rows if r.get("decision")]
    if decided:
        report["decisions"] = [{"task_id": r["task_id"], "sample_idx": r.get("sample_idx"),
                                "temperature": r.get("temperature"), "status": status_label(r),
                                "decision": r["decision"]} for r in decided]
    if not sweep:
        t = temperatures[0]
        tag = (lambda table: table) if t is None else (
            lambda table: {name: {**e, "temperature": t} for name, e in table.items()})
        report["pass_at_k"] = tag(blocks[t]["pass_at_k"])
        if suites:
            report["pass_at_k_by_suite"] = {s: tag(v) for s, v in blocks[t]["pass_at_k_by_suite"].items()}
        if t is not None:
            report["temperatures"] = temperatures
    else:
        report["temperatures"] = temperatures
        report["by_temperature"] = {_temperature_key(t): block for t, block in blocks.items()}
        report["best_temperature"], report["pass_at_k"] = _best_temperature(blocks, ks)
        if temperature_for_k:
            report["pass_at_k"] = _fixed_temperatures(blocks, ks, temperature_for_k)
            report["headline_rule"] = {f"pass@{k}": t for k, t in temperature_for_k.items()}
        if suites:
            report["pass_at_k_by_suite"] = {s: _at_headline_temperatures(blocks, report["pass_at_k"], s)
                                            for s in suites}
    report["failure_taxonomy"] = failure_taxonomy(rows)
    report["slowest_problems"] = slowest_problems(rows)
    report["per_problem"] = [row for t in temperatures for row in _per_problem_rows(counts[t], ks, t)]
    if speed is not None:
        report["speed"] = speed
    if unknown:
        report["unknown_task_ids"] = unknown
    if integrity:
        report["integrity"] = integrity
    for key, value in (extra or {}).items():
        if key in report:
            raise ValueError(f"extra key {key!r} would overwrite a report field")
        report[key] = value
    return report


def _best_temperature(blocks: dict, ks) -> tuple[dict, dict]:
    """Per k, the temperature with the highest estimate (ties: the lower temperature)."""
    best, headline = {}, {}
    for k in ks:
        name = f"pass@{k}"
        entries = {t: block["pass_at_k"][name] for t, block in blocks.items()}
        computable = [t for t, e in entries.items() if e["computable"]]
        if not computable:
            reasons = "; ".join(f"T={_temperature_key(t)}: {e['reason']}" for t, e in entries.items())
            headline[name] = {"estimate": None, "ci_low": None, "ci_high": None, "computable": False,
                              "reason": f"at no temperature: {reasons}"}
            continue
        t = max(computable, key=lambda t: (entries[t]["estimate"], -_temperature_sort_key(t)))
        e = entries[t]
        best[name] = {"temperature": t, "estimate": e["estimate"], "ci_low": e["ci_low"], "ci_high": e["ci_high"]}
        headline[name] = {**e, "temperature": t}
    return best, headline


def _fixed_temperatures(blocks: dict, ks, temperature_for_k: dict[int, float]) -> dict:
    """Per k, the entry at the temperature the protocol names for it."""
    headline = {}
    for k in ks:
        name, t = f"pass@{k}", temperature_for_k.get(k)
        if t not in blocks:
            headline[name] = {"estimate": None, "ci_low": None, "ci_high": None, "computable": False,
                              "reason": f"no samples at the protocol's temperature {t} for {name}"}
        else:
            headline[name] = {**blocks[t]["pass_at_k"][name], "temperature": t}
    return headline


def _at_headline_temperatures(blocks: dict, headline: dict, suite: str) -> dict:
    """A suite's pass@k, each k taken at the temperature the headline chose for it."""
    return {name: {**blocks[e["temperature"]]["pass_at_k_by_suite"][suite][name], "temperature": e["temperature"]}
            if e["computable"] else e
            for name, e in headline.items()}


def truncation(samples: list[dict], rows: list[dict]) -> dict:
    """Completions cut at the token budget (finish_reason "length") and how they were judged."""
    status = {row_key(r): status_label(r) for r in rows}
    cut = [row_key(s) for s in samples if s.get("finish_reason") == "length"]
    judged = Counter(status[k] for k in cut if k in status)
    return {"samples": len(cut), "of": len(samples), "by_status": dict(judged.most_common())}


def failure_taxonomy(rows: list[dict]) -> list[dict]:
    """Non-passing samples grouped by status label, most frequent first, with example problems."""
    by_label = defaultdict(list)
    for r in rows:
        if not r["passed"]:
            by_label[status_label(r)].append(r)
    total = sum(len(v) for v in by_label.values())
    out = []
    for label, group in sorted(by_label.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        problems = list(dict.fromkeys(r["task_id"] for r in group))
        detail = next((_last_line(r["detail"]) for r in group if (r.get("detail") or "").strip()), "")
        out.append({"label": label, "count": len(group), "share": len(group) / total,
                    "n_problems": len(problems), "examples": problems[:N_EXAMPLES],
                    "example_detail": detail[:200]})
    return out


def _last_line(text: str) -> str:
    """The line that names the error in a stderr tail (a traceback's last line)."""
    return text.strip().splitlines()[-1].strip()


def slowest_problems(rows: list[dict], limit: int = N_SLOWEST) -> list[dict]:
    """Problems with the highest mean sample duration (timeouts are usually here)."""
    durations, timeouts = defaultdict(list), Counter()
    for r in rows:
        durations[r["task_id"]].append(float(r.get("duration_s") or 0.0))
        timeouts[r["task_id"]] += r.get("status") == "timeout"
    stats = [{"task_id": t, "mean_duration_s": float(np.mean(d)), "max_duration_s": float(np.max(d)),
              "n": len(d), "timeouts": timeouts[t]} for t, d in durations.items()]
    stats.sort(key=lambda s: (-s["mean_duration_s"], s["task_id"]))
    return stats[:limit]


def _per_problem_rows(counts: ProblemCounts, ks, temperature) -> list[dict]:
    columns = {f"pass@{k}": per_problem_pass_at_k(counts.n, counts.c, k) for k in ks}
    out = []
    for i, tid in enumerate(counts.task_ids):
        row = {"task_id": tid}
        if temperature is not None:
            row["temperature"] = temperature
        row.update(n=int(counts.n[i]), c=int(counts.c[i]))
        row.update({name: (None if np.isnan(v[i]) else float(v[i])) for name, v in columns.items()})
        if counts.c_by_suite:
            row["c_by_suite"] = {s: int(v[i]) for s, v in counts.c_by_suite.items()}
        out.append(row)
    return out


def _suite_names(rows: list[dict]) -> list[str]:
    names = {}
    for r in rows:
        for s in r.get("suites") or {}:
            names.setdefault(s, None)
    return list(names) if len(names) > 1 else []


def row_key(row: dict) -> tuple:
    """A sample's or result's identity in a run: (task_id, sample_idx, temperature). Temperature is None
    for executed sample files and set for generated samples (a paper-protocol run has two passes).
    The run store keys its rows by this too (the one definition: the spine imports the leaf)."""
    return (row["task_id"], row.get("sample_idx"), row.get("temperature"))


def _temperature_key(t) -> str:
    return "unspecified" if t is None else f"{float(t):g}"


def _temperature_sort_key(t) -> float:
    return -1.0 if t is None else float(t)


def speed_from_samples(sample_rows: list[dict]) -> dict | None:
    """Decoding totals over the generated samples in samples.jsonl; None when none has stats."""
    stats = [{"tokens": r.get("tokens") or 0, **r["stats"]} for r in sample_rows if isinstance(r.get("stats"), dict)]
    return decoding_totals(stats) if stats else None


def decoding_totals(stats: list[dict]) -> dict:
    """Tokens, forwards and per-head acceptance summed over per-sample decoding stats.

    Each entry: {"tokens", "forwards", "accepted_per_head", "drafted_per_head"}.
    acceptance_per_head[j] = drafts of head j accepted / drafts of head j checked (the
    paper's conditional acceptance; entry 0 is head 1, always 1.0); None for plain decoding.
    """
    tokens = sum(int(st.get("tokens") or 0) for st in stats)
    forwards = sum(int(st.get("forwards") or 0) for st in stats)
    accepted, drafted = _sum_columns(st.get("accepted_per_head") for st in stats), \
        _sum_columns(st.get("drafted_per_head") for st in stats)
    speculative = len(drafted) > 1
    return {
        "samples_generated": len(stats),
        "tokens_generated": tokens,
        "forwards": forwards,
        "tokens_per_forward": round(tokens / forwards, 3) if forwards else None,
        "acceptance_per_head": [a / d if d else None for a, d in zip(accepted, drafted)] if speculative else None,
    }


def decoding_groups(sample_rows: list[dict]) -> list[dict]:
    """Decoding totals per (temperature, plain or speculative) over the samples that carry stats:
    tokens per forward and the acceptance of draft heads 2..k (head 1 is always accepted)."""
    groups: dict = defaultdict(list)
    for r in sample_rows:
        if isinstance(r.get("stats"), dict) and r["stats"].get("forwards"):
            mode = "speculative" if len(r["stats"].get("drafted_per_head") or ()) > 1 else "plain"
            groups[(r.get("temperature"), mode)].append({"tokens": r.get("tokens") or 0, **r["stats"]})
    out = []
    for (temperature, mode), stats in sorted(groups.items(), key=lambda kv: (_temperature_sort_key(kv[0][0]),
                                                                           kv[0][1])):
        totals = decoding_totals(stats)
        out.append({"temperature": temperature, "mode": mode, "samples": totals["samples_generated"],
                    "tokens": totals["tokens_generated"], "forwards": totals["forwards"],
                    "tokens_per_forward": totals["tokens_per_forward"],
                    "acceptance_per_draft_head": (totals["acceptance_per_head"] or [None])[1:]})
    return out


def _sum_columns(lists) -> list:
    total: list = []
    for values in lists:
        for i, v in enumerate(values or ()):
            if i == len(total):
                total.append(0)
            total[i] += v
    return total
