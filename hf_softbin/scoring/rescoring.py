"""N-best rescoring of ASR output with a language model, independent of the model.

The language model is any callable `lm_logprob(texts) -> log-probs`: the natural-log probability of each sentence
scored as `w1 ... wn <eos>` from a fresh state. Score convention throughout: every score is a log-likelihood, higher is
better. The score of a hypothesis after rescoring is

    am_score + lm_weight * nnlm_logprob + first_pass_weight * lm_score + word_insertion_penalty * num_words
             + filler_penalty

where `lm_score` (the first-pass LM score) and `filler_penalty` count only when present. NNLM scores are computed once
per unique text (`score_hypotheses`) and reused by `choose`, `rescore_from_scores` and `tune_weights`: a grid search
costs one LM pass. Inputs: JSON Lines, Kaldi n-best text with a score file, or NeMo's beam-search output.
"""

import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import jiwer

from ..atomic import write_text_atomic
from .textio import finite_number, numbered_lines, read_lines

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
    lm_score: float | None = None  # the first-pass LM log-probability, unweighted
    filler_penalty: float = 0.0  # what the decoder charged for fillers and silences on this path
    first_pass_score: float | None = None  # the decoder's own total score, when it gives one
    lm_text: str | None = None  # the words as the rescoring LM was trained to read them, when they differ from `text`

    @property
    def num_words(self) -> int:
        return len(self.text.split())

    @property
    def scored_text(self) -> str:
        """What the rescoring LM reads."""
        return self.text if self.lm_text is None else self.lm_text


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
class Tuning:
    """How the weights were chosen: given by the caller, or tuned on dev lists."""

    source: str  # "given" or "tuned"
    dev_wer: float | None = None
    dev_utterances: int = 0


@dataclass
class RescoreResult:
    utterances: list[Utterance]
    chosen: list[int]  # index into each utterance's hyps
    scores: list[float]  # rescoring score of the chosen hypothesis
    summary: RescoreSummary
    tuning: Tuning

    def chosen_hypotheses(self) -> list[Hypothesis]:
        return [utt.hyps[i] for utt, i in zip(self.utterances, self.chosen)]


# ------------------------------------------------------------------------------------------------------------- reading


def _parse_jsonl_hyp(item, where: str) -> Hypothesis:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected an object with \"text\" and \"am_score\", got {item!r}")
    for key in ("text", "am_score"):
        if key not in item:
            raise ValueError(f"{where}: missing \"{key}\"")
    if not isinstance(item["text"], str):
        raise ValueError(f"{where}: \"text\" must be a string, got {item['text']!r}")
    am_score = finite_number(item["am_score"], f"{where}: \"am_score\"")
    optional = {}
    for key in ("lm_score", "filler_penalty", "first_pass_score"):
        if item.get(key) is not None:
            optional[key] = finite_number(item[key], f"{where}: \"{key}\"")
    if item.get("lm_text") is not None:
        if not isinstance(item["lm_text"], str):
            raise ValueError(f"{where}: \"lm_text\" must be a string, got {item['lm_text']!r}")
        optional["lm_text"] = item["lm_text"]
    return Hypothesis(item["text"], am_score, **optional)


def read_nbest_jsonl(path: str | os.PathLike) -> list[Utterance]:
    """One utterance a line: {"id", "hyps": [{"text", "am_score", "lm_score"?, "filler_penalty"?,
    "first_pass_score"?, "lm_text"?}, ...], "ref"?}. Other fields are ignored."""
    utterances = []
    seen = {}
    for lineno, line in numbered_lines(path):
        where = f"{path}: line {lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: malformed JSON ({err.msg}: column {err.colno})") from None
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
        parsed = [_parse_jsonl_hyp(item, f"{where}: hypothesis {n}") for n, item in enumerate(hyps, start=1)]
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
    for lineno, line in numbered_lines(text_path):
        where = f"{text_path}: line {lineno}"
        key, *rest = line.split(maxsplit=1)
        text = rest[0] if rest else ""
        if key in texts:
            raise ValueError(f"{where}: duplicate key {key!r} (first on line {texts[key][3]})")
        utt_id, n = _kaldi_key(key, where)
        texts[key] = (utt_id, n, " ".join(text.split()), lineno)

    scores = {}  # key -> (score, lineno)
    for lineno, line in numbered_lines(score_path):
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
        score = finite_number(number, f"{where}: score")
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
        for lineno, line in numbered_lines(ref_path):
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


