"""The users grade-all's grading processes run their workers as: one each, and never another
grade-all's, so what one run removes of its workers' files in /tmp is never another run's."""

from __future__ import annotations

import pwd

from grader.classroom.grade_all import JOB_UID_BASE, MAX_JOBS, PID_LIMIT, job_uid


def test_each_grading_process_of_a_run_has_its_own_uid() -> None:
    uids = [job_uid(index, pid=4242) for index in range(MAX_JOBS)]
    assert len(set(uids)) == MAX_JOBS


def test_two_runs_at_once_never_share_a_uid() -> None:
    first = {job_uid(index, pid=4242) for index in range(MAX_JOBS)}
    for other in (4241, 4243, 1, PID_LIMIT - 1):
        assert first.isdisjoint(job_uid(index, pid=other) for index in range(MAX_JOBS))


def test_the_uids_fit_in_32_bits_and_belong_to_no_account() -> None:
    highest = job_uid(MAX_JOBS - 1, pid=PID_LIMIT - 1)
    assert JOB_UID_BASE <= job_uid(0, pid=1) < highest < 2**32 - 1
    for uid in (job_uid(0, pid=1), highest):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            continue
        raise AssertionError(f"uid {uid} has an account")
