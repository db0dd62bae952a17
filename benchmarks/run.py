#!/usr/bin/env python
"""The benchmark on wt2-mini: the paper's claim against the strongest float model, and what else a user would weigh.

    python benchmarks/run.py [--reuse]     # every row (77 min on 2 CPU cores); writes benchmarks/
    python benchmarks/run.py --quick       # a smoke run on the first lines of each split, in runs/bench-quick/

Trains every row with the shipped recipes in configs/wt2-mini (chosen by benchmarks/search.py on validation data),
each trained until validation stops improving or to its epoch cap (`EPOCH_CAPS` says how the caps were chosen),
builds the post-training rows from the float row, adds the KenLM n-gram peers when KenLM is built, and measures test
perplexity (docs/evaluation.md), file size and compression, training speed (side by side in one process) and
scoring speed (fresh processes run alternately). Each trained row is kept in --runs-dir as it finishes; `--reuse`
continues an interrupted run from the rows already there.
"""

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from hf_softbin.allocator import reuse_freed_memory

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import best_rates, memory_bytes  # noqa: E402  (benchmarks/measure.py)
import report  # noqa: E402  (benchmarks/report.py, beside this script)

RECIPES = os.path.join("configs", "wt2-mini")
# Epoch caps. The float row: the epoch the search's winning run reached (its last epoch improved validation perplexity
# by 0.005%, after the fifth learning-rate cut). The students: what one benchmark session on 2 CPU cores affords, the
# same for BLLM, soft and soft + KD so that they compare fairly; their validation curves (metrics.json, RESULTS.md)
# show how much each was still improving when the cap stopped it. An epoch is a pass over a run's training text: for
# soft + KD, since the quality study, the real text and three times as much text sampled from the teacher.
EPOCH_CAPS = {"teacher.yaml": 23, "bllm.yaml": 7, "soft.yaml": 7, "soft-kd.yaml": 7, "pq-soft-kd.yaml": 7}
# The two PQ settings beside the recipe's get less than half of that.
SHORT_PQ_CAP = 2


@dataclass
class TrainedRow:
    key: str
    name: str
    what: str
    recipe: str
    overrides: dict = field(default_factory=dict)


TRAINED_ROWS = [
    TrainedRow("float", "float32", "full precision, the searched recipe (the reference and the teacher)",
               "teacher.yaml"),
    TrainedRow("bllm", "BLLM 2018", "+-1 weights, learned gamma/beta, no KD, from random weights", "bllm.yaml"),
    TrainedRow("soft", "soft", "row scalars, no KD", "soft.yaml"),
    TrainedRow("soft-kd", "soft + KD", "row scalars, distilled from the float32 row (the paper's method)",
               "soft-kd.yaml"),
    TrainedRow("pq-m10", "PQ m=10 + soft + KD", "vocabulary matrices as 10 codes a row, binary LSTM, KD",
               "pq-soft-kd.yaml", {"model.pq_subvectors": 10, "training.max_epochs": SHORT_PQ_CAP}),
    TrainedRow("pq-m5", "PQ m=5 + soft + KD", "vocabulary matrices as 5 codes a row (the recipe), binary LSTM, KD",
               "pq-soft-kd.yaml", {"model.pq_subvectors": 5}),
    TrainedRow("pq-m2", "PQ m=2 + soft + KD", "vocabulary matrices as 2 codes a row, binary LSTM, KD",
               "pq-soft-kd.yaml", {"model.pq_subvectors": 2, "training.max_epochs": SHORT_PQ_CAP}),
]
EQUAL_COMPUTE = "float-long"


# ---- training ------------------------------------------------------------------------------------------------------


def data_overrides(data_dir: str) -> dict:
    return {f"data.{split}_file": os.path.join(data_dir, f"{name}.txt")
            for split, name in (("train", "train"), ("validation", "valid"), ("test", "test"))}


def train_rows(args) -> dict[str, str]:
    """Train (or, with --reuse, keep) every row; returns run directories by row key."""
    from hf_softbin.training.loop import train
    from hf_softbin.training.recipe import load_run_config

    common = {**data_overrides(args.data_dir), "training.log_with": None, "training.log_every": 100}
    if args.quick:
        common.update({"training.max_steps": 20, "training.eval_batch_size": 40})
    directories = {row.key: os.path.join(args.runs_dir, row.key) for row in TRAINED_ROWS}
    for row in TRAINED_ROWS:
        overrides = {**common, "training.max_epochs": EPOCH_CAPS[row.recipe], **row.overrides,
                     "output_dir": directories[row.key]}
        if row.recipe.endswith("-kd.yaml"):
            overrides["distill.teacher"] = directories["float"]
        if not (args.reuse and os.path.exists(os.path.join(directories[row.key], "metrics.json"))):
            print(f"training {row.key} ({row.recipe}) into {directories[row.key]}", flush=True)
            train(load_run_config(os.path.join(RECIPES, row.recipe), overrides))
    if not args.skip_equal_compute:
        directories[EQUAL_COMPUTE] = train_equal_compute(args, directories, common)
    return directories


