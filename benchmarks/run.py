"""The benchmark: the paper's comparison and the alternatives a user would weigh, in one run on wt2-mini.

`python scripts/benchmark.py` (or `hf-softbin bench`) trains every row with the recipes in configs/wt2-mini (same
shape, vocabulary, seed and epoch budget), builds the post-training rows from the teacher, measures perplexity,
size, speed (as ratios measured side by side), memory and load time, and writes benchmarks/RESULTS.md,
benchmarks/results.json and benchmarks/ppl_vs_size.png. `--quick` is a smoke run of a few minutes.
"""

import argparse
import datetime
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_DATA = os.path.join("..", "shared", "data", "wt2-mini")
RECIPES = os.path.join("configs", "wt2-mini")


# ---- plain PyTorch twin of the float model, for the post-training fp16 / int8 rows ------------------------------

class TorchLSTMLM(nn.Module):
    """The teacher as standard nn.Embedding / nn.LSTM / nn.Linear layers: what dynamic int8 quantization accepts."""

    def __init__(self, model):
        super().__init__()
        config = model.config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_size)
        self.lstm = nn.LSTM(config.embedding_size, config.hidden_size, config.num_hidden_layers, batch_first=True)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        with torch.no_grad():
            self.embedding.weight.copy_(model.model.embeddings.weight)
            for index, layer in enumerate(model.model.lstm):
                getattr(self.lstm, f"weight_ih_l{index}").copy_(layer.weight_ih.weight)
                getattr(self.lstm, f"weight_hh_l{index}").copy_(layer.weight_hh.weight)
                getattr(self.lstm, f"bias_ih_l{index}").copy_(layer.bias_ih)
                getattr(self.lstm, f"bias_hh_l{index}").copy_(layer.bias_hh)
            self.decoder.weight.copy_(model.lm_head.weight)
            self.decoder.bias.copy_(model.lm_head_bias)

    def forward(self, ids, state=None):
        output, state = self.lstm(self.embedding(ids), state)
        return self.decoder(output), state


def int8_model(teacher):
    return torch.ao.quantization.quantize_dynamic(TorchLSTMLM(teacher).eval(), {nn.LSTM, nn.Linear}, dtype=torch.qint8)


def fp16_rounded(teacher):
    """The teacher with every weight rounded to float16 (stored as float16; computed in float32 on a CPU)."""
    from .modeling_softbin import SoftBinLSTMForCausalLM

    model = SoftBinLSTMForCausalLM(teacher.config).eval()
    model.load_state_dict({name: tensor.half().float() for name, tensor in teacher.state_dict().items()})
    return model


def binarized_after_training(teacher):
    """The teacher's weights binarized with row scalars, no retraining (the lower bound)."""
    from .configuration_softbin import SoftBinLSTMConfig
    from .distill import init_student_from_teacher
    from .modeling_softbin import SoftBinLSTMForCausalLM

    config = SoftBinLSTMConfig.from_dict({**teacher.config.to_dict(), "binarize": True, "scaling": "row"})
    student = SoftBinLSTMForCausalLM(config)
    init_student_from_teacher(student, teacher)
    return student.eval()


# ---- scoring -----------------------------------------------------------------------------------------------------

def step_function(model):
    """(ids, state) -> (logits, state) for a Transformers model or the plain PyTorch twin."""
    if isinstance(model, TorchLSTMLM) or not hasattr(model, "config"):
        return lambda ids, state: model(ids, state)

    def step(ids, state):
        output = model(input_ids=ids, cache=state)
        return output.logits, output.cache

    return step


@torch.no_grad()
def stream_loss(model, stream, batch_size=10, bptt=35, max_tokens=None) -> tuple[float, int, float]:
    """Mean NLL over the stream (the training evaluation's convention), tokens scored, seconds spent."""
    from .data import IGNORE_INDEX, eval_streams

    if max_tokens is not None:
        stream = stream[: max_tokens + 1]
    inputs, targets = eval_streams(stream, batch_size)
    step = step_function(model)
    total, count, state = 0.0, 0, None
    began = time.perf_counter()
    for start in range(0, inputs.shape[1], bptt):
        logits, state = step(inputs[:, start : start + bptt], state)
        y = targets[:, start : start + bptt]
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), ignore_index=IGNORE_INDEX,
                                 reduction="sum").item()
        count += int((y != IGNORE_INDEX).sum())
    return total / count, count, time.perf_counter() - began


