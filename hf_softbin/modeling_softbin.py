"""The soft-binarized LSTM language model as a Transformers model.

Every weight matrix is a `QuantizedMatrix`: a latent float matrix whose forward value is `alpha * sign(W)` when
binarized (DESIGN 2.1-2.2) and `W` itself otherwise. The recurrence runs in PyTorch's fused LSTM kernel on those
effective matrices. `save_pretrained` writes packed sign bits for a binarized model (the deployment checkpoint) or
the float master weights with `packed=False`; `from_pretrained` reads either and gives identical logits.

This file imports only its siblings (relatively), so saved checkpoints can carry it as remote code.
"""

import json
import os
import shutil
import tempfile
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import _VF, nn
from safetensors import safe_open
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import GenerationMixin, PreTrainedModel
from transformers.utils import ModelOutput, cached_file

from .binarize import Binarizer, analytic_scale, round_ste, sign_ste
from .configuration_softbin import SoftBinLSTMConfig
from .packing import pack_signs, packed_columns, save_safetensors_with_digest, unpack_signs, verify_safetensors

SAFE_WEIGHTS_NAME = "model.safetensors"
PACKED_FORMAT = "softbin-packed-1"
MASTER_FORMAT = "softbin-master-1"
STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


class PackedModelTrainingError(RuntimeError):
    """Raised when a model loaded from packed sign bits is put in training mode."""


