"""Configuration of the soft-binarized LSTM language model."""

from transformers import PretrainedConfig

BINARIZABLE_PARTS = ("embedding", "lstm", "output")
SCALINGS = ("none", "tensor", "row")
FLOAT_STORAGE_DTYPES = ("float32", "float16")
CHECKPOINT_FORMATS = ("master", "packed")


class SoftBinLSTMConfig(PretrainedConfig):
    r"""
    Configuration of [`SoftBinLSTMForCausalLM`]: a word-level LSTM language model whose embedding, LSTM and
    output matrices can be binarized to one bit per weight.

    Args:
        vocab_size: number of word types, special tokens included.
        embedding_size: width of the input embedding.
        hidden_size: width of each LSTM layer.
        num_hidden_layers: number of stacked LSTM layers.
        dropout: dropout on the embedding output, between layers and before the output layer.
        projection_size: if set, a linear layer maps the last LSTM output to this width before the output
            layer (needed to tie weights when `embedding_size != hidden_size`).
        tie_word_embeddings: share the input embedding with the output layer.
        binarize: which matrices are binarized: `True` (all), `False` (none: the full-precision model), or a
            list drawn from `"embedding"`, `"lstm"`, `"output"`.
        scaling: `"row"` (one float scalar per output row: soft binarization), `"tensor"` (one per matrix) or
            `"none"` (plain +-1 weights with the BLLM 2018 learned per-unit gamma/beta after each product).
        learnable_scale: train the scalars (initialized to mean |W|) instead of recomputing mean |W| analytically.
        float_storage_dtype: precision of the float numbers that binarized layers keep (scalars, gamma/beta and
            biases) in a packed checkpoint. The model always computes with these values rounded to this precision,
            so a packed checkpoint reloads bit-exactly.
        init_range: latent weights are initialized uniformly in `[-init_range, init_range]`.
        checkpoint_format: `"packed"` when the weights were loaded from sign bits (inference only); set by
            `save_pretrained`, not by users.
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
        binarize: bool | list[str] = True,
        scaling: str = "row",
        learnable_scale: bool = False,
        float_storage_dtype: str = "float16",
        init_range: float = 0.1,
        checkpoint_format: str = "master",
        pad_token_id: int | None = 2,
        bos_token_id: int | None = 1,
        eos_token_id: int | None = 1,
        use_cache: bool = True,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.dropout = dropout
        self.projection_size = projection_size
        self.binarize = _normalize_binarize(binarize)
        self.scaling = scaling
        self.learnable_scale = learnable_scale
        self.float_storage_dtype = float_storage_dtype
        self.init_range = init_range
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
    def is_binarized(self) -> bool:
        return bool(self.binarize)

    def validate_fields(self):
        for name in ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"SoftBinLSTMConfig.{name} must be a positive integer, got {value!r}")
        if self.projection_size is not None and (not isinstance(self.projection_size, int) or self.projection_size <= 0):
            raise ValueError(f"SoftBinLSTMConfig.projection_size must be a positive integer or None, got {self.projection_size!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"SoftBinLSTMConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.scaling not in SCALINGS:
            raise ValueError(f"SoftBinLSTMConfig.scaling must be one of {SCALINGS}, got {self.scaling!r}")
        if self.float_storage_dtype not in FLOAT_STORAGE_DTYPES:
            raise ValueError(
                f"SoftBinLSTMConfig.float_storage_dtype must be one of {FLOAT_STORAGE_DTYPES}, got {self.float_storage_dtype!r}"
            )
        if self.checkpoint_format not in CHECKPOINT_FORMATS:
            raise ValueError(
                f"SoftBinLSTMConfig.checkpoint_format must be one of {CHECKPOINT_FORMATS}, got {self.checkpoint_format!r}"
            )
        if self.learnable_scale and self.scaling == "none":
            raise ValueError("SoftBinLSTMConfig.learnable_scale needs scaling 'row' or 'tensor'; 'none' trains gamma/beta instead")
        if self.tie_word_embeddings:
            if self.embedding_size != self.output_input_size:
                raise ValueError(
                    "SoftBinLSTMConfig.tie_word_embeddings needs embedding_size == hidden_size (or a projection_size equal "
                    f"to embedding_size); got embedding_size={self.embedding_size}, hidden_size={self.hidden_size}, "
                    f"projection_size={self.projection_size}"
                )
            if ("embedding" in self.binarize) != ("output" in self.binarize):
                raise ValueError("SoftBinLSTMConfig.binarize must treat 'embedding' and 'output' alike when weights are tied")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(self, name, None)
            if value is not None and not 0 <= value < self.vocab_size:
                raise ValueError(f"SoftBinLSTMConfig.{name} must be in [0, vocab_size={self.vocab_size}), got {value!r}")


def _undeclare_registered_pipelines(custom_pipelines: dict) -> dict:
    """Drop the tasks this process has registered itself (`import hf_softbin` registers "text-scoring").

    config.json declares the text-scoring pipeline for remote code. Transformers' `pipeline()` demands
    `trust_remote_code=True` for any task a config declares, even one registered locally; without the declaration it
    uses the registered pipeline, as the Auto classes prefer local code. `save_pretrained` declares it again.
    """
    from transformers.pipelines import PIPELINE_REGISTRY

    return {task: info for task, info in custom_pipelines.items() if task not in PIPELINE_REGISTRY.supported_tasks}


def _normalize_binarize(binarize) -> list[str]:
    if binarize is True:
        return list(BINARIZABLE_PARTS)
    if binarize is False or binarize is None:
        return []
    if isinstance(binarize, str):
        binarize = [part.strip() for part in binarize.split(",") if part.strip()]
    parts = list(binarize)
    unknown = [part for part in parts if part not in BINARIZABLE_PARTS]
    if unknown:
        raise ValueError(f"SoftBinLSTMConfig.binarize: unknown part(s) {unknown}; choose from {BINARIZABLE_PARTS}")
    return [part for part in BINARIZABLE_PARTS if part in parts]