def read_nemo_nbest(path: str | os.PathLike, beam_width: int, refs: str | os.PathLike | None = None) -> list[Utterance]:
    """NeMo's beam-search output: `hypothesis<TAB>score` lines, `beam_width` consecutive lines per utterance.

    The score (NeMo's beam score, a log-likelihood) becomes the `am_score`. References, optional, come one a line in
    utterance order, as plain text or as a NeMo manifest (JSON lines with a "text" field). Utterances are named
    `utt-0`, `utt-1`, ... in file order (or after the manifest's `audio_filepath`).
    """
    if beam_width < 1:
        raise ValueError(f"the beam width must be >= 1, got {beam_width}")
    rows = []
    for lineno, line in enumerate(read_lines(path), start=1):
        text, separator, score = line.rpartition("\t")
        if not separator:
            raise ValueError(f"{path}: line {lineno}: expected 'hypothesis<TAB>score'")
        try:
            number = float(score)
        except ValueError:
            raise ValueError(f"{path}: line {lineno}: expected a number after the tab, got {score!r}") from None
        rows.append(Hypothesis(" ".join(text.split()), finite_number(number, f"{path}: line {lineno}: score")))
    if not rows or len(rows) % beam_width:
        raise ValueError(f"{path}: {len(rows)} lines is not a whole number of utterances of {beam_width} hypotheses "
                         "(check --beam-width)")
    count = len(rows) // beam_width
    names, texts = _nemo_references(refs, count) if refs is not None else ([None] * count, [None] * count)
    return [Utterance(names[i] or f"utt-{i}", rows[i * beam_width:(i + 1) * beam_width], texts[i])
            for i in range(count)]


def _nemo_references(path: str | os.PathLike, count: int) -> tuple[list[str | None], list[str]]:
    """References in utterance order, and the utterance names a manifest gives (its audio file names)."""
    names, texts = [], []
    for lineno, line in enumerate(read_lines(path), start=1):
        name = None
        if line.lstrip().startswith("{"):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: line {lineno}: malformed manifest line ({err.msg})") from None
            if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
                raise ValueError(f"{path}: line {lineno}: a manifest line needs a \"text\" string")
            line = entry["text"]
            if isinstance(entry.get("audio_filepath"), str):
                name = os.path.splitext(os.path.basename(entry["audio_filepath"]))[0]
        names.append(name)
        texts.append(" ".join(line.split()))
    if len(texts) != count:
        raise ValueError(f"{path}: {len(texts)} references for {count} utterances")
    return names, texts


NBEST_FORMATS = ("jsonl", "kaldi", "nemo")


def read_nbest(path: str, format: str = "jsonl", *, scores: str | None = None, refs: str | None = None,
               costs: bool = False, beam_width: int | None = None) -> list[Utterance]:
    """N-best lists in any of `NBEST_FORMATS`; Kaldi needs its score file, NeMo its beam width."""
    extra = {"--scores": scores, "--costs": costs, "--beam-width": beam_width, "--refs": refs}
    allowed = {"jsonl": (), "kaldi": ("--scores", "--costs", "--refs"), "nemo": ("--beam-width", "--refs")}
    if format not in allowed:
        raise ValueError(f"unknown n-best format {format!r}; expected one of {NBEST_FORMATS}")
    misplaced = [name for name, value in extra.items() if value and name not in allowed[format]]
    if misplaced:
        raise ValueError(f"{', '.join(misplaced)} do(es) not apply to --format {format}")
    if format == "jsonl":
        return read_nbest_jsonl(path)
    if format == "kaldi":
        if scores is None:
            raise ValueError(f"{path}: Kaldi n-best text needs its score file (`UTT-ID-N score` lines): pass --scores "
                             "(and --dev-scores for the dev lists)")
        return read_kaldi_nbest(path, scores, refs, scores_are_costs=costs)
    if beam_width is None:
        raise ValueError(f"{path}: NeMo beam output needs --beam-width (hypotheses per utterance)")
    return read_nemo_nbest(path, beam_width, refs)


# ------------------------------------------------------------------------------------------------------------- scoring


def normalize_words(text: str) -> str:
    return " ".join(text.split())


