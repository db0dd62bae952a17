import hashlib

import datasets
import pytest
import torch
from tokenizers import processors

from hf_softbin.training.data import (
    IGNORE_INDEX,
    batchify,
    eval_streams,
    get_batch,
    load_text_splits,
    token_stream,
    tokenize_splits,
)
from hf_softbin.tokenization import SPECIAL_TOKENS, train_word_tokenizer

from conftest import WT2_MINI

# What tokenizers saved by hf-softbin 0.2 and before did: append <eos> (id 1) to the words.
OLD_POST_PROCESSOR = processors.TemplateProcessing(single="$A <eos>", pair="$A <eos> $B <eos>",
                                                   special_tokens=[("<eos>", 1)])


@pytest.fixture
def text_files(tmp_path):
    files = {
        "train": "a b c\n\n   \nb c <unk>\n",  # blank lines are skipped
        "validation": "a z\n",
        "test": "c c\nb\n",
    }
    for split, text in files.items():
        (tmp_path / f"{split}.txt").write_text(text)
    return {split: tmp_path / f"{split}.txt" for split in files}


def load_files(text_files, tmp_path, **kwargs):
    return load_text_splits(
        train_file=text_files["train"],
        validation_file=text_files["validation"],
        test_file=text_files["test"],
        cache_dir=str(tmp_path / "cache"),
        **kwargs,
    )


@pytest.mark.parametrize("convention", ["current", "0.2"])
def test_load_tokenize_and_stream(text_files, tmp_path, convention):
    """The stream is `[eos, w.., eos, w.., eos]` with a tokenizer of today (start token before the words) and with
    one saved by hf-softbin 0.2 (`<eos>` appended): a student distilled from an old teacher sees the same stream."""
    splits = load_files(text_files, tmp_path)
    assert list(splits) == ["train", "validation", "test"]
    tok = train_word_tokenizer([text_files["train"]])
    if convention == "0.2":
        tok.backend_tokenizer.post_processor = OLD_POST_PROCESSOR
        assert tok("a")["input_ids"] == [tok.convert_tokens_to_ids("a"), 1]
    tokenized = tokenize_splits(splits, tok, "text")
    a, b, c, z = (tok.convert_tokens_to_ids(w) for w in "abcz")
    assert z == 0
    assert tokenized["train"]["input_ids"] == [[a, b, c, 1], [b, c, 0, 1]]
    assert token_stream(tokenized["train"]).tolist() == [1, a, b, c, 1, b, c, 0, 1]
    # a stream holds one token per word and per line, plus the leading <eos>
    assert len(token_stream(tokenized["test"])) == 3 + 2 + 1
    assert token_stream(tokenized["test"].select([1, 0])).tolist() == [1, b, 1, c, c, 1]


def test_hub_dataset_split_mapping_and_column(monkeypatch):
    hub = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"sentence": ["a b", "c"]}),
            "valid": datasets.Dataset.from_dict({"sentence": ["a"]}),
        }
    )
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kw: calls.append(args) or hub)
    splits = load_text_splits(
        name="some/corpus", config="cfg", text_column="sentence", splits={"train": "train", "validation": "valid"}
    )
    assert calls == [("some/corpus", "cfg")]
    assert list(splits) == ["train", "validation"]
    assert splits["validation"]["sentence"] == ["a"]
    with pytest.raises(ValueError, match=r"'test'.*\['train', 'valid'\]"):
        load_text_splits(name="some/corpus", text_column="sentence")
    with pytest.raises(ValueError, match=r"'text'.*\['sentence'\]"):
        load_text_splits(name="some/corpus", splits=["train"])


