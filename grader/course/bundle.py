"""A Gradescope autograder bundle: the project at git HEAD, without solutions/, plus the two
scripts Gradescope runs.

Gradescope unpacks the zip into /autograder/source, runs ``setup.sh`` once when the image is
built, then ``run_autograder`` for every submission, which must leave
/autograder/results/results.json. Ours grades /autograder/submission through
``mechgrade grade --isolate``, whose child process and incremental results.json survive a
submission that crashes or hangs, and whose unprivileged worker runs the student's code.

Grades must not be forgeable, so the bundle:

- holds what git HEAD holds, never the working tree: no uncommitted edit or untracked file;
- never ships solutions/: expected values come only from the committed fixtures/<model>/NN.json,
  and the build refuses when one is missing or differs from what the solutions compute now;
- installs the torch and transformer-lens versions those fixtures were made with.

It keeps the hidden checks (``@pytest.mark.hidden``) a student release leaves out. ``exercises``
makes the autograder of one assignment (those exercises only: the same names, points and public
checks as `mechgrade release` with the same list). ``hidden_seed`` draws the hidden checks' inputs
from their pools (grader.course.hidden_inputs), computes their expected values from the reference
solutions now, and ships both (``held_out.json``, ``fixtures/<model>/NN.hidden.json``) in the
bundle only; ``course.json`` records the seed's digest, never the seed.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import re
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from grader.course.hidden_checks import CheckFileError, cut_hidden_checks
from grader.judging.fixtures import (
    FixtureError,
    FixtureFile,
    fixture_path,
    refresh_command,
)
from grader.models import MODELS, get_spec, load_model
from grader.project import PROJECT_ROOT

REPO_ROOT = PROJECT_ROOT
INCLUDED = ["pyproject.toml", "README.md", "grader", "exercises", "fixtures"]
REQUIRED = ["pyproject.toml", "grader", "exercises"]
SOLUTIONS = "solutions"  # exported for the drift check only; never zipped
# Provenance key -> the pip package setup.sh pins to the version recorded there.
PINNED = {"torch": "torch", "transformer_lens": "transformer-lens"}
WORKER_USER = "mechgrade-worker"
HELD_OUT_FILE = "held_out.json"  # a seeded bundle's hidden inputs, beside grader/ (root-only once set up)
COURSE_FILE = "course.json"  # what the bundle grades: exercises, checks and points, the seed's digest
DRIFT_OUTPUT_LINES = 40

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, when it builds the autograder image.
# Built by `mechgrade bundle --model {model}` from commit {commit}.
set -euo pipefail
apt-get update -qq && apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
python3 -m venv /autograder/venv
. /autograder/venv/bin/activate
# A Hugging Face cache outside root's home, so the student worker can load GPT-2 small from it too.
export HF_HOME=/autograder/hf-home
mkdir -p "$HF_HOME"
pip install -q --upgrade pip
# The versions fixtures/{model}/ was made with (the CPU build of torch: small, and enough).
pip install -q torch=={torch} --index-url https://download.pytorch.org/whl/cpu
pip install -q transformer-lens=={transformer_lens}
pip install -q -e /autograder/source
{prefetch}
# `mechgrade grade --isolate` runs student code as this user, in a worker forked after the grader
# has imported everything: it never needs to read the grader's files, so only root may.
id -u {worker} >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin {worker}
chmod -R go-rwx /autograder/source
chmod -R a+rX,go-w "$HF_HOME"
"""

PREFETCH_GPT2 = (
    "# Download GPT-2 small now, so grading never waits on the network.\n"
    "python -c \"from huggingface_hub import snapshot_download; snapshot_download('gpt2')\""
)

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission. AUTOGRADER_ROOT lets the package's tests run it elsewhere.
set -u
root="${{AUTOGRADER_ROOT:-/autograder}}"
python="${{PYTHON:-$root/venv/bin/python}}"
mkdir -p "$root/results" && chmod 700 "$root/results"   # out of the student worker's reach
export HF_HOME="${{HF_HOME:-$root/hf-home}}" HF_HUB_OFFLINE=1   # GPT-2 small was fetched by setup.sh
cd "$root/source"
"$python" -m grader grade --isolate --model {model} --submission "$root/submission"{held_out} \\
    --gradescope-json "$root/results/results.json" --report-html "$root/results/report.html"
