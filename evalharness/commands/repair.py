"""`evalharness repair RUN`: move the rows that stop `report`, `compare` and resume aside, keep the rest.

A row is moved when it is not JSON (a torn or garbled line), has the wrong shape, or repeats
the key of an earlier row (the first is kept). Moved rows are appended verbatim to
samples.jsonl.bad / results.jsonl.bad beside their file, so nothing is lost. Re-running the
command that made the run then regenerates or re-executes what was moved.
"""
from __future__ import annotations

import argparse

from ..runstore import RunDir


def add_parser(sub) -> None:
    p = sub.add_parser("repair", help="move a run's corrupt or repeated rows aside so it can be reported and resumed",
                       description=__doc__)
    p.add_argument("run_path", metavar="RUN", help="run directory (with manifest.json)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    run_dir = RunDir(args.run_path)
    run_dir.existing_manifest()  # a broken manifest is not ours to rewrite: say so before touching anything
    with run_dir:
        for repaired in run_dir.repair():
            name = repaired.path.name
            if not repaired.moved:
                print(f"{name}: {repaired.kept} rows, nothing to repair")
                continue
            print(f"{name}: kept {repaired.kept} rows, moved {len(repaired.moved)} to {repaired.aside.name}")
            for lineno, reason in repaired.moved:
                print(f"  line {lineno}: {reason}")
    return 0
