"""N-best rescoring of ASR output with a language model, independent of the model.

The language model is any callable `lm_logprob(texts) -> log-probs`: the natural-log probability of each sentence
scored as `w1 ... wn <eos>` from a fresh state. Score convention throughout: every score is a log-likelihood, higher is
better. The score of a hypothesis after rescoring is

    am_score + lm_weight * nnlm_logprob + first_pass_weight * lm_score + word_insertion_penalty * num_words

where `lm_score` (the first-pass LM score) counts only when present. NNLM scores are computed once per unique text
(`score_hypotheses`) and reused by `choose`, `rescore_from_scores` and `tune_weights`: a grid search costs one LM
pass.
"""

import json
import math
import os
import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import jiwer

from .atomic import write_text_atomic

LMLogProb = Callable[[list[str]], Sequence[float]]

# Fine steps for acoustic scores on the scale of LM log-probs, coarse up to 20 for unscaled Kaldi acoustic scores.
DEFAULT_LM_WEIGHTS = (
    0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0, 10.0, 15.0, 20.0
)
DEFAULT_PENALTIES = (-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0)


@dataclass
class Hypothesis:
    text: str
    am_score: float
    lm_score: float | None = None

    @property
    def num_words(self) -> int:
        return len(self.text.split())


@dataclass
class Utterance:
    id: str
    hyps: list[Hypothesis]
    ref: str | None = None


@dataclass
class RescoreSummary:
    """Corpus-level WERs are None when the utterances carry no references."""

    num_utterances: int
    lm_weight: float
    penalty: float
    first_pass_weight: float
    wer_before: float | None
    wer_after: float | None
    oracle_wer: float | None


@dataclass
class RescoreResult:
    utterances: list[Utterance]
    chosen: list[int]  # index into each utterance's hyps
    scores: list[float]  # rescoring score of the chosen hypothesis
    summary: RescoreSummary

    def chosen_hypotheses(self) -> list[Hypothesis]:
        return [utt.hyps[i] for utt, i in zip(self.utterances, self.chosen)]


# ------------------------------------------------------------------------------------------------------------- reading


def _lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """(line number, decoded line without newline); blank lines skipped. Decodes line by line to name a bad line."""
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}: line {lineno}: not valid UTF-8 ({err.reason} at byte {err.start})") from None
            line = line.rstrip("\r\n")
            if line.strip():
                yield lineno, line


def _finite_score(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _parse_jsonl_hyp(item, where: str) -> Hypothesis:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected an object with \"text\" and \"am_score\", got {item!r}")
    for key in ("text", "am_score"):
        if key not in item:
            raise ValueError(f"{where}: missing \"{key}\"")
    if not isinstance(item["text"], str):
        raise ValueError(f"{where}: \"text\" must be a string, got {item['text']!r}")
    am_score = _finite_score(item["am_score"], f"{where}: \"am_score\"")
    lm_score = item.get("lm_score")
    if lm_score is not None:
        lm_score = _finite_score(lm_score, f"{where}: \"lm_score\"")
    return Hypothesis(item["text"], am_score, lm_score)


def read_nbest_jsonl(path: str | os.PathLike) -> list[Utterance]:
    """One utterance a line: {"id", "hyps": [{"text", "am_score", "lm_score"?}, ...], "ref"?}."""
    utterances = []
    seen = {}
    for lineno, line in _lines(path):
        where = f"{path}: line {lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: malformed JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object with \"id\" and \"hyps\"")
        for key in ("id", "hyps"):
            if key not in record:
                raise ValueError(f"{where}: missing \"{key}\"")
        utt_id = record["id"]
        if isinstance(utt_id, bool) or not isinstance(utt_id, (str, int)) or str(utt_id) == "":
            raise ValueError(f"{where}: \"id\" must be a non-empty string or an integer, got {utt_id!r}")
        utt_id = str(utt_id)
        if utt_id in seen:
            raise ValueError(f"{where}: duplicate utterance id {utt_id!r} (first on line {seen[utt_id]})")
        seen[utt_id] = lineno
        hyps = record["hyps"]
        if not isinstance(hyps, list) or not hyps:
            raise ValueError(f"{where}: \"hyps\" must be a non-empty list of hypotheses")
        ref = record.get("ref")
        if ref is not None and not isinstance(ref, str):
            raise ValueError(f"{where}: \"ref\" must be a string, got {ref!r}")
        parsed = [_parse_jsonl_hyp(item, f"{where}: hypothesis {i}") for i, item in enumerate(hyps)]
        utterances.append(Utterance(utt_id, parsed, ref))
    return utterances


