"""Minimal safetensors reader/writer (the format is a JSON header plus raw little-endian data).

Debian's torch 1.13 has no `safetensors` package, so this is the one place that
speaks the format on the Python side. Writes are atomic (temp file + rename).
"""
import json
import struct

import torch

from .atomic import write_atomic

_DTYPES = {
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "I64": (torch.int64, 8),
}
_NAMES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}


class SafetensorsError(Exception):
    pass


def load_file(path):
    """Returns {name: tensor} (CPU). Raises SafetensorsError naming the file when it is corrupt."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise SafetensorsError(f"{path}: cannot be read ({error})") from error
    if len(data) < 8:
        raise SafetensorsError(f"{path}: truncated (no header)")
    (header_length,) = struct.unpack("<Q", data[:8])
    if header_length > len(data) - 8:
        raise SafetensorsError(f"{path}: truncated or corrupt (header length {header_length})")
    try:
        header = json.loads(data[8 : 8 + header_length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SafetensorsError(f"{path}: corrupt header ({error})") from error
    base = 8 + header_length
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype_name = entry.get("dtype")
        if dtype_name not in _DTYPES:
            raise SafetensorsError(f"{path}: tensor {name} has unsupported dtype {dtype_name}")
        dtype, size = _DTYPES[dtype_name]
        begin, end = entry["data_offsets"]
        shape = entry["shape"]
        count = 1
        for dim in shape:
            count *= dim
        if end - begin != count * size or base + end > len(data):
            raise SafetensorsError(f"{path}: tensor {name} is truncated or has wrong offsets")
        raw = bytearray(data[base + begin : base + end])
        if count == 0:
            tensors[name] = torch.zeros(shape, dtype=dtype)
        else:
            tensors[name] = torch.frombuffer(raw, dtype=dtype).reshape(shape).clone()
    return tensors


def save_file(tensors, path, metadata=None):
    header = {}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        if tensor.dtype not in _NAMES:
            raise SafetensorsError(f"cannot save {name} with dtype {tensor.dtype}")
        blob = tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else tensor.view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": _NAMES[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * ((8 - len(encoded) % 8) % 8)
    def write(handle):
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        for blob in blobs:
            handle.write(blob)

    write_atomic(path, write)
