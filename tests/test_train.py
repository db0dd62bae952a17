import json
import math
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_softbin import SoftBinLSTMConfig
from hf_softbin.corpus import generate_corpus
from hf_softbin.training.data import load_text_splits, token_stream, tokenize_splits
from hf_softbin.training.loop import TrainingDiverged, evaluate, train
from hf_softbin.training.run_files import CHECKPOINT_DIR
from hf_softbin.training.recipe import load_run_config, parse_overrides, vocabulary_resolved

from conftest import REPO_ROOT, recipe, write_recipe


def test_a_run_leaves_a_loadable_model_metrics_curve_and_state(teacher_run):
    run, metrics = teacher_run
    for name in ("model.safetensors", "config.json", "tokenizer.json", "metrics.json", "training_curve.png"):
        assert (run / name).exists(), name
    assert (run / CHECKPOINT_DIR / "model.safetensors").exists()
    on_disk = json.loads((run / "metrics.json").read_text())
    for key in ("valid_ppl", "test_ppl", "compression_ratio", "tokens_per_second", "train_seconds", "config"):
        assert on_disk[key] is not None, key
    assert on_disk["config"]["model"]["hidden_size"] == 16
    history = on_disk["history"]
    assert len(history) == 2 and history[-1]["valid_ppl"] < history[0]["valid_ppl"] < 300
    model = AutoModelForCausalLM.from_pretrained(run)
    tokenizer = AutoTokenizer.from_pretrained(run)
    assert model.config.vocab_size == len(tokenizer) == 300


def test_distilled_binarized_student_beats_plain_binary_start_and_packs(teacher_run, corpus, tmp_path):
    teacher, teacher_metrics = teacher_run
    values = recipe(corpus, tmp_path / "student", model={"binarize": True},
                    distill={"teacher": str(teacher), "kd_lambda": 0.5, "temperature": 2.0})
    metrics = train(load_run_config(str(write_recipe(tmp_path / "student.yaml", values))))
    assert (tmp_path / "student" / "master" / "model.safetensors").exists()
    assert metrics["compression_ratio"] > 5
    packed = AutoModelForCausalLM.from_pretrained(tmp_path / "student")
    master = AutoModelForCausalLM.from_pretrained(tmp_path / "student" / "master")
    assert packed.is_packed and not master.is_packed
    ids = torch.randint(0, 300, (2, 12))
    with torch.no_grad():
        assert torch.equal(packed(ids).logits, master(ids).logits)
    # Evaluating the saved packed model in this process gives the perplexity the run reported.
    splits = tokenize_splits(load_text_splits(validation_file=corpus / "valid.txt"), AutoTokenizer.from_pretrained(teacher), "text")
    from accelerate import Accelerator

    loss, _ = evaluate(packed, token_stream(splits["validation"]), Accelerator(cpu=True), 4, 10)
    assert math.isclose(math.exp(loss), metrics["valid_ppl"], rel_tol=1e-5)
    assert metrics["valid_ppl"] < 2 * teacher_metrics["valid_ppl"]


def test_a_product_quantized_student_learns_from_the_teacher_and_packs_smaller(teacher_run, corpus, tmp_path):
    teacher, teacher_metrics = teacher_run
    # Two one-byte codes a row (16 columns) against 2 bytes of signs and a 2-byte scalar: smaller even at this width.
    pq = {"quantization": {"embedding": "pq", "lstm": "binary", "output": "pq"}, "pq_subvectors": 2,
          "pq_codebook_size": 64, "pq_codebook_storage": "binary"}
    values = recipe(corpus, tmp_path / "pq", model=pq, distill={"teacher": str(teacher)},
                    training={"pq_reassign_every": 5})
    del values["model"]["binarize"]
    metrics = train(load_run_config(str(write_recipe(tmp_path / "pq.yaml", values))))
    binary = recipe(corpus, tmp_path / "binary", model={"binarize": True}, training={"max_steps": 1})
    binary_metrics = train(load_run_config(str(write_recipe(tmp_path / "binary.yaml", binary))))
    assert metrics["compression_ratio"] > binary_metrics["compression_ratio"]
    packed = AutoModelForCausalLM.from_pretrained(tmp_path / "pq")
    master = AutoModelForCausalLM.from_pretrained(tmp_path / "pq" / "master")
    ids = torch.randint(0, 300, (2, 12))
    with torch.no_grad():
        assert torch.equal(packed(ids).logits, master(ids).logits)
    # The codebooks started from k-means of the teacher's matrices and learned; codes were re-assigned.
    teacher_model = AutoModelForCausalLM.from_pretrained(teacher)
    decoded = master.model.embeddings.matrix().detach()
    teacher_rows = teacher_model.model.embeddings.weight.detach()
    assert (decoded - teacher_rows).norm() < teacher_rows.norm()
    assert metrics["valid_ppl"] < 2 * teacher_metrics["valid_ppl"]


