#!/usr/bin/env python
"""Real ASR n-best lists for LM rescoring: wt2-mini sentences, synthesized, noised, decoded by pocketsphinx.

    python scripts/asr_nbest/make_nbest.py --out-dir runs/asr_nbest

writes OUT/dev.jsonl (from valid.txt) and OUT/test.jsonl (from test.txt) in the JSON Lines format that
`hf-softbin rescore` reads, and OUT/summary.json with the figures of the run. See README.md beside this file.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

from decoder import decode
from lattice import NATS_PER_INTERNAL, NATS_PER_RAW, DecoderWeights
from lattice_nbest import search_lattices
from metrics import corpus_wer, list_statistics
from sentences import select, to_wt2_tokens, usable_sentences
from synth import render_all
from tools import TRIGRAM, dictionary_words, ensure_packages, package_versions

from hf_softbin.atomic import write_text_atomic

REPO = Path(__file__).resolve().parents[2]
SPLITS = {"dev": "valid.txt", "test": "test.txt"}


def hypothesis_record(hyp: dict) -> dict:
    """A hypothesis from the lattice search (integer decoder units) in natural logs."""
    text = " ".join(hyp["words"])
    return {
        "text": text,
        "lm_text": to_wt2_tokens(text),
        "am_score": round(hyp["acoustic"] * NATS_PER_INTERNAL, 4),
        "lm_score": round(hyp["lm_raw"] * NATS_PER_RAW, 4),
        "filler_penalty": round(hyp["filler_penalty"] * NATS_PER_INTERNAL, 4),
        "num_words": len(hyp["words"]),
        "first_pass_score": round(hyp["score"] * NATS_PER_INTERNAL, 4),
    }


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=REPO / "runs" / "asr_nbest")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "wt2-mini",
                        help="wt2-mini: valid.txt and test.txt are read from here")
    parser.add_argument("--sentences", type=int, default=300, help="utterances per split")
    parser.add_argument("--n", type=int, default=20, help="hypotheses per list, at most")
    parser.add_argument("--seed", type=int, default=0, help="drives sentence choice, voice, speed and noise")
    parser.add_argument("--jobs", type=int, default=2, help="parallel synthesizer, decoder and search processes")
    parser.add_argument("--min-words", type=int, default=5)
    parser.add_argument("--max-words", type=int, default=20)
    parser.add_argument("--lattice-beam", type=float, default=1e-4,
                        help="decoder -outlatbeam: lattice links below this posterior are pruned")
    parser.add_argument("--no-install", action="store_true", help="stop instead of apt-get installing tools")
    return parser.parse_args(argv)


def choose_sentences(args) -> tuple[dict, dict]:
    """({utterance id: Sentence}, {split: counts of usable, chosen and dropped sentences})."""
    vocabulary = dictionary_words()
    sentences, selection = {}, {}
    for split, filename in SPLITS.items():
        kept, dropped = usable_sentences(args.data_dir / filename, vocabulary, args.min_words, args.max_words)
        chosen = select(kept, args.sentences, f"{args.seed}:{split}")
        sentences.update({f"{split}-{i:04d}": sentence for i, sentence in enumerate(chosen, start=1)})
        selection[split] = {"file": filename, "usable": len(kept), "chosen": len(chosen), "dropped": dict(dropped)}
        print(f"{split}: {len(kept)} usable sentences in {filename}, {len(chosen)} chosen; dropped "
              + ", ".join(f"{count} ({reason})" for reason, count in dropped.most_common()), flush=True)
    return sentences, selection


def decoder_agreement(ids: list[str], lists: dict, decoded: dict, refs: dict) -> dict:
    """How often rank 1 of a list is the decoder's own 1-best: same words, same score, or a better score."""
    first = {uid: lists[uid]["hyps"][0] for uid in ids}
    return {
        "rank1_text_equals_decoder": sum(" ".join(first[u]["words"]) == decoded[u].text for u in ids) / len(ids),
        "rank1_score_equals_decoder": sum(first[u]["score"] == decoded[u].score for u in ids) / len(ids),
        "rank1_score_above_decoder": sum(first[u]["score"] > decoded[u].score for u in ids) / len(ids),
        "decoder_1best_wer": corpus_wer([refs[u] for u in ids], [decoded[u].text for u in ids]),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    started, load = time.time(), {"start": os.getloadavg()}
    ensure_packages(install=not args.no_install)
    versions = package_versions()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    sentences, selection = choose_sentences(args)

    audio = render_all([(uid, s.speech_text) for uid, s in sentences.items()], str(args.out_dir / "audio"),
                       args.seed, args.jobs)
    load["after_synthesis"], synthesized = os.getloadavg(), time.time()
    work_dir = str(args.out_dir / "decode")
    decoded = decode({uid: path for uid, (path, _) in audio.items()}, work_dir, args.jobs, DecoderWeights(),
                     args.lattice_beam)
    load["after_decoding"], decoded_at = os.getloadavg(), time.time()
    jobs = [{"id": uid, "lattice": d.lattice, "final_ascr": d.final_ascr} for uid, d in decoded.items()]
    lists = search_lattices(jobs, TRIGRAM, args.n, work_dir, args.jobs)
    searched = time.time()

    results = {}
    for split in SPLITS:
        ids = [uid for uid in sentences if uid.startswith(f"{split}-")]
        usable = [uid for uid in ids if uid in lists and lists[uid]["hyps"]]
        records = [{"id": uid, "ref": sentences[uid].ref, "hyps": [hypothesis_record(h) for h in lists[uid]["hyps"]],
                    "audio": vars(audio[uid][1])} for uid in usable]
        write_text_atomic(args.out_dir / f"{split}.jsonl", "".join(json.dumps(r) + "\n" for r in records))
        refs = {uid: sentences[uid].ref for uid in usable}
        results[split] = {**list_statistics(records), **decoder_agreement(usable, lists, decoded, refs),
                          "no_lattice_or_hypothesis": len(ids) - len(usable),
                          "approximate_searches": sum(not lists[uid]["exact"] for uid in usable)}

    load["end"] = os.getloadavg()
    timings = {"synthesis_s": synthesized - started, "decoding_s": decoded_at - synthesized,
               "lattice_search_s": searched - decoded_at, "total_s": time.time() - started}
    summary = {"command": " ".join(sys.argv), "settings": {k: str(v) for k, v in vars(args).items()},
               "packages": versions, "selection": selection, "results": results, "timings": timings,
               "load_average_1_5_15_min": load, "cpus": os.cpu_count()}
    write_text_atomic(args.out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    for split, stats in results.items():
        print(f"{split}: " + ", ".join(f"{key} {value:.4g}" for key, value in stats.items()))
    print(f"wrote {', '.join(f'{s}.jsonl' for s in SPLITS)} and summary.json to {args.out_dir} in "
          f"{timings['total_s']:.0f} s; 1-minute load average " + ", ".join(f"{v[0]:.2f} {k}" for k, v in load.items())
          + f" ({os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
