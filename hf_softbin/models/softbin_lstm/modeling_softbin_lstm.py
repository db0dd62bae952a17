"""The soft-binarized LSTM language model as a Transformers model.

Each weight matrix is a module of `matrices.py`, chosen per part by `config.quantization`; the recurrence runs in
PyTorch's fused LSTM kernel on the effective matrices, except for one-token decoding steps (explicit gate products)
and keep-packed models (products from the sign bits, step by step). `save_pretrained` writes the packed checkpoint of
a quantized model (sign bits, codes, scalars) or, with `packed=False`, the float master weights; `from_pretrained`
reads either and gives identical logits. The file format lives in `checkpoint.py`.

This file imports only its siblings (relatively), so saved checkpoints carry it as remote code.
"""

import copy
import inspect
import json
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import _VF, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput, logging

from .checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    check_tensors,
    read_metadata,
    resolve_file,
    saved_config,
    staged_save,
    tensor_shapes,
    write_weights,
)
from .configuration_softbin_lstm import SoftBinLSTMConfig
from .matrices import (
    BinaryMatrix,
    FloatMatrix,
    PackedBinaryMatrix,
    PackedMatrix,
    PackedPQMatrix,
    PQMatrix,
    QuantizedMatrix,
)
from .quantizers import round_ste

logger = logging.get_logger(__name__)

STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16}
DOWNLOAD_KWARGS = ("revision", "token", "cache_dir", "local_files_only", "subfolder", "force_download")
# Fields that decide which tensors a checkpoint holds and what they mean: the weights file is their authority.
ARCHITECTURE_FIELDS = ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "projection_size",
                       "tie_word_embeddings", "quantization", "scaling", "learnable_scale", "float_storage_dtype",
                       "pq_subvectors", "pq_codebook_size", "pq_codebook_storage", "checkpoint_format")
PUSH_MESSAGE = ("a model alone does not make a complete Hub upload (its tokenizer, metrics and model card live beside "
                "it): save it with its tokenizer, then run `hf-softbin push DIRECTORY REPO_ID`, which uploads the "
                "packed checkpoint, tokenizer, remote code and a model card with the measured metrics")


class PackedModelTrainingError(RuntimeError):
    """Raised when a model loaded from a packed checkpoint is put in training mode."""


class UnsupportedDeviceDtype(ValueError):
    """PyTorch's LSTM kernel cannot run on the requested combination of device and dtype."""


def make_matrix(config: SoftBinLSTMConfig, part: str, rows: int, cols: int, gamma_axis: str = "row") -> QuantizedMatrix:
    """The matrix module for `part` as the config stores it (master or packed)."""
    method = config.quantization[part]
    if method == "float":
        return FloatMatrix(rows, cols)
    storage_dtype = STORAGE_DTYPES[config.float_storage_dtype]
    packed = config.checkpoint_format == "packed"
    if method == "binary":
        cls = PackedBinaryMatrix if packed else BinaryMatrix
        return cls(rows, cols, scaling=config.scaling, learnable_scale=config.learnable_scale,
                   storage_dtype=storage_dtype, gamma_axis=gamma_axis)
    subvectors, codebook_size = config.pq_settings(part)
    cls = PackedPQMatrix if packed else PQMatrix
    return cls(rows, cols, subvectors=subvectors, codebook_size=codebook_size,
               codebook_storage=config.pq_codebook_storage, storage_dtype=storage_dtype)


class LSTMLayerWeights(nn.Module):
    """The two matrices and two biases of one LSTM layer, in PyTorch's gate order (input, forget, cell, output)."""

    def __init__(self, config: SoftBinLSTMConfig, input_size: int):
        super().__init__()
        self.weight_ih = make_matrix(config, "lstm", 4 * config.hidden_size, input_size)
        self.weight_hh = make_matrix(config, "lstm", 4 * config.hidden_size, config.hidden_size)
        self.bias_ih = nn.Parameter(torch.zeros(4 * config.hidden_size))
        self.bias_hh = nn.Parameter(torch.zeros(4 * config.hidden_size))


