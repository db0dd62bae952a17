"""N-best lists on disk: JSON Lines, Kaldi n-best text with a score file, NeMo's beam-search output; and the chosen
hypotheses written back, as JSON Lines or Kaldi text.

Score convention: every score is a log-likelihood, higher is better (Kaldi's costs are negated on reading). Words are
compared and scored whitespace-normalized (`normalize_words`).
"""

import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from ..atomic import write_text_atomic
from .textio import finite_number, numbered_lines, read_lines

# What each format needs besides the n-best file (its `read_nbest` options): required, then optional.
FORMAT_OPTIONS = {"jsonl": ((), ()), "kaldi": (("scores",), ("refs", "costs")), "nemo": (("beam_width",), ("refs",))}
NBEST_FORMATS = tuple(FORMAT_OPTIONS)


def normalize_words(text: str) -> str:
    """The words of `text` separated by single spaces."""
    return " ".join(text.split())


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
        texts[key] = (utt_id, n, normalize_words(text), lineno)

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
            refs[utt_id] = (normalize_words(text), lineno)
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
        rows.append(Hypothesis(normalize_words(text), finite_number(number, f"{path}: line {lineno}: score")))
    if not rows or len(rows) % beam_width:
        raise ValueError(f"{path}: {len(rows)} lines is not a whole number of utterances of {beam_width} hypotheses "
                         "(check the beam width)")
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
        texts.append(normalize_words(line))
    if len(texts) != count:
        raise ValueError(f"{path}: {len(texts)} references for {count} utterances")
    return names, texts


def read_nbest(path: str, format: str = "jsonl", *, scores: str | None = None, refs: str | None = None,
               costs: bool = False, beam_width: int | None = None) -> list[Utterance]:
    """N-best lists in any of `NBEST_FORMATS`, with the options `FORMAT_OPTIONS` gives it: Kaldi text needs its score
    file (`scores`, costs when `costs`), NeMo output its `beam_width`; both may take `refs`."""
    if format not in FORMAT_OPTIONS:
        raise ValueError(f"unknown n-best format {format!r}; expected one of {NBEST_FORMATS}")
    given = {"scores": scores, "refs": refs, "costs": costs, "beam_width": beam_width}
    required, optional = FORMAT_OPTIONS[format]
    misplaced = [name for name, value in given.items() if value and name not in required + optional]
    if misplaced:
        raise ValueError(f"{', '.join(misplaced)}: not an option of the {format} n-best format")
    missing = [name for name in required if given[name] is None]
    if missing:
        raise ValueError(f"{path}: the {format} n-best format needs {', '.join(missing)} "
                         + {"kaldi": "(the `UTT-ID-N score` file)", "nemo": "(hypotheses per utterance)"}[format])
    if format == "jsonl":
        return read_nbest_jsonl(path)
    if format == "kaldi":
        return read_kaldi_nbest(path, scores, refs, scores_are_costs=costs)
    return read_nemo_nbest(path, beam_width, refs)


# ------------------------------------------------------------------------------------------------------------- writing


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
    write_lines(lines, path)



def format_choices(utterances: Sequence[Utterance], chosen: Sequence[int], scores: Sequence[float],
                   format: str = "jsonl") -> list[str]:
    """One line per utterance: JSON `{"id", "text", "score", "index"}` (the rescoring score, the index into its
    hypotheses), or Kaldi text `UTT-ID word word ...` (just the id for an empty hypothesis)."""
    lines = []
    for utt, index, score in zip(utterances, chosen, scores):
        text = normalize_words(utt.hyps[index].text)
        if format == "kaldi":
            lines.append(f"{utt.id} {text}".rstrip())
        else:
            lines.append(json.dumps({"id": utt.id, "text": text, "score": score, "index": index}, ensure_ascii=False))
    return lines


def write_lines(lines: list[str], path: str | os.PathLike | None) -> None:
    """Lines to `path`, atomically, or to stdout when `path` is None."""
    text = "".join(line + "\n" for line in lines)
    if path is None:
        sys.stdout.write(text)
    else:
        write_text_atomic(path, text)
