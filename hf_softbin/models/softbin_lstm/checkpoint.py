"""The checkpoint file format: `model.safetensors` with a digest and its config, written so a crash loses nothing.

A weights file records in its metadata the format (`softbin-packed-1` or `softbin-master-1`), the SHA-256 of its
tensor data and the config it was saved with. A save stages every file in a private folder inside the target
directory, moves the other files in and the weights last: a directory whose `config.json` disagrees with its weights
is the trace of an interrupted save (or of a hand edit), and the weights, which carry their config, still load.

This file imports nothing from hf_softbin outside its folder, so checkpoints carry it as remote code.
"""

import contextlib
import hashlib
import json
import os
import shutil
import struct
import tempfile

from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_save

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMATS = {"packed": "softbin-packed-1", "master": "softbin-master-1"}
FORMAT_KEY = "softbin_format"
DIGEST_KEY = "softbin_payload_sha256"
CONFIG_KEY = "softbin_config"
STAGING_PREFIX = ".tmp-save-"
# Fields that decide which tensors a checkpoint holds and what they mean: the weights file is their authority.
ARCHITECTURE_FIELDS = ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "projection_size",
                       "tie_word_embeddings", "quantization", "scaling", "learnable_scale", "float_storage_dtype",
                       "pq_subvectors", "pq_codebook_size", "pq_codebook_storage", "checkpoint_format")
_DIGEST_PLACEHOLDER = "0" * 64


# ---- atomic files --------------------------------------------------------------------------------------------------


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename it over `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


# ---- the weights file ----------------------------------------------------------------------------------------------


def write_weights(tensors: dict, path: str, checkpoint_format: str, config: dict) -> None:
    """Serialize once with a placeholder digest, then write the digest of the tensor data in its place."""
    tensors = {name: tensor.detach().contiguous().cpu() for name, tensor in tensors.items()}
    metadata = {"format": "pt", FORMAT_KEY: FORMATS[checkpoint_format], DIGEST_KEY: _DIGEST_PLACEHOLDER,
                CONFIG_KEY: json.dumps(config, sort_keys=True)}
    data = bytearray(safetensors_save(tensors, metadata=metadata))
    payload_start = _payload_start(data)
    marker = f'"{_DIGEST_PLACEHOLDER}"'.encode()
    where = data.find(marker, 8, payload_start)
    digest = hashlib.sha256(data[payload_start:]).hexdigest()
    data[where + 1 : where + 1 + len(digest)] = digest.encode()
    write_bytes_atomic(path, bytes(data))


def _payload_start(data: bytes) -> int:
    """Offset of the tensor data: after the 8-byte header length and the header."""
    return 8 + struct.unpack("<Q", data[:8])[0]


def read_metadata(path: str) -> dict[str, str]:
    """The metadata of a weights file, after checking that it is complete and its data matches its digest."""
    try:
        with safe_open(path, "pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path}: corrupted or truncated weights file, not readable as safetensors ({err})") from None
    expected = metadata.get(DIGEST_KEY)
    if expected is not None:
        with open(path, "rb") as handle:
            data = handle.read()
        if hashlib.sha256(data[_payload_start(data):]).hexdigest() != expected:
            raise ValueError(f"{path}: corrupted: tensor data does not match the SHA-256 recorded when it was saved")
    return metadata


def tensor_shapes(path: str) -> dict[str, tuple[int, ...]]:
    with safe_open(path, "pt") as handle:
        return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}


def check_tensors(path: str, expected: dict[str, tuple[int, ...]], description: str) -> None:
    """Compare every tensor name and shape in the file with what the model expects; one error lists all problems."""
    found = tensor_shapes(path)
    problems = [f"tensor {name} is missing" for name in sorted(expected.keys() - found.keys())]
    problems += [f"tensor {name} is not part of this model" for name in sorted(found.keys() - expected.keys())]
    problems += [
        f"tensor {name} has shape {list(found[name])}, the config implies {list(shape)}"
        for name, shape in sorted(expected.items()) if name in found and found[name] != shape
    ]
    if problems:
        raise ValueError(f"{path} does not match its config ({description}): " + "; ".join(problems))


def saved_config(metadata: dict[str, str]) -> dict | None:
    """The config a weights file was saved with (None for files written before hf-softbin 0.2)."""
    text = metadata.get(CONFIG_KEY)
    return json.loads(text) if text else None


def disagreeing_fields(on_disk: dict, saved: dict | None) -> dict[str, tuple]:
    """`{field: (config.json's value, the weights' value)}` for every architecture field where they differ."""
    if saved is None:
        return {}
    return {field: (on_disk.get(field), saved.get(field)) for field in ARCHITECTURE_FIELDS
            if on_disk.get(field) != saved.get(field)}


# ---- locating files ------------------------------------------------------------------------------------------------


def resolve_file(name_or_path: str | os.PathLike, filename: str, download_kwargs: dict) -> str:
    """The local path of `filename` in a model directory or Hub repository, with an error that says which it was."""
    from transformers.utils import cached_file

    location = os.fspath(name_or_path)
    if os.path.isdir(location):
        path = os.path.join(location, download_kwargs.get("subfolder") or "", filename)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{location}: no {filename} in this model directory")
        return path
    could_be_hub_id = not os.path.isabs(location) and not location.startswith(".") and location.count("/") <= 1
    if not could_be_hub_id:
        raise FileNotFoundError(f"{location}: no such model directory")
    try:
        return cached_file(location, filename, **download_kwargs)
    except OSError as err:
        raise FileNotFoundError(f"{location}: no such local directory, and as a Hugging Face Hub id it could not be "
                                f"loaded either ({str(err).splitlines()[0]})") from None


# ---- saving a directory --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def staged_save(directory: str):
    """Yield a private staging folder inside `directory`; on success move its files in, the weights file last.

    Staging folders that killed saves left behind (their process is gone) are removed first.
    """
    if os.path.isfile(directory):
        raise ValueError(f"save_pretrained: {directory} is a file, expected a directory")
    os.makedirs(directory, exist_ok=True)
    remove_abandoned_staging(directory)
    staging = tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=directory)
    try:
        yield staging
        names = sorted(os.listdir(staging), key=lambda name: name == WEIGHTS_NAME)
        for name in names:
            os.replace(os.path.join(staging, name), os.path.join(directory, name))
        _fsync_directory(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_abandoned_staging(directory: str) -> None:
    for name in os.listdir(directory):
        if not name.startswith(STAGING_PREFIX):
            continue
        pid = name[len(STAGING_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_directory(directory: str) -> None:
    if hasattr(os, "O_DIRECTORY"):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
