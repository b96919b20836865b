"""MBPP (Austin et al. 2021) and the variants other harnesses report, each under its own name.

- `mbpp`: the paper's 3-shot prompt (shots = task_ids 2, 3, 4, their `code`
  kept with its `\\r\\n` line endings), test split 11..510, stop at `[DONE]`.
  Program: `completion + "\\n" + test_setup_code + "\\n" + "\\n".join(test_list)`
  (the order matters: tasks 367 and 927 define a class that the setup uses).
- `mbpp-challenge`: the same, with `challenge_test_list` appended to the
  tests (11 problems have them, all in the test split).
- `mbpp-sanitized`: the hand-verified subset (257 test problems), its
  `prompt` field in the same 3-shot format with shots from the sanitized
  records 2, 3, 4; `test_imports` go before the completion.
- `mbpp-bigcode`: bigcode-evaluation-harness's zero-shot docstring prompt and
  stop sequences; the program is `prompt + completion` followed by the setup
  and the tests (bigcode omits test_setup_code, which only breaks task 367).

The few-shot and target prompts show the first three tests, as Austin et al.
and lm-eval do; the program runs all of them. Task ids are `Mbpp/<n>`, as in EvalPlus.
"""
from __future__ import annotations

from dataclasses import dataclass

from .base import TASK_VERSION, LiteralChecks, Problem, Task, TaskError, TestProgram, imported_modules
from .data import load_from_hub, local_file, one_file, read_records
from .literal import literal_calls, solution_name, solution_names

HUB_REPO = "google-research-datasets/mbpp"
SHOT_IDS = (2, 3, 4)
SPLITS = {  # task_id ranges of the dataset's README
    "prompt": range(1, 11),
    "test": range(11, 511),
    "validation": range(511, 601),
    "train": range(601, 975),
    "all": range(1, 975),
}
MBPP_STOP = ("[DONE]",)
BIGCODE_STOP = ("\nclass", "\nassert", '\n"""', "\nprint", "\nif", "\n<|/", "\n```")
MBPP_TIMEOUT_S = 6.0  # task 123's reference needs ~2.7 s of CPU; 3 s fails correct code under load
DEFAULT_K = (1, 10, 100)

_FULL_FIELDS = {"task_id": int, "text": str, "code": str, "test_list": list,
                "test_setup_code": str, "challenge_test_list": list}
_SANITIZED_FIELDS = {"task_id": int, "prompt": str, "code": str, "test_imports": list, "test_list": list}
_FULL_HINT = "pass --data-file PATH (mbpp.jsonl) or set EVALHARNESS_DATA_DIR to a directory with mbpp/mbpp.jsonl"
_SANITIZED_HINT = ("pass --data-file PATH (sanitized-mbpp.json) or set EVALHARNESS_DATA_DIR "
                   "to a directory with mbpp/sanitized-mbpp.json")


def austin_prompt(description: str, tests: list[str], code: str | None = None) -> str:
    """One block of the Austin et al. prompt; with `code` a complete shot, without it the target."""
    block = (f"You are an expert Python programmer, and here is your task: {description} "
             f"Your code should pass these tests:\n\n" + "\n".join(tests[:3]) + "\n[BEGIN]\n")
    return block if code is None else block + code + "\n[DONE]"


def few_shot_prompt(shots: list[tuple[str, list[str], str]], description: str, tests: list[str]) -> str:
    """Shots (description, tests, code) and the target, joined by blank lines."""
    blocks = [austin_prompt(d, t, c) for d, t, c in shots] + [austin_prompt(description, tests)]
    return "\n\n".join(blocks)


def bigcode_prompt(description: str, tests: list[str]) -> str:
    return f'"""\n{description}\n{tests[0]}\n"""\n'


@dataclass(frozen=True)
class MbppTask(Task):
    """`completion + "\\n" + test_setup_code + "\\n" + tests`; `test_fields` name the record's test lists."""

    test_fields: tuple[str, ...] = ("test_list",)
    literal_checks_supported = True

    def tests(self, problem: Problem) -> str:
        return "\n".join(t for name in self.test_fields for t in problem.data[name])

    def test_programs(self, problem: Problem, completion: str) -> dict[str, TestProgram]:
        return {"test": mbpp_program(problem, self.program_prefix(problem), completion,
                                     problem.data["test_setup_code"] + "\n" + self.tests(problem))}

    def literal_checks(self, problem: Problem) -> LiteralChecks:
        """test_setup_code and the asserts run in the parent; the solution is the one name they do not define."""
        return _mbpp_literal_checks(problem, problem.data["test_setup_code"], self.tests(problem),
                                    self.program_prefix(problem))

    def program_prefix(self, problem: Problem) -> str:
        """What the program puts before the completion."""
        return ""


