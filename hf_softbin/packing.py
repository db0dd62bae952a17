"""Sign bits <-> bytes, and integrity checks for `model.safetensors` files.

Signs are packed row by row, 8 weights a byte, least significant bit first: a (rows, cols) matrix becomes a
(rows, ceil(cols / 8)) uint8 tensor, so every packed tensor still has a shape that can be checked against the config.
"""

import hashlib
import json
import struct

import numpy as np
import torch
from safetensors.torch import save as safetensors_save

from .atomic import write_bytes_atomic

PAYLOAD_DIGEST_KEY = "softbin_payload_sha256"


def packed_columns(cols: int) -> int:
    return (cols + 7) // 8


def pack_signs(weight: torch.Tensor) -> torch.Tensor:
    """uint8 bits of `weight >= 0` (sign(0) = +1), packed along each row."""
    positive = (weight.detach() >= 0).cpu().numpy()
    return torch.from_numpy(np.packbits(positive, axis=1, bitorder="little"))


def unpack_signs(bits: torch.Tensor, cols: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """+-1 matrix of shape (rows, cols) from packed bits."""
    positive = np.unpackbits(bits.cpu().numpy(), axis=1, count=cols, bitorder="little")
    signs = torch.from_numpy(positive).to(dtype)
    return signs.mul_(2).sub_(1)


def _split_file(data: bytes, path: str) -> tuple[dict, bytes]:
    if len(data) < 8:
        raise ValueError(f"{path}: not a safetensors file (only {len(data)} bytes)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > len(data) - 8:
        raise ValueError(f"{path}: truncated or corrupted safetensors file (header says {header_len} bytes, file has {len(data)})")
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: corrupted safetensors header ({err})") from None
    payload = data[8 + header_len :]
    end = max((info["data_offsets"][1] for key, info in header.items() if key != "__metadata__"), default=0)
    if end != len(payload):
        raise ValueError(f"{path}: truncated or corrupted safetensors file (tensors need {end} bytes of data, file has {len(payload)})")
    return header, payload


def save_safetensors_with_digest(tensors: dict[str, torch.Tensor], path: str, metadata: dict[str, str]) -> None:
    """Write a safetensors file whose metadata records the SHA-256 of its tensor data, atomically."""
    tensors = {name: tensor.detach().contiguous().cpu() for name, tensor in tensors.items()}
    draft = safetensors_save(tensors, metadata=metadata)
    _, payload = _split_file(draft, path)
    data = safetensors_save(tensors, metadata={**metadata, PAYLOAD_DIGEST_KEY: hashlib.sha256(payload).hexdigest()})
    write_bytes_atomic(path, data)


def verify_safetensors(path: str) -> dict[str, str]:
    """Check that `path` is complete and its data matches the recorded digest; return its metadata."""
    with open(path, "rb") as handle:
        data = handle.read()
    header, payload = _split_file(data, path)
    metadata = header.get("__metadata__") or {}
    expected = metadata.get(PAYLOAD_DIGEST_KEY)
    if expected is not None and hashlib.sha256(payload).hexdigest() != expected:
        raise ValueError(f"{path}: corrupted: tensor data does not match the SHA-256 recorded when it was saved")
    return metadata