def test_teacher_with_another_vocabulary_is_rejected_before_training(teacher_run, corpus, tmp_path):
    teacher, _ = teacher_run
    other = AutoTokenizer.from_pretrained(teacher)
    from hf_softbin.tokenization import train_word_tokenizer

    train_word_tokenizer(["alpha beta gamma"]).save_pretrained(tmp_path / "tok")
    values = recipe(corpus, tmp_path / "student", model={"binarize": True}, distill={"teacher": str(teacher)},
                    data={"tokenizer": str(tmp_path / "tok")})
    with pytest.raises(ValueError, match="different vocabulary"):
        train(load_run_config(str(write_recipe(tmp_path / "s.yaml", values))))
    assert len(other) == 300
    assert not (tmp_path / "student").exists()


def test_a_missing_ensemble_member_is_named_with_its_key_before_any_data_is_read(teacher_run, corpus, tmp_path):
    teacher, _ = teacher_run
    values = recipe(corpus, tmp_path / "student", model={"binarize": True},
                    distill={"teacher": str(teacher), "ensemble": [str(teacher), str(tmp_path / "teacher-s3")]})
    with pytest.raises(FileNotFoundError, match=r"^distill.ensemble: \S*teacher-s3: no such model directory"):
        train(load_run_config(str(write_recipe(tmp_path / "s.yaml", values))))
    assert not (tmp_path / "student").exists()


def test_a_teacher_from_other_text_stops_the_run_on_the_oov_rate_before_training(teacher_run, tmp_path):
    teacher, _ = teacher_run
    other = tmp_path / "other"
    other.mkdir()
    lines = generate_corpus(300, seed=99)  # another invented language: its words are not the teacher's
    for name, part in (("train", lines[:200]), ("valid", lines[200:250]), ("test", lines[250:])):
        (other / f"{name}.txt").write_text("\n".join(part) + "\n")
    values = recipe(other, tmp_path / "student", model={"binarize": True}, distill={"teacher": str(teacher)})
    values["data"].pop("max_vocab_size")
    with pytest.raises(ValueError, match=r"split 'train': [5-9]\d\.\d% of its tokens are <unk>.*max_oov_rate"):
        train(load_run_config(str(write_recipe(tmp_path / "s.yaml", values))))
    assert not (tmp_path / "student").exists()


def test_a_student_of_a_teacher_saved_by_0_2_trains_on_the_same_stream_and_saves_the_current_tokenizer(
        teacher_run, corpus, tmp_path):
    """A teacher whose tokenizer appends <eos> (hf-softbin 0.2) teaches as before; the student saves the teacher's
    vocabulary in today's convention, without machine state."""
    teacher = tmp_path / "teacher-0.2"
    shutil.copytree(teacher_run[0], teacher)
    backend = json.loads((teacher / "tokenizer.json").read_text())
    backend["post_processor"] = {"type": "TemplateProcessing",
                                 "single": [{"Sequence": {"id": "A", "type_id": 0}},
                                            {"SpecialToken": {"id": "<eos>", "type_id": 0}}],
                                 "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                                          {"SpecialToken": {"id": "<eos>", "type_id": 0}},
                                          {"Sequence": {"id": "B", "type_id": 1}},
                                          {"SpecialToken": {"id": "<eos>", "type_id": 1}}],
                                 "special_tokens": {"<eos>": {"id": "<eos>", "ids": [1], "tokens": ["<eos>"]}}}
    backend["decoder"] = None
    (teacher / "tokenizer.json").write_text(json.dumps(backend))
    old = AutoTokenizer.from_pretrained(teacher)
    assert old("a b")["input_ids"][-1] == 1 and old("a b")["input_ids"][0] != 1
    values = recipe(corpus, tmp_path / "student", model={"binarize": True}, distill={"teacher": str(teacher)},
                    training={"max_steps": 2})
    train(load_run_config(str(write_recipe(tmp_path / "s.yaml", values))))
    for directory in (tmp_path / "student", tmp_path / "student" / "master"):
        saved = json.loads((directory / "tokenizer_config.json").read_text())
        assert not {"local_files_only", "is_local"} & set(saved), saved
        student = AutoTokenizer.from_pretrained(directory)
        assert student.get_vocab() == old.get_vocab()
        assert student("a b")["input_ids"] == [1] + old("a b", add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda v: v["training"].update(learning_rate=0.1), "unknown key"),
        (lambda v: v.update(optimiser="adam"), "unknown key"),
        (lambda v: v["data"].update(train_file="/nonexistent/train.txt"), "/nonexistent/train.txt"),
        (lambda v: v["data"].update(text_column="sentence"), "sentence"),
        (lambda v: v["model"].update(scaling="columns"), "scaling"),
        (lambda v: v["training"].update(schedule="exp"), "training.schedule"),
        (lambda v: v["training"].update(batch_size=0), "batch_size"),
        (lambda v: v.setdefault("distill", {}).update(teacher="runs/absent/teacher"),
         "^distill.teacher: runs/absent/teacher: no such model directory"),
    ],
)
def test_bad_recipes_fail_before_training(corpus, tmp_path, change, message):
    values = recipe(corpus, tmp_path / "run")
    change(values)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        train(load_run_config(str(write_recipe(tmp_path / "bad.yaml", values))))
    assert not (tmp_path / "run").exists()  # not even an empty output directory


