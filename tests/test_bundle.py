"""The Gradescope autograder bundle: built from git HEAD, without solutions/, refused when the
committed fixtures are missing or drift, pinned to the fixtures' versions, and its run_autograder
grades a submission, isolated, into results.json.

The bundle is built from a commit, so these tests build it from scratch repositories: `project`
commits the working tree's tracked files (the code under test, committed or not), and tests that
change something clone it first.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from grader.course.bundle import BundleError, build_bundle
from grader.cli import main

REPO = Path(__file__).resolve().parent.parent
MODEL = "toy-gpt2"
REFRESH = f"mechgrade fixtures refresh --model {MODEL}"


def git(repo: Path, *args: str) -> str:
    author = ["-c", "user.name=mechgrade tests", "-c", "user.email=tests@mechgrade.invalid"]
    return subprocess.run(["git", "-C", str(repo), *author, *args], check=True, capture_output=True, text=True).stdout


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository whose HEAD is this project's working tree (tracked files only)."""
    repo = tmp_path_factory.mktemp("project")
    for name in git(REPO, "ls-files", "-z").split("\0"):
        if name and (REPO / name).is_file():  # a tracked file deleted in the working tree is left out
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, repo / name)
    git(repo, "init", "-q")
    commit_all(repo, "the project as it stands")
    return repo


@pytest.fixture
def clone(project: Path, tmp_path: Path) -> Path:
    """A clone of `project` that a test may change and commit to."""
    subprocess.run(["git", "clone", "-q", str(project), str(tmp_path / "clone")], check=True)
    return tmp_path / "clone"


