"""Isolated grading: student code runs in worker processes, never in the grader's.

    grader (pytest, holds expected values, decides points, writes reports)
      └─ template process: forked from the grader right after it loaded the model, before it
         read any expected value or imported any reference solution; it never runs student code
           └─ worker: forked from the template for each exercise (and after a crash or time-out);
              its own session, resource limits, an unprivileged user when the grader is root
              (else, where the kernel allows it, confined by Landlock: grader.sandbox.landlock)

Forking from the template is what makes a fresh worker cheap (no re-import, no model load: its
pages are shared copy-on-write), and torch allows it only if the template never ran a
multi-threaded op; the grader loads the model at one thread before forking it. CUDA does not
survive a fork, so the template keeps the model on the CPU and each worker moves its copy to the
graded device itself.

The template is a child subreaper: whatever a worker forks and abandons ends up as its child, and
it kills every one of them when the worker is replaced, so no student process outlives its
exercise, and the grader writes results.json only once all of them are gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import pwd
import resource
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from grader.sandbox.client import Sandbox, StudentError, WorkerLost
from grader.sandbox.faults import killed_by_the_machine, oom_kills
from grader.sandbox.hiding import HidingError, hide_in_this_process
from grader.sandbox.landlock import CONFINE_FAILED, LandlockError, Policy, restrict
from grader.sandbox.timeouts import GradingTimeout
from grader.student import codec
from grader.student.preflight import preflight

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
DEDICATED_USER = "mechgrade-worker"  # created by the autograder's setup.sh
FALLBACK_USER = "nobody"
HIDING_FAILED = 70  # a worker's exit status when it could not hide the answers from itself


@dataclass(frozen=True)
class WorkerLimits:
    """What one worker may use. Memory is address space on top of the worker's size when it starts."""

    memory_mib: int = 4096
    processes: int = 256  # threads count too; applied only under a user of the worker's own
    file_mib: int = 64
    output_bytes: int = 200_000  # printed output kept per check; the rest is read and dropped
    reply_mib: int = 512
    threads: int = 0  # torch threads; 0: as many as the grader uses


@dataclass(frozen=True)
class WorkerUser:
    name: str
    uid: int
    gid: int
    dedicated: bool  # nothing else runs as this user: a process-count limit for it is ours to set

    @classmethod
    def choose(cls) -> WorkerUser | None:
        """The unprivileged user workers run as when the grader is root; None otherwise."""
        if os.geteuid() != 0:
            return None
        wanted = os.environ.get("MECHGRADE_WORKER_USER")
        if wanted and wanted.startswith("#") and wanted[1:].isdigit():  # a bare uid nothing else runs as
            return cls(wanted, int(wanted[1:]), int(wanted[1:]), dedicated=True)
        for name in ([wanted] if wanted else [DEDICATED_USER, FALLBACK_USER]):
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            return cls(name, entry.pw_uid, entry.pw_gid, dedicated=name != FALLBACK_USER)
        raise RuntimeError(f"no user {wanted or DEDICATED_USER!r} or {FALLBACK_USER!r} to run student code as; "
                           f"create one: useradd --system --no-create-home {DEDICATED_USER}")


# ---- small Linux helpers ----


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(option, value, 0, 0, 0)