def test_empty_corpus_is_rejected(corpus, tmp_path):
    (tmp_path / "empty.txt").write_text("\n  \n")
    values = recipe(corpus, tmp_path / "run", data={"train_file": str(tmp_path / "empty.txt")})
    with pytest.raises(ValueError, match="no text"):
        train(load_run_config(str(write_recipe(tmp_path / "bad.yaml", values))))


def test_command_line_overrides_use_yaml_keys_and_unknown_ones_fail(corpus, tmp_path):
    path = write_recipe(tmp_path / "r.yaml", recipe(corpus, tmp_path / "run"))
    config = load_run_config(str(path), parse_overrides(["--training.lr", "0.5", "--model.binarize=true",
                                                         "--distill.teacher", "x"]))
    assert config.training.lr == 0.5 and config.model["binarize"] is True and config.distill.teacher == "x"
    with pytest.raises(ValueError, match="^the command line: unknown key --training.learning_rate; training has: "
                                         "max_epochs"):
        load_run_config(str(path), parse_overrides(["--training.learning_rate", "0.1"]))
    with pytest.raises(ValueError, match="^the command line: --training.max_epochs: .*could not be converted to "
                                         "Integer"):
        load_run_config(str(path), {"training.max_epochs": "two"})
    values = recipe(corpus, tmp_path / "run")
    values["training"]["learning_rate"] = 0.1
    with pytest.raises(ValueError, match=r"^\S*typo.yaml: unknown key training.learning_rate"):
        load_run_config(str(write_recipe(tmp_path / "typo.yaml", values)), parse_overrides(["--training.lr", "1"]))
    with pytest.raises(ValueError, match="needs a value"):
        parse_overrides(["--training.lr"])
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_run_config(str(tmp_path / "missing.yaml"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(corpus, tmp_path, monkeypatch):
    import hf_softbin.training.loop as train_module

    values = recipe(corpus, tmp_path / "run", training={"eval_every": 5, "max_epochs": 1})
    real_cross_entropy = train_module.F.cross_entropy
    calls = {"training": 0}

    def poisoned(logits, targets, *args, **kwargs):
        loss = real_cross_entropy(logits, targets, *args, **kwargs)
        if kwargs.get("reduction", "mean") == "mean" and torch.is_grad_enabled():
            calls["training"] += 1
            if calls["training"] == 8:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(train_module.F, "cross_entropy", poisoned)
    with pytest.raises(TrainingDiverged, match="nan.*step 7"):
        train(load_run_config(str(write_recipe(tmp_path / "r.yaml", values))))
    checkpoint = tmp_path / "run" / CHECKPOINT_DIR
    state = torch.load(checkpoint / "custom_checkpoint_1.pkl", weights_only=False)
    assert state["step"] == 5
    assert all(torch.isfinite(t).all() for t in load_file(checkpoint / "model.safetensors").values())


# Subprocess time limits only catch a hang: a run of these tiny models takes seconds, but starting Python, torch and
# transformers on a machine whose two cores are shared with other jobs can take minutes.
HANG_GUARD_SECONDS = 1200


def run_cli(args, **kwargs):
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    return subprocess.Popen([sys.executable, "-m", "hf_softbin.cli", "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kwargs)


# `hf-softbin train ARGS`, in a process that sends itself SIGINT right after optimizer step STEP (argv[1]): the
# signal arrives at a known point of the run, however slow the machine.
SIGINT_AT_STEP = """
import os, signal, sys
from hf_softbin.training import loop
step, real_segment = int(sys.argv[1]), loop.TrainingRun.train_segment

def train_segment(self, *args):
    result = real_segment(self, *args)
    if result[-1] and self.progress.step == step:
        os.kill(os.getpid(), signal.SIGINT)
    return result

loop.TrainingRun.train_segment = train_segment
from hf_softbin.cli import main
sys.exit(main(["train", *sys.argv[2:]]))
"""


@pytest.mark.slow
def test_sigint_saves_a_checkpoint_and_resuming_matches_an_uninterrupted_run(corpus, tmp_path):
    values = recipe(corpus, tmp_path / "whole", model={"binarize": True, "dropout": 0.3},
                    training={"max_epochs": 2, "eval_every": 15})
    whole = write_recipe(tmp_path / "whole.yaml", values)
    train(load_run_config(str(whole)))

    interrupted_dir = tmp_path / "interrupted"
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    stopped = subprocess.run([sys.executable, "-c", SIGINT_AT_STEP, "20", str(whole), "--output_dir",
                              str(interrupted_dir)], capture_output=True, text=True, env=env,
                             timeout=HANG_GUARD_SECONDS)
    assert stopped.returncode == 128 + signal.SIGINT, stopped.stderr
    assert "resumable checkpoint saved" in stopped.stderr
    state = torch.load(interrupted_dir / CHECKPOINT_DIR / "custom_checkpoint_1.pkl", weights_only=False)
    assert state["step"] == 20  # the checkpoint of the step the signal came after

    resumed = run_cli([str(whole), "--output_dir", str(interrupted_dir), "--resume_from_checkpoint", "latest"])
    _, stderr = resumed.communicate(timeout=HANG_GUARD_SECONDS)
    assert resumed.returncode == 0, stderr
    expected = load_file(tmp_path / "whole" / "master" / "model.safetensors")
    got = load_file(interrupted_dir / "master" / "model.safetensors")
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


@pytest.mark.slow
def test_two_processes_train_in_sync_and_evaluate_like_one(corpus, tmp_path):
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun not on PATH")
    values = recipe(corpus, tmp_path / "ddp", model={"binarize": True}, training={"max_epochs": 1, "cpu": True})
    path = write_recipe(tmp_path / "ddp.yaml", values)
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    # --standalone: the rendezvous takes a free port of its own, never one another job holds
    result = subprocess.run(["torchrun", "--standalone", "--nproc_per_node", "2", "-m", "hf_softbin.cli", "train",
                             str(path)], capture_output=True, text=True, env=env, timeout=HANG_GUARD_SECONDS)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["replicas_identical"] is True
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "ddp")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "ddp")
    splits = tokenize_splits(load_text_splits(test_file=corpus / "test.txt"), tokenizer, "text")
    from accelerate import Accelerator

    loss, count = evaluate(model, token_stream(splits["test"]), Accelerator(cpu=True), 4, 10)
    assert count == metrics["test_tokens"]
    assert math.isclose(math.exp(loss), metrics["test_ppl"], rel_tol=1e-6)


SHIPPED_DATASETS = ("wt2-mini", "ptb-small", "ptb-medium", "wikitext-2")
SHIPPED_METHODS = ("teacher", "bllm", "soft", "soft-kd", "soft-kd-ensemble", "soft-kd-ensemble-two-plane",
                   "pq-soft-kd", "pq-soft-kd-ensemble")


def test_every_recipe_parses_and_each_shipped_dataset_has_every_method():
    """Every recipe under configs/ parses (in a folder a user added too); the shipped datasets have every method,
    each writing to runs/DATASET/METHOD, quantized but for the teacher."""
    configs = REPO_ROOT / "configs"
    for dataset in SHIPPED_DATASETS:
        assert {path.stem for path in (configs / dataset).glob("*.yaml")} >= {"base", *SHIPPED_METHODS}, dataset
    for dataset in (path for path in configs.iterdir() if (path / "base.yaml").exists()):
        for path in sorted(dataset.glob("*.yaml")):
            config = load_run_config(str(path))
            if dataset.name in SHIPPED_DATASETS and path.stem != "base":
                assert config.output_dir == f"runs/{dataset.name}/{path.stem}"
                model = vocabulary_resolved(config.model, SoftBinLSTMConfig().vocab_size)  # a share of the words
                quantized = SoftBinLSTMConfig(**model).is_quantized
                assert quantized == (path.stem != "teacher"), (dataset, path.stem)
