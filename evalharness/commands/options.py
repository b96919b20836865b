"""Option groups shared by the commands that load a task, run a sandbox or write a report."""
from __future__ import annotations

import argparse

from evalharness.sandboxes import TIER_NAMES
from evalharness.tasks import Task, load_task

from ..scoring import SCORINGS, Scoring, scoring_class

# Upper bounds of flags whose extreme values poison a run or exhaust the machine instead of failing
# (an infinite timeout made every sample a harness_error; a huge n or copy count fills memory).
MAX_TIMEOUT_S = 3600.0  # CPU seconds per program
MAX_TEMPERATURE = 10.0  # far past the point where sampling is uniform noise
# Below this a nonzero temperature is greedy in all but name, and far below it logits / T overflow
# float32 (at 1e-40 every sample was the unknown token to the budget, exit 0): use 0 for greedy.
MIN_TEMPERATURE = 1e-4
MAX_SAMPLES = 10_000  # per problem and temperature (--n, --reference COPIES)
MAX_WORKERS_PER_CORE = 4


def _short(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def int_in(low: int, high: int | None = None):
    """An argparse type: an integer in [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {_short(text)}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be >= {low}: {value}" if high is None
                                             else f"must be in {low}..{high}: {value}")
        return value
    return parse


def number_in(low: float, high: float, *, low_open: bool = False, high_open: bool = False):
    """An argparse type: a finite number in the interval from low to high (each end open or closed)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {_short(text)}") from None
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        if not (above and below):  # nan and inf fail here too
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"must be a number in {interval}: {_short(text)}")
        return value
    return parse


positive_int = int_in(1)
sample_count = int_in(1, MAX_SAMPLES)
timeout_s = number_in(0, MAX_TIMEOUT_S, low_open=True)
_temperature_range = number_in(0, MAX_TEMPERATURE)


def temperature(text: str) -> float:
    """An argparse type: 0 (greedy) or a sampling temperature in [MIN_TEMPERATURE, MAX_TEMPERATURE]."""
    value = _temperature_range(text)
    if 0 < value < MIN_TEMPERATURE:
        raise argparse.ArgumentTypeError(f"must be 0 (greedy) or in [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}]: "
                                         f"{_short(text)}")
    return value


probability = number_in(0, 1, low_open=True)  # top-p
confidence_level = number_in(0, 1, low_open=True, high_open=True)


def worker_count(text: str) -> int:
    import os

    return int_in(1, MAX_WORKERS_PER_CORE * (os.cpu_count() or 1))(text)


def batch_size(text: str) -> int | None:
    """--batch-size: a positive number of decoding slots, or "auto" (None)."""
    return None if text == "auto" else positive_int(text)


def k_list(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(x) for x in text.split(",") if x.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k takes comma-separated integers, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise argparse.ArgumentTypeError(f"--k values must be >= 1, got {text!r}")
    return ks


PROBLEMS_HELP = "HumanEval-format JSONL(.gz) problem file (default: the task's own data)"
DATA_FILE_HELP = ("local dataset file for MBPP / EvalPlus tasks (default: $EVALHARNESS_DATA_DIR, else downloaded "
                  "once)")


def add_task_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="task name (see `evalharness tasks`)")
    p.add_argument("--problems", metavar="FILE", help=PROBLEMS_HELP)
    p.add_argument("--data-file", metavar="FILE", help=DATA_FILE_HELP)
    p.add_argument("--limit", type=positive_int, metavar="N", help="only the first N problems (default: all)")


def add_sandbox_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=worker_count,
                   help=f"sandbox worker processes (default: one per core; at most {MAX_WORKERS_PER_CORE} per core)")
    p.add_argument("--timeout", type=timeout_s, metavar="S",
                   help=f"CPU seconds per program (default: the task's, e.g. 3 for HumanEval; "
                        f"at most {MAX_TIMEOUT_S:g})")
    p.add_argument("--sandbox", default="auto", choices=TIER_NAMES,
                   help="isolation tier (default: the strongest this machine allows)")


