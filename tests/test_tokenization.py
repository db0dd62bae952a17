from pathlib import Path

import pytest
from datasets import Dataset
from transformers import AutoTokenizer

from hf_softbin.tokenization import (
    EOS_TOKEN,
    PAD_TOKEN,
    SPECIAL_TOKENS,
    UNK_TOKEN,
    is_word_tokenizer,
    save_tokenizer,
    train_word_tokenizer,
    train_word_tokenizer_from_dataset,
)

FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint-v0.1" / "packed"

LINES = ["the cat sat .", "the dog sat , again .", "a <unk> cat"]


def test_special_tokens_have_fixed_ids():
    tok = train_word_tokenizer(LINES)
    assert SPECIAL_TOKENS == (UNK_TOKEN, EOS_TOKEN, PAD_TOKEN)
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2]
    assert (tok.unk_token_id, tok.eos_token_id, tok.bos_token_id, tok.pad_token_id) == (0, 1, 1, 2)


def test_words_ordered_by_frequency_then_alphabetically():
    tok = train_word_tokenizer(["b a c b", "d a b z", "y"])
    # b:3, a:2, then c, d, y, z once each in alphabetical order
    assert tok.convert_ids_to_tokens(list(range(len(tok)))) == [*SPECIAL_TOKENS, "b", "a", "c", "d", "y", "z"]


def test_literal_unk_in_text_is_id_zero_and_not_a_second_entry():
    tok = train_word_tokenizer(["<unk> <unk> <unk> x"])
    assert len(tok) == len(SPECIAL_TOKENS) + 1
    assert tok("<unk> x unseen")["input_ids"] == [1, 0, 3, 0]


def test_encoding_splits_on_whitespace_only_and_starts_with_the_start_token():
    tok = train_word_tokenizer(["don't stop , ok"])
    encoded = tok(["don't  stop ,", "ok\tdon't"])
    ids = tok.convert_tokens_to_ids
    assert encoded["input_ids"] == [[1, ids("don't"), ids("stop"), ids(",")], [1, ids("ok"), ids("don't")]]
    assert set(encoded) == {"input_ids", "attention_mask"}
    assert tok("don't", add_special_tokens=False)["input_ids"] == [ids("don't")]
    assert tok("ok", "stop")["input_ids"] == [1, ids("ok"), 1, ids("stop")]


def test_decoded_words_carry_the_space_before_them():
    """So that a decoded continuation joins its prompt as words (`prompt + decode(new tokens)`)."""
    tok = train_word_tokenizer(["the cat sat on the mat"])
    sentence = tok("the cat sat")["input_ids"]
    assert tok.decode(sentence, skip_special_tokens=True) == " the cat sat"
    assert "the" + tok.decode(sentence[2:]) == "the cat sat"
    assert tok.decode(sentence) == " <eos> the cat sat"


def test_a_tokenizer_saved_in_the_0_2_convention_is_saved_again_in_the_current_one(tmp_path):
    old = AutoTokenizer.from_pretrained(FIXTURE)  # written by hf-softbin 0.1: <eos> appended, no decoder
    words = "the cat sat on the mat"
    assert old(words)["input_ids"][-1] == old.eos_token_id and old(words)["input_ids"][0] != old.eos_token_id
    assert is_word_tokenizer(old)
    save_tokenizer(old, tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again.get_vocab() == old.get_vocab()
    assert again(words)["input_ids"] == [again.eos_token_id] + old(words, add_special_tokens=False)["input_ids"]
    assert again.decode(again(words)["input_ids"], skip_special_tokens=True) == " " + words


def test_min_count_and_max_size():
    text = ["a a a b b c"]
    assert len(train_word_tokenizer(text, min_count=2)) == len(SPECIAL_TOKENS) + 2
    capped = train_word_tokenizer(text, max_size=len(SPECIAL_TOKENS) + 1)
    assert len(capped) == len(SPECIAL_TOKENS) + 1
    assert capped("a b")["input_ids"] == [1, 3, 0]


def test_training_from_files_matches_training_from_lines(tmp_path):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("\n".join(LINES[:2]) + "\n")
    second.write_text(LINES[2] + "\n")
    from_files = train_word_tokenizer([first, second])
    assert from_files.get_vocab() == train_word_tokenizer(LINES).get_vocab()
    assert train_word_tokenizer(first).get_vocab() == train_word_tokenizer(LINES[:2]).get_vocab()


def test_training_from_dataset_matches_training_from_lines():
    dataset = Dataset.from_dict({"sentence": LINES, "id": [0, 1, 2]})
    tok = train_word_tokenizer_from_dataset(dataset, "sentence", batch_size=2)
    assert tok.get_vocab() == train_word_tokenizer(LINES).get_vocab()


def test_bad_input_raises_clear_errors(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        train_word_tokenizer([Path(__file__), missing])
    with pytest.raises(ValueError, match="no words"):
        train_word_tokenizer(["", "   "])
    with pytest.raises(ValueError, match="min_count=5"):
        train_word_tokenizer(["a b <unk>"], min_count=5)
    with pytest.raises(ValueError, match="max_size"):
        train_word_tokenizer(LINES, max_size=3)
    with pytest.raises(ValueError, match=r"'text'.*\['sentence'\]"):
        train_word_tokenizer_from_dataset(Dataset.from_dict({"sentence": LINES}), "text")


def test_save_and_reload_with_auto_tokenizer(tmp_path):
    tok = train_word_tokenizer(LINES)
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    batch = ["the cat sat , again", "a dog unseen ."]
    assert loaded(batch)["input_ids"] == tok(batch)["input_ids"]
    assert loaded.get_vocab() == tok.get_vocab()
    assert (loaded.unk_token_id, loaded.eos_token_id, loaded.bos_token_id, loaded.pad_token_id) == (0, 1, 1, 2)
    assert loaded.model_input_names == ["input_ids", "attention_mask"]
    padded = loaded(batch, padding=True, return_tensors="pt")
    assert padded["input_ids"][1].tolist() == tok(batch[1])["input_ids"] + [2]
    assert padded["attention_mask"][1].tolist() == [1, 1, 1, 1, 1, 0]
    assert loaded.decode(loaded(batch[0])["input_ids"][1:]) == " " + batch[0]
