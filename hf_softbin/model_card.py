"""The model card of an upload: the README.md rendered from `model_card_template.md` (shipped in the package), with
Hub metadata (library, pipeline tag, tags, datasets, a `model-index` of the measured perplexities), the model table,
results, the compression table of `hf-softbin summary`, the training curve, the run's settings and usage snippets.
A template may be replaced (`template=`); an unknown `{{ placeholder }}` is an error.
"""

import json
import math
import os
from importlib import resources
from pathlib import Path

from .training.run_files import CURVE_FILE, read_metrics

TEMPLATE_NAME = "model_card_template.md"
TAGS = ["binarized", "1-bit", "lstm", "language-model", "hf-softbin"]


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def dataset_info(metrics: dict) -> dict:
    """From the run's config: `hub_id` (a Hub dataset, or None), `config`, and a readable `name`."""
    data = ((metrics.get("config") or {}).get("data") or {}) if isinstance(metrics.get("config"), dict) else {}
    if data.get("name"):
        name = data["name"] + (f" ({data['config']})" if data.get("config") else "")
        return {"hub_id": data["name"], "config": data.get("config"), "name": name}
    if data.get("train_file"):
        parent = Path(data["train_file"]).parent.name or Path(data["train_file"]).stem
        return {"hub_id": None, "config": None, "name": f"{parent} (local text files)", "local_id": parent}
    return {}


def card_data(config: dict, metrics: dict, *, model_name: str, license: str | None = None):
    """The card's YAML metadata as `huggingface_hub.ModelCardData` (with a model-index of the perplexities)."""
    from huggingface_hub import EvalResult, ModelCardData

    dataset = dataset_info(metrics)
    eval_results = []
    for split, key in (("validation", "valid_ppl"), ("test", "test_ppl")):
        value = _number(metrics.get(key))
        if value is None or not dataset:
            continue
        eval_results.append(EvalResult(
            task_type="text-generation", task_name="Language modeling",
            dataset_type=dataset["hub_id"] or dataset["local_id"], dataset_name=dataset["name"],
            dataset_config=dataset.get("config"), dataset_split=split,
            metric_type="perplexity", metric_name=f"{split.capitalize()} perplexity", metric_value=round(value, 2),
        ))
    return ModelCardData(
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=list(TAGS) if is_quantized(config) else [t for t in TAGS if t not in ("binarized", "1-bit")],
        datasets=[dataset["hub_id"]] if dataset.get("hub_id") else None,
        license=license,
        model_name=model_name,
        eval_results=eval_results or None,
    )


def render_model_card(run_dir: str | os.PathLike, *, config: dict | None = None, metrics: dict | None = None,
                      repo_id: str | None = None, template: str | os.PathLike | None = None,
                      license: str | None = None) -> str:
    """The README.md of the upload: YAML metadata, model table, results, compression table, curve, usage."""
    from huggingface_hub import ModelCard

    from .summary import format_summary, summarize

    run_dir = Path(run_dir)
    config = config if config is not None else json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    metrics = metrics if metrics is not None else read_metrics(run_dir)
    repo_id = repo_id or run_dir.resolve().name
    model_name = repo_id.split("/")[-1]
    text = Path(template).read_text(encoding="utf-8") if template else \
        resources.files("hf_softbin").joinpath(TEMPLATE_NAME).read_text(encoding="utf-8")
    data = card_data(config, metrics, model_name=model_name, license=license)
    values = {
        "metadata": data.to_yaml(),
        "title": model_name,
        "description": _description(config),
        "model_table": _model_table(config),
        "results": _results(metrics),
        "compression_table": format_summary(summarize(str(run_dir))),
        "training_curve": "## Training curve\n\n![training curve](training_curve.png)"
        if (run_dir / CURVE_FILE).is_file() else "",
        "training": _training(metrics),
        "repo_id": repo_id,
        "vocab_size": f"{config.get('vocab_size', '?'):,}" if isinstance(config.get("vocab_size"), int) else "?",
    }
    rendered = _substitute(text, values)
    ModelCard(rendered)  # parses the metadata block: a broken template fails here, not on the Hub
    return rendered


def _substitute(text: str, values: dict) -> str:
    import re

    def replace(match):
        key = match.group(1)
        if key not in values:
            raise ValueError(f"model card template: unknown placeholder {{{{ {key} }}}}; known: {sorted(values)}")
        return str(values[key])

    return re.sub(r"\{\{\s*(\w+)\s*\}\}", replace, text)


def _model_config(config: dict):
    """config.json as a SoftBinLSTMConfig (which also reads the field names of older versions)."""
    from .models.softbin_lstm import SoftBinLSTMConfig

    return SoftBinLSTMConfig.from_dict(config)


def is_quantized(config: dict) -> bool:
    return _model_config(config).is_quantized


