"""ast.parse for tests that build submissions on several threads at once.

CPython 3.11's AST constructor checks its recursion depth against a counter that threads share:
two parses at once fail at random with "SystemError: AST constructor recursion depth mismatch"
(seen in the mistake tests, whose submissions are built in a thread pool). One parse at a time.
"""

from __future__ import annotations

import ast
import threading

_ONE_AT_A_TIME = threading.Lock()


def parse(source: str) -> ast.Module:
    with _ONE_AT_A_TIME:
        return ast.parse(source)
