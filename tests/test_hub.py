import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.repocard_data import model_index_to_eval_results
from transformers import AutoModelForCausalLM, pipeline

from hf_softbin import SoftBinLSTMConfig, SoftBinLSTMForCausalLM
from hf_softbin.hub import BUNDLE, HubUploadError, prepare_upload_folder, resolve_token
from hf_softbin.model_card import render_model_card
from hf_softbin.tokenization import train_word_tokenizer

from conftest import REMOTE_CODE_FILES, SENTENCES

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))  # copied as is, never decoded
EXPECTED_FILES = {
    "README.md", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
    *REMOTE_CODE_FILES,
    "metrics.json", "training_curve.png",
}


pytestmark = pytest.mark.usefixtures("one_thread")


def make_run_dir(directory, data=None, metrics=True, curve=True):
    """What a training run leaves: packed model, tokenizer, master/, accelerate_state/, metrics.json, the curve."""
    tokenizer = train_word_tokenizer(SENTENCES)
    torch.manual_seed(0)
    model = SoftBinLSTMForCausalLM(SoftBinLSTMConfig(vocab_size=len(tokenizer), embedding_size=16, hidden_size=32,
                                                     num_hidden_layers=1, dropout=0.0))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    model.save_pretrained(directory / "master", packed=False)
    tokenizer.save_pretrained(directory / "master")
    (directory / "accelerate_state").mkdir()
    (directory / "accelerate_state" / "optimizer.bin").write_bytes(b"\0" * 1000)
    if metrics:
        record = {
            "valid_ppl": 123.456, "test_ppl": 118.2, "compression_ratio": 14.2, "tokens_per_second": 1000.0,
            "train_seconds": 12.0, "steps": 40, "epochs": 2,
            "config": {"data": data or {"name": "Salesforce/wikitext", "config": "wikitext-2-raw-v1"},
                       "model": {}, "training": {"epochs": 2, "lr": 0.002, "bptt": 35}, "distill": {"teacher": None}},
        }
        (directory / "metrics.json").write_text(json.dumps(record))
    if curve:
        (directory / "training_curve.png").write_bytes(PNG)
    return directory


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run_dir(tmp_path_factory.mktemp("run"))


def test_the_upload_leaves_machine_state_out_of_the_tokenizer_config(tmp_path):
    """Run folders written before the tokenizer was saved clean still upload a clean tokenizer_config.json."""
    run = make_run_dir(tmp_path / "run")
    config = json.loads((run / "tokenizer_config.json").read_text())
    (run / "tokenizer_config.json").write_text(json.dumps({**config, "local_files_only": True, "is_local": True}))
    uploaded = json.loads((prepare_upload_folder(run, tmp_path / "up") / "tokenizer_config.json").read_text())
    assert uploaded == config


@pytest.fixture(scope="module")
def prepared(run_dir, tmp_path_factory):
    return prepare_upload_folder(run_dir, tmp_path_factory.mktemp("out") / "upload", repo_id="someone/softbin-tiny")


def test_upload_folder_holds_the_packed_model_and_leaves_the_master_home(run_dir, prepared):
    assert {p.name for p in prepared.iterdir()} == EXPECTED_FILES
    assert all(p.is_file() for p in prepared.iterdir())  # no master/, no accelerate_state/
    assert (prepared / "model.safetensors").read_bytes() == (run_dir / "model.safetensors").read_bytes()
    assert (prepared / "training_curve.png").read_bytes() == PNG
    packed = os.path.getsize(prepared / "model.safetensors")
    master = os.path.getsize(run_dir / "master" / "model.safetensors")
    assert packed * 5 < master  # 1-bit weights (the float scalars of so tiny a model keep the ratio well below 30)
    assert json.loads((prepared / "config.json").read_text())["checkpoint_format"] == "packed"
    assert not [p for p in prepared.parent.iterdir() if p.name.startswith(".tmp")]