PART_NAMES = {"embedding": "input embedding", "lstm": "LSTM", "output": "output layer"}
METHOD_NAMES = {"binary": "binarized to one bit a weight", "pq": "product-quantized (one byte a sub-vector)"}
SCALING_NAMES = {"row": "one float scalar per row (soft binarization)", "tensor": "one float scalar per matrix",
                 "row_col": "one float scalar per row and one per column (OneBit)",
                 "bllm": "plain +-1 weights with a learned per-unit scale and shift (the BLLM 2018 baseline)"}


def _description(config: dict) -> str:
    model_config = _model_config(config)
    kind = (f"A {model_config.num_hidden_layers}-layer, {model_config.hidden_size}-unit word-level LSTM language "
            "model")
    if not model_config.is_quantized:
        return kind + " in full precision (the teacher / baseline of an hf-softbin run)."
    described = [f"its {PART_NAMES[part]} {METHOD_NAMES[method]}" for part, method in model_config.quantization.items()
                 if method != "float"]
    text = f"{kind} with " + ", ".join(described[:-1]) + (" and " if len(described) > 1 else "") + described[-1]
    if "binary" in model_config.quantization.values():
        text += f"; binary matrices keep {SCALING_NAMES[model_config.scaling]}"
    if model_config.output_residual_rows:
        text += (f"; the output layer's first {model_config.output_residual_rows:,} rows (its most frequent words) "
                 "keep a second sign plane")
    return text + "."


def _model_table(config: dict) -> str:
    model_config = _model_config(config)
    quantization = ", ".join(f"{part}: {method}" for part, method in model_config.quantization.items())
    rows = [
        ("vocabulary", model_config.vocab_size),
        ("embedding size", model_config.embedding_size),
        ("LSTM layers x units", f"{model_config.num_hidden_layers} x {model_config.hidden_size}"),
        ("projection", model_config.projection_size or "none"),
        ("tied input/output embedding", model_config.tie_word_embeddings),
        ("storage per part", quantization),
        ("scaling of binary matrices", model_config.scaling),
        ("output rows with a second sign plane", model_config.output_residual_rows),
        ("learned scalars", model_config.learnable_scale),
        ("float precision of kept scalars", model_config.float_storage_dtype),
        ("checkpoint", "packed" if model_config.checkpoint_format == "packed" else "float32 weights"),
    ]
    if "pq" in model_config.quantization.values():
        pq = [f"{part}: m={m}, K={k}" for part in ("embedding", "output") if model_config.quantization[part] == "pq"
              for m, k in [model_config.pq_settings(part)]]
        rows.append(("PQ sub-vectors and codewords", ", ".join(pq) + f"; codebooks {model_config.pq_codebook_storage}"))
    return "\n".join(f"| {name} | {value} |" for name, value in rows)


def _results(metrics: dict) -> str:
    valid, test = _number(metrics.get("valid_ppl")), _number(metrics.get("test_ppl"))
    if valid is None and test is None:
        return "No evaluation results were recorded with this checkpoint (no metrics.json)."
    dataset = dataset_info(metrics).get("name", "the training corpus")
    rows = [f"| {split} | {value:.2f} |" for split, value in (("validation", valid), ("test", test)) if value is not None]
    ratio = _number(metrics.get("compression_ratio"))
    text = "\n".join([f"Perplexity on {dataset}:", "", "| split | perplexity |", "|---|---|", *rows, ""])
    text += ("\nMeasured over the whole token stream with `<eos>` at every line end and the LSTM state carried "
             "across lines (the PTB convention). Scoring each sentence on its own from a fresh state "
             "(`text-scoring`, `hf-softbin score`) gives a somewhat higher perplexity.")
    if ratio is not None:
        text += f"\n\nOn disk: the packed checkpoint is {ratio:.2f}x smaller than the float32 master."
    return text


def _training(metrics: dict) -> str:
    run = metrics.get("config") if isinstance(metrics.get("config"), dict) else None
    if not run:
        return "No training record was found beside the checkpoint."
    lines = []
    dataset = dataset_info(metrics)
    if dataset:
        lines.append(f"- data: {dataset['name']}")
    training = run.get("training") or {}
    keys = ("max_epochs", "max_steps", "batch_size", "bptt", "optimizer", "lr", "schedule", "grad_clip", "mixed_precision")
    settings = ", ".join(f"{k}={training[k]}" for k in keys if training.get(k) is not None)
    if settings:
        lines.append(f"- training: {settings}")
    distill = run.get("distill") or {}
    if distill.get("teacher"):
        lines.append(f"- knowledge distillation from a full-precision teacher: lambda={distill.get('kd_lambda')}, "
                     f"temperature={distill.get('temperature')}, student initialized from the teacher: "
                     f"{distill.get('init_from_teacher')}")
    for key, label in (("steps", "optimizer steps"), ("epochs", "epochs run")):
        if isinstance(metrics.get(key), (int, float)):
            lines.append(f"- {label}: {metrics[key]}")
    return "\n".join(lines)
