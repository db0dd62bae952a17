"""N-best rescoring of ASR output with a language model, independent of the model: the combination of scores, word
error rates and the tuning of the weights (the n-best formats are in `nbest_io`).

The language model is any callable `lm_logprob(texts) -> log-probs`: the natural-log probability of each sentence
scored as `w1 ... wn <eos>` from a fresh state. Score convention throughout: every score is a log-likelihood, higher is
better. The score of a hypothesis after rescoring is

    am_score + lm_weight * nnlm_logprob + first_pass_weight * lm_score + word_insertion_penalty * num_words
             + filler_penalty

where `lm_score` (the first-pass LM score) and `filler_penalty` count only when present. NNLM scores are computed once
per unique text (`score_hypotheses`) and reused by `choose`, `rescore_from_scores` and `tune_weights`: a grid search
costs one LM pass.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jiwer

from .nbest_io import Hypothesis, Utterance, normalize_words
from .textio import finite_number

LMLogProb = Callable[[list[str]], Sequence[float]]

# Fine steps for acoustic scores on the scale of LM log-probs, coarse up to 20 for unscaled Kaldi acoustic scores.
DEFAULT_LM_WEIGHTS = (
    0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0, 10.0, 15.0, 20.0
)
DEFAULT_PENALTIES = (-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0)


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


# ------------------------------------------------------------------------------------------------------------- scoring


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
            raise ValueError("tuning needs references in the dev n-best lists (\"ref\" fields, or a reference file)")
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
