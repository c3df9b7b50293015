"""Hostile and broken submissions, graded the way the autograder grades them.

Each row of CASES is one submission: the reference solutions with ONE function (or the module's
import-time code) replaced by something hostile: it forges results.json, patches the grader, steals
the reference solution or the expected values, exits or kills processes, hangs, floods stdout,
returns objects that lie about equality, or leaves the model broken. Each is graded in a subprocess
exactly as the autograder does (``python -m grader grade --isolate``: student code runs in a worker
process, as ``nobody`` when the grader is root), one exercise at a time.

The expected score of a row is what an honest grader gives: full marks minus the checks that the
hostile function makes fail, written out from the per-check points in CHECKS, never read from the
grader's own output. Every other check of the exercise must keep its full points: the worker is
repaired or replaced after a check, so one hostile check costs that check only.

These runs attack the machine they run on (they try to kill the grader's processes, to write into
fixtures/ and solutions/, to leave processes behind). Only the switch to an unprivileged worker
user makes that harmless, and it happens only when the grader runs as root: elsewhere the module
is skipped.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from python_source import parse as parse_python

REPO = Path(__file__).resolve().parent.parent
MODEL = "toy-gpt2"
TOPICS = {"01": "load_model", "02": "cache", "03": "attention", "04": "patching"}
TOTAL_TIMEOUT = 300  # --total-timeout of every run
CHECK_TIMEOUT = 20  # --check-timeout, except where a row says otherwise
PARALLEL_RUNS = 2  # two grading runs at a time, one torch thread each (OMP_NUM_THREADS=1)
SETTLE = 5.0  # seconds to wait after a run before looking again at what a stray process could do
# A row whose code the check limit (or the worker's memory limit) must stop: its run ends well before
# the total timeout. Measured (exercises 02 and/or 03, two runs at a time, 2 cores at load 6.5-7.4):
# 25-54 s for these rows. 120 s leaves 2.2x over the slowest, and still tells them from a run that
# only the total timeout (300 s) stopped.
BOUNDED_WALL = 120
IMPORT_TIME = "<import>"  # a rewrite key: code appended to the module, run when it is imported
# What a row tries to write, create or chmod, and checks afterwards: the expected values, the
# reference solutions, a check file, and new files beside them.
GUARDED_FILES = ("fixtures/toy-gpt2/02.json", "fixtures/toy-gpt2/03.json", "solutions/02/cache.py",
                 "solutions/03/attention.py", "exercises/02/test_02_cache.py", "fixtures/toy-gpt2/evil.json",
                 "solutions/02/evil.py", "conftest.py")

ONLY_AS_ROOT = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0,
    reason="hostile submissions are only safe to grade as root on Linux (the worker then runs as an unprivileged user)",
)


class Check(NamedTuple):
    title: str  # a phrase of the check's name in results.json, to catch a renumbering
    points: float


# The checks on toy-gpt2, by their results.json number (learnt from grading the solutions).
CHECKS: dict[str, Check] = {
    "1.1": Check("load_model boots the model", 4),
    "1.2": Check("load_model(name) with no device", 1),
    "1.3": Check("model_summary", 2),
    "2.1": Check("run_with_cache returns", 3),  # [The capital of France is]
    "2.2": Check("run_with_cache on a prompt the exercise never shows", 3),  # hidden
    "2.3": Check("count_cached", 1),
    "2.4": Check("top_prediction", 2),  # France
    "2.5": Check("top_prediction on a prompt the exercise never shows", 2),  # hidden
    "2.6": Check("top_k", 3),  # k=5
    "2.7": Check("top_k", 3),  # k=3
    "2.8": Check("top_k on a prompt the exercise never shows", 3),  # hidden
    "2.9": Check("residual_norms", 3),  # position -1
    "2.10": Check("residual_norms", 3),  # position 2
    "2.11": Check("residual_norms on a prompt the exercise never shows", 3),  # hidden
    "3.1": Check("attention_pattern", 3),  # [0]
    "3.2": Check("attention_pattern", 3),  # [1]
    "3.3": Check("attention_pattern on a prompt the exercise never shows", 3),  # hidden
    "3.4": Check("plot_attention", 4),
    "3.5": Check("token_index", 3),
    "3.6": Check("heads_attending_to", 4),  # France>0.3
    "3.7": Check("heads_attending_to", 4),  # France>0.01
    "3.8": Check("heads_attending_to on a country and a query position the exercise never shows", 4),  # hidden
    "3.9": Check("equals the threshold", 1),  # heads_attending_to, weight == threshold
    "3.10": Check("content_heads", 2),  # France>0.3
    "3.11": Check("content_heads", 2),  # France>0.03
    "3.12": Check("content_heads on a country and templates the exercise never shows", 2),  # hidden
    "4.1": Check("logit_diff", 2),
    "4.2": Check("logit_diff on a pair of prompts the exercise never shows", 2),  # hidden
    "4.3": Check("patch_hook", 4),
    "4.4": Check("patch_residual_stream", 6),  # France-Italy
    "4.5": Check("patch_residual_stream on a pair of prompts the exercise never shows", 6),  # hidden
}
FULL_MARKS = {"01": 7, "02": 29, "03": 35, "04": 20}
EX = FULL_MARKS  # short, for the table's totals: EX["03"] - 3 - 3 - 3

# The checks that call each function (the ones a hostile function can cost), hidden ones included.
RUN_WITH_CACHE = ("2.1", "2.2")
COUNT_CACHED = ("2.3",)
TOP_PREDICTION = ("2.4", "2.5")
TOP_K = ("2.6", "2.7", "2.8")
RESIDUAL_NORMS = ("2.9", "2.10", "2.11")
ATTENTION_PATTERN = ("3.1", "3.2", "3.3")
PLOT_ATTENTION = ("3.4",)
EXERCISE_02 = tuple(n for n in CHECKS if n.startswith("2."))


def zero(*checks: str) -> dict[str, float]:
    """These checks score 0."""
    return {number: 0.0 for number in checks}


def fn(source: str) -> str:
    return textwrap.dedent(source).strip() + "\n"


# ---- what a row of the table is ----


@dataclass
class Graded:
    """One grading run of one row, and what was found around it."""

    document: dict[str, Any]
    results_text: str  # results.json as the run left it
    results_later: str  # ... and SETTLE seconds later, where the row asks for it
    report: str  # report.html
    returncode: int
    wall: float
    log: str  # the exit status and the end of what the grade command printed, for messages
    grader_stdout: str  # all that the grade command printed
    leftovers: list[str]  # processes carrying the row's marker once the run had returned
    leftovers_later: list[str]
    marker: str
    out: Path  # the results folder
    guarded_before: dict[str, str]  # GUARDED_FILES' sha256 and mode before the run
    guarded_after: dict[str, str]

    def test(self, number: str) -> dict[str, Any]:
        found = [t for t in self.document["tests"] if t["number"] == number]
        assert len(found) == 1, f"no check {number} in results.json\n{self.log[-3000:]}"
        return found[0]


@dataclass(frozen=True)
class Case:
    id: str
    exercises: tuple[str, ...]  # graded; the first is the one attacked
    rewrites: dict[str, str]  # function name (or IMPORT_TIME) -> hostile source
    expected: float  # the honest total, written out from CHECKS
    scores: dict[str, float] = field(default_factory=dict)  # checks that lose points -> their score
    says: dict[str, tuple[str, ...]] = field(default_factory=dict)  # check -> phrases its output shows
    check_timeout: float = CHECK_TIMEOUT
    worker_memory: int | None = None
    flat: bool = False  # DIR/cache.py instead of DIR/02/cache.py
    settle: bool = False  # look again at results.json and processes SETTLE seconds after the run
    max_wall: float = TOTAL_TIMEOUT  # seconds the grade command may take
    extra: Callable[[Graded], None] | None = None  # further assertions

    @property
    def attacked(self) -> str:
        return self.exercises[0]


# ---- further assertions some rows make ----


def guarded_files_unchanged(graded: Graded) -> None:
    changed = [f for f in GUARDED_FILES if graded.guarded_before[f] != graded.guarded_after[f]]
    assert not changed, f"the worker changed, created or chmodded {changed}"


def output_capped(graded: Graded) -> None:
    flooded = graded.test("2.3")["output"]
    assert "flood flood" in flooded and len(flooded) < 20_000, len(flooded)
    assert len(graded.results_text) < 200_000


def html_is_escaped(graded: Graded) -> None:
    why = [line for line in graded.grader_stdout.splitlines() if "HTML report" in line]
    assert graded.report, f"no report.html was written: {why}"
    json.loads(graded.results_text, strict=True)  # valid JSON, control characters escaped
    assert "\x00" not in graded.results_text and "\\u0000" not in graded.results_text
    assert "alert(1)" in graded.test("2.3")["output"]  # shown, as text ...
    assert "<script>alert" not in graded.report  # ... and escaped in the HTML report
    assert "alert(1)" in graded.report


def grader_output_untouched(graded: Graded) -> None:
    """Student output reaches the grader only through the worker's capped output pipe: the
    worker holds no file of the grader's (its stdout, pytest's capture files) to write into."""
    injected = f"INJECTED-{graded.marker}"
    assert injected not in graded.grader_stdout, "the worker wrote into the grader's own stdout:\n" + "\n".join(
        line for line in graded.grader_stdout.splitlines() if injected in line)


# ---- the table ----

REFERENCE_PATTERN = "_original_attention_pattern(cache, layer, head)"

# For the rows that leave processes behind: a Python the worker's user may run (the venv's may
# live under /root), a program that rewrites the results after the grader is done, and a check
# that the processes really run (so a row cannot pass because its attack failed to start).
ESCAPE_HELPERS = fn('''
    REWRITE_LATER = (
        "import json, time\\n"
        "time.sleep(3)\\n"
        "for _ in range(40):\\n"
        "    for name in ('results.json', 'report.html'):\\n"
        "        try:\\n"
        "            open('__OUT__/' + name, 'w').write(json.dumps({'score': 999.0, 'tests': [], 'output': 'FOR' + 'GED-__MARKER__'}))\\n"
        "        except OSError:\\n"
        "            pass\\n"
        "    time.sleep(0.5)\\n"
        "# __MARKER__\\n"
    )


    def _python():
        import os, sys
        for candidate in ("/usr/bin/python3", "/usr/local/bin/python3", sys.executable, getattr(sys, "_base_executable", "")):
            if candidate and os.access(candidate, os.X_OK):
                return candidate
        raise RuntimeError("no Python this user may run")


    def _say_when_running(wanted):
        import os, time
        for _ in range(100):
            running = 0
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    running += b"__MARKER__" in open(f"/proc/{pid}/cmdline", "rb").read()
                except OSError:
                    pass
            if running >= wanted:
                break
            time.sleep(0.05)
        print(f"{running} escaped process{'es' if running != 1 else ''} running")
    ''')

CASES: list[Case] = [
    # ------------------------------------------------ forging results.json and report.html
    Case("forges-results-at-import", ("03",), {IMPORT_TIME: fn('''
        import json as _json, os as _os, sys as _sys
        _forged = {"score": 999.0, "output": "FOR" + "GED-__MARKER__", "tests": []}
        _targets = ["__OUT__/results.json", "__OUT__/report.html", "/autograder/results/results.json"]
        if "--gradescope-json" in _sys.argv:  # the worker is a fork of the grader: its argv names the file
            _targets.append(_sys.argv[_sys.argv.index("--gradescope-json") + 1])
        _targets += [v for v in _os.environ.values() if v.endswith("results.json")]
        for _target in _targets:
            try:
                with open(_target, "w") as _file:
                    _json.dump(_forged, _file)
                print("forged", _target)
            except OSError as _exc:
                print("could not forge", _target, type(_exc).__name__)
        ''')}, expected=EX["03"], says={"3.1": ("could not forge __OUT__/results.json PermissionError",)}),
    Case("atexit-and-signal-handlers-rewrite-results", ("02",), {IMPORT_TIME: fn('''
        import atexit as _atexit, json as _json, signal as _signal

        def _rewrite(*_):
            for name, text in (("results.json", _json.dumps({"score": 999.0, "tests": [], "output": "FOR" + "GED-__MARKER__"})),
                               ("report.html", "<h1>FOR" + "GED-__MARKER__</h1>")):
                try:
                    with open("__OUT__/" + name, "w") as file:
                        file.write(text)
                except OSError:
                    pass

        _atexit.register(_rewrite)
        for _signal_number in (_signal.SIGTERM, _signal.SIGHUP, _signal.SIGINT, _signal.SIGUSR1):
            _signal.signal(_signal_number, _rewrite)
        ''')}, expected=EX["02"], settle=True),
    Case("detached-process-rewrites-results-later", ("02",), {IMPORT_TIME: ESCAPE_HELPERS, "count_cached": fn('''
        def count_cached(cache):
            import subprocess
            subprocess.Popen([_python(), "-S", "-c", REWRITE_LATER], start_new_session=True, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _say_when_running(1)
            return _original_count_cached(cache)
        ''')}, expected=EX["02"], says={"2.3": ("1 escaped process running",)}, settle=True),
    Case("double-fork-setsid-rewrites-results-later", ("03",), {IMPORT_TIME: ESCAPE_HELPERS, "plot_attention": fn('''
        def plot_attention(pattern, str_tokens, title=None):
            import os
            python = _python()
            child = os.fork()
            if child == 0:  # a new session, then a grandchild that nobody waits for
                try:
                    os.setsid()
                    if os.fork() == 0:
                        os.execv(python, [python, "-S", "-c", REWRITE_LATER])
                finally:
                    os._exit(0)
            os.waitpid(child, 0)
            _say_when_running(1)
            return _original_plot_attention(pattern, str_tokens, title)
        ''')}, expected=EX["03"], says={"3.4": ("1 escaped process running",)}, settle=True),
    # ------------------------------------------------ patching the grader from the worker
    Case("patches-grader-scoring-and-reports", ("03",), {IMPORT_TIME: fn('''
        import grader.judging.compare, grader.judging.fixtures, grader.judging.scoring
        grader.judging.scoring.points_for = lambda *args, **kwargs: 999.0
        grader.judging.scoring.Grade.check = lambda self, *args, **kwargs: True
        grader.judging.scoring.Grade.compare = lambda self, *args, **kwargs: True
        grader.judging.compare.compare = lambda *args, **kwargs: grader.judging.compare.Comparison(True)
        grader.judging.fixtures.FixtureStore.get = lambda self, *args, **kwargs: None
        try:
            import grader.reports.gradescope, grader.plugin
            grader.reports.gradescope.write_gradescope = lambda run, path: path
            grader.plugin.points_for = grader.judging.scoring.points_for
        except ImportError:
            pass
        '''), "attention_pattern": fn(f'''
        def attention_pattern(cache, layer, head):
            import torch
            return torch.zeros_like({REFERENCE_PATTERN})
        ''')}, expected=EX["03"] - 3 - 3 - 3, scores=zero(*ATTENTION_PATTERN), says={"3.1": ("values differ",)}),
    Case("patches-pytest-check", ("02",), {IMPORT_TIME: fn('''
        import _pytest.outcomes, pytest, pytest_check
        from pytest_check import check_log
        check_log.log_failure = lambda *args, **kwargs: None
        check_log.any_failures = lambda *args, **kwargs: False
        pytest_check.check.fail = lambda *args, **kwargs: None
        pytest.fail = _pytest.outcomes.fail = lambda *args, **kwargs: None
        '''), "top_prediction": fn('''
        def top_prediction(model, logits):
            return " certainly not the answer"
        ''')}, expected=EX["02"] - 2 - 2, scores=zero(*TOP_PREDICTION), says={"2.4": ("certainly not the answer",)}),
    Case("patches-numeric-comparisons", ("02",), {IMPORT_TIME: fn('''
        import numpy as _np, torch as _torch, torch.testing as _testing
        _torch.allclose = lambda *args, **kwargs: True
        _torch.equal = lambda *args, **kwargs: True
        _torch.testing.assert_close = _testing.assert_close = lambda *args, **kwargs: None
        _np.allclose = lambda *args, **kwargs: True
        _np.array_equal = lambda *args, **kwargs: True
        _np.isclose = lambda a, b, *args, **kwargs: _np.ones(_np.broadcast(_np.asarray(a), _np.asarray(b)).shape, dtype=bool)
        '''), "residual_norms": fn('''
        def residual_norms(cache, position=-1):
            import torch
            return torch.zeros_like(_original_residual_norms(cache, position))
        ''')}, expected=EX["02"] - 3 - 3 - 3, scores=zero(*RESIDUAL_NORMS), says={"2.9": ("values differ",)}),
    # ------------------------------------------------ objects that lie about equality
    Case("always-equal-str", ("02",), {"top_prediction": fn('''
        class AlwaysEqual(str):
            def __eq__(self, other): return True
            def __ne__(self, other): return False
            def __hash__(self): return 0
            def strip(self, *args): return self

        def top_prediction(model, logits):
            return AlwaysEqual(" certainly not the answer")
        ''')}, expected=EX["02"] - 2 - 2, scores=zero(*TOP_PREDICTION), says={"2.5": ("certainly not the answer",)}, flat=True),
    Case("always-equal-int", ("02",), {"count_cached": fn('''
        class AlwaysEqual(int):
            def __eq__(self, other): return True
            def __ne__(self, other): return False
            def __hash__(self): return 0

        def count_cached(cache):
            return AlwaysEqual(-1)
        ''')}, expected=EX["02"] - 1, scores=zero(*COUNT_CACHED), says={"2.3": ("expected",)}),
    Case("lying-tensor-subclass", ("03",), {"attention_pattern": fn(f'''
        import torch as _torch

        class Liar(_torch.Tensor):
            def __eq__(self, other): return _torch.ones(self.shape, dtype=_torch.bool)
            def equal(self, other): return True
            def allclose(self, *args, **kwargs): return True
            def isclose(self, other, *args, **kwargs): return _torch.ones(self.shape, dtype=_torch.bool)
            def numpy(self, *args, **kwargs): return _torch.Tensor.numpy(_torch.ones(self.shape))
            def tolist(self): return [[1.0] * self.shape[-1]] * self.shape[0]

        def attention_pattern(cache, layer, head):
            return _torch.zeros_like({REFERENCE_PATTERN}).as_subclass(Liar)
        ''')}, expected=EX["03"] - 3 - 3 - 3, scores=zero(*ATTENTION_PATTERN)),
    Case("always-equal-dict-values", ("01",), {"model_summary": fn('''
        class AlwaysEqual(int):
            def __eq__(self, other): return True
            def __ne__(self, other): return False
            def __hash__(self): return 0

        class LyingDict(dict):
            def __eq__(self, other): return True
            def __getitem__(self, key): return AlwaysEqual(0)

        def model_summary(model):
            return LyingDict({key: AlwaysEqual(0) for key in _original_model_summary(model)})
        ''')},
        # the seven sizes are wrong, so "no other keys" is not earned: points follow work
        expected=EX["01"] - 2, scores={"1.3": 0.0}),
    # ------------------------------------------------ reading the reference solutions and expected values
    Case("reference-from-sys-modules", ("03",), {"attention_pattern": fn('''
        def attention_pattern(cache, layer, head):
            import sys
            mine = sys.modules.get(__name__)
            for name in ("mechgrade_reference_03_attention", *sorted(sys.modules)):
                module = sys.modules.get(name)
                if module is not None and module is not mine and callable(getattr(module, "attention_pattern", None)):
                    return module.attention_pattern(cache, layer, head)
            raise LookupError("no reference solution in sys.modules")
        ''')}, expected=EX["03"] - 3 - 3 - 3, scores=zero(*ATTENTION_PATTERN), says={"3.1": ("no reference solution",)}),
    Case("reference-from-the-grading-session-in-memory", ("03",), {"attention_pattern": fn('''
        def attention_pattern(cache, layer, head):
            import gc
            # the worker is a fork of the grader: its GradingSession object is somewhere in memory
            gc.unfreeze()  # the template froze what the worker inherits; thawed, the collector lists it
            sessions = [obj for obj in gc.get_objects() if type(obj).__name__ == "GradingSession"]
            if not sessions:
                raise LookupError("no grading session in this process")
            for session in sessions:
                try:
                    return session.store.get("03", f"pattern[L{layer}H{head}]", None, 1e-4, 1e-3).value
                except Exception as exc:
                    print("the fixture store refused:", type(exc).__name__)
                try:
                    return session.reference_module("03", "attention").attention_pattern(cache, layer, head)
                except Exception as exc:
                    print("the reference solution refused:", type(exc).__name__)
            raise LookupError("the grading session gave nothing away")
        ''')}, expected=EX["03"] - 3 - 3 - 3, scores=zero(*ATTENTION_PATTERN), says={"3.1": ("gave nothing away",)}),
    Case("reference-through-importlib", ("02",), {"top_prediction": fn('''
        def top_prediction(model, logits):
            import importlib.util
            for path in ("/work/main/solutions/02/cache.py", "__REPO__/solutions/02/cache.py"):
                try:
                    spec = importlib.util.spec_from_file_location("stolen_reference", path)
                    module = importlib.util.module_from_spec(spec)
                    spec.loader.exec_module(module)
                    return module.top_prediction(model, logits)
                except OSError as exc:
                    print("could not read", path, type(exc).__name__)
            return " no reference"
        ''')}, expected=EX["02"] - 2 - 2, scores=zero(*TOP_PREDICTION), says={"2.4": ("PermissionError",)}),
    Case("reference-exec-at-import-from-guessed-paths", ("03",), {IMPORT_TIME: fn('''
        from pathlib import Path as _Path
        _stolen = {}
        _guesses = ["/work/main/solutions/03/attention.py", "__REPO__/solutions/03/attention.py",
                    "solutions/03/attention.py", "../solutions/03/attention.py", "../../solutions/03/attention.py",
                    *(str(p / "solutions" / "03" / "attention.py") for p in _Path(__file__).resolve().parents),
                    *(str(p / "solutions" / "03" / "attention.py") for p in _Path.cwd().resolve().parents)]
        for _guess in _guesses:
            try:
                exec(open(_guess).read(), _stolen)
                break
            except OSError:
                pass
        '''), "attention_pattern": fn('''
        def attention_pattern(cache, layer, head):
            return _stolen["attention_pattern"](cache, layer, head)  # KeyError when nothing was read
        ''')}, expected=EX["03"] - 3 - 3 - 3, scores=zero(*ATTENTION_PATTERN), says={"3.1": ("KeyError",)}),
    Case("reference-from-git-history", ("03",), {"attention_pattern": fn('''
        def attention_pattern(cache, layer, head):
            import subprocess
            found = {}
            for root in ("/work/main", "__REPO__"):
                shown = subprocess.run(["git", "-c", "safe.directory=*", "-C", root, "show", "HEAD:solutions/03/attention.py"],
                                       capture_output=True, text=True)
                if shown.returncode == 0:
                    exec(shown.stdout, found)
                    return found["attention_pattern"](cache, layer, head)
            raise LookupError("the reference is not in git either")
        ''')}, expected=EX["03"] - 3 - 3 - 3, scores=zero(*ATTENTION_PATTERN)),
    Case("reads-the-fixture-file", ("03",), {"attention_pattern": fn('''
        def attention_pattern(cache, layer, head):
            import json, torch
            from pathlib import Path
            for guess in ("/work/main/fixtures/toy-gpt2/03.json", "__REPO__/fixtures/toy-gpt2/03.json",
                          "fixtures/toy-gpt2/03.json", "../fixtures/toy-gpt2/03.json"):
                try:
                    stored = json.loads(Path(guess).read_text())
                except OSError:
                    continue
                return torch.tensor(stored["checks"][f"pattern[L{layer}H{head}]"]["value"]["tensor"])
            raise FileNotFoundError("no fixture file could be read")
        ''')}, expected=EX["03"] - 3 - 3 - 3, scores=zero(*ATTENTION_PATTERN), says={"3.1": ("no fixture file could be read",)}),
    Case("writes-into-fixtures-solutions-and-checks", ("02",), {"count_cached": fn('''
        def count_cached(cache):
            import os
            if os.geteuid() == 0:
                raise RuntimeError("the worker runs as root: not attacking the repository")
            targets = __GUARDED__
            refused = 0
            for target in targets:
                for attempt in (lambda: open(target, "a").write("# __MARKER__\\n"), lambda: os.chmod(target, 0o777)):
                    try:
                        attempt()
                    except OSError:
                        refused += 1
            print(f"{refused} of {2 * len(targets)} writes refused")
            return _original_count_cached(cache)
        ''')}, expected=EX["02"], says={"2.3": (f"{2 * len(GUARDED_FILES)} of {2 * len(GUARDED_FILES)} writes refused",)},
        extra=guarded_files_unchanged),
    # ------------------------------------------------ ending the interpreter
    Case("sys-exit-in-a-function", ("02",), {"count_cached": fn('''
        def count_cached(cache):
            import sys
            sys.exit(3)
        ''')}, expected=EX["02"] - 1, scores=zero(*COUNT_CACHED), says={"2.3": ("SystemExit",)}),
    Case("os-exit-0-in-a-function", ("03",), {"plot_attention": fn('''
        def plot_attention(pattern, str_tokens, title=None):
            import os
            os._exit(0)
        ''')}, expected=EX["03"] - 4, scores=zero(*PLOT_ATTENTION), says={"3.4": ("exited with status 0",)}),
    Case("os-exit-1-at-import", ("02", "03"), {IMPORT_TIME: fn('''
        import os as _os
        _os._exit(1)
        ''')}, expected=0 + EX["03"], scores=zero(*EXERCISE_02), says={"2.1": ("exited with status 1",)}),
    Case("keyboard-interrupt-in-a-function", ("02",), {"top_prediction": fn('''
        def top_prediction(model, logits):
            raise KeyboardInterrupt
        ''')}, expected=EX["02"] - 2 - 2, scores=zero(*TOP_PREDICTION), says={"2.4": ("KeyboardInterrupt",)}, flat=True),
    Case("base-exception-at-import", ("02", "03"), {IMPORT_TIME: fn('''
        class Escape(BaseException):
            pass

        raise Escape("raised at import")
        ''')}, expected=0 + EX["03"], scores=zero(*EXERCISE_02), says={"2.1": ("could not be imported", "Escape")}),
    Case("base-exception-in-a-function", ("03",), {"plot_attention": fn('''
        class Escape(BaseException):
            pass

        def plot_attention(pattern, str_tokens, title=None):
            raise Escape("raised in plot_attention")
        ''')}, expected=EX["03"] - 4, scores=zero(*PLOT_ATTENTION), says={"3.4": ("Escape",)}),
    Case("pytest-exit-in-a-function", ("03",), {"attention_pattern": fn('''
        def attention_pattern(cache, layer, head):
            import pytest
            pytest.exit("bye")
        ''')}, expected=EX["03"] - 3 - 3 - 3, scores=zero(*ATTENTION_PATTERN), says={"3.1": ("bye",)}),
    Case("segfault-in-a-function", ("02",), {"count_cached": fn('''
        def count_cached(cache):
            import ctypes
            ctypes.string_at(0)
        ''')}, expected=EX["02"] - 1, scores=zero(*COUNT_CACHED), says={"2.3": ("SIGSEGV",)}),
    # ------------------------------------------------ hanging
    Case("infinite-loop-ignoring-every-signal", ("02",), {"count_cached": fn('''
        def count_cached(cache):
            import signal
            for number in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGXCPU):
                signal.signal(number, signal.SIG_IGN)
            while True:
                try:
                    while True:
                        pass
                except BaseException:
                    pass
        ''')}, expected=EX["02"] - 1, scores=zero(*COUNT_CACHED), says={"2.3": ("timed out",)}, check_timeout=5, max_wall=BOUNDED_WALL),
    Case("c-call-that-never-checks-signals", ("03",), {"plot_attention": fn('''
        def plot_attention(pattern, str_tokens, title=None):
            import ctypes, signal
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            ctypes.CDLL(None).sleep(1000)
        ''')}, expected=EX["03"] - 4, scores=zero(*PLOT_ATTENTION), says={"3.4": ("timed out",)}, check_timeout=5, max_wall=BOUNDED_WALL),
    Case("catastrophic-regex-backtracking", ("02",), {"count_cached": fn('''
        def count_cached(cache):
            import re
            return len(cache) if re.match(r"(a+)+$", "a" * 64 + "!") else len(cache)
        ''')}, expected=EX["02"] - 1, scores=zero(*COUNT_CACHED), says={"2.3": ("timed out",)}, check_timeout=5, max_wall=BOUNDED_WALL),
    Case("stops-itself-with-sigstop", ("03",), {"plot_attention": fn('''
        def plot_attention(pattern, str_tokens, title=None):
            import os, signal
            os.kill(os.getpid(), signal.SIGSTOP)
            return _original_plot_attention(pattern, str_tokens, title)
        ''')}, expected=EX["03"] - 4, scores=zero(*PLOT_ATTENTION), says={"3.4": ("timed out",)}, check_timeout=5, max_wall=BOUNDED_WALL),
    Case("import-that-never-ends", ("02", "03"), {IMPORT_TIME: fn('''
        import signal as _signal, time as _time
        _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)
        _time.sleep(1000)
        ''')}, expected=0 + EX["03"], scores=zero(*EXERCISE_02), says={"2.1": ("timed out",)}, check_timeout=5, max_wall=BOUNDED_WALL),
    Case("thread-left-running-at-import", ("02",), {IMPORT_TIME: fn('''
        import threading as _threading, time as _time
        _threading.Thread(target=lambda: _time.sleep(10**6), name="__MARKER__").start()
        ''')}, expected=EX["02"], max_wall=BOUNDED_WALL),
    Case("thread-left-running-by-a-function", ("03",), {"plot_attention": fn('''
        def plot_attention(pattern, str_tokens, title=None):
            import threading, time
            def forever():
                while True:
                    time.sleep(1)
            threading.Thread(target=forever).start()
            return _original_plot_attention(pattern, str_tokens, title)
        ''')}, expected=EX["03"], max_wall=BOUNDED_WALL, flat=True),
    # ------------------------------------------------ output
    Case("prints-50-mb", ("02",), {"count_cached": fn('''
        def count_cached(cache):
            import sys
            line = "flood " * 174_762 + "\\n"  # 1 MiB
            for _ in range(50):
                sys.stdout.write(line)
            print("flood " * 1000, file=sys.stderr)
            return _original_count_cached(cache)
        ''')}, expected=EX["02"], max_wall=BOUNDED_WALL, extra=output_capped),
    Case("html-nul-and-ansi-in-output-and-error", ("02",), {"count_cached": fn('''
        def count_cached(cache):
            print("\\x00NUL \\x1b[31mANSI\\x1b[0m <script>alert(1)</script> \\x1b]0;title\\x07")
            raise ValueError("<script>alert(1)</script>\\x00\\x1b[2J")
        ''')}, expected=EX["02"] - 1, scores=zero(*COUNT_CACHED), says={"2.3": ("ValueError",)}, extra=html_is_escaped),
    Case("lone-surrogate-in-output-and-error", ("02",), {"count_cached": fn('''
        def count_cached(cache):
            print("half a character: \\udcff")
            raise ValueError("<script>alert(1)</script> and half a character: \\udcff")
        ''')}, expected=EX["02"] - 1, scores=zero(*COUNT_CACHED), says={"2.3": ("ValueError",)}, extra=html_is_escaped),
    # ------------------------------------------------ answers of the wrong kind
    Case("nan-answer", ("03",), {"attention_pattern": fn(f'''
        def attention_pattern(cache, layer, head):
            return {REFERENCE_PATTERN} * float("nan")
        ''')}, expected=EX["03"] - 3 - 3 - 3, scores=zero(*ATTENTION_PATTERN), says={"3.1": ("values differ",)}),
    Case("inf-answer", ("02",), {"residual_norms": fn('''
        def residual_norms(cache, position=-1):
            return _original_residual_norms(cache, position) * float("inf")
        ''')}, expected=EX["02"] - 3 - 3 - 3, scores=zero(*RESIDUAL_NORMS), says={"2.9": ("values differ",)}),
    Case("int-tensor-answer", ("03",), {"attention_pattern": fn(f'''
        def attention_pattern(cache, layer, head):
            return {REFERENCE_PATTERN}.round().long()
        ''')}, expected=EX["03"] - 3 - 3 - 3, scores=zero(*ATTENTION_PATTERN)),
    Case("wrong-shape-answer", ("03",), {"attention_pattern": fn('''
        def attention_pattern(cache, layer, head):
            return cache["pattern", layer][0]  # every head
        ''')}, expected=EX["03"] - 3 - 3 - 3, scores=zero(*ATTENTION_PATTERN), says={"3.1": ("shape mismatch",)}),
    Case("dict-answer", ("02",), {"top_prediction": fn('''
        def top_prediction(model, logits):
            return {"token": _original_top_prediction(model, logits)}
        ''')}, expected=EX["02"] - 2 - 2, scores=zero(*TOP_PREDICTION), says={"2.4": ("expected a str, got dict",)}),
    Case("generator-answer", ("02",), {"top_k": fn('''
        def top_k(model, logits, k=5):
            return (pair for pair in _original_top_k(model, logits, k))
        ''')}, expected=EX["02"] - 3 - 3 - 3, scores=zero(*TOP_K), says={"2.6": ("generator",)}),
    Case("lambda-answer", ("02",), {"residual_norms": fn('''
        def residual_norms(cache, position=-1):
            norms = _original_residual_norms(cache, position)
            return lambda: norms
        ''')}, expected=EX["02"] - 3 - 3 - 3, scores=zero(*RESIDUAL_NORMS), says={"2.9": ("cannot be graded",)}),
    Case("module-answer", ("02",), {"count_cached": fn('''
        def count_cached(cache):
            import torch
            return torch
        ''')}, expected=EX["02"] - 1, scores=zero(*COUNT_CACHED), says={"2.3": ("module, which cannot be graded",)}),
    Case("axes-instead-of-figure", ("03",), {"plot_attention": fn('''
        def plot_attention(pattern, str_tokens, title=None):
            return _original_plot_attention(pattern, str_tokens, title).axes[0]
        ''')}, expected=EX["03"] - 4, scores=zero(*PLOT_ATTENTION), says={"3.4": ("expected a matplotlib Figure, got Axes",)}),
    Case("answer-nested-too-deep", ("02",), {"count_cached": fn('''
        def count_cached(cache):
            answer = len(cache)
            for _ in range(100_000):
                answer = [answer]
            return answer
        ''')}, expected=EX["02"] - 1, scores=zero(*COUNT_CACHED), says={"2.3": ("nested more than",)}),
    Case("answer-of-two-million-items", ("02",), {"top_k": fn('''
        def top_k(model, logits, k=5):
            return _original_top_k(model, logits, k) + [("", 0.0)] * 2_000_000
        ''')}, expected=EX["02"] - 3 - 3 - 3, scores=zero(*TOP_K), says={"2.6": ("more than 1000000 values",)}),
    # ------------------------------------------------ leaving the model or the process broken
    Case("hook-left-on-the-model", ("04",), {"patch_residual_stream": fn('''
        def patch_residual_stream(model, clean_tokens, corrupted_tokens, clean_cache, correct, incorrect):
            result = _original_patch_residual_stream(model, clean_tokens, corrupted_tokens, clean_cache, correct, incorrect)
            if model.to_string(correct) == " Paris":  # the France-Italy pair only: the next pair needs a sound model
                model.add_hook("blocks.0.hook_resid_pre", lambda activation, hook: activation * 0)
            return result
        ''')},
        # France-Italy: "no hook left on the model" fails, the other 2 of its 3 soft checks pass
        expected=EX["04"] - 6 + 6 * 2 / 3, scores={"4.4": 6 * 2 / 3},
        says={"4.4": ("hooks still attached", "blocks.0.hook_resid_pre")}),
    Case("zeroes-the-unembedding", ("02",), {"run_with_cache": fn('''
        def run_with_cache(model, prompt):
            logits, cache = _original_run_with_cache(model, prompt)
            if "France" in prompt:  # the first check only: the second needs the weights back
                model.W_U.data.zero_()
            return logits, cache
        ''')}, expected=EX["02"], says={"2.1": ("weights were changed",)}),
    Case("zeroes-every-weight", ("04",), {"patch_residual_stream": fn('''
        def patch_residual_stream(model, clean_tokens, corrupted_tokens, clean_cache, correct, incorrect):
            import torch
            result = _original_patch_residual_stream(model, clean_tokens, corrupted_tokens, clean_cache, correct, incorrect)
            if model.to_string(correct) == " Paris":
                with torch.no_grad():
                    for parameter in model.parameters():
                        parameter.zero_()
            return result
        ''')}, expected=EX["04"], says={"4.4": ("weights were changed",)}),
    Case("turns-off-prepend-bos", ("02",), {"run_with_cache": fn('''
        def run_with_cache(model, prompt):
            answer = _original_run_with_cache(model, prompt)
            model.cfg.default_prepend_bos = False  # the next to_tokens would drop the BOS token
            return answer
        ''')}, expected=EX["02"], says={"2.1": ("default_prepend_bos",)}),
    Case("changes-torch-global-state", ("04",), {"logit_diff": fn('''
        def logit_diff(logits, correct, incorrect):
            import torch
            answer = _original_logit_diff(logits, correct, incorrect)
            if logits.shape[0] == 2:  # the last call of its check
                torch.set_default_dtype(torch.float64)
                torch.set_grad_enabled(False)
                torch.manual_seed(1234)
            return answer
        ''')}, expected=EX["04"]),
    Case("changes-directory-and-recursion-limit", ("03",), {"attention_pattern": fn(f'''
        def attention_pattern(cache, layer, head):
            import os, sys
            answer = {REFERENCE_PATTERN}
            os.chdir("/")
            depth, frame = 0, sys._getframe()
            while frame is not None:
                depth, frame = depth + 1, frame.f_back
            sys.setrecursionlimit(depth + 10)  # about as low as it goes from here
            return answer
        ''')}, expected=EX["03"]),
    # ------------------------------------------------ resources
    Case("memory-bomb-bytearray", ("02",), {"count_cached": fn('''
        def count_cached(cache):
            hoard = bytearray(64 * 2**30)
            return len(cache) + len(hoard)
        ''')}, expected=EX["02"] - 1, scores=zero(*COUNT_CACHED), says={"2.3": ("MemoryError",)}, worker_memory=2048),
    Case("memory-bomb-torch-empty", ("03",), {"attention_pattern": fn(f'''
        def attention_pattern(cache, layer, head):
            import torch
            hoard = torch.empty(2**36)
            return {REFERENCE_PATTERN} + hoard[0] * 0
        ''')}, expected=EX["03"] - 3 - 3 - 3, scores=zero(*ATTENTION_PATTERN), worker_memory=2048),
    Case("memory-bomb-that-grows", ("02",), {"count_cached": fn('''
        def count_cached(cache):
            hoard = []
            while True:
                hoard.append(bytearray(64 * 2**20))  # zero-filled: really used, not just reserved
        ''')}, expected=EX["02"] - 1, scores=zero(*COUNT_CACHED), says={"2.3": ("MemoryError",)}, worker_memory=2048, max_wall=BOUNDED_WALL),
    Case("fifty-sleeping-subprocesses", ("02",), {IMPORT_TIME: ESCAPE_HELPERS, "count_cached": fn('''
        def count_cached(cache):
            import subprocess
            for _ in range(50):
                subprocess.Popen(["bash", "-c", "exec -a __MARKER__ sleep 1000"])
            _say_when_running(50)
            return _original_count_cached(cache)
        ''')}, expected=EX["02"], says={"2.3": ("50 escaped processes running",)}, max_wall=BOUNDED_WALL),
    Case("forks-and-the-parent-exits", ("02",), {"count_cached": fn('''
        def count_cached(cache):
            import ctypes, os
            if os.fork() != 0:
                os._exit(0)  # the worker the grader started is gone; its child answers from here on
            ctypes.CDLL(None).prctl(15, b"__MARKER__", 0, 0, 0)  # PR_SET_NAME, to be found afterwards
            return _original_count_cached(cache)
        ''')}, expected=EX["02"], settle=True),
    # ------------------------------------------------ attacking the grader's processes
    Case("kills-its-ancestors-and-init", ("02",), {"count_cached": fn('''
        def count_cached(cache):
            import os, signal
            if os.geteuid() == 0:
                raise RuntimeError("the worker runs as root: not killing anything")
            targets, pid = [], os.getppid()
            while pid > 1 and len(targets) < 3:  # the template, the grading pytest, `mechgrade grade`
                targets.append(pid)
                pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
            refused = 0
            for target in [*targets, 1]:
                try:
                    os.kill(target, signal.SIGKILL)
                except PermissionError:
                    refused += 1
            print(f"{refused} of {len(targets) + 1} kills refused")
            return _original_count_cached(cache)
        ''')}, expected=EX["02"], says={"2.3": ("4 of 4 kills refused",)}),
    Case("kills-its-own-process-group", ("03",), {"plot_attention": fn('''
        def plot_attention(pattern, str_tokens, title=None):
            import os
            os.killpg(0, 9)
        ''')}, expected=EX["03"] - 4, scores=zero(*PLOT_ATTENTION), says={"3.4": ("SIGKILL",)}),
    Case("closes-its-sockets", ("02",), {"count_cached": fn('''
        def count_cached(cache):
            import os, stat
            answer = _original_count_cached(cache)
            for fd in range(3, 1024):
                try:
                    if stat.S_ISSOCK(os.fstat(fd).st_mode):
                        os.close(fd)
                except OSError:
                    pass
            return answer
        ''')}, expected=EX["02"] - 1, scores=zero(*COUNT_CACHED), says={"2.3": ("ended the worker process",)}),
    Case("writes-into-every-inherited-file", ("03",), {"plot_attention": fn('''
        def plot_attention(pattern, str_tokens, title=None):
            import os, stat
            for fd in range(3, 1024):
                try:
                    if not stat.S_ISSOCK(os.fstat(fd).st_mode):  # the channel to the grader is the answer itself
                        os.write(fd, b"INJECTED-__MARKER__: 26 / 26 points\\n")
                except OSError:
                    pass
            return _original_plot_attention(pattern, str_tokens, title)
        ''')}, expected=EX["03"], extra=grader_output_untouched),
]


def test_the_table_is_consistent() -> None:
    """Each row's total is full marks less what its checks lose, and the table is big enough."""
    assert len(CASES) >= 32
    assert len({case.id for case in CASES}) == len(CASES)
    for case in CASES:
        full = sum(FULL_MARKS[exercise] for exercise in case.exercises)
        lost = sum(CHECKS[number].points - score for number, score in case.scores.items())
        assert case.expected == pytest.approx(full - lost, abs=1e-9), case.id
        assert all(number.split(".")[0].zfill(2) in case.exercises for number in [*case.scores, *case.says]), case.id
    assert {exercise: sum(c.points for n, c in CHECKS.items() if n.startswith(f"{int(exercise)}."))
            for exercise in FULL_MARKS} == FULL_MARKS


