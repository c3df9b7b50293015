"""What the grade-all tests share: the command as an instructor runs it, and the class's material."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOPICS = {"02": "cache", "03": "attention"}
FULL = {"02": 29.0, "03": 35.0}  # hidden checks included: the instructor's checkout grades them
TOTAL = int(FULL["02"] + FULL["03"])
# Not root: workers run as us, and grade-all refuses unless Landlock confines them; trusting the
# submissions (our own test material) lets these tests run on any kernel.
TRUST = [] if os.geteuid() == 0 else ["--trust-submissions"]


def mechgrade(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    trust = TRUST if args[0] == "grade-all" else []
    return subprocess.run([sys.executable, "-m", "grader", *args, *trust], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def solution(exercise: str) -> str:
    return (REPO / "solutions" / exercise / f"{TOPICS[exercise]}.py").read_text()


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path
