"""Text datasets for language modeling: loading, tokenizing, and cutting the token stream into batches.

A split is one stream of tokens: every line's words followed by `<eos>`, with one `<eos>` in front so the
first word is predicted too (the model reads `<eos>` as its start token). Lines that are empty after stripping
whitespace are skipped: raw WikiText separates paragraphs with blank lines, which carry no words. The stream is built
here from the words alone, so it is the same whatever special tokens the tokenizer itself adds (tokenizers of every
hf-softbin version give the same stream).
"""

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import datasets
import pyarrow.compute as pc
import torch

from ..tokenization import EOS_TOKEN, PAD_TOKEN, SPECIAL_TOKENS

EOS_ID = SPECIAL_TOKENS.index(EOS_TOKEN)
PAD_ID = SPECIAL_TOKENS.index(PAD_TOKEN)
IGNORE_INDEX = -100  # the target that torch.nn.functional.cross_entropy skips by default


def load_text_splits(
    *,
    name: str | None = None,
    config: str | None = None,
    train_file: str | os.PathLike | None = None,
    validation_file: str | os.PathLike | None = None,
    test_file: str | os.PathLike | None = None,
    text_column: str = "text",
    splits: Sequence[str] | Mapping[str, str] = ("train", "validation", "test"),
    cache_dir: str | None = None,
) -> datasets.DatasetDict:
    """Load text splits from the Hub (`name`, `config`) or from local text files (one example per line).

    `splits` names the splits to return from a Hub dataset; a mapping renames them, from the name returned to the
    dataset's own (e.g. `{"validation": "valid"}`). With local files, the splits are those given a file.
    """
    if name is not None and any(f is not None for f in (train_file, validation_file, test_file)):
        raise ValueError("give either a dataset name or local files, not both")
    if name is not None:
        split_map = dict(splits) if isinstance(splits, Mapping) else {s: s for s in splits}
        loaded = datasets.load_dataset(name, config, cache_dir=cache_dir)
        missing = [source for source in split_map.values() if source not in loaded]
        if missing:
            raise ValueError(f"dataset {name!r} has no split {missing}; available splits: {list(loaded)}")
        result = datasets.DatasetDict({split: loaded[source] for split, source in split_map.items()})
    else:
        files = {
            split: path
            for split, path in (("train", train_file), ("validation", validation_file), ("test", test_file))
            if path is not None
        }
        if not files:
            raise ValueError("give a dataset name or at least one of train_file, validation_file, test_file")
        for split, path in files.items():
            if not Path(path).is_file():
                raise FileNotFoundError(f"{split} file not found: {os.fspath(path)}")
            if Path(path).stat().st_size == 0:
                raise ValueError(f"split {split!r} contains no text: {os.fspath(path)} is empty")
        if text_column != "text":
            raise ValueError(f"text column {text_column!r} not in local text files; available columns: ['text']")
        data_files = {split: os.fspath(path) for split, path in files.items()}
        result = datasets.load_dataset("text", data_files=data_files, cache_dir=cache_dir)
    for split, dataset in result.items():
        _check_text_column(dataset, text_column, split)
        if not any(line.strip() for line in dataset[text_column]):
            raise ValueError(f"split {split!r} contains no text")
    return result


def tokenize_splits(
    dataset_dict: datasets.DatasetDict,
    tokenizer,
    text_column: str,
    num_proc: int | None = None,
) -> datasets.DatasetDict:
    """Tokenize every non-blank line to `input_ids` (its words then `<eos>`); the other columns are dropped.

    Uses `Dataset.map`, so the result is cached by the datasets library's fingerprinting.
    """
    for split, dataset in dataset_dict.items():
        _check_text_column(dataset, text_column, split)
    eos_id = tokenizer.eos_token_id

    def tokenize(batch):
        lines = [line for line in batch[text_column] if line.strip()]
        words = tokenizer(lines, add_special_tokens=False)["input_ids"] if lines else []
        return {"input_ids": [ids + [eos_id] for ids in words]}

    return datasets.DatasetDict(
        {
            split: dataset.map(
                tokenize,
                batched=True,
                remove_columns=dataset.column_names,
                num_proc=num_proc,
                desc=f"tokenizing {split}",
            )
            for split, dataset in dataset_dict.items()
        }
    )