_KALDI_KEY = re.compile(r"^(.+)-(\d+)$")


def _kaldi_key(key: str, where: str) -> tuple[str, int]:
    match = _KALDI_KEY.match(key)
    if not match:
        raise ValueError(f"{where}: expected a key of the form UTT-ID-N (N = hypothesis index), got {key!r}")
    return match.group(1), int(match.group(2))


def read_kaldi_nbest(
    text_path: str | os.PathLike,
    score_path: str | os.PathLike,
    ref_path: str | os.PathLike | None = None,
    *,
    scores_are_costs: bool = False,
) -> list[Utterance]:
    """Kaldi-style n-best: `UTT-ID-N word ...` lines, a parallel `UTT-ID-N score` file, optional `UTT-ID word ...` refs.

    Scores are read as acoustic log-likelihoods (higher = better). Kaldi writes costs (negated log-likelihoods):
    pass `scores_are_costs=True` to negate them. Unscaled acoustic scores call for an lm_weight near 1 / acoustic
    scale (10 to 20). Utterances keep the order of the text file; hypotheses are ordered by N. Every key must be in
    both files, and with a reference file every utterance must have exactly one reference.
    """
    texts = {}  # key -> (utt_id, n, text, lineno)
    for lineno, line in _lines(text_path):
        where = f"{text_path}: line {lineno}"
        key, *rest = line.split(maxsplit=1)
        text = rest[0] if rest else ""
        if key in texts:
            raise ValueError(f"{where}: duplicate key {key!r} (first on line {texts[key][3]})")
        utt_id, n = _kaldi_key(key, where)
        texts[key] = (utt_id, n, " ".join(text.split()), lineno)

    scores = {}  # key -> (score, lineno)
    for lineno, line in _lines(score_path):
        where = f"{score_path}: line {lineno}"
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"{where}: expected 'UTT-ID-N score', got {len(fields)} fields")
        key, value = fields
        if key in scores:
            raise ValueError(f"{where}: duplicate key {key!r} (first on line {scores[key][1]})")
        _kaldi_key(key, where)
        if key not in texts:
            raise ValueError(f"{where}: key {key!r} has no hypothesis in {text_path}")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{where}: expected a number as the score, got {value!r}") from None
        score = _finite_score(number, f"{where}: score")
        scores[key] = (-score if scores_are_costs else score, lineno)

    by_utt: dict[str, list[tuple[int, Hypothesis]]] = {}
    first_line = {}  # utt_id -> first line in the text file
    for key, (utt_id, n, text, lineno) in texts.items():
        if key not in scores:
            raise ValueError(f"{text_path}: line {lineno}: key {key!r} has no score in {score_path}")
        by_utt.setdefault(utt_id, []).append((n, Hypothesis(text, scores[key][0])))
        first_line.setdefault(utt_id, lineno)
    utterances = []
    for utt_id, numbered in by_utt.items():
        numbered.sort(key=lambda pair: pair[0])
        utterances.append(Utterance(utt_id, [hyp for _, hyp in numbered]))

    if ref_path is not None:
        refs = {}  # utt_id -> (text, lineno)
        for lineno, line in _lines(ref_path):
            utt_id, *rest = line.split(maxsplit=1)
            text = rest[0] if rest else ""
            where = f"{ref_path}: line {lineno}"
            if utt_id in refs:
                raise ValueError(f"{where}: duplicate reference for {utt_id!r} (first on line {refs[utt_id][1]})")
            if utt_id not in by_utt:
                raise ValueError(f"{where}: reference for {utt_id!r}, which has no hypotheses in {text_path}")
            refs[utt_id] = (" ".join(text.split()), lineno)
        for utt in utterances:
            if utt.id not in refs:
                where = f"{text_path}: line {first_line[utt.id]}"
                raise ValueError(f"{where}: utterance {utt.id!r} has no reference in {ref_path}")
            utt.ref = refs[utt.id][0]
    return utterances


# ------------------------------------------------------------------------------------------------------------- scoring


def _normalize(text: str) -> str:
    return " ".join(text.split())


