"""Starting isolated grading: the worker's files, its user, the template process.

What the worker may see: a scratch folder of its own holding a copy of the graded modules (and
of a local model folder, for exercise 01's ``load_model``). When the grader runs as root, the
worker runs as an unprivileged user, and the reference solutions, the expected values and the git
history are hidden from it (grader.sandbox.hiding): by a mount namespace of the worker's own where
the kernel allows one, else by modes the grader changes and puts back on every way out. Nothing
the run did not create is left changed. When the grader is not root, the worker runs as its user,
and confines itself with Landlock where the kernel has it (grader.sandbox.landlock): it keeps
read access to what grading needs (`_landlock_policy`) and write access to its scratch folder.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import stat
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from grader.models import load_model
from grader.sandbox import hiding, landlock
from grader.sandbox.client import StudentModule
from grader.sandbox.isolated import IsolatedSandbox, Template, WorkerLimits, WorkerUser
from grader.student.executor import Executor, preload
from grader.student.model_guard import ModelGuard


class GradingRun(Protocol):
    """What starting isolation reads of a grading run (grader.grading.session.GradingSession is one):
    its options (the graded source, limits, where results go), the device and the model chosen."""

    options: Any
    device: str
    choice: Any

MAX_COPIED_FILE = 20 * 2**20  # a submission's files larger than this are not given to the worker
SKIPPED = {"__pycache__", ".git", ".ipynb_checkpoints"}


class IsolationUnavailable(RuntimeError):
    """This platform cannot run isolated grading; the message says what can."""


class EnvironmentFault(RuntimeError):
    """The grading environment cannot grade (the worker cannot read a file the checks need, say):
    no student's code is to blame, and no grade is given. The message is one line with the fix."""


_checked: dict[tuple[Any, ...], bool] = {}  # environments that passed the pre-flight in this process


@dataclass
class _KeptTemplate:
    """A template (and the grader's model) kept for the next grading run in this process."""

    key: tuple[Any, ...]
    template: Template
    model: Any
    memo: dict[Any, Any] = field(default_factory=dict)  # the grader's own results on the model


_keep_templates = False
_kept: _KeptTemplate | None = None


def keep_template_across_runs() -> None:
    """Make every later isolated run in this process reuse the first run's model and template
    (whole-class grading: grader.classroom.job). Safe because the template was forked before this
    process read any expected value or reference solution, and it never runs student code: each
    run still gets fresh workers, forked from it, in a scratch folder of its own. A template that
    died, or a run on another model or device, is not replaced: forking a new one now would hand
    its workers this process's memory, so the run fails and the caller starts a fresh process."""
    global _keep_templates
    _keep_templates = True


def start_isolated_sandbox(grading: GradingRun, needs_model: bool) -> tuple[IsolatedSandbox, Any, dict[Any, Any]]:
    """(the sandbox, the grader's own model or None, the memo of the grader's own results on that
    model: kept with the template, since no student code ever touches the grader's model)."""
    if not sys.platform.startswith("linux") or not hasattr(socket, "send_fds"):
        raise IsolationUnavailable("--isolate needs Linux (fork, prctl and file-descriptor passing); "
                                   "grade without it, or in the course's Linux container")
    import torch

    global _kept
    options = grading.options
    user = WorkerUser.choose()
    if user is not None:
        hiding.method()  # decided now, while this process runs no thread: it forks to find out
    confine = user is None and _can_confine()  # not root; forks to find out, once
    device = grading.device if needs_model else "cpu"
    key = (grading.choice.spec.id if needs_model else None, device, user)
    if _kept is not None:
        if _kept.key != key or not _kept.template.alive():
            raise RuntimeError("the grading process's template is gone or was made for another model; "
                               "grade in a fresh process")
        template, model, memo = _kept.template, _kept.model, _kept.memo
    else:
        template, model = _fork_template(grading, needs_model, device, torch)
        memo = {}
        if _keep_templates:
            _kept = _KeptTemplate(key, template, model, memo)
    scratch = Path(tempfile.mkdtemp(prefix="mechgrade-worker-"))
    graded_copy = _copy_tree(options.source.root, scratch / "graded")
    model_source = None
    if needs_model and grading.choice.spec.local and user is not None:  # the worker's user may not reach it
        folder = Path(grading.choice.spec.source)
        model_source = str(_copy_tree(folder, scratch / "models" / folder.name, link=True))
    _unwind_on_sigterm()
    limits = WorkerLimits(memory_mib=options.worker_memory_mib, output_bytes=max(options.max_output * 4, 20_000))
    sandbox = ScratchSandbox(lambda: model, template, scratch, limits, options.timeout or 3600.0, device, user,
                             model_source, original_root=options.source.root, graded_copy=graded_copy,
                             keep_template=_kept is not None and _kept.template is template)
    sandbox.own_paths = [scratch, options.source.root]
    if user is not None:
        _hand_over(scratch, user)
        keep = [scratch, Path(model_source or scratch), *_needed_by_the_worker(grading, needs_model)]
        if hiding.method() == "namespace":  # each worker covers them in a mount namespace of its own
            sandbox.hidden = [str(f) for f in _to_hide(grading, keep, results_too=True)]
        else:  # made root-only now, put back when the sandbox closes (or by `mechgrade repair`)
            sandbox.mode_lock.lock(_to_hide(grading, keep, results_too=False))
    elif confine:
        try:
            sandbox.landlock = _landlock_policy(grading, needs_model, scratch, device)
        except EnvironmentFault:
            sandbox.close()
            raise
    if not _checked.get(key):  # once per process: a class's later runs share this environment
        folders = [model_source] if model_source else _model_folders(grading, needs_model)
        problem = sandbox.preflight(_modules_used(options.root), folders)
        if problem is not None:
            sandbox.close()
            raise EnvironmentFault(problem)
        _checked[key] = True
    return sandbox, model, memo


