"""Sentence scoring with a KenLM-style API, corpus scoring for `hf-softbin score`, and `lm_logprob` for rescoring.

    >>> from hf_softbin.scoring import LanguageModel
    >>> lm = LanguageModel.from_pretrained("runs/softbin")
    >>> lm.score("the cat sat", bos=True, eos=True)      # log10 p(the cat sat </s> | <s>)
    -5.07
    >>> lm.perplexity("the cat sat")                      # 10 ** (-score / (words + 1)), as kenlm.Model
    18.5
    >>> list(lm.full_scores("the cat sat"))               # (log10 prob, is OOV) per word, then the sentence end
    [(-1.9, False), (-1.6, False), (-1.2, False), (-0.4, False)]
    >>> lm.lm_logprob(["the cat sat", "cat the sat"])     # natural logs, for hf_softbin.rescoring
    [-11.7, -15.2]

Mapping to KenLM. `<eos>` plays both `<s>` and `</s>`: the model was trained on a stream of lines, each ending in
`<eos>`, so a sentence start is "right after an `<eos>`".

- `bos=True` (the default): the sentence is scored from a fresh (zero) LSTM state after reading `<eos>`, exactly the
  `text-scoring` pipeline's convention and the training one.
- `bos=False`: no start token is read. The first word is predicted from the untouched zero state, i.e. the output
  layer applied to a zero hidden vector (what the network says with no context at all); the rest follows from the
  state after reading the first word. Training never asks the model for that zero-context prediction, so it is a
  rough one: use `bos=False` only where KenLM's null context is really wanted.
- `eos=True` scores `</s>` (the `<eos>` token) after the last word; `eos=False` does not.
- Scores are log10, like KenLM's: `log10 p = ln p / ln 10`. The pipeline's `logprob` (natural log) for a sentence
  equals `score(sentence) * ln(10)`, its `num_tokens` is `len(sentence.split()) + 1` for the word-level tokenizer,
  and its `perplexity` equals `perplexity(sentence)`.
- A word outside the vocabulary is read and scored as `<unk>` (the probability of the whole unknown-word class),
  and `full_scores` flags it as OOV; KenLM also gives OOVs the `<unk>` probability.
"""

import json
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .pipelines import DEFAULT_MAX_SEGMENT_LENGTH, sentence_ids, start_and_eos_ids, token_logprobs

LN10 = math.log(10.0)
PROGRESS_MIN_LINES = 200  # files with fewer lines get no progress bar


@dataclass
class SentenceScore:
    """The scores of one sentence: natural-log probabilities of `w1 ... wn <eos>`, the last one for `<eos>`."""

    token_ids: list[int]  # the n word ids, then the <eos> id
    logprobs: list[float]  # ln p of each of them, in the same order
    unk_id: int | None

    @property
    def num_words(self) -> int:
        return len(self.token_ids) - 1

    @property
    def oov(self) -> list[bool]:
        return [self.unk_id is not None and i == self.unk_id for i in self.token_ids[:-1]]

    @property
    def num_oov(self) -> int:
        return sum(self.oov)

    @property
    def eos_logprob(self) -> float:
        return self.logprobs[-1]

    @property
    def word_logprob(self) -> float:
        """ln p of the words alone (the `<eos>` term left out)."""
        return math.fsum(self.logprobs[:-1])

    @property
    def logprob(self) -> float:
        """ln p of the words and the `<eos>` after them."""
        return math.fsum(self.logprobs)