def train_equal_compute(args, directories: dict, common: dict) -> str:
    """The float row trained on for as many epochs as the float teacher and the soft + KD student took together:
    its own run resumed (early stopping off), so it costs only the extra epochs."""
    from hf_softbin.training.loop import train
    from hf_softbin.training.recipe import load_run_config

    target = os.path.join(args.runs_dir, EQUAL_COMPUTE)
    if args.reuse and os.path.exists(os.path.join(target, "metrics.json")):
        return target
    epochs = max(1, sum(_metrics(directories[key])["epochs"] for key in ("float", "soft-kd")))
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(directories["float"], target)
    print(f"training {EQUAL_COMPUTE}: the float row resumed up to {epochs} epochs", flush=True)
    train(load_run_config(os.path.join(RECIPES, "teacher.yaml"), {
        **common, "output_dir": target, "resume_from_checkpoint": "latest", "training.max_epochs": epochs,
        "training.early_stopping_patience": 0}))
    return target


def _metrics(directory: str) -> dict:
    with open(os.path.join(directory, "metrics.json"), encoding="utf-8") as handle:
        return json.load(handle)


# ---- post-training rows --------------------------------------------------------------------------------------------


class TorchLSTMLM(nn.Module):
    """The float model as standard nn.Embedding / nn.LSTM / nn.Linear layers: what dynamic int8 quantization takes.
    Called like the Transformers model (`input_ids`, `cache`), so the same evaluation runs on it."""

    def __init__(self, model):
        super().__init__()
        config, state = model.config, model.state_dict()
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_size)
        self.lstm = nn.LSTM(config.embedding_size, config.hidden_size, config.num_hidden_layers, batch_first=True)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        with torch.no_grad():
            self.embedding.weight.copy_(state["model.embeddings.weight"])
            for index in range(config.num_hidden_layers):
                for name in ("weight_ih", "weight_hh"):
                    getattr(self.lstm, f"{name}_l{index}").copy_(state[f"model.lstm.{index}.{name}.weight"])
                for name in ("bias_ih", "bias_hh"):
                    getattr(self.lstm, f"{name}_l{index}").copy_(state[f"model.lstm.{index}.{name}"])
            self.decoder.weight.copy_(state["lm_head.weight"])
            self.decoder.bias.copy_(state["lm_head_bias"])

    def forward(self, input_ids, cache=None):
        from types import SimpleNamespace

        output, cache = self.lstm(self.embedding(input_ids), cache)
        return SimpleNamespace(logits=self.decoder(output), cache=cache)


def post_training_rows(float_dir: str, artifacts: str) -> list[dict]:
    """fp16 and dynamic int8 versions of the float row, and the float row binarized with row scalars, no retraining."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    from hf_softbin import SoftBinLSTMConfig, SoftBinLSTMForCausalLM
    from hf_softbin.training.distill import init_student_from_teacher

    os.makedirs(artifacts, exist_ok=True)
    teacher = AutoModelForCausalLM.from_pretrained(float_dir).eval()
    fp16_file = os.path.join(artifacts, "fp16.safetensors")
    save_file({name: tensor.half().contiguous() for name, tensor in teacher.state_dict().items()}, fp16_file)
    int8_file = os.path.join(artifacts, "int8.pt")
    int8 = torch.ao.quantization.quantize_dynamic(TorchLSTMLM(teacher).eval(), {nn.LSTM, nn.Linear}, dtype=torch.qint8)
    torch.save(int8, int8_file)
    binary_dir = os.path.join(artifacts, "binary-post-training")
    binary = SoftBinLSTMForCausalLM(SoftBinLSTMConfig.from_dict({**teacher.config.to_dict(), "quantization": None,
                                                                  "binarize": True, "scaling": "row"}))
    init_student_from_teacher(binary, teacher)
    binary.save_pretrained(binary_dir)
    return [
        {"key": "fp16", "name": "fp16", "what": "post-training half-precision weights (computed in float32)",
         "kind": "fp16", "path": fp16_file, "config_dir": float_dir},
        {"key": "int8", "name": "int8", "what": "post-training dynamic int8 (LSTM, Linear; embedding float32)",
         "kind": "int8", "path": int8_file},
        {"key": "binary-pt", "name": "binary, post-training", "what": "float32 row binarized with row scalars, "
         "no retraining", "kind": "hf", "path": binary_dir},
    ]


def load_row(row: dict):
    """A row's model, loaded from its saved file the way a user would."""
    if row["kind"] == "int8":
        return torch.load(row["path"], weights_only=False).eval()
    from transformers import AutoModelForCausalLM

    if row["kind"] == "fp16":
        from safetensors.torch import load_file

        model = AutoModelForCausalLM.from_pretrained(row["config_dir"])
        model.load_state_dict({name: tensor.float() for name, tensor in load_file(row["path"]).items()})
        return model.eval()
    return AutoModelForCausalLM.from_pretrained(row["path"]).eval()