class QuantizedMatrix(nn.Module):
    """One weight matrix of shape (rows, cols), binarized or not.

    Binarized, it holds the latent float `weight` and, when learned (or for the BLLM gamma of scaling "none"), a
    `scale` parameter of shape (rows, 1), (1, 1) or (1, cols). Loaded from a packed checkpoint, it holds `bits` and
    `scale` buffers instead and serves the matrix unpacked once at load time.
    """

    def __init__(self, rows, cols, *, binarized, scaling="row", learnable_scale=False, gamma_axis="row",
                 storage_dtype=torch.float32, packed=False):
        super().__init__()
        self.rows, self.cols = rows, cols
        self.binarized = binarized
        self.scaling = scaling
        self.binarizer = Binarizer(scaling, storage_dtype) if binarized else None
        self.storage_dtype = storage_dtype
        self.packed = packed and binarized
        self.deployed_weight = None
        self._cache_key, self._cache_value = None, None
        if scaling == "row" or (scaling == "none" and gamma_axis == "row"):
            self.scale_shape = (rows, 1)
        elif scaling == "tensor":
            self.scale_shape = (1, 1)
        else:
            self.scale_shape = (1, cols)
        self.has_scale_parameter = binarized and (learnable_scale or scaling == "none")
        if self.packed:
            self.register_buffer("bits", torch.zeros(rows, packed_columns(cols), dtype=torch.uint8))
            if scaling != "none" or self.has_scale_parameter:
                self.register_buffer("scale", torch.zeros(self.scale_shape, dtype=storage_dtype))
        else:
            self.weight = nn.Parameter(torch.empty(rows, cols))
            if self.has_scale_parameter:
                self.scale = nn.Parameter(torch.empty(self.scale_shape))

    def extra_repr(self):
        kind = f"binarized, scaling={self.scaling}" if self.binarized else "float"
        return f"rows={self.rows}, cols={self.cols}, {kind}" + (", packed" if self.packed else "")

    @torch.no_grad()
    def reset_parameters(self, init_range: float):
        if self.packed:
            return
        self.weight.uniform_(-init_range, init_range)
        if self.has_scale_parameter:
            self.reset_scale()

    @torch.no_grad()
    def reset_scale(self):
        """Set learned scalars from the latent weights: mean |W| (or 1/sqrt(fan-in) for the BLLM gamma of rows)."""
        if not self.has_scale_parameter:
            return
        if self.scaling == "none":
            if self.scale_shape == (self.rows, 1):
                self.scale.fill_(self.cols ** -0.5)
            else:
                self.scale.copy_(self.weight.abs().mean(dim=0, keepdim=True))
        else:
            self.scale.copy_(analytic_scale(self.weight, self.scaling))

    def learned_scale(self):
        return self.scale if self.has_scale_parameter else None

    def effective(self) -> torch.Tensor:
        """The matrix the forward pass uses: `alpha * sign(W)` if binarized, else `W`."""
        if self.deployed_weight is not None:
            return self.deployed_weight
        if not self.binarized:
            return self.weight
        if torch.is_grad_enabled():
            return self.binarizer(self.weight, self.learned_scale())
        # Inference: binarize once and reuse until the latent weights change (in-place updates bump _version).
        scale = self.learned_scale()
        key = (self.weight.data_ptr(), self.weight._version, None if scale is None else scale._version)
        if key != self._cache_key:
            self._cache_key, self._cache_value = key, self.binarizer(self.weight, scale)
        return self._cache_value

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows `ids` of the effective matrix; in training, binarizes only the rows used."""
        if self.deployed_weight is not None or not self.binarized or not torch.is_grad_enabled():
            return F.embedding(ids, self.effective())
        rows = F.embedding(ids, self.weight)
        signs = sign_ste(rows)
        if self.scaling == "row" and self.has_scale_parameter:
            alpha = round_ste(F.embedding(ids, self.scale), self.storage_dtype)
        elif self.scaling == "row":
            alpha = round_ste(rows.abs().mean(dim=-1, keepdim=True), self.storage_dtype)
        else:
            alpha = self.binarizer.scale(self.weight, self.learned_scale())
        return signs if alpha is None else alpha * signs

    @torch.no_grad()
    def packed_tensors(self) -> dict[str, torch.Tensor]:
        """Sign bits and the stored scalars (rounded to the storage precision) of a binarized matrix."""
        if self.packed:  # loaded from a packed checkpoint: save what was loaded
            return {"bits": self.bits, **({"scale": self.scale} if hasattr(self, "scale") else {})}
        tensors = {"bits": pack_signs(self.weight)}
        scale = self.learned_scale()
        if scale is None and self.scaling != "none":
            scale = analytic_scale(self.weight, self.scaling)
        if scale is not None:
            tensors["scale"] = scale.to(self.storage_dtype)
        return tensors

    @torch.no_grad()
    def unpack(self):
        """Rebuild the effective matrix from `bits` and `scale`, once, after loading a packed checkpoint."""
        signs = unpack_signs(self.bits, self.cols)
        if hasattr(self, "scale"):
            signs = self.scale.float() * signs
        self.deployed_weight = signs.to(self.bits.device)


class LSTMLayerWeights(nn.Module):
    """The two matrices and two biases of one LSTM layer, in PyTorch's gate order (input, forget, cell, output)."""

    def __init__(self, input_size, hidden_size, **matrix_kwargs):
        super().__init__()
        self.weight_ih = QuantizedMatrix(4 * hidden_size, input_size, **matrix_kwargs)
        self.weight_hh = QuantizedMatrix(4 * hidden_size, hidden_size, **matrix_kwargs)
        self.bias_ih = nn.Parameter(torch.zeros(4 * hidden_size))
        self.bias_hh = nn.Parameter(torch.zeros(4 * hidden_size))


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
    last_hidden_state: torch.FloatTensor | None = None
    cache: LSTMState | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class SoftBinLSTMCausalLMOutput(ModelOutput):
    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cache: LSTMState | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


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
            module.reset_parameters(self.config.init_range)
        elif isinstance(module, LSTMLayerWeights):
            with torch.no_grad():
                module.bias_ih.zero_()
                module.bias_hh.zero_()
        elif isinstance(module, (SoftBinLSTMModel, SoftBinLSTMForCausalLM)):
            for name, parameter in module.named_parameters(recurse=False):
                with torch.no_grad():
                    parameter.zero_()

    def _matrix_kwargs(self, part: str) -> dict:
        config = self.config
        binarized = part in config.binarize
        return dict(
            binarized=binarized,
            scaling=config.scaling,
            learnable_scale=config.learnable_scale,
            storage_dtype=STORAGE_DTYPES[config.float_storage_dtype],
            packed=config.checkpoint_format == "packed",
        )

    def _stored_float(self, tensor: torch.Tensor, part: str) -> torch.Tensor:
        """A float a binarized layer keeps (bias, beta), rounded as it is stored in a packed checkpoint."""
        if part in self.config.binarize:
            return round_ste(tensor, STORAGE_DTYPES[self.config.float_storage_dtype])
        return tensor

    @property
    def is_packed(self) -> bool:
        return self.config.checkpoint_format == "packed"

    def train(self, mode: bool = True):
        if mode and self.config.checkpoint_format == "packed":
            raise PackedModelTrainingError(
                "this model was loaded from a packed 1-bit checkpoint, which keeps only the signs: it cannot be trained. "
                "Load the float master checkpoint (saved with save_pretrained(dir, packed=False); a training run keeps it "
                "in OUTPUT_DIR/master) to continue training."
            )
        return super().train(mode)

    # ---- saving -------------------------------------------------------------------------------------------------

    def save_pretrained(self, save_directory, packed: bool | None = None, is_main_process: bool = True, **kwargs):
        """Save config, weights and remote code. Binarized models save packed sign bits unless `packed=False`.

        The files are written to a temporary folder first, then moved into `save_directory` one by one.
        """
        if packed is None:
            packed = self.config.is_binarized
        if packed and not self.config.is_binarized:
            raise ValueError("save_pretrained(packed=True) needs a binarized model; this one is full precision (binarize=False)")
        if not packed and self.is_packed:
            raise ValueError("this model was loaded from a packed checkpoint and has no float master weights to save; use packed=True")
        if os.path.isfile(save_directory):
            raise ValueError(f"save_pretrained: {save_directory} is a file, expected a directory")
        if kwargs.pop("push_to_hub", False):
            raise ValueError(
                "save_pretrained(push_to_hub=True) is not supported: save the model (and its tokenizer) to a directory, "
                "then upload it with hf_softbin.hub.push_to_hub(directory, repo_id) or `hf-softbin push DIRECTORY "
                "REPO_ID`, which upload the packed checkpoint with its tokenizer and a model card, never a float master"
            )
        if not is_main_process:
            return
        tensors = self.packed_state_dict() if packed else self.master_state_dict()
        metadata = {"format": "pt", "softbin_format": PACKED_FORMAT if packed else MASTER_FORMAT}
        os.makedirs(save_directory, exist_ok=True)
        parent = os.path.dirname(os.path.abspath(save_directory))
        staging = tempfile.mkdtemp(prefix=".tmp-save-", dir=parent)
        original_format = self.config.checkpoint_format
        try:
            self.config.checkpoint_format = "packed" if packed else "master"
            # The text-scoring pipeline is declared in config.json; this relative import makes Transformers copy
            # pipelines.py with the other remote-code files.
            from .pipelines import declare_pipeline

            declare_pipeline(self.config)
            # Transformers writes the config, generation config and remote-code files; the weights are ours.
            super().save_pretrained(staging, state_dict={}, **kwargs)
            for name in os.listdir(staging):
                if name.startswith("model") and name.endswith(".safetensors") or name.endswith(".index.json"):
                    os.remove(os.path.join(staging, name))
            save_safetensors_with_digest(tensors, os.path.join(staging, SAFE_WEIGHTS_NAME), metadata)
            for name in os.listdir(staging):
                os.replace(os.path.join(staging, name), os.path.join(save_directory, name))
        finally:
            self.config.checkpoint_format = original_format
            shutil.rmtree(staging, ignore_errors=True)

    @torch.no_grad()
    def master_state_dict(self) -> dict[str, torch.Tensor]:
        return {name: tensor.detach().float().clone() for name, tensor in self.state_dict().items()}

    @torch.no_grad()
    def packed_state_dict(self) -> dict[str, torch.Tensor]:
        """Sign bits for binarized matrices, stored-precision floats for their scalars and biases, float32 otherwise."""
        tensors = {}
        owned = set()
        for prefix, module in self.named_modules():
            if isinstance(module, QuantizedMatrix) and module.binarized:
                for name, tensor in module.packed_tensors().items():
                    tensors[f"{prefix}.{name}"] = tensor.contiguous()
                owned.update(f"{prefix}.{name}" for name in ("weight", "scale", "bits"))
        storage_dtype = STORAGE_DTYPES[self.config.float_storage_dtype]
        for name, tensor in self.state_dict().items():
            if name in owned:
                continue
            part = self._part_of(name)
            keep = storage_dtype if part in self.config.binarize else torch.float32
            tensors[name] = tensor.detach().to(keep).contiguous()
        return tensors

    @staticmethod
    def _part_of(name: str) -> str:
        if "lstm." in name:
            return "lstm"
        if "embedding" in name:
            return "embedding"
        return "output"

    # ---- loading ------------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """Load a master or packed checkpoint; a missing, truncated or corrupted weight file is an error."""
        download_kwargs = {key: kwargs[key] for key in ("revision", "token", "cache_dir", "local_files_only", "subfolder") if key in kwargs}
        weights_file = cached_file(pretrained_model_name_or_path, SAFE_WEIGHTS_NAME, **download_kwargs)
        verify_safetensors(weights_file)
        config = kwargs.get("config")
        if not isinstance(config, SoftBinLSTMConfig):
            config = cls.config_class.from_pretrained(pretrained_model_name_or_path, **download_kwargs)
        cls._check_tensors_match_config(weights_file, config)
        wants_info = kwargs.pop("output_loading_info", False)
        kwargs.setdefault("dtype", torch.float32)
        model, info = super().from_pretrained(pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs)
        problems = {key: sorted(info.get(key) or []) for key in ("missing_keys", "unexpected_keys", "mismatched_keys")}
        problems = {key: value for key, value in problems.items() if value}
        if problems:
            raise ValueError(f"{weights_file}: does not match its config.json: {json.dumps(problems, default=str)}")
        if model.is_packed:
            for module in model.modules():
                if isinstance(module, QuantizedMatrix) and module.packed:
                    module.unpack()
            for parameter in model.parameters():
                parameter.requires_grad_(False)
        return (model, info) if wants_info else model

    @classmethod
    def _check_tensors_match_config(cls, weights_file: str, config: SoftBinLSTMConfig):
        """Compare every tensor name and shape in the file with the model its config describes, before loading."""
        with torch.device("meta"):
            expected = {name: tuple(tensor.shape) for name, tensor in cls(config).state_dict().items()}
        with safe_open(weights_file, "pt") as handle:
            found = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
        problems = [f"tensor {name} is missing" for name in sorted(expected.keys() - found.keys())]
        problems += [f"tensor {name} is not part of this model" for name in sorted(found.keys() - expected.keys())]
        problems += [
            f"tensor {name} has shape {list(found[name])}, config.json implies {list(shape)}"
            for name, shape in sorted(expected.items()) if name in found and found[name] != shape
        ]
        if problems:
            raise ValueError(f"{weights_file} does not match its config ({config.checkpoint_format} format): " + "; ".join(problems))


