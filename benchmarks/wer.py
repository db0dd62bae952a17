#!/usr/bin/env python
"""Word error rate of n-best rescoring on a real recognizer's lists: the paper's second metric.

    python scripts/asr_nbest/make_nbest.py --out-dir runs/asr_nbest      # the lists (see its README)
    python benchmarks/run.py                                               # the trained LMs, in runs/bench
    python benchmarks/wer.py [--lists runs/asr_nbest] [--runs-dir runs/bench]

Rows: the first pass (the decoder's own choice), the oracle of the lists, and the lists rescored with the best float
LM, the soft + KD 1-bit LM, BLLM, and the KenLM n-gram pruned to the soft + KD file size (when KenLM is built). A
hypothesis scores `am + filler_penalty + W * lm + P * words (+ W0 * first-pass lm)`; W, P and W0 are tuned on the
lists from valid.txt and applied to the lists from test.txt. The LMs read each hypothesis tokenized as wt2-mini is
(`lm_text`); WER compares the recognizer's words with the reference. Writes `asr_rows` and `asr` into
benchmarks/results.json.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402  (benchmarks/report.py, beside this script)

LM_WEIGHTS = tuple(step / 2 for step in range(0, 41))  # 0 to 20 by 0.5 (the decoder's own LM weight is 9.5)
PENALTIES = tuple(float(step) for step in range(-20, 11))  # natural-log units per word
# Wide enough that no tuned value sits on an edge of the grid (the decoder's own LM weight is 9.5).
FIRST_PASS_WEIGHTS = (0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0)
NEURAL_ROWS = (("float32", "float"), ("soft + KD (1-bit)", "soft-kd"), ("BLLM 2018", "bllm"))


def tuned(dev, test, score, name: str) -> dict:
    """Tune (W, P, W0) on the dev lists by WER, apply to the test lists."""
    from hf_softbin.scoring.rescoring import rescore_from_scores, score_hypotheses, tune_weights

    dev_scores = score_hypotheses(dev, score, batch_size=None)
    best = None
    for first_pass_weight in FIRST_PASS_WEIGHTS:
        weight, penalty, dev_wer = tune_weights(dev, dev_scores, lm_weights=LM_WEIGHTS, penalties=PENALTIES,
                                                first_pass_weight=first_pass_weight)
        if best is None or dev_wer < best[3]:
            best = (weight, penalty, first_pass_weight, dev_wer)
    weight, penalty, first_pass_weight, dev_wer = best
    result = rescore_from_scores(test, score_hypotheses(test, score, batch_size=None), weight,
                                 first_pass_weight=first_pass_weight, word_insertion_penalty=penalty)
    return {"name": name, "wer": result.summary.wer_after, "dev_wer": dev_wer, "lm_weight": weight,
            "penalty": penalty, "first_pass_weight": first_pass_weight}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lists", default=os.path.join("runs", "asr_nbest"), help="folder with dev.jsonl, test.jsonl")
    parser.add_argument("--runs-dir", default=os.path.join("runs", "bench"), help="the benchmark's trained rows")
    args = parser.parse_args(argv)
    from hf_softbin.scoring.lm import LanguageModel
    from hf_softbin.scoring.nbest_io import read_nbest_jsonl
    from hf_softbin.scoring.rescoring import first_pass_wer, oracle_wer

    began = time.time()
    dev = read_nbest_jsonl(os.path.join(args.lists, "dev.jsonl"))
    test = read_nbest_jsonl(os.path.join(args.lists, "test.jsonl"))
    rows = [{"name": "first pass (the decoder's choice)", "wer": first_pass_wer(test), "dev_wer": first_pass_wer(dev),
             "lm_weight": None, "penalty": None, "first_pass_weight": None},
            {"name": "oracle of the lists", "wer": oracle_wer(test), "dev_wer": oracle_wer(dev), "lm_weight": None,
             "penalty": None, "first_pass_weight": None}]
    for name, key in NEURAL_ROWS:
        lm = LanguageModel.from_pretrained(os.path.join(args.runs_dir, key), device="cpu")
        rows.append(tuned(dev, test, lm.lm_logprob, name))
        print(rows[-1], flush=True)
    kenlm_row = kenlm_scorer(args.runs_dir)
    if kenlm_row is not None:
        name, scorer = kenlm_row
        rows.append(tuned(dev, test, scorer.lm_logprob, name))
    lists = {"dev_utterances": len(dev), "test_utterances": len(test),
             "mean_hypotheses": sum(len(u.hyps) for u in dev + test) / len(dev + test)}
    report.update({"asr_rows": rows, "asr": {"command": "python benchmarks/wer.py " + " ".join(
        sys.argv[1:] if argv is None else argv), "lists": lists, "seconds": time.time() - began,
        "lm_weights": [min(LM_WEIGHTS), max(LM_WEIGHTS)], "penalties": [min(PENALTIES), max(PENALTIES)],
        "first_pass_weights": list(FIRST_PASS_WEIGHTS)}})
    return 0


def kenlm_scorer(runs_dir: str):
    """The pruned KenLM row of the benchmark, when KenLM is built and the benchmark made it."""
    import kenlm_peer

    rows = [row for row in report.load().get("rows", []) if row["name"].startswith("KenLM") and any(row["prune"])]
    if not rows or not kenlm_peer.kenlm_available():
        print("KenLM row skipped: KenLM is not built or the benchmark made no pruned KenLM row", flush=True)
        return None
    return rows[0]["name"], kenlm_peer.KenLMScorer(os.path.join(kenlm_peer.REPO_ROOT, rows[0]["binary_path"]))


if __name__ == "__main__":
    sys.exit(main())
