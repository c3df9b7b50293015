"""Slurm's own commands, as `mechgrade grade-all --slurm` uses them: sbatch, squeue, scontrol, sacct, scancel.

Only what every Slurm site has is relied on: squeue for the tasks still pending or running; for a
task that ended, its state comes from sacct where the site keeps accounting, else from scontrol
(which remembers an ended job for MinJobAge, 300 s by default), else from the line slurmstepd writes
into the task's log ("*** JOB 12 ON node1 CANCELLED AT ... DUE TO TIME LIMIT ***").
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# "... DUE TO NODE FAILURE, SEE SLURMCTLD LOG FOR DETAILS ***": the reason ends at a comma
ENDED_LINE = re.compile(r"\*\*\* JOB \d+ ON (\S+) CANCELLED AT (\S+)(?: DUE TO ([A-Z ]+?)(?:,[^*]*)?)? \*\*\*")
OOM_LINE = re.compile(r"oom-kill|Exceeded job memory limit|Out Of Memory", re.IGNORECASE)
TIMEOUT_S = 60.0  # a slurmctld busy scheduling a large site may take a while to answer


class SlurmError(RuntimeError):
    """A Slurm command failed or is missing; the message is one line for the user."""


@dataclass(frozen=True)
class Ended:
    state: str  # COMPLETED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, FAILED, PREEMPTED, ...
    node: str = ""
    exit_code: str = ""


def available() -> str | None:
    """None when sbatch, squeue and scancel are on PATH, else a line saying what is missing."""
    missing = [c for c in ("sbatch", "squeue", "scancel") if shutil.which(c) is None]
    if missing:
        return (f"Slurm's {', '.join(missing)} not found on PATH: run this on a Slurm login node "
                "(or without --slurm to grade on this machine)")
    return None


def _run(command: list[str], stdin: str | None = None) -> str:
    try:
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=TIMEOUT_S)
    except FileNotFoundError:
        raise SlurmError(f"{command[0]} not found on PATH") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{command[0]} did not answer within {TIMEOUT_S:g} s") from None
    if done.returncode != 0:
        said = " ".join((done.stderr or done.stdout).split()) or f"exit status {done.returncode}"
        raise SlurmError(f"{command[0]} refused: {said}")
    return done.stdout


def test_submit(script: str) -> None:
    """Let sbatch check the script (partition, account, limits) without submitting it."""
    _run(["sbatch", "--test-only"], stdin=script)


def submit(script_path: Path) -> str:
    """Submit a batch script; its job id."""
    out = _run(["sbatch", "--parsable", str(script_path)]).strip()
    job = out.split(";")[0]  # "id;cluster" on a multi-cluster site
    if not job.isdigit():
        raise SlurmError(f"sbatch answered {out!r}, not a job id")
    return job


def live_tasks(job: str) -> dict[int, tuple[str, str]]:
    """{array index: (state, node or reason)} of the tasks still pending or running."""
    out = _run(["squeue", "-h", "-r", "-j", job, "-o", "%K|%T|%R"])
    tasks = {}
    for line in out.splitlines():
        index, state, where = (line.split("|") + ["", ""])[:3]
        if index.strip().isdigit():
            tasks[int(index)] = (state.strip(), where.strip())
    return tasks


def ended_tasks(job: str) -> dict[int, Ended]:
    """{array index: how it ended} for the ended tasks Slurm still knows about."""
    found: dict[int, Ended] = {}
    try:  # accounting: every ended task, for as long as the site keeps records
        out = _run(["sacct", "-n", "-P", "-X", "-j", job, "-o", "JobID,State,NodeList,ExitCode"])
        for line in out.splitlines():
            parts = line.split("|")
            match = re.fullmatch(rf"{job}_(\d+)", parts[0]) if len(parts) == 4 else None
            if match:
                found[int(match.group(1))] = Ended(parts[1].split()[0], parts[2], parts[3])
    except SlurmError:
        pass  # no accounting here ("Slurm accounting storage is disabled")
    try:  # the controller's memory of recently ended jobs
        out = _run(["scontrol", "-o", "show", "job", job])
        for line in out.splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            index = fields.get("ArrayTaskId", "")
            if index.isdigit() and int(index) not in found and fields.get("JobState") not in ("PENDING", "RUNNING"):
                found[int(index)] = Ended(fields.get("JobState", ""), fields.get("BatchHost", ""),
                                          fields.get("ExitCode", ""))
    except SlurmError:
        pass
    return found


def ended_from_log(log: Path) -> Ended | None:
    """How a task ended, from what slurmstepd wrote into its log; None when it wrote nothing."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")[-20_000:]
    except OSError:
        return None
    match = None
    for match in ENDED_LINE.finditer(text):
        pass
    over_memory = OOM_LINE.search(text) is not None
    if match is not None:
        why = (match.group(3) or "").strip()
        state = {"TIME LIMIT": "TIMEOUT", "NODE FAILURE": "NODE_FAIL", "PREEMPTION": "PREEMPTED"}.get(why, "CANCELLED")
        if state == "CANCELLED" and over_memory:
            # Killed for memory by accounting (JobAcctGatherParams=OverMemoryKill): slurmstepd writes
            # "exceeded memory limit ... being killed", then a CANCELLED line that gives no reason,
            # and the job's state is FAILED, not OUT_OF_MEMORY.
            state = "OUT_OF_MEMORY"
        return Ended(state, match.group(1))
    return Ended("OUT_OF_MEMORY") if over_memory else None


def cancel(job: str) -> None:
    _run(["scancel", job])


def partition_nodes(partition: str | None) -> set[str]:
    """The host names of the partition's nodes (the default partition's when None); empty if unknown."""
    try:
        listed = _run(["sinfo", "-h", "-o", "%N", *(["-p", partition] if partition else [])]).split()
        names: set[str] = set()
        for nodes in listed:
            names.update(_run(["scontrol", "show", "hostnames", nodes]).split())
        return names
    except SlurmError:
        return set()
