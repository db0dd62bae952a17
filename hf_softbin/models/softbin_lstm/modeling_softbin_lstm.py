"""The soft-binarized LSTM language model as a Transformers model.

Each weight matrix is a module of `matrices.py`, chosen per part by `config.quantization`; the recurrence runs in
PyTorch's fused LSTM kernel on the effective matrices, except for one-token decoding steps (explicit gate products)
and keep-packed models (products from the sign bits, step by step). Saving and loading (packed or float master
checkpoints, read and written as `checkpoint.py` says) and vocabulary resizing come from the mixins in
`checkpoint.py` and `resizing.py`; training hooks (latent-weight clipping, PQ code re-assignment) live with the
training code.

This file imports only its siblings (relatively), so saved checkpoints carry it as remote code.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import _VF, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import GenerationMixin, PreTrainedModel
from transformers.utils import ModelOutput

from .checkpoint import CheckpointMixin
from .configuration_softbin_lstm import SoftBinLSTMConfig
from .matrices import (
    BinaryMatrix,
    FloatMatrix,
    PackedBinaryMatrix,
    PackedMatrix,
    PackedPQMatrix,
    PackedResidualBinaryMatrix,
    PQMatrix,
    ResidualBinaryMatrix,
    WeightMatrix,
)
from .quantizers import STORAGE_DTYPES, round_ste
from .resizing import VocabularyResizingMixin


class PackedModelTrainingError(RuntimeError):
    """Raised when a model loaded from a packed checkpoint is put in training mode."""


class UnsupportedDeviceDtype(ValueError):
    """PyTorch's LSTM kernel cannot run on the requested combination of device and dtype."""


def make_matrix(config: SoftBinLSTMConfig, part: str, rows: int, cols: int, gamma_axis: str = "row",
                residual_rows: int = 0) -> WeightMatrix:
    """The matrix module for `part` as the config stores it (master or packed); a binary matrix with `residual_rows`
    gives its first rows a second sign plane."""
    method = config.quantization[part]
    if method == "float":
        return FloatMatrix(rows, cols)
    storage_dtype = STORAGE_DTYPES[config.float_storage_dtype]
    packed = config.checkpoint_format == "packed"
    if method == "binary" and residual_rows:
        cls = PackedResidualBinaryMatrix if packed else ResidualBinaryMatrix
        return cls(rows, cols, residual_rows=residual_rows, scaling=config.scaling,
                   learnable_scale=config.learnable_scale, storage_dtype=storage_dtype, gamma_axis=gamma_axis)
    if method == "binary":
        cls = PackedBinaryMatrix if packed else BinaryMatrix
        return cls(rows, cols, scaling=config.scaling, learnable_scale=config.learnable_scale,
                   storage_dtype=storage_dtype, gamma_axis=gamma_axis)
    subvectors, codebook_size = config.pq_settings(part)
    cls = PackedPQMatrix if packed else PQMatrix
    return cls(rows, cols, subvectors=subvectors, codebook_size=codebook_size,
               codebook_storage=config.pq_codebook_storage, row_scale=config.pq_row_scale, storage_dtype=storage_dtype)


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


def real_tokens_first(mask: torch.Tensor) -> torch.Tensor | None:
    """The stable order of each row's positions that puts its real tokens (mask 1) first, or None when every row is
    right-padded already (the common case: a caller that pads on the right, or `text-scoring` after its own sort)."""
    mask = mask.bool()
    if bool((mask[:, 1:] <= mask[:, :-1]).all()):  # no real token after a padded one
        return None
    return torch.argsort((~mask).to(torch.int8), dim=1, stable=True)


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


