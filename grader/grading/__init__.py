"""The pytest side of a grading run: the session (options, the model loaded once, the graded
modules, every test's result) and the fixtures a check receives. ``grader.plugin`` is the entry
pytest loads (``-p grader.plugin``).

May import: ``grader.judging``, ``grader.sandbox``, ``grader.student``, ``grader.models`` and
this folder.
"""