def die_with_parent() -> None:
    """This process is killed when the process that started it dies (Linux)."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _children_of(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    try:  # the kernel's own list of each thread's children (CONFIG_PROC_CHILDREN): no scan of /proc
        return [int(child) for task in tasks.iterdir() for child in (task / "children").read_text().split()]
    except (OSError, ValueError):
        pass
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            children.append(int(entry))
    return children


def _kill_group(pid: int) -> None:
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def describe_status(status: int | None) -> str:
    if status is None:
        return "it ended"
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        why = {"SIGSEGV": " (a crash in native code, or a stack overflow)", "SIGKILL": " (killed: out of memory?)",
               "SIGXFSZ": " (a file over the size limit)"}.get(name, "")
        return f"it was killed by {name}{why}"
    return f"it exited with status {os.WEXITSTATUS(status)} (sys.exit or os._exit?)"


# ---- the template process ----


class Template:
    """The grader's handle on the template process: spawn a worker, reap it, stop."""

    def __init__(self, pid: int, control: socket.socket) -> None:
        self.pid = pid
        self.control = control
        self._lock = threading.Lock()

    @classmethod
    def fork(cls, make_executor: Callable[[], Any]) -> Template:
        """Fork the template now. `make_executor` runs in it, once, before any worker exists."""
        grader_end, template_end = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the template
            try:
                grader_end.close()
                _template_main(template_end, make_executor)
            finally:
                os._exit(0)
        template_end.close()
        template = cls(pid, grader_end)
        template._ask({"op": "ping"})  # wait until it is ready
        return template

    def _ask(self, request: dict[str, Any], fds: list[int] | None = None) -> dict[str, Any]:
        with self._lock:
            socket.send_fds(self.control, [json.dumps(request).encode()], fds or [])
            data = self.control.recv(65536)
        if not data:
            raise RuntimeError("the template process that starts workers has died")
        return json.loads(data)

    def spawn(self, channel: socket.socket, output_fd: int, settings: dict[str, Any],
              retiring: int | None = None) -> int:
        """A fresh worker's pid. `retiring`, the worker it replaces, is killed first, and it and
        everything it left behind are gone before this returns; the two overlap only in time the
        new one spends starting (it runs no student code until it is sent a request)."""
        request = {"op": "spawn", "settings": settings, "retiring": retiring}
        return int(self._ask(request, [channel.fileno(), output_fd])["pid"])

    def alive(self) -> bool:
        try:
            return os.waitpid(self.pid, os.WNOHANG)[0] == 0
        except ChildProcessError:
            return False

    def reap(self, pid: int) -> int | None:
        """Kill the worker's whole process group and every process it left behind; its wait status."""
        return self._ask({"op": "reap", "pid": pid}).get("status")

    def close(self) -> None:
        try:
            self._ask({"op": "exit"})
        except (OSError, RuntimeError, ValueError):
            pass
        _kill_group(self.pid)
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        self.control.close()


def _template_main(control: socket.socket, make_executor: Callable[[], Any]) -> None:
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # never outlive the grader
    _prctl(PR_SET_CHILD_SUBREAPER, 1)  # abandoned descendants of workers become ours, to kill
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the grader's to handle
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    executor = make_executor()
    # Everything alive now (torch, TransformerLens, the model) is exempt from the garbage collector
    # in every worker: a full collection there walked a million inherited objects, and writing to
    # each one's header copied its page (workers ran their Python code two to three times slower).
    gc.collect()
    gc.freeze()
    user: WorkerUser | None = None
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(control, 65536, 4)
        except OSError:
            break
        if not data:
            break
        request = json.loads(data)
        op = request["op"]
        if op == "spawn":
            settings, retiring = request["settings"], request.get("retiring")
            user = WorkerUser(**settings["user"]) if settings.get("user") else None
            if retiring is not None:
                _kill_group(retiring)  # the kernel frees its memory while the fork below copies ours
            pid = os.fork()
            if pid == 0:
                control.close()
                _worker_main(fds[0], fds[1], settings, executor)
            for fd in fds:
                os.close(fd)
            if retiring is not None:
                _reap(retiring, user, keep=pid)
            reply: dict[str, Any] = {"pid": pid}
        elif op == "reap":
            reply = {"status": _reap(request["pid"], user)}
        elif op == "exit":
            _reap(None, user)
            control.send(b"{}")
            break
        else:
            reply = {"ok": True}
        control.send(json.dumps(reply).encode())


def _reap(pid: int | None, user: WorkerUser | None, keep: int | None = None) -> int | None:
    """Kill the worker `pid`, its group, and every other process left behind (they are this
    subreaper's children by now), except the worker `keep`; wait for all. Killing everything of
    the worker's user would also end other grading runs' workers: the autograder does that once,
    at the very end."""
    status = None
    if pid is not None:
        _kill_group(pid)
        try:
            status = os.waitpid(pid, 0)[1]
        except ChildProcessError:
            pass
    for _ in range(100):  # descendants that escaped the group (setsid, double fork) are ours now
        strays = [child for child in _children_of(os.getpid()) if child != keep]
        if not strays:
            break
        for stray in strays:
            _kill_group(stray)
        for stray in strays:
            try:
                os.waitpid(stray, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.01)
    return status


