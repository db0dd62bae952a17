"""The word-level tokenizer: whitespace-separated words, `<eos>` as the sentence-start token.

The text is already tokenized (PTB, WikiText), so a word is whatever lies between whitespace. The vocabulary is
counted here rather than with `tokenizers.trainers.WordLevelTrainer`: that trainer gives a word equal to a special
token (WikiText's literal `<unk>`) a second id and leaves id 0 unused, while here `<unk>` in the text is id 0.

The causal-LM convention (as Llama's BOS): `tokenizer(text)` puts the start token `<eos>` before the words and
appends nothing, so `generate()` and the `text-generation` pipeline continue the sentence that was given; scoring
appends the closing `<eos>` itself. Every word decodes with the space before it (as GPT-2's tokens carry theirs), so
a decoded continuation joins its prompt as words; a whole decoded sentence starts with one space. Tokenizers saved by
hf-softbin 0.2 and before appended `<eos>` instead and decoded without that space: they load and score as before
(nothing here depends on their post-processor), and `save_tokenizer` writes them in the current convention.
"""

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

UNK_TOKEN = "<unk>"
EOS_TOKEN = "<eos>"
PAD_TOKEN = "<pad>"
# The index in this tuple is the token id. `<eos>` also serves as the start token (bos).
SPECIAL_TOKENS = (UNK_TOKEN, EOS_TOKEN, PAD_TOKEN)
# What tokenizer_config.json records of a word tokenizer besides its class.
TOKENIZER_SETTINGS = {"unk_token": UNK_TOKEN, "eos_token": EOS_TOKEN, "bos_token": EOS_TOKEN, "pad_token": PAD_TOKEN,
                      "model_input_names": ["input_ids", "attention_mask"]}


def train_word_tokenizer(
    texts_or_files: Iterable[str | os.PathLike] | str | os.PathLike,
    *,
    min_count: int = 1,
    max_size: int | None = None,
) -> PreTrainedTokenizerFast:
    """Build the vocabulary from text and return the wrapped tokenizer.

    `texts_or_files` holds lines of text (`str`) and/or text files (`pathlib.Path` or any `os.PathLike`; a plain
    `str` is always text, never a path). Words seen fewer than `min_count` times map to `<unk>`; `max_size` caps the
    vocabulary, special tokens included. Words are ordered most frequent first, ties alphabetically.
    """
    if isinstance(texts_or_files, (str, os.PathLike)):
        texts_or_files = [texts_or_files]
    if isinstance(texts_or_files, (list, tuple)):
        _check_files_exist(texts_or_files)
    counts = Counter()
    for line in _iter_lines(texts_or_files):
        counts.update(line.split())
    return _build_tokenizer(counts, min_count=min_count, max_size=max_size)


def train_word_tokenizer_from_dataset(
    dataset,
    text_column: str,
    *,
    min_count: int = 1,
    max_size: int | None = None,
    batch_size: int = 1000,
) -> PreTrainedTokenizerFast:
    """Like `train_word_tokenizer`, on the `text_column` of a `datasets.Dataset`, read in batches."""
    if text_column not in dataset.column_names:
        raise ValueError(
            f"text column {text_column!r} not in the dataset; available columns: {dataset.column_names}"
        )
    counts = Counter()
    for batch in dataset.iter(batch_size=batch_size):
        for line in batch[text_column]:
            counts.update(line.split())
    return _build_tokenizer(counts, min_count=min_count, max_size=max_size)


def _check_files_exist(items: Iterable) -> None:
    for item in items:
        if isinstance(item, os.PathLike) and not Path(item).is_file():
            raise FileNotFoundError(f"training text file not found: {os.fspath(item)}")


def _iter_lines(items: Iterable[str | os.PathLike]) -> Iterator[str]:
    for item in items:
        if isinstance(item, os.PathLike):
            _check_files_exist([item])
            with open(item, encoding="utf-8") as f:
                yield from f
        elif isinstance(item, str):
            yield item
        else:
            raise TypeError(f"expected a line of text (str) or a file path (os.PathLike), got {type(item).__name__}")


