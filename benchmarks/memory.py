#!/usr/bin/env python
"""Word-by-word decoding speed and working memory of packed models in their memory modes, against float32.

    python benchmarks/memory.py [--rounds 5] [--threads N]

For the wt2-mini shape (vocabulary 13,778, 2x200) and the reference shape (vocabulary 10,000, 2x650), fully binarized
with row scalars, random weights (speed and memory do not depend on their values):

- single-stream decoding, in one process, alternating rounds, best round each: tokens/s of greedy `generate()`, of
  the bare forward loop it runs (the difference is generate's own cost per step) and words/s of
  `LanguageModel.score_word`, for float32 and packed-unpacked, each with one-token steps through the fused LSTM kernel
  (the path before explicit gate products) and through explicit gate products, and for keep-packed with the compiled
  kernel and with pure torch;
- batched scoring of wt2-mini validation sentences (`lm_logprob`, batches of 64), the same way;
- agreement: the largest difference of every path's outputs (last logits of the forward loop, score_word totals,
  sentence log-probabilities) from its reference's, relative to their scale, and whether greedy decoding chose the
  same tokens (reference: float32's gate step for its fused step, packed-unpacked for every packed path);
- in fresh processes (imports and every code path warmed on a tiny model first; median of `--rounds`): the resident
  set a model adds by loading and 50 greedy decoding steps, beside its resident weights.

The targets of issue 21 are checked at the end of each shape. Writes `memory` into benchmarks/results.json and
re-renders benchmarks/RESULTS.md.
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
TINY = dict(vocab_size=50, embedding_size=8, hidden_size=8)  # warms every code path before memory is measured
PROMPT = [1, 5, 9, 13]
DECODING_STEPS = 50  # of the memory measurement
# (row, model, products: "kernel" / "torch" / None, one-token steps through the fused kernel)
DECODING_ROWS = (("float32, fused step", "float32", None, True), ("float32", "float32", None, False),
                 ("packed-unpacked, fused step", "packed-unpacked", None, True),
                 ("packed-unpacked", "packed-unpacked", None, False),
                 ("keep-packed, kernel", "keep-packed", "kernel", False),
                 ("keep-packed, pure torch", "keep-packed", "torch", False))
SCORING_ROWS = (("float32", "float32", None), ("packed-unpacked", "packed-unpacked", None),
                ("keep-packed, kernel", "keep-packed", "kernel"), ("keep-packed, pure torch", "keep-packed", "torch"))
MEMORY_ROWS = SCORING_ROWS
MiB = 2 ** 20


# ---- models ---------------------------------------------------------------------------------------------------------


def save_shape(shape: dict, directory: str) -> dict[str, str]:
    """The packed checkpoint and the float32 model of a shape, and tiny ones of both for warming up."""
    from hf_softbin import SoftBinLSTMConfig, SoftBinLSTMForCausalLM
    from hf_softbin.summary import float_twin

    paths = {}
    for prefix, values in (("", shape), ("tiny ", TINY)):
        model = SoftBinLSTMForCausalLM(SoftBinLSTMConfig(num_hidden_layers=2, dropout=0.0, **values))
        paths[prefix + "float32"] = os.path.join(directory, prefix + "float32")
        paths[prefix + "packed"] = os.path.join(directory, prefix + "packed")
        float_twin(model.config).save_pretrained(paths[prefix + "float32"])
        model.save_pretrained(paths[prefix + "packed"])
    return paths


def load(mode: str, paths: dict, tiny: bool = False):
    """The model of `mode`, decoding without an end-of-sentence stop (the same number of steps every time)."""
    from transformers import AutoModelForCausalLM

    prefix = "tiny " if tiny else ""
    if mode == "float32":
        model = AutoModelForCausalLM.from_pretrained(paths[prefix + "float32"])
    else:
        model = AutoModelForCausalLM.from_pretrained(paths[prefix + "packed"], keep_packed=mode == "keep-packed")
    model.generation_config.eos_token_id = None
    return model


def use_products(products: str | None, kernel) -> None:
    """Keep-packed products from the compiled kernel or from pure torch (the model is the same)."""
    from hf_softbin.models.softbin_lstm.packed_products import use_compiled_kernel

    use_compiled_kernel((lambda: kernel) if products == "kernel" else None)


def greedy(model, tokens: int) -> torch.Tensor:
    """`tokens` greedy steps after the prompt."""
    output = model.generate(torch.tensor([PROMPT]), max_new_tokens=tokens, do_sample=False,
                            pad_token_id=model.config.pad_token_id)
    assert output.shape[1] == len(PROMPT) + tokens, output.shape
    return output[0, len(PROMPT):]


@torch.no_grad()
def forward_loop(model, tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoding `generate` runs, without generate: the prompt, then one token at a time with the state."""
    output = model(torch.tensor([PROMPT]))
    chosen = []
    for _ in range(tokens):
        chosen.append(output.logits[:, -1].argmax(-1, keepdim=True))
        output = model(chosen[-1], cache=output.cache)
    return torch.cat(chosen, dim=1)[0], output.logits[0, -1]