def test_upload_folder_loads_as_a_model_and_a_scoring_pipeline(run_dir, prepared):
    model = AutoModelForCausalLM.from_pretrained(prepared)
    reference = AutoModelForCausalLM.from_pretrained(run_dir)
    ids = torch.tensor([[1, 3, 4, 5]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)
    result = pipeline("text-scoring", model=str(prepared))("the cat sat")
    assert result["num_tokens"] == 4


def test_model_card_metadata_parses_and_validates(run_dir, prepared):
    card = ModelCard.load(prepared / "README.md")
    data = card.data
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "text-generation"
    assert {"binarized", "1-bit", "lstm", "language-model", "hf-softbin"} <= set(data.tags)
    assert data.datasets == ["Salesforce/wikitext"]
    assert data.model_name == "softbin-tiny"
    results = {r.dataset_split: r for r in data.eval_results}
    assert results["validation"].metric_type == "perplexity" and results["validation"].metric_value == 123.46
    assert results["test"].metric_value == 118.2
    assert results["test"].dataset_type == "Salesforce/wikitext" and results["test"].dataset_config == "wikitext-2-raw-v1"
    # The raw YAML: a model-index the Hub's parser reads, and metadata that survives a round trip.
    metadata = yaml.safe_load(str(card).split("---")[1])
    name, parsed = model_index_to_eval_results(metadata["model-index"])
    assert name == "softbin-tiny" and sorted(r.metric_value for r in parsed) == [118.2, 123.46]
    assert ModelCardData(**metadata).to_dict() == data.to_dict()


def test_model_card_body_has_table_curve_and_usage(run_dir, prepared):
    text = (prepared / "README.md").read_text()
    packed = os.path.getsize(run_dir / "model.safetensors")
    compression = next(line for line in text.splitlines() if line.startswith("compression on disk"))
    assert f"{packed:,} bytes (packed model.safetensors)" in compression  # the very file uploaded
    assert "model.lstm.0.weight_ih" in text and "sign bits" in text  # the per-layer table
    assert "![training curve](training_curve.png)" in text
    for snippet in ('AutoModelForCausalLM.from_pretrained("someone/softbin-tiny", trust_remote_code=True)',
                    "model.generate(", 'pipeline("text-scoring", model="someone/softbin-tiny"', "123.46", "118.20"):
        assert snippet in text, snippet
    assert "{{" not in text and "}}" not in text


def test_local_data_and_missing_records(tmp_path):
    run = make_run_dir(tmp_path / "local", data={"train_file": "/data/wt2-mini/train.txt"}, curve=False)
    card = ModelCard(render_model_card(run, repo_id="me/local"))
    assert card.data.datasets is None  # a local file is not a Hub dataset
    assert {r.dataset_type for r in card.data.eval_results} == {"wt2-mini"}
    assert "training_curve.png" not in str(card)
    bare = make_run_dir(tmp_path / "bare", metrics=False, curve=False)
    folder = prepare_upload_folder(bare, tmp_path / "bare-upload")
    assert not (folder / "metrics.json").exists()
    card = ModelCard.load(folder / "README.md")
    assert card.data.eval_results is None and "no metrics.json" in str(card)


def test_bad_run_directories_are_refused_before_anything_is_written(run_dir, tmp_path):
    with pytest.raises(ValueError, match="float master"):
        prepare_upload_folder(run_dir / "master", tmp_path / "a")
    assert not (tmp_path / "a").exists()
    no_tokenizer = make_run_dir(tmp_path / "no-tok", metrics=False, curve=False)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        os.remove(no_tokenizer / name)
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        prepare_upload_folder(no_tokenizer, tmp_path / "b")
    (no_tokenizer / "tokenizer.json").write_text("{}")
    with pytest.raises(ValueError, match="tokenizer files do not load"):
        prepare_upload_folder(no_tokenizer, tmp_path / "c")
    template = tmp_path / "card.md"
    template.write_text("---\n{{ metadata }}\n---\n{{ no_such_thing }}\n")
    with pytest.raises(ValueError, match="no_such_thing"):
        prepare_upload_folder(run_dir, tmp_path / "d", template=template)
    (tmp_path / "e").mkdir()
    with pytest.raises(FileExistsError):
        prepare_upload_folder(run_dir, tmp_path / "e")
    assert not [p for p in tmp_path.iterdir() if p.name in "abcd" or p.name.startswith(".tmp")]


def test_the_upload_carries_the_installed_remote_code_not_the_run_directorys_copies(tmp_path):
    run = make_run_dir(tmp_path / "run", metrics=False, curve=False)
    (run / "modeling_softbin_lstm.py").write_text("raise SystemExit('planted')\n")
    os.remove(run / "pipeline_text_scoring.py")
    folder = prepare_upload_folder(run, tmp_path / "up")
    for name in REMOTE_CODE_FILES:
        assert (folder / name).read_bytes() == (BUNDLE / name).read_bytes(), name
    config = json.loads((run / "config.json").read_text())
    config["auto_map"]["AutoModel"] = "modeling_other.OtherModel"
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="modeling_other, which hf_softbin does not have"):
        prepare_upload_folder(run, tmp_path / "other")


