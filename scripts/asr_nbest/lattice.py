"""N-best lists from pocketsphinx 0.8 (5prealpha) word lattices, scored the way its bestpath search scores them.

Standard library only: this module runs under the system python3, next to Debian's sphinxbase module.

What the decoder writes (`-outlatdir`, s3 format) and how its bestpath pass scores a path, in its own integer units
(log base 1.0001, "internal" scores shifted right by 10 bits, as in its source):

- Nodes are (word, start frame); an edge u -> v carries the acoustic score of u's word ending just before v
  starts. An edge entering a filler node (<sil>, [NOISE], [SPEECH]) also carries that filler's insertion
  penalty: -silprob for <sil>, -fillprob for the others (ps_lattice_penalize_fillers).
- Each real word w, and the final </s>, adds the trigram score (int(6.5 * raw_logprob + log(wip)) >> 10) times
  bestpathlw / lw = 9.5 / 6.5, a float32 added to the (negative) integer path score and truncated toward zero.
  Fillers are skipped in the trigram history.
- The acoustic score of the final </s> segment is not on any edge; the decoder adds it to the path score it
  reports with the hypothesis, and so do we (`final_ascr`).

search.py finds the best paths under this score.
"""

import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

LOG_BASE = 1.0001
SHIFT = 10  # pocketsphinx's SENSCR_SHIFT: internal scores are log-base-1.0001 values divided by 1024
NATS_PER_RAW = math.log(LOG_BASE)  # one unit of an unshifted score (LM probabilities), in natural log
NATS_PER_INTERNAL = NATS_PER_RAW * (1 << SHIFT)
START, END, SILENCE = "<s>", "</s>", "<sil>"
ALTERNATE = re.compile(r"\(\d+\)$")  # "the(2)": second pronunciation of "the"

RawLogProb = Callable[[str, tuple[str, ...]], int]  # (word, history oldest first) -> log_1.0001 P, unshifted


def _float32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def _logmath_log(probability: float) -> int:
    """sphinxbase's logmath_log: a probability as a truncated integer log in base 1.0001."""
    return int(math.log(probability) * (1.0 / math.log(LOG_BASE)))


@dataclass(frozen=True)
class DecoderWeights:
    """The decoder settings the path score depends on (pocketsphinx 0.8 defaults); passed to the decoder too."""

    lw: float = 6.5
    bestpathlw: float = 9.5
    wip: float = 0.65
    silprob: float = 0.005
    fillprob: float = 1e-8

    def command_line(self) -> list[str]:
        return ["-lw", str(self.lw), "-bestpathlw", str(self.bestpathlw), "-wip", str(self.wip),
                "-silprob", str(self.silprob), "-fillprob", str(self.fillprob)]

    @property
    def silence_penalty(self) -> int:
        return _logmath_log(self.silprob) >> SHIFT

    @property
    def filler_penalty(self) -> int:
        return _logmath_log(self.fillprob) >> SHIFT

    def lm_term(self, raw_logprob: int) -> float:
        """What one word's LM probability adds to the bestpath score (internal units, a float32 before rounding)."""
        weighted = int(raw_logprob * self.lw + _logmath_log(self.wip)) >> SHIFT
        ratio = _float32(_float32(self.bestpathlw) / _float32(self.lw))
        return _float32(weighted * ratio)


def add_step(score: int, edge_score: int, lm_term: float) -> int:
    """The decoder's `score = path_scr + ascr; score += lm_term`: an int32 plus a float32, truncated toward zero.

    Nearly always score + edge_score + ceil(lm_term); the float32 sum makes it one less now and then.
    """
    return int(_float32(float(score + edge_score) + lm_term))


class Step(NamedTuple):
    """Taking an edge: its acoustic score (with a filler's penalty), the LM term, and their parts."""

    edge_score: int  # internal units
    lm_term: float  # internal units, 0.0 into a filler
    acoustic: int  # edge_score without the filler penalty
    filler_penalty: int
    raw_logprob: int  # the LM probability, unshifted log base 1.0001, 0 into a filler
    history: tuple[str, ...]  # the real words (at most two, oldest first) the next LM lookup conditions on

    @property
    def approximate_weight(self) -> int:
        """add_step's increment without the float32 rounding: additive, for search heuristics."""
        return self.edge_score + math.ceil(self.lm_term)


@dataclass
class Lattice:
    words: list[str]  # per node, without the pronunciation variant
    start_frames: list[int]
    edges: dict[int, list[tuple[int, int]]]  # node -> [(next node, score in internal units)]
    start: int
    end: int

    def is_filler(self, node: int) -> bool:
        word = self.words[node]
        return node not in (self.start, self.end) and (word.startswith("<") or word.startswith("["))


def read_lattice(path: str) -> Lattice:
    """Parse an s3-format lattice written by pocketsphinx_batch -outlatdir."""
    words, start_frames, edges = [], [], {}
    start = end = None
    section = None
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if fields[0] in ("Nodes", "Edges"):
                section = fields[0]
            elif fields[0] == "Initial":
                start = int(fields[1])
            elif fields[0] == "Final":
                end = int(fields[1])
            elif fields[0] in ("Frames", "BestSegAscr", "End"):
                section = None
            elif section == "Nodes":
                words.append(ALTERNATE.sub("", fields[1]))
                start_frames.append(int(fields[2]))
            elif section == "Edges":
                source, target, score = int(fields[0]), int(fields[1]), int(fields[2])
                edges.setdefault(source, []).append((target, score >> SHIFT))
    if start is None or end is None or not words:
        raise ValueError(f"{path}: not a pocketsphinx s3 lattice (no nodes, Initial or Final line)")
    return Lattice(words, start_frames, edges, start, end)


class StepScorer:
    """What stepping into a node adds to a path: the LM word scored, the text word, the filler penalty."""

    def __init__(self, lattice: Lattice, weights: DecoderWeights, lm: RawLogProb):
        self.lattice, self.weights, self.lm = lattice, weights, lm
        self.cache: dict[tuple[str, tuple[str, ...]], int] = {}

    def lm_word(self, node: int) -> str | None:
        """The word the LM scores on entering `node` (None for a filler)."""
        if self.lattice.is_filler(node):
            return None
        word = self.lattice.words[node]
        if node == self.lattice.end and word.startswith(("<", "[")):
            return END  # the decoder scores a filler that ends the lattice as </s>
        return word

    def text_word(self, node: int) -> str | None:
        """The word `node` adds to the hypothesis text (None for fillers and for </s>)."""
        word = self.lm_word(node)
        return None if word in (None, END) else word

    def raw(self, word: str, history: tuple[str, ...]) -> int:
        key = (word, history)
        if key not in self.cache:
            self.cache[key] = self.lm(word, history)
        return self.cache[key]

    def penalty(self, node: int) -> int:
        if not self.lattice.is_filler(node):
            return 0
        weights = self.weights
        return weights.silence_penalty if self.lattice.words[node] == SILENCE else weights.filler_penalty

    def step(self, target: int, edge_score: int, history: tuple[str, ...]) -> Step:
        """Taking an edge into `target` after the real words `history` (oldest first, at most two, <s> first)."""
        penalty, word = self.penalty(target), self.lm_word(target)
        if word is None:
            return Step(edge_score, 0.0, edge_score - penalty, penalty, 0, history)
        raw = self.raw(word, history)
        return Step(edge_score, self.weights.lm_term(raw), edge_score - penalty, penalty, raw, (history[-1], word))