def score_words(lm, words: list[str]) -> float:
    state, total = lm.begin_sentence_state(), 0.0
    for word in words:
        logprob, state = lm.score_word(state, word)
        total += logprob
    return total


def relative_difference(actual, expected) -> float:
    actual, expected = torch.as_tensor(actual, dtype=torch.float64), torch.as_tensor(expected, dtype=torch.float64)
    return float((actual - expected).abs().max() / expected.abs().max())


# ---- speed, in one process ------------------------------------------------------------------------------------------


def decoding(paths: dict, kernel, rounds: int, tokens: int, words: list[str], tokenizer) -> dict:
    from hf_softbin.scoring.lm import LanguageModel

    models = {mode: load(mode, paths) for mode in ("float32", "packed-unpacked", "keep-packed")}
    scorers = {mode: LanguageModel(model, tokenizer) for mode, model in models.items()}
    best = {(task, row[0]): 0.0 for task in ("generate", "forward", "score_word") for row in DECODING_ROWS}
    outputs = {}
    for round_index in range(rounds + 1):  # round 0 warms up
        for row, mode, products, fused in DECODING_ROWS:
            model = models[mode]
            model.model.fused_single_steps = fused
            use_products(products, kernel)
            for task, run, count in (("generate", lambda: greedy(model, tokens), tokens),
                                     ("forward", lambda: forward_loop(model, tokens), tokens),
                                     ("score_word", lambda: score_words(scorers[mode], words), len(words))):
                began = time.perf_counter()
                outputs[task, row] = run()
                if round_index:
                    best[task, row] = max(best[task, row], count / (time.perf_counter() - began))
            model.model.fused_single_steps = False
    use_products("kernel", kernel)
    agreement, same_tokens = {}, {}
    for row, mode, _, _ in DECODING_ROWS:
        reference = "float32" if mode == "float32" else "packed-unpacked"
        if row == reference:
            continue
        same_tokens[row] = torch.equal(outputs["generate", row], outputs["generate", reference])
        agreement[row] = max(relative_difference(outputs["forward", row][1], outputs["forward", reference][1]),
                             relative_difference(outputs["score_word", row], outputs["score_word", reference]))
    rows = {row: {"generate_tokens_per_second": best["generate", row],
                  "forward_tokens_per_second": best["forward", row],
                  "generate_own_ms_per_step": 1e3 * (1 / best["generate", row] - 1 / best["forward", row]),
                  "score_word_words_per_second": best["score_word", row]} for row, *_ in DECODING_ROWS}
    return {"tokens": tokens, "words": len(words), "rows": rows, "same_greedy_tokens_as_the_reference": same_tokens,
            "relative_difference_from_the_reference": agreement}


def batched_scoring(paths: dict, kernel, rounds: int, sentences: list[str], tokenizer) -> dict:
    from hf_softbin.scoring.lm import LanguageModel

    scorers = {mode: LanguageModel(load(mode, paths), tokenizer, batch_size=64)
               for mode in ("float32", "packed-unpacked", "keep-packed")}
    tokens = sum(len(sentence.split()) + 1 for sentence in sentences)
    best, outputs = {row: 0.0 for row, *_ in SCORING_ROWS}, {}
    for round_index in range(rounds + 1):  # round 0 warms up on a few sentences
        for row, mode, products in SCORING_ROWS:
            use_products(products, kernel)
            scored = sentences if round_index else sentences[:16]
            began = time.perf_counter()
            outputs[row] = scorers[mode].lm_logprob(scored)
            if round_index:
                best[row] = max(best[row], tokens / (time.perf_counter() - began))
    use_products("kernel", kernel)
    agreement = {row: relative_difference(outputs[row], outputs["packed-unpacked"])
                 for row, mode, _ in SCORING_ROWS if mode == "keep-packed"}
    return {"sentences": len(sentences), "tokens": tokens, "tokens_per_second": best,
            "relative_difference_from_the_reference": agreement}


# ---- memory, in fresh processes ------------------------------------------------------------------------------------


def measure_memory(mode: str, paths_json: str) -> dict:
    """Run in a fresh process: the resident set a model adds by loading and `DECODING_STEPS` greedy steps."""
    import gc

    import hf_softbin  # noqa: F401

    paths = json.loads(paths_json)
    warm = load(mode, paths, tiny=True)  # imports, kernel library, threads, allocator pools: as a running program has
    greedy(warm, DECODING_STEPS)
    del warm
    gc.collect()
    before = memory_bytes("VmRSS")
    model = load(mode, paths)
    greedy(model, DECODING_STEPS)
    gc.collect()
    return {"rss_added_bytes": memory_bytes("VmRSS") - before, "footprint_bytes": model.get_memory_footprint()}