# Nothing the submission started may outlive grading (the grader kills what it can see; this is
# the last word, safe here since one submission is graded per container).
pkill -KILL -u {worker} 2>/dev/null || true
# The grade is in results.json, written even when the submission crashed or hung; a non-zero exit
# here would make Gradescope discard it and report an autograder failure instead.
exit 0
"""


class BundleError(Exception):
    """The bundle cannot be built as asked; the message says what is wrong and what fixes it."""


@dataclass(frozen=True)
class HeadFile:
    name: str  # relative to the project root, posix
    executable: bool
    mtime: float  # the commit's time, as git archive gives it


def build_bundle(out: Path, model: str = "gpt2-small", root: Path = REPO_ROOT, check_drift: bool = True,
                 exercises: list[str] | None = None, hidden_seed: str | None = None) -> Path:
    """Write the autograder zip for grading on `model` from `root`'s git HEAD; return its path.

    Raises BundleError when HEAD lacks fixtures for an exercise, when its fixtures disagree on the
    versions they were made with or (with `check_drift`, which loads the model) differ from the
    reference solutions or rest on fixed held-out inputs that do not suit the model, or when an
    exercise asked for is not at HEAD (before anything is written).
    """
    commit = _head_commit(root)
    with tempfile.TemporaryDirectory(prefix="mechgrade-bundle-") as temporary:
        tree = Path(temporary)
        files = _export_head(root, tree, with_solutions=check_drift or hidden_seed is not None)
        chosen = _chosen(exercises, _exercises(tree))
        files = [f for f in files if _in_assignment(f.name, chosen)]
        _require_fixtures(tree, model, chosen)
        versions = _pinned_versions(tree, model, chosen)
        course = {"commit": commit, "model": model, "exercises": chosen, "checks": _checks(tree, chosen)}
        if check_drift:  # both load the model: the fixtures agree with the solutions, the held-out inputs suit it
            _check_drift(tree, model, chosen)
            if hidden_seed is None:
                _require_fixed_inputs_suit(model, [e for e, c in course["checks"].items() if c["hidden_checks"]])
        extra: dict[str, str] = {}
        if hidden_seed is not None:
            extra = _seeded_hidden_values(tree, model, chosen, hidden_seed)
            course["hidden_seed_sha256"] = _seed_digest(hidden_seed)
        extra[COURSE_FILE] = json.dumps(course, indent=1, sort_keys=True) + "\n"
        held_out = f" --held-out {HELD_OUT_FILE}" if hidden_seed is not None else ""
        scripts = {
            "setup.sh": _setup_sh(model, commit, versions),
            "run_autograder": RUN_AUTOGRADER.format(model=model, worker=WORKER_USER, held_out=held_out),
        }
        kept = [f for f in files if not _is_solution(f.name) and f.name not in extra]
        _write_zip(out, tree, kept, scripts, extra)
    return out


# ---- one assignment ----


def _chosen(asked: list[str] | None, known: list[str]) -> list[str]:
    if not asked:
        return known
    chosen = sorted({e.zfill(2) for e in asked})
    if unknown := [e for e in chosen if e not in known]:
        raise BundleError(f"no exercise {', '.join(unknown)} at HEAD (known: {', '.join(known)}); nothing was written")
    return chosen


def _in_assignment(name: str, exercises: list[str]) -> bool:
    """Whether HEAD's file `name` belongs in the autograder of `exercises` (solutions/ stays for
    the drift check and is dropped later)."""
    parts = name.split("/")
    if parts[0] in ("exercises", SOLUTIONS) and len(parts) > 2 and parts[1].isdigit():
        return parts[1] in exercises
    if parts[0] == "fixtures" and len(parts) == 3 and parts[2][:2].isdigit():
        return parts[2][:2] in exercises
    return True


def _checks(tree: Path, exercises: list[str]) -> dict[str, dict[str, object]]:
    """Per exercise, the public checks (function -> points per case) and the hidden ones' count and
    points, counted as a release counts them."""
    found: dict[str, dict[str, object]] = {}
    for exercise in exercises:
        for path in sorted((tree / "exercises" / exercise).glob(f"test_{exercise}_*.py")):
            try:
                cut = cut_hidden_checks(path.read_text())
            except CheckFileError as exc:
                raise BundleError(f"exercises/{exercise}/{path.name}: {exc}") from None
            found[exercise] = {"public": cut.public, "hidden_checks": cut.hidden_checks,
                               "hidden_points": cut.hidden_points}
    return found


# ---- hidden inputs drawn with a seed ----


def _seed_digest(seed: str) -> str:
    from grader.judging.held_out import seed_digest  # late: held_out.py is instructor-only (absent from a release)

    return seed_digest(seed)


def _require_fixed_inputs_suit(model: str, exercises: list[str]) -> None:
    """Without a seed the hidden checks grade on the fixed held-out inputs, chosen on the practice
    model: on another model they may leave a set-valued check with an empty right answer, or one
    that an answer copied from the public case matches. Checked here, as `draw` checks what it draws."""
    from grader.course.hidden_inputs import unsuited  # late: instructor-only, like the held-out inputs
    from grader.judging.held_out import DEFAULT  # late: instructor-only

    if not exercises:
        return
    reasons = unsuited(DEFAULT, load_model(get_spec(model), "cpu"), exercises)
    if reasons:
        raise BundleError(f"the fixed held-out inputs do not suit {model} ({'; '.join(reasons)}); build with "
                          "--hidden-seed S, which draws inputs this model handles; nothing was written")


def _seeded_hidden_values(tree: Path, model: str, exercises: list[str], seed: str) -> dict[str, str]:
    """{bundle path: text}: the inputs drawn with `seed` (checked on the model), and the hidden
    checks' expected values on them, computed by the reference solutions through the checks."""
    from grader.course.hidden_inputs import draw  # late: instructor-only, like the held-out inputs

    try:
        inputs = draw(seed, load_model(get_spec(model), "cpu"))
    except ValueError as exc:
        raise BundleError(f"cannot draw held-out inputs for {model} with this seed: {exc}") from None
    (tree / HELD_OUT_FILE).write_text(inputs.to_json())
    made = tree / "seeded-fixtures"
    python_path = os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": python_path, "HF_HUB_OFFLINE": "1", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    refreshed = subprocess.run(
        [sys.executable, "-m", "pytest", *[f"exercises/{e}" for e in exercises], "-p", "grader.plugin", "-p", "check",
         "-p", "no:cacheprovider", "--rootdir", str(tree), "--solutions", "--fixtures-mode=refresh", "--model", model,
         "--held-out", HELD_OUT_FILE, "--fixtures-dir", str(made), "--report-html", "", "-q",
         "--check-timeout", "0"],  # the trusted solutions: on a busy machine a slow check is no failure of the seed
        check=False, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    written = {f"fixtures/{model}/{p.name}": p.read_text() for p in sorted((made / model).glob("*.hidden.json"))} \
        if (made / model).is_dir() else {}
    wanted = [e for e, c in _checks(tree, exercises).items() if c["hidden_checks"]]
    if refreshed.returncode != 0 or len(written) != len(wanted):
        tail = "\n".join(refreshed.stdout.rstrip().splitlines()[-DRIFT_OUTPUT_LINES:])
        raise BundleError(f"the reference solutions did not pass every check on the inputs drawn with this seed, "
                          f"so no expected values were made; try another seed:\n{tail}")
    shutil.rmtree(made)
    return {HELD_OUT_FILE: inputs.to_json(), **written}


