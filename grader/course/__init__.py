"""What an instructor ships: the Gradescope autograder bundle, and the students' release
(release.py: no solutions, hidden checks or held-out inputs); hidden_inputs.py draws new held-out
inputs from the toy corpus's word lists.

May import: ``grader.judging`` (fixtures), ``grader.models``, ``grader.toy`` (word lists) and this folder.
"""
