"""The grader's side of the boundary around student code: proxies for the graded module, worker
processes forked from a template, their limits and user (or, not as root, their Landlock
confinement), and the per-check time limit.

May import: ``grader.student`` (what runs on the other side), ``grader.models`` and this folder.
"""
