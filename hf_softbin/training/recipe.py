"""The training recipe: YAML sections `data`, `model`, `training`, `distill`, checked before any work starts.

The `model` section holds `SoftBinLSTMConfig` fields and is validated by that class (its defaults apply); the other
sections are the dataclasses below, read by OmegaConf, so a wrong type or an unknown key is an error naming it.
A recipe may start with `inherit:` and one or more recipe files (paths relative to it), merged in order: the recipes
in configs/ inherit their dataset's `base.yaml` (data, shape) and a method from configs/methods/ (the settings the
search chose), and hold only what is left. Command-line overrides use dotted keys (`--training.lr 0.002`).
"""

import dataclasses
import inspect
import os
from dataclasses import dataclass, field
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from ..models.softbin_lstm import SoftBinLSTMConfig

# SoftBinLSTMConfig fields that training derives from the tokenizer or sets when saving, never a recipe.
DERIVED_MODEL_FIELDS = ("vocab_size", "pad_token_id", "bos_token_id", "eos_token_id", "checkpoint_format")


@dataclass
class DataConfig:
    name: str | None = None  # a Hub dataset, e.g. "ptb_text_only" or "Salesforce/wikitext"
    config: str | None = None  # the Hub dataset's configuration, e.g. "wikitext-2-raw-v1"
    train_file: str | None = None
    validation_file: str | None = None
    test_file: str | None = None
    text_column: str = "text"
    train_split: str = "train"
    validation_split: str = "validation"
    test_split: str = "test"
    tokenizer: str | None = None  # an existing tokenizer (path or Hub id); otherwise built on the training split
    min_count: int = 1
    max_vocab_size: int | None = None
    max_oov_rate: float = 0.5  # stop if more of a split's tokens than this are <unk> under the tokenizer


@dataclass
class TrainingConfig:
    max_epochs: int = 40  # an upper bound: early stopping usually ends the run before
    early_stopping_patience: int = 3  # stop after this many evaluations without a better validation loss; 0 = never
    max_steps: int | None = None  # stop after this many optimizer steps (for smoke runs)
    batch_size: int = 20
    eval_batch_size: int = 10
    bptt: int = 35
    optimizer: str = "sgd"  # "sgd", "adam", or "bop" (sign flips for binary latent weights, Adam for the rest)
    lr: float = 20.0
    scale_lr: float | None = None  # learning rate of the learned scalars of binary matrices; None = lr
    bop_threshold: float = 1e-8  # Bop: flip a sign when the gradient average exceeds this and agrees with the sign
    bop_gamma: float = 1e-4  # Bop: the rate of that exponential average of gradients
    ema_decay: float = 0.0  # evaluate and keep an exponential moving average of the weights (e.g. 0.999); 0 = off
    binarize_ramp_epochs: float = 0.0  # move from the float latent weights to binary over this many epochs; 0 = off
    weight_decay: float = 0.0
    grad_clip: float = 0.25
    gradient_accumulation_steps: int = 1
    schedule: str = "plateau"  # "plateau", "cosine", "linear" or "constant"
    plateau_factor: float = 0.25  # the learning rate is multiplied by this when validation stops improving
    plateau_patience: int = 0  # evaluations without improvement before the learning rate is cut
    warmup_steps: int = 0
    eval_every: int = 0  # optimizer steps between evaluations; 0 = once per epoch of the real training text
    # Evaluate at the end of every epoch as well. With sampled text an epoch is longer than the real text, so this adds
    # evaluations between those every `eval_every` steps, and the patiences count them too; false: only those, and
    # the end of training
    eval_at_epoch_end: bool = True
    pq_reassign_every: int = 0  # optimizer steps between re-assignments of PQ codes; 0 = codes stay fixed
    # Learn PQ codes end to end (differentiable PQ): each step takes the nearest codewords, with gradients through a
    # softmax over distances relative to their mean, at this temperature; 0 = off
    pq_code_temperature: float = 0.0
    log_every: int = 50
    mixed_precision: str = "no"  # "no", "fp16" or "bf16" (where the device supports it)
    log_with: str | None = "tensorboard"  # an Accelerate tracker; used only when installed
    cpu: bool = False  # force the CPU even when an accelerator is present
    seed: int = 1234


@dataclass
class DistillConfig:
    teacher: str | None = None  # a trained full-precision model directory or Hub id; None = no distillation
    ensemble: list[str] = field(default_factory=list)  # more float models averaged with the teacher (probabilities)
    kd_lambda: float = 0.5  # weight of the KL term: (1 - lambda) * CE + lambda * T^2 * KL(teacher || student)
    temperature: float = 1.0
    init_from_teacher: bool = True  # start the student's latent weights from the teacher's
    hidden_weight: float = 0.0  # weight of the loss between L2-normalized LSTM layer outputs of student and teacher
    sampled_text_ratio: float = 0.0  # add text sampled from the teacher, this many times the real training tokens
    sampled_text_seed: int = 0