# ---- building a submission and grading it ----


def rename_function(source: str, name: str, new_name: str) -> str:
    """`source` with the top-level function `name` renamed (so a hostile version can call it)."""
    for node in parse_python(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            lines = source.splitlines(keepends=True)
            lines[node.lineno - 1] = lines[node.lineno - 1].replace(f"def {name}(", f"def {new_name}(", 1)
            return "".join(lines)
    raise LookupError(f"no function {name} in the source")


def hostile_module(exercise: str, rewrites: Mapping[str, str], placeholders: Mapping[str, str]) -> str:
    """The reference module with each rewritten function renamed to _original_<name>, and the
    hostile code appended: the new definitions replace the old ones, import-time code runs last."""
    source = (REPO / "solutions" / exercise / f"{TOPICS[exercise]}.py").read_text()
    for name in rewrites:
        if name != IMPORT_TIME:
            source = rename_function(source, name, f"_original_{name}")
    source += "\n\n# ---- hostile code ----\n\n" + "\n\n".join(rewrites.values())
    for placeholder, value in placeholders.items():
        source = source.replace(placeholder, value)
    parse_python(source)  # the rewrite itself must be valid Python
    return source


def build_submission(case: Case, folder: Path, placeholders: Mapping[str, str]) -> Path:
    for exercise in case.exercises:
        topic = TOPICS[exercise]
        target = folder / f"{topic}.py" if case.flat else folder / exercise / f"{topic}.py"
        target.parent.mkdir(parents=True, exist_ok=True)
        if exercise == case.attacked:
            target.write_text(hostile_module(exercise, case.rewrites, placeholders))
        else:
            shutil.copyfile(REPO / "solutions" / exercise / f"{topic}.py", target)
    return folder


def processes_with(marker: str) -> list[str]:
    """Live processes whose command line or name carries `marker` (zombies excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (entry / "cmdline").read_bytes()
            name = (entry / "comm").read_text().strip()
        except (OSError, IndexError):
            continue
        if state != "Z" and (marker.encode() in cmdline or name == marker[:15]):
            shown = cmdline.replace(b"\0", b" ")[:200].decode(errors="replace")
            found.append(f"{entry.name} ({name}): {shown}")
    return found


def snapshot_guarded() -> dict[str, str]:
    """sha256 and mode of each of GUARDED_FILES ("absent" where there is none)."""
    found = {}
    for name in GUARDED_FILES:
        path = REPO / name
        found[name] = f"{hashlib.sha256(path.read_bytes()).hexdigest()} {oct(path.stat().st_mode)}" if path.exists() else "absent"
    return found


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.is_file() else ""


def grade(case: Case, submission_root: Path, out_root: Path) -> Graded:
    """Grade `case` the way the autograder does, with a results folder the worker could reach (its
    parents traversable, itself writable by anyone) unless the grader locks it away."""
    case_root = out_root / case.id
    out = case_root / "out"
    out.mkdir(parents=True)
    os.chmod(case_root, 0o755)
    os.chmod(out, 0o777)
    marker = f"mgadv{uuid.uuid4().hex[:8]}"  # 13 characters: fits a process name (15)
    placeholders = {"__MARKER__": marker, "__OUT__": str(out), "__REPO__": str(REPO),
                    "__GUARDED__": repr([str(REPO / name) for name in GUARDED_FILES])}
    submission = build_submission(case, submission_root / case.id, placeholders)
    command = [sys.executable, "-m", "grader", "grade", "--isolate", "--model", MODEL, "--submission", str(submission),
               *(arg for exercise in case.exercises for arg in ("--exercise", exercise)),
               "--gradescope-json", str(out / "results.json"), "--report-html", str(out / "report.html"),
               "--check-timeout", f"{case.check_timeout:g}", "--total-timeout", str(TOTAL_TIMEOUT)]
    if case.worker_memory:
        command += ["--worker-memory", str(case.worker_memory)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("MECHGRADE_MODEL", None)
    guarded_before = snapshot_guarded()
    log_path = case_root / "grade.log"
    started = time.monotonic()
    # Output to a file, not a pipe: a process that escaped would hold a pipe open, and run() would wait for it.
    with open(log_path, "w") as log:
        completed = subprocess.run(command, check=False, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   timeout=TOTAL_TIMEOUT + 60)
    wall = time.monotonic() - started
    leftovers = processes_with(marker)
    results_text = _read(out / "results.json")
    report = _read(out / "report.html")
    if case.settle:  # what an escaped process would do after the grader finished
        time.sleep(SETTLE)
    grader_stdout = _read(log_path)
    log_text = f"exit status {completed.returncode} after {wall:.1f} s\n{grader_stdout[-8000:]}"
    assert results_text, f"the run wrote no results.json\n{log_text}"
    return Graded(
        document=json.loads(results_text),
        results_text=results_text,
        results_later=_read(out / "results.json") + _read(out / "report.html") if case.settle else results_text + report,
        report=report,
        returncode=completed.returncode,
        wall=wall,
        log=log_text,
        grader_stdout=grader_stdout,
        leftovers=leftovers,
        leftovers_later=processes_with(marker) if case.settle else leftovers,
        marker=marker,
        out=out,
        guarded_before=guarded_before,
        guarded_after=snapshot_guarded(),
    )


@pytest.fixture(scope="module")
def graded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[Case], Graded]]:
    """graded(case) -> its Graded run. The selected rows are graded two at a time, in table order."""
    selected = [item.callspec.params["case"] for item in request.session.items
                if item.path == request.path and hasattr(item, "callspec") and "case" in item.callspec.params]
    submissions = tmp_path_factory.mktemp("submissions")
    # Results folders outside pytest's private temp tree (0700), so only the grader keeps workers out.
    outputs = Path(tempfile.mkdtemp(prefix="mechgrade-adversarial-"))
    os.chmod(outputs, 0o755)
    try:
        with ThreadPoolExecutor(max_workers=PARALLEL_RUNS) as pool:
            futures = {case.id: pool.submit(grade, case, submissions, outputs) for case in selected}

            def get(case: Case) -> Graded:
                if case.id not in futures:
                    futures[case.id] = pool.submit(grade, case, submissions, outputs)
                return futures[case.id].result()

            yield get
            for future in futures.values():
                future.cancel()
    finally:
        shutil.rmtree(outputs, ignore_errors=True)


# ---- the test ----


@ONLY_AS_ROOT
@pytest.mark.parametrize("case", [pytest.param(case, id=case.id) for case in CASES])
def test_hostile_submission_gets_its_honest_score(case: Case, graded: Callable[[Case], Graded]) -> None:
    run = graded(case)
    document = run.document
    # A results.json that is the grader's, complete and consistent.
    assert run.returncode in (0, 1), f"the grader crashed or was stopped\n{run.log}"
    assert run.wall < min(case.max_wall, TOTAL_TIMEOUT), f"the run took {run.wall:.1f} s\n{run.log}"
    assert isinstance(document.get("tests"), list) and document["tests"], run.log
    assert document["score"] == pytest.approx(sum(t["score"] for t in document["tests"]), abs=1e-3)
    forged = f"FORGED-{run.marker}"
    assert forged not in run.results_text and forged not in run.report, "results.json or report.html was forged"
    assert forged not in run.results_later, f"rewritten {SETTLE:g} s after the run, by a process that outlived it"
    assert not run.leftovers and not run.leftovers_later, f"processes of the submission outlived the run: {run.leftovers or run.leftovers_later}"

    # Every check of the graded exercises is there: full points but for the row's targets.
    numbers = [t["number"] for t in document["tests"]]
    want_numbers = [n for n in CHECKS if n.split(".")[0].zfill(2) in case.exercises]
    assert numbers == want_numbers, f"checks {numbers}, expected {want_numbers}\n{run.log}"
    wrong = {}
    for number in want_numbers:
        entry = run.test(number)
        check = CHECKS[number]
        assert check.title in entry["name"] and entry["max_score"] == check.points, (number, entry["name"], entry["max_score"])
        want = case.scores.get(number, check.points)
        if entry["score"] != pytest.approx(want, abs=1e-4):
            wrong[number] = f"{entry['score']} (expected {want:g}): {entry['output'][:1500]}"
    assert not wrong, "checks with a dishonest score:\n" + "\n".join(f"{n}: {w}" for n, w in wrong.items())
    assert document["score"] == pytest.approx(case.expected, abs=1e-4), f"score {document['score']}, expected {case.expected}"
    assert run.returncode == (0 if case.expected == sum(FULL_MARKS[e] for e in case.exercises) else 1), run.log

    # What the student is told.
    for number, phrases in case.says.items():
        output = run.test(number)["output"]
        for phrase in phrases:
            phrase = phrase.replace("__OUT__", str(run.out))
            assert phrase in output, f"{number}: {phrase!r} missing from:\n{output[:3000]}"
    if case.extra is not None:
        case.extra(run)
