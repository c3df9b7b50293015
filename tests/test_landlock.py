"""Landlock as a worker uses it (grader.sandbox.landlock): a confined process keeps what its policy
lists and nothing else, whoever it runs as (root too: Landlock is not about file modes)."""

from __future__ import annotations

import codecs
import json
import os
import re
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from grader.sandbox import hiding, landlock
from grader.sandbox.start import SYSTEM_FOLDERS, EnvironmentFault, _landlock_policy
from grader.student.preflight import preflight

# A socket address's host is encoded with the idna codec, imported on first use: a child confined
# before that cannot read it ("LookupError: unknown encoding: idna", in a full suite run). Loaded here.
codecs.lookup("idna")

pytestmark = pytest.mark.skipif(landlock.unavailable(landlock.CLASS_ABI) is not None,
                                reason=f"needs Landlock ABI {landlock.CLASS_ABI}: "
                                       f"{landlock.unavailable(landlock.CLASS_ABI)}")


def confined(policy: landlock.Policy, attempts: dict[str, Callable[[], object]]) -> dict[str, str]:
    """Each attempt, in a child confined by `policy`: 'ok' or the error it met."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        said: dict[str, str] = {}
        try:
            landlock.restrict(policy)
            for what, attempt in attempts.items():
                try:
                    attempt()
                    said[what] = "ok"
                except OSError as exc:
                    said[what] = type(exc).__name__
        except BaseException as exc:  # said, not lost: the parent's assertion shows it
            said["the child failed"] = f"{type(exc).__name__}: {exc}"
        finally:
            os.write(write_end, json.dumps(said).encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as reply:
        text = reply.read()
    _, status = os.waitpid(pid, 0)
    assert text, f"the confined child wrote nothing (wait status {status})"
    return json.loads(text)


def test_a_confined_process_reads_its_list_writes_its_scratch_and_reaches_nothing_else(tmp_path: Path) -> None:
    kept, scratch, other = tmp_path / "kept", tmp_path / "scratch", tmp_path / "other"
    for folder in (kept, scratch, other):
        folder.mkdir()
        (folder / "file.txt").write_text("x")
    server = socket.create_server(("127.0.0.1", 0))
    policy = landlock.Policy(read=[str(kept)], write=[str(scratch)], devices=["/dev/null"])
    said = confined(policy, {
        "read kept": lambda: (kept / "file.txt").read_text(),
        "write kept": lambda: (kept / "file.txt").write_text("changed"),
        "write scratch": lambda: (scratch / "new.txt").write_text("y"),
        "read other": lambda: (other / "file.txt").read_text(),
        "list other": lambda: os.listdir(other),
        "truncate other": lambda: os.truncate(other / "file.txt", 0),
        "write /dev/null": lambda: open(os.devnull, "w").write("z"),
        "signal the parent": lambda: os.kill(os.getppid(), 0),
        "connect over TCP": lambda: socket.create_connection(server.getsockname(), timeout=5).close(),
    })
    server.close()
    assert said == {"read kept": "ok", "write kept": "PermissionError", "write scratch": "ok",
                    "read other": "PermissionError", "list other": "PermissionError",
                    "truncate other": "PermissionError", "write /dev/null": "ok",
                    "signal the parent": "PermissionError", "connect over TCP": "PermissionError"}
    assert (other / "file.txt").read_text() == "x" and (kept / "file.txt").read_text() == "x"


def test_what_a_child_of_a_confined_process_starts_is_confined_too(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("answers")

    def in_a_grandchild() -> None:
        pid = os.fork()
        if pid == 0:
            try:
                secret.read_text()
                os._exit(0)
            except OSError:
                os._exit(13)
        if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0:
            raise PermissionError("the grandchild was refused")

    assert confined(landlock.Policy(), {"grandchild reads": in_a_grandchild}) == {"grandchild reads": "PermissionError"}


def test_turned_off_it_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(landlock.ENV_LANDLOCK, "off")
    assert landlock.abi() == 0
    assert landlock.unavailable() == f"Landlock is turned off ({landlock.ENV_LANDLOCK}=off)"


def test_a_worker_that_would_have_to_read_a_folder_holding_the_class_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv = Path(sys.prefix)  # what every worker must read: a class folder there would be readable too
    monkeypatch.setenv(hiding.ENV_HIDE_ALSO, str(venv))
    options = SimpleNamespace(root=tmp_path, fixtures_dir=tmp_path / "fixtures", report_html=None, gradescope_json=None)
    grading = SimpleNamespace(options=options, choice=None)
    with pytest.raises(EnvironmentFault, match=f"a worker must read .*, which holds {re.escape(str(venv))}; move "):
        _landlock_policy(grading, needs_model=False, scratch=tmp_path, device="cpu")
    monkeypatch.delenv(hiding.ENV_HIDE_ALSO)
    policy = _landlock_policy(grading, needs_model=False, scratch=tmp_path, device="cpu")
    assert policy.write == [str(tmp_path)] and str(venv) in policy.read


def test_an_older_landlock_still_confines_files_but_grading_a_class_needs_abi_6(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(landlock, "abi", lambda: 4)  # Linux 6.7 to 6.11: no scoping of signals
    assert landlock.unavailable(landlock.CLASS_ABI) == "this kernel's Landlock is ABI 4; ABI 6 or later is needed " \
                                                       "(Linux 6.12 or later)"
    assert landlock.unavailable() is None  # `grade --isolate` confines what it can
    (tmp_path / "other.txt").write_text("x")
    said = confined(landlock.Policy(write=[str(tmp_path / "scratch")]), {
        "read other": lambda: (tmp_path / "other.txt").read_text(),
        "signal the parent": lambda: os.kill(os.getppid(), 0),
    })
    assert said == {"read other": "PermissionError", "signal the parent": "ok"}


def test_the_preflight_of_a_confined_worker_names_the_path_and_blames_no_file_mode(tmp_path: Path) -> None:
    model, scratch = tmp_path / "model", tmp_path / "scratch"
    model.mkdir(), scratch.mkdir()
    (model / "config.json").write_text("{}")
    import matplotlib.pyplot  # noqa: F401  # as the template preloads it
    python = [*SYSTEM_FOLDERS, sys.prefix, sys.base_prefix, *(p for p in sys.path if "site-packages" in p)]
    said = confined(landlock.Policy(read=python, write=[str(scratch)]),
                    {"preflight": lambda: print_to(scratch, preflight([], [str(model)], str(scratch), confined=True))})
    assert said == {"preflight": "ok"}
    assert (scratch / "said.txt").read_text() == (
        f"the worker (confined by Landlock) cannot read {model}: it is outside the folders a worker keeps "
        "(grader.sandbox.start); grade as root, or report it")


def print_to(folder: Path, line: str | None) -> None:
    (folder / "said.txt").write_text(str(line))
