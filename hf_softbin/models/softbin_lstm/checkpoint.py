"""The checkpoint file format, and the model classes' save and load: `model.safetensors` with a digest and its config,
written so a crash loses nothing, read once and checked before anything is built.

A weights file records in its metadata the format (`softbin-packed-1` or `softbin-master-1`), the SHA-256 of its
tensor data and the config it was saved with. A save stages every file in a private folder inside the target
directory, moves the other files in and the weights last: a directory whose `config.json` disagrees with its weights
is the trace of an interrupted save (or of a hand edit), and the weights, which carry their config, still load.

`CheckpointMixin` gives the model classes `save_pretrained` and `from_pretrained` in these terms: a quantized model
saves its packed tensors (sign bits, codes, scalars) or, with `packed=False`, its float master weights; loading reads
config.json once, the weights header once and hashes the tensor data once (streamed), then lets Transformers build the
model.

This file imports only its siblings (relatively), so checkpoints carry it as remote code.
"""

import contextlib
import copy
import hashlib
import inspect
import json
import os
import shutil
import struct
import tempfile

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_save
from transformers import PretrainedConfig
from transformers.dynamic_module_utils import custom_object_save
from transformers.utils import logging

from .matrices import PackedMatrix
from .quantizers import STORAGE_DTYPES

logger = logging.get_logger(__name__)

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
                       "pq_subvectors", "pq_codebook_size", "pq_codebook_storage", "pq_row_scale",
                       "output_residual_rows", "checkpoint_format")
DOWNLOAD_KWARGS = ("revision", "token", "cache_dir", "local_files_only", "subfolder", "force_download")
PUSH_MESSAGE = ("a model alone does not make a complete Hub upload (its tokenizer, metrics and model card live beside "
                "it): save it with its tokenizer, then run `hf-softbin push DIRECTORY REPO_ID`, which uploads the "
                "packed checkpoint, tokenizer, remote code and a model card with the measured metrics")
_DIGEST_PLACEHOLDER = "0" * 64
# safetensors' names of the dtypes a checkpoint holds; it orders tensors by dtype size (largest first), then by name.
_SAFETENSORS_DTYPES = {torch.float64: "F64", torch.int64: "I64", torch.float32: "F32", torch.int32: "I32",
                       torch.float16: "F16", torch.bfloat16: "BF16", torch.uint8: "U8", torch.int8: "I8"}


# ---- the weights file ----------------------------------------------------------------------------------------------


def _weights_metadata(checkpoint_format: str, config: dict, digest: str = _DIGEST_PLACEHOLDER) -> dict[str, str]:
    return {"format": "pt", FORMAT_KEY: FORMATS[checkpoint_format], DIGEST_KEY: digest,
            CONFIG_KEY: json.dumps(config, sort_keys=True)}


def serialize_weights(tensors: dict[str, torch.Tensor], checkpoint_format: str, config: dict) -> bytes:
    """The bytes of a weights file: serialized once with a placeholder digest, then the digest of the tensor data
    written in its place."""
    tensors = {name: tensor.detach().contiguous().cpu() for name, tensor in tensors.items()}
    data = bytearray(safetensors_save(tensors, metadata=_weights_metadata(checkpoint_format, config)))
    payload_start = 8 + struct.unpack("<Q", data[:8])[0]
    where = data.find(f'"{_DIGEST_PLACEHOLDER}"'.encode(), 8, payload_start)
    digest = hashlib.sha256(data[payload_start:]).hexdigest()
    data[where + 1 : where + 1 + len(digest)] = digest.encode()
    return bytes(data)


