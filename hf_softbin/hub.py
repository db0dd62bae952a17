"""Publishing a trained model on the Hugging Face Hub: the upload folder, its model card, the upload.

    >>> from hf_softbin.hub import prepare_upload_folder, push_to_hub
    >>> folder = prepare_upload_folder("runs/softbin", "prepared", repo_id="me/softbin-wt2")  # look before uploading
    >>> push_to_hub("runs/softbin", "me/softbin-wt2", private=True)                           # prepare and upload

What goes up (an allow-list; everything else in the run directory stays home, in particular the float master in
`master/` and the resumable training state): the weights `model.safetensors` (packed for a quantized model; the
float master of a quantized model is refused), `config.json`, `generation_config.json`, the remote-code files the
config names and their relative imports, taken from the installed package (not the run directory's copies, which may
be stale or edited), the tokenizer (saved again, in the current convention and without machine state),
`metrics.json` (local paths cut to their last two parts), `training_curve.png`, and a `README.md` model card rendered
from `model_card_template.md` (shipped in the package; `model_cards/` in the source tree links to it). A directory
whose config.json disagrees with the config its weights carry (a killed save) is refused.
"""

import json
import math
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from .models import softbin_lstm
from .models.softbin_lstm.checkpoint import WEIGHTS_NAME, WeightsFile, disagreeing_fields
from .tokenization import require_tokenizer_file, save_tokenizer
from .training.run_files import CURVE_FILE, METRICS_FILE

CONFIG_FILES = ("config.json", "generation_config.json")
BUNDLE = Path(softbin_lstm.__file__).parent  # the remote-code files of the installed package
# Keys of a run's config (metrics.json) that hold local paths.
PATH_KEYS = {"output_dir", "resume_from_checkpoint", "train_file", "validation_file", "test_file", "tokenizer", "teacher"}
TEMPLATE_NAME = "model_card_template.md"
TAGS = ["binarized", "1-bit", "lstm", "language-model", "hf-softbin"]


class HubUploadError(OSError):
    """The upload could not happen: no token, offline, the Hub unreachable, or the Hub refused it."""


# ------------------------------------------------------------------------------------------------- the upload folder


def prepare_upload_folder(run_dir: str | os.PathLike, folder: str | os.PathLike | None = None, *,
                          repo_id: str | None = None, template: str | os.PathLike | None = None,
                          license: str | None = None) -> Path:
    """Assemble everything `push_to_hub` uploads from `run_dir` into `folder` (a new temporary folder by default).

    Checks first (weights complete and matching their digest, tokenizer present, a quantized model saved packed,
    remote-code files complete), then builds the folder under a temporary name and renames it into place: an error
    leaves nothing behind. `folder` must not exist yet. Returns the folder.
    """
    from transformers import AutoTokenizer

    run_dir = Path(run_dir)
    config = _check_run_dir(run_dir)
    copied = [run_dir / name for name in (WEIGHTS_NAME, *CONFIG_FILES, CURVE_FILE) if (run_dir / name).is_file()]
    copied += _remote_code_files(config)
    try:
        tokenizer = AutoTokenizer.from_pretrained(run_dir)
    except Exception as err:  # the tokenizers library and Transformers fail on a damaged file in many ways
        raise ValueError(f"{run_dir}: the tokenizer files do not load ({type(err).__name__}: {err})") from None
    metrics = _read_metrics(run_dir)
    card = render_model_card(run_dir, config=config, metrics=metrics, repo_id=repo_id, template=template,
                             license=license)

    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="hf-softbin-upload-")) / "upload"
    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"{folder}: already exists; give a new folder for the upload")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-upload-", dir=folder.parent))
    try:
        for path in copied:
            shutil.copyfile(path, staging / path.name)
        save_tokenizer(tokenizer, staging)
        if metrics:
            (staging / METRICS_FILE).write_text(json.dumps(without_local_paths(metrics), indent=2) + "\n",
                                                encoding="utf-8")
        (staging / "README.md").write_text(card, encoding="utf-8")
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _check_run_dir(run_dir: Path) -> dict:
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such model directory")
    for name in ("config.json", WEIGHTS_NAME):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir}: no {name}; expected a directory written by save_pretrained or `hf-softbin train`")
    try:
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{run_dir / 'config.json'}: not valid JSON ({err})") from None
    differing = disagreeing_fields(config, WeightsFile(str(run_dir / WEIGHTS_NAME)).saved_config)
    if differing:
        raise ValueError(
            f"{run_dir}: config.json disagrees with the config model.safetensors was saved with ({differing}, "
            "config.json first): the trace of a save that was killed, or of a hand edit. Repair the directory by "
            "loading and saving the model again (SoftBinLSTMForCausalLM.from_pretrained(DIR).save_pretrained(DIR)), "
            "then push"
        )
    if _is_quantized(config) and config.get("checkpoint_format") != "packed":
        raise ValueError(
            f"{run_dir}: holds the float master of a quantized model, not the packed checkpoint; upload the "
            "directory save_pretrained(dir) writes by default (a training run's OUTPUT_DIR, not OUTPUT_DIR/master)"
        )
    require_tokenizer_file(run_dir)
    return config


