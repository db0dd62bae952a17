"""Sentences from WikiText paragraphs, in the recognizer's spelling and back in wt2-mini's tokenization.

wt2-mini text is tokenized WikiText: one paragraph a line, punctuation as separate tokens, clitics split off at the
apostrophe ("it 's", "don 't", "can 't"), numbers split with "@,@"/"@.@" and hyphens written "@-@". The recognizer's
dictionary (CMUdict) writes the same words joined ("it's", "don't", "can't"), lowercase, without punctuation.
"""

import random
import re
from collections import Counter
from dataclasses import dataclass

SENTENCE_END = {".", "!", "?"}
# Punctuation a speaker does not pronounce; any other symbol ("&", "%", "/", "+") would be spoken, so a sentence
# holding one is dropped instead of silently losing a word from its reference.
SILENT = set(".,;:!?\"'()[]{}–—-…")
PROSODIC = {",", ";", ":", "–", "—"}  # kept in the text given to the synthesizer, for its pauses
AT_TOKENS = {"@-@", "@,@", "@.@"}
CLITIC = re.compile(r"^(?:'[a-z]+|n't)$")  # wt2-mini: "it 's", "don 't"; Penn Treebank style: "do n't"
LM_CLITIC = re.compile(r"^(.+?)('(?:s|t|re|ve|ll|m|d))$")


@dataclass
class Sentence:
    index: int  # position among all sentences of the file, in reading order
    words: list[str]  # the reference, in the recognizer's spelling
    speech_text: str  # what the synthesizer reads: the words with pauses at commas

    @property
    def ref(self) -> str:
        return " ".join(self.words)


def split_sentences(paragraph: str) -> list[list[str]]:
    """Split a tokenized paragraph after each sentence-final token (".", "!" or "?" standing alone)."""
    sentences, current = [], []
    for token in paragraph.split():
        current.append(token)
        if token in SENTENCE_END:
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    return sentences


def is_silent(token: str) -> bool:
    return all(char in SILENT for char in token)


def to_recognizer(tokens: list[str]) -> tuple[list[str], str]:
    """(words, speech text): lowercase, silent punctuation removed, clitics joined to the word before them."""
    words, spoken = [], []
    for token in tokens:
        token = token.lower()
        if CLITIC.match(token) and words:
            words[-1] += token
            spoken[-1] += token
        elif is_silent(token):
            if token in PROSODIC and spoken and not spoken[-1].endswith(","):
                spoken[-1] += ","
        else:
            words.append(token)
            spoken.append(token)
    return words, " ".join(spoken).rstrip(",")


def drop_reason(tokens: list[str], words: list[str], vocabulary: set[str], min_words: int, max_words: int):
    """Why a sentence cannot be used, or None. Checked in this order, so each dropped sentence counts once."""
    if "<unk>" in tokens:
        return "<unk>"
    if any(token in AT_TOKENS for token in tokens):
        return "@-@/@,@/@.@"
    if any(char.isdigit() for token in tokens for char in token):
        return "digits"
    if any(word not in vocabulary for word in words):
        return "word or symbol not in the dictionary"
    if not min_words <= len(words) <= max_words:
        return f"not {min_words}-{max_words} words"
    return None


def usable_sentences(path, vocabulary: set[str], min_words: int = 5, max_words: int = 20):
    """All usable sentences of a wt2-mini file, and a Counter of the dropped ones by reason."""
    kept, dropped = [], Counter()
    index = 0
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip() or line.strip().startswith("="):  # blank lines and " = Heading = " lines
                continue
            for tokens in split_sentences(line):
                words, speech_text = to_recognizer(tokens)
                reason = drop_reason(tokens, words, vocabulary, min_words, max_words)
                if reason:
                    dropped[reason] += 1
                else:
                    kept.append(Sentence(index, words, speech_text))
                index += 1
    return kept, dropped


def select(sentences: list[Sentence], count: int, seed: int | str) -> list[Sentence]:
    """A seeded random sample, returned in reading order."""
    chosen = random.Random(seed).sample(sentences, min(count, len(sentences)))
    return sorted(chosen, key=lambda sentence: sentence.index)


def to_wt2_tokens(text: str) -> str:
    """Recognizer spelling -> wt2-mini tokenization: "it's" -> "it 's", "don't" -> "don 't", "states'" -> "states '".

    Case stays lower: wt2-mini capitalizes proper nouns and sentence starts, which a recognizer's output cannot tell.
    """
    tokens = []
    for word in text.split():
        match = LM_CLITIC.match(word)
        if match:
            tokens.extend(match.groups())
        elif len(word) > 1 and word.endswith("'"):
            tokens.extend((word[:-1], "'"))
        else:
            tokens.append(word)
    return " ".join(tokens)