def score_hypotheses(
    utterances: Sequence[Utterance], lm_logprob: LMLogProb, *, batch_size: int = 64
) -> list[list[float]]:
    """NNLM log-prob of every hypothesis, calling `lm_logprob` once per unique (whitespace-normalized) text.

    Unique texts go out sorted by length, so batches pad little.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    unique = sorted({_normalize(h.text) for utt in utterances for h in utt.hyps}, key=lambda t: (len(t.split()), t))
    logprobs = {}
    for start in range(0, len(unique), batch_size):
        batch = unique[start:start + batch_size]
        values = list(lm_logprob(batch))
        if len(values) != len(batch):
            raise ValueError(f"lm_logprob returned {len(values)} scores for {len(batch)} texts")
        for text, value in zip(batch, values):
            logprobs[text] = _finite_score(float(value), f"lm_logprob of {text!r}")
    return [[logprobs[_normalize(h.text)] for h in utt.hyps] for utt in utterances]


def _check_scores(utterances: Sequence[Utterance], nnlm_scores: Sequence[Sequence[float]]) -> None:
    if len(nnlm_scores) != len(utterances) or any(len(s) != len(u.hyps) for u, s in zip(utterances, nnlm_scores)):
        raise ValueError("nnlm_scores must hold one score per hypothesis of every utterance (from score_hypotheses)")


def _score(
    hyp: Hypothesis, nnlm_logprob: float, lm_weight: float, first_pass_weight: float, word_insertion_penalty: float
) -> float:
    score = hyp.am_score + lm_weight * nnlm_logprob + word_insertion_penalty * hyp.num_words
    if hyp.lm_score is not None:
        score += first_pass_weight * hyp.lm_score
    return score


def _argmax(values: Sequence[float]) -> int:
    """Index of the largest value; the first one on ties."""
    return max(range(len(values)), key=values.__getitem__)


def choose(
    utterances: Sequence[Utterance],
    nnlm_scores: Sequence[Sequence[float]],
    lm_weight: float,
    *,
    first_pass_weight: float = 0.0,
    word_insertion_penalty: float = 0.0,
) -> list[int]:
    """Index of the best hypothesis of each utterance after rescoring (first one on ties)."""
    _check_scores(utterances, nnlm_scores)
    return [
        _argmax([_score(h, s, lm_weight, first_pass_weight, word_insertion_penalty) for h, s in zip(u.hyps, scores)])
        for u, scores in zip(utterances, nnlm_scores)
    ]


def first_pass_choice(utterances: Sequence[Utterance]) -> list[int]:
    """What the first pass chose: highest am_score + lm_score (lm_score counted with weight 1 when present)."""
    return [_argmax([h.am_score + (h.lm_score or 0.0) for h in u.hyps]) for u in utterances]


# ----------------------------------------------------------------------------------------------------------------- WER


def word_error_rate(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus-level WER: total word errors over total reference words (jiwer)."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    out = jiwer.process_words(list(refs), list(hyps))
    ref_words = out.hits + out.substitutions + out.deletions
    if ref_words == 0:
        raise ValueError("WER is undefined: the references hold no words")
    return (out.substitutions + out.deletions + out.insertions) / ref_words


def _references(utterances: Sequence[Utterance]) -> list[str] | None:
    """All references, or None when no utterance has one; a partial set is an error (its WER would mislead)."""
    missing = [u.id for u in utterances if u.ref is None]
    if len(missing) == len(utterances):
        return None
    if missing:
        raise ValueError(f"{len(missing)} of {len(utterances)} utterances have no reference (first: {missing[0]!r})")
    return [u.ref for u in utterances]


class _ErrorTable:
    """Word errors of every hypothesis against its reference, so the WER of any choice is a sum, not a re-alignment."""

    def __init__(self, utterances: Sequence[Utterance]):
        refs = _references(utterances)
        if refs is None:
            raise ValueError("WER needs references, and these utterances have none")
        self.errors = []
        for utt in utterances:
            row = []
            for hyp in utt.hyps:
                out = jiwer.process_words(utt.ref, hyp.text)
                row.append(out.substitutions + out.deletions + out.insertions)
            self.errors.append(row)
        self.ref_words = sum(len(r.split()) for r in refs)
        if self.ref_words == 0:
            raise ValueError("WER is undefined: the references hold no words")

    def wer(self, chosen: Sequence[int]) -> float:
        return sum(row[i] for row, i in zip(self.errors, chosen)) / self.ref_words

    def oracle(self) -> float:
        return sum(min(row) for row in self.errors) / self.ref_words


def oracle_wer(utterances: Sequence[Utterance]) -> float:
    """WER when each utterance takes its best hypothesis: the lower bound any rescoring of these lists can reach."""
    return _ErrorTable(utterances).oracle()


def first_pass_wer(utterances: Sequence[Utterance]) -> float:
    return _ErrorTable(utterances).wer(first_pass_choice(utterances))


# --------------------------------------------------------------------------------------------------- rescoring, tuning


def rescore_from_scores(
    utterances: Sequence[Utterance],
    nnlm_scores: Sequence[Sequence[float]],
    lm_weight: float,
    *,
    first_pass_weight: float = 0.0,
    word_insertion_penalty: float = 0.0,
) -> RescoreResult:
    """`rescore` on NNLM scores from `score_hypotheses`: for choosing again with other weights without the LM."""
    chosen = choose(
        utterances,
        nnlm_scores,
        lm_weight,
        first_pass_weight=first_pass_weight,
        word_insertion_penalty=word_insertion_penalty,
    )
    scores = [
        _score(u.hyps[i], s[i], lm_weight, first_pass_weight, word_insertion_penalty)
        for u, s, i in zip(utterances, nnlm_scores, chosen)
    ]
    table = _ErrorTable(utterances) if _references(utterances) is not None else None
    summary = RescoreSummary(
        num_utterances=len(utterances),
        lm_weight=lm_weight,
        penalty=word_insertion_penalty,
        first_pass_weight=first_pass_weight,
        wer_before=table.wer(first_pass_choice(utterances)) if table else None,
        wer_after=table.wer(chosen) if table else None,
        oracle_wer=table.oracle() if table else None,
    )
    return RescoreResult(list(utterances), chosen, scores, summary)


def rescore(
    utterances: Sequence[Utterance],
    lm_logprob: LMLogProb,
    lm_weight: float,
    *,
    first_pass_weight: float = 0.0,
    word_insertion_penalty: float = 0.0,
    batch_size: int = 64,
) -> RescoreResult:
    """Score every hypothesis with the LM (once per unique text), pick the best of each utterance, summarize WERs."""
    _references(utterances)  # a partial set of references fails here, before the LM pass
    nnlm_scores = score_hypotheses(utterances, lm_logprob, batch_size=batch_size)
    return rescore_from_scores(
        utterances,
        nnlm_scores,
        lm_weight,
        first_pass_weight=first_pass_weight,
        word_insertion_penalty=word_insertion_penalty,
    )


def tune_weights(
    dev_utterances: Sequence[Utterance],
    nnlm_scores: Sequence[Sequence[float]],
    *,
    lm_weights: Sequence[float] = DEFAULT_LM_WEIGHTS,
    penalties: Sequence[float] = DEFAULT_PENALTIES,
    first_pass_weight: float = 0.0,
) -> tuple[float, float, float]:
    """Grid search for the (lm_weight, penalty) of lowest dev WER: returns (lm_weight, penalty, wer).

    Ties go to the smaller LM weight, then to the penalty closest to 0 (the negative one if two are as close).
    """
    if not lm_weights or not penalties:
        raise ValueError("lm_weights and penalties must not be empty")
    _check_scores(dev_utterances, nnlm_scores)
    table = _ErrorTable(dev_utterances)
    best = None
    for lm_weight in sorted(lm_weights):
        for penalty in sorted(penalties, key=lambda p: (abs(p), p)):
            weights = dict(first_pass_weight=first_pass_weight, word_insertion_penalty=penalty)
            chosen = choose(dev_utterances, nnlm_scores, lm_weight, **weights)
            wer = table.wer(chosen)
            if best is None or wer < best[2]:
                best = (float(lm_weight), float(penalty), wer)
    return best


# ------------------------------------------------------------------------------------------------------------- writing


def write_choices_jsonl(result: RescoreResult, path: str | os.PathLike) -> None:
    """One line per utterance: {"id", "text", "score", "index"}, score = rescoring score, index into its hyps."""
    lines = [
        json.dumps({"id": u.id, "text": _normalize(u.hyps[i].text), "score": s, "index": i}, ensure_ascii=False)
        for u, i, s in zip(result.utterances, result.chosen, result.scores)
    ]
    write_text_atomic(path, "".join(line + "\n" for line in lines))


def write_choices_kaldi(result: RescoreResult, path: str | os.PathLike) -> None:
    """Kaldi text: `UTT-ID word word ...` per utterance (just the id for an empty hypothesis)."""
    lines = [f"{u.id} {_normalize(u.hyps[i].text)}".rstrip() for u, i in zip(result.utterances, result.chosen)]
    write_text_atomic(path, "".join(line + "\n" for line in lines))


def write_nbest_jsonl(utterances: Sequence[Utterance], path: str | os.PathLike) -> None:
    """The n-best lists in the format `read_nbest_jsonl` reads (optional fields left out when absent)."""
    lines = []
    for utt in utterances:
        hyps = []
        for h in utt.hyps:
            item = {"text": h.text, "am_score": h.am_score}
            if h.lm_score is not None:
                item["lm_score"] = h.lm_score
            hyps.append(item)
        record = {"id": utt.id, "hyps": hyps}
        if utt.ref is not None:
            record["ref"] = utt.ref
        lines.append(json.dumps(record, ensure_ascii=False))
    write_text_atomic(path, "".join(line + "\n" for line in lines))


# ---------------------------------------------------------------------------------------- synthetic n-best for testing


def _corrupt(words: list[str], vocabulary: Sequence[str], rng: random.Random) -> None:
    """Apply one random edit in place, among those that apply: substitute, delete, insert, swap neighbours."""
    ops = ["insert"]
    if words:
        ops.append("delete")
        if len(vocabulary) > 1:
            ops.append("substitute")
    if any(a != b for a, b in zip(words, words[1:])):
        ops.append("swap")
    op = rng.choice(ops)
    if op == "insert":
        words.insert(rng.randrange(len(words) + 1), rng.choice(vocabulary))
    elif op == "delete":
        del words[rng.randrange(len(words))]
    elif op == "substitute":
        i = rng.randrange(len(words))
        words[i] = rng.choice([w for w in vocabulary if w != words[i]])
    else:
        i = rng.choice([i for i in range(len(words) - 1) if words[i] != words[i + 1]])
        words[i], words[i + 1] = words[i + 1], words[i]


def make_corrupted_nbest(
    reference_lines: Sequence[str],
    n: int,
    rng_seed: int,
    *,
    vocabulary: Sequence[str] | None = None,
    max_edits: int = 3,
    edit_cost: float = 1.0,
    noise_std: float = 1.0,
    include_reference: bool = True,
) -> list[Utterance]:
    """Synthetic n-best lists of up to `n` distinct hypotheses per reference line, deterministic for `rng_seed`.

    Stands in for recognizer output: each non-reference hypothesis is the reference after 1..max_edits random edits
    with words from `vocabulary` (default: the words of the references). am_score = -num_edits * edit_cost + N(0,
    noise_std^2), noisy enough that the first pass often prefers a wrong hypothesis, so a good LM has room to help.
    Hypotheses are shuffled (the reference has no fixed position); blank lines are skipped; ids are `utt000000`, ...
    Short sentences may yield fewer than `n` distinct hypotheses.
    """
    if n < 1 or max_edits < 1:
        raise ValueError(f"n and max_edits must be >= 1, got n={n}, max_edits={max_edits}")
    references = [_normalize(line) for line in reference_lines]
    if vocabulary is None:
        vocabulary = sorted({w for ref in references for w in ref.split()})
    vocabulary = list(vocabulary)
    if not vocabulary:
        raise ValueError("the vocabulary for corruptions is empty")
    rng = random.Random(rng_seed)
    utterances = []
    for index, ref in enumerate(references):
        if not ref:
            continue
        texts = {ref: 0} if include_reference else {}  # text -> number of edits
        attempts = 0
        while len(texts) < n and attempts < 20 * n:
            attempts += 1
            words = ref.split()
            num_edits = rng.randint(1, max_edits)
            for _ in range(num_edits):
                _corrupt(words, vocabulary, rng)
            text = " ".join(words)
            if text != ref and text not in texts:
                texts[text] = num_edits
        hyps = [Hypothesis(t, -e * edit_cost + rng.gauss(0.0, noise_std)) for t, e in texts.items()]
        rng.shuffle(hyps)
        utterances.append(Utterance(f"utt{index:06d}", hyps, ref))
    return utterances