def token_stream(tokenized_split: datasets.Dataset, eos_token_id: int = EOS_ID) -> torch.Tensor:
    """All lines' ids in order as one 1-D LongTensor, after a leading `<eos>`: `[eos, w.., eos, w.., eos]`."""
    table = tokenized_split.with_format("arrow")[:]  # a slice applies any indices mapping (select, shuffle)
    ids = torch.tensor(pc.list_flatten(table["input_ids"]).to_numpy(zero_copy_only=False), dtype=torch.long)
    return torch.cat([torch.tensor([eos_token_id], dtype=torch.long), ids])


def oov_rate(stream: torch.Tensor, unk_id: int | None) -> float:
    """The share of a token stream that is `<unk>` (the leading start token not counted)."""
    if unk_id is None or len(stream) < 2:
        return 0.0
    return float((stream[1:] == unk_id).float().mean())


def batchify(stream: torch.Tensor, batch_size: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """Cut a training stream into `batch_size` parallel rows, shape `(batch_size, L)`.

    The stream is first split into `world_size` equal contiguous shares (the short tail is dropped) and this
    process keeps share `rank`; the share is then cut into `batch_size` contiguous rows, dropping the remainder.
    All processes get the same `L`, hence the same number of BPTT steps.
    """
    _check_layout(batch_size, rank, world_size)
    share = len(stream) // world_size
    length = share // batch_size
    if length < 2:
        raise ValueError(
            f"a stream of {len(stream)} tokens is too short for batch_size={batch_size} x world_size={world_size}"
        )
    start = rank * share
    return stream[start : start + batch_size * length].view(batch_size, length)


def get_batch(rows: torch.Tensor, start: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The BPTT segment of `(batch, L)` rows that starts at column `start`: inputs of at most `bptt` steps and their
    targets, the inputs shifted by one. A pass over the rows takes the segments starting at `range(0, L - 1, bptt)`."""
    if bptt < 1:
        raise ValueError(f"bptt must be >= 1, got {bptt}")
    length = min(bptt, rows.shape[1] - 1 - start)
    return rows[:, start : start + length], rows[:, start + 1 : start + 1 + length]


def eval_streams(
    stream: torch.Tensor,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    pad_token_id: int = PAD_ID,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut an evaluation stream into rows of `(inputs, targets)` such that every target is predicted once.

    Targets are `stream[1:]`, inputs `stream[:-1]`; both are cut into contiguous rows of length
    `L = ceil((N - 1) / batch_size)` (at most `batch_size` rows), the last row padded with `pad_token_id` /
    -100 (count only targets != -100). Process `rank` keeps rows `rank::world_size`, so the rows of all processes
    together are exactly the rows of one process; with more processes than rows some get `(0, L)` tensors.
    The model starts each row from a fresh state, so the first tokens of a row see less context than in one
    continuous stream.
    """
    _check_layout(batch_size, rank, world_size)
    num_targets = len(stream) - 1
    if num_targets < 1:
        raise ValueError(f"an evaluation stream needs at least 2 tokens, got {len(stream)}")
    length = math.ceil(num_targets / batch_size)
    rows = math.ceil(num_targets / length)
    padding = rows * length - num_targets
    inputs = torch.cat([stream[:-1], stream.new_full((padding,), pad_token_id)]).view(rows, length)
    targets = torch.cat([stream[1:], stream.new_full((padding,), IGNORE_INDEX)]).view(rows, length)
    return inputs[rank::world_size], targets[rank::world_size]


def _check_layout(batch_size: int, rank: int, world_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")


def _check_text_column(dataset: datasets.Dataset, text_column: str, split: str) -> None:
    if text_column not in dataset.column_names:
        raise ValueError(
            f"text column {text_column!r} not in split {split!r}; available columns: {dataset.column_names}"
        )