class SoftBinLSTMPreTrainedModel(CheckpointMixin, VocabularyResizingMixin, PreTrainedModel):
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
        if isinstance(module, WeightMatrix):
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

    def stored(self, tensor: torch.Tensor, part: str) -> torch.Tensor:
        """A float a quantized part keeps (bias, beta), rounded as a packed checkpoint stores it (a packed model
        loaded it at that precision: nothing to round, and decoding steps are spared four operations a bias)."""
        if self.config.quantized(part) and not self.is_packed:
            return round_ste(tensor, STORAGE_DTYPES[self.config.float_storage_dtype])
        return tensor

    def matrices(self) -> dict[str, WeightMatrix]:
        return {name: module for name, module in self.named_modules() if isinstance(module, WeightMatrix)}

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


class SoftBinLSTMModel(SoftBinLSTMPreTrainedModel):
    """Embedding and LSTM stack (and the optional projection): token ids in, hidden states and LSTM state out."""

    _keys_to_ignore_on_load_unexpected = [r"^lm_head"]  # a causal LM's output layer, when this reads its file
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
        # Each row's real tokens to the front (unless they are there), run as a packed batch, outputs put back.
        order = real_tokens_first(mask)
        lengths = mask.sum(dim=1)
        gathered = inputs if order is None else inputs.gather(1, order.unsqueeze(-1).expand_as(inputs))
        packed = pack_padded_sequence(gathered, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        hx = (state.h.index_select(1, packed.sorted_indices), state.c.index_select(1, packed.sorted_indices))
        data, h, c, layer_data = self._fused_lstm(packed.data, packed.batch_sizes, hx, every_layer)
        h, c = h.index_select(1, packed.unsorted_indices), c.index_select(1, packed.unsorted_indices)

        def unpack(rows: torch.Tensor) -> torch.Tensor:
            front, _ = pad_packed_sequence(packed._replace(data=rows), batch_first=True, total_length=inputs.shape[1])
            if order is None:
                return front
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
            self.lm_head = make_matrix(config, "output", config.vocab_size, config.output_input_size,
                                       residual_rows=config.output_residual_rows)
        self.lm_head_bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embeddings

    def output_matrix(self) -> WeightMatrix:
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

    def prepare_inputs_for_generation(self, input_ids, cache=None, attention_mask=None, next_sequence_length=None,
                                      is_first_iteration=False, labels=None, **kwargs):
        """The tokens the state has not read (the prompt, then the last token), the state, the mask and the rest of
        generate's arguments, on the model's device. Written out because Transformers' general preparation, built for
        attention caches, also inspects `forward`'s signature at every step for a model registered with the Auto
        classes: a third of a keep-packed decoding step at 2x200."""
        if cache is not None:
            input_ids = input_ids[:, -1:]  # the state holds everything before
        elif next_sequence_length is not None:
            input_ids = input_ids[:, -next_sequence_length:]
        model_inputs = {**kwargs, "input_ids": input_ids, "cache": cache, "attention_mask": attention_mask}
        device = self.lm_head_bias.device
        if input_ids.device != device and device.type != "meta":
            model_inputs = {key: value.to(device) if isinstance(value, torch.Tensor) else value
                            for key, value in model_inputs.items()}
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
        # In the model's dtype (a half-precision model gives half-precision logits; under autocast a float32 model
        # still gives float32 ones).
        logits = self.logits(hidden).to(self.lm_head_bias.dtype)
        loss = None
        if labels is not None:
            if labels.shape != input_ids.shape:
                raise ValueError(f"labels must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(labels.shape)}")
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1),
                                   ignore_index=-100)
        if not return_dict:
            output = tuple(value for value in (logits, outputs.cache, outputs.hidden_states) if value is not None)
            return (loss,) + output if loss is not None else output
        return SoftBinLSTMCausalLMOutput(loss=loss, logits=logits, cache=outputs.cache, hidden_states=outputs.hidden_states)



SoftBinLSTMConfig.register_for_auto_class()
SoftBinLSTMModel.register_for_auto_class("AutoModel")
SoftBinLSTMForCausalLM.register_for_auto_class("AutoModelForCausalLM")
