#!/usr/bin/env python
"""Memory and speed of a packed model in its two memory modes, against the float32 model of the same shape.

    python benchmarks/memory.py [--rounds 5]

For the wt2-mini shape (vocabulary 13,778, 2x200) and the reference shape (vocabulary 10,000, 2x650), both fully
binarized with row scalars: resident weight bytes (`get_memory_footprint()`) and the resident set a loaded model adds
to a process that has already imported torch, transformers and hf_softbin, after one forward pass over every word
(fresh processes, median of `--rounds`),
for float32, packed-unpacked and packed-resident (`keep_packed=True`); then, side by side in one process with
alternating rounds (best round each), batched sentence scoring and single-stream greedy generation of
packed-resident relative to packed-unpacked. Weights are random: memory and speed do not depend on their values.
Writes `memory` into benchmarks/results.json and re-renders benchmarks/RESULTS.md.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402  (benchmarks/report.py, beside this script)
from measure import memory_bytes  # noqa: E402  (benchmarks/measure.py)

SHAPES = {"wt2-mini 2x200": dict(vocab_size=13778, embedding_size=200, hidden_size=200),
          "reference 2x650": dict(vocab_size=10000, embedding_size=650, hidden_size=650)}
MODES = ("float32", "packed-unpacked", "packed-resident")


def save_shape(shape: dict, directory: str) -> dict[str, str]:
    from hf_softbin import SoftBinLSTMConfig, SoftBinLSTMForCausalLM
    from hf_softbin.summary import float_twin

    model = SoftBinLSTMForCausalLM(SoftBinLSTMConfig(num_hidden_layers=2, dropout=0.0, **shape))
    paths = {"float32": os.path.join(directory, "float32"), "packed": os.path.join(directory, "packed")}
    float_twin(model.config).save_pretrained(paths["float32"])
    model.save_pretrained(paths["packed"])
    return paths


def load(mode: str, paths: dict):
    from transformers import AutoModelForCausalLM

    if mode == "float32":
        return AutoModelForCausalLM.from_pretrained(paths["float32"])
    return AutoModelForCausalLM.from_pretrained(paths["packed"], keep_packed=mode == "packed-resident")


def measure_load(mode: str, paths_json: str) -> dict:
    """Run in a fresh process: the resident set a loaded model adds, and its footprint."""
    import gc

    import hf_softbin  # noqa: F401
    from transformers import AutoModelForCausalLM  # noqa: F401

    paths = json.loads(paths_json)
    gc.collect()
    before = memory_bytes("VmRSS")
    model = load(mode, paths)
    # One forward pass over every word touches every weight (a memory-mapped file is resident only once read).
    every_word = torch.arange(model.config.vocab_size).unsqueeze(0)
    with torch.no_grad():
        model(input_ids=every_word, logits_to_keep=1)
    gc.collect()
    return {"rss_added_bytes": memory_bytes("VmRSS") - before, "footprint_bytes": model.get_memory_footprint()}


def memory_rows(paths: dict, rounds: int) -> dict:
    rows = {}
    for mode in MODES:
        samples = []
        for _ in range(rounds):
            result = subprocess.run([sys.executable, __file__, "--measure-load", mode, json.dumps(paths)],
                                    capture_output=True, text=True, check=True)
            samples.append(json.loads(result.stdout.strip().splitlines()[-1]))
        rows[mode] = {"footprint_bytes": samples[0]["footprint_bytes"],
                      "rss_added_bytes": statistics.median(sample["rss_added_bytes"] for sample in samples)}
    return rows


def speed_ratios(paths: dict, rounds: int, sentences: list[str]) -> dict:
    """Packed-resident over packed-unpacked, in one process, alternating rounds, best round each."""
    from hf_softbin.scoring.lm import LanguageModel
    from hf_softbin.tokenization import train_word_tokenizer

    models = {mode: load(mode, paths) for mode in ("packed-unpacked", "packed-resident")}
    tokenizer = train_word_tokenizer(sentences, max_size=models["packed-unpacked"].config.vocab_size)
    scorers = {mode: LanguageModel(model, tokenizer, batch_size=64) for mode, model in models.items()}
    prompt = torch.tensor([[1, 5, 9, 13]])
    best = {(task, mode): 0.0 for task in ("score", "generate") for mode in models}
    tokens = sum(len(sentence.split()) + 1 for sentence in sentences)
    for mode in models:  # warm-up
        scorers[mode].lm_logprob(sentences[:32])
        models[mode].generate(prompt, max_new_tokens=5, do_sample=False)
    for _ in range(rounds):
        for mode in models:
            began = time.perf_counter()
            scorers[mode].lm_logprob(sentences)
            best["score", mode] = max(best["score", mode], tokens / (time.perf_counter() - began))
            began = time.perf_counter()
            models[mode].generate(prompt, max_new_tokens=100, min_new_tokens=100, do_sample=False)
            best["generate", mode] = max(best["generate", mode], 100 / (time.perf_counter() - began))
    return {"batched_scoring_ratio": best["score", "packed-resident"] / best["score", "packed-unpacked"],
            "generation_ratio": best["generate", "packed-resident"] / best["generate", "packed-unpacked"],
            "scored_tokens": tokens,
            "tokens_per_second": {f"{task} {mode}": value for (task, mode), value in best.items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sentences", type=int, default=400, help="wt2-mini validation lines scored per round")
    parser.add_argument("--data-dir", default=os.path.join("..", "shared", "data", "wt2-mini"))
    parser.add_argument("--measure-load", nargs=2, metavar=("MODE", "PATHS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure_load:
        print(json.dumps(measure_load(*args.measure_load)))
        return 0
    with open(os.path.join(args.data_dir, "valid.txt"), encoding="utf-8") as handle:
        sentences = [line.strip() for line in handle if line.strip()][:args.sentences]
    results = {"command": "python benchmarks/memory.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "rounds": args.rounds, "shapes": {}}
    began = time.time()
    with tempfile.TemporaryDirectory() as directory:
        for name, shape in SHAPES.items():
            paths = save_shape(shape, os.path.join(directory, name.split()[0]))
            rows = memory_rows(paths, args.rounds)
            float_bytes = rows["float32"]["footprint_bytes"]
            for row in rows.values():
                row["footprint_fraction_of_float32"] = row["footprint_bytes"] / float_bytes
            results["shapes"][name] = {"modes": rows, "speed": speed_ratios(paths, args.rounds, sentences)}
            print(name, json.dumps(results["shapes"][name], indent=1), flush=True)
    results["seconds"] = time.time() - began
    report.update({"memory": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