def weights_file_size(tensors: dict[str, torch.Tensor], checkpoint_format: str, config: dict) -> int:
    """The size `serialize_weights` would give, from the tensors' shapes and dtypes alone (they may be on the meta
    device): the 8-byte header length, safetensors' JSON header padded to 8 bytes, the tensor data."""
    entries, offset = [], 0
    for name, tensor in sorted(tensors.items(), key=lambda item: (-item[1].element_size(), item[0])):
        size = tensor.numel() * tensor.element_size()
        info = {"dtype": _SAFETENSORS_DTYPES[tensor.dtype], "shape": list(tensor.shape),
                "data_offsets": [offset, offset + size]}
        entries.append((name, info))
        offset += size
    metadata = _weights_metadata(checkpoint_format, config)
    header = json.dumps({"__metadata__": metadata, **dict(entries)}, separators=(",", ":"), ensure_ascii=False)
    header_bytes = len(header.encode("utf-8"))
    return 8 + header_bytes + (-header_bytes % 8) + offset


class WeightsFile:
    """A `model.safetensors` opened once: its metadata and tensor shapes from the header, its tensor data checked
    against the digest it records (hashed as a stream, never held in memory; `verify=False` reads the header only).
    A truncated or corrupted file is an error naming it."""

    def __init__(self, path: str, verify: bool = True):
        self.path = path
        try:
            with safe_open(path, "pt") as handle:
                self.metadata: dict[str, str] = handle.metadata() or {}
                self.shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
        except (SafetensorError, OSError) as err:
            raise ValueError(f"{path}: corrupted or truncated weights file, not readable as safetensors "
                             f"({err})") from None
        expected = self.metadata.get(DIGEST_KEY)
        if verify and expected is not None and self._payload_digest() != expected:
            raise ValueError(f"{path}: corrupted: tensor data does not match the SHA-256 recorded when it was saved")

    def _payload_digest(self) -> str:
        digest = hashlib.sha256()
        with open(self.path, "rb") as handle:
            handle.seek(8 + struct.unpack("<Q", handle.read(8))[0])
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    @property
    def saved_config(self) -> dict | None:
        """The config the file was saved with (None for files written before hf-softbin 0.2)."""
        text = self.metadata.get(CONFIG_KEY)
        return json.loads(text) if text else None

    def check(self, expected: dict[str, tuple[int, ...]], description: str) -> None:
        """Compare every tensor name and shape with what the model expects; one error lists all problems."""
        found = self.shapes
        problems = [f"tensor {name} is missing" for name in sorted(expected.keys() - found.keys())]
        problems += [f"tensor {name} is not part of this model" for name in sorted(found.keys() - expected.keys())]
        problems += [
            f"tensor {name} has shape {list(found[name])}, the config implies {list(shape)}"
            for name, shape in sorted(expected.items()) if name in found and found[name] != shape
        ]
        if problems:
            raise ValueError(f"{self.path} does not match its config ({description}): " + "; ".join(problems))


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


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


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