# ---- git HEAD ----


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(root), *args], check=False, capture_output=True)


def _head_commit(root: Path) -> str:
    found = _git(root, "rev-parse", "--verify", "HEAD^{commit}")
    if found.returncode != 0:
        raise BundleError(
            f"the bundle is built from a git commit (HEAD), so that nothing uncommitted reaches it, and {root} "
            f"has none (not a git repository, or no commit yet): {found.stderr.decode().strip()}"
        )
    return found.stdout.decode().strip()


def _export_head(root: Path, tree: Path, with_solutions: bool) -> list[HeadFile]:
    """Write HEAD's copy of the bundle's paths (and solutions/, for the drift check) into `tree`."""
    wanted = INCLUDED + [SOLUTIONS] if with_solutions else INCLUDED
    listed = _git(root, "ls-tree", "--name-only", "HEAD", "--", *wanted)
    present = set(listed.stdout.decode().splitlines())
    needed = REQUIRED + [SOLUTIONS] if with_solutions else REQUIRED
    if missing := [p for p in needed if p not in present]:
        why = " (the drift check runs the reference solutions)" if missing == [SOLUTIONS] else ""
        raise BundleError(f"HEAD has no {', '.join(missing)}{why}: commit it, then build again")
    archive = _git(root, "archive", "--format=tar", "HEAD", "--", *[p for p in wanted if p in present])
    if archive.returncode != 0:
        raise BundleError(f"`git archive HEAD` failed in {root}: {archive.stderr.decode().strip()}")
    files = []
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        for member in tar:
            if member.isdir():
                continue
            if not member.isfile():  # a symlink could point outside the bundle
                raise BundleError(f"{member.name} at HEAD is not a regular file; the bundle holds regular files only")
            executable = bool(member.mode & stat.S_IXUSR)
            target = tree / member.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
            target.chmod(0o755 if executable else 0o644)
            files.append(HeadFile(member.name, executable, member.mtime))
    return files


