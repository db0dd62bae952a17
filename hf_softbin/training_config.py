"""The training recipe: YAML sections `data`, `model`, `training`, `distill`, checked before any work starts.

Command-line overrides use the YAML keys with dots (`--training.lr 0.002`, `--model.hidden_size 200`); a key that
does not exist is an error that lists the keys that do.
"""

import dataclasses
import os
from dataclasses import dataclass, field

import yaml


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


@dataclass
class ModelConfig:
    embedding_size: int = 200
    hidden_size: int = 200
    num_hidden_layers: int = 2
    dropout: float = 0.2
    projection_size: int | None = None
    tie_word_embeddings: bool = False
    binarize: bool | list[str] = False
    scaling: str = "row"
    learnable_scale: bool = False
    float_storage_dtype: str = "float16"
    init_range: float = 0.1


@dataclass
class TrainingConfig:
    max_epochs: int = 40  # an upper bound: early stopping usually ends the run before
    early_stopping_patience: int = 3  # stop after this many evaluations without a better validation loss; 0 = never
    max_steps: int | None = None  # stop after this many optimizer steps (for smoke runs)
    batch_size: int = 20
    eval_batch_size: int = 10
    bptt: int = 35
    optimizer: str = "adam"  # "adam" or "sgd"
    lr: float = 0.002
    weight_decay: float = 0.0
    grad_clip: float = 0.25
    gradient_accumulation_steps: int = 1
    schedule: str = "plateau"  # "plateau", "cosine", "linear" or "constant"
    plateau_factor: float = 0.5
    plateau_patience: int = 0  # evaluations without improvement before the learning rate is cut
    warmup_steps: int = 0
    eval_every: int = 0  # optimizer steps between evaluations; 0 = once per epoch
    log_every: int = 50
    mixed_precision: str = "no"  # "no", "fp16" or "bf16" (where the device supports it)
    log_with: str | None = "tensorboard"  # an Accelerate tracker; used only when installed
    cpu: bool = False  # force the CPU even when an accelerator is present
    seed: int = 1234


@dataclass
class DistillConfig:
    teacher: str | None = None  # a trained full-precision model directory or Hub id; None = no distillation
    kd_lambda: float = 0.5  # weight of the KL term: (1 - lambda) * CE + lambda * T^2 * KL(teacher || student)
    temperature: float = 1.0
    init_from_teacher: bool = True  # start the student's latent weights from the teacher's (clipped to [-1, 1])


@dataclass
class RunConfig:
    output_dir: str = "runs/default"
    resume_from_checkpoint: str | None = None  # a checkpoint directory, or "latest" for OUTPUT_DIR/checkpoint
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS = {"data": DataConfig, "model": ModelConfig, "training": TrainingConfig, "distill": DistillConfig}
CHOICES = {
    "training.optimizer": ("adam", "sgd"),
    "training.schedule": ("plateau", "cosine", "linear", "constant"),
    "training.mixed_precision": ("no", "fp16", "bf16"),
    "model.scaling": ("none", "tensor", "row"),
    "model.float_storage_dtype": ("float32", "float16"),
}


def all_keys() -> list[str]:
    keys = [f.name for f in dataclasses.fields(RunConfig) if f.name not in SECTIONS]
    for section, cls in SECTIONS.items():
        keys += [f"{section}.{f.name}" for f in dataclasses.fields(cls)]
    return keys