@dataclass(frozen=True)
class MbppBigcodeTask(MbppTask):
    """The completion continues the docstring prompt, so the program starts with the prompt."""

    def program_prefix(self, problem: Problem) -> str:
        return problem.prompt


@dataclass(frozen=True)
class MbppSanitizedTask(Task):
    """`"\\n".join(test_imports) + "\\n" + completion + "\\n" + "\\n".join(test_list)`."""

    literal_checks_supported = True

    def test_programs(self, problem: Problem, completion: str) -> dict[str, TestProgram]:
        rec = problem.data
        return {"test": mbpp_program(problem, "\n".join(rec["test_imports"]) + "\n", completion,
                                     "\n".join(rec["test_list"]))}

    def literal_checks(self, problem: Problem) -> LiteralChecks:
        """The imports run on both sides (the solution may rely on them); the asserts only in the parent."""
        imports = "\n".join(problem.data["test_imports"])
        return _mbpp_literal_checks(problem, imports, "\n".join(problem.data["test_list"]), imports + "\n")


def mbpp_program(problem: Problem, prefix: str, completion: str, checks: str) -> TestProgram:
    """`prefix + completion + "\\n" + checks`, split: the checks take from the solution every
    name they use that is not a builtin, or that the reference solution itself defines
    (Mbpp/126's `sum`); the setup may use the solution's classes (Mbpp/367's `Node`)."""
    return TestProgram(text=prefix + completion + "\n" + checks, solution=prefix + completion, checks=checks,
                       names=solution_names(checks, problem.reference),
                       modules=imported_modules(prefix, checks, problem.reference))


def _mbpp_literal_checks(problem: Problem, setup: str, checks: str, prefix: str) -> LiteralChecks:
    labels = ("test setup", "tests")
    name = solution_name(setup, checks, task_id=problem.task_id, reference=problem.reference, labels=labels)
    calls = literal_calls(setup, checks, name, task_id=problem.task_id, labels=labels)
    return LiteralChecks(entry_point=name, calls=calls, setup=setup, checks=checks, target=name, prefix=prefix)


# ----------------------------------------------------------------- loaders

def load_mbpp(problems_file=None, data_file=None, *, split: str = "test") -> MbppTask:
    """`mbpp`: Austin et al. 3-shot on the test split (500 problems)."""
    records, source = _full_records(problems_file, data_file)
    shots = _shots(records, "text", source)
    problems = tuple(
        _problem(r, few_shot_prompt(shots, r["text"], r["test_list"])) for r in _split(records, split, source)
    )
    return MbppTask(name="mbpp", version=TASK_VERSION, problems=problems, stop=MBPP_STOP, timeout_s=MBPP_TIMEOUT_S,
                    default_k=DEFAULT_K, source=_source(source, split))


def load_mbpp_challenge(problems_file=None, data_file=None, *, split: str = "test") -> MbppTask:
    """`mbpp-challenge`: `mbpp` with `challenge_test_list` run after `test_list`."""
    task = load_mbpp(problems_file, data_file, split=split)
    return MbppTask(name="mbpp-challenge", version=TASK_VERSION, problems=task.problems, stop=MBPP_STOP,
                    timeout_s=MBPP_TIMEOUT_S, default_k=DEFAULT_K, source=task.source,
                    test_fields=("test_list", "challenge_test_list"))


def load_mbpp_bigcode(problems_file=None, data_file=None, *, split: str = "test") -> MbppBigcodeTask:
    """`mbpp-bigcode`: bigcode-evaluation-harness's zero-shot docstring prompt."""
    records, source = _full_records(problems_file, data_file)
    problems = tuple(_problem(r, bigcode_prompt(r["text"], r["test_list"])) for r in _split(records, split, source))
    return MbppBigcodeTask(name="mbpp-bigcode", version=TASK_VERSION, problems=problems, stop=BIGCODE_STOP,
                           timeout_s=MBPP_TIMEOUT_S, default_k=DEFAULT_K, source=_source(source, split))


