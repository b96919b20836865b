"""Option groups shared by the commands that load a task, run a sandbox or write a report."""
from __future__ import annotations

import argparse

from evalharness.sandboxes import TIER_NAMES
from evalharness.tasks import Task, load_task

from ..errors import UsageError
from ..scoring import SCORINGS, Scoring, scoring_class


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {value}")
    return value


def batch_size(text: str) -> int | None:
    """--batch-size: a positive number of decoding slots, or "auto" (None)."""
    return None if text == "auto" else positive_int(text)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {value}")
    return value


def k_list(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(x) for x in text.split(",") if x.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k takes comma-separated integers, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise argparse.ArgumentTypeError(f"--k values must be >= 1, got {text!r}")
    return ks


def add_task_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="task name (see `evalharness tasks`)")
    p.add_argument("--problems", metavar="FILE", help="HumanEval-format JSONL(.gz) problem file")
    p.add_argument("--data-file", metavar="FILE", help="local dataset file for MBPP / EvalPlus tasks")
    p.add_argument("--limit", type=positive_int, metavar="N", help="only the first N problems")


def add_sandbox_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=positive_int, help="sandbox worker processes (default: one per core)")
    p.add_argument("--timeout", type=positive_float, metavar="S",
                   help="CPU seconds per program (default: the task's)")
    p.add_argument("--sandbox", default="auto", choices=TIER_NAMES,
                   help="isolation tier (default: the strongest this machine allows)")


def add_integrity_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--integrity", default="standard", choices=tuple(SCORINGS),
                   help="strict: the checks run in this process and only the solution in the sandbox, fed "
                        "literal inputs; problems whose checks need more are not served (listed in the report)")


def add_report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--k", type=k_list, metavar="K,..", help="pass@k values (default: the task's, e.g. 1,10,100)")
    p.add_argument("--confidence", type=float, default=0.9, help="confidence level of intervals (default 0.9)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def load_task_from_args(args: argparse.Namespace) -> Task:
    """The task the flags name, whole: `limit_task` applies --limit."""
    # before loading: EvalPlus may first run its references for minutes, only to be refused strict mode
    scoring_class(getattr(args, "integrity", "standard")).check_task(args.task)
    if not 0 < getattr(args, "confidence", 0.9) < 1:
        raise UsageError("--confidence must be between 0 and 1")
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


def float_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"temperatures must be >= 0, got {text!r}")
    return values


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="demo",
                   help="Meta MTP checkpoint dir, HF model dir, or built-in: demo (default, a small trained "
                        "4-head model), tiny (random)")
    p.add_argument("--tokenizer", metavar="PATH", help="tokenizer.model or HF tokenizer dir, if not beside the model")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), help="default: bf16 on cuda, fp32 on cpu")


def add_decoding_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("decoding")
    g.add_argument("--n", type=positive_int, help="samples per problem (default 1; 200 with --protocol mtp-paper)")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    g.add_argument("--temperatures", type=float_list, metavar="T,..",
                   help="sweep several temperatures, n samples each; report the best per k, named as such")
    g.add_argument("--protocol", choices=("mtp-paper",),
                   help="mtp-paper: n=200 (or --n) at T=0.1 (pass@1) and T=0.8 (pass@10/100), top-p 0.95")
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--max-new-tokens", type=positive_int, default=512)
    g.add_argument("--batch-size", type=batch_size, default=None, metavar="N|auto",
                   help="decoding slots, refilled as samples finish (default auto: as many as free GPU memory "
                        "holds on CUDA, 32 on CPU)")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="run the decode step under torch.compile (CUDA graphs on CUDA); default: on CUDA only")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--speculative", type=int, default=0, metavar="K",
                   help="self-speculative decoding with K heads (0 = plain)")