def _write_to_disk(path: str, data: bytes) -> None:
    """Write and flush to disk (inside a staging folder: the move into place is what makes it atomic)."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


# ---- the model classes' save and load ------------------------------------------------------------------------------


class CheckpointMixin:
    """`save_pretrained` and `from_pretrained` of the model classes, in this file's format (a mixin placed before
    `PreTrainedModel`)."""

    @property
    def is_packed(self) -> bool:
        return self.config.checkpoint_format == "packed"

    # ---- saving ------------------------------------------------------------------------------------------------

    def checkpoint_config(self, checkpoint_format: str) -> PretrainedConfig:
        """The config a save in `checkpoint_format` writes, in config.json and inside the weights: the format, the
        remote code of the config, both Auto classes and the text-scoring pipeline, the dtype and architecture."""
        from .pipeline_text_scoring import declare_pipeline  # also makes Transformers copy that file as remote code

        config = copy.deepcopy(self.config)
        config.checkpoint_format = checkpoint_format
        config.dtype = str(self.dtype).split(".")[1]
        config.architectures = [type(self).__name__]
        module = type(self).__module__.rsplit(".", 1)[-1]
        config.auto_map = {**(getattr(config, "auto_map", None) or {}),
                           "AutoConfig": f"{type(config).__module__.rsplit('.', 1)[-1]}.{type(config).__name__}",
                           "AutoModel": f"{module}.{type(self.base_model).__name__}"}
        if self.base_model is not self:
            config.auto_map["AutoModelForCausalLM"] = f"{module}.{type(self).__name__}"
        declare_pipeline(config)
        return config

    def save_pretrained(self, save_directory, packed: bool | None = None, is_main_process: bool = True,
                        push_to_hub: bool = False, **kwargs):
        """Save config, generation config, remote code and weights. Quantized models save packed tensors unless
        `packed=False`. Every file is staged first; the weights file, which carries its config, is moved into place
        last."""
        if push_to_hub:
            raise ValueError(f"save_pretrained(push_to_hub=True) is not supported: {PUSH_MESSAGE}")
        if packed is None:
            packed = self.config.is_quantized
        if packed and not self.config.is_quantized:
            raise ValueError("save_pretrained(packed=True) needs a quantized model; this one is full precision "
                             "(every part of config.quantization is 'float')")
        if not packed and self.is_packed:
            raise ValueError("this model was loaded from a packed checkpoint and has no float master weights to save; "
                             "use packed=True")
        if not is_main_process:
            return
        checkpoint_format = "packed" if packed else "master"
        tensors = self.packed_state_dict() if packed else self.master_state_dict()
        config = self.checkpoint_config(checkpoint_format)
        with staged_save(str(save_directory)) as staging:
            custom_object_save(self, staging, config=config)  # the remote-code files
            config.save_pretrained(staging)
            if self.can_generate():
                self.generation_config.save_pretrained(staging)
            _write_to_disk(os.path.join(staging, WEIGHTS_NAME),
                           serialize_weights(tensors, checkpoint_format, config.to_dict()))

    def push_to_hub(self, *args, **kwargs):
        raise ValueError(f"model.push_to_hub() is not supported: {PUSH_MESSAGE}")

    @torch.no_grad()
    def master_state_dict(self) -> dict[str, torch.Tensor]:
        """Float32 copies of every float tensor (latent weights included); integer buffers (PQ codes) as they are."""
        return {name: tensor.detach().float().clone() if tensor.is_floating_point() else tensor.detach().clone()
                for name, tensor in self.state_dict().items()}

    @torch.no_grad()
    def packed_state_dict(self) -> dict[str, torch.Tensor]:
        """What each matrix stores packed, and the other floats at storage precision (float32 in float parts)."""
        tensors, owned = {}, set()
        for prefix, module in self.matrices().items():
            for name, tensor in module.packed_tensors().items():
                tensors[f"{prefix}.{name}"] = tensor.contiguous()
            owned.update(f"{prefix}.{name}" for name in module.state_dict())
        storage_dtype = STORAGE_DTYPES[self.config.float_storage_dtype]
        for name, tensor in self.state_dict().items():
            if name not in owned:
                keep = storage_dtype if self.config.quantized(self.part_of(name)) else torch.float32
                tensors[name] = tensor.detach().to(keep).contiguous()
        return tensors

    @staticmethod
    def part_of(name: str) -> str:
        """The part ("embedding", "lstm", "output") a tensor of the state dict belongs to."""
        if "lstm." in name:
            return "lstm"
        if "embedding" in name:
            return "embedding"
        return "output"

    # ---- loading -----------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """Load a master or packed checkpoint, checked before anything is built.

        A missing, truncated or corrupted weights file, or tensors that disagree with the config, are errors naming
        the file and the tensor. Keyword arguments that are config fields override them (`keep_packed=True` keeps a
        packed model 1-bit in memory).
        """
        download_kwargs = {key: kwargs[key] for key in DOWNLOAD_KWARGS if key in kwargs}
        weights = WeightsFile(resolve_file(pretrained_model_name_or_path, WEIGHTS_NAME, download_kwargs))
        config_file = resolve_file(pretrained_model_name_or_path, CONFIG_NAME, download_kwargs)
        on_disk = _read_json(config_file)
        config = kwargs.pop("config", None)
        if isinstance(config, PretrainedConfig):
            values = config.to_dict()
        elif config is None:
            values = dict(on_disk)
        else:  # a config from another directory or Hub id
            values = cls.config_class.from_pretrained(config, **download_kwargs).to_dict()
        config_fields = set(inspect.signature(cls.config_class.__init__).parameters) - {"self", "kwargs"}
        overrides = {key: kwargs.pop(key) for key in list(kwargs) if key in config_fields}
        config = cls._reconcile_config(values, on_disk, weights, overrides, config_file)
        weights.check(cls._expected_tensors(config, weights), f"{config.checkpoint_format} format")
        wants_info = kwargs.pop("output_loading_info", False)
        kwargs.setdefault("dtype", torch.float32)
        model, info = super().from_pretrained(pretrained_model_name_or_path, *model_args, config=config,
                                              output_loading_info=True, **kwargs)
        missing = sorted(set(info.get("missing_keys") or []) - cls._head_names(model))
        problems = {"missing_keys": missing, "mismatched_keys": sorted(info.get("mismatched_keys") or [])}
        problems = {key: value for key, value in problems.items() if value}
        if problems:
            raise ValueError(f"{weights.path}: does not match its config.json: {problems}")
        model._finish_loading()
        return (model, info) if wants_info else model

    @classmethod
    def _reconcile_config(cls, values: dict, on_disk: dict, weights: WeightsFile, overrides: dict,
                          config_file: str) -> PretrainedConfig:
        """The config from `values` with the architecture the weights were saved with, and then `overrides`.

        Where config.json disagrees with the config stored in the weights file (an interrupted save, or a hand
        edit), the weights win, unless the caller set that field to something else on purpose.
        """
        values = dict(values)
        saved = weights.saved_config
        differing = {field: pair for field, pair in disagreeing_fields(on_disk, saved).items()
                     if values.get(field) == on_disk.get(field)}
        if differing:
            logger.warning(
                f"{weights.path} was saved with another config than {config_file} (an interrupted save or a hand edit): "
                f"{differing}; loading the weights with the config they were saved with. Save the model again to "
                "repair the directory."
            )
            values.update({field: saved.get(field) for field in differing})
        if "binarize" in overrides:
            values.pop("quantization", None)
        values.update(overrides)
        return cls.config_class.from_dict(values)

    @classmethod
    def _expected_tensors(cls, config, weights: WeightsFile) -> dict[str, tuple[int, ...]]:
        """Names and shapes the file must hold for this class. A base model reads a causal LM's file (its head is
        left out); a causal LM reads a base model's master file (its head initialized), not a packed one."""
        with torch.device("meta"):
            expected = {name: tuple(tensor.shape) for name, tensor in cls(config).state_dict().items()}
        found = weights.shapes
        prefix = cls.base_model_prefix + "."
        file_has_prefix = any(name.startswith(prefix) for name in found)
        model_has_prefix = any(name.startswith(prefix) for name in expected)
        if file_has_prefix and not model_has_prefix:
            head = {name: shape for name, shape in found.items() if not name.startswith(prefix)}
            return {**{prefix + name: shape for name, shape in expected.items()}, **head}
        if model_has_prefix and not file_has_prefix:
            if config.checkpoint_format == "packed":
                raise ValueError(f"{weights.path} holds a packed base model, without an output layer: load it with "
                                 "AutoModel (a packed file has no float master to start an output layer from)")
            return {name.removeprefix(prefix): shape for name, shape in expected.items() if name.startswith(prefix)}
        return expected

    @staticmethod
    def _head_names(model) -> set[str]:
        prefix = model.base_model_prefix + "."
        return {name for name in model.state_dict() if not name.startswith(prefix)}

    def _finish_loading(self):
        if not self.is_packed:
            if self.config.keep_packed:
                logger.warning(f"keep_packed=True has no effect here: {self.config.name_or_path} holds float32 master "
                               "weights, not a packed checkpoint; the model holds float matrices in memory")
            return
        if not self.config.keep_packed:
            for module in self.modules():
                if isinstance(module, PackedMatrix):
                    module.unpack_()
        self.requires_grad_(False)
