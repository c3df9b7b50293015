"""The wire format between grader and worker: plain values round-trip; nothing else is trusted."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
import torch

from grader.student import codec


def roundtrip(value, **kwargs):
    return codec.loads(codec.dumps(value), **kwargs)


@pytest.mark.parametrize("value", [None, True, False, 0, -7, 2**70, 1.5, "Paris", "", [1, "a"], (1, (2, 3)),
                                   {"a": 1, 2: [3.0]}, b"\x89PNG"])
def test_plain_values_round_trip(value) -> None:
    assert roundtrip(value) == value
    assert type(roundtrip(value)) is type(value)


def test_nan_and_infinities_round_trip() -> None:
    got = roundtrip([math.nan, math.inf, -math.inf])
    assert math.isnan(got[0]) and got[1:] == [math.inf, -math.inf]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.bool])
def test_tensors_round_trip_with_dtype_and_shape(dtype) -> None:
    tensor = (torch.arange(12).reshape(3, 4) % 3).to(dtype)
    got = roundtrip(tensor)
    assert type(got) is torch.Tensor and got.dtype == dtype and got.shape == (3, 4)
    assert torch.equal(got, tensor)


def test_a_non_contiguous_tensor_is_sent_as_its_values() -> None:
    tensor = torch.arange(6.0).reshape(2, 3).T
    assert torch.equal(roundtrip(tensor), tensor)


def test_numpy_arrays_round_trip() -> None:
    array = np.linspace(0, 1, 6).reshape(2, 3)
    got = roundtrip(array)
    assert isinstance(got, np.ndarray) and np.array_equal(got, array)


def test_a_str_subclass_arrives_as_a_plain_str() -> None:
    class Liar(str):
        def __eq__(self, other):
            return True

        __hash__ = str.__hash__

    got = roundtrip(Liar("wrong"))
    assert type(got) is str and got != "Paris"


def test_a_tensor_subclass_arrives_as_a_plain_tensor_with_its_real_data() -> None:
    class Liar(torch.Tensor):
        def numpy(self):  # what a naive comparison would call
            return np.ones(3, dtype=np.float32)

    got = roundtrip(torch.zeros(3).as_subclass(Liar))
    assert type(got) is torch.Tensor and torch.equal(got, torch.zeros(3))


def test_an_unknown_object_cannot_cross_without_a_fallback() -> None:
    with pytest.raises(codec.Unencodable):
        codec.dumps(object())


def test_a_fallback_decides_what_an_unknown_object_becomes() -> None:
    data = codec.dumps([object()], fallback=lambda value, encoder: {"$kept": 7})
    assert codec.loads(data, hooks={"$kept": lambda payload: ("handle", payload)}) == [("handle", 7)]


def test_self_referencing_lists_are_refused_not_followed_forever() -> None:
    loop: list = []
    loop.append(loop)
    with pytest.raises(codec.CodecError, match="nested"):
        codec.dumps(loop)


def _frame(tree, blobs=()) -> bytes:
    header = json.dumps({"tree": tree, "blobs": [len(b) for b in blobs]}).encode()
    return struct.pack("!I", len(header)) + header + b"".join(blobs)


@pytest.mark.parametrize("tree", [
    {"$pickle": "gASV..."},                     # an unknown tag
    {"a": 1},                                   # an untagged dict
    {"$tensor": {"dtype": "object", "shape": [1], "blob": 0}},
    {"$tensor": {"dtype": "float32", "shape": [2], "blob": 0}},   # 4 bytes for 2 floats
    {"$tensor": {"dtype": "float32", "shape": [1], "blob": 5}},   # a blob that is not there
    {"$dict": [[{"$list": []}, 1]]},            # an unhashable key
    {"$float": "__import__('os')"},
])
def test_malformed_messages_are_refused(tree) -> None:
    with pytest.raises(codec.CodecError):
        codec.loads(_frame(tree, [b"\x00" * 4]))


def test_blob_sizes_must_add_up_to_the_message() -> None:
    with pytest.raises(codec.CodecError):
        codec.loads(_frame(None, [b"abcd"]) + b"extra")


def test_a_frame_over_the_limit_is_refused_before_it_is_read() -> None:
    with pytest.raises(codec.CodecError, match="over the"):
        codec.frame_length(struct.pack("!Q", 2**40), limit=2**20)


def test_the_decoder_never_unpickles() -> None:
    import pickle

    with pytest.raises(codec.CodecError):
        codec.loads(pickle.dumps({"evil": True}))