def _remote_code_files(config: dict) -> list[Path]:
    """The installed package's files that the config's auto_map and custom_pipelines name, with their relative
    imports: the code that reads this checkpoint, whatever the run directory holds."""
    from transformers.dynamic_module_utils import get_relative_import_files

    references = list((config.get("auto_map") or {}).values())
    references += [info.get("impl", "") for info in (config.get("custom_pipelines") or {}).values()]
    modules = {ref.split("--")[-1].split(".")[0] for ref in references if isinstance(ref, str) and ref}
    files = set()
    for module in sorted(modules):
        path = BUNDLE / f"{module}.py"
        if not path.is_file():
            raise ValueError(f"config.json names the remote-code module {module}, which hf_softbin does not have: "
                             "a checkpoint of another package?")
        files.add(path)
        files.update(Path(imported) for imported in get_relative_import_files(str(path)))
    return sorted(files)


def without_local_paths(metrics: dict) -> dict:
    """metrics.json with every local path of the run's config cut to its last two parts (`wt2-mini/train.txt`):
    where the files lay on the training machine means nothing on the Hub."""
    def cut(key, value):
        if isinstance(value, dict):
            return {k: cut(k, v) for k, v in value.items()}
        if key in PATH_KEYS and isinstance(value, str) and os.path.isabs(value):
            return str(Path(*Path(value).parts[-2:]))
        return value

    return {key: cut(None, value) if key == "config" else value for key, value in metrics.items()}


def _read_metrics(run_dir: Path) -> dict:
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return {}
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(metrics, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return metrics


# ------------------------------------------------------------------------------------------------------ the card


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
        tags=list(TAGS) if _is_quantized(config) else [t for t in TAGS if t not in ("binarized", "1-bit")],
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
    metrics = metrics if metrics is not None else _read_metrics(run_dir)
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


def _is_quantized(config: dict) -> bool:
    return _model_config(config).is_quantized


PART_NAMES = {"embedding": "input embedding", "lstm": "LSTM", "output": "output layer"}
METHOD_NAMES = {"binary": "binarized to one bit a weight", "pq": "product-quantized (one byte a sub-vector)"}
SCALING_NAMES = {"row": "one float scalar per row (soft binarization)", "tensor": "one float scalar per matrix",
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


# -------------------------------------------------------------------------------------------------------- upload


def resolve_token(token: str | None = None) -> str:
    """The token to upload with; a clear HubUploadError when offline mode is on or no token is available."""
    from huggingface_hub import constants, get_token

    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"} or constants.is_offline_mode():
        raise HubUploadError("cannot upload: Hugging Face Hub offline mode is on (HF_HUB_OFFLINE=1); unset it to upload")
    token = token or get_token()
    if not token:
        raise HubUploadError("cannot upload: no Hugging Face token; pass --token, set HF_TOKEN, or run `hf auth login`")
    return token


def push_to_hub(run_dir: str | os.PathLike, repo_id: str, *, private: bool = False, token: str | None = None,
                commit_message: str | None = None, template: str | os.PathLike | None = None,
                license: str | None = None) -> str:
    """Prepare the upload folder of `run_dir` (see `prepare_upload_folder`) and upload it to `repo_id`.

    Creates the repository if needed (`private` applies only then). Returns the URL of the commit.
    """
    token = resolve_token(token)
    workdir = Path(tempfile.mkdtemp(prefix="hf-softbin-upload-"))
    try:
        folder = prepare_upload_folder(run_dir, workdir / "upload", repo_id=repo_id, template=template, license=license)
        return upload_folder(folder, repo_id, private=private, token=token, commit_message=commit_message)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def upload_folder(folder: str | os.PathLike, repo_id: str, *, private: bool = False, token: str | None = None,
                  commit_message: str | None = None) -> str:
    """Create the model repository (if missing) and upload `folder` as one commit; Hub errors become HubUploadError."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError

    token = resolve_token(token)
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                                   commit_message=commit_message or "Upload a soft-binarized LSTM LM with hf-softbin")
    except HfHubHTTPError as err:
        raise HubUploadError(f"the Hub refused the upload to {repo_id}: {err}") from None
    except _network_errors() as err:  # connection refused, DNS failures, timeouts
        raise HubUploadError(
            f"could not reach the Hugging Face Hub at {constants.ENDPOINT} to upload to {repo_id}: "
            f"{type(err).__name__}: {err}"
        ) from None
    return getattr(commit, "commit_url", None) or str(commit)


def _network_errors() -> tuple[type[BaseException], ...]:
    """OSError and the HTTP client's transport errors (huggingface_hub uses httpx2, earlier versions httpx)."""
    errors: list[type[BaseException]] = [OSError]
    for name in ("httpx2", "httpx"):
        try:
            errors.append(__import__(name).HTTPError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)