@dataclass
class RunConfig:
    output_dir: str = "runs/default"
    resume_from_checkpoint: str | None = None  # a checkpoint directory, or "latest" for OUTPUT_DIR/checkpoint
    data: DataConfig = field(default_factory=DataConfig)
    model: dict[str, Any] = field(default_factory=dict)  # SoftBinLSTMConfig fields
    training: TrainingConfig = field(default_factory=TrainingConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def model_config(self, tokenizer) -> SoftBinLSTMConfig:
        """The model's config: the recipe's `model` section, the vocabulary and special tokens of `tokenizer`."""
        return SoftBinLSTMConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                 bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                                 **vocabulary_resolved(self.model, len(tokenizer)))


def vocabulary_resolved(model: dict[str, Any], vocab_size: int) -> dict[str, Any]:
    """A recipe's `model` section with what it gives as a share of the vocabulary in words: an `output_residual_rows`
    between 0 and 1 (exclusive) is that share of the rows, so that one recipe fits every corpus."""
    rows = model.get("output_residual_rows")
    if isinstance(rows, float) and 0 < rows < 1:
        return {**model, "output_residual_rows": round(rows * vocab_size)}
    return model


SECTIONS = {"data": DataConfig, "training": TrainingConfig, "distill": DistillConfig}
CHOICES = {
    "training.optimizer": ("sgd", "adam", "bop"),
    "training.schedule": ("plateau", "cosine", "linear", "constant"),
    "training.mixed_precision": ("no", "fp16", "bf16"),
}


def load_run_config(path: str | None = None, overrides: dict[str, object] | None = None) -> RunConfig:
    """Read a YAML recipe (and the bases it inherits), apply dotted overrides, validate everything."""
    where = path or "config"
    config = OmegaConf.structured(RunConfig)
    if path is not None:
        config = _merge(config, _read_recipe(path, seen=()), where)
    if overrides:  # merged on their own, so that a mistake there is reported against the command line
        config = _merge(config, OmegaConf.create(_nest(overrides)), "the command line", key_prefix="--")
    config = OmegaConf.to_object(config)
    _validate(config, where)
    return config


def _merge(config: DictConfig, layer: DictConfig, where: str, key_prefix: str = "") -> DictConfig:
    """`layer` merged over `config`; an unknown key or a wrong type is an error naming `where` and the key."""
    try:
        return OmegaConf.merge(config, layer)
    except ConfigKeyError as err:
        section = err.full_key.rsplit(".", 1)[0] if "." in err.full_key else None
        owner = SECTIONS.get(section, RunConfig)
        known = ", ".join(f.name for f in dataclasses.fields(owner))
        raise ValueError(f"{where}: unknown key {key_prefix}{err.full_key}; {section or 'the top level'} has: "
                         f"{known}") from None
    except OmegaConfBaseException as err:
        message = str(err).splitlines()[0]
        raise ValueError(f"{where}: {key_prefix}{getattr(err, 'full_key', '')}: {message}") from None


def _read_recipe(path: str, seen: tuple[str, ...]) -> DictConfig:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    if os.path.abspath(path) in seen:
        raise ValueError(f"{path}: inherits from itself through {' -> '.join(seen)}")
    try:
        recipe = OmegaConf.load(path)
    except Exception as err:  # OmegaConf wraps YAML errors in several types
        raise ValueError(f"{path}: not a valid YAML recipe: {str(err).splitlines()[0]}") from None
    if not isinstance(recipe, DictConfig):
        raise ValueError(f"{path}: expected a mapping of sections")
    bases = recipe.pop("inherit", None) or []
    bases = [bases] if isinstance(bases, str) else list(bases)
    layers = [_read_recipe(os.path.join(os.path.dirname(path), str(base)), seen + (os.path.abspath(path),))
              for base in bases]
    return OmegaConf.merge(*layers, recipe) if layers else recipe


def _nest(flat: dict[str, object]) -> dict:
    """{"training.lr": "0.1"} -> {"training": {"lr": 0.1}}, values parsed as YAML scalars (null, true, 3, [a, b])."""
    nested: dict = {}
    for key, value in flat.items():
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip() else value
        target = nested
        *sections, name = key.split(".")
        for section in sections:
            target = target.setdefault(section, {})
        target[name] = value
    return nested


def model_fields() -> list[str]:
    """The keys a recipe's `model` section accepts."""
    parameters = inspect.signature(SoftBinLSTMConfig.__init__).parameters
    return [name for name in parameters if name not in ("self", "kwargs", *DERIVED_MODEL_FIELDS)]


