#!/usr/bin/env python
"""Build n-best lists from held-out text by controlled corruptions, for trying `hf-softbin rescore` without a recognizer.

    python scripts/make_corrupted_nbest.py ../shared/data/wt2-mini/valid.txt dev.jsonl --lines 300 --seed 1
    python scripts/make_corrupted_nbest.py ../shared/data/wt2-mini/test.txt test.jsonl --lines 300 --seed 2

Each utterance is one line of the text (its reference) with n hypotheses: the reference itself and copies with
1..max-edits random substitutions, deletions, insertions or swaps; acoustic scores are -edits + Gaussian noise, so
the first pass often picks a wrong one. See hf_softbin.scoring.synthetic_nbest.
"""

import argparse
import sys

from hf_softbin.scoring.nbest_io import write_nbest_jsonl
from hf_softbin.scoring.synthetic_nbest import make_corrupted_nbest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("text", help="held-out text, one sentence or paragraph a line")
    parser.add_argument("output", help="the JSON Lines n-best file to write")
    parser.add_argument("--lines", type=int, default=300, help="how many lines to use (in file order)")
    parser.add_argument("--max-words", type=int, default=40, help="skip lines longer than this")
    parser.add_argument("--n", type=int, default=10, help="hypotheses per utterance")
    parser.add_argument("--max-edits", type=int, default=3)
    parser.add_argument("--noise", type=float, default=1.0, help="standard deviation of the acoustic-score noise")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with open(args.text, encoding="utf-8") as handle:
        lines = [line.strip() for line in handle if line.strip() and len(line.split()) <= args.max_words]
    utterances = make_corrupted_nbest(lines[: args.lines], args.n, args.seed, max_edits=args.max_edits,
                                      noise_std=args.noise)
    write_nbest_jsonl(utterances, args.output)
    print(f"wrote {len(utterances)} utterances to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
