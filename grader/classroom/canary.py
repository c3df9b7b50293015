"""The canary of a class run: the reference solutions, graded first, must score full marks.

Where ``solutions/`` is present, ``grade-all`` grades it before any student, on a worker, as any
submission is graded. A grading environment that would cost a student points (a font the
worker's user cannot read, a model that is not the one the expected values were made with)
costs the reference solutions the same points: the run then stops before grading anyone, and
says which checks failed. This module reads the canary's results.json and gives that verdict.
"""

from __future__ import annotations

import json
from pathlib import Path

NAME = ".canary"  # its identity, and its own folder under the class's output (removed once read)
MAX_NAMED = 8  # failed checks named in the message; the rest are counted


def verdict(results: Path) -> str | None:
    """None when the reference solutions scored full marks; else one line: the score and the
    checks that failed, or why they were not graded at all."""
    try:
        document = json.loads(results.read_text(encoding="utf-8"))
        tests = document["tests"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"the reference solutions could not be graded (no readable results.json: {exc})"
    if not tests:
        said = str(document.get("output", "")).strip().splitlines()
        return f"the reference solutions could not be graded: {said[0] if said else 'no check ran'}"
    failed = [t for t in tests if float(t.get("score") or 0) < float(t.get("max_score") or 0)]
    if not failed:
        return None
    score = sum(float(t.get("score") or 0) for t in tests)
    possible = sum(float(t.get("max_score") or 0) for t in tests)
    named = ", ".join(f"{t.get('number')} {t.get('name')}" for t in failed[:MAX_NAMED])
    more = f" and {len(failed) - MAX_NAMED} more" if len(failed) > MAX_NAMED else ""
    return (f"the reference solutions scored {score:g}/{possible:g} in this grading environment, so it would "
            f"cost students points too; nobody was graded. Failed: {named}{more}. See why with "
            "`mechgrade grade --isolate --solutions`")