def memory_rows(paths: dict, rounds: int, threads: int) -> dict:
    rows = {}
    for row, mode, products in MEMORY_ROWS:
        environment = dict(os.environ)
        if products == "torch":
            environment["HF_SOFTBIN_NO_KERNEL"] = "1"
        samples = []
        for _ in range(rounds):
            command = [sys.executable, __file__, "--threads", str(threads), "--measure-memory", mode, json.dumps(paths)]
            result = subprocess.run(command, capture_output=True, text=True, env=environment)
            if result.returncode:
                raise RuntimeError(f"memory measurement of {row} failed:\n{result.stderr[-3000:]}")
            samples.append(json.loads(result.stdout.strip().splitlines()[-1]))
        rows[row] = {"footprint_bytes": samples[0]["footprint_bytes"],
                     "rss_added_bytes": statistics.median(sample["rss_added_bytes"] for sample in samples)}
    return rows


# ---- targets --------------------------------------------------------------------------------------------------------


def targets(shape: str, entry: dict) -> list[dict]:
    """Issue 21's targets, measured: (what, value, bound, met)."""
    speed = {row: values["generate_tokens_per_second"] for row, values in entry["decoding"]["rows"].items()}
    wide = shape.startswith("reference")
    checks = []
    for model in ("float32", "packed-unpacked"):
        checks.append((f"{model}: gate step / fused step, single-stream tokens/s",
                       speed[model] / speed[f"{model}, fused step"], 3.0 if wide else 1.0, ">="))
    checks.append(("keep-packed with the kernel / float32 gate step, single-stream tokens/s",
                   speed["keep-packed, kernel"] / speed["float32"], 2.0 if wide else 1.5, ">="))
    memory = entry["memory"]["keep-packed, kernel"]
    checks.append(("keep-packed with the kernel: RSS added after 50 steps, MiB", memory["rss_added_bytes"] / MiB,
                   (2 * memory["footprint_bytes"] + 2 * MiB) / MiB, "<="))
    scoring = entry["batched_scoring"]["tokens_per_second"]
    checks.append(("keep-packed with the kernel / packed-unpacked, batched scoring tokens/s",
                   scoring["keep-packed, kernel"] / scoring["packed-unpacked"], 1.0, ">="))
    differences = [*entry["decoding"]["relative_difference_from_the_reference"].values(),
                   *entry["batched_scoring"]["relative_difference_from_the_reference"].values()]
    checks.append(("largest relative difference of any path from its reference", max(differences), 1e-5, "<="))
    return [{"what": what, "value": value, "bound": bound, "relation": relation,
             "met": value >= bound if relation == ">=" else value <= bound} for what, value, bound, relation in checks]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (default: torch's)")
    parser.add_argument("--tokens", type=int, default=100, help="greedy decoding steps per round")
    parser.add_argument("--words", type=int, default=100, help="words scored with score_word per round")
    parser.add_argument("--sentences", type=int, default=400, help="wt2-mini validation lines scored per round")
    parser.add_argument("--data-dir", default=os.path.join("..", "shared", "data", "wt2-mini"))
    parser.add_argument("--measure-memory", nargs=2, metavar=("MODE", "PATHS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.measure_memory:
        print(json.dumps(measure_memory(*args.measure_memory)))
        return 0
    from hf_softbin import kernels
    from hf_softbin.tokenization import train_word_tokenizer

    kernel = kernels.load()  # built here once, so that no measurement includes the build
    if kernel is None:
        raise SystemExit("benchmarks/memory.py measures the compiled kernel, which is not available here (see above)")
    with open(os.path.join(args.data_dir, "valid.txt"), encoding="utf-8") as handle:
        sentences = [line.strip() for line in handle if line.strip()][:args.sentences]
    words = " ".join(sentences).split()[:args.words]
    results = {"command": "python benchmarks/memory.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "rounds": args.rounds, "shapes": {}}
    began = time.time()
    with tempfile.TemporaryDirectory() as directory:
        for name, shape in SHAPES.items():
            paths = save_shape(shape, os.path.join(directory, name.split()[0]))
            tokenizer = train_word_tokenizer(sentences, max_size=shape["vocab_size"])
            entry = {"decoding": decoding(paths, kernel, args.rounds, args.tokens, words, tokenizer),
                     "batched_scoring": batched_scoring(paths, kernel, args.rounds, sentences, tokenizer),
                     "memory": memory_rows(paths, args.rounds, args.threads)}
            entry["targets"] = targets(name, entry)
            results["shapes"][name] = entry
            print(name, json.dumps(entry, indent=1), flush=True)
    results["seconds"] = time.time() - began
    report.update({"memory": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
