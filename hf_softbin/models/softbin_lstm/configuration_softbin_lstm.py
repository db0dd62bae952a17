"""Configuration of the soft-binarized LSTM language model: the one source of truth for its hyper-parameters."""

from transformers import PretrainedConfig

PARTS = ("embedding", "lstm", "output")
QUANTIZATIONS = ("float", "binary", "pq")
# "row" and "tensor": alpha * sign(W) with one scalar per row or per matrix (soft binarization);
# "row_col": diag(g) sign(W) diag(h), a learned scalar per output row and per input column (OneBit, Xu et al. 2024);
# "bllm": +-1 weights with a learned per-unit scale (gamma) and shift (beta) after each product (BLLM 2018).
SCALINGS = ("row", "tensor", "row_col", "bllm")
FLOAT_STORAGE_DTYPES = ("float32", "float16")
PQ_CODEBOOK_STORAGES = ("float16", "binary")
CHECKPOINT_FORMATS = ("master", "packed")
MAX_PQ_CODEBOOK_SIZE = 256  # a code is stored in one byte


class SoftBinLSTMConfig(PretrainedConfig):
    r"""
    Configuration of [`SoftBinLSTMForCausalLM`]: a word-level LSTM language model whose input embedding, LSTM and
    output matrices are each kept in float, binarized to one bit per weight, or product-quantized.

    Args:
        vocab_size: number of word types, special tokens included.
        embedding_size: width of the input embedding.
        hidden_size: width of each LSTM layer.
        num_hidden_layers: number of stacked LSTM layers.
        dropout: dropout on the embedding output, between layers and before the output layer.
        projection_size: if set, a linear layer maps the last LSTM output to this width before the output
            layer (needed to tie weights when `embedding_size != hidden_size`).
        tie_word_embeddings: share the input embedding with the output layer.
        quantization: how each part stores its matrices, a mapping from `"embedding"`, `"lstm"`, `"output"` to
            `"float"`, `"binary"` (one sign bit per weight and float scalars) or `"pq"` (product quantization: each
            row cut into `pq_subvectors` pieces, each piece one byte indexing a codebook). Parts left out are
            `"binary"`. Default: everything binary.
        binarize: shorthand for `quantization` (give one or the other): `True` (every part binary), `False` (every
            part float: the full-precision model), or a list of the parts that are binary (the rest float).
        scaling: scalars of binary matrices: `"row"` (one per output row: soft binarization), `"tensor"` (one per
            matrix), `"row_col"` (`diag(g) sign(W) diag(h)`: one per output row and one per input column, both
            learned, initialized by a rank-1 fit of |W|), or `"bllm"` (+-1 weights with the BLLM 2018 learned
            per-unit gamma and beta).
        learnable_scale: train the `"row"`/`"tensor"` scalars (initialized to mean |W|) instead of recomputing
            mean |W| from the latent weights at every step; `"row_col"` needs it (its scalars have no closed form).
        float_storage_dtype: precision of the floats kept by quantized parts (scalars, gamma/beta, biases) in a
            packed checkpoint. The model always computes with these values rounded to this precision, so a packed
            checkpoint reloads bit-exactly.
        pq_subvectors: sub-vectors per row of a PQ matrix (must divide the row width); an int for every PQ part or
            a mapping from part to int.
        pq_codebook_size: codewords per sub-space (at most 256); an int or a mapping from part to int.
        pq_codebook_storage: how a packed checkpoint stores PQ codebooks: `"float16"`, or `"binary"` (sign bits
            and one scalar per codeword).
        pq_row_scale: give every row of a PQ matrix (every word of a vocabulary matrix) its own learned scalar,
            stored in `float_storage_dtype`: the codes then describe the row's direction and the scalar its length,
            which varies much more from word to word than directions do. Costs 2 bytes a row in float16.
        output_residual_rows: give the first this many rows of a binary output layer (with `"row"` scaling) a second
            sign plane that binarizes what the first leaves, `a1 sign(W) + a2 sign(W - a1 sign(W))`: two bits a
            weight, and one more scalar a row (`cols / 8 + 2` bytes a row in float16). In a vocabulary sorted by
            frequency, as hf-softbin builds them, these are the most frequent words. Default 0: one plane.
        initializer_range: weights are initialized uniformly in `[-initializer_range, initializer_range]`.
        keep_packed: a packed checkpoint keeps only its sign bits, codes and scalars in memory and unpacks what
            each forward pass needs; otherwise it unpacks every matrix once at load time (faster, as much memory
            as the float model).
        checkpoint_format: `"packed"` when the weights were loaded from a packed checkpoint (inference only); set
            by `save_pretrained`, not by users.
    """

    model_type = "softbin_lstm"

    def __init__(
        self,
        vocab_size: int = 10000,
        embedding_size: int = 650,
        hidden_size: int = 650,
        num_hidden_layers: int = 2,
        dropout: float = 0.5,
        projection_size: int | None = None,
        tie_word_embeddings: bool = False,
        quantization: dict[str, str] | None = None,
        binarize: bool | list[str] | str | None = None,
        scaling: str = "row",
        learnable_scale: bool = False,
        float_storage_dtype: str = "float16",
        pq_subvectors: int | dict[str, int] = 4,
        pq_codebook_size: int | dict[str, int] = 256,
        pq_codebook_storage: str = "float16",
        pq_row_scale: bool = False,
        output_residual_rows: int = 0,
        initializer_range: float = 0.1,
        keep_packed: bool = False,
        checkpoint_format: str = "master",
        pad_token_id: int | None = 2,
        bos_token_id: int | None = 1,
        eos_token_id: int | None = 1,
        use_cache: bool = True,
        **kwargs,
    ):
        # Names written by hf-softbin 0.1: `init_range`, and `scaling: none` for the BLLM variant.
        initializer_range = kwargs.pop("init_range", initializer_range)
        scaling = "bllm" if scaling == "none" else scaling
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.dropout = dropout
        self.projection_size = projection_size
        self.quantization = _quantization(quantization, binarize)
        self.scaling = scaling
        self.learnable_scale = learnable_scale
        self.float_storage_dtype = float_storage_dtype
        self.pq_subvectors = pq_subvectors
        self.pq_codebook_size = pq_codebook_size
        self.pq_codebook_storage = pq_codebook_storage
        self.pq_row_scale = pq_row_scale
        self.output_residual_rows = output_residual_rows
        self.initializer_range = initializer_range
        self.keep_packed = keep_packed
        self.checkpoint_format = checkpoint_format
        self.use_cache = use_cache
        self.tie_word_embeddings = tie_word_embeddings
        if kwargs.get("custom_pipelines"):
            kwargs["custom_pipelines"] = _undeclare_registered_pipelines(kwargs["custom_pipelines"])
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
        self.validate_fields()

    @property
    def output_input_size(self) -> int:
        """Width of the vector the output layer reads."""
        return self.projection_size or self.hidden_size

    @property
    def is_quantized(self) -> bool:
        """Whether any part is stored in fewer bits than float32 (then a packed checkpoint exists)."""
        return any(method != "float" for method in self.quantization.values())

    def quantized(self, part: str) -> bool:
        return self.quantization[part] != "float"

    def pq_settings(self, part: str) -> tuple[int, int]:
        """(sub-vectors per row, codewords per sub-space) of a PQ part."""
        return _per_part(self.pq_subvectors, part), _per_part(self.pq_codebook_size, part)

    def part_width(self, part: str) -> int:
        """Row width of the matrices of a vocabulary part (the width PQ sub-vectors cut)."""
        return self.embedding_size if part == "embedding" else self.output_input_size

    def validate_fields(self):
        for name in ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers"):
            _check_positive_int(name, getattr(self, name))
        if self.projection_size is not None:
            _check_positive_int("projection_size", self.projection_size)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SoftBinLSTMConfig.dropout must be a number in [0, 1), got {self.dropout!r}")
        for name, value, choices in (("scaling", self.scaling, SCALINGS),
                                     ("float_storage_dtype", self.float_storage_dtype, FLOAT_STORAGE_DTYPES),
                                     ("pq_codebook_storage", self.pq_codebook_storage, PQ_CODEBOOK_STORAGES),
                                     ("checkpoint_format", self.checkpoint_format, CHECKPOINT_FORMATS)):
            if value not in choices:
                raise ValueError(f"SoftBinLSTMConfig.{name} must be one of {choices}, got {value!r}")
        if not isinstance(self.pq_row_scale, bool):
            raise ValueError(f"SoftBinLSTMConfig.pq_row_scale must be true or false, got {self.pq_row_scale!r}")
        if self.output_residual_rows:
            self._validate_output_residual_rows()
        if self.learnable_scale and self.scaling == "bllm":
            raise ValueError("SoftBinLSTMConfig.learnable_scale applies to scaling 'row', 'tensor' or 'row_col'; "
                             "'bllm' always learns its gamma and beta")
        if self.scaling == "row_col" and not self.learnable_scale:
            raise ValueError("SoftBinLSTMConfig.scaling 'row_col' needs learnable_scale=True: its row and column "
                             "scalars are learned (a rank-1 fit of |W| only initializes them)")
        if self.quantization["lstm"] == "pq":
            raise ValueError("SoftBinLSTMConfig.quantization: 'pq' applies to the vocabulary matrices ('embedding', "
                             "'output'); the LSTM is 'float' or 'binary'")
        for part in PARTS:
            if self.quantization[part] == "pq":
                self._validate_pq(part)
        if self.tie_word_embeddings:
            if self.embedding_size != self.output_input_size:
                raise ValueError(
                    "SoftBinLSTMConfig.tie_word_embeddings needs embedding_size == hidden_size (or a projection_size equal "
                    f"to embedding_size); got embedding_size={self.embedding_size}, hidden_size={self.hidden_size}, "
                    f"projection_size={self.projection_size}"
                )
            if self.quantization["embedding"] != self.quantization["output"]:
                raise ValueError("SoftBinLSTMConfig.quantization must treat 'embedding' and 'output' alike when weights "
                                 "are tied")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(self, name, None)
            if value is not None and not 0 <= value < self.vocab_size:
                raise ValueError(f"SoftBinLSTMConfig.{name} must be in [0, vocab_size={self.vocab_size}), got {value!r}")

    def _validate_output_residual_rows(self):
        rows = self.output_residual_rows
        if not isinstance(rows, int) or isinstance(rows, bool) or not 0 <= rows <= self.vocab_size:
            raise ValueError(f"SoftBinLSTMConfig.output_residual_rows must be an integer in [0, vocab_size="
                             f"{self.vocab_size}], got {rows!r}")
        if self.quantization["output"] != "binary" or self.scaling != "row" or self.tie_word_embeddings:
            raise ValueError("SoftBinLSTMConfig.output_residual_rows needs an untied binary output layer with row "
                             f"scalars; got quantization output {self.quantization['output']!r}, scaling "
                             f"{self.scaling!r}, tie_word_embeddings={self.tie_word_embeddings}")

    def _validate_pq(self, part: str):
        subvectors, codebook_size = self.pq_settings(part)
        _check_positive_int(f"pq_subvectors[{part!r}]", subvectors)
        _check_positive_int(f"pq_codebook_size[{part!r}]", codebook_size)
        width = self.part_width(part)
        if width % subvectors:
            raise ValueError(f"SoftBinLSTMConfig.pq_subvectors: {subvectors} sub-vectors do not divide the {part} width "
                             f"{width}; choose a divisor of {width}")
        if not 2 <= codebook_size <= MAX_PQ_CODEBOOK_SIZE:
            raise ValueError(f"SoftBinLSTMConfig.pq_codebook_size must be in [2, {MAX_PQ_CODEBOOK_SIZE}] (a code is one "
                             f"byte), got {codebook_size} for {part}")
        if codebook_size > self.vocab_size:
            raise ValueError(f"SoftBinLSTMConfig.pq_codebook_size {codebook_size} exceeds vocab_size {self.vocab_size}: "
                             "k-means needs at least as many rows as codewords")


