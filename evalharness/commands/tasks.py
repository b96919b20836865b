"""`evalharness tasks`: the registered tasks with version, size and a one-line description."""
from __future__ import annotations

import argparse

from evalharness.tasks import TASKS, TaskError, load_task


def add_parser(sub) -> None:
    p = sub.add_parser("tasks", help="list the available tasks", description=__doc__)
    p.add_argument("--fingerprint", action="store_true",
                   help="also compute each task's fingerprint (EvalPlus tasks run their references once)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    rows = [("TASK", "VERSION", "PROBLEMS", "FINGERPRINT" if args.fingerprint else None, "DESCRIPTION")]
    notes = []
    for name, (_, description, _) in TASKS.items():
        try:
            task = load_task(name)
            version, size = task.version, str(len(task.problems))
            fingerprint = task.fingerprint() if args.fingerprint else None
        except TaskError as e:
            version, size, fingerprint = "-", "-", "-" if args.fingerprint else None
            notes.append(f"{name}: not loadable here: {e}")
        rows.append((name, version, size, fingerprint, description))
    widths = [max(len(r[i] or "") for r in rows) for i in range(4)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row[:4], widths) if c is not None]
        print("  ".join(cells + [row[4]]))
    for note in notes:
        print(note)
    return 0