@pytest.fixture(scope="module")
def bundle(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundle as `mechgrade bundle` builds it: drift check included (about 10 s)."""
    return build_bundle(tmp_path_factory.mktemp("bundle") / "autograder.zip", model=MODEL, root=project)


def names(zip_path: Path) -> set[str]:
    return set(zipfile.ZipFile(zip_path).namelist())


def provenance(repo: Path, exercise: str) -> dict[str, str]:
    return json.loads((repo / "fixtures" / MODEL / f"{exercise}.json").read_text())["provenance"]


# ---- what the bundle holds ----


def test_the_bundle_holds_the_scripts_and_the_project(bundle: Path) -> None:
    for needed in ("setup.sh", "run_autograder", "pyproject.toml", "README.md", "grader/plugin.py",
                   "grader/reports/templates/report.html.j2", "exercises/03/test_03_attention.py",
                   "fixtures/toy-gpt2/03.json", "fixtures/models/toy-gpt2/model.safetensors"):
        assert needed in names(bundle)
    assert not [n for n in names(bundle) if "__pycache__" in n or ".pytest_cache" in n]


def test_the_bundle_never_ships_the_solutions(bundle: Path) -> None:
    assert not [n for n in names(bundle) if n.startswith("solutions/")]


def test_the_scripts_are_executable_once_unpacked(bundle: Path) -> None:
    archive = zipfile.ZipFile(bundle)
    for name in ("setup.sh", "run_autograder"):
        mode = archive.getinfo(name).external_attr >> 16
        assert mode & stat.S_IXUSR, name


def test_the_bundle_holds_what_head_holds_not_the_working_tree(clone: Path, tmp_path: Path) -> None:
    stub = "exercises/01/load_model.py"
    (clone / "grader" / "hook.sh").write_text("#!/bin/sh\n")
    (clone / "grader" / "hook.sh").chmod(0o755)
    commit_all(clone, "a tracked executable")
    committed = (clone / stub).read_bytes()
    (clone / stub).write_text("def load_model(*args, **kwargs):\n    return 'edited, never committed'\n")
    (clone / "exercises" / "01" / "untracked.py").write_text("print('never added')\n")
    (clone / "fixtures" / MODEL / "99.json").write_text("{}\n")

    archive = zipfile.ZipFile(build_bundle(tmp_path / "autograder.zip", model=MODEL, root=clone, check_drift=False))

    assert archive.read(stub) == committed
    assert "exercises/01/untracked.py" not in archive.namelist()
    assert f"fixtures/{MODEL}/99.json" not in archive.namelist()
    assert (archive.getinfo("grader/hook.sh").external_attr >> 16) & stat.S_IXUSR  # git's executable bit kept
    assert not (archive.getinfo(stub).external_attr >> 16) & stat.S_IXUSR


def test_a_folder_that_is_not_a_git_repository_is_refused(tmp_path: Path) -> None:
    shutil.copytree(REPO / "grader", tmp_path / "project" / "grader", ignore=shutil.ignore_patterns("__pycache__"))
    with pytest.raises(BundleError, match="built from a git commit"):
        build_bundle(tmp_path / "autograder.zip", model=MODEL, root=tmp_path / "project")
    assert not (tmp_path / "autograder.zip").exists()


# ---- refusals: expected values missing or drifting ----


def test_a_missing_fixture_file_is_refused_with_the_command_that_makes_it(clone: Path, tmp_path: Path) -> None:
    git(clone, "rm", "-q", f"fixtures/{MODEL}/03.json")
    git(clone, "commit", "-q", "-m", "lose a fixture file")

    with pytest.raises(BundleError) as refused:
        build_bundle(tmp_path / "autograder.zip", model=MODEL, root=clone)

    assert f"fixtures/{MODEL}/03.json" in str(refused.value)
    assert REFRESH in str(refused.value)
    assert not (tmp_path / "autograder.zip").exists()


def test_a_fixture_file_only_in_the_working_tree_does_not_count(clone: Path, tmp_path: Path) -> None:
    git(clone, "rm", "-q", "--cached", f"fixtures/{MODEL}/03.json")  # still on disk, gone from HEAD
    git(clone, "commit", "-q", "-m", "untrack a fixture file")
    with pytest.raises(BundleError, match=f"fixtures/{MODEL}/03.json"):
        build_bundle(tmp_path / "autograder.zip", model=MODEL, root=clone, check_drift=False)


def test_fixtures_that_drift_at_head_are_refused_even_when_the_working_tree_agrees(clone: Path, tmp_path: Path) -> None:
    path = clone / "fixtures" / MODEL / "02.json"
    good = path.read_text()
    document = json.loads(good)
    key = "residual_norms[2]"
    document["checks"][key]["value"]["tensor"][0] += 1000.0  # far outside any tolerance
    path.write_text(json.dumps(document, indent=1) + "\n")
    commit_all(clone, "a stored value drifts")
    path.write_text(good)  # uncommitted: the check must read HEAD's copy

    with pytest.raises(BundleError) as refused:
        build_bundle(tmp_path / "autograder.zip", model=MODEL, root=clone)

    message = str(refused.value)
    assert "drift" in message and REFRESH in message
    assert f"changed   {key}" in message  # the check's own report of what changed
    assert not (tmp_path / "autograder.zip").exists()


def test_gpt2_small_is_refused_here_for_want_of_fixtures(project: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError) as refused:
        build_bundle(tmp_path / "autograder.zip", model="gpt2-small", root=project)
    message = str(refused.value)
    assert "fixtures/gpt2-small/01.json" in message
    assert "mechgrade fixtures refresh --model gpt2-small" in message
    assert "fixtures/gpt2-small/README.md" in message


def test_the_command_line_refuses_with_exit_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "autograder.zip"
    assert main(["bundle", "--model", "gpt2-small", "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("mechgrade bundle: HEAD has no expected values for model gpt2-small")
    assert not out.exists()


# ---- setup.sh and run_autograder ----


def test_setup_pins_the_versions_the_fixtures_were_made_with(bundle: Path, project: Path) -> None:
    setup = zipfile.ZipFile(bundle).read("setup.sh").decode()
    made_with = provenance(project, "03")
    torch = made_with["torch"].split("+")[0]  # '2.13.0+cpu': the CPU index serves the +cpu build
    pins = [f"pip install -q torch=={torch} --index-url https://download.pytorch.org/whl/cpu",
            f"pip install -q transformer-lens=={made_with['transformer_lens']}",
            "pip install -q -e /autograder/source"]
    assert [setup.index(pin) for pin in pins] == sorted(setup.index(pin) for pin in pins)  # all there, in order


def test_setup_creates_the_worker_user_and_locks_the_grader_away(bundle: Path) -> None:
    setup = zipfile.ZipFile(bundle).read("setup.sh").decode()
    assert ("id -u mechgrade-worker >/dev/null 2>&1 || "
            "useradd --system --no-create-home --shell /usr/sbin/nologin mechgrade-worker") in setup
    assert "chmod -R go-rwx /autograder/source" in setup


def test_fixtures_made_with_different_versions_are_refused(clone: Path, tmp_path: Path) -> None:
    path = clone / "fixtures" / MODEL / "03.json"
    document = json.loads(path.read_text())
    document["provenance"]["transformer_lens"] = "4.2.0"
    path.write_text(json.dumps(document, indent=1) + "\n")
    commit_all(clone, "one file made with another transformer-lens")
    with pytest.raises(BundleError, match=r"several transformer-lens versions .*4\.2\.0 \(03\)") as refused:
        build_bundle(tmp_path / "autograder.zip", model=MODEL, root=clone, check_drift=False)
    assert REFRESH in str(refused.value)


def test_setup_prefetches_gpt2_only_when_grading_on_it(clone: Path, tmp_path: Path) -> None:
    # Stand-in GPT-2 fixtures (the toy's files), since the real ones cannot be made here.
    for source in sorted((clone / "fixtures" / MODEL).glob("*.json")):
        shutil.copy(source, clone / "fixtures" / "gpt2-small" / source.name)
    commit_all(clone, "stand-in gpt2-small fixtures")
    gpt2 = build_bundle(tmp_path / "a.zip", model="gpt2-small", root=clone, check_drift=False)
    toy = build_bundle(tmp_path / "b.zip", model=MODEL, root=clone, check_drift=False)
    assert "snapshot_download('gpt2')" in zipfile.ZipFile(gpt2).read("setup.sh").decode()
    assert "snapshot_download" not in zipfile.ZipFile(toy).read("setup.sh").decode()


def test_run_autograder_grades_isolated_into_a_private_results_folder(bundle: Path) -> None:
    script = zipfile.ZipFile(bundle).read("run_autograder").decode()
    assert f"-m grader grade --isolate --model {MODEL}" in script
    assert 'mkdir -p "$root/results" && chmod 700 "$root/results"' in script


def test_run_autograder_grades_a_submission_into_results_json(bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "autograder"
    zipfile.ZipFile(bundle).extractall(root / "source")
    shutil.copytree(REPO / "solutions", root / "submission")  # a submission that deserves full marks
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "PYTEST_ADDOPTS": f"--basetemp={tmp_path / 'basetemp'}"}
    completed = subprocess.run(["bash", str(root / "source" / "run_autograder")], check=False, env=env,
                               capture_output=True, text=True, timeout=600)
    output = completed.stdout[-3000:] + completed.stderr[-3000:]
    assert completed.returncode == 0, output
    assert (root / "results" / "results.json").exists(), output
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == sum(t["max_score"] for t in results["tests"]) > 0
    assert (root / "results" / "report.html").exists()
