#!/usr/bin/env python
"""The GPU road, end to end: train, distill, pack, reload on CUDA in both memory modes, score, generate, pipeline.

    python scripts/gpu_check.py [--work-dir runs/gpu-check] [--steps 300]

Trains a tiny teacher and a distilled 1-bit student through the normal `hf-softbin train` path with
`mixed_precision: bf16` on CUDA (on the corpus the package generates), reloads the packed student onto the GPU
unpacked and keep-packed, checks that its scores equal the CPU's within float tolerance, runs greedy and beam
`generate` and the text-scoring pipeline with `device=0`, and prints one line per check. Without CUDA it says so and
exits 0.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

import torch


def check(name: str, passed: bool, detail: str = "") -> bool:
    print(f"{'PASS' if passed else 'FAIL'}  {name}" + (f"  ({detail})" if detail else ""), flush=True)
    return passed


def train(recipe: dict, log) -> None:
    command = [sys.executable, "-m", "hf_softbin.cli", "train"]
    for key, value in recipe.items():
        command += [f"--{key}", str(value)]
    subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", default=os.path.join("runs", "gpu-check"))
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps of each training run")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: the GPU checks were skipped")
        return 0
    import hf_softbin  # noqa: F401  (registers the model type and the pipeline)
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    from hf_softbin.corpus import write_default_corpus
    from hf_softbin.scoring.lm import LanguageModel

    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    began = time.time()
    corpus = write_default_corpus(os.path.join(args.work_dir, "corpus"))
    common = {"data.train_file": corpus["train"], "data.validation_file": corpus["valid"],
              "data.test_file": corpus["test"], "model.embedding_size": 128, "model.hidden_size": 128,
              "model.dropout": 0.1, "training.max_steps": args.steps, "training.eval_every": args.steps // 3,
              "training.optimizer": "adam", "training.lr": 0.003, "training.mixed_precision": "bf16",
              "training.log_with": "null"}
    teacher_dir, student_dir = os.path.join(args.work_dir, "teacher"), os.path.join(args.work_dir, "student")
    ok = True
    with open(os.path.join(args.work_dir, "train.log"), "w") as log:
        for name, directory, extra in (("teacher trained", teacher_dir, {"model.binarize": False}),
                                       ("1-bit student distilled", student_dir,
                                        {"model.binarize": True, "distill.teacher": teacher_dir})):
            train({**common, "output_dir": directory, **extra}, log)
            metrics = json.load(open(os.path.join(directory, "metrics.json")))
            ok &= check(f"{name} with bf16 mixed precision on CUDA", math.isfinite(metrics["valid_ppl"]),
                        f"valid ppl {metrics['valid_ppl']:.1f} after {metrics['steps']} steps")

    sentences = [line.strip() for line in open(corpus["test"], encoding="utf-8").readlines()[:64] if line.strip()]
    cpu_scores = LanguageModel.from_pretrained(student_dir, device="cpu").lm_logprob(sentences)
    for keep_packed in (False, True):
        mode = "keep-packed" if keep_packed else "unpacked"
        lm = LanguageModel.from_pretrained(student_dir, device="cuda", keep_packed=keep_packed)
        devices = {t.device.type for t in list(lm.model.parameters()) + list(lm.model.buffers())}
        ok &= check(f"packed student loaded on the GPU ({mode}): every tensor on CUDA", devices == {"cuda"},
                    f"devices {sorted(devices)}")
        gpu_scores = lm.lm_logprob(sentences)
        worst = max(abs(a - b) / max(abs(b), 1.0) for a, b in zip(gpu_scores, cpu_scores))
        ok &= check(f"scores on the GPU equal the CPU's ({mode})", worst < 1e-4, f"max relative difference {worst:.2e}")

    model = AutoModelForCausalLM.from_pretrained(student_dir, device_map="cuda")
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    prompt = torch.tensor([[tokenizer.eos_token_id] + tokenizer(sentences[0], add_special_tokens=False)["input_ids"][:3]],
                          device="cuda")
    greedy = model.generate(prompt, max_new_tokens=10, do_sample=False)
    ok &= check("generate, greedy, on CUDA (from_pretrained(device_map='cuda'))", greedy.shape == (1, prompt.shape[1] + 10))
    beams = model.generate(prompt, max_new_tokens=10, num_beams=4, do_sample=False)
    ok &= check("generate, beam search, on CUDA", beams.shape[0] == 1 and beams.device.type == "cuda")
    scorer = pipeline("text-scoring", model=student_dir, device=0)
    result = scorer(sentences[:8], batch_size=4)
    ok &= check("text-scoring pipeline with device=0", len(result) == 8 and all(r["num_tokens"] > 0 for r in result),
                f"first logprob {result[0]['logprob']:.3f}, CPU {cpu_scores[0]:.3f}")
    print(f"{'all checks passed' if ok else 'SOME CHECKS FAILED'} in {time.time() - began:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