def weights_file(row: dict) -> str:
    return row["path"] if row["kind"] != "hf" else os.path.join(row["path"], "model.safetensors")


# ---- measuring -----------------------------------------------------------------------------------------------------


def test_stream(float_dir: str, data_dir: str) -> torch.Tensor:
    from transformers import AutoTokenizer

    from hf_softbin.training.data import load_text_splits, token_stream, tokenize_splits

    splits = load_text_splits(test_file=os.path.join(data_dir, "test.txt"))
    return token_stream(tokenize_splits(splits, AutoTokenizer.from_pretrained(float_dir), "text")["test"])


def perplexity(model, stream: torch.Tensor) -> float:
    from accelerate import Accelerator

    from hf_softbin.training.loop import evaluate

    loss, _ = evaluate(model, stream, Accelerator(cpu=True), batch_size=10, bptt=35)
    return math.exp(loss)


def score_one(row_json: str, stream_path: str, tokens: int) -> dict:
    """Run in a fresh process: load time, scoring speed and peak resident memory of one row."""
    from accelerate import Accelerator

    from hf_softbin.training.data import eval_streams  # noqa: F401  (imports before the baseline, like a user's)

    row = json.loads(row_json)
    baseline = memory_bytes("VmHWM")
    began = time.perf_counter()
    model = load_row(row)
    load_seconds = time.perf_counter() - began
    stream = torch.load(stream_path)[: tokens + 1]
    from hf_softbin.training.loop import evaluate

    evaluate(model, stream[:2001], Accelerator(cpu=True), 10, 35)  # warm-up
    began = time.perf_counter()
    _, count = evaluate(model, stream, Accelerator(cpu=True), 10, 35)
    seconds = time.perf_counter() - began
    peak = memory_bytes("VmHWM")
    return {"load_seconds": load_seconds, "tokens_per_second": count / seconds, "peak_rss_bytes": peak,
            "peak_rss_above_imports_bytes": peak - baseline}


def scoring_speed(rows: list[dict], stream_path: str, tokens: int, rounds: int) -> None:
    """Score every row `rounds` times, interleaved, each in a fresh process: best round for speed and load time
    (the least disturbed on a shared machine), median for memory."""
    samples = {row["key"]: [] for row in rows}
    for _ in range(rounds):
        for row in rows:
            spec = json.dumps({key: row[key] for key in ("kind", "path", "config_dir") if key in row})
            result = subprocess.run([sys.executable, __file__, "--score-one", spec, stream_path, str(tokens)],
                                    capture_output=True, text=True, check=True)
            samples[row["key"]].append(json.loads(result.stdout.strip().splitlines()[-1]))
    for row in rows:
        runs = samples[row["key"]]
        row["tokens_per_second"] = max(run["tokens_per_second"] for run in runs)
        row["load_seconds"] = min(run["load_seconds"] for run in runs)
        for key in ("peak_rss_bytes", "peak_rss_above_imports_bytes"):
            row[key] = statistics.median(run[key] for run in runs)


