"""The student edition of the course: `mechgrade release --out DIR [--exercise NN ...] [--model ID ...]`.

A folder ready to ``git init`` and push, made from git HEAD (never the working tree) like the
autograder bundle. It holds the chosen exercises' stubs, READMEs and public checks, their
notebooks, the grader, the public expected values of the chosen models, the practice model and
its SAE, a pyproject and a short student README. It leaves out what would hand students the
answers: solutions/, the hidden checks (``@pytest.mark.hidden``) with their held-out inputs
(grader/judging/held_out.py) and values (fixtures/<model>/NN.hidden.json), the package's own
tests, the benchmarks and the git history. Each check file says how many hidden checks it lost
(``HIDDEN_CHECKS``), so local reports say what only the autograder grades.

The same commit and options give byte-identical files: nothing here reads the clock or the
working tree, and every file is written in a fixed order from HEAD's bytes.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from grader.course.bundle import BundleError, _check_drift, _git, _head_commit, _require_fixtures
from grader.course.hidden_checks import CheckFileError, cut_hidden_checks
from grader.judging.fixtures import fixture_path
from grader.models import MODELS
from grader.project import PROJECT_ROOT

PRACTICE_MODEL = "toy-gpt2"  # always released: it ships in fixtures/models and needs no network
OPTIONAL_MODEL = "gpt2-small"  # released by default where HEAD has its fixtures
EXPORTED = ["pyproject.toml", ".gitignore", "grader", "exercises", "fixtures", "notebooks", "solutions"]
# Instructor-only modules: the held-out inputs and the drawing of new ones; the practice model's
# training and circuit verification (verify.py computes induction scores and ablations as the
# exercises ask students to).
LEFT_OUT_MODULES = {"grader/judging/held_out.py", "grader/course/hidden_inputs.py",
                    "grader/toy/build.py", "grader/toy/train.py", "grader/toy/verify.py"}
MANIFEST = ".mechgrade-release.json"  # also marks a folder a later release may replace


class ReleaseError(Exception):
    """The release cannot be made as asked; the message says what is wrong and what fixes it."""


def build_release(out: Path, exercises: list[str] | None = None, models: list[str] | None = None,
                  root: Path = PROJECT_ROOT, check_drift: bool = True) -> Path:
    """Write the student edition of `root`'s HEAD into `out` (new, empty, or an earlier release)."""
    out = Path(out)
    _check_target(out)
    commit = _head_commit_or_refuse(root)
    with tempfile.TemporaryDirectory(prefix="mechgrade-release-") as temporary:
        tree = Path(temporary)
        _export(root, tree)
        known = sorted(p.name for p in (tree / "exercises").iterdir() if p.is_dir() and p.name.isdigit())
        chosen = _chosen_exercises(exercises, known)
        released_models = _chosen_models(tree, models, chosen)
        if check_drift:
            for model in released_models:
                try:
                    _check_drift(tree, model)
                except BundleError as exc:
                    raise ReleaseError(" ".join(str(exc).split())) from None
        files = _student_files(tree, chosen, released_models, commit)
    _write(out, files)
    return out


# ---- choosing ----


def _head_commit_or_refuse(root: Path) -> str:
    try:
        return _head_commit(root)
    except BundleError as exc:
        raise ReleaseError(str(exc)) from None


def _export(root: Path, tree: Path) -> None:
    listed = _git(root, "ls-tree", "--name-only", "HEAD", "--", *EXPORTED)
    present = [p for p in EXPORTED if p in set(listed.stdout.decode().splitlines())]
    archive = _git(root, "archive", "--format=tar", "HEAD", "--", *present)
    if archive.returncode != 0:
        raise ReleaseError(f"`git archive HEAD` failed in {root}: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        for member in tar:
            if member.isfile():
                target = tree / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]


def _chosen_exercises(asked: list[str] | None, known: list[str]) -> list[str]:
    if not asked:
        return known
    chosen = sorted({e.zfill(2) for e in asked})
    if unknown := [e for e in chosen if e not in known]:
        raise ReleaseError(f"no exercise {', '.join(unknown)} at HEAD (known: {', '.join(known)}); "
                           f"nothing was written")
    return chosen