def test_uploaded_metrics_hold_no_local_paths_and_the_card_still_names_the_data(tmp_path):
    data = {"train_file": str(tmp_path / "corpora" / "wt2-mini" / "train.txt"), "tokenizer": "someone/word-tokenizer"}
    run = make_run_dir(tmp_path / "run", data=data)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["config"].update(output_dir=str(run), distill={"teacher": str(tmp_path / "runs" / "teacher")})
    (run / "metrics.json").write_text(json.dumps(metrics))
    folder = prepare_upload_folder(run, tmp_path / "up")
    uploaded = (folder / "metrics.json").read_text()
    assert str(tmp_path) not in uploaded
    config = json.loads(uploaded)["config"]
    assert config["data"] == {"train_file": "wt2-mini/train.txt", "tokenizer": "someone/word-tokenizer"}
    assert config["distill"]["teacher"] == "runs/teacher" and config["output_dir"] == f"{tmp_path.name}/run"
    assert json.loads(uploaded)["valid_ppl"] == metrics["valid_ppl"]
    assert "wt2-mini (local text files)" in (folder / "README.md").read_text()


def test_a_directory_whose_config_disagrees_with_its_weights_is_not_uploaded(tmp_path):
    """What a save killed between moving config.json and the weights leaves: the card would mix both."""
    run = make_run_dir(tmp_path / "run", metrics=False, curve=False)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "hidden_size": 48}))
    with pytest.raises(ValueError, match=r"config.json disagrees .*'hidden_size': \(48, 32\).*save_pretrained"):
        prepare_upload_folder(run, tmp_path / "up")
    assert not (tmp_path / "up").exists()
    SoftBinLSTMForCausalLM.from_pretrained(run).save_pretrained(run)  # the repair the message gives
    assert json.loads((prepare_upload_folder(run, tmp_path / "up") / "config.json").read_text())["hidden_size"] == 32


def test_both_model_pushes_refuse_with_one_message_naming_the_command(tmp_path):
    model = SoftBinLSTMForCausalLM(SoftBinLSTMConfig(vocab_size=10, embedding_size=8, hidden_size=8, num_hidden_layers=1))
    messages = []
    for push_call in (lambda: model.save_pretrained(tmp_path / "m", push_to_hub=True),
                      lambda: model.push_to_hub("someone/softbin-tiny")):
        with pytest.raises(ValueError, match=r"hf-softbin push DIRECTORY REPO_ID") as refused:
            push_call()
        messages.append(str(refused.value).split(": ", 1)[1])
    assert messages[0] == messages[1]
    assert not (tmp_path / "m").exists()
    with pytest.raises(HubUploadError, match="offline"):  # conftest runs the tests offline
        resolve_token("hf_anything")


def push(run_dir, tmp_path, **env):
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE", "TRANSFORMERS_OFFLINE"))}
    environment.update(HF_HOME=str(tmp_path / "hf-home"), **env)
    return subprocess.run([sys.executable, "-m", "hf_softbin.cli", "push", str(run_dir), "someone/softbin-tiny"],
                          env=environment, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("case", ["offline", "no-token", "unreachable"])
def test_push_fails_with_a_clear_message(run_dir, tmp_path, case):
    env = {
        "offline": dict(HF_HUB_OFFLINE="1", HF_TOKEN="hf_dummy"),
        "no-token": dict(HF_HUB_OFFLINE="0", HF_TOKEN=""),
        "unreachable": dict(HF_HUB_OFFLINE="0", HF_TOKEN="hf_dummy", HF_ENDPOINT="http://127.0.0.1:9"),
    }[case]
    result = push(run_dir, tmp_path, **env)
    assert result.returncode == 2, result.stderr
    expected = {
        "offline": "offline mode is on (HF_HUB_OFFLINE=1)",
        "no-token": "no Hugging Face token; pass --token, set HF_TOKEN",
        "unreachable": "could not reach the Hugging Face Hub at http://127.0.0.1:9 to upload to someone/softbin-tiny",
    }[case]
    assert "hf-softbin push: error: " in result.stderr and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_push_dry_run_prepares_without_uploading(capsys, run_dir, tmp_path):
    from hf_softbin.cli import main

    assert main(["push", str(run_dir), "someone/softbin-tiny", "--dry-run", str(tmp_path / "dry")]) == 0
    out = capsys.readouterr().out
    assert {p.name for p in (tmp_path / "dry").iterdir()} == EXPECTED_FILES
    assert "not uploaded" in out and "model.safetensors" in out