class LanguageModel:
    """A causal LM and its tokenizer, scoring sentences the KenLM way (log10) or the rescoring way (natural log).

    Sentences are scored in batches of similar length (at most `batch_size` sentences and about `max_tokens` padded
    tokens a batch); a sentence longer than `max_segment_length` tokens runs in segments with its state carried.
    """

    def __init__(self, model, tokenizer, *, batch_size: int = 64, max_tokens: int = 8192,
                 max_segment_length: int = DEFAULT_MAX_SEGMENT_LENGTH):
        if batch_size < 1 or max_tokens < 1 or max_segment_length < 1:
            raise ValueError("batch_size, max_tokens and max_segment_length must be >= 1")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.max_segment_length = max_segment_length
        self.start_id, self.eos_id = start_and_eos_ids(model, tokenizer)
        self.unk_id = tokenizer.unk_token_id
        vocab_size = model.config.vocab_size
        if len(tokenizer) > vocab_size:
            raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the model only {vocab_size}: they do not belong together")
        self._zero_state = None

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, device: str | torch.device | None = None,
                        trust_remote_code: bool | None = None, **kwargs) -> "LanguageModel":
        """Load the model and the tokenizer saved beside it (a directory or a Hub id)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from . import SoftBinLSTMConfig  # noqa: F401  (registers the model type with the Auto classes)

        path = os.fspath(path)
        if os.path.isdir(path) and not any(
            os.path.exists(os.path.join(path, name)) for name in ("tokenizer.json", "tokenizer_config.json")
        ):
            raise FileNotFoundError(f"{path}: no tokenizer files (tokenizer.json) beside the model; save the tokenizer there too")
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return cls(model.to(device), tokenizer, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters(), torch.empty(0)).device

    # ---- the KenLM-style API ------------------------------------------------------------------------------------

    def score(self, sentence: str, bos: bool = True, eos: bool = True) -> float:
        """log10 probability of the sentence (see the module docstring for `bos` and `eos`)."""
        result = self.score_sentences([sentence], bos=bos)[0]
        return (result.logprob if eos else result.word_logprob) / LN10

    def perplexity(self, sentence: str) -> float:
        """10 ** (-score(sentence) / (words + 1)), the `+ 1` for `</s>`, as `kenlm.Model.perplexity`."""
        result = self.score_sentences([sentence])[0]
        return _finite(_exp(-result.logprob / (result.num_words + 1)), f"perplexity of {sentence!r}")

    def full_scores(self, sentence: str, bos: bool = True, eos: bool = True) -> Iterator[tuple[float, bool]]:
        """(log10 probability, is OOV) for each word, then for `</s>` when `eos`."""
        result = self.score_sentences([sentence], bos=bos)[0]
        for logprob, oov in zip(result.logprobs, result.oov):
            yield logprob / LN10, oov
        if eos:
            yield result.eos_logprob / LN10, False

    # ---- batch scoring -------------------------------------------------------------------------------------------

    def lm_logprob(self, texts: Sequence[str], *, progress: bool = False) -> list[float]:
        """Natural-log probability of each text as `w1 ... wn <eos>` from a fresh state: `rescoring.LMLogProb`."""
        return [result.logprob for result in self.score_sentences(texts, progress=progress)]

    __call__ = lm_logprob

    def score_sentences(self, sentences: Sequence[str], *, bos: bool = True, progress: bool = False) -> list[SentenceScore]:
        """Score every sentence on its own (fresh state), in length-sorted padded batches; results in input order."""
        encoded = []
        for sentence in sentences:
            ids = sentence_ids(self.tokenizer, sentence, self.start_id, self.eos_id)
            encoded.append(ids if bos else ids[1:])
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        results: list[SentenceScore | None] = [None] * len(encoded)
        bar = tqdm(total=len(encoded), unit="line", disable=None if progress else True, leave=False)
        try:
            for batch in self._batches(order, encoded):
                for index, logprobs in zip(batch, self._score_batch([encoded[i] for i in batch], bos)):
                    ids = encoded[index][1:] if bos else encoded[index]
                    results[index] = SentenceScore(ids, logprobs, self.unk_id)
                bar.update(len(batch))
        finally:
            bar.close()
        return results

    def _batches(self, order: list[int], encoded: list[list[int]]) -> Iterator[list[int]]:
        batch = []
        for index in order:
            longest = len(encoded[index])  # `order` is sorted by length: the newcomer is the longest
            if batch and (len(batch) >= self.batch_size or (len(batch) + 1) * longest > self.max_tokens):
                yield batch
                batch = []
            batch.append(index)
        if batch:
            yield batch

    @torch.no_grad()
    def _score_batch(self, rows: list[list[int]], bos: bool) -> list[list[float]]:
        """ln p of every scored token of each row: all but the first with `bos`, all of them without."""
        longest = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), longest), self.eos_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for i, row in enumerate(rows):
            input_ids[i, :len(row)] = torch.tensor(row)
            attention_mask[i, :len(row)] = 1
        device = self.device
        _, logprobs, _ = token_logprobs(self.model, input_ids.to(device), attention_mask.to(device),
                                        self.max_segment_length)
        logprobs = logprobs.cpu()
        if not bos:
            first = self.zero_state_logprobs().cpu()[input_ids[:, 0]]
            logprobs[:, 0] = first
        start = 1 if bos else 0
        return [logprobs[i, start:len(row)].tolist() for i, row in enumerate(rows)]

    @torch.no_grad()
    def zero_state_logprobs(self) -> torch.Tensor:
        """ln p(w) with no context at all: the output layer on a zero LSTM output (used for `bos=False`)."""
        if self._zero_state is None:
            model = self.model
            base = getattr(model, "model", None)
            if base is None or not hasattr(model, "logits"):
                raise NotImplementedError(f"bos=False needs a SoftBinLSTMForCausalLM, got {type(model).__name__}")
            hidden = torch.zeros(1, 1, model.config.hidden_size, device=self.device)
            if getattr(base, "projection", None) is not None:
                hidden = F.linear(hidden, base.projection.effective(), base._stored_float(base.projection_bias, "output"))
            self._zero_state = model.logits(hidden).float().log_softmax(-1)[0, 0]
        return self._zero_state


# ------------------------------------------------------------------------------------------------------ whole files


@dataclass
class CorpusScore:
    """Totals over the scored lines; natural logs inside, log10 and perplexities as properties."""

    lines: int = 0
    words: int = 0
    oovs: int = 0
    logprob: float = 0.0  # words and <eos>
    eos_logprob: float = 0.0  # the <eos> terms alone

    def add(self, result: SentenceScore) -> None:
        self.lines += 1
        self.words += result.num_words
        self.oovs += result.num_oov
        self.logprob += result.logprob
        self.eos_logprob += result.eos_logprob

    @property
    def log10prob(self) -> float:
        return self.logprob / LN10

    @property
    def tokens(self) -> int:
        return self.words + self.lines

    @property
    def perplexity(self) -> float:
        """exp(-ln p / (words + lines)): every word and every line's `<eos>` scored and counted."""
        return _exp(-self.logprob / self.tokens) if self.tokens else float("nan")

    @property
    def perplexity_without_eos(self) -> float:
        """exp(-ln p(words) / words): the `<eos>` terms neither scored nor counted."""
        return _exp(-(self.logprob - self.eos_logprob) / self.words) if self.words else float("nan")


