"""The wire format between the grader and the code it grades.

Nothing that crosses is ever unpickled: a message is a JSON tree plus raw byte blobs, and the
decoder only ever builds plain values from it. Types that cross:

- ``None``, ``bool``, ``int``, ``float`` (NaN and infinities included), ``str``;
- lists, tuples and dicts of these (dict keys of the same kinds);
- torch tensors and numpy arrays: dtype (from a fixed list), shape and the raw bytes;
- ``bytes`` (a PNG of a student's figure, say).

Everything else is an *extension*: a tag such as ``{"$cache": ...}`` or ``{"$handle": ...}`` that
each side encodes and decodes with hooks of its own (see grader.student.executor and .client).
A subclass of a plain type (a ``str`` whose ``==`` is always true, a tensor whose ``.numpy()``
lies) arrives as the plain type: the decoder builds a new ``str`` or tensor from the data, so the
grader never runs a method that student code defined.

Frame: 8-byte length, then a 4-byte header length, the UTF-8 JSON header, then the blobs.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

MAX_DEPTH = 64  # nesting of lists, tuples and dicts
MAX_ITEMS = 1_000_000  # values in one message, blobs excluded
DEFAULT_MAX_FRAME = 512 * 1024 * 1024  # bytes; a GPT-2 small cache on a short prompt is ~10 MB

# dtype name -> (numpy dtype to read the bytes as, torch dtype name). bfloat16 travels as raw
# 16-bit words because numpy has no bfloat16.
DTYPES: dict[str, str] = {
    "float16": "float16",
    "float32": "float32",
    "float64": "float64",
    "bfloat16": "uint16",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "uint8": "uint8",
    "bool": "bool",
    "complex64": "complex64",
    "complex128": "complex128",
}


class CodecError(ValueError):
    """A value cannot be encoded, or a message is not a valid encoding."""


class Unencodable(CodecError):
    """A value of a type that cannot cross; `value` is the object, for a caller that keeps it as a handle."""

    def __init__(self, value: Any) -> None:
        super().__init__(f"a {type(value).__name__} cannot cross the boundary")
        self.value = value


EncodeHook = Callable[[Any, "Encoder"], Any]  # (value, encoder) -> extension tree, or None: not mine
Fallback = Callable[[Any, "Encoder"], Any]  # (value of no known type, encoder) -> extension tree
DecodeHooks = Mapping[str, Callable[[Any], Any]]  # "$tag" -> payload (already decoded) -> value


class Encoder:
    """Turns a value into (tree, blobs). `hook` is asked first about every value that is not a
    plain type; it returns an extension tree (``{"$tag": payload}``) or None. `fallback` makes a
    tree for a value of no known type; without one, such a value raises Unencodable."""

    def __init__(self, hook: EncodeHook | None = None, fallback: Fallback | None = None) -> None:
        self.hook = hook
        self.fallback = fallback
        self.blobs: list[bytes] = []
        self._count = 0

    def blob(self, data: bytes) -> int:
        self.blobs.append(data)
        return len(self.blobs) - 1

    def encode(self, value: Any, depth: int = 0) -> Any:
        self._count += 1
        if depth > MAX_DEPTH:
            raise CodecError(f"nested more than {MAX_DEPTH} levels deep")
        if self._count > MAX_ITEMS:
            raise CodecError(f"more than {MAX_ITEMS} values")
        # Exact types first: a subclass may override anything, so it is converted below.
        kind = type(value)
        if value is None or kind is bool or kind is str:
            return value
        if kind is int:
            return value if abs(value) < 2**63 else {"$bigint": str(value)}
        if kind is float:
            return value if math.isfinite(value) else {"$float": repr(value)}
        if self.hook is not None:
            extension = self.hook(value, self)
            if extension is not None:
                return extension
        if _is_tensor(value):
            return self._tensor(value)
        if isinstance(value, np.ndarray):
            return {"$ndarray": self._array(np.asarray(value))}
        if isinstance(value, (np.generic,)):
            return self.encode(value.item(), depth)
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            return self.encode(int(value), depth)
        if isinstance(value, float):
            return self.encode(float(value), depth)
        if isinstance(value, str):
            return str.__str__(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return {"$bytes": self.blob(bytes(value))}
        if isinstance(value, tuple) or type(value).__name__ == "Size":
            return {"$tuple": [self.encode(v, depth + 1) for v in tuple.__iter__(tuple(value))]}
        if isinstance(value, list):
            return {"$list": [self.encode(v, depth + 1) for v in list.__iter__(value)]}
        if isinstance(value, dict):
            return {"$dict": [[self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in dict.items(value)]}
        if self.fallback is not None:
            return self.fallback(value, self)
        raise Unencodable(value)

    def _tensor(self, tensor: Any) -> dict[str, Any]:
        import torch

        plain = torch.Tensor.detach(tensor).as_subclass(torch.Tensor)  # the data, not a subclass's story
        dtype = str(plain.dtype).removeprefix("torch.")
        if dtype not in DTYPES:
            raise CodecError(f"a tensor of dtype {dtype} cannot cross the boundary")
        if dtype == "bfloat16":
            plain = plain.view(torch.int16)
        array = plain.cpu().contiguous().numpy()
        return {"$tensor": {"dtype": dtype, "shape": list(array.shape), "blob": self.blob(array.tobytes()),
                            "device": str(tensor.device)}}

    def _array(self, array: np.ndarray) -> dict[str, Any]:
        dtype = array.dtype.name
        if dtype not in DTYPES or dtype == "bfloat16":
            raise CodecError(f"a numpy array of dtype {dtype} cannot cross the boundary")
        return {"dtype": dtype, "shape": list(array.shape), "blob": self.blob(np.ascontiguousarray(array).tobytes())}


def _is_tensor(value: Any) -> bool:
    torch = _torch_if_loaded()
    return torch is not None and isinstance(value, torch.Tensor)


def _torch_if_loaded() -> Any:
    import sys

    return sys.modules.get("torch")


class Decoder:
    """Builds plain values from (tree, blobs). Extension tags go to `hooks`; an unknown tag, a
    malformed tree or blob is a CodecError. Tensors land on `device` when given."""

    def __init__(self, blobs: list[bytes], hooks: DecodeHooks | None = None, device: str | None = None) -> None:
        self.blobs = blobs
        self.hooks = hooks or {}
        self.device = device

    def decode(self, tree: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise CodecError(f"nested more than {MAX_DEPTH} levels deep")
        if type(tree) is str:
            return _valid_text(tree)
        if tree is None or type(tree) in (bool, int, float):
            return tree
        if type(tree) is not dict or len(tree) != 1:
            raise CodecError(f"not a valid encoding: {type(tree).__name__}")
        (tag, payload), = tree.items()
        if tag == "$list":
            return [self.decode(v, depth + 1) for v in _list(payload)]
        if tag == "$tuple":
            return tuple(self.decode(v, depth + 1) for v in _list(payload))
        if tag == "$dict":
            out = {}
            for pair in _list(payload):
                if type(pair) is not list or len(pair) != 2:
                    raise CodecError("a dict entry must be a [key, value] pair")
                key = self.decode(pair[0], depth + 1)
                if not isinstance(key, (str, int, float, bool, tuple, type(None))):
                    raise CodecError(f"a dict key cannot be a {type(key).__name__}")
                out[key] = self.decode(pair[1], depth + 1)
            return out
        if tag == "$bigint":
            return int(_str(payload))
        if tag == "$float":
            if payload not in ("nan", "inf", "-inf"):
                raise CodecError(f"not a float: {payload!r}")
            return float(payload)
        if tag == "$bytes":
            return self._blob(payload)
        if tag == "$ndarray":
            return self._array(payload)
        if tag == "$tensor":
            return self._tensor(payload)
        if tag in self.hooks:
            return self.hooks[tag](self.decode(payload, depth + 1))
        raise CodecError(f"unknown tag {tag!r}")

    def _blob(self, index: Any) -> bytes:
        if type(index) is not int or not 0 <= index < len(self.blobs):
            raise CodecError("a blob reference points nowhere")
        return self.blobs[index]

    def _array(self, spec: Any) -> np.ndarray:
        if type(spec) is not dict:
            raise CodecError("an array must be described by a dict")
        dtype = spec.get("dtype")
        if dtype not in DTYPES:
            raise CodecError(f"dtype {dtype!r} is not allowed")
        shape = spec.get("shape")
        if type(shape) is not list or not all(type(n) is int and n >= 0 for n in shape) or len(shape) > 16:
            raise CodecError("an array's shape must be a list of at most 16 sizes")
        data = self._blob(spec.get("blob"))
        numpy_dtype = np.dtype(DTYPES[dtype])
        if len(data) != numpy_dtype.itemsize * math.prod(shape):
            raise CodecError(f"{len(data)} bytes do not make an array of shape {shape} and dtype {dtype}")
        return np.frombuffer(data, dtype=numpy_dtype).reshape(shape).copy()

    def _tensor(self, spec: Any) -> Any:
        import torch

        array = self._array(spec)
        tensor = torch.from_numpy(array)
        if spec["dtype"] == "bfloat16":
            tensor = tensor.view(torch.int16).view(torch.bfloat16)
        if self.device is not None and self.device != "cpu":
            tensor = tensor.to(self.device)
        return tensor


def _valid_text(text: str) -> str:
    """`text` as valid Unicode: JSON can carry lone surrogates, which no file or page can hold."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="replace").decode("utf-8")