def _build_tokenizer(counts: Counter, *, min_count: int, max_size: int | None) -> PreTrainedTokenizerFast:
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    if max_size is not None and max_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"max_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {max_size}")
    if not counts:
        raise ValueError("the training text contains no words")
    words = sorted(
        (word for word, n in counts.items() if n >= min_count and word not in SPECIAL_TOKENS),
        key=lambda word: (-counts[word], word),
    )
    if max_size is not None:
        words = words[: max_size - len(SPECIAL_TOKENS)]
    if not words:
        raise ValueError(f"no word other than the special tokens occurs at least min_count={min_count} times")
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *words])}

    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    _set_convention(backend)
    return PreTrainedTokenizerFast(tokenizer_object=backend, **TOKENIZER_SETTINGS)


def _set_convention(backend: Tokenizer) -> None:
    """The start token before the words (a pair: before each part), nothing after; a space before every word."""
    backend.post_processor = processors.TemplateProcessing(
        single=f"{EOS_TOKEN} $A",
        pair=f"{EOS_TOKEN} $A {EOS_TOKEN} $B",
        special_tokens=[(EOS_TOKEN, backend.token_to_id(EOS_TOKEN))],
    )
    backend.decoder = decoders.Replace(Regex("^"), " ")


def is_word_tokenizer(tokenizer) -> bool:
    """A tokenizer built by this module (word-level, with its special tokens), whatever convention it was saved in."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return (isinstance(backend, Tokenizer) and isinstance(backend.model, models.WordLevel)
            and all(backend.token_to_id(token) == index for index, token in enumerate(SPECIAL_TOKENS)))


TOKENIZER_FILE = "tokenizer.json"


class WordTokenizer(PreTrainedTokenizerFast):
    """What `AutoTokenizer` loads for a SoftBinLSTM model directory that has no tokenizer_config.json (`import
    hf_softbin` registers it): the special tokens default to this module's, and a directory without tokenizer.json is
    named as such (Transformers would otherwise advise installing sentencepiece). Saved files name Transformers' own
    class, so they load where hf-softbin is not installed."""

    # No __init__ of its own: Transformers then reads tokenizer.json as it is rather than rebuilding a model.

    @classmethod
    def from_pretrained(cls, name_or_path, *args, **kwargs):
        require_tokenizer_file(name_or_path, kwargs.get("subfolder"))
        return super().from_pretrained(name_or_path, *args, **{**TOKENIZER_SETTINGS, **kwargs})


def require_tokenizer_file(name_or_path: str | os.PathLike, subfolder: str | None = None) -> None:
    """A local model directory without tokenizer.json is an error that says so (a Hub id is left to the Hub)."""
    location = os.fspath(name_or_path)
    if os.path.isdir(location) and not os.path.isfile(os.path.join(location, subfolder or "", TOKENIZER_FILE)):
        raise FileNotFoundError(f"{location}: no {TOKENIZER_FILE} in this model directory; save the model's tokenizer "
                                "there (tokenizer.save_pretrained(directory); a training run does it)")


# Keys Transformers records in a loaded tokenizer's init_kwargs that describe the machine it was loaded on, not the
# tokenizer; saved, they would travel to the Hub.
MACHINE_STATE_KEYS = ("is_local", "local_files_only", "cache_dir", "token", "revision", "force_download", "proxies")


def save_tokenizer(tokenizer, directory: str | os.PathLike) -> None:
    """`tokenizer.save_pretrained(directory)` without the machine state of the load it came from; a word-level
    tokenizer saved in an older convention is written in the current one (same vocabulary, same ids)."""
    for key in MACHINE_STATE_KEYS:
        tokenizer.init_kwargs.pop(key, None)
    if is_word_tokenizer(tokenizer):
        _set_convention(tokenizer.backend_tokenizer)
    tokenizer.save_pretrained(directory)
