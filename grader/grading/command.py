"""The pytest run that grades: the command ``mechgrade grade`` starts in a child process, and each
``grade-all`` job process runs once per submission."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grader.models import MODELS
from grader.project import EXERCISES_DIR, PROJECT_ROOT, known_exercises

REPO_ROOT = PROJECT_ROOT
# Where a grading run writes its HTML report unless told otherwise, relative to the project.
DEFAULT_REPORT = Path("reports") / "report.html"

# A grading run loads no pytest plugin that happens to be installed (pytest-randomly would reseed
# and reorder the checks; anyio, typeguard and jaxtyping's cost 0.6 s of every start).
GRADING_ENV = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}


def pytest_command(args: argparse.Namespace) -> list[str]:
    """The pytest run `mechgrade grade` starts: the same grading options, paths made absolute
    (pytest runs from the project root)."""
    pytest_args = [
        sys.executable, "-m", "pytest", *targets(args.exercise),
        "-p", "grader.plugin", "-p", "check",  # pytest-check: the one plugin grading loads (see GRADING_ENV)
        "--rootdir", str(REPO_ROOT), "-p", "no:cacheprovider",
        "-p", "no:logging",  # its log capture goes unread, and cost 4 ms a test
        "-rN",  # no short test summary: the score table that follows says it all
        "--check-timeout", str(args.check_timeout), *model_args(args),
    ]
    if args.report_html is not None:  # else the plugin's default: reports/ in the project
        pytest_args += ["--report-html", str(Path(args.report_html).resolve()) if args.report_html else ""]
    for option, value in (("--junitxml", args.junitxml), ("--fixtures-dir", args.fixtures_dir),
                          ("--held-out", getattr(args, "held_out", None))):
        if value:
            pytest_args += [option, str(Path(value).resolve())]
    if args.max_output is not None:
        pytest_args += ["--max-output", str(args.max_output)]
    if args.submission:
        pytest_args += ["--submission", str(Path(args.submission).resolve())]
    if args.solutions:
        pytest_args.append("--solutions")
    if args.isolate:
        pytest_args += ["--isolate", "--worker-memory", str(args.worker_memory)]
    if args.gradescope_json:
        pytest_args += ["--gradescope-json", str(Path(args.gradescope_json).resolve())]
    return pytest_args


def targets(exercises: list[str] | None) -> list[str]:
    if not exercises:
        return [str(EXERCISES_DIR)]
    targets = []
    for exercise in exercises:
        folder = EXERCISES_DIR / exercise.zfill(2)
        if not folder.is_dir():
            known = known_exercises()
            raise SystemExit(f"mechgrade: no exercise {exercise!r}; known: {known}")
        targets.append(str(folder))
    return targets


def model_args(args: argparse.Namespace) -> list[str]:
    out = []
    if args.model:
        # A folder is named relative to where mechgrade was started; pytest runs from the project.
        folder = Path(args.model)
        out += ["--model", str(folder.resolve()) if args.model not in MODELS and folder.exists() else args.model]
    if args.device:
        out += ["--device", args.device]
    return out
