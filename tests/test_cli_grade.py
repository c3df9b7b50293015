"""`mechgrade grade`: the same grading options as pytest, and a results.json even for a submission
that defeats the per-check time limit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Swallows the grader's timeout (a BaseException) and goes on forever: only the total limit helps.
UNSTOPPABLE = '''

def count_cached(cache):
    import time
    while True:
        try:
            time.sleep(0.2)
        except BaseException:
            pass
'''


def test_a_run_stopped_by_the_total_timeout_keeps_the_checks_already_graded(tmp_path: Path) -> None:
    submission = tmp_path / "submission"
    shutil.copytree(REPO / "solutions", submission)
    with (submission / "02" / "cache.py").open("a") as module:
        module.write(UNSTOPPABLE)  # replaces the reference count_cached
    results = tmp_path / "results.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTEST_ADDOPTS": f"--basetemp={tmp_path / 'basetemp'}"}
    completed = subprocess.run(
        [sys.executable, "-m", "grader", "grade", "--model", "toy-gpt2", "--exercise", "02",
         "--submission", str(submission), "--gradescope-json", str(results), "--report-html", "",
         "--check-timeout", "2", "--total-timeout", "40"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 124
    assert "grading was stopped after 40 s" in completed.stderr
    document = json.loads(results.read_text())
    assert document["output"].startswith("grading was stopped after 40 s; checks that had not finished score 0.")
    by_name = {t["name"]: t for t in document["tests"]}
    graded_first = [t for name, t in by_name.items() if "run_with_cache returns" in name]
    assert graded_first and all(t["score"] == t["max_score"] > 0 for t in graded_first)
    stuck = next(t for name, t in by_name.items() if "count_cached" in name)
    assert stuck["score"] == 0


# Options of the pytest plugin that `mechgrade grade` has no use for.
PYTEST_ONLY = {"--fixtures-mode": "what `mechgrade fixtures refresh|check` set",
               "--staging-note": "what grade-all's staging skipped, passed on by its job process"}


def _plugin_options() -> set[str]:
    """Every option the grading plugin adds to pytest."""
    from grader import plugin

    class Group:
        def __init__(self) -> None:
            self.names: set[str] = set()

        def addoption(self, *names: str, **_: object) -> None:
            self.names.update(names)

    group = Group()

    class Parser:
        def getgroup(self, *_: object) -> Group:
            return group

    plugin.pytest_addoption(Parser())  # type: ignore[arg-type]
    return group.names


def test_mechgrade_grade_accepts_every_grading_option_of_pytest() -> None:
    from grader.cli import _parser

    grade_parser = _parser()._subparsers._group_actions[0].choices["grade"]  # type: ignore[union-attr]
    cli = {name for action in grade_parser._actions for name in action.option_strings}
    missing = _plugin_options() - cli - set(PYTEST_ONLY) - {"--junitxml"}
    assert not missing, f"pytest takes these grading options, mechgrade grade does not: {sorted(missing)}"
    assert "--junitxml" in cli  # pytest's own, listed in the README's options


def test_mechgrade_grade_passes_the_options_on_with_absolute_paths(tmp_path: Path, monkeypatch) -> None:
    from grader.cli import _parser
    from grader.grading.command import pytest_command

    monkeypatch.chdir(tmp_path)
    (tmp_path / "my-model").mkdir()
    args = _parser().parse_args(["grade", "--model", "my-model", "--max-output", "50", "--junitxml", "j.xml",
                                 "--fixtures-dir", "fx", "--report-html", "r.html", "--check-timeout", "5"])
    command = pytest_command(args)

    def value(option: str) -> str:
        return command[command.index(option) + 1]

    assert value("--model") == str(tmp_path / "my-model")  # a folder, named from where mechgrade started
    assert value("--max-output") == "50"
    assert value("--junitxml") == str(tmp_path / "j.xml")
    assert value("--fixtures-dir") == str(tmp_path / "fx")
    assert value("--report-html") == str(tmp_path / "r.html")
    assert float(value("--check-timeout")) == 5
    plain = pytest_command(_parser().parse_args(["grade", "--model", "toy-gpt2"]))
    assert plain[plain.index("--model") + 1] == "toy-gpt2"
    assert "--report-html" not in plain  # the plugin's default: reports/ in the project root


def test_help_reads_as_plain_text(capsys) -> None:
    from grader.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    with pytest.raises(SystemExit):
        main(["grade", "--help"])
    shown = capsys.readouterr().out
    assert "`" not in shown  # no reST markup
    assert "--report-html PATH" in shown and "where to write the HTML report" in shown


def test_a_grading_run_loads_pytest_check_and_no_other_installed_plugin(tmp_path: Path) -> None:
    # An installed plugin could change a grade (pytest-randomly reseeds and reorders the checks).
    import importlib.metadata

    from grader.cli import _parser
    from grader.grading.command import GRADING_ENV, REPO_ROOT, pytest_command

    installed = {entry.name for entry in importlib.metadata.entry_points(group="pytest11")} - {"check"}
    (tmp_path / "list_plugins.py").write_text(
        "def pytest_configure(config):\n"
        "    names = [name for name, _ in config.pluginmanager.list_name_plugin()]\n"
        f"    open({str(tmp_path / 'loaded.txt')!r}, 'w').write('\\n'.join(names))\n")
    command = pytest_command(_parser().parse_args(["grade", "--exercise", "01"]))
    env = {**os.environ, **GRADING_ENV, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO_ROOT)])}
    subprocess.run([*command, "-p", "list_plugins", "--collect-only"], cwd=REPO_ROOT, env=env, capture_output=True)
    loaded = set((tmp_path / "loaded.txt").read_text().split())
    assert "check" in loaded and "grader.plugin" in loaded
    assert not installed & loaded, f"autoloaded: {sorted(installed & loaded)}"