def add_integrity_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--integrity", default="standard", choices=tuple(SCORINGS),
                   help="strict: the checks run in this process and only the solution in the sandbox, fed "
                        "literal inputs; problems whose checks need more are not served (listed in the report)")


def add_report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--k", type=k_list, metavar="K,..", help="pass@k values (default: the task's, e.g. 1,10,100)")
    p.add_argument("--confidence", type=confidence_level, default=0.9,
                   help="confidence level of intervals, in (0, 1) (default 0.9)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def load_task_from_args(args: argparse.Namespace) -> Task:
    """The task the flags name, whole: `limit_task` applies --limit."""
    # before loading: EvalPlus may first run its references for minutes, only to be refused strict mode
    scoring_class(getattr(args, "integrity", "standard")).check_task(args.task)
    return load_task(args.task, problems_file=args.problems, data_file=args.data_file)


def scoring_from_args(args: argparse.Namespace) -> Scoring:
    """The run's scoring over the task the flags name, --limit applied (strict: the served problems)."""
    task = limit_task(load_task_from_args(args), args.limit)
    return scoring_class(getattr(args, "integrity", "standard")).for_run(task)


def limit_task(task: Task, limit: int | None) -> Task:
    """Only the first `limit` problems (None: all)."""
    if not limit:
        return task
    from dataclasses import replace

    return replace(task, problems=task.problems[:limit])


def temperature_list(text: str) -> tuple[float, ...]:
    values = tuple(temperature(x) for x in text.split(",") if x.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated temperatures, got {_short(text)}")
    repeated = next((t for i, t in enumerate(values) if t in values[:i]), None)
    if repeated is not None:  # two passes would share sample keys (task_id, index, temperature)
        raise argparse.ArgumentTypeError(f"temperature {repeated:g} appears twice in {_short(text)}")
    return values


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="demo",
                   help="Meta MTP checkpoint dir, HF model dir, or built-in: demo (default, a small trained "
                        "4-head model), tiny (random)")
    p.add_argument("--tokenizer", metavar="PATH",
                   help="tokenizer.model or HF tokenizer dir (default: the one beside the model)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where the model runs (default auto: cuda when there is one)")
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), help="default: bf16 on cuda, fp32 on cpu")


def add_decoding_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("decoding")
    g.add_argument("--n", type=sample_count,
                   help=f"samples per problem (default 1; 200 with --protocol mtp-paper; at most {MAX_SAMPLES})")
    g.add_argument("--temperature", type=temperature,  # None: not given (0); a protocol or sweep refuses it
                   help=f"sampling temperature, 0 = greedy, else at least {MIN_TEMPERATURE:g} (default 0; at most "
                        f"{MAX_TEMPERATURE:g})")
    g.add_argument("--temperatures", type=temperature_list, metavar="T,..",
                   help="sweep several temperatures, n samples each; report the best per k, named as such "
                        "(default: none, one pass at --temperature)")
    g.add_argument("--protocol", choices=("mtp-paper",),
                   help="mtp-paper: n=200 (or --n) at T=0.1 (pass@1) and T=0.8 (pass@10/100), top-p 0.95 "
                        "(default: none)")
    g.add_argument("--top-p", type=probability, help="nucleus sampling mass, in (0, 1] (default 1.0: off)")
    g.add_argument("--top-k", type=int_in(0), default=0, help="sample among the k likeliest tokens (default 0: off)")
    g.add_argument("--max-new-tokens", type=positive_int, default=512,
                   help="token budget per completion; must fit the model's context (default 512)")
    g.add_argument("--batch-size", type=batch_size, default=None, metavar="N|auto",
                   help="decoding slots, refilled as samples finish (default auto: as many as free GPU memory "
                        "holds on CUDA, 32 on CPU)")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="run the decode step under torch.compile, with CUDA graphs on CUDA (default: on CUDA only)")
    g.add_argument("--seed", type=int, default=0, help="run seed; each sample's seed derives from it (default 0)")
    g.add_argument("--speculative", type=int_in(0), default=0, metavar="K",
                   help="self-speculative decoding with K heads (default 0: plain decoding)")
