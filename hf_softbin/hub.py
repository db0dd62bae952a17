"""Publishing a trained model on the Hugging Face Hub: the upload folder and the upload (its model card is
`model_card.py`'s).

    >>> from hf_softbin.hub import prepare_upload_folder, push_to_hub
    >>> folder = prepare_upload_folder("runs/softbin", "prepared", repo_id="me/softbin-wt2")  # look before uploading
    >>> push_to_hub("runs/softbin", "me/softbin-wt2", private=True)                           # prepare and upload

What goes up (an allow-list; everything else in the run directory stays home, in particular the float master in
`master/` and the resumable training state): the weights `model.safetensors` (packed for a quantized model; the
float master of a quantized model is refused), `config.json`, `generation_config.json`, the remote-code files the
config names and their relative imports, taken from the installed package (not the run directory's copies, which may
be stale or edited), the tokenizer (saved again, in the current convention and without machine state),
`metrics.json` (local paths cut to their last two parts), `training_curve.png`, and the `README.md` model card. A
directory whose config.json disagrees with the config its weights carry (a killed save) is refused.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

from .models import softbin_lstm
from .models.softbin_lstm.checkpoint import WEIGHTS_NAME, WeightsFile, disagreeing_fields
from .model_card import is_quantized, render_model_card
from .tokenization import require_tokenizer_file, save_tokenizer
from .training.run_files import CURVE_FILE, METRICS_FILE, read_metrics

CONFIG_FILES = ("config.json", "generation_config.json")
BUNDLE = Path(softbin_lstm.__file__).parent  # the remote-code files of the installed package
# Keys of a run's config (metrics.json) that hold local paths.
PATH_KEYS = {"output_dir", "resume_from_checkpoint", "train_file", "validation_file", "test_file", "tokenizer", "teacher"}


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
    metrics = read_metrics(run_dir)
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
    if is_quantized(config) and config.get("checkpoint_format") != "packed":
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