def _chosen_models(tree: Path, asked: list[str] | None, exercises: list[str]) -> list[str]:
    """toy-gpt2 always, and gpt2-small where HEAD has its fixtures for every chosen exercise; a
    model asked for by name must have them."""
    if unknown := [m for m in asked or [] if m not in MODELS]:
        raise ReleaseError(f"unknown model {', '.join(unknown)}: choose from {', '.join(sorted(MODELS))}")
    has_all = {m: all(fixture_path(m, e, tree / "fixtures").is_file() for e in exercises) for m in MODELS}
    models = sorted({PRACTICE_MODEL, *(asked or []), *([OPTIONAL_MODEL] if has_all[OPTIONAL_MODEL] else [])})
    for model in models:
        try:
            _require_fixtures(tree, model, exercises)
        except BundleError as exc:
            raise ReleaseError(" ".join(str(exc).split()) + " Nothing was written.") from None
    return models


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ReleaseError(f"{out} is a file: name a new folder, an empty one, or an earlier release")
    if out.is_dir() and any(p.name != ".git" for p in out.iterdir()) and not (out / MANIFEST).is_file():
        raise ReleaseError(f"{out} holds files and is not an earlier release (no {MANIFEST}): "
                           f"name a new or empty folder")


# ---- what students get ----


def _student_files(tree: Path, exercises: list[str], models: list[str], commit: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}

    def add(path: Path) -> None:
        files[path.relative_to(tree).as_posix()] = path.read_bytes()

    for path in sorted((tree / "grader").rglob("*")):
        if path.is_file() and path.relative_to(tree).as_posix() not in LEFT_OUT_MODULES:
            add(path)
    for path in sorted((tree / "fixtures" / "models").rglob("*")):
        if path.is_file():
            add(path)
    for model in models:
        for exercise in exercises:
            add(fixture_path(model, exercise, tree / "fixtures"))
    if (tree / "exercises" / "CONTRACT.md").is_file():
        add(tree / "exercises" / "CONTRACT.md")
    checks: dict[str, dict[str, object]] = {}
    for exercise in exercises:
        for path in sorted((tree / "exercises" / exercise).iterdir()):
            if not path.is_file():
                continue
            name = path.relative_to(tree).as_posix()
            if path.name.startswith(f"test_{exercise}_") and path.suffix == ".py":
                try:
                    cut = cut_hidden_checks(path.read_text())
                except CheckFileError as exc:
                    raise ReleaseError(f"{name}: {exc}") from None
                files[name] = cut.text.encode()
                checks[exercise] = {"public": cut.public, "hidden_checks": cut.hidden_checks,
                                    "hidden_points": cut.hidden_points}
            else:
                add(path)
        for notebook in sorted((tree / "notebooks").glob(f"{exercise}_*.ipynb")):
            add(notebook)
    pyproject = (tree / "pyproject.toml").read_text().replace('testpaths = ["tests"]', 'testpaths = ["exercises"]')
    files["pyproject.toml"] = pyproject.encode()
    if (tree / ".gitignore").is_file():
        add(tree / ".gitignore")
    files["README.md"] = student_readme(exercises, models).encode()
    manifest = {"commit": commit, "exercises": exercises, "models": models, "checks": checks}
    files[MANIFEST] = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    return dict(sorted(files.items()))


def student_readme(exercises: list[str], models: list[str]) -> str:
    listed = ", ".join(exercises)
    gpt2 = ("GPT-2 small when it can be downloaded, else the practice model" if OPTIONAL_MODEL in models
            else "the practice model, toy-gpt2 (this release has no expected values for GPT-2 small)")
    return f"""# Mechanistic interpretability exercises

Exercises {listed}: each folder `exercises/NN/` holds the exercise text (`README.md`), a stub module
to fill in, and its practice checks. Grading runs on {gpt2}.

## Set up

```bash
python3 -m venv .venv && . .venv/bin/activate
pip install torch==2.13.0 && pip install -e .
```

## Work and check

```bash
pytest exercises/03      # grade exercise 03: a score table, each failing check with a hint
mechgrade grade          # grade every exercise; the report is in reports/report.html
```

In Jupyter, open `notebooks/NN_<topic>.ipynb`; its last cell, `check("03")`, grades the functions
the notebook defines.

## Practice checks and hidden checks

The checks here are the public ones. The autograder also runs hidden checks on inputs you never
see, so an answer written for the examples fails there: your local score says "public checks" and
how many hidden checks (and points) only the autograder grades. Make your functions right in
general, not just for the examples.
"""


# ---- writing ----


def _write(out: Path, files: dict[str, bytes]) -> None:
    """Into a fresh folder beside `out`, then moved into place; an earlier release is replaced,
    its .git kept, so that a course can release week by week into one repository."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, data in files.items():
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            target.chmod(0o644)
        if out.is_dir():
            for child in out.iterdir():
                if child.name != ".git":
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            for child in staging.iterdir():
                os.replace(child, out / child.name)
            staging.rmdir()
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
