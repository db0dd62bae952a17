"""Sentence scoring with a KenLM-style API, corpus scoring for `hf-softbin score`, and `lm_logprob` for rescoring.

    >>> from hf_softbin.scoring import LanguageModel
    >>> lm = LanguageModel.from_pretrained("runs/softbin")
    >>> lm.score("the cat sat", bos=True, eos=True)      # log10 p(the cat sat </s> | <s>)
    -5.07
    >>> lm.perplexity("the cat sat")                      # 10 ** (-score / (words + 1)), as kenlm.Model
    18.5
    >>> list(lm.full_scores("the cat sat"))               # (log10 prob, context length, is OOV) per word, then </s>
    [(-1.9, 2, False), (-1.6, 3, False), (-1.2, 4, False), (-0.4, 5, False)]
    >>> lm.lm_logprob(["the cat sat", "cat the sat"])     # natural logs, for hf_softbin.scoring.rescoring
    [-11.7, -15.2]
    >>> state = lm.begin_sentence_state()                 # word by word, for a decoder that fuses the LM
    >>> logprob, state = lm.score_word(state, "the")      # log10 p(the | <s>), and the state after "the"

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
- `full_scores` gives KenLM's 3-tuples `(log10 prob, ngram length, oov)`. A recurrent model has no n-gram order:
  its "length" is the number of tokens it has read before the word, plus the word itself (with `bos`, the start token
  counts, as `<s>` counts in an n-gram), i.e. how much context the prediction had.
- The state API (`begin_sentence_state`, `null_context_state`, `score_word`) gives the same numbers as `score`: the
  sum of `score_word` over the words and `"</s>"` equals `score(sentence)`.
"""

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .textio import finite_number
from ..models.softbin_lstm.pipeline_text_scoring import (
    DEFAULT_MAX_SEGMENT_LENGTH,
    sentence_ids,
    start_and_eos_ids,
    token_logprobs,
)

LN10 = math.log(10.0)
PROGRESS_MIN_LINES = 200  # fewer sentences get no bar over the sentences (long ones still get one over tokens)


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


