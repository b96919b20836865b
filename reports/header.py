"""What a report was made from: the versioned header of report.json, and the schema every report is checked against.

The header is built from a run's manifest.json (a plain dict here): model,
checkpoint, decoding settings, date, harness version, sandbox tier. Any
manifest key may be missing (runs made by 0.1.x); the header then says
"unknown" rather than guessing. `validate_report` checks a report.json
against report.schema.json (JSON Schema, shipped beside this file) plus the
one rule a schema cannot say (c <= n), and raises ReportFormatError with one
line naming the first problem.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

SCHEMA_VERSION = 2  # 1: reports of 0.1.x, without header; 2: with header
SCHEMA_PATH = Path(__file__).with_name("report.schema.json")


class ReportFormatError(ValueError):
    """A report.json that does not follow the schema (one line: where and what)."""


def report_header(manifest: dict | None) -> dict:
    """The report's header from a run manifest; every field tolerates a missing key (None)."""
    m = manifest if isinstance(manifest, dict) else {}
    task, model, decoding = _dict(m.get("task")), _dict(m.get("model")), _dict(m.get("decoding"))
    sandbox, environment = _dict(m.get("sandbox")), _dict(m.get("environment"))
    params = _dict(model.get("params"))
    return {
        "schema_version": SCHEMA_VERSION,
        "harness_version": m.get("harness_version"),
        "created": m.get("created"),
        "command": m.get("command"),
        "task": {"name": task.get("name"), "version": task.get("version"), "fingerprint": task.get("fingerprint"),
                 "n_problems": task.get("n_problems")},
        "model": {
            "name": model_name(model),
            "kind": model.get("kind"),
            "spec": model.get("spec"),
            "path": model.get("path"),
            "fingerprint": model.get("fingerprint"),
            "n_params": model.get("n_params"),
            "heads": model.get("n_future_tokens") or params.get("n_future_tokens"),
            "dim": params.get("dim"),
            "n_layers": params.get("n_layers"),
            "dtype": model.get("dtype"),
            "device": model.get("device_name") or environment.get("device"),
        },
        "samples_file": m.get("samples_file"),
        "samples_format": m.get("samples_format"),
        "generated_by": _dict(m.get("generated_by")).get("run"),
        "decoding": {
            "passes": decoding.get("passes"),
            "top_p": decoding.get("top_p"),
            "top_k": decoding.get("top_k"),
            "max_new_tokens": decoding.get("max_new_tokens"),
            "speculative": decoding.get("speculative"),
            "batch_size": decoding.get("batch_size"),
            "protocol": decoding.get("protocol"),
            "seed": m.get("seed"),
        },
        "sandbox": {"tier": sandbox.get("tier")},  # not the worker count: it changes no verdict
        "integrity": _dict(m.get("integrity")).get("mode") or "standard",
        "environment": {"python": environment.get("python"), "torch": environment.get("torch"),
                        "device": environment.get("device")},
    }


def model_name(model: dict | None) -> str | None:
    """A short human name: the built-in name or the checkpoint folder (e.g. 7B_200B_4)."""
    model = _dict(model)
    spec = model.get("spec") or model.get("name")
    path = model.get("path")
    if spec and ("/" not in str(spec) or ":" in str(spec)):
        return str(spec)  # demo, tiny, or a hub id with its folder
    if path or spec:
        return Path(str(path or spec).rstrip("/")).name or str(path or spec)
    return None


def decoding_label(header: dict | None) -> str | None:
    """One line of settings: 'greedy, speculative 4, 512 new tokens' / 'n=200 at T=0.1,0.8, top-p 0.95'."""
    d = _dict(_dict(header).get("decoding"))
    passes = [p for p in d.get("passes") or [] if isinstance(p, dict)]
    if not passes and d.get("max_new_tokens") is None:
        return None
    parts = []
    temps = [p.get("temperature") for p in passes]
    if temps and all(t == 0 for t in temps):
        parts.append("greedy")
    elif temps:
        n = {p.get("n") for p in passes}
        parts.append(f"n={n.pop() if len(n) == 1 else '/'.join(map(str, sorted(n)))} at T="
                     + ",".join(f"{t:g}" for t in temps))
        if d.get("top_p") not in (None, 1, 1.0):
            parts.append(f"top-p {d['top_p']:g}")
    if d.get("speculative"):
        parts.append(f"speculative {d['speculative']}")
    if d.get("max_new_tokens") is not None:
        parts.append(f"{d['max_new_tokens']} new tokens")
    if d.get("protocol"):
        parts.append(f"protocol {d['protocol']}")
    return ", ".join(parts)


def run_label(header: dict | None, fallback: str = "run") -> str:
    """'7B_200B_4 (greedy, speculative 4, 512 new tokens)': how gate and compare name a side."""
    header = _dict(header)
    name = _dict(header.get("model")).get("name")
    if name is None and header.get("samples_file"):
        name = Path(str(header["samples_file"])).name
    settings = decoding_label(header)
    name = name or fallback
    return f"{name} ({settings})" if settings else name


def decoding_differences(a: dict | None, b: dict | None) -> list[str]:
    """The decoding settings two headers disagree on, as 'key: A vs B' (both known only)."""
    da, db = _dict(_dict(a).get("decoding")), _dict(_dict(b).get("decoding"))
    out = []
    for key in ("passes", "top_p", "top_k", "max_new_tokens", "speculative", "protocol", "seed"):
        if key in da and key in db and da[key] is not None and db[key] is not None and da[key] != db[key]:
            out.append(f"{key}: {_short(da[key])} vs {_short(db[key])}")
    return out


@lru_cache(maxsize=1)
def report_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate_report(report, source: str = "report") -> dict:
    """`report` if it follows report.schema.json; else ReportFormatError('<source>: <where>: <what>')."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(report_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(report))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "top level"
        raise ReportFormatError(f"{source} is not a valid report.json ({where}: {_one_line(error.message)})")
    for i, row in enumerate(report["per_problem"]):
        if row["c"] > row["n"]:
            raise ReportFormatError(f"{source} is not a valid report.json (per_problem/{i}: c={row['c']} > "
                                    f"n={row['n']})")
    return report


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 50 else text[:47] + "..."


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}
