#!/usr/bin/env python
"""Render a report.html and screenshot it with headless Chromium, offline, to check it by eye.

    python scripts/check_html.py [RUN_DIR] [--out shot.png] [--html report.html] [--open PROBLEM]

Without RUN_DIR a synthetic paper-protocol run (two temperatures, MTP speed
stats, completions with errors) is rendered. --open PROBLEM opens that
problem's drill-down (the page's #p-<id> link) and screenshots it. Exit 0 when
Chromium wrote a non-blank screenshot, 1 when it did not, 2 when no Chromium is
installed (`apt-get install -y chromium`).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from evalharness import reports

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--window-size=1200,2400"]


def synthetic_run() -> tuple[dict, dict]:
    """(report, drill-down) of 164 problems, 20 samples at T=0.1 and T=0.8, a few error types, timeouts
    and truncated completions, MTP speed."""
    rng = np.random.default_rng(0)
    ids = [f"HumanEval/{i}" for i in range(164)]
    difficulty = rng.beta(0.8, 1.2, size=len(ids))
    failures = ["failed", "error", "timeout", "syntax_error"]
    samples, rows = [], []
    # Low temperature: polarized per-problem rates (best pass@1); high: spread out (best pass@10).
    rates = {0.1: np.clip((difficulty - 0.45) * 2.5 + 0.45, 0, 1), 0.8: 0.85 * difficulty}
    for temperature, column in rates.items():
        for tid, rate in zip(ids, column):
            for idx in range(20):
                ok = rng.random() < rate
                status = "passed" if ok else failures[rng.integers(0, 4)]
                detail = {"failed": "AssertionError", "error": "Traceback (most recent call last):\n  File "
                          "\"<program>\", line 14, in candidate\nNameError: name 'numbrs' is not defined",
                          "timeout": "timeout after 3.0 s CPU", "syntax_error": "  File \"<program>\", line 12\n"
                          "    return [x for x in\n           ^\nSyntaxError: '[' was never closed"}
                key = {"task_id": tid, "sample_idx": idx, "temperature": temperature}
                samples.append({**key, "completion": "    return [x for x in numbrs if x > threshold]\n"
                                if not ok else "    return [x for x in numbers if x > threshold]\n",
                                "tokens": 512 if status == "syntax_error" else 18,
                                "finish_reason": "length" if status == "syntax_error" else "stop",
                                "stats": {"forwards": 213 if status == "syntax_error" else 7,
                                          "accepted_per_head": [7, 6, 4, 2], "drafted_per_head": [7, 7, 6, 4]}})
                rows.append({**key, "status": status, "passed": ok,
                             "error_type": "NameError" if status == "error" else None,
                             "duration_s": float(rng.gamma(2, 0.05) + (3.0 if status == "timeout" else 0)),
                             "detail": "" if ok else detail[status]})
    speed = {"tokens_per_forward": 2.41, "tokens_per_s": 118.0, "samples_generated": len(samples)}
    header = reports.report_header({
        "harness_version": "synthetic", "created": "2026-12-01T00:00:00+00:00", "command": "run",
        "task": {"name": "humaneval", "version": "1", "fingerprint": "synthetic"},
        "model": {"spec": "facebook/multi-token-prediction:7B_200B_4", "n_future_tokens": 4,
                  "n_params": 7_300_000_000, "dtype": "bfloat16", "fingerprint": "synthetic"},
        "decoding": {"passes": [{"temperature": 0.1, "n": 20}, {"temperature": 0.8, "n": 20}], "top_p": 0.95,
                     "max_new_tokens": 512, "speculative": 4, "protocol": "mtp-paper"},
        "seed": 0, "sandbox": {"tier": "hardened"}})
    report = reports.build_report(rows, task="humaneval", task_fingerprint="synthetic", problem_ids=ids,
                                  ks=(1, 10, 100), speed=speed, header=header, samples=samples)
    prompts = {tid: f"def below_threshold(numbers: list, threshold: int) -> list:\n    \"\"\"{tid}\"\"\"\n"
               for tid in ids}
    return report, reports.drilldown(samples, rows, prompts)


def find_chromium() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


def screenshot(html_path: Path, png_path: Path, chromium: str, fragment: str = "") -> None:
    """Chromium as root needs --no-sandbox; a fresh profile keeps runs independent."""
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png_path.resolve()}",
                        html_path.resolve().as_uri() + fragment],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


def is_blank(png_path: Path) -> bool:
    from matplotlib.image import imread

    image = imread(png_path)
    return float(np.ptp(image[..., :3])) < 0.05


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", help="run directory (default: a synthetic report)")
    parser.add_argument("--out", default="report_screenshot.png", help="screenshot PNG path")
    parser.add_argument("--html", help="also keep the rendered HTML here")
    parser.add_argument("--open", metavar="PROBLEM", help="open this problem's drill-down (e.g. HumanEval/3@0.1)")
    args = parser.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        print("check_html: no chromium found (apt-get install -y chromium)", file=sys.stderr)
        return 2
    if args.run:
        from evalharness.reporting import rebuild_report, run_details

        report, details = rebuild_report(args.run), run_details(args.run)
    else:
        report, details = synthetic_run()
    with tempfile.TemporaryDirectory() as tmp:
        html_path = Path(args.html) if args.html else Path(tmp) / "report.html"
        html_path.write_text(reports.render_html(report, details), encoding="utf-8")
        png_path = Path(args.out)
        screenshot(html_path, png_path, chromium, f"#p-{args.open}" if args.open else "")
    if not png_path.is_file() or is_blank(png_path):
        print(f"check_html: no usable screenshot at {png_path}", file=sys.stderr)
        return 1
    print(png_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