@dataclass
class WordState:
    """Where a sentence is, for `LanguageModel.score_word`: the LSTM state after the words read so far and the
    log-probabilities (natural log) of the next word. `context` counts the tokens read (the start token included)."""

    cache: object | None
    next_logprobs: torch.Tensor
    context: int


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

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, device: str | torch.device | None = None,
                        trust_remote_code: bool | None = None, keep_packed: bool = False,
                        **kwargs) -> "LanguageModel":
        """Load the model and the tokenizer saved beside it (a directory or a Hub id).

        `keep_packed=True` keeps a packed checkpoint 1-bit in memory (see `SoftBinLSTMConfig.keep_packed`).
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ..models.softbin_lstm.checkpoint import resolve_file
        from ..tokenization import require_tokenizer_file

        path = os.fspath(path)
        resolve_file(path, "config.json", {})  # a missing directory is named as such, before anything else
        require_tokenizer_file(path)  # also when tokenizer_config.json is there, which AutoTokenizer would follow
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model_kwargs = {"keep_packed": True} if keep_packed else {}
        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code, **model_kwargs)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return cls(model.to(device), tokenizer, **kwargs)

    @property
    def device(self) -> torch.device:
        return self.model.lm_head_bias.device

    # ---- the KenLM-style API ------------------------------------------------------------------------------------

    def score(self, sentence: str, bos: bool = True, eos: bool = True) -> float:
        """log10 probability of the sentence (see the module docstring for `bos` and `eos`)."""
        result = self.score_sentences([sentence], bos=bos)[0]
        return (result.logprob if eos else result.word_logprob) / LN10

    def perplexity(self, sentence: str) -> float:
        """10 ** (-score(sentence) / (words + 1)), the `+ 1` for `</s>`, as `kenlm.Model.perplexity`."""
        result = self.score_sentences([sentence])[0]
        return _finite(_exp(-result.logprob / (result.num_words + 1)), f"perplexity of {sentence!r}")

    def full_scores(self, sentence: str, bos: bool = True, eos: bool = True) -> Iterator[tuple[float, int, bool]]:
        """(log10 probability, context length, is OOV) for each word, then for `</s>` when `eos`."""
        result = self.score_sentences([sentence], bos=bos)[0]
        read_before = 1 if bos else 0
        for position, (logprob, oov) in enumerate(zip(result.logprobs, result.oov)):
            yield logprob / LN10, read_before + position + 1, oov
        if eos:
            yield result.eos_logprob / LN10, read_before + result.num_words + 1, False

    # ---- word by word --------------------------------------------------------------------------------------------

    def begin_sentence_state(self) -> WordState:
        """The state after the start token (KenLM's `BeginSentenceWrite`)."""
        return self._advance(None, self.start_id, context=0)

    def null_context_state(self) -> WordState:
        """No context at all (KenLM's `NullContextWrite`): the zero LSTM state, nothing read."""
        logits = self.model.null_context_logits().float()
        return WordState(None, logits.log_softmax(-1), 0)

    def score_word(self, state: WordState, word: str) -> tuple[float, WordState]:
        """log10 p(word | state) and the state after reading it; `"</s>"` scores the end of the sentence."""
        token_id = self.eos_id if word == "</s>" else self._word_id(word)
        logprob = float(state.next_logprobs[token_id]) / LN10
        return logprob, self._advance(state.cache, token_id, state.context)

    def _word_id(self, word: str) -> int:
        ids = self.tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"score_word takes one word, got {word!r} ({len(ids)} tokens)")
        return ids[0]

    @torch.no_grad()
    def _advance(self, cache, token_id: int, context: int) -> WordState:
        output = self.model(input_ids=torch.tensor([[token_id]], device=self.device), cache=cache, use_cache=True)
        return WordState(output.cache, output.logits[0, -1].float().log_softmax(-1), context + 1)

    # ---- batch scoring -------------------------------------------------------------------------------------------

    def lm_logprob(self, texts: Sequence[str], *, progress: bool = False) -> list[float]:
        """Natural-log probability of each text as `w1 ... wn <eos>` from a fresh state: `rescoring.LMLogProb`."""
        return [result.logprob for result in self.score_sentences(texts, progress=progress)]

    __call__ = lm_logprob

    def score_sentences(self, sentences: Sequence[str], *, bos: bool = True, progress: bool = False) -> list[SentenceScore]:
        """Score every sentence on its own (fresh state), in length-sorted padded batches; results in input order.

        `progress` shows a bar over the sentences, and one over the tokens of a very long sentence.
        """
        encoded = []
        for sentence in sentences:
            ids = sentence_ids(self.tokenizer, sentence, self.start_id, self.eos_id)
            encoded.append(ids if bos else ids[1:])
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        results: list[SentenceScore | None] = [None] * len(encoded)
        bar = tqdm(total=len(encoded), unit="line", leave=False,
                   disable=True if not progress or len(encoded) < PROGRESS_MIN_LINES else None)
        try:
            for batch in self._batches(order, encoded):
                rows = [encoded[i] for i in batch]
                for index, logprobs in zip(batch, self._score_batch(rows, bos, progress)):
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
    def _score_batch(self, rows: list[list[int]], bos: bool, progress: bool) -> list[list[float]]:
        """ln p of every scored token of each row: all but the first with `bos`, all of them without."""
        longest = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), longest), self.eos_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for i, row in enumerate(rows):
            input_ids[i, :len(row)] = torch.tensor(row)
            attention_mask[i, :len(row)] = 1
        device = self.device
        _, logprobs, _ = token_logprobs(self.model, input_ids.to(device), attention_mask.to(device),
                                        self.max_segment_length, progress)
        logprobs = logprobs.cpu()
        if not bos:
            logprobs[:, 0] = self.null_context_state().next_logprobs.cpu()[input_ids[:, 0]]
        start = 1 if bos else 0
        return [logprobs[i, start:len(row)].tolist() for i, row in enumerate(rows)]


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


def score_lines(lm: LanguageModel, lines: Sequence[str], *, skip_empty: bool = False, progress: bool = False,
                source: str = "input") -> tuple[list[tuple[int, SentenceScore]], CorpusScore]:
    """Score each line on its own: `(line number, score)` per scored line, and the corpus totals.

    An empty (or all-whitespace) line is scored as `<eos>` alone, or left out with `skip_empty`. A score that is not
    finite is an error naming its line, never a result.
    """
    numbered = [(n, line) for n, line in enumerate(lines, start=1) if not (skip_empty and not line.strip())]
    results = lm.score_sentences([line for _, line in numbered], progress=progress)
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


def _exp(value: float) -> float:
    try:
        return math.exp(value)
    except OverflowError:
        return float("inf")


def _finite(value: float, what: str) -> float:
    return finite_number(value, f"{what} (refusing to print it)")