@dataclass
class LSTMState:
    """The recurrent state carried between calls: `h` and `c`, each (num_layers, batch, hidden_size)."""

    h: torch.Tensor
    c: torch.Tensor
    # Read by `generate()`: the state is a fixed-size summary of the past, it cannot be cropped.
    is_linear = (True,)
    is_croppable = False

    def detach(self) -> "LSTMState":
        return LSTMState(self.h.detach(), self.c.detach())

    def reorder_cache(self, beam_idx: torch.LongTensor):
        self.h = self.h.index_select(1, beam_idx.to(self.h.device))
        self.c = self.c.index_select(1, beam_idx.to(self.c.device))

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0


@dataclass
class SoftBinLSTMOutput(ModelOutput):
    """`hidden_states` (with `output_hidden_states=True`): the embedding output, then every LSTM layer's output."""

    last_hidden_state: torch.FloatTensor | None = None
    cache: LSTMState | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class SoftBinLSTMCausalLMOutput(ModelOutput):
    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cache: LSTMState | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


_KERNEL_CHECKED: dict[tuple[str, torch.dtype], str | None] = {}


def lstm_kernel_problem(device: torch.device, dtype: torch.dtype) -> str | None:
    """Why PyTorch's fused LSTM kernel cannot run on (device, dtype), or None when a tiny probe runs."""
    key = (str(device), dtype)
    if key not in _KERNEL_CHECKED:
        try:
            x = torch.zeros(1, 1, 2, device=device, dtype=dtype)
            weights = [torch.zeros(8, 2, device=device, dtype=dtype), torch.zeros(8, 2, device=device, dtype=dtype),
                       torch.zeros(8, device=device, dtype=dtype), torch.zeros(8, device=device, dtype=dtype)]
            _VF.lstm(x, (x, x), weights, True, 1, 0.0, False, False, True)
            _KERNEL_CHECKED[key] = None
        except RuntimeError as err:
            _KERNEL_CHECKED[key] = str(err).splitlines()[0]
    return _KERNEL_CHECKED[key]