def read_lines(path: str | os.PathLike) -> list[str]:
    """The lines of a UTF-8 text file, without line ends; a line that is not UTF-8 is an error naming it."""
    if os.fspath(path) == "-":
        return _decode_lines(sys.stdin.buffer, "stdin")
    with open(path, "rb") as handle:
        return _decode_lines(handle, os.fspath(path))


def _decode_lines(handle, path: str) -> list[str]:
    lines = []
    for lineno, raw in enumerate(handle, start=1):
        try:
            lines.append(raw.decode("utf-8").rstrip("\r\n"))
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: line {lineno}: not valid UTF-8 ({err.reason} at byte {err.start})") from None
    return lines


def score_lines(lm: LanguageModel, lines: Sequence[str], *, skip_empty: bool = False, progress: bool = False,
                source: str = "input") -> tuple[list[tuple[int, SentenceScore]], CorpusScore]:
    """Score each line on its own: `(line number, score)` per scored line, and the corpus totals.

    An empty (or all-whitespace) line is scored as `<eos>` alone, or left out with `skip_empty`. A score that is not
    finite is an error naming its line, never a result.
    """
    numbered = [(n, line) for n, line in enumerate(lines, start=1) if not (skip_empty and not line.strip())]
    show = progress and len(numbered) >= PROGRESS_MIN_LINES
    results = lm.score_sentences([line for _, line in numbered], progress=show)
    corpus = CorpusScore()
    scored = []
    for (lineno, _), result in zip(numbered, results):
        if not all(math.isfinite(value) for value in result.logprobs):
            raise ValueError(f"{source}: line {lineno}: the model gave a non-finite log-probability; is the checkpoint damaged?")
        corpus.add(result)
        scored.append((lineno, result))
    return scored, corpus


def format_line(result: SentenceScore) -> str:
    """TSV: log10 probability, scored tokens (words + `<eos>`), OOVs, perplexity."""
    tokens = result.num_words + 1
    log10prob = result.logprob / LN10
    perplexity = _finite(_exp(-result.logprob / tokens), "a sentence perplexity")
    return f"{log10prob:.4f}\t{tokens}\t{result.num_oov}\t{perplexity:.4f}"


def format_corpus(corpus: CorpusScore) -> str:
    """The corpus summary, every line starting with `#` so that TSV readers can skip it."""
    if corpus.lines == 0:
        return "# no lines scored"
    lines = [
        f"# lines: {corpus.lines}, words: {corpus.words}, OOVs: {corpus.oovs}, scored tokens (words + <eos>): {corpus.tokens}",
        f"# total log10 probability: {_finite(corpus.log10prob, 'the total log10 probability'):.4f}",
        f"# perplexity (with <eos>): {_finite(corpus.perplexity, 'the corpus perplexity'):.4f}",
    ]
    if corpus.words:
        lines.append(f"# perplexity (without <eos>): {_finite(corpus.perplexity_without_eos, 'the perplexity without <eos>'):.4f}")
    else:
        lines.append("# perplexity (without <eos>): undefined, no words")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ n-best rescoring