def _fork_template(grading: GradingRun, needs_model: bool, device: str, torch: Any) -> tuple[Template, Any]:
    """Load the model at one thread and fork the template from this still-clean process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a process forked after a multi-threaded op deadlocks in its first one
    model = None
    if needs_model:
        model = load_model(grading.choice.spec, "cpu")  # CUDA would not survive the fork

    def make_executor() -> Any:  # runs in the template, once
        preload()

        guard = ModelGuard(model) if model is not None and device == "cpu" else None
        return Executor(model=lambda: model, guard=guard)

    template = Template.fork(make_executor)
    torch.set_num_threads(threads)
    if model is not None and device != "cpu":
        model.to(device)
    return template, model


class ScratchSandbox(IsolatedSandbox):
    """An isolated sandbox whose worker imports the copies in its scratch folder."""

    def __init__(self, *args: Any, original_root: Path, graded_copy: Path, keep_template: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.original_root = original_root
        self.graded_copy = graded_copy
        self.keep_template = keep_template  # the next run in this process forks its workers from it
        self.mode_lock = hiding.ModeLock()

    def module(self, key: str, path: Any) -> StudentModule:
        try:
            relative = Path(path).resolve().relative_to(self.original_root.resolve())
        except ValueError:
            relative = Path(Path(path).name)
        if self.original_root.is_file():  # one notebook: copied into the scratch folder by its name
            relative = Path(self.original_root.name)
        return super().module(key, self.graded_copy / relative)

    def close(self) -> None:
        try:
            if self.keep_template:
                self.close_workers()
            else:
                super().close()
        finally:
            self.mode_lock.restore()  # only once every worker is gone: they could read it again
            shutil.rmtree(self.scratch, ignore_errors=True)


def _copy_tree(source: Path, target: Path, link: bool = False) -> Path:
    """Copy the files a worker may read: no caches, nothing huge, no links out of the folder.
    `link`: hard-link where possible (a model's weights: read-only to the worker's user, and a
    copy of GPT-2's would cost half a gigabyte per run)."""
    target.mkdir(parents=True, exist_ok=True)
    if source.is_file() and not source.is_symlink() and source.stat().st_size <= MAX_COPIED_FILE:
        shutil.copyfile(source, target / source.name)  # a submission that is one notebook
    if not source.is_dir():
        return target
    for path in sorted(source.rglob("*")):
        if SKIPPED & set(path.relative_to(source).parts) or path.is_symlink() or not path.is_file():
            continue
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        if link and path.stat().st_mode & 0o004:  # a link to a file others may not read would not help
            try:
                os.link(path, destination)
                continue
            except OSError:
                pass
        if not link and path.stat().st_size > MAX_COPIED_FILE:
            continue
        shutil.copyfile(path, destination)
    return target


def _hand_over(scratch: Path, user: WorkerUser) -> None:
    """The scratch folder belongs to the worker's user, and to nobody else (hard-linked model
    files stay root's, readable and not writable)."""
    for folder, dirs, files in os.walk(scratch):
        for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
            if os.stat(name).st_nlink == 1 or os.path.isdir(name):
                os.chown(name, user.uid, user.gid)
    os.chmod(scratch, 0o700)


def _to_hide(grading: GradingRun, keep: list[Path], results_too: bool) -> list[Path]:
    """What the worker must not read: the reference solutions, the expected values (not the
    model folders, which exercise 01 loads), the git history that holds both, and (where hiding
    them changes nothing outside the worker) the folders results go to. Never a folder that holds
    what the worker needs (`keep`: its scratch folder, the model, Python and its libraries), nor
    one every user shares."""
    options = grading.options
    folders = _not_for_workers(grading, results_too)
    shared = {Path("/"), Path.home().resolve(), Path.cwd().resolve(), options.root.resolve()}
    needed = [k.resolve() for k in keep]
    chosen: list[Path] = []
    for folder in folders:
        if not folder.is_dir() or folder.resolve() in shared or _is_public_scratch(folder):
            continue
        if any(n == folder.resolve() or folder.resolve() in n.parents for n in needed):
            continue  # hiding it would hide the venv, the model or the scratch folder from the worker
        if folder.resolve() not in (c.resolve() for c in chosen):
            chosen.append(folder)
    return chosen


def _not_for_workers(grading: GradingRun, results_too: bool) -> list[Path]:
    """The answers (solutions, expected values, git history) and, with `results_too`, the folders
    results go to, and what grade-all names (the class's submissions and gradebook)."""
    options = grading.options
    folders = hiding.answer_folders(options.root, options.fixtures_dir)
    if results_too:
        folders += [r.parent for r in (options.report_html, options.gradescope_json) if r is not None]
        folders += [Path(p) for p in os.environ.get(hiding.ENV_HIDE_ALSO, "").split(os.pathsep) if p]
    return folders


_warned_unconfined = False


def _can_confine() -> bool:
    """Whether a worker of this (ordinary) user can confine itself with Landlock; if not, say so once."""
    global _warned_unconfined
    why = landlock.unavailable()
    if why is not None and not _warned_unconfined:
        _warned_unconfined = True
        print(f"mechgrade: student code runs as you, not confined: {why}", file=sys.stderr)
    return why is None


# Read by no clean grading run (strace of grade-all as an ordinary user: its workers opened only
# Python's packages, the model and their scratch folder), but by ordinary code a student may run:
# shared libraries and programs (/usr, /lib, /lib64, /bin), the time zone and users (/etc),
# /proc/self and the CPU topology (/sys). Nothing of the course or the class is kept there.
SYSTEM_FOLDERS = ("/usr", "/lib", "/lib64", "/bin", "/etc", "/proc", "/sys")
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
GPU_DEVICES = "/dev/nvidia*"  # CUDA opens more of these after its context is made


def _landlock_policy(grading: GradingRun, needs_model: bool, scratch: Path, device: str) -> landlock.Policy:
    """What a worker of an ordinary user keeps (grader.sandbox.landlock): it reads and runs the
    system's libraries, Python and its packages, the grader's own package and the model's files;
    it writes its scratch folder (which holds its copy of the graded work) and a few device files.
    Not /tmp, the home folder, the checkout's other folders, the class or the results. A folder it
    must keep that holds the answers or the results is refused: it would keep all of it."""
    read = [Path(p) for p in SYSTEM_FOLDERS] + _needed_by_the_worker(grading, needs_model)
    if needs_model and not grading.choice.spec.local:  # the model's whole folder in the cache: snapshots link to blobs/
        read += [Path(folder).parent.parent for folder in _model_folders(grading, needs_model)]
    for kept in read:
        for secret in _not_for_workers(grading, results_too=True):
            if secret.exists() and kept.exists() and (kept.resolve() == secret.resolve()
                                                      or kept.resolve() in secret.resolve().parents):
                raise EnvironmentFault(f"a worker must read {kept}, which holds {secret}; "
                                       f"move {secret} out of it, or grade as root")
    devices = [*DEVICES, *(sorted(glob.glob(GPU_DEVICES)) if device.startswith("cuda") else [])]
    return landlock.Policy(read=[str(p) for p in read], write=[str(scratch)], devices=devices)


def _needed_by_the_worker(grading: GradingRun, needs_model: bool) -> list[Path]:
    """Folders the worker reads from: Python, its libraries (fonts, matplotlib's data), the grader."""
    import matplotlib

    needed = {Path(sys.prefix), Path(sys.base_prefix), Path(__file__).resolve().parents[1],
              Path(matplotlib.get_data_path())}
    needed |= {Path(p) for p in sys.path if p and Path(p).is_dir() and "site-packages" in p}
    if needs_model and grading.choice.spec.local:
        needed.add(Path(grading.choice.spec.source))
    return sorted(needed)


def _modules_used(root: Path) -> list[str]:
    """The modules the exercises' stubs and reference solutions import (matplotlib.pyplot for
    the plots, transformer_lens, torch...), read from their source."""
    import ast

    found = {"torch", "numpy", "matplotlib.pyplot"}
    for folder in ("exercises", "solutions"):
        for path in sorted((root / folder).glob("[0-9][0-9]/*.py")):
            if path.name.startswith("test_"):
                continue
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (OSError, SyntaxError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    found |= {alias.name for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.add(node.module)
    return sorted(name for name in found if name != "__future__")


def _model_folders(grading: GradingRun, needs_model: bool) -> list[str]:
    """Where the worker reads the model's files from (exercise 01 loads it itself)."""
    if not needs_model:
        return []
    spec = grading.choice.spec
    if spec.local:
        return [spec.source]
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(spec.source, "config.json")
    except ImportError:
        return []
    return [str(Path(cached).parent)] if isinstance(cached, str) else []


def _unwind_on_sigterm() -> None:
    """`kill` (SIGTERM) ends a Python process with no clean-up: make it unwind as Ctrl-C does,
    so that the workers are stopped, hidden folders put back and the scratch folder removed."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def _is_public_scratch(folder: Path) -> bool:
    """A folder like /tmp (world-writable, sticky): locking it would break every other user of the
    machine. Files root made there stay root's, and the sticky bit keeps the worker from replacing them."""
    mode = folder.stat().st_mode
    return bool(mode & stat.S_ISVTX and mode & stat.S_IWOTH)
