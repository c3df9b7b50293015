"""Judging: expected values (fixtures), comparing a student's value with them, soft checks with
partial credit, the pictures of differences, the prompts checks run on, and the plain-data result
of a grading run.

This is also the check-file API: ``exercises/NN/test_*.py`` import ``grader.judging.compare``
(``Tolerance``), ``grader.judging.scoring`` (``attempt``, ``Raised``), ``grader.judging.prompts``
and ``grader.judging.pictures`` (``reference_heatmap``).

May import: ``grader.sandbox`` (student errors as data), ``grader.student`` (types only),
``grader.models`` and this folder.
"""