@dataclass
class Tuning:
    """How the weights were chosen: given on the command line, or tuned on dev lists."""

    source: str  # "given" or "tuned"
    dev_wer: float | None = None
    dev_utterances: int = 0


def read_nbest(path: str, format: str = "jsonl", *, scores: str | None = None, refs: str | None = None,
               costs: bool = False):
    """N-best lists in either format (see hf_softbin.rescoring); the Kaldi format needs its score file."""
    from . import rescoring

    if format == "jsonl":
        extra = [name for name, value in (("--scores", scores), ("--refs", refs), ("--costs", costs)) if value]
        if extra:
            raise ValueError(f"{', '.join(extra)} apply to --format kaldi; JSON Lines carry scores and refs inline")
        return rescoring.read_nbest_jsonl(path)
    if format == "kaldi":
        if scores is None:
            raise ValueError(f"{path}: Kaldi n-best text needs its score file (`UTT-ID-N score` lines): pass --scores "
                             "(and --dev-scores for the dev lists)")
        return rescoring.read_kaldi_nbest(path, scores, refs, scores_are_costs=costs)
    raise ValueError(f"unknown n-best format {format!r}; expected 'jsonl' or 'kaldi'")


def rescore_nbest(lm: LanguageModel, utterances, *, lm_weight: float | None = None, dev=None,
                  penalty: float | None = None, first_pass_weight: float = 0.0, progress: bool = False):
    """Rescore `utterances` with the LM: with `lm_weight` (default 1.0), or with weights tuned on `dev` lists.

    When tuning, the LM weight is searched on `rescoring.DEFAULT_LM_WEIGHTS` and the penalty on
    `rescoring.DEFAULT_PENALTIES` unless `penalty` fixes it. Returns `(RescoreResult, Tuning)`.
    """
    from . import rescoring

    if not utterances:
        raise ValueError("the n-best file holds no utterances")
    score = lambda texts: lm.lm_logprob(texts, progress=progress)  # noqa: E731
    everything = 1 << 30  # one call: the LanguageModel batches by length itself
    if dev is not None:
        if lm_weight is not None:
            raise ValueError("give either an LM weight or dev lists to tune it on, not both")
        if not dev:
            raise ValueError("the dev n-best file holds no utterances")
        if rescoring._references(dev) is None:
            raise ValueError("tuning needs references in the dev n-best lists (\"ref\" fields, or --dev-refs for Kaldi)")
        dev_scores = rescoring.score_hypotheses(dev, score, batch_size=everything)
        penalties = (penalty,) if penalty is not None else rescoring.DEFAULT_PENALTIES
        lm_weight, penalty, dev_wer = rescoring.tune_weights(dev, dev_scores, penalties=penalties,
                                                             first_pass_weight=first_pass_weight)
        tuning = Tuning("tuned", dev_wer, len(dev))
    else:
        lm_weight = 1.0 if lm_weight is None else lm_weight
        penalty = 0.0 if penalty is None else penalty
        tuning = Tuning("given")
    for name, value in (("lm weight", lm_weight), ("penalty", penalty), ("first-pass weight", first_pass_weight)):
        _finite(value, f"the {name}")
    rescoring._references(utterances)  # a partial set of references fails before the LM pass
    scores = rescoring.score_hypotheses(utterances, score, batch_size=everything)
    result = rescoring.rescore_from_scores(utterances, scores, lm_weight, first_pass_weight=first_pass_weight,
                                           word_insertion_penalty=penalty)
    return result, tuning


def format_rescore_summary(result, tuning: Tuning) -> str:
    summary = result.summary
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


def write_choices(result, path: str | None, format: str = "jsonl") -> None:
    """The chosen hypotheses: to `path` (written atomically), or to stdout when `path` is None."""
    from . import rescoring

    if path is not None:
        (rescoring.write_choices_jsonl if format == "jsonl" else rescoring.write_choices_kaldi)(result, path)
        return
    for utt, index, score in zip(result.utterances, result.chosen, result.scores):
        text = " ".join(utt.hyps[index].text.split())
        if format == "jsonl":
            print(json.dumps({"id": utt.id, "text": text, "score": score, "index": index}, ensure_ascii=False))
        else:
            print(f"{utt.id} {text}".rstrip())


def _exp(value: float) -> float:
    try:
        return math.exp(value)
    except OverflowError:
        return float("inf")


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{what} is not finite ({value}); refusing to print it")
    return value
