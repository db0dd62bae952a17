#!/usr/bin/python3
"""Lattice n-best search with the decoder's trigram, in worker processes under the system python3.

Debian's python3-sphinxbase (the reader of the decoder's binary trigram `en-us.lm.bin`) is a module of
/usr/bin/python3, not of the project's virtual environment. So `search_lattices` (called from make_nbest.py, in
any python) writes one job file per worker and runs this file as a script under /usr/bin/python3:

    /usr/bin/python3 lattice_nbest.py < job.json > nbest.jsonl

job.json: {"lm": PATH, "n": N, "utterances": [{"id": ID, "lattice": PATH, "final_ascr": INT}, ...]}. Output: one
JSON object a line, {"id", "exact", "hyps": [{"words", "score", "acoustic", "filler_penalty", "lm_raw"}]}, in the
integer units documented in lattice.py ("exact": false where search.py fell back to its approximate search).
"""

import json
import os
import subprocess
import sys

from lattice import read_lattice
from search import nbest
from tools import SYSTEM_PYTHON

HERE = os.path.dirname(os.path.abspath(__file__))


def load_lm(path: str):
    """The trigram as (word, history oldest first) -> raw log-base-1.0001 probability, as the decoder reads it."""
    try:
        from sphinxbase.sphinxbase import NGramModel
    except ImportError:
        sys.exit("lattice_nbest.py: the sphinxbase module is missing: apt-get install python3-sphinxbase")
    model = NGramModel(path)

    def raw_logprob(word: str, history: tuple[str, ...]) -> int:
        return model.prob([word, *reversed(history)])  # sphinxbase wants the word, then the history newest first

    return raw_logprob


def search_lattices(utterances: list[dict], lm: str, n: int, work_dir: str, jobs: int) -> dict[str, dict]:
    """{id: {"exact", "hyps"}} for utterances [{"id", "lattice", "final_ascr"}], searched by `jobs` workers."""
    os.makedirs(work_dir, exist_ok=True)
    workers = []
    for k in range(min(jobs, len(utterances))):
        job_path, out_path = os.path.join(work_dir, f"nbest{k}.json"), os.path.join(work_dir, f"nbest{k}.jsonl")
        with open(job_path, "w", encoding="utf-8") as handle:
            json.dump({"lm": lm, "n": n, "utterances": utterances[k::jobs]}, handle)
        log_path = os.path.join(work_dir, f"nbest{k}.log")
        with open(job_path, encoding="utf-8") as stdin, open(out_path, "w", encoding="utf-8") as stdout, \
                open(log_path, "w", encoding="utf-8") as stderr:
            command = [SYSTEM_PYTHON, os.path.join(HERE, "lattice_nbest.py")]
            workers.append((out_path, log_path, subprocess.Popen(command, stdin=stdin, stdout=stdout, stderr=stderr)))
    results = {}
    for out_path, log_path, process in workers:
        if process.wait() != 0:
            raise RuntimeError(f"lattice_nbest.py exited with {process.returncode}; see {log_path}")
        with open(out_path, encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                results[record.pop("id")] = record
    return results


def main() -> int:
    job = json.load(sys.stdin)
    lm = load_lm(job["lm"])
    for utterance in job["utterances"]:
        hyps, exact = nbest(read_lattice(utterance["lattice"]), lm, job["n"], final_ascr=utterance["final_ascr"])
        record = {"id": utterance["id"], "exact": exact, "hyps": [
            {"words": list(h.words), "score": h.score, "acoustic": h.acoustic, "filler_penalty": h.filler_penalty,
             "lm_raw": h.lm_raw} for h in hyps]}
        print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