def _validate(config: RunConfig, where: str):
    unknown = sorted(set(config.model) - set(model_fields()))
    if unknown:
        raise ValueError(f"{where}: unknown model field(s) {unknown}; known: {', '.join(model_fields())}")
    try:
        # the vocabulary is checked once it is known
        model = SoftBinLSTMConfig(vocab_size=1_000_000, **vocabulary_resolved(config.model, 1_000_000))
    except (ValueError, TypeError) as err:
        raise ValueError(f"{where}: model: {err}") from None
    for key, choices in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value not in choices:
            raise ValueError(f"{where}: {key} must be one of {choices}, got {value!r}")
    training = config.training
    for name in ("max_epochs", "batch_size", "eval_batch_size", "bptt", "gradient_accumulation_steps", "log_every"):
        if getattr(training, name) <= 0:
            raise ValueError(f"{where}: training.{name} must be positive, got {getattr(training, name)}")
    for name in ("early_stopping_patience", "pq_reassign_every", "plateau_patience", "warmup_steps", "eval_every"):
        if getattr(training, name) < 0:
            raise ValueError(f"{where}: training.{name} must be >= 0, got {getattr(training, name)}")
    if training.lr <= 0:
        raise ValueError(f"{where}: training.lr must be positive, got {training.lr}")
    if training.scale_lr is not None and training.scale_lr <= 0:
        raise ValueError(f"{where}: training.scale_lr must be positive or null, got {training.scale_lr}")
    for name in ("bop_threshold", "bop_gamma", "binarize_ramp_epochs", "pq_code_temperature"):
        if getattr(training, name) < 0:
            raise ValueError(f"{where}: training.{name} must be >= 0, got {getattr(training, name)}")
    if not 0.0 <= training.bop_gamma <= 1.0:
        raise ValueError(f"{where}: training.bop_gamma must be in [0, 1], got {training.bop_gamma}")
    if not 0.0 <= training.ema_decay < 1.0:
        raise ValueError(f"{where}: training.ema_decay must be in [0, 1), got {training.ema_decay}")
    if training.pq_code_temperature and "pq" not in model.quantization.values():
        raise ValueError(f"{where}: training.pq_code_temperature learns the codes of PQ matrices, and model.quantization "
                         "has no 'pq' part")
    if training.pq_code_temperature and training.pq_reassign_every:
        raise ValueError(f"{where}: training.pq_code_temperature and training.pq_reassign_every both move PQ codes; "
                         "set one of them to 0")
    learned_scalars = model.learnable_scale or model.scaling == "bllm"
    if training.optimizer == "bop" and not ("binary" in model.quantization.values() and learned_scalars):
        raise ValueError(f"{where}: training.optimizer bop flips the signs of binary matrices and leaves their "
                         "magnitudes alone: it needs a binary part and learned scalars (model.learnable_scale: true)")
    if training.max_steps is not None and training.max_steps <= 0:
        raise ValueError(f"{where}: training.max_steps must be positive or null, got {training.max_steps}")
    data = config.data
    if data.name is None and data.train_file is None:
        raise ValueError(f"{where}: set data.name (a Hub dataset) or data.train_file (local text files)")
    if data.name is not None and data.train_file is not None:
        raise ValueError(f"{where}: set either data.name or data.train_file, not both")
    if not 0.0 <= data.max_oov_rate <= 1.0:
        raise ValueError(f"{where}: data.max_oov_rate must be in [0, 1], got {data.max_oov_rate}")
    distill = config.distill
    if distill.teacher is not None:
        if not 0.0 <= distill.kd_lambda <= 1.0:
            raise ValueError(f"{where}: distill.kd_lambda must be in [0, 1], got {distill.kd_lambda}")
        if distill.temperature <= 0:
            raise ValueError(f"{where}: distill.temperature must be positive, got {distill.temperature}")
        for name in ("hidden_weight", "sampled_text_ratio"):
            if getattr(distill, name) < 0:
                raise ValueError(f"{where}: distill.{name} must be >= 0, got {getattr(distill, name)}")
    else:
        for name, off in (("ensemble", []), ("hidden_weight", 0.0), ("sampled_text_ratio", 0.0)):
            if getattr(distill, name) != off:
                raise ValueError(f"{where}: distill.{name} is set but distill.teacher is not: it needs a teacher")


def parse_overrides(tokens: list[str]) -> dict[str, str]:
    """`--training.lr 0.1 --model.binarize=true` -> {"training.lr": "0.1", "model.binarize": "true"}."""
    overrides = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if not token.startswith("--"):
            raise ValueError(f"unexpected argument {token!r}: overrides look like --section.key value")
        key = token[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            index += 1
        else:
            if index + 1 >= len(tokens):
                raise ValueError(f"--{key} needs a value")
            value = tokens[index + 1]
            index += 2
        overrides[key] = value
    return overrides