def _list(payload: Any) -> list[Any]:
    if type(payload) is not list:
        raise CodecError("expected a list")
    return payload


def _str(payload: Any) -> str:
    if type(payload) is not str or len(payload) > 10_000:
        raise CodecError("expected a short string")
    return payload


# ---- frames ----


def dumps(value: Any, hook: EncodeHook | None = None, fallback: Fallback | None = None) -> bytes:
    """One message: header length, JSON header (the tree and the blob sizes), blobs."""
    encoder = Encoder(hook, fallback)
    tree = encoder.encode(value)
    header = json.dumps({"tree": tree, "blobs": [len(b) for b in encoder.blobs]}, separators=(",", ":")).encode()
    return b"".join([struct.pack("!I", len(header)), header, *encoder.blobs])


def loads(data: bytes, hooks: DecodeHooks | None = None, device: str | None = None) -> Any:
    """The value `data` encodes; CodecError for anything malformed."""
    if len(data) < 4:
        raise CodecError("a message shorter than its header")
    (header_length,) = struct.unpack("!I", data[:4])
    if header_length > len(data) - 4:
        raise CodecError("a header longer than the message")
    try:
        header = json.loads(data[4 : 4 + header_length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CodecError(f"the header is not valid JSON: {exc}") from None
    if type(header) is not dict or type(header.get("blobs")) is not list:
        raise CodecError("the header must hold the tree and the blob sizes")
    sizes = header["blobs"]
    if not all(type(n) is int and n >= 0 for n in sizes) or sum(sizes) != len(data) - 4 - header_length:
        raise CodecError("the blob sizes do not add up to the message")
    blobs, offset = [], 4 + header_length
    for size in sizes:
        blobs.append(data[offset : offset + size])
        offset += size
    try:
        return Decoder(blobs, hooks, device).decode(header.get("tree"))
    except RecursionError:
        raise CodecError("nested too deep") from None


def write_frame(sock: Any, payload: bytes) -> None:
    sock.sendall(struct.pack("!Q", len(payload)) + payload)


def frame_length(prefix: bytes, limit: int = DEFAULT_MAX_FRAME) -> int:
    (length,) = struct.unpack("!Q", prefix)
    if length > limit:
        raise CodecError(f"a message of {length / 2**20:.0f} MiB, over the {limit / 2**20:.0f} MiB limit")
    return length