def _is_solution(name: str) -> bool:
    return name.split("/", 1)[0] == SOLUTIONS


# ---- fixtures ----


def _exercises(tree: Path) -> list[str]:
    """The exercises: folders exercises/NN/ holding a test_NN_*.py."""
    folders = (tree / "exercises").iterdir()
    found = sorted(p.name for p in folders if p.name.isdigit() and any(p.glob(f"test_{p.name}_*.py")))
    if not found:
        raise BundleError("HEAD has no exercises (exercises/NN/test_NN_*.py): nothing to grade")
    return found


def _require_fixtures(tree: Path, model: str, exercises: list[str]) -> None:
    missing = [e for e in exercises if not fixture_path(model, e, tree / "fixtures").is_file()]
    if not missing:
        return
    names = ", ".join(f"fixtures/{model}/{e}.json" for e in missing)
    where = "" if MODELS[model].local else ", on a machine that reaches the Hugging Face hub"
    readme = f"fixtures/{model}/README.md"
    how = f"; {readme} says how" if (tree / readme).is_file() else ""
    raise BundleError(
        f"HEAD has no expected values for model {model}: {names} missing. The bundle ships no solutions/, "
        f"so it grades only against committed fixtures. An instructor makes them with "
        f"`{refresh_command(model)}`{where}, and commits them{how}."
    )