def load_run_config(path: str | None = None, overrides: dict[str, object] | None = None) -> RunConfig:
    """Read a YAML recipe (or start from defaults), apply dotted overrides, validate everything."""
    raw = {}
    if path is not None:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"config file not found: {path}")
        with open(path, encoding="utf-8") as handle:
            try:
                raw = yaml.safe_load(handle) or {}
            except yaml.YAMLError as err:
                raise ValueError(f"{path}: not valid YAML: {err}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    flat = _flatten(raw, where=path or "config")
    for key, value in (overrides or {}).items():
        flat[key] = value
    return _build(flat, where=path or "config")


def _flatten(raw: dict, where: str) -> dict:
    flat = {}
    for key, value in raw.items():
        if key in SECTIONS:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ValueError(f"{where}: section '{key}' must be a mapping")
            for inner, inner_value in value.items():
                flat[f"{key}.{inner}"] = inner_value
        else:
            flat[key] = value
    return flat


def _build(flat: dict, where: str) -> RunConfig:
    known = set(all_keys())
    unknown = sorted(key for key in flat if key not in known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known keys: {', '.join(all_keys())}")
    sections = {name: {} for name in SECTIONS}
    top = {}
    for key, value in flat.items():
        if "." in key:
            section, name = key.split(".", 1)
            sections[section][name] = _coerce(key, value)
        else:
            top[key] = _coerce(key, value)
    config = RunConfig(**top, **{name: SECTIONS[name](**values) for name, values in sections.items()})
    _validate(config, where)
    return config


def _field_type(key: str):
    if "." in key:
        section, name = key.split(".", 1)
        return {f.name: f.type for f in dataclasses.fields(SECTIONS[section])}[name]
    return {f.name: f.type for f in dataclasses.fields(RunConfig)}[key]


def _coerce(key: str, value):
    """Turn command-line strings into the field's type; YAML values pass through with a type check."""
    annotation = _field_type(key)
    kind = annotation.__name__ if isinstance(annotation, type) else str(annotation)  # "float", "int | None", ...
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("null", "none", "~") and "None" in kind:
            return None
        if kind.startswith("bool") and text.lower() in ("true", "false", "yes", "no", "1", "0"):
            return text.lower() in ("true", "yes", "1")
        if kind.startswith("bool | list"):
            return [part.strip() for part in text.split(",") if part.strip()]
        if kind.startswith("int"):
            try:
                return int(text)
            except ValueError:
                raise ValueError(f"--{key}: expected an integer, got {value!r}") from None
        if kind.startswith("float"):
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"--{key}: expected a number, got {value!r}") from None
        return value
    if value is None and "None" not in kind:
        raise ValueError(f"{key}: may not be null")
    if kind.startswith("float") and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind.startswith("int") and not (value is None or (isinstance(value, int) and not isinstance(value, bool))):
        raise ValueError(f"{key}: expected an integer, got {value!r}")
    return value


def _validate(config: RunConfig, where: str):
    for key, choices in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value not in choices:
            raise ValueError(f"{where}: {key} must be one of {choices}, got {value!r}")
    training = config.training
    for name in ("max_epochs", "batch_size", "eval_batch_size", "bptt", "gradient_accumulation_steps", "log_every"):
        if getattr(training, name) <= 0:
            raise ValueError(f"{where}: training.{name} must be positive, got {getattr(training, name)}")
    if training.early_stopping_patience < 0:
        raise ValueError(f"{where}: training.early_stopping_patience must be >= 0 (0 = never stop early), got {training.early_stopping_patience}")
    if training.lr <= 0:
        raise ValueError(f"{where}: training.lr must be positive, got {training.lr}")
    if training.max_steps is not None and training.max_steps <= 0:
        raise ValueError(f"{where}: training.max_steps must be positive or null, got {training.max_steps}")
    data = config.data
    if data.name is None and data.train_file is None:
        raise ValueError(f"{where}: set data.name (a Hub dataset) or data.train_file (local text files)")
    if data.name is not None and data.train_file is not None:
        raise ValueError(f"{where}: set either data.name or data.train_file, not both")
    distill = config.distill
    if distill.teacher is not None:
        if not config.model.binarize:
            raise ValueError(f"{where}: distill.teacher is set but model.binarize is false: distillation trains a binarized student")
        if not 0.0 <= distill.kd_lambda <= 1.0:
            raise ValueError(f"{where}: distill.kd_lambda must be in [0, 1], got {distill.kd_lambda}")
        if distill.temperature <= 0:
            raise ValueError(f"{where}: distill.temperature must be positive, got {distill.temperature}")


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
    known = set(all_keys())
    unknown = [key for key in overrides if key not in known]
    if unknown:
        raise ValueError(f"unknown option(s) {['--' + key for key in unknown]}; known keys: {', '.join(all_keys())}")
    return overrides