def test_bad_input_raises_before_loading(text_files, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        load_text_splits(train_file=text_files["train"], test_file=tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="dataset name or at least one"):
        load_text_splits()
    with pytest.raises(ValueError, match="not both"):
        load_text_splits(name="x", train_file=text_files["train"])
    with pytest.raises(ValueError, match=r"'sentence'.*\['text'\]"):
        load_files(text_files, tmp_path, text_column="sentence")
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(ValueError, match="'validation' contains no text"):
        load_text_splits(
            train_file=text_files["train"], validation_file=tmp_path / "blank.txt", cache_dir=str(tmp_path / "c")
        )
    (tmp_path / "empty.txt").write_bytes(b"")  # 0 bytes: the datasets library itself fails on it
    with pytest.raises(ValueError, match="'train' contains no text: .*empty.txt is empty"):
        load_text_splits(train_file=tmp_path / "empty.txt", cache_dir=str(tmp_path / "c"))
    tok = train_word_tokenizer(["a"])
    with pytest.raises(ValueError, match=r"'sentence' not in split 'train'"):
        tokenize_splits(load_files(text_files, tmp_path), tok, "sentence")


def test_batchify_gives_each_rank_a_contiguous_disjoint_share():
    stream = torch.arange(103)
    world_size, batch_size = 3, 4
    shares = [batchify(stream, batch_size, rank, world_size) for rank in range(world_size)]
    assert all(share.shape == (batch_size, 8) for share in shares)  # 103 // 3 = 34 -> 4 rows of 8
    for rank, share in enumerate(shares):
        assert share.flatten().tolist() == list(range(rank * 34, rank * 34 + 32))
    with pytest.raises(ValueError, match="too short"):
        batchify(torch.arange(10), batch_size=4, world_size=2)
    with pytest.raises(ValueError, match="rank=2"):
        batchify(stream, batch_size, rank=2, world_size=2)


def test_batches_shift_targets_by_one_and_a_pass_covers_every_step():
    data = batchify(torch.arange(40), batch_size=2)  # rows 0..19 and 20..39
    pairs = [get_batch(data, start, bptt=6) for start in range(0, data.shape[1] - 1, 6)]
    assert [inputs.shape[1] for inputs, _ in pairs] == [6, 6, 6, 1]
    for inputs, targets in pairs:
        assert torch.equal(targets, inputs + 1)
    assert torch.cat([targets for _, targets in pairs], dim=1)[0].tolist() == list(range(1, 20))
    with pytest.raises(ValueError, match="bptt"):
        get_batch(data, 0, bptt=0)


@pytest.mark.parametrize(
    "length, batch_size, world_size",
    [(2, 1, 1), (10, 3, 1), (11, 3, 2), (100, 7, 3), (50, 4, 8), (9, 16, 2), (1001, 10, 4)],
)
def test_eval_streams_predict_every_target_exactly_once(length, batch_size, world_size):
    stream = torch.arange(length) + 10
    single_inputs, single_targets = eval_streams(stream, batch_size)
    parts = [eval_streams(stream, batch_size, rank, world_size) for rank in range(world_size)]
    rows = [None] * len(single_targets)
    for rank, (inputs, targets) in enumerate(parts):
        assert inputs.shape == targets.shape and inputs.shape[1] == single_inputs.shape[1]
        for j in range(len(targets)):
            rows[rank + j * world_size] = (inputs[j], targets[j])
    assert all(row is not None for row in rows)  # the ranks' rows together are the single-process rows
    inputs = torch.stack([r[0] for r in rows])
    targets = torch.stack([r[1] for r in rows])
    assert torch.equal(inputs, single_inputs) and torch.equal(targets, single_targets)
    assert len(targets) <= batch_size
    kept = targets != IGNORE_INDEX
    assert targets[kept].tolist() == stream[1:].tolist()  # in order, each exactly once
    assert torch.equal(targets[kept], inputs[kept] + 1)  # each target follows its input in the stream


def test_eval_streams_rejects_a_stream_without_targets():
    with pytest.raises(ValueError, match="at least 2 tokens"):
        eval_streams(torch.tensor([1]), batch_size=2)


@pytest.mark.skipif(not WT2_MINI.is_dir(), reason=f"wt2-mini corpus not found at {WT2_MINI}")
def test_wt2_mini_checksums_vocabulary_and_stream(tmp_path):
    for line in (WT2_MINI / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((WT2_MINI / name).read_bytes()).hexdigest() == digest, name
    tok = train_word_tokenizer([WT2_MINI / "train.txt"])
    # The README's 13,776 types include the literal word <unk>, which is the special token id 0 here.
    assert len(tok) == 13_776 - 1 + len(SPECIAL_TOKENS)
    splits = load_text_splits(train_file=WT2_MINI / "train.txt", cache_dir=str(tmp_path / "cache"))
    stream = token_stream(tokenize_splits(splits, tok, "text")["train"])
    # 213,886 words; 2,461 of the 3,760 lines are not blank and end with <eos>; plus the leading <eos>
    assert len(stream) == 213_886 + 2_461 + 1
    # the very stream hf-softbin 0.2 trained on (its digest then), so old and new runs see the same data
    assert hashlib.sha256(stream.numpy().tobytes()).hexdigest() == (
        "0514e0e2649f6fbe024afa825715343700999460bd69dff5aaa5dbf487d25f32")