# ---- a worker ----


def _worker_main(channel_fd: int, output_fd: int, settings: dict[str, Any], executor: Any) -> None:
    try:
        os.setsid()  # its own process group: killed as one
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file over the limit fails to write, no crash
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        os.close(output_fd)
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        _close_inherited_files(keep={channel_fd})
        _enter_sandbox(settings, executor)
        if settings.get("preflight"):  # a worker that only proves it can grade, then ends
            check = settings["preflight"]
            said = preflight(check["modules"], check["model_folders"], settings["scratch"],
                             confined=bool(settings.get("landlock")))
            codec.write_frame(socket.socket(fileno=channel_fd), json.dumps({"problem": said}).encode())
            return
        _serve(socket.socket(fileno=channel_fd), executor, settings["reply_mib"] * 2**20)
    finally:
        os._exit(0)


def _close_inherited_files(keep: set[int]) -> None:
    """Whatever the grader had open when the template was forked (pytest's capture files, say)
    is none of the worker's business."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _enter_sandbox(settings: dict[str, Any], executor: Any) -> None:
    import torch

    scratch = settings["scratch"]
    os.chdir(scratch)
    os.environ.update(HOME=scratch, TMPDIR=scratch, MPLCONFIGDIR=scratch)
    _forget_the_graders_secrets(scratch)
    device = settings.get("device") or "cpu"
    if device != "cpu":
        executor.move_model_to(device)
    torch.set_num_threads(max(1, int(settings["threads"])))
    _apply_limits(settings)
    if settings.get("hide"):  # while still root: a mount namespace of its own, answers covered
        try:
            hide_in_this_process(settings["hide"])
        except HidingError as exc:
            sys.stderr.write(f"mechgrade: the worker could not hide the answers from itself: {exc}\n")
            os._exit(HIDING_FAILED)
    user = settings.get("user")
    if user:
        os.setgroups([])
        os.setgid(user["gid"])
        os.setuid(user["uid"])
    elif settings.get("landlock"):  # not root: the worker gives up all but what it needs, for good
        try:
            restrict(Policy(**settings["landlock"]))
        except LandlockError as exc:
            sys.stderr.write(f"mechgrade: the worker could not confine itself: {exc}\n")
            os._exit(CONFINE_FAILED)
    sys.dont_write_bytecode = True


HF_TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def _forget_the_graders_secrets(scratch: str) -> None:
    """Student code must not read the grader's Hugging Face token (from the environment, or the
    token file in the grader's HF_HOME, which the worker's user may also be unable to read: the
    hub client then fails the student's model load with a PermissionError). Public models need none."""
    for name in HF_TOKEN_VARIABLES:
        os.environ.pop(name, None)
    os.environ["HF_TOKEN_PATH"] = os.path.join(scratch, "no-hf-token")  # absent: the hub client reads no token
    constants = sys.modules.get("huggingface_hub.constants")  # imported in the template: its path is fixed by then
    if constants is not None:
        constants.HF_TOKEN_PATH = os.environ["HF_TOKEN_PATH"]


def _apply_limits(settings: dict[str, Any]) -> None:
    mib = 2**20
    size = _virtual_size()
    limits = {
        resource.RLIMIT_AS: size + settings["memory_mib"] * mib,
        resource.RLIMIT_FSIZE: settings["file_mib"] * mib,
        resource.RLIMIT_CORE: 0,
    }
    if settings.get("user") and settings["user"].get("dedicated"):
        limits[resource.RLIMIT_NPROC] = settings["processes"]
    for which, value in limits.items():
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass


def _virtual_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def _serve(channel: socket.socket, executor: Any, max_request: int) -> None:
    while True:
        request = _read_frame(channel, max_request)
        if request is None:
            return
        reply = executor.serve(request)
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except BaseException:
                pass
        codec.write_frame(channel, reply)