def load_row(kind: str, path: str):
    """Load a row's model the way a user would: from its saved file."""
    if kind == "hf":
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(path).eval()
    if kind == "int8":
        return torch.load(path, weights_only=False).eval()
    if kind == "fp16":
        from safetensors.torch import load_file

        from .configuration_softbin import SoftBinLSTMConfig
        from .modeling_softbin import SoftBinLSTMForCausalLM

        model = SoftBinLSTMForCausalLM(SoftBinLSTMConfig.from_pretrained(os.path.dirname(path)))
        model.load_state_dict({name: tensor.float() for name, tensor in load_file(path).items()})
        return model.eval()
    raise ValueError(f"unknown row kind {kind!r}")


def peak_resident_bytes() -> int:
    """This process's peak resident set (VmHWM). Not ru_maxrss: Linux carries that across fork and exec."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def score_one(kind: str, path: str, stream_path: str, tokens: int) -> dict:
    """Run in a fresh process: load time, scoring speed and peak resident memory of one row."""
    baseline_rss = peak_resident_bytes()
    began = time.perf_counter()
    model = load_row(kind, path)
    load_seconds = time.perf_counter() - began
    stream = torch.load(stream_path)
    stream_loss(model, stream, max_tokens=2000)  # warm-up (first-call allocations, caches)
    _, count, seconds = stream_loss(model, stream, max_tokens=tokens)
    peak = peak_resident_bytes()
    return {"load_seconds": load_seconds, "tokens_per_second": count / seconds, "peak_rss_bytes": peak,
            "peak_rss_above_imports_bytes": peak - baseline_rss}


def measure_in_subprocesses(rows: list[dict], stream_path: str, tokens: int, rounds: int) -> None:
    """Score every row `rounds` times, interleaved, each in a fresh process.

    Speed and load time keep the best round (the least disturbed by other work on a shared machine), memory the median.
    """
    samples = {row["name"]: [] for row in rows}
    for _ in range(rounds):
        for row in rows:
            command = [sys.executable, "-m", "hf_softbin.benchmark", "--score-one", row["kind"], row["path"], stream_path,
                       str(tokens)]
            result = subprocess.run(command, capture_output=True, text=True, check=True)
            samples[row["name"]].append(json.loads(result.stdout.strip().splitlines()[-1]))
    for row in rows:
        runs = samples[row["name"]]
        row["tokens_per_second"] = max(run["tokens_per_second"] for run in runs)
        row["load_seconds"] = min(run["load_seconds"] for run in runs)
        for key in ("peak_rss_bytes", "peak_rss_above_imports_bytes"):
            row[key] = statistics.median(run[key] for run in runs)


# ---- training speed, side by side ---------------------------------------------------------------------------------

def training_speed(recipes: dict, teacher, rows_tokens, steps: int, rounds: int) -> dict[str, float]:
    """Tokens/s of training steps for each recipe on the same batches, interleaved rounds, best round per recipe."""
    from accelerate import Accelerator

    from .binarize import register_latent_clipping
    from .train import build_model, build_optimizer, segment_loss

    accelerator = Accelerator(cpu=True)
    tokenizer_size = teacher.config.vocab_size
    setups = {}
    for name, (config, with_teacher) in recipes.items():
        model = build_model(config, _SizedTokenizer(tokenizer_size, teacher.config)).train()
        optimizer = build_optimizer(config, model)
        if model.config.is_binarized:
            register_latent_clipping(optimizer, model)
        setups[name] = (config, model, optimizer, teacher if with_teacher else None)

    def run(name, count):
        config, model, optimizer, kd_teacher = setups[name]
        state = teacher_state = None
        began = time.perf_counter()
        for index in range(count):
            x = rows_tokens[:, index * config.training.bptt : (index + 1) * config.training.bptt]
            y = rows_tokens[:, index * config.training.bptt + 1 : (index + 1) * config.training.bptt + 1]
            loss, _, state, teacher_state = segment_loss(model, kd_teacher, x, y, state, teacher_state, config, accelerator)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.training.grad_clip)
            optimizer.step()
            optimizer.zero_grad()
        return count * x.numel() / (time.perf_counter() - began)

    for name in setups:
        run(name, 2)  # warm-up
    samples = {name: [] for name in setups}
    for _ in range(rounds):
        for name in setups:
            samples[name].append(run(name, steps))
    return {name: max(values) for name, values in samples.items()}


class _SizedTokenizer:
    """The three attributes build_model reads from a tokenizer."""

    def __init__(self, size, config):
        self.size, self.pad_token_id, self.eos_token_id = size, config.pad_token_id, config.eos_token_id

    def __len__(self):
        return self.size


# ---- the run ------------------------------------------------------------------------------------------------------

def file_bytes(path: str) -> int:
    return os.path.getsize(path)


def train_rows(args, data_dir: str) -> dict[str, str]:
    """Train (or, with --reuse, reuse) every trained row; returns run directories by row name."""
    from .train import train
    from .training_config import load_run_config

    epochs = args.epochs or load_run_config(os.path.join(RECIPES, "teacher.yaml")).training.max_epochs
    data = {"data.train_file": os.path.join(data_dir, "train.txt"),
            "data.validation_file": os.path.join(data_dir, "valid.txt"),
            "data.test_file": os.path.join(data_dir, "test.txt")}
    common = {**data, "training.max_epochs": epochs, "training.log_with": None, "training.log_every": 100}
    if args.quick:
        common.update({"training.max_steps": 30, "training.eval_batch_size": 40, "training.max_epochs": 1})
    runs = os.path.join(args.runs_dir)
    teacher_dir = os.path.join(runs, "fp32")
    plan = [
        ("fp32", "teacher.yaml", {}),
        ("fp32-long", "teacher.yaml", {"training.max_epochs": 2 * epochs} if not args.quick else {"training.max_steps": 60}),
        ("bllm", "bllm.yaml", {}),
        ("soft", "soft-kd.yaml", {"distill.teacher": None}),
        ("soft-kd", "soft-kd.yaml", {"distill.teacher": teacher_dir}),
    ]
    directories = {}
    for name, recipe, overrides in plan:
        directory = os.path.join(runs, name)
        directories[name] = directory
        if args.reuse and os.path.exists(os.path.join(directory, "metrics.json")):
            print(f"reusing {directory}", flush=True)
            continue
        print(f"training {name} ({recipe}) into {directory}", flush=True)
        config = load_run_config(os.path.join(RECIPES, recipe), {**common, **overrides, "output_dir": directory})
        train(config)
    return directories


def run_benchmark(args) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .data import load_text_splits, token_stream, tokenize_splits
    from .training_config import load_run_config

    data_dir = args.data_dir
    if not os.path.isfile(os.path.join(data_dir, "train.txt")):
        raise FileNotFoundError(f"wt2-mini not found at {data_dir} (pass --data-dir)")
    began = time.time()
    directories = train_rows(args, data_dir)
    metrics = {name: json.load(open(os.path.join(d, "metrics.json"))) for name, d in directories.items()}
    reference = "fp32" if metrics["fp32"]["valid_ppl"] <= metrics["fp32-long"]["valid_ppl"] else "fp32-long"
    teacher_dir = directories[reference]
    teacher = AutoModelForCausalLM.from_pretrained(directories["fp32"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(directories["fp32"])
    splits = tokenize_splits(load_text_splits(test_file=os.path.join(data_dir, "test.txt"),
                                              train_file=os.path.join(data_dir, "train.txt")), tokenizer, "text")
    test_stream = token_stream(splits["test"])
    artifacts = os.path.join(args.runs_dir, "post-training")
    os.makedirs(artifacts, exist_ok=True)
    stream_path = os.path.join(artifacts, "test_stream.pt")
    torch.save(test_stream, stream_path)

    # Post-training rows, saved as files so that they are loaded and timed like the trained rows.
    from safetensors.torch import save_file

    fp16_path = os.path.join(artifacts, "fp16", "model.safetensors")
    os.makedirs(os.path.dirname(fp16_path), exist_ok=True)
    teacher.config.save_pretrained(os.path.dirname(fp16_path))
    save_file({name: tensor.half().contiguous() for name, tensor in teacher.state_dict().items()}, fp16_path)
    int8_path = os.path.join(artifacts, "int8.pt")
    torch.save(int8_model(teacher), int8_path)
    binary_dir = os.path.join(artifacts, "binary-post-training")
    binarized_after_training(teacher).save_pretrained(binary_dir)

    rows = [
        {"name": "fp32", "what": "full-precision teacher", "kind": "hf", "path": directories["fp32"]},
        {"name": "fp32 (2x epochs)", "what": "full precision, teacher + student epochs", "kind": "hf",
         "path": directories["fp32-long"]},
        {"name": "fp16", "what": "post-training half-precision weights", "kind": "fp16", "path": fp16_path},
        {"name": "int8", "what": "post-training dynamic int8 (LSTM, Linear)", "kind": "int8", "path": int8_path},
        {"name": "binary, post-training", "what": "teacher binarized with row scalars, no retraining", "kind": "hf",
         "path": binary_dir},
        {"name": "BLLM 2018", "what": "+-1 weights, gamma/beta, no KD", "kind": "hf", "path": directories["bllm"]},
        {"name": "soft", "what": "row scalars, no KD", "kind": "hf", "path": directories["soft"]},
        {"name": "soft + KD", "what": "row scalars, distilled from fp32", "kind": "hf", "path": directories["soft-kd"]},
    ]
    for row in rows:
        model = load_row(row["kind"], row["path"])
        loss, count, _ = stream_loss(model, test_stream)
        row["test_ppl"] = math.exp(loss)
        row["test_tokens"] = count
        weights = os.path.join(row["path"], "model.safetensors") if row["kind"] == "hf" else row["path"]
        row["size_bytes"] = file_bytes(weights)
    fp32_bytes = next(row for row in rows if row["name"] == "fp32")["size_bytes"]
    reference_ppl = next(row for row in rows if row["path"] == teacher_dir)["test_ppl"]
    for row in rows:
        row["ppl_ratio"] = row["test_ppl"] / reference_ppl
        row["compression_ratio"] = fp32_bytes / row["size_bytes"]
        row["count_compression_ratio"] = _count_ratio(row)

    measure_in_subprocesses(rows, stream_path, tokens=args.score_tokens, rounds=args.rounds)
    fp32_scoring = next(row for row in rows if row["name"] == "fp32")["tokens_per_second"]
    for row in rows:
        row["score_tps_ratio"] = row["tokens_per_second"] / fp32_scoring

    recipes = {
        "fp32": (load_run_config(os.path.join(RECIPES, "teacher.yaml"), _data_overrides(data_dir)), False),
        "BLLM 2018": (load_run_config(os.path.join(RECIPES, "bllm.yaml"), _data_overrides(data_dir)), False),
        "soft": (load_run_config(os.path.join(RECIPES, "soft-kd.yaml"), {**_data_overrides(data_dir), "distill.teacher": None}), False),
        "soft + KD": (load_run_config(os.path.join(RECIPES, "soft-kd.yaml"), {**_data_overrides(data_dir), "distill.teacher": None}), True),
    }
    from .data import batchify

    train_stream = token_stream(splits["train"])
    speed = training_speed(recipes, teacher, batchify(train_stream, 20), steps=args.speed_steps, rounds=args.rounds)
    for row in rows:
        if row["name"] in speed:
            row["train_tps_ratio"] = speed[row["name"]] / speed["fp32"]
            row["train_tokens_per_second"] = speed[row["name"]]
        else:
            row["train_tps_ratio"] = row["train_tokens_per_second"] = None
    soft_kd_row = next(row for row in rows if row["name"] == "soft + KD")
    soft_kd_row["train_tps_ratio_without_teacher"] = speed["soft"] / speed["fp32"]

    extras = {
        "reference": reference,
        "storage_precision": _storage_precision_check(directories["soft-kd"], test_stream),
        "reference_shape_sizes": _reference_shape_sizes(),
        "scalar_costs_2x200": _scalar_costs(AutoModelForCausalLM.from_pretrained(directories["soft-kd"])),
        "run_metrics": {name: {key: value for key, value in m.items() if key not in ("history", "config")}
                        for name, m in metrics.items()},
        "seconds": time.time() - began,
    }
    return {"rows": rows, **extras}


def _count_ratio(row) -> float | None:
    if row["kind"] != "hf":
        return {"fp16": 2.0, "int8": None}.get(row["kind"])
    from .modeling_softbin import SoftBinLSTMForCausalLM
    from .summary import layer_rows

    rows = layer_rows(SoftBinLSTMForCausalLM.from_pretrained(row["path"]))
    return sum(r.float_bytes for r in rows) / sum(r.packed_bytes for r in rows)


def _data_overrides(data_dir):
    return {"data.train_file": os.path.join(data_dir, "train.txt"),
            "data.validation_file": os.path.join(data_dir, "valid.txt"),
            "data.test_file": os.path.join(data_dir, "test.txt")}


def _storage_precision_check(run_dir: str, test_stream) -> dict:
    """Test perplexity of the distilled student computing with float16-rounded vs float32 scalars and biases."""
    from .modeling_softbin import SoftBinLSTMForCausalLM

    master = os.path.join(run_dir, "master")
    result = {}
    for dtype in ("float16", "float32"):
        model = SoftBinLSTMForCausalLM.from_pretrained(master, float_storage_dtype=dtype).eval()
        result[dtype] = math.exp(stream_loss(model, test_stream)[0])
    return result


def _reference_shape_sizes() -> dict:
    """On-disk sizes of the reference shape (vocabulary 10k, 2x650, everything binarized, row scalars)."""
    import tempfile

    from .configuration_softbin import SoftBinLSTMConfig
    from .modeling_softbin import SoftBinLSTMForCausalLM

    model = SoftBinLSTMForCausalLM(SoftBinLSTMConfig(vocab_size=10000, embedding_size=650, hidden_size=650))
    with tempfile.TemporaryDirectory() as directory:
        model.save_pretrained(os.path.join(directory, "packed"))
        model.save_pretrained(os.path.join(directory, "master"), packed=False)
        packed = file_bytes(os.path.join(directory, "packed", "model.safetensors"))
        master = file_bytes(os.path.join(directory, "master", "model.safetensors"))
    return {"master_bytes": master, "packed_bytes": packed, "ratio": master / packed}


def _scalar_costs(model) -> dict:
    """What the packed 2x200 file spends its bytes on."""
    from .summary import layer_rows

    bits = sum(row.binarized for row in layer_rows(model)) / 8
    total = sum(row.packed_bytes for row in layer_rows(model))
    scalars = sum(row.packed_bytes - row.binarized / 8 for row in layer_rows(model) if row.binarized)
    return {"sign_bit_bytes": bits, "row_scalar_bytes": scalars, "bias_bytes": total - bits - scalars,
            "total_bytes": total}


# ---- writing the results ------------------------------------------------------------------------------------------

def _fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def results_markdown(results: dict, command: str) -> str:
    import accelerate
    import transformers

    lines = ["# Benchmark results", "",
             f"Command: `{command}`  ", f"Date: {datetime.date.today().isoformat()}  ",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch threads "
             f"{torch.get_num_threads()}  ",
             f"Versions: Python {platform.python_version()}, torch {torch.__version__}, transformers "
             f"{transformers.__version__}, accelerate {accelerate.__version__}  ",
             f"Wall time: {results['seconds'] / 60:.1f} min. Reference fp32 row: `{results['reference']}`.", "",
             "| row | what it is | test ppl | ppl / fp32 | file | compression (file) | compression (counts) | "
             "train tok/s / fp32 | score tok/s / fp32 | peak RSS scoring | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in results["rows"]:
        train_ratio = _fmt(row["train_tps_ratio"], ".2f")
        if row.get("train_tps_ratio_without_teacher") is not None:
            train_ratio += f" (without the teacher: {row['train_tps_ratio_without_teacher']:.2f})"
        lines.append(
            f"| {row['name']} | {row['what']} | {row['test_ppl']:.2f} | {row['ppl_ratio']:.3f} | "
            f"{row['size_bytes'] / 1e6:.2f} MB | {row['compression_ratio']:.1f}x | "
            f"{_fmt(row['count_compression_ratio'], '.1f')}{'x' if row['count_compression_ratio'] else ''} | "
            f"{train_ratio} | {row['score_tps_ratio']:.2f} | {row['peak_rss_bytes'] / 2**20:.0f} MiB "
            f"(+{row['peak_rss_above_imports_bytes'] / 2**20:.0f}) | {row['load_seconds']:.2f} s |")
    ref = results["reference_shape_sizes"]
    costs = results["scalar_costs_2x200"]
    storage = results["storage_precision"]
    lines += ["", "Notes:", "",
              "- Test perplexity: the whole test stream, `<eos>` at every line end, state carried through each of 10 "
              "contiguous rows (docs/evaluation.md). fp16 weights are stored in half precision and computed in float32 "
              "(PyTorch's CPU LSTM has no half kernel); int8 is `torch.ao.quantization.quantize_dynamic` of the LSTM "
              "and Linear layers (the embedding stays float32).",
              "- Speed ratios come from the same process (training: the same batches, interleaved rounds) or "
              "from fresh processes run alternately (scoring, load time and peak resident memory); speeds and load "
              "times keep the best of the rounds, memory the median. Peak RSS "
              "includes Python, torch and transformers; the figure in brackets is what loading and scoring added.",
              f"- Reference shape (vocabulary 10,000, 2x650, all binarized, row scalars): float32 file "
              f"{ref['master_bytes']:,} bytes, packed {ref['packed_bytes']:,} bytes, ratio {ref['ratio']:.2f}x.",
              f"- Where the packed 2x200 bytes go: sign bits {costs['sign_bit_bytes']:,.0f}, row scalars "
              f"{costs['row_scalar_bytes']:,.0f}, biases {costs['bias_bytes']:,.0f} (float16), total "
              f"{costs['total_bytes']:,.0f} bytes.",
              f"- Scalars and biases in float16 instead of float32 (soft + KD, test ppl): {storage['float16']:.3f} vs "
              f"{storage['float32']:.3f}."]
    return "\n".join(lines) + "\n"


def plot_results(results: dict, path: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for row in results["rows"]:
        axis.scatter(row["size_bytes"] / 1e6, row["test_ppl"])
        axis.annotate(row["name"], (row["size_bytes"] / 1e6, row["test_ppl"]), textcoords="offset points",
                      xytext=(5, 4), fontsize=8)
    axis.set_xscale("log")
    axis.set_xlabel("model file size (MB, log scale)")
    axis.set_ylabel("test perplexity (wt2-mini)")
    axis.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_results(results: dict, results_dir: str, command: str):
    from .atomic import write_bytes_atomic

    os.makedirs(results_dir, exist_ok=True)
    clean_rows = [{key: value for key, value in row.items() if key not in ("kind", "path")} for row in results["rows"]]
    payload = {**results, "rows": clean_rows, "command": command}
    write_bytes_atomic(os.path.join(results_dir, "results.json"), json.dumps(payload, indent=2).encode())
    write_bytes_atomic(os.path.join(results_dir, "RESULTS.md"), results_markdown(results, command).encode())
    plot_results(results, os.path.join(results_dir, "ppl_vs_size.png"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-softbin bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few minutes (tiny budgets)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epoch budget of every trained row (default: the recipes' own, configs/wt2-mini)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA, help="folder with wt2-mini's train/valid/test.txt")
    parser.add_argument("--runs-dir", default=os.path.join("runs", "bench"), help="where the trained rows go")
    parser.add_argument("--results-dir", default="benchmarks", help="where RESULTS.md, results.json and the plot go")
    parser.add_argument("--reuse", action="store_true", help="reuse trained rows whose metrics.json exists")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions of each speed measurement")
    parser.add_argument("--score-tokens", type=int, default=20000, help="test tokens scored per speed measurement")
    parser.add_argument("--speed-steps", type=int, default=15, help="training steps per speed measurement")
    parser.add_argument("--score-one", nargs=4, metavar=("KIND", "PATH", "STREAM", "TOKENS"), help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.score_one:
        kind, path, stream, tokens = args.score_one
        print(json.dumps(score_one(kind, path, stream, int(tokens))))
        return 0
    if args.quick:
        args.rounds, args.score_tokens, args.speed_steps = 1, 3000, 4
        if args.results_dir == "benchmarks":
            args.results_dir = os.path.join(args.runs_dir, "quick-results")
    command = "python scripts/benchmark.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results = run_benchmark(args)
    write_results(results, args.results_dir, command.strip())
    print(open(os.path.join(args.results_dir, "RESULTS.md")).read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
