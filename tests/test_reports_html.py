import base64
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evalharness import reports
from test_reports_fixtures import outcome_rows

ROOT = Path(__file__).resolve().parents[1]


def sweep_report(speed):
    _, low = outcome_rows({f"P/{i}": [i % 2 == 0, "error:KeyError", i % 3 == 0, "timeout"] for i in range(12)}, 0.1)
    _, high = outcome_rows({f"P/{i}": [i % 4 == 0, True, "failed", "syntax_error"] for i in range(12)}, 0.8)
    return reports.build_report(low + high, task="synthetic", task_fingerprint="fp",
                                problem_ids=[f"P/{i}" for i in range(13)], ks=(1, 2, 10), speed=speed)


def images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)]


def test_html_is_self_contained_and_has_the_plots():
    page = reports.render_html(sweep_report({"tokens_per_forward": 2.2, "acceptance_per_head": [0.7, 0.4]}))
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<script" not in page and "url(" not in page and "@import" not in page
    pngs = images(page)
    assert len(pngs) == 4 and all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    assert "multi-token prediction" in page and "Best temperature per k" in page
    assert "error:KeyError" in page and "Missing results for 1 problem" in page


def test_html_without_mtp_stats_has_three_plots_and_escapes_text():
    _, rows = outcome_rows({"<b>P</b>": [True, False]})
    page = reports.render_html(reports.build_report(rows, task="t<script>", task_fingerprint="fp",
                                                    problem_ids=["<b>P</b>"], ks=(1,)))
    assert len(images(page)) == 3
    assert "<script>" not in page and "t&lt;script&gt;" in page and "&lt;b&gt;P&lt;/b&gt;" in page


def test_markdown_has_every_section():
    md = reports.render_markdown(sweep_report({"tokens_per_forward": 2.2}))
    for heading in ("## pass@k", "## pass@k by temperature", "## Best temperature per k", "## Status counts",
                    "## Failure taxonomy", "## Slowest problems", "## Speed"):
        assert heading in md
    assert "| pass@10 | n/a |" in md and "k=10 > n=4" in md
    assert "**Missing results** for 1 problem(s): `P/12`" in md


@pytest.mark.skipif(not any(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")),
                    reason="chromium not installed")
def test_headless_chromium_renders_the_report(tmp_path):
    shot = tmp_path / "shot.png"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_html.py"), "--out", str(shot)],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert shot.read_bytes().startswith(b"\x89PNG")