def training_speed(directories: dict, data_dir: str, steps: int, rounds: int) -> dict[str, float]:
    """Tokens/s of training steps of the float, BLLM, soft, soft + KD and PQ + soft + KD recipes on the same batches,
    in one process, interleaved rounds, best round each: the training loop's own step on its own batches."""
    from accelerate import Accelerator
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_softbin import SoftBinLSTMForCausalLM, register_latent_clipping
    from hf_softbin.training.data import batchify, get_batch, load_text_splits, token_stream, tokenize_splits
    from hf_softbin.training.distill import Teacher
    from hf_softbin.training.loop import train_step
    from hf_softbin.training.optim import build_optimizer
    from hf_softbin.training.recipe import load_run_config

    accelerator = Accelerator(cpu=True)
    tokenizer = AutoTokenizer.from_pretrained(directories["float"])
    splits = load_text_splits(train_file=os.path.join(data_dir, "train.txt"))
    rows = batchify(token_stream(tokenize_splits(splits, tokenizer, "text")["train"]), 20)
    teacher = Teacher([AutoModelForCausalLM.from_pretrained(directories["float"])])

    def steps_of(recipe: str):
        config = load_run_config(os.path.join(RECIPES, recipe), data_overrides(data_dir))
        model = SoftBinLSTMForCausalLM(config.model_config(tokenizer)).train()
        optimizer = build_optimizer(config, model)
        register_latent_clipping(optimizer, model)
        kd_teacher = teacher if recipe.endswith("-kd.yaml") else None
        bptt = config.training.bptt

        def run(count: int = steps) -> float:
            states = (None, None)
            for index in range(count):
                batch = get_batch(rows, index * bptt, bptt)
                _, _, *states = train_step(model, kd_teacher, batch, states, config, accelerator, optimizer)
            return count * rows.shape[0] * bptt
        return run

    works = {key: steps_of(recipe) for key, recipe in (("float", "teacher.yaml"), ("bllm", "bllm.yaml"),
                                                         ("soft", "soft.yaml"), ("soft-kd", "soft-kd.yaml"),
                                                         ("pq-m5", "pq-soft-kd.yaml"))}
    return best_rates(works, rounds)


def reference_shape_sizes() -> dict:
    """File sizes at the reference shape (vocabulary 10,000, 2x650) of the binary layout and of every PQ row's, from
    shapes alone (hf_softbin.summary)."""
    from hf_softbin import SoftBinLSTMConfig
    from hf_softbin.summary import summarize_config
    from hf_softbin.training.recipe import load_run_config

    layouts = {"binary (soft + KD)": load_run_config(os.path.join(RECIPES, "soft-kd.yaml")).model}
    for row in TRAINED_ROWS:
        if row.recipe == "pq-soft-kd.yaml":
            layouts[row.name] = load_run_config(os.path.join(RECIPES, row.recipe), row.overrides).model
    sizes = {}
    for name, model_section in layouts.items():
        summary = summarize_config(SoftBinLSTMConfig(**{**model_section, "vocab_size": 10000, "embedding_size": 650,
                                                        "hidden_size": 650, "num_hidden_layers": 2}))
        sizes[name] = {"float32_bytes": summary.float_file_bytes, "packed_bytes": summary.packed_file_bytes,
                       "ratio": summary.file_ratio}
    return sizes


# ---- the run -------------------------------------------------------------------------------------------------------


def run_benchmark(args) -> dict:
    from hf_softbin.summary import summarize

    began = time.time()
    directories = train_rows(args)
    rows = []
    for row in TRAINED_ROWS:
        metrics = _metrics(directories[row.key])
        rows.append({"key": row.key, "name": row.name, "what": row.what, "kind": "hf", "path": directories[row.key],
                     "epochs": metrics["epochs"], "best_epoch": metrics["best_epoch"],
                     "stopped_early": metrics["stopped_early"], "train_seconds": metrics["train_seconds"],
                     "valid_ppl": metrics["valid_ppl"], "recipe": f"configs/wt2-mini/{row.recipe}",
                     "overrides": row.overrides,
                     "valid_curve": [round(point["valid_ppl"], 2) for point in metrics["history"]]})
    beside_float = post_training_rows(directories["float"], os.path.join(args.runs_dir, "post-training"))
    if EQUAL_COMPUTE in directories:
        long = _metrics(directories[EQUAL_COMPUTE])
        beside_float.insert(0, {
            "key": EQUAL_COMPUTE, "name": "float32, teacher + student epochs", "kind": "hf",
            "what": "the float32 row trained on (early stopping off) for the epochs of float32 and soft + KD",
            "path": directories[EQUAL_COMPUTE], "epochs": long["epochs"], "best_epoch": long["best_epoch"],
            "stopped_early": False, "train_seconds": long["train_seconds"], "valid_ppl": long["valid_ppl"]})
    rows[1:1] = beside_float
    stream = test_stream(directories["float"], args.data_dir)
    for row in rows:
        model = load_row(row)
        row["test_ppl"] = perplexity(model, stream)
        row["size_bytes"] = os.path.getsize(weights_file(row))
        if row["kind"] == "hf" and model.config.is_quantized:
            row["count_compression_ratio"] = summarize(row["path"]).count_ratio
    reference = rows[0]
    for row in rows:
        row["ppl_ratio"] = row["test_ppl"] / reference["test_ppl"]
        row["compression_ratio"] = reference["size_bytes"] / row["size_bytes"]

    artifacts = os.path.join(args.runs_dir, "post-training")
    stream_path = os.path.join(artifacts, "test_stream.pt")
    torch.save(stream, stream_path)
    scoring_speed(rows, stream_path, args.score_tokens, args.rounds)
    for row in rows:
        row["score_tps_ratio"] = row["tokens_per_second"] / reference["tokens_per_second"]
    speed = training_speed(directories, args.data_dir, args.speed_steps, args.rounds)
    for row in rows:
        row["train_tps_ratio"] = speed[row["key"]] / speed["float"] if row["key"] in speed else None

    rows += kenlm_rows(args, next(row for row in rows if row["key"] == "soft-kd")["size_bytes"], reference)
    clean = [{key: value for key, value in row.items() if key not in ("kind", "path", "config_dir")} for row in rows]
    return {"benchmark": {"command": args.command, "seconds": time.time() - began, "epoch_caps": EPOCH_CAPS,
                          "short_pq_cap": SHORT_PQ_CAP,
                          "training_tokens_per_second": speed,
                          "training_speed_without_teacher": speed["soft"] / speed["float"]},
            "rows": clean, "pq_reference_shape_sizes": reference_shape_sizes()}