def score_hypotheses(
    utterances: Sequence[Utterance], lm_logprob: LMLogProb, *, batch_size: int | None = 64
) -> list[list[float]]:
    """NNLM log-prob of every hypothesis, calling `lm_logprob` once per unique (whitespace-normalized) text.

    Unique texts go out sorted by length, so batches pad little.
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 or None (everything at once), got {batch_size}")
    unique = sorted({normalize_words(h.scored_text) for utt in utterances for h in utt.hyps},
                    key=lambda t: (len(t.split()), t))
    logprobs = {}
    step = batch_size or max(len(unique), 1)
    for start in range(0, len(unique), step):
        batch = unique[start:start + step]
        values = list(lm_logprob(batch))
        if len(values) != len(batch):
            raise ValueError(f"lm_logprob returned {len(values)} scores for {len(batch)} texts")
        for text, value in zip(batch, values):
            logprobs[text] = finite_number(float(value), f"lm_logprob of {text!r}")
    return [[logprobs[normalize_words(h.scored_text)] for h in utt.hyps] for utt in utterances]


def _check_scores(utterances: Sequence[Utterance], nnlm_scores: Sequence[Sequence[float]]) -> None:
    if len(nnlm_scores) != len(utterances) or any(len(s) != len(u.hyps) for u, s in zip(utterances, nnlm_scores)):
        raise ValueError("nnlm_scores must hold one score per hypothesis of every utterance (from score_hypotheses)")


def _score(
    hyp: Hypothesis, nnlm_logprob: float, lm_weight: float, first_pass_weight: float, word_insertion_penalty: float
) -> float:
    score = hyp.am_score + lm_weight * nnlm_logprob + word_insertion_penalty * hyp.num_words + hyp.filler_penalty
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
    """What the first pass chose: the highest `first_pass_score` when the decoder gave one, else the highest
    am_score + lm_score (lm_score counted with weight 1 when present)."""
    def first_pass(h: Hypothesis) -> float:
        return h.first_pass_score if h.first_pass_score is not None else h.am_score + (h.lm_score or 0.0)

    return [_argmax([first_pass(h) for h in u.hyps]) for u in utterances]


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


def references(utterances: Sequence[Utterance]) -> list[str] | None:
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
        refs = references(utterances)
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
    tuning: Tuning | None = None,
) -> RescoreResult:
    """Pick the best hypothesis of each utterance on NNLM scores from `score_hypotheses`, and summarize the WERs."""
    for name, value in (("lm weight", lm_weight), ("penalty", word_insertion_penalty),
                        ("first-pass weight", first_pass_weight)):
        finite_number(value, f"the {name}")
    weights = dict(first_pass_weight=first_pass_weight, word_insertion_penalty=word_insertion_penalty)
    chosen = choose(utterances, nnlm_scores, lm_weight, **weights)
    scores = [_score(u.hyps[i], s[i], lm_weight, first_pass_weight, word_insertion_penalty)
              for u, s, i in zip(utterances, nnlm_scores, chosen)]
    table = _ErrorTable(utterances) if references(utterances) is not None else None
    summary = RescoreSummary(
        num_utterances=len(utterances),
        lm_weight=lm_weight,
        penalty=word_insertion_penalty,
        first_pass_weight=first_pass_weight,
        wer_before=table.wer(first_pass_choice(utterances)) if table else None,
        wer_after=table.wer(chosen) if table else None,
        oracle_wer=table.oracle() if table else None,
    )
    return RescoreResult(list(utterances), chosen, scores, summary, tuning or Tuning("given"))


def rescore(
    utterances: Sequence[Utterance],
    lm_logprob: LMLogProb,
    lm_weight: float | None = None,
    *,
    dev: Sequence[Utterance] | None = None,
    first_pass_weight: float = 0.0,
    word_insertion_penalty: float | None = None,
    batch_size: int | None = 64,
) -> RescoreResult:
    """Score every hypothesis with the LM (once per unique text), pick the best of each utterance, summarize WERs.

    The LM weight is `lm_weight` (default 1.0), or tuned on the `dev` lists (with references) over
    `DEFAULT_LM_WEIGHTS`, together with the word insertion penalty over `DEFAULT_PENALTIES` unless it is given.
    `batch_size=None` hands all texts to the LM at once (a `LanguageModel` batches by length itself).
    """
    if not utterances:
        raise ValueError("the n-best lists hold no utterances")
    references(utterances)  # a partial set of references fails here, before the LM pass
    tuning = Tuning("given")
    if dev is not None:
        if lm_weight is not None:
            raise ValueError("give either an LM weight or dev lists to tune it on, not both")
        if not dev:
            raise ValueError("the dev n-best lists hold no utterances")
        if references(dev) is None:
            raise ValueError("tuning needs references in the dev n-best lists (\"ref\" fields, or --dev-refs)")
        dev_scores = score_hypotheses(dev, lm_logprob, batch_size=batch_size)
        penalties = DEFAULT_PENALTIES if word_insertion_penalty is None else (word_insertion_penalty,)
        lm_weight, word_insertion_penalty, dev_wer = tune_weights(dev, dev_scores, penalties=penalties,
                                                                  first_pass_weight=first_pass_weight)
        tuning = Tuning("tuned", dev_wer, len(dev))
    nnlm_scores = score_hypotheses(utterances, lm_logprob, batch_size=batch_size)
    return rescore_from_scores(utterances, nnlm_scores, 1.0 if lm_weight is None else lm_weight,
                               first_pass_weight=first_pass_weight,
                               word_insertion_penalty=word_insertion_penalty or 0.0, tuning=tuning)


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
        json.dumps({"id": u.id, "text": normalize_words(u.hyps[i].text), "score": s, "index": i}, ensure_ascii=False)
        for u, i, s in zip(result.utterances, result.chosen, result.scores)
    ]
    write_text_atomic(path, "".join(line + "\n" for line in lines))


def write_choices_kaldi(result: RescoreResult, path: str | os.PathLike) -> None:
    """Kaldi text: `UTT-ID word word ...` per utterance (just the id for an empty hypothesis)."""
    lines = [f"{u.id} {normalize_words(u.hyps[i].text)}".rstrip() for u, i in zip(result.utterances, result.chosen)]
    write_text_atomic(path, "".join(line + "\n" for line in lines))


def write_nbest_jsonl(utterances: Sequence[Utterance], path: str | os.PathLike) -> None:
    """The n-best lists in the format `read_nbest_jsonl` reads (optional fields left out when absent)."""
    lines = []
    for utt in utterances:
        hyps = []
        for h in utt.hyps:
            item = {"text": h.text, "am_score": h.am_score}
            for key in ("lm_score", "first_pass_score", "lm_text"):
                if getattr(h, key) is not None:
                    item[key] = getattr(h, key)
            if h.filler_penalty:
                item["filler_penalty"] = h.filler_penalty
            hyps.append(item)
        record = {"id": utt.id, "hyps": hyps}
        if utt.ref is not None:
            record["ref"] = utt.ref
        lines.append(json.dumps(record, ensure_ascii=False))
    write_text_atomic(path, "".join(line + "\n" for line in lines))


def write_choices(result: RescoreResult, path: str | None, format: str = "jsonl") -> None:
    """The chosen hypotheses as JSON Lines (or Kaldi text for --format kaldi): to `path` atomically, or to stdout."""
    if path is not None:
        (write_choices_kaldi if format == "kaldi" else write_choices_jsonl)(result, path)
        return
    for utt, index, score in zip(result.utterances, result.chosen, result.scores):
        text = normalize_words(utt.hyps[index].text)
        if format == "kaldi":
            print(f"{utt.id} {text}".rstrip())
        else:
            print(json.dumps({"id": utt.id, "text": text, "score": score, "index": index}, ensure_ascii=False))


def format_rescore_summary(result: RescoreResult) -> str:
    summary, tuning = result.summary, result.tuning
    how = ("given" if tuning.source == "given"
           else f"tuned on {tuning.dev_utterances} dev utterances, dev WER {100 * tuning.dev_wer:.2f}%")
    lines = [
        f"utterances: {summary.num_utterances}, hypotheses: {sum(len(u.hyps) for u in result.utterances)}",
        f"lm weight {summary.lm_weight:g}, word insertion penalty {summary.penalty:g}, "
        f"first-pass weight {summary.first_pass_weight:g} ({how})",
    ]
    if summary.wer_before is None:
        lines.append("WER: no references in the n-best lists")
    else:
        lines += [
            f"WER before rescoring (first pass): {100 * summary.wer_before:.2f}%",
            f"WER after rescoring:               {100 * summary.wer_after:.2f}%",
            f"oracle WER of the lists:           {100 * summary.oracle_wer:.2f}%",
        ]
    return "\n".join(lines)
