"""Run pocketsphinx_batch over the audio in parallel shards; collect its 1-best, scores and word lattices."""

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from lattice import DecoderWeights
from synth import WAV_HEADER_BYTES
from tools import ACOUSTIC_MODEL, DICTIONARY, TRIGRAM

HYP_LINE = re.compile(r"^(.*?)\s*\((\S+) (-?\d+)\)$")  # "words words (uttid score)"
LOG_DECODING = re.compile(r"Decoding '(\S+)'")
LOG_BESTPATH = re.compile(r"Bestpath score: (-?\d+)")


@dataclass
class Decoded:
    text: str  # the decoder's own 1-best
    score: int  # its path score, internal units (see lattice.py), final </s> acoustic score included
    bestpath_score: int  # the same without the final </s> acoustic score
    lattice: str

    @property
    def final_ascr(self) -> int:
        return self.score - self.bestpath_score


def _command(shard: str, lattice_dir: str, weights: DecoderWeights, lattice_beam: float) -> list[str]:
    return ["pocketsphinx_batch", "-hmm", ACOUSTIC_MODEL, "-lm", TRIGRAM, "-dict", DICTIONARY,
            "-ctl", f"{shard}.ctl", "-cepext", ".wav", "-adcin", "yes", "-adchdr", str(WAV_HEADER_BYTES),
            "-hyp", f"{shard}.hyp", "-logfn", f"{shard}.log", "-outlatdir", lattice_dir,
            "-outlatbeam", str(lattice_beam), *weights.command_line()]


def _read_hyps(path: str) -> dict[str, tuple[str, int]]:
    hyps = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            match = HYP_LINE.match(line.rstrip("\n"))
            if match:
                hyps[match.group(2)] = (match.group(1), int(match.group(3)))
    return hyps


def _read_bestpath_scores(log_path: str) -> dict[str, int]:
    """The "Bestpath score" the decoder logs for each utterance (its path score before the final </s>)."""
    scores, current = {}, None
    with open(log_path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if match := LOG_DECODING.search(line):
                current = match.group(1)
            elif (match := LOG_BESTPATH.search(line)) and current is not None:
                scores[current] = int(match.group(1))
    return scores


def decode(audio: dict[str, str], work_dir: str, jobs: int, weights: DecoderWeights,
           lattice_beam: float) -> dict[str, Decoded]:
    """Decode {utterance id: wav path} with `jobs` decoder processes; utterances with no lattice are left out."""
    shutil.rmtree(work_dir, ignore_errors=True)  # no lattice of an earlier run may stand in for a failed one
    lattice_dir = os.path.join(work_dir, "lattices")
    os.makedirs(lattice_dir)
    ids = list(audio)
    if any(" " in os.path.abspath(path) for path in audio.values()):
        raise ValueError(f"{work_dir}: the decoder's control file cannot name audio files whose path has a space")
    shards = [os.path.join(work_dir, f"shard{k}") for k in range(min(jobs, len(ids)))]
    processes = []
    for k, shard in enumerate(shards):
        with open(f"{shard}.ctl", "w", encoding="utf-8") as ctl:
            for uid in ids[k::len(shards)]:
                ctl.write(f"{os.path.abspath(audio[uid])[:-len('.wav')]} 0 -1 {uid}\n")  # file, frames, id
        processes.append(subprocess.Popen(_command(shard, lattice_dir, weights, lattice_beam),
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    decoded = {}
    for shard, process in zip(shards, processes):
        if process.wait() != 0:
            raise RuntimeError(f"pocketsphinx_batch exited with {process.returncode}; see {shard}.log")
        bestpath = _read_bestpath_scores(f"{shard}.log")
        for uid, (text, score) in _read_hyps(f"{shard}.hyp").items():
            lattice = os.path.join(lattice_dir, f"{uid}.lat")
            if uid in bestpath and os.path.exists(lattice):
                decoded[uid] = Decoded(text, score, bestpath[uid], lattice)
    return decoded