def _check_positive_int(name: str, value):
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"SoftBinLSTMConfig.{name} must be a positive integer, got {value!r}")


def _per_part(value, part: str):
    if isinstance(value, dict):
        if part not in value:
            raise ValueError(f"SoftBinLSTMConfig: no PQ setting for part {part!r} in {value}")
        return value[part]
    return value


def _quantization(quantization, binarize) -> dict[str, str]:
    """The per-part mapping, from `quantization` or its shorthand `binarize`; parts left out are binary."""
    if quantization is not None and binarize is not None:
        raise ValueError("SoftBinLSTMConfig: give quantization or its shorthand binarize, not both")
    if binarize is not None:
        if isinstance(binarize, str):
            binarize = [part.strip() for part in binarize.split(",") if part.strip()]
        if isinstance(binarize, bool):
            binarize = list(PARTS) if binarize else []
        unknown = [part for part in binarize if part not in PARTS]
        if unknown:
            raise ValueError(f"SoftBinLSTMConfig.binarize: unknown part(s) {unknown}; choose from {PARTS}")
        return {part: "binary" if part in binarize else "float" for part in PARTS}
    quantization = dict(quantization or {})
    unknown = sorted(set(quantization) - set(PARTS))
    if unknown:
        raise ValueError(f"SoftBinLSTMConfig.quantization: unknown part(s) {unknown}; choose from {PARTS}")
    for part, method in quantization.items():
        if method not in QUANTIZATIONS:
            raise ValueError(f"SoftBinLSTMConfig.quantization[{part!r}] must be one of {QUANTIZATIONS}, got {method!r}")
    return {part: quantization.get(part, "binary") for part in PARTS}


def _undeclare_registered_pipelines(custom_pipelines: dict) -> dict:
    """Drop the tasks this process has registered itself (`import hf_softbin` registers "text-scoring").

    config.json declares the text-scoring pipeline for remote code. Transformers' `pipeline()` demands
    `trust_remote_code=True` for any task a config declares, even one registered locally; without the declaration it
    uses the registered pipeline, as the Auto classes prefer local code. `save_pretrained` declares it again.
    """
    from transformers.pipelines import PIPELINE_REGISTRY

    return {task: info for task, info in custom_pipelines.items() if task not in PIPELINE_REGISTRY.supported_tasks}