def _read_frame(channel: socket.socket, limit: int) -> bytes | None:
    prefix = _read_exactly(channel, 8)
    if prefix is None:
        return None
    return _read_exactly(channel, codec.frame_length(prefix, limit))


def _read_exactly(channel: socket.socket, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = channel.recv(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# ---- the worker's printed output ----


class OutputPump:
    """Reads a worker's stdout and stderr as they come (so a worker that prints megabytes never
    blocks), keeps the first `limit` bytes of each check and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self.limit = limit
        self._kept = bytearray()
        self._dropped = 0
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="mechgrade-output")
        self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            try:
                ready, _, _ = select.select([self.read_fd], [], [], 0.2)
            except (OSError, ValueError):
                return
            if ready and not self._drain():
                return

    def _drain(self) -> bool:
        """Read what is there now; False once the pipe is closed for good."""
        with self._lock:
            while True:
                try:
                    chunk = os.read(self.read_fd, 1 << 16)
                except BlockingIOError:
                    return True
                except OSError:
                    return False
                if not chunk:
                    return False
                room = self.limit - len(self._kept)
                self._kept += chunk[: max(room, 0)]
                self._dropped += max(len(chunk) - max(room, 0), 0)

    def take(self) -> str:
        """The output since the last take (everything printed before the last reply is in)."""
        self._drain()
        with self._lock:
            text = self._kept.decode("utf-8", errors="replace")
            if self._dropped:
                text += f"\n... [{self._dropped} more bytes of output dropped]"
            self._kept, self._dropped = bytearray(), 0
        return text

    def close(self) -> None:
        self._closed = True
        # Every worker is gone by now, so this is the last write end: the thread reads EOF at once
        # instead of waiting out its select (up to 0.2 s, once per submission in class grading).
        with contextlib.suppress(OSError):
            os.close(self.write_fd)
        self._thread.join(timeout=1)
        with contextlib.suppress(OSError):
            os.close(self.read_fd)


# ---- the grader's side ----


class IsolatedSandbox(Sandbox):
    isolated = True

    def __init__(self, model: Callable[[], Any], template: Template, scratch: Path, limits: WorkerLimits,
                 timeout: float, device: str, user: WorkerUser | None, model_source: str | None) -> None:
        super().__init__(model)
        self.template = template
        self.scratch = scratch
        self.limits = limits
        self.timeout = timeout
        self.device = device
        self.user = user
        self._model_source = model_source
        self.output = OutputPump(limits.output_bytes)
        self._pid: int | None = None
        self._retiring: int | None = None  # the last exercise's worker, ended with the next spawn
        self._channel: socket.socket | None = None
        self._imported: list[str] = []
        self.restarts = 0
        self.hidden: list[str] = []  # folders each worker covers in its own mount namespace
        self.landlock: Policy | None = None  # not root: what each worker keeps of the file system

    @property
    def model_source_override(self) -> str | None:
        return self._model_source

    # ---- worker lifetime ----

    def start_exercise(self, exercise: str) -> None:
        """A fresh worker for the exercise. The last one's channel closes now (it serves nothing
        more); the template kills and reaps it while forking the next (see Template.spawn)."""
        if self._retiring is not None:
            self._stop_worker()
        self._retiring, self._pid = self._pid, None
        self._close_channel()
        self._imported = []

    def _start_worker(self) -> None:
        grader_end, worker_end = socket.socketpair()
        settings = {**asdict(self.limits), "scratch": str(self.scratch), "device": self.device,
                    "user": asdict(self.user) if self.user else None, "hide": self.hidden,
                    "landlock": asdict(self.landlock) if self.landlock else None}
        if not settings["threads"]:
            import torch

            settings["threads"] = torch.get_num_threads()
        retiring, self._retiring = self._retiring, None
        try:
            self._pid = self.template.spawn(worker_end, self.output.write_fd, settings, retiring)
        finally:
            worker_end.close()
        self._channel = grader_end
        for key in self._imported:  # a replaced worker gets the exercise's modules again
            self._import(key)

    def preflight(self, modules: list[str], model_folders: list[str], timeout: float = 120.0) -> str | None:
        """Before any student code: a worker of this sandbox (its user, limits and hidden
        folders) imports, draws, reads the model and writes scratch. None, or what failed."""
        grader_end, worker_end = socket.socketpair()
        settings = {**asdict(self.limits), "scratch": str(self.scratch), "device": "cpu",
                    "user": asdict(self.user) if self.user else None, "hide": self.hidden,
                    "landlock": asdict(self.landlock) if self.landlock else None, "threads": 1,
                    "preflight": {"modules": modules, "model_folders": model_folders}}
        try:
            pid = self.template.spawn(worker_end, self.output.write_fd, settings)
        finally:
            worker_end.close()
        try:
            grader_end.settimeout(timeout)
            prefix = _read_exactly(grader_end, 8)
            reply = _read_exactly(grader_end, codec.frame_length(prefix, 1 << 20)) if prefix else None
        except (OSError, codec.CodecError):
            reply = None
        finally:
            grader_end.close()
        status = self.template.reap(pid)
        printed = self.output.take().strip()  # not the first check's output; why it ended, if it did
        if reply is None:
            said = f" ({printed.splitlines()[-1]})" if printed else ""  # the worker's last word: hiding, Landlock
            return f"a worker could not start: {describe_status(status)}{said}"
        return json.loads(reply).get("problem")

    def _stop_worker(self) -> int | None:
        """Kill and reap the worker now (and one still retiring); the worker's wait status."""
        status = None
        if self._retiring is not None:
            self.template.reap(self._retiring)
            self._retiring = None
        if self._pid is not None:
            status = self.template.reap(self._pid)
            self._pid = None
        self._close_channel()
        return status

    def _close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
            self.generation += 1  # the worker's handles are void from now on

    def close(self) -> None:
        self._stop_worker()
        self.template.close()
        self.output.close()

    def close_workers(self) -> None:
        """End this run's worker and whatever it left behind, and keep the template running for
        the next run in this process (see grader.sandbox.start.keep_template_across_runs)."""
        self._stop_worker()
        self.output.close()

    # ---- requests ----

    def _import(self, key: str) -> list[str]:
        notes = super()._import(key)
        if key not in self._imported:
            self._imported.append(key)
        return notes

    def _exchange(self, request: bytes, what: str) -> bytes:
        if self._channel is None:
            self._start_worker()
        assert self._channel is not None
        deadline = self.deadline if self.deadline is not None else time.monotonic() + self.timeout
        oom_before = oom_kills()  # to tell the machine's out-of-memory kill from the student's own SIGKILL
        try:
            self._channel.settimeout(max(deadline - time.monotonic(), 0.001))
            codec.write_frame(self._channel, request)
            prefix = self._receive(8, deadline)
            return self._receive(codec.frame_length(prefix, self.limits.reply_mib * 2**20), deadline)
        except TimeoutError:
            self._lose_worker()
            raise GradingTimeout(f"this check timed out after {self.timeout:g} s ({what})") from None
        except (ConnectionError, EOFError, OSError):
            status = self._lose_worker()
            fault = killed_by_the_machine(status, oom_before)
            if fault is not None:
                self.faults.append(fault)
            raise WorkerLost(f"your code ended the worker process during {what}: {describe_status(status)}") from None
        except codec.CodecError as exc:
            self._lose_worker()
            raise StudentError(f"{what}: {exc}") from None
        finally:
            self._forward_output()

    def _receive(self, size: int, deadline: float) -> bytes:
        assert self._channel is not None
        chunks, left = [], size
        while left:
            self._channel.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = self._channel.recv(min(left, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _lose_worker(self) -> int | None:
        self.restarts += 1
        return self._stop_worker()

    def _forward_output(self) -> None:
        text = self.output.take()
        if text:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")

    def after_check(self) -> list[str]:
        self.deadline = None
        if self._channel is None:
            return []
        repaired = super().after_check()
        if any("fresh worker" in r for r in repaired):
            self._lose_worker()
        return repaired