def kenlm_rows(args, budget: int, reference: dict) -> list[dict]:
    import kenlm_peer

    if not kenlm_peer.kenlm_available():
        print("KenLM rows skipped: KenLM is not built (bash scripts/kenlm/build.sh)", flush=True)
        return []
    rows = kenlm_peer.peer_rows(budget, args.data_dir, os.path.join(args.runs_dir, "kenlm"))
    for row in rows:
        row["ppl_ratio"] = row["test_ppl"] / reference["test_ppl"]
        row["compression_ratio"] = reference["size_bytes"] / row["size_bytes"]
    return rows


def quick_data(data_dir: str, target: str, lines: int = 400) -> str:
    """The first lines of each split, for a smoke run whose every evaluation takes seconds."""
    from hf_softbin.atomic import write_text_atomic

    os.makedirs(target, exist_ok=True)
    for name in ("train", "valid", "test"):
        with open(os.path.join(data_dir, f"{name}.txt"), encoding="utf-8") as handle:
            head = [line for _, line in zip(range(lines if name == "train" else lines // 4), handle)]
        write_text_atomic(os.path.join(target, f"{name}.txt"), "".join(head))
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few minutes (tiny budgets)")
    parser.add_argument("--reuse", action="store_true", help="keep trained rows whose metrics.json exists")
    parser.add_argument("--data-dir", default=os.path.join("..", "shared", "data", "wt2-mini"))
    parser.add_argument("--runs-dir", default=None, help="where the trained rows go (default runs/bench)")
    parser.add_argument("--results-dir", default=None, help="where results.json and RESULTS.md go")
    parser.add_argument("--skip-equal-compute", action="store_true",
                        help="leave out the float row trained for the teacher's and the student's epochs together")
    parser.add_argument("--rounds", type=int, default=2, help="repetitions of each speed measurement")
    parser.add_argument("--score-tokens", type=int, default=20000, help="test tokens scored per speed measurement")
    parser.add_argument("--speed-steps", type=int, default=10, help="training steps per speed measurement")
    parser.add_argument("--score-one", nargs=3, metavar=("ROW", "STREAM", "TOKENS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    reuse_freed_memory()  # as the hf-softbin command does: every row trains and scores with it
    if args.score_one:
        print(json.dumps(score_one(args.score_one[0], args.score_one[1], int(args.score_one[2]))))
        return 0
    if not os.path.isfile(os.path.join(args.data_dir, "train.txt")):
        raise SystemExit(f"wt2-mini not found at {args.data_dir} (pass --data-dir)")
    quick = args.quick
    args.runs_dir = args.runs_dir or os.path.join("runs", "bench-quick" if quick else "bench")
    args.results_dir = args.results_dir or (os.path.join("runs", "bench-quick") if quick else report.HERE)
    if quick:
        args.rounds, args.score_tokens, args.speed_steps = 1, 3000, 3
        args.data_dir = quick_data(args.data_dir, os.path.join(args.runs_dir, "data"))
    args.command = " ".join(["python benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)])
    report.update(run_benchmark(args), args.results_dir)
    print(open(os.path.join(args.results_dir, "RESULTS.md")).read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