def load_mbpp_sanitized(problems_file=None, data_file=None, *, split: str = "test") -> MbppSanitizedTask:
    """`mbpp-sanitized`: the hand-verified subset, 3-shot from its own records 2, 3, 4."""
    records, source = _records(one_file(problems_file, data_file), "mbpp/sanitized-mbpp.json", "sanitized",
                               _SANITIZED_HINT, _SANITIZED_FIELDS, "sanitized MBPP",
                               ("text", "is this the full MBPP file? use --task mbpp"))
    shots = _shots(records, "prompt", source)
    problems = tuple(
        _problem(r, few_shot_prompt(shots, r["prompt"], r["test_list"])) for r in _split(records, split, source)
    )
    return MbppSanitizedTask(name="mbpp-sanitized", version=TASK_VERSION, problems=problems, stop=MBPP_STOP,
                             timeout_s=MBPP_TIMEOUT_S, default_k=DEFAULT_K, source=_source(source, split))


def _full_records(problems_file, data_file) -> tuple[list[dict], str]:
    return _records(one_file(problems_file, data_file), "mbpp/mbpp.jsonl", "full", _FULL_HINT, _FULL_FIELDS,
                    "MBPP", ("prompt", "is this the sanitized file? use --task mbpp-sanitized"))


def _records(given, relpath: str, config: str, hint: str, fields, label: str,
             wrong_file: tuple[str, str]) -> tuple[list[dict], str]:
    """One MBPP config's records and their source: a local file if there is one, else the hub."""
    path = local_file(given, relpath)
    if path:
        records, source = read_records(path), str(path)
    else:
        records, source = load_from_hub(HUB_REPO, config, hint), f"hf:{HUB_REPO}/{config}"
    _check_schema(records, fields, source, label, wrong_file=wrong_file)
    return records, source


def _check_schema(records: list[dict], fields: dict[str, type], source: str, what: str,
                  wrong_file: tuple[str, str]) -> None:
    """Every record has the fields with the right types; `wrong_file` = (telltale field, hint)."""
    for i, rec in enumerate(records, 1):
        bad = [k for k, kind in fields.items() if not isinstance(rec.get(k), kind) or isinstance(rec.get(k), bool)]
        bad += [k for k, kind in fields.items()
                if kind is list and k not in bad and not all(isinstance(t, str) for t in rec[k])]
        if not bad and not rec["test_list"]:
            bad = ["test_list (empty)"]
        if bad:
            telltale, hint = wrong_file
            extra = f"; {hint}" if telltale in rec else ""
            raise TaskError(f"{source}: record {i} is not {what} format (missing or invalid: "
                            f"{', '.join(bad)}){extra}")


def _shots(records: list[dict], text_field: str, source: str) -> list[tuple[str, list[str], str]]:
    by_id = {r["task_id"]: r for r in records}
    missing = [i for i in SHOT_IDS if i not in by_id]
    if missing:
        raise TaskError(f"{source}: the few-shot examples (task_ids {', '.join(map(str, missing))}) are missing")
    return [(by_id[i][text_field], by_id[i]["test_list"], by_id[i]["code"]) for i in SHOT_IDS]


def _split(records: list[dict], split: str, source: str) -> list[dict]:
    if split not in SPLITS:
        raise TaskError(f"unknown MBPP split {split!r}; known: {', '.join(SPLITS)}")
    chosen = sorted((r for r in records if r["task_id"] in SPLITS[split]), key=lambda r: r["task_id"])
    ids = [r["task_id"] for r in chosen]
    if len(set(ids)) != len(ids):
        raise TaskError(f"{source}: duplicate task_ids")
    if not chosen:
        raise TaskError(f"{source}: no problems in the {split} split (task_ids {SPLITS[split].start}.."
                        f"{SPLITS[split].stop - 1})")
    return chosen


def _problem(rec: dict, prompt: str) -> Problem:
    return Problem(task_id=f"Mbpp/{rec['task_id']}", prompt=prompt, reference=rec["code"], data=rec)


def _source(source: str, split: str) -> str:
    return source if split == "test" else f"{source} (split={split})"