class SoftBinLSTMPreTrainedModel(PreTrainedModel):
    config_class = SoftBinLSTMConfig
    config: SoftBinLSTMConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _is_stateful = True
    _no_split_modules = ["SoftBinLSTMModel"]

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the state is an LSTMState the forward pass creates, not a key/value cache

    def _init_weights(self, module):
        if isinstance(module, QuantizedMatrix):
            module.reset_parameters(self.config.initializer_range)
        elif isinstance(module, LSTMLayerWeights):
            with torch.no_grad():
                module.bias_ih.zero_()
                module.bias_hh.zero_()
        elif isinstance(module, SoftBinLSTMPreTrainedModel):
            with torch.no_grad():
                for parameter in module.parameters(recurse=False):
                    parameter.zero_()

    # ---- state ---------------------------------------------------------------------------------------------------

    @property
    def is_packed(self) -> bool:
        return self.config.checkpoint_format == "packed"

    def stored(self, tensor: torch.Tensor, part: str) -> torch.Tensor:
        """A float a quantized part keeps (bias, beta), rounded as a packed checkpoint stores it (a packed model
        loaded it at that precision: nothing to round, and decoding steps are spared four operations a bias)."""
        if self.config.quantized(part) and not self.is_packed:
            return round_ste(tensor, STORAGE_DTYPES[self.config.float_storage_dtype])
        return tensor

    def matrices(self) -> dict[str, QuantizedMatrix]:
        return {name: module for name, module in self.named_modules() if isinstance(module, QuantizedMatrix)}

    @torch.no_grad()
    def clip_latent_weights_(self):
        """Clip the latent weights of every binary matrix to [-1, 1]; a training loop calls this after each step."""
        for module in self.modules():
            if isinstance(module, BinaryMatrix):
                module.clip_latent_()

    @torch.no_grad()
    def reassign_pq_codes_(self) -> dict[str, float]:
        """Move the codes of every PQ matrix to the codewords nearest its latent rows; the fraction changed per matrix."""
        return {name: module.reassign_codes_() for name, module in self.matrices().items()
                if isinstance(module, PQMatrix)}

    def train(self, mode: bool = True):
        if mode and self.is_packed:
            raise PackedModelTrainingError(
                "this model was loaded from a packed checkpoint, which keeps only sign bits, codes and scalars: it "
                "cannot be trained. Load the float master checkpoint (saved with save_pretrained(dir, packed=False); "
                "a training run keeps it in OUTPUT_DIR/master) to continue training."
            )
        return super().train(mode)

    def _apply(self, fn, recurse=True):
        """Refuse a move to a device and dtype the LSTM kernel cannot run on, before anything moves."""
        probe = fn(torch.zeros(1))
        if probe.device.type != "meta":
            problem = lstm_kernel_problem(probe.device, probe.dtype)
            if problem:
                raise UnsupportedDeviceDtype(
                    f"PyTorch's LSTM kernel cannot run in {probe.dtype} on {probe.device} ({problem}); the model was "
                    "left where it was. Use float32 on this device, or a device that supports this dtype."
                )
        return super()._apply(fn, recurse)

    # ---- saving --------------------------------------------------------------------------------------------------

    def save_pretrained(self, save_directory, packed: bool | None = None, is_main_process: bool = True,
                        push_to_hub: bool = False, **kwargs):
        """Save config, weights and remote code. Quantized models save packed tensors unless `packed=False`.

        Every file is staged first; the weights file, which carries its config, is moved into place last.
        """
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
        tensors = self.packed_state_dict() if packed else self.master_state_dict()
        checkpoint_format = "packed" if packed else "master"
        original_config = self.config
        self.config = copy.deepcopy(original_config)
        try:
            self.config.checkpoint_format = checkpoint_format
            # Remote code: both Auto classes, and the text-scoring pipeline (this relative import makes Transformers
            # copy pipeline_text_scoring.py with the other remote-code files).
            from .pipeline_text_scoring import declare_pipeline

            declare_pipeline(self.config)
            with staged_save(str(save_directory)) as staging:
                super().save_pretrained(staging, state_dict={}, **kwargs)
                auto_map = dict(self.config.auto_map or {})
                module = type(self).__module__.rsplit(".", 1)[-1]
                auto_map["AutoModel"] = f"{module}.SoftBinLSTMModel"
                if isinstance(self, SoftBinLSTMForCausalLM):
                    auto_map["AutoModelForCausalLM"] = f"{module}.SoftBinLSTMForCausalLM"
                self.config.auto_map = auto_map
                self.config.save_pretrained(staging)
                for name in list(os.listdir(staging)):
                    if name.startswith("model") and name.endswith(".safetensors") or name.endswith(".index.json"):
                        os.remove(os.path.join(staging, name))
                write_weights(tensors, os.path.join(staging, WEIGHTS_NAME), checkpoint_format,
                                         self.config.to_dict())
        finally:
            self.config = original_config

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

    # ---- loading -------------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """Load a master or packed checkpoint, checked before anything is built.

        A missing, truncated or corrupted weights file, or tensors that disagree with the config, are errors naming
        the file and the tensor. Keyword arguments that are config fields override them (`keep_packed=True` keeps a
        packed model 1-bit in memory).
        """
        download_kwargs = {key: kwargs[key] for key in DOWNLOAD_KWARGS if key in kwargs}
        weights_file = resolve_file(pretrained_model_name_or_path, WEIGHTS_NAME, download_kwargs)
        metadata = read_metadata(weights_file)
        config = kwargs.pop("config", None)
        config_fields = set(inspect.signature(cls.config_class.__init__).parameters) - {"self", "kwargs"}
        overrides = {key: kwargs.pop(key) for key in list(kwargs) if key in config_fields}
        if not isinstance(config, PretrainedConfig):
            config = cls.config_class.from_pretrained(config or pretrained_model_name_or_path, **download_kwargs)
        config_file = resolve_file(pretrained_model_name_or_path, CONFIG_NAME, download_kwargs)
        config = cls._reconcile_config(config, config_file, saved_config(metadata), overrides, weights_file)
        check_tensors(weights_file, cls._expected_tensors(config, weights_file),
                                 f"{config.checkpoint_format} format")
        wants_info = kwargs.pop("output_loading_info", False)
        kwargs.setdefault("dtype", torch.float32)
        model, info = super().from_pretrained(pretrained_model_name_or_path, *model_args, config=config,
                                              output_loading_info=True, **kwargs)
        missing = sorted(set(info.get("missing_keys") or []) - cls._head_names(model))
        problems = {"missing_keys": missing, "mismatched_keys": sorted(info.get("mismatched_keys") or [])}
        problems = {key: value for key, value in problems.items() if value}
        if problems:
            raise ValueError(f"{weights_file}: does not match its config.json: {problems}")
        model._finish_loading()
        return (model, info) if wants_info else model

    @classmethod
    def _reconcile_config(cls, config, config_file: str, saved: dict | None, overrides: dict, weights_file: str):
        """`config` with the architecture the weights were saved with, and then `overrides`.

        Where config.json on disk disagrees with the config stored in the weights file (an interrupted save, or a
        hand edit), the weights win, unless the caller overrode that field on purpose.
        """
        values = config.to_dict()
        if saved is not None:
            with open(config_file, encoding="utf-8") as handle:
                on_disk = json.load(handle)
            differing = {field: (on_disk.get(field), saved.get(field)) for field in ARCHITECTURE_FIELDS
                         if on_disk.get(field) != saved.get(field) and values.get(field) == on_disk.get(field)}
            if differing:
                logger.warning(
                    f"{weights_file} was saved with another config than {config_file} (an interrupted save or a hand "
                    f"edit): {differing}; loading the weights with the config they were saved with. Save the model "
                    "again to repair the directory."
                )
                values.update({field: saved.get(field) for field in differing})
        if "binarize" in overrides:
            values.pop("quantization", None)
        values.update(overrides)
        return cls.config_class.from_dict(values)

    @classmethod
    def _expected_tensors(cls, config, weights_file: str) -> dict[str, tuple[int, ...]]:
        """Names and shapes the file must hold for this class. A base model reads a causal LM's file (its head is
        left out); a causal LM reads a base model's master file (its head initialized), not a packed one."""
        with torch.device("meta"):
            expected = {name: tuple(tensor.shape) for name, tensor in cls(config).state_dict().items()}
        found = tensor_shapes(weights_file)
        prefix = cls.base_model_prefix + "."
        file_has_prefix = any(name.startswith(prefix) for name in found)
        model_has_prefix = any(name.startswith(prefix) for name in expected)
        if file_has_prefix and not model_has_prefix:
            head = {name: shape for name, shape in found.items() if not name.startswith(prefix)}
            return {**{prefix + name: shape for name, shape in expected.items()}, **head}
        if model_has_prefix and not file_has_prefix:
            if config.checkpoint_format == "packed":
                raise ValueError(f"{weights_file} holds a packed base model, without an output layer: load it with "
                                 "AutoModel (a packed file has no float master to start an output layer from)")
            return {name.removeprefix(prefix): shape for name, shape in expected.items() if name.startswith(prefix)}
        return expected

    @staticmethod
    def _head_names(model) -> set[str]:
        prefix = model.base_model_prefix + "."
        return {name for name in model.state_dict() if not name.startswith(prefix)}

    def _finish_loading(self):
        if not self.is_packed:
            return
        if not self.config.keep_packed:
            for module in self.modules():
                if isinstance(module, PackedMatrix):
                    module.unpack_()
        self.requires_grad_(False)

    # ---- resizing ------------------------------------------------------------------------------------------------

    def resize_token_embeddings(self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None,
                                mean_resizing: bool = True):
        """Grow or shrink the vocabulary of a master model; new rows start at the mean of the existing ones."""
        if new_num_tokens is None:
            return self.get_input_embeddings()
        if pad_to_multiple_of:
            new_num_tokens = -(-new_num_tokens // pad_to_multiple_of) * pad_to_multiple_of
        if self.is_packed:
            raise ValueError("resize_token_embeddings: a packed checkpoint cannot be resized (its rows are sign bits "
                             "or codes); resize the float master (OUTPUT_DIR/master) and train it")
        if "pq" in (self.config.quantization["embedding"], self.config.quantization["output"]):
            raise ValueError("resize_token_embeddings: product-quantized vocabulary matrices cannot be resized; their "
                             "codebooks were fit to the old rows")
        matrices = {id(matrix): matrix for matrix in (self.get_input_embeddings(), getattr(self, "lm_head", None))
                    if matrix is not None}
        for matrix in matrices.values():
            _resize_rows_(matrix, new_num_tokens, mean_resizing)
        if hasattr(self, "lm_head_bias"):
            _resize_vector_(self, "lm_head_bias", new_num_tokens)
        self.config.vocab_size = new_num_tokens
        return self.get_input_embeddings()


@torch.no_grad()
def _resize_rows_(matrix: QuantizedMatrix, rows: int, mean_resizing: bool):
    for name, parameter in list(matrix.named_parameters(recurse=False)):
        if parameter.shape[0] != matrix.rows:
            continue  # a per-column BLLM gamma or a per-tensor scalar does not grow with the vocabulary
        grown = parameter.new_empty(rows, *parameter.shape[1:])
        keep = min(rows, matrix.rows)
        grown[:keep] = parameter[:keep]
        if rows > keep:
            fill = parameter.mean(dim=0) if mean_resizing else torch.zeros_like(parameter[0])
            grown[keep:] = fill
        setattr(matrix, name, nn.Parameter(grown, requires_grad=parameter.requires_grad))
    matrix.rows = rows


@torch.no_grad()
def _resize_vector_(owner: nn.Module, name: str, size: int):
    old = getattr(owner, name)
    grown = old.new_zeros(size)
    grown[: min(size, old.shape[0])] = old[:size]
    setattr(owner, name, nn.Parameter(grown, requires_grad=old.requires_grad))


class SoftBinLSTMModel(SoftBinLSTMPreTrainedModel):
    """Embedding and LSTM stack (and the optional projection): token ids in, hidden states and LSTM state out."""

    # One-token steps through the fused kernel as well (the path before `lstm_step`): for comparisons only
    # (benchmarks/memory.py measures both).
    fused_single_steps = False

    def __init__(self, config: SoftBinLSTMConfig):
        super().__init__(config)
        self.embeddings = make_matrix(config, "embedding", config.vocab_size, config.embedding_size, gamma_axis="col")
        bllm_embedding = config.quantization["embedding"] == "binary" and config.scaling == "bllm"
        self.embedding_bias = nn.Parameter(torch.zeros(config.embedding_size)) if bllm_embedding else None  # beta
        self.lstm = nn.ModuleList(
            LSTMLayerWeights(config, config.embedding_size if layer == 0 else config.hidden_size)
            for layer in range(config.num_hidden_layers)
        )
        if config.projection_size:
            self.projection = make_matrix(config, "output", config.projection_size, config.hidden_size)
            self.projection_bias = nn.Parameter(torch.zeros(config.projection_size))
        else:
            self.projection = None
        self.dropout = nn.Dropout(config.dropout)
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings

    def initial_state(self, batch_size: int, device=None, dtype=torch.float32) -> LSTMState:
        shape = (self.config.num_hidden_layers, batch_size, self.config.hidden_size)
        return LSTMState(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))

    def check_input_ids(self, input_ids: torch.Tensor):
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape (batch, sequence), got {tuple(input_ids.shape)}")
        if input_ids.numel() == 0:
            raise ValueError(f"input_ids is empty (shape {tuple(input_ids.shape)}): nothing to score")
        low, high = int(input_ids.min()), int(input_ids.max())
        if low < 0 or high >= self.config.vocab_size:
            bad = low if low < 0 else high
            raise ValueError(f"input_ids contains token id {bad}, outside the vocabulary [0, {self.config.vocab_size})")

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        embedded = self.embeddings.lookup(input_ids)
        if self.embedding_bias is not None:
            embedded = embedded + self.stored(self.embedding_bias, "embedding")
        return embedded

    def lstm_weights(self) -> list[torch.Tensor]:
        weights = []
        for layer in self.lstm:
            weights += [layer.weight_ih.matrix(), layer.weight_hh.matrix(),
                        self.stored(layer.bias_ih, "lstm"), self.stored(layer.bias_hh, "lstm")]
        return weights

    def run_lstm(self, inputs: torch.Tensor, state: LSTMState, mask: torch.Tensor | None,
                 every_layer: bool = False) -> tuple[torch.Tensor, LSTMState, tuple[torch.Tensor, ...] | None]:
        """The LSTM over (batch, time, features); `mask` marks real tokens (padding may be anywhere).

        Returns the last layer's output, the new state and each layer's output (with `every_layer`; the step and
        keep-packed paths, which go layer by layer anyway, always give them). Sequences run in
        PyTorch's fused LSTM kernel (layer by layer with `every_layer`: the same computation, dropout between layers
        included); one token at a time (decoding) runs through explicit gate products (`lstm_step`), which the
        fused kernel is slow at; keep-packed models never rebuild a float LSTM matrix (`run_packed_lstm`).
        """
        if self.lstm_kept_packed():
            return self.run_packed_lstm(inputs, state, mask)
        single_step = inputs.shape[1] == 1 and (mask is None or bool(mask.all()))
        if single_step and not self.training and not self.fused_single_steps:
            return self.lstm_step(inputs, state)
        if mask is None or bool(mask.all()):
            output, h, c, outputs = self._fused_lstm(inputs, None, (state.h, state.c), every_layer)
            return output, LSTMState(h, c), outputs
        # Move each row's real tokens to the front (stable), run them as a packed batch, then put outputs back.
        order = torch.argsort((~mask.bool()).to(torch.int8), dim=1, stable=True)
        lengths = mask.sum(dim=1)
        gathered = inputs.gather(1, order.unsqueeze(-1).expand_as(inputs))
        packed = pack_padded_sequence(gathered, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        hx = (state.h.index_select(1, packed.sorted_indices), state.c.index_select(1, packed.sorted_indices))
        data, h, c, layer_data = self._fused_lstm(packed.data, packed.batch_sizes, hx, every_layer)
        h, c = h.index_select(1, packed.unsorted_indices), c.index_select(1, packed.unsorted_indices)

        def unpack(rows: torch.Tensor) -> torch.Tensor:
            front, _ = pad_packed_sequence(packed._replace(data=rows), batch_first=True, total_length=inputs.shape[1])
            return torch.zeros_like(front).scatter_(1, order.unsqueeze(-1).expand_as(front), front)

        empty = (lengths == 0).view(1, -1, 1)
        outputs = tuple(unpack(rows) for rows in layer_data) if every_layer else None
        return unpack(data), LSTMState(torch.where(empty, state.h, h), torch.where(empty, state.c, c)), outputs

    def _fused_lstm(self, inputs, batch_sizes, hx, every_layer: bool):
        """`_VF.lstm` over all layers at once, or one layer at a time to keep every layer's output. `batch_sizes` is
        set for packed sequences (`inputs` is then their data)."""
        weights = self.lstm_weights()
        layers, dropout, training = self.config.num_hidden_layers, self.config.dropout, self.training

        def kernel(x, state, layer_weights, num_layers, layer_dropout):
            if batch_sizes is None:
                return _VF.lstm(x, state, layer_weights, True, num_layers, layer_dropout, training, False, True)
            return _VF.lstm(x, batch_sizes, state, layer_weights, True, num_layers, layer_dropout, training, False)

        if not every_layer:
            return *kernel(inputs, hx, weights, layers, dropout), None
        x, hs, cs, outputs = inputs, [], [], []
        for index in range(layers):
            if index:
                x = F.dropout(x, dropout, training)
            x, h, c = kernel(x, (hx[0][index:index + 1], hx[1][index:index + 1]), weights[4 * index:4 * index + 4],
                             1, 0.0)
            hs.append(h)
            cs.append(c)
            outputs.append(x)
        return x, torch.cat(hs), torch.cat(cs), tuple(outputs)

    def lstm_step(self, inputs: torch.Tensor,
                  state: LSTMState) -> tuple[torch.Tensor, LSTMState, tuple[torch.Tensor, ...]]:
        """One time step of (batch, 1, features), layer by layer: `torch.lstm_cell` multiplies the stacked gates'
        matrices (F.linear) and applies the cell in one call, where the fused kernel re-lays out every weight."""
        x, hs, cs = inputs[:, 0], [], []
        for index, layer in enumerate(self.lstm):
            x, c = torch.lstm_cell(x, (state.h[index], state.c[index]), layer.weight_ih.matrix(),
                                   layer.weight_hh.matrix(), self.stored(layer.bias_ih, "lstm"),
                                   self.stored(layer.bias_hh, "lstm"))
            hs.append(x)
            cs.append(c)
        return x.unsqueeze(1), LSTMState(torch.stack(hs), torch.stack(cs)), tuple(h.unsqueeze(1) for h in hs)

    def run_packed_lstm(self, inputs: torch.Tensor, state: LSTMState,
                        mask: torch.Tensor | None) -> tuple[torch.Tensor, LSTMState, tuple[torch.Tensor, ...]]:
        """The LSTM of a keep-packed model, every product computed from the sign bits (packed_products.py), so no
        float LSTM matrix exists, not even one gate's: layer by layer, the input products of all time steps at
        once, then the recurrence step by step. Same gates and order as the fused kernel (i, f, g, o); padded
        positions leave the state alone and output zeros, as the fused path does."""
        length = inputs.shape[1]
        real = None if mask is None or bool(mask.all()) else mask.bool().unsqueeze(-1)  # (batch, time, 1)
        x, hs, cs, layer_outputs = inputs, [], [], []
        for index, layer in enumerate(self.lstm):
            biases = self.stored(layer.bias_ih, "lstm") + self.stored(layer.bias_hh, "lstm")
            projected = layer.weight_ih.linear(x, biases)  # (batch, time, 4 * hidden)
            h, c, outputs = state.h[index], state.c[index], []
            for step in range(length):
                gates = layer.weight_hh.linear(h, projected[:, step])
                i, f, g, o = gates.chunk(4, dim=-1)
                new_c = torch.addcmul(f.sigmoid_() * c, i.sigmoid_(), g.tanh_())
                new_h = o.sigmoid_() * torch.tanh(new_c)
                if real is not None:
                    new_h, new_c = torch.where(real[:, step], new_h, h), torch.where(real[:, step], new_c, c)
                    outputs.append(new_h * real[:, step])
                else:
                    outputs.append(new_h)
                h, c = new_h, new_c
            x = torch.stack(outputs, dim=1) if length > 1 else outputs[0].unsqueeze(1)
            hs.append(h)
            cs.append(c)
            layer_outputs.append(x)
        return x, LSTMState(torch.stack(hs), torch.stack(cs)), tuple(layer_outputs)

    def project(self, lstm_output: torch.Tensor) -> torch.Tensor:
        """The optional projection after the last LSTM layer (identity without one)."""
        if self.projection is None:
            return lstm_output
        return self.projection.linear(lstm_output, self.stored(self.projection_bias, "output"))

    def lstm_kept_packed(self) -> bool:
        return any(isinstance(matrix, PackedMatrix) and matrix.resident_packed
                   for layer in self.lstm for matrix in (layer.weight_ih, layer.weight_hh))

    def forward(self, input_ids=None, attention_mask=None, cache: LSTMState | None = None, use_cache=None,
                output_hidden_states=None, return_dict=None, **kwargs) -> SoftBinLSTMOutput | tuple:
        r"""
        cache (`LSTMState`, *optional*): the state after the previous segment; a fresh (zero) state when omitted.
        attention_mask (`torch.LongTensor`, *optional*): 1 for real tokens, 0 for padding; padded positions do not
            change the state. Its last `sequence_length` columns apply to `input_ids` (generation passes the full mask).
        """
        if input_ids is None:
            raise ValueError("input_ids is required")
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        self.check_input_ids(input_ids)
        batch_size, length = input_ids.shape
        hidden = self.dropout(self.embed(input_ids))
        if cache is None:
            cache = self.initial_state(batch_size, hidden.device, hidden.dtype)
        elif isinstance(cache, tuple):
            cache = LSTMState(*cache)
        mask = attention_mask[:, -length:] if attention_mask is not None else None
        embedded = hidden
        hidden, state, layer_outputs = self.run_lstm(hidden, cache, mask, every_layer=bool(output_hidden_states))
        hidden = self.project(self.dropout(hidden))
        all_hidden = (embedded, *layer_outputs) if output_hidden_states else None
        state = state if use_cache else None
        if not return_dict:
            return tuple(value for value in (hidden, state, all_hidden) if value is not None)
        return SoftBinLSTMOutput(last_hidden_state=hidden, cache=state, hidden_states=all_hidden)


class SoftBinLSTMForCausalLM(SoftBinLSTMPreTrainedModel, GenerationMixin):
    """The LSTM language model: next-word logits over the vocabulary, shifted cross-entropy with `labels`."""

    def __init__(self, config: SoftBinLSTMConfig):
        super().__init__(config)
        self.model = SoftBinLSTMModel(config)
        if config.tie_word_embeddings:
            self.lm_head = None  # the output layer reads the embedding matrix (same rows, same scalars)
        else:
            self.lm_head = make_matrix(config, "output", config.vocab_size, config.output_input_size)
        self.lm_head_bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embeddings

    def output_matrix(self) -> QuantizedMatrix:
        return self.model.embeddings if self.lm_head is None else self.lm_head

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-word logits from the base model's hidden states (after the projection)."""
        return self.output_matrix().linear(hidden, self.stored(self.lm_head_bias, "output"))

    @torch.no_grad()
    def null_context_logits(self) -> torch.Tensor:
        """What the network predicts with no context at all: the output layer on a zero LSTM output, (vocab,)."""
        reference = self.lm_head_bias
        lstm_output = torch.zeros(1, 1, self.config.hidden_size, device=reference.device, dtype=reference.dtype)
        return self.logits(self.model.project(lstm_output))[0, 0]

    def _reorder_cache(self, cache: LSTMState, beam_idx: torch.LongTensor) -> LSTMState:
        cache.reorder_cache(beam_idx)
        return cache

    def prepare_inputs_for_generation(self, input_ids, cache=None, attention_mask=None, is_first_iteration=False,
                                      **kwargs):
        model_inputs = super().prepare_inputs_for_generation(
            input_ids, cache=cache, attention_mask=attention_mask, is_first_iteration=is_first_iteration, **kwargs
        )
        if cache is not None:
            model_inputs["input_ids"] = model_inputs["input_ids"][:, -1:]  # the state holds everything before
        return model_inputs

    def forward(self, input_ids=None, attention_mask=None, cache: LSTMState | None = None, labels=None,
                use_cache=None, output_hidden_states=None, return_dict=None, logits_to_keep: int = 0,
                **kwargs) -> SoftBinLSTMCausalLMOutput | tuple:
        r"""
        labels (`torch.LongTensor` of shape `(batch, sequence)`, *optional*): targets, shifted inside the model
            (position t predicts labels[t + 1]); -100 is ignored.
        logits_to_keep (`int`): if > 0, compute logits for the last `logits_to_keep` positions only.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.model(input_ids, attention_mask=attention_mask, cache=cache, use_cache=use_cache,
                             output_hidden_states=output_hidden_states, return_dict=True)
        hidden = outputs.last_hidden_state
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.logits(hidden).float()
        loss = None
        if labels is not None:
            if labels.shape != input_ids.shape:
                raise ValueError(f"labels must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(labels.shape)}")
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)
        if not return_dict:
            output = tuple(value for value in (logits, outputs.cache, outputs.hidden_states) if value is not None)
            return (loss,) + output if loss is not None else output
        return SoftBinLSTMCausalLMOutput(loss=loss, logits=logits, cache=outputs.cache, hidden_states=outputs.hidden_states)



def register_latent_clipping(optimizer: torch.optim.Optimizer, model: SoftBinLSTMPreTrainedModel):
    """Clip the latent weights of `model` after every `optimizer.step()`; returns the hook handle."""
    return optimizer.register_step_post_hook(lambda *_: model.clip_latent_weights_())


SoftBinLSTMConfig.register_for_auto_class()
SoftBinLSTMModel.register_for_auto_class("AutoModel")
SoftBinLSTMForCausalLM.register_for_auto_class("AutoModelForCausalLM")
