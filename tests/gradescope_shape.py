"""The shape of a Gradescope results.json, as its autograder specification gives it."""

from __future__ import annotations

from typing import Any

TOP_LEVEL = {
    "score": float,
    "execution_time": int,
    "output": str,
    "output_format": str,
    "visibility": str,
    "stdout_visibility": str,
    "tests": list,
}
PER_TEST = {
    "name": str,
    "number": str,
    "score": float,
    "max_score": float,
    "status": str,
    "output": str,
    "output_format": str,
    "visibility": str,
}
OUTPUT_FORMATS = {"text", "html", "simple_format", "md", "ansi"}
VISIBILITIES = {"hidden", "after_due_date", "after_published", "visible"}


def assert_shape(document: dict[str, Any], keys: dict[str, type]) -> None:
    assert set(keys) <= set(document), f"missing {set(keys) - set(document)}"
    for key, kind in keys.items():
        assert isinstance(document[key], kind), f"{key} is {type(document[key]).__name__}, not {kind.__name__}"


def assert_gradescope_shape(document: dict[str, Any]) -> None:
    assert_shape(document, TOP_LEVEL)
    for test in document["tests"]:
        assert_shape(test, PER_TEST)
        assert test["status"] in {"passed", "failed"}
        assert test["output_format"] in OUTPUT_FORMATS
        assert test["visibility"] in VISIBILITIES