def _pinned_versions(tree: Path, model: str, exercises: list[str]) -> dict[str, str]:
    """The torch and transformer-lens versions every fixture file of `model` was made with."""
    seen: dict[str, dict[str, list[str]]] = {key: {} for key in PINNED}  # key -> version -> exercises
    for exercise in exercises:
        provenance = _provenance(tree, model, exercise)
        for key in PINNED:
            version = _public_version(provenance.get(key), f"fixtures/{model}/{exercise}.json", key, model)
            seen[key].setdefault(version, []).append(exercise)
    for key, versions in seen.items():
        if len(versions) > 1:
            made = "; ".join(f"{v} ({', '.join(e)})" for v, e in sorted(versions.items()))
            raise BundleError(
                f"fixtures/{model}/ at HEAD was made with several {PINNED[key]} versions ({made}), and setup.sh "
                f"installs one: remake them all with the same versions, `{refresh_command(model)}`, and commit them"
            )
    return {key: next(iter(versions)) for key, versions in seen.items()}


def _provenance(tree: Path, model: str, exercise: str) -> dict[str, object]:
    try:
        return FixtureFile.read(fixture_path(model, exercise, tree / "fixtures")).provenance
    except FixtureError as exc:
        raise BundleError(f"fixtures/{model}/{exercise}.json at HEAD: {exc} (`{refresh_command(model)}`)") from exc


def _public_version(recorded: object, name: str, key: str, model: str) -> str:
    """'2.13.0+cpu' -> '2.13.0': the local label names a build, and setup.sh picks the CPU build itself."""
    version = str(recorded).split("+", 1)[0]
    if recorded is None or not re.fullmatch(r"[0-9][0-9A-Za-z.!_-]*", version):
        raise BundleError(
            f"{name} at HEAD records no usable {key} version ({recorded!r}), so setup.sh cannot pin it: "
            f"remake it with `{refresh_command(model)}` and commit it"
        )
    return version


def _check_drift(tree: Path, model: str, exercises: list[str] | None = None) -> None:
    """`mechgrade fixtures check` on HEAD's copy: its own grader, solutions and fixtures."""
    python_path = os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": python_path, "HF_HUB_OFFLINE": "1"}
    checked = subprocess.run(
        [sys.executable, "-m", "grader", "fixtures", "check", "--model", model,
         *[arg for e in exercises or [] for arg in ("--exercise", e)]],
        check=False, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    if checked.returncode != 0:
        tail = "\n".join(checked.stdout.rstrip().splitlines()[-DRIFT_OUTPUT_LINES:])
        raise BundleError(
            f"the fixtures of model {model} at HEAD drift from the reference solutions "
            f"(`mechgrade fixtures check --model {model}` exited with status {checked.returncode}):\n"
            f"{tail}\n"
            f"Make them agree, commit, and build again:\n{refresh_command(model)}"
        )


# ---- the zip ----


def _setup_sh(model: str, commit: str, versions: dict[str, str]) -> str:
    prefetch = PREFETCH_GPT2 if model == "gpt2-small" else "# The practice model ships in fixtures/models."
    return SETUP_SH.format(model=model, commit=commit, prefetch=prefetch, worker=WORKER_USER, **versions)


def _write_zip(out: Path, tree: Path, files: list[HeadFile], scripts: dict[str, str],
               extra: dict[str, str] | None = None) -> None:
    """Write the zip beside `out`, then move it into place: a failed build leaves no half zip."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        commit_time = max(f.mtime for f in files)  # not now: the same commit gives the same zip
        for name, text in scripts.items():
            _add(bundle, name, text.encode(), executable=True, mtime=commit_time)
        for name, text in sorted((extra or {}).items()):  # made now: the manifest, a seed's inputs and values
            _add(bundle, name, text.encode(), executable=False, mtime=commit_time)
        for file in files:
            _add(bundle, file.name, (tree / file.name).read_bytes(), file.executable, file.mtime)
    os.replace(partial, out)


def _add(bundle: zipfile.ZipFile, name: str, data: bytes, executable: bool, mtime: float) -> None:
    info = zipfile.ZipInfo(name, date_time=time.localtime(max(mtime, 315532800))[:6])  # zip dates start in 1980
    info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16  # the mode once unpacked
    info.compress_type = zipfile.ZIP_DEFLATED
    bundle.writestr(info, data)
