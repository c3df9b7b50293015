"""grader.judging.compare: shape and kind before values, NaN equal to NaN, and the failure text pinned."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from grader.judging.compare import (
    MAX_LISTED,
    Comparison,
    Tolerance,
    compare,
    diagnose,
    matches,
    short,
    to_numpy,
)

# ---- what is compared first ----


def test_shape_is_checked_before_values() -> None:
    result = compare(torch.zeros(2, 3), torch.ones(3, 2))
    assert not result.ok
    assert result.message == "shape mismatch: expected (3, 2), got (2, 3)"


def test_shape_mismatch_wins_over_a_dtype_mismatch() -> None:
    assert compare(np.zeros(3, dtype=bool), np.zeros(2, dtype=np.int64)).headline.startswith("shape mismatch")


def test_integer_against_bool_is_a_dtype_kind_mismatch() -> None:
    result = compare(np.array([1, 0]), np.array([True, False]))
    assert result.message == "dtype mismatch: expected bool values, got integer"


def test_floats_compare_with_integers_by_value() -> None:
    assert compare(torch.tensor([1.0, 2.0]), np.array([1, 2])).ok
    assert compare(np.array([1, 2]), torch.tensor([1.0, 2.0])).ok
    assert compare(3.0, 3).ok


def test_tensors_arrays_lists_and_numbers_compare_with_each_other() -> None:
    assert compare(torch.tensor([[1.0, 2.0]]), [[1.0, 2.0]]).ok
    assert compare([1.0, 2.0], np.array([1.0, 2.0])).ok
    assert compare(np.float32(0.1), 0.1).ok
    assert compare(torch.tensor([1.0], dtype=torch.bfloat16), [1.0]).ok
    assert compare(torch.ones(2, requires_grad=True) * 2, [2.0, 2.0]).ok


def test_a_non_numeric_answer_to_a_numeric_question_is_named() -> None:
    assert compare("six", np.zeros(2)).message == "expected a numeric value of shape (2,), got str: 'six'"
    assert compare(None, 6.0).message == "expected a numeric value of shape (), got NoneType: None"


def test_values_within_tolerance_pass() -> None:
    assert compare(1.0 + 5e-6, 1.0).ok
    assert not compare(1.0 + 5e-6, 1.0, Tolerance(atol=1e-7, rtol=0.0)).ok
    assert compare(101.0, 100.0, Tolerance(atol=0.0, rtol=0.02)).ok


# ---- NaN ----


def test_nan_equals_nan() -> None:
    assert compare(float("nan"), float("nan")).ok
    assert compare(torch.tensor([1.0, math.nan]), torch.tensor([1.0, math.nan])).ok


def test_nan_against_a_number_differs_both_ways() -> None:
    assert compare(math.nan, 1.0).message == "expected 1, got nan (atol=1e-05, rtol=0.0001)\nshape: ()"
    assert compare(1.0, math.nan).message == "expected nan, got 1 (atol=1e-05, rtol=0.0001)\nshape: ()"
    assert not compare(np.array([1.0, math.nan]), np.array([1.0, 2.0])).ok


# ---- the failure text ----


def test_a_scalar_failure_has_headline_shape_and_errors() -> None:
    result = compare(2, 3)
    assert result.message == "\n".join(
        [
            "expected 3, got 2 (atol=1e-05, rtol=0.0001)",
            "shape: ()",
            "largest absolute error: 1",
            "largest relative error: 0.333333",
        ]
    )
    assert result.max_abs == 1.0


def test_an_array_failure_lists_count_share_errors_and_first_indices() -> None:
    want = np.arange(12, dtype=float).reshape(3, 4)
    got = want.copy()
    got[0, 1] += 1  # 2 instead of 1
    got[1, 2] = math.nan
    got[2, :] += 0.5
    result = compare(got, want)
    assert result.message == "\n".join(
        [
            "values differ: 6 of 12 elements (50.0%) outside atol=1e-05, rtol=0.0001",
            "shape: (3, 4)",
            "largest absolute error: 1",
            "largest relative error: 1",
            "first differing indices:",
            "  index                 expected           got",
            "  (0, 1)                       1             2",
            "  (1, 2)                       6           nan",
            "  (2, 0)                       8           8.5",
            "  (2, 1)                       9           9.5",
            "  (2, 2)                      10          10.5",
            "  ... and 1 more",
        ]
    )
    assert result.max_abs == 1.0  # NaN does not count as the largest difference


def test_at_most_max_listed_indices_are_shown_then_how_many_more() -> None:
    result = compare(np.zeros(20), np.ones(20))
    assert result.headline == "values differ: 20 of 20 elements (100.0%) outside atol=1e-05, rtol=0.0001"
    rows = [line for line in result.details.splitlines() if line.startswith("  (")]
    assert len(rows) == MAX_LISTED
    assert result.details.splitlines()[-1] == f"  ... and {20 - MAX_LISTED} more"


def test_one_differing_element_says_index_in_the_singular() -> None:
    result = compare(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 2.0, 3.0]))
    assert "first differing index:" in result.details
    assert "... and" not in result.details
    assert "  (2,)                         3             4" in result.details


def test_relative_error_is_left_out_where_the_expected_value_is_zero() -> None:
    result = compare(np.array([1.0]), np.array([0.0]))
    assert "largest absolute error: 1" in result.details
    assert "largest relative error" not in result.details


def test_message_is_headline_then_details() -> None:
    assert Comparison(False, "head", "a\nb").message == "head\na\nb"
    assert Comparison(False, "head").message == "head"


# ---- lists, tuples, strings, anything else ----


def test_lists_of_numeric_tuples_compare_as_arrays() -> None:
    result = compare([(0, 1, 0.5), (1, 2, 0.25)], [(0, 1, 0.5), (1, 3, 0.25)])
    assert result.headline == "values differ: 1 of 6 elements (16.7%) outside atol=1e-05, rtol=0.0001"
    assert "  (1, 1)                       3             2" in result.details


def test_lists_of_mixed_tuples_compare_item_by_item() -> None:
    want = [("L1H2", 0.5), ("L0H1", 0.3)]
    assert compare([("L1H2", 0.5 + 1e-7), ("L0H1", 0.3)], want).ok
    assert compare([["L1H2", 0.5], ["L0H1", 0.3]], want).ok  # a list where a tuple was expected is fine
    result = compare([("L1H2", 0.5), ("L0H1", 0.25)], want)
    assert result.headline.startswith("item 1 differs: ")
    assert result.headline.endswith("expected 0.3, got 0.25 (atol=1e-05, rtol=0.0001)")
    assert result.details == "expected: [('L1H2', 0.5), ('L0H1', 0.3)]\ngot:      [('L1H2', 0.5), ('L0H1', 0.25)]"
    assert compare([("L1H2", 0.5), ("L0H2", 0.3)], want).headline == "item 1 differs: item 0 differs: expected 'L0H1', got 'L0H2'"


def test_a_list_of_the_wrong_length_says_both_lengths() -> None:
    result = compare([("L1H2", 0.5)], [("L1H2", 0.5), ("L0H1", 0.3)])
    assert result.headline == "expected 2 items, got 1"
    assert result.details == "expected: [('L1H2', 0.5), ('L0H1', 0.3)]\ngot:      [('L1H2', 0.5)]"


def test_something_else_where_a_list_was_expected_is_named() -> None:
    result = compare({"L1H2": 0.5}, [("L1H2", 0.5)])
    assert result.headline == "expected a list of 1 items, got dict: {'L1H2': 0.5}"


@pytest.mark.parametrize(
    ("got", "want", "ok"),
    [
        ([[1, 2], [3]], [[1, 2], [3]], True),  # ragged expected value, e.g. heads per layer
        ([[1, 2], [4]], [[1, 2], [3]], False),
        ([[1, 2], [3]], np.zeros((2, 2)), False),  # a ragged student answer
    ],
    ids=["equal", "differ", "ragged-got"],
)
def test_ragged_numeric_lists_compare_without_raising(got, want, ok) -> None:
    assert compare(got, want).ok is ok


def test_strings_compare_exactly_and_show_both_with_quotes() -> None:
    assert compare("France", "France").ok
    assert compare(" France", "France").message == "expected 'France', got ' France'"
    assert compare(3, "France").message == "expected a str, got int: 3"


def test_other_values_compare_with_equality() -> None:
    assert compare(None, None).ok
    assert compare({"a": 1}, {"a": 1}).ok
    assert compare({"a": 1}, {"a": 2}).message == "expected {'a': 2}, got {'a': 1}"


# ---- diagnose: naming the mistake ----


def test_diagnose_names_the_first_mistake_that_reproduces_the_answer() -> None:
    want = torch.arange(6.0).reshape(2, 3)
    mistakes = {"you returned the input": torch.zeros(2, 3), "the pattern is transposed: [key, query]": want.T}
    assert diagnose(want.T.clone(), mistakes) == "the pattern is transposed: [key, query]"
    assert diagnose(want.T.clone(), {"first": want.T, "second": want.T}) == "first"


def test_diagnose_returns_none_when_no_mistake_matches() -> None:
    assert diagnose(torch.ones(2), {"zeros": torch.zeros(2)}) is None
    assert diagnose(1.0, {}) is None


def test_diagnose_evaluates_callables_lazily_and_ignores_those_that_raise() -> None:
    calls = []

    def later() -> float:
        calls.append("later")
        return 5.0

    assert diagnose(4.0, {"broken": lambda: 1 / 0, "four": lambda: 4.0, "later": later}) == "four"
    assert calls == []


def test_diagnose_uses_the_tolerance() -> None:
    assert diagnose(1.001, {"close": 1.0}, Tolerance(atol=0.01, rtol=0)) == "close"
    assert diagnose(1.001, {"close": 1.0}, Tolerance(atol=1e-6, rtol=0)) is None


def test_diagnose_ignores_candidates_of_another_shape_or_kind() -> None:
    assert diagnose(torch.zeros(2), {"wrong shape": torch.zeros(3), "a string": "zeros", "match": [0.0, 0.0]}) == "match"


def test_matches_is_false_instead_of_raising() -> None:
    class Unequal:
        def __eq__(self, other: object) -> bool:
            raise RuntimeError("no")

    assert matches(Unequal(), object()) is False
    assert matches(1.0, 1.0) is True


# ---- helpers ----


def test_short_shows_arrays_by_shape_and_cuts_long_reprs() -> None:
    assert short(torch.zeros(2, 3)) == "Tensor(shape=(2, 3), dtype=float32)"
    assert short(np.zeros(4, dtype=np.int64)) == "ndarray(shape=(4,), dtype=int64)"
    assert short(3.5) == "3.5"
    assert short("x" * 300, 10) == "'xxxxxxxx…"
    assert len(short(list(range(1000)))) == 200


def test_to_numpy_returns_none_for_non_numeric_values() -> None:
    assert to_numpy("abc") is None
    assert to_numpy(["a", 1]) is None
    assert to_numpy({"a": 1}) is None
    assert to_numpy([1, 2]).dtype == np.float64


def test_tolerance_prints_compactly() -> None:
    assert str(Tolerance()) == "atol=1e-05, rtol=0.0001"
    assert str(Tolerance(atol=0.5, rtol=0)) == "atol=0.5, rtol=0"
