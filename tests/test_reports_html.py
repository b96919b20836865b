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


def sweep_rows():
    s_low, low = outcome_rows({f"P/{i}": [i % 2 == 0, "error:KeyError", i % 3 == 0, "timeout"] for i in range(12)}, 0.1)
    s_high, high = outcome_rows({f"P/{i}": [i % 4 == 0, True, "failed", "syntax_error"] for i in range(12)}, 0.8)
    return s_low + s_high, low + high


def sweep_report(speed, samples=None):
    _, rows = sweep_rows()
    return reports.build_report(rows, task="synthetic", task_fingerprint="fp",
                                problem_ids=[f"P/{i}" for i in range(13)], ks=(1, 2, 10), speed=speed,
                                samples=samples)


def images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r"src=\"data:image/png;base64,([A-Za-z0-9+/=]+)\"", page)]


def test_html_is_self_contained_and_has_the_plots():
    samples, _ = sweep_rows()
    page = reports.render_html(sweep_report({"tokens_per_forward": 2.2}, samples))
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<script src" not in page and "url(" not in page and "@import" not in page
    assert "fetch(" not in page and "XMLHttpRequest" not in page
    pngs = images(page)
    assert len(pngs) == 4 and all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    assert "multi-token prediction" in page and "Best temperature per k" in page
    assert "error:KeyError" in page and "Missing results for 1 problem" in page


def test_html_and_markdown_show_the_same_sections():
    """One report model: the HTML has the pass@k-by-temperature table, the Markdown the per-problem table."""
    samples, rows = sweep_rows()
    report = sweep_report(None, samples)
    details = reports.drilldown(samples, rows, {f"P/{i}": f"def f{i}():\n" for i in range(12)})
    page, md = reports.render_html(report, details), reports.render_markdown(report, details)
    for heading in ("pass@k by temperature", "Best temperature per k", "Status counts", "Failure taxonomy",
                    "Slowest problems", "Per problem", "Speed"):
        assert f"<h2>{heading}</h2>" in page or f"<h3>{heading}</h3>" in page, heading
        assert f"## {heading}" in md, heading
    assert "| P/3 | 0.1 | 4 | 1 |" in md  # per-problem rows: problem, T, n, c, ...
    assert re.search(r"<td>0.1</td><td class='num'>4</td>.*?17\.5 \[", page) or "0.1</td>" in page


def test_html_drilldown_shows_prompt_completion_error_and_finish_reason():
    samples, rows = outcome_rows({"P/0": ["error:ZeroDivisionError", True], "P/1": ["syntax_error"]})
    rows[0]["detail"] = 'Traceback (most recent call last):\n  File "<program>", line 3\nZeroDivisionError: division by zero'
    samples[2]["finish_reason"] = "length"
    samples[2]["completion"] = "    return [x for x in <cut>"
    report = reports.build_report(rows, task="t", task_fingerprint="fp", problem_ids=["P/0", "P/1"], ks=(1,),
                                  samples=samples)
    page = reports.render_html(report, reports.drilldown(samples, rows, {"P/0": "def div(a, b):\n", "P/1": "x"}))
    body = page[page.index('<tbody class="problem" id="p-P/0"'):page.index('id="p-P/1"')]
    assert "def div(a, b):" in body and "return 0  # P/0" in body
    assert "ZeroDivisionError: division by zero" in body and "finish stop" in body
    assert 'data-status="error:ZeroDivisionError passed"' in body
    assert "return [x for x in &lt;cut&gt;" in page and "finish length" in page  # escaped
    assert "1 of 3 completions (33.3%) were cut at the token budget" in page
    assert "<th" in page and "id=\"filter\"" in page and "id=\"status\"" in page


def test_truncation_is_its_own_count_in_the_report():
    samples, rows = outcome_rows({"P/0": ["syntax_error", "syntax_error", True]})
    samples[0]["finish_reason"] = samples[1]["finish_reason"] = "length"
    report = reports.build_report(rows, task="t", task_fingerprint="fp", problem_ids=["P/0"], ks=(1,), samples=samples)
    assert report["truncated"] == {"samples": 2, "of": 3, "by_status": {"syntax_error": 2}}
    assert "**Truncated**: 2 of 3 completions (66.7%) were cut at the token budget (finish_reason `length`); " \
           "judged: syntax_error 2." in reports.render_markdown(report)


def test_rows_with_a_harness_decision_are_listed():
    _, rows = outcome_rows({"P/0": ["suspicious", True], "P/1": [True]})
    rows[0]["decision"] = "suspicious in standard mode (uses __eq__); re-judged in strict mode: failed"
    report = reports.build_report(rows, task="t", task_fingerprint="fp", problem_ids=["P/0", "P/1"], ks=(1,))
    assert report["decisions"] == [{"task_id": "P/0", "sample_idx": 0, "temperature": None, "status": "suspicious",
                                    "decision": rows[0]["decision"]}]
    md = reports.render_markdown(report)
    assert "## Verdicts resting on a harness decision" in md
    assert "| P/0 | 0 | suspicious | suspicious in standard mode (uses __eq__); re-judged in strict mode: failed |" in md
    assert "re-judged in strict mode" in reports.render_html(report)
    assert "harness decision" not in reports.render_markdown(
        reports.build_report(rows[1:], task="t", task_fingerprint="fp", problem_ids=["P/1"], ks=(1,)))


def test_speed_shows_draft_heads_2_to_k_per_temperature_and_no_unknowns():
    samples, rows = sweep_rows()
    for s in samples:
        if s["temperature"] == 0.8:
            s["stats"] = {"forwards": 5, "accepted_per_head": [5, 1, 0], "drafted_per_head": [5, 5, 2]}
    report = sweep_report({"tokens_per_s": 123.4, "tokens_per_forward": 1.5, "acceptance_per_head": None,
                           "programs_per_s": None}, samples)
    md = reports.render_markdown(report)
    speed = md[md.index("## Speed"):md.index("## Per problem")]
    assert "acceptance_per_head" not in speed and "None" not in speed and "n/a" not in speed
    assert "| tokens per second (generation) | 123.4 |" in speed
    assert "| acceptance head 2 (%) | acceptance head 3 (%) |" in speed and "head 1" not in speed.split("|")[0]
    assert "| speculative, T=0.1 | 48 | 1.75 | 50.0 | 25.0 |" in speed  # fixture: heads 2, 3 accepted 2 and 1 of 4
    assert "| speculative, T=0.8 | 48 | 1.40 | 20.0 | 0.0 |" in speed


def test_speculative_against_plain_where_the_run_had_both():
    samples, rows = outcome_rows({f"P/{i}": [True] for i in range(4)}, 0.0)
    for s in samples[:2]:
        s["stats"] = {"forwards": 7, "accepted_per_head": [7], "drafted_per_head": [7]}  # plain: 1 token/forward
    report = reports.build_report(rows, task="t", task_fingerprint="fp", problem_ids=[f"P/{i}" for i in range(4)],
                                  ks=(1,), samples=samples)
    md = reports.render_markdown(report)
    assert "| plain, greedy | 2 | 1.00 |" in md and "| speculative, greedy | 2 | 1.75 |" in md
    assert "Speculative decoding: 1.75x the tokens per forward of plain decoding." in md


def test_greedy_run_has_no_one_point_curve_and_no_na_rows():
    samples, rows = outcome_rows({f"P/{i}": [i % 2 == 0] for i in range(6)}, 0.0)
    for s in samples:
        s["stats"] = {"forwards": 7, "accepted_per_head": [7], "drafted_per_head": [7]}
    report = reports.build_report(rows, task="t", task_fingerprint="fp", problem_ids=[f"P/{i}" for i in range(6)],
                                  ks=(1, 10, 100), samples=samples, speed={"tokens_per_s": 50.0,
                                                                           "acceptance_per_head": None})
    page, md = reports.render_html(report), reports.render_markdown(report)
    assert "pass@k vs k" not in page and len(images(page)) == 2  # solve rate, statuses; no curve, no MTP plot
    assert "| pass@10 |" not in md and "n/a" not in md
    assert "Not computable: pass@10 (k=10 > n=1 samples for some problems); pass@100" in md


def test_html_without_mtp_stats_has_no_mtp_plot_and_escapes_text():
    _, rows = outcome_rows({"<b>P</b>": [True, False]})
    page = reports.render_html(reports.build_report(rows, task="t<script>", task_fingerprint="fp",
                                                    problem_ids=["<b>P</b>"], ks=(1,)))
    assert len(images(page)) == 3
    assert "<script>alert" not in page and "t&lt;script&gt;" in page and "&lt;b&gt;P&lt;/b&gt;" in page


def test_markdown_has_every_section():
    md = reports.render_markdown(sweep_report({"tokens_per_forward": 2.2}))
    for heading in ("## pass@k", "## pass@k by temperature", "## Best temperature per k", "## Status counts",
                    "## Failure taxonomy", "## Slowest problems", "## Speed", "## Per problem"):
        assert heading in md
    assert "Not computable: pass@10 (at no temperature: T=0.1: k=10 > n=4 samples for some problems" in md
    assert "**Missing results** for 1 problem(s): `P/12`" in md


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (CI installs Debian's package)")
def test_headless_chromium_shows_a_drilldown_with_a_completion_and_its_error(tmp_path):
    """The screenshot script opens one problem's drill-down (#p-<id>); Chromium's DOM after the page's
    script ran has that problem alone, opened, with a failing completion and its error line."""
    import runpy

    check_html = runpy.run_path(str(ROOT / "scripts" / "check_html.py"))
    report, details = check_html["synthetic_run"]()
    problem = next(t for t, d in details.items()
                   if any(s["status"] == "error:NameError" for s in d["groups"][0.8]["samples"]))
    page = tmp_path / "report.html"
    page.write_text(reports.render_html(report, details), encoding="utf-8")
    fragment = f"#p-{problem}@0.8"
    shot = tmp_path / "shot.png"
    check_html["screenshot"](page, shot, CHROMIUM, fragment)
    assert shot.read_bytes().startswith(b"\x89PNG") and not check_html["is_blank"](shot)

    with __import__("tempfile").TemporaryDirectory() as profile:
        dom = subprocess.run([CHROMIUM, *check_html["CHROMIUM_FLAGS"], f"--user-data-dir={profile}", "--dump-dom",
                              page.resolve().as_uri() + fragment], capture_output=True, text=True, timeout=120).stdout
    assert '<body class="focus">' in dom
    opened = dom[dom.index(f'id="p-{problem}@0.8"'):]
    opened = opened[:opened.index("</tbody>")]
    assert "hidden" not in opened.split(">", 1)[0] and '<tr class="detail">' in opened  # shown and opened
    assert "NameError: name 'numbrs' is not defined" in opened and "return [x for x in numbrs" in opened
    assert "finish length" in opened  # a truncated sample is in the drill-down too
    others = re.findall(r'<tbody class="problem"[^>]*>', dom)
    assert len(others) == 328 and sum("hidden" in t for t in others) == 327
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_html.py"), "--out", str(tmp_path / "a.png")],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (CI installs Debian's package)")
def test_the_per_problem_table_filters_sorts_and_opens_in_chromium(tmp_path):
    """Drive the page's own script as a user would (type a filter, pick a status, click a column, click a
    row) and read the outcome from Chromium's DOM."""
    import tempfile

    samples, rows = outcome_rows({"P/0": [True, "error:KeyError"], "P/1": ["syntax_error"], "P/2": [True, True],
                                  "P/10": ["timeout", "failed"]})
    ids = ["P/0", "P/1", "P/2", "P/10"]
    report = reports.build_report(rows, task="t", task_fingerprint="fp", problem_ids=ids, ks=(1,), samples=samples)
    page = reports.render_html(report, reports.drilldown(samples, rows, {i: f"def f():  # {i}\n" for i in ids}))
    driver = """<script>
    function shown() { return Array.prototype.filter.call(document.querySelectorAll('tbody.problem'),
        function (b) { return !b.hidden; }).map(function (b) { return b.id; }).join(','); }
    var out = [], f = document.getElementById('filter'), st = document.getElementById('status');
    f.value = 'keyerror'; f.dispatchEvent(new Event('input')); out.push('text:' + shown());
    f.value = ''; f.dispatchEvent(new Event('input'));
    st.value = 'syntax_error'; st.dispatchEvent(new Event('input')); out.push('status:' + shown());
    st.value = ''; st.dispatchEvent(new Event('input'));
    var u = document.getElementById('unsolved'); u.checked = true; u.dispatchEvent(new Event('input'));
    out.push('unsolved:' + shown()); u.checked = false; u.dispatchEvent(new Event('input'));
    var th = document.querySelectorAll('#problems th');
    th[3].click(); th[3].click(); out.push('by pass@1 desc:' + shown());
    th[0].click(); out.push('by problem:' + shown());
    document.querySelector('#p-P\\\\/10 tr.row').click();
    out.push('opened:' + !document.querySelector('#p-P\\\\/10 tr.detail').hidden);
    document.body.setAttribute('data-result', out.join(';'));
    </script></body>"""
    (tmp_path / "r.html").write_text(page.replace("</body>", driver), encoding="utf-8")
    with tempfile.TemporaryDirectory() as profile:
        import runpy

        flags = runpy.run_path(str(ROOT / "scripts" / "check_html.py"))["CHROMIUM_FLAGS"]
        dom = subprocess.run([CHROMIUM, *flags, f"--user-data-dir={profile}", "--dump-dom",
                              (tmp_path / "r.html").resolve().as_uri()], capture_output=True, text=True,
                             timeout=120).stdout
    result = dict(part.split(":", 1) for part in re.search(r'data-result="([^"]*)"', dom).group(1).split(";"))
    assert result["text"] == "p-P/0"
    assert result["status"] == "p-P/1"
    assert result["unsolved"] == "p-P/1,p-P/10"
    assert result["by pass@1 desc"].split(",")[0] == "p-P/2" and result["by pass@1 desc"].split(",")[-2:] in (
        ["p-P/1", "p-P/10"], ["p-P/10", "p-P/1"])
    assert result["by problem"] == "p-P/0,p-P/1,p-P/2,p-P/10"  # numeric-aware: P/2 before P/10
    assert result["opened"] == "true"