class SoftBinLSTMModel(SoftBinLSTMPreTrainedModel):
    """Embedding and LSTM stack (and the optional projection): token ids in, hidden states and LSTM state out."""

    def __init__(self, config: SoftBinLSTMConfig):
        super().__init__(config)
        gamma_by_column = dict(self._matrix_kwargs("embedding"), gamma_axis="col")
        self.embeddings = QuantizedMatrix(config.vocab_size, config.embedding_size, **gamma_by_column)
        if self.embeddings.binarized and config.scaling == "none":
            self.embedding_bias = nn.Parameter(torch.zeros(config.embedding_size))  # the BLLM beta
        else:
            self.embedding_bias = None
        self.lstm = nn.ModuleList(
            LSTMLayerWeights(config.embedding_size if layer == 0 else config.hidden_size, config.hidden_size,
                             **self._matrix_kwargs("lstm"))
            for layer in range(config.num_hidden_layers)
        )
        if config.projection_size:
            self.projection = QuantizedMatrix(config.projection_size, config.hidden_size, **self._matrix_kwargs("output"))
            self.projection_bias = nn.Parameter(torch.zeros(config.projection_size))
        else:
            self.projection = None
        self.dropout = nn.Dropout(config.dropout)
        self.post_init()

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
            embedded = embedded + self._stored_float(self.embedding_bias, "embedding")
        return embedded

    def lstm_weights(self) -> list[torch.Tensor]:
        weights = []
        for layer in self.lstm:
            weights += [layer.weight_ih.effective(), layer.weight_hh.effective(),
                        self._stored_float(layer.bias_ih, "lstm"), self._stored_float(layer.bias_hh, "lstm")]
        return weights

    def run_lstm(self, inputs: torch.Tensor, state: LSTMState, mask: torch.Tensor | None) -> tuple[torch.Tensor, LSTMState]:
        """The fused LSTM kernel over (batch, time, features); `mask` marks real tokens (padding may be anywhere)."""
        weights = self.lstm_weights()
        layers, dropout, training = self.config.num_hidden_layers, self.config.dropout, self.training
        if mask is None or bool(mask.all()):
            output, h, c = _VF.lstm(inputs, (state.h, state.c), weights, True, layers, dropout, training, False, True)
            return output, LSTMState(h, c)
        # Move each row's real tokens to the front (stable), run them as a packed batch, then put outputs back.
        order = torch.argsort((~mask.bool()).to(torch.int8), dim=1, stable=True)
        lengths = mask.sum(dim=1)
        gathered = inputs.gather(1, order.unsqueeze(-1).expand_as(inputs))
        packed = pack_padded_sequence(gathered, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        hx = (state.h.index_select(1, packed.sorted_indices), state.c.index_select(1, packed.sorted_indices))
        data, h, c = _VF.lstm(packed.data, packed.batch_sizes, hx, weights, True, layers, dropout, training, False)
        h, c = h.index_select(1, packed.unsorted_indices), c.index_select(1, packed.unsorted_indices)
        packed_output = packed._replace(data=data)
        front, _ = pad_packed_sequence(packed_output, batch_first=True, total_length=inputs.shape[1])
        output = torch.zeros_like(front).scatter_(1, order.unsqueeze(-1).expand_as(front), front)
        empty = (lengths == 0).view(1, -1, 1)
        return output, LSTMState(torch.where(empty, state.h, h), torch.where(empty, state.c, c))

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
        if cache is None:
            cache = self.initial_state(batch_size, input_ids.device)
        elif isinstance(cache, tuple):
            cache = LSTMState(*cache)
        mask = attention_mask[:, -length:] if attention_mask is not None else None
        hidden = self.dropout(self.embed(input_ids))
        hidden, state = self.run_lstm(hidden, cache, mask)
        hidden = self.dropout(hidden)
        if self.projection is not None:
            hidden = F.linear(hidden, self.projection.effective(), self._stored_float(self.projection_bias, "output"))
        all_hidden = (hidden,) if output_hidden_states else None
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
            self.lm_head = QuantizedMatrix(config.vocab_size, config.output_input_size, **self._matrix_kwargs("output"))
        self.lm_head_bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embeddings

    def output_matrix(self) -> QuantizedMatrix:
        return self.model.embeddings if self.lm_head is None else self.lm_head

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.output_matrix().effective(), self._stored_float(self.lm_head_bias, "output"))

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


SoftBinLSTMConfig.register_for_auto_class()
SoftBinLSTMModel.register_for_auto_class("AutoModel")
SoftBinLSTMForCausalLM.register_for_auto_class("AutoModelForCausalLM")
