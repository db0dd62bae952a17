#!/usr/bin/env python
"""KenLM n-gram peers for the benchmark: the modified Kneser-Ney n-gram of the best order, and that order pruned to a
byte budget (the packed 1-bit LSTM's file size).

Needs KenLM's `lmplz` and `build_binary` and the `kenlm` Python module, built by `bash scripts/kenlm/build.sh`; they
are optional and no dependency of hf_softbin. `kenlm_available()` says whether the rows can be made.

Scoring follows the neural rows: every non-blank line is a sentence, and each of its words plus one `</s>` per line
is scored and counted. The corpus's literal `<unk>` is an ordinary word to the LSTM (it is learned like any other),
and a word outside the training vocabulary is read as `<unk>`. lmplz refuses a literal `<unk>`, and its
`--skip_symbols` deletes it, which joins its neighbours into n-grams that never occurred and leaves KenLM's own
`<unk>` only the leftover mass of an unseen word. So the training text spells it `UNK_WORD`, a plain word to lmplz,
and queries map `<unk>` and every word the model does not know to `UNK_WORD`: both models then have the training
vocabulary and score `<unk>` as a learned word.

The one difference left: the LSTM reads the test file as one stream, its state carried across lines, while an n-gram
starts every line from `<s>`. `cross_line_effect` measures what carrying context across lines is worth to an n-gram.

    python benchmarks/kenlm_peer.py --budget 870000 [--cross-line] [--json runs/kenlm/rows.json]
"""

import argparse
import contextlib
import importlib.util
import itertools
import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "wt2-mini"
DEFAULT_WORK_DIR = REPO_ROOT / "runs" / "kenlm"
DEFAULT_BIN_DIR = REPO_ROOT / ".tools" / "kenlm" / "build" / "bin"

CORPUS_UNK = "<unk>"
UNK_WORD = "<unk-word>"  # how the training text spells the corpus's <unk> for lmplz
STREAM_EOS = "<eos>"  # the line-end word of the cross-line comparison, as in the LSTM's stream
ORDERS = (3, 4, 5)
LMPLZ_MEMORY = "256M"  # lmplz's sort memory; its default, 80% of RAM, is far more than this corpus needs
# build_binary arguments ahead of the input file, from the largest format to the smallest. `-v` leaves out the word
# strings (lookups hash the word, so scoring is unchanged); the LSTM's file leaves out its vocabulary too.
BINARY_FORMATS = (
    "probing",
    "trie",
    "-q 8 -b 8 trie",
    "-q 8 -b 8 -a 255 trie",
    "-v -q 8 -b 8 -a 255 trie",
)
LN_10 = math.log(10)
_BUILD_HINT = ("Run `bash scripts/kenlm/build.sh` with the project's virtual environment active, or set KENLM_BIN "
               "to a folder holding lmplz and build_binary.")

log = logging.getLogger("kenlm_peer")


class KenLMNotBuiltError(RuntimeError):
    pass


# ---- finding KenLM ---------------------------------------------------------------------------------------------


def kenlm_bin_dir() -> Path:
    """Where lmplz and build_binary are: $KENLM_BIN, else where scripts/kenlm/build.sh puts them."""
    return Path(os.environ.get("KENLM_BIN", DEFAULT_BIN_DIR))


def _missing_parts() -> list[str]:
    missing = [str(kenlm_bin_dir() / tool) for tool in ("lmplz", "build_binary")
               if not os.access(kenlm_bin_dir() / tool, os.X_OK)]
    if importlib.util.find_spec("kenlm") is None:
        missing.append("the kenlm Python module")
    return missing


def kenlm_available() -> bool:
    return not _missing_parts()


def require_kenlm() -> None:
    missing = _missing_parts()
    if missing:
        raise KenLMNotBuiltError(f"KenLM is not built (missing: {', '.join(missing)}). {_BUILD_HINT}")


def _import_kenlm():
    try:
        import kenlm
    except ImportError as error:
        raise KenLMNotBuiltError(f"the kenlm Python module is not installed. {_BUILD_HINT}") from error
    return kenlm


# ---- text --------------------------------------------------------------------------------------------------------


def read_sentences(path: str | os.PathLike) -> list[str]:
    """The non-blank lines of a text file, their words joined by single spaces."""
    with open(path, encoding="utf-8") as handle:
        return [" ".join(words) for words in map(str.split, handle) if words]


def _spell_unk(sentence: str) -> str:
    return " ".join(UNK_WORD if word == CORPUS_UNK else word for word in sentence.split())


def _per_line_text(sentences: Sequence[str]) -> str:
    return "".join(_spell_unk(sentence) + "\n" for sentence in sentences)


def _stream_text(sentences: Sequence[str]) -> str:
    """All sentences as one line, each followed by STREAM_EOS: lmplz then counts n-grams across line ends."""
    return " ".join(f"{_spell_unk(sentence)} {STREAM_EOS}" for sentence in sentences) + "\n"


def _check_reserved_words(sentences: Sequence[str]) -> None:
    reserved = {UNK_WORD, STREAM_EOS, "<s>", "</s>"}
    found = reserved.intersection(word for sentence in sentences for word in sentence.split())
    if found:
        raise ValueError(f"the training text contains {sorted(found)}, which this module reserves")


# ---- files and tools ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path`, renamed to `path` when the block succeeds and deleted when it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_text(path: Path, text: str) -> Path:
    with _atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _run(args: list[str]) -> float:
    """Run a KenLM tool; return its wall time in seconds, or raise with the end of its error output."""
    start = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
    return time.perf_counter() - start


def train_arpa(text_file: Path, arpa: Path, order: int, prune: Sequence[int] = ()) -> float:
    """Estimate a modified Kneser-Ney ARPA model with lmplz; return the seconds it took.

    `prune` holds lmplz's count thresholds per order; all zeros, or none, is no pruning. The first must be 0: lmplz
    never prunes unigrams, so every model keeps the whole training vocabulary.
    """
    with _atomic_path(arpa) as tmp:
        args = [str(kenlm_bin_dir() / "lmplz"), "--order", str(order), "--memory", LMPLZ_MEMORY,
                "--temp_prefix", str(arpa.parent) + os.sep, "--text", str(text_file), "--arpa", str(tmp)]
        if prune:
            args += ["--prune", *map(str, prune)]
        return _run(args)


def build_binary(arpa: Path, binary: Path, binary_format: str) -> float:
    """Convert an ARPA file to KenLM's binary `binary_format` (see BINARY_FORMATS); return the seconds it took."""
    with _atomic_path(binary) as tmp:
        return _run([str(kenlm_bin_dir() / "build_binary"), *binary_format.split(), str(arpa), str(tmp)])


# ---- scoring -----------------------------------------------------------------------------------------------------


class KenLMScorer:
    """A KenLM model (ARPA or binary) scored under the neural rows' conventions (see the module docstring).

    `lm_logprob` is the adapter for hf_softbin's n-best rescoring.
    """

    def __init__(self, path: str | os.PathLike):
        self.model = _import_kenlm().Model(os.fspath(path))

    def map_words(self, sentence: str) -> str:
        """`sentence` with `<unk>`, and every word the model does not know, spelled UNK_WORD."""
        return " ".join(word if word in self.model else UNK_WORD for word in sentence.split())

    def log10_probs(self, sentences: Sequence[str]) -> list[float]:
        """log10 P(w1 .. wn </s> | <s>) of each sentence."""
        return [self.model.score(self.map_words(sentence), bos=True, eos=True) for sentence in sentences]

    def lm_logprob(self, texts: list[str]) -> list[float]:
        """Natural-log probability of each text, `</s>` included, from `<s>`: the rescoring convention."""
        return [LN_10 * value for value in self.log10_probs(texts)]

    def perplexity(self, sentences: Sequence[str]) -> float:
        return 10 ** (-sum(self.log10_probs(sentences)) / _token_count(sentences))

    def tokens_per_second(self, sentences: Sequence[str], rounds: int = 3) -> float:
        """Scoring speed of the query module, best of `rounds`; words are mapped beforehand, like tokenizing."""
        mapped = [self.map_words(sentence) for sentence in sentences]
        best = math.inf
        for _ in range(rounds):
            start = time.perf_counter()
            for sentence in mapped:
                self.model.score(sentence, bos=True, eos=True)
            best = min(best, time.perf_counter() - start)
        return _token_count(sentences) / best

    def carried_over_perplexity(self, sentences: Sequence[str]) -> float:
        """Perplexity with the lines read as one stream: `</s>` stays in the context of the next line's words.

        Only the first line starts from `<s>`. For a model trained per line this is no gain, since `</s>` never
        begins an n-gram there; it shows that the context has to be in the training counts (`cross_line_effect`).
        """
        stream = " </s> ".join(self.map_words(sentence) for sentence in sentences)
        return 10 ** (-self.model.score(stream, bos=True, eos=True) / _token_count(sentences))

    def stream_perplexity(self, sentences: Sequence[str]) -> float:
        """Perplexity of a model trained on `_stream_text`, read like the LSTM reads a file.

        The stream is `<eos> w.. <eos> w.. <eos>`; every token after the first is scored.
        """
        stream = " ".join([STREAM_EOS, *(f"{self.map_words(sentence)} {STREAM_EOS}" for sentence in sentences)])
        scores = [prob for prob, _, _ in self.model.full_scores(stream, bos=False, eos=False)]
        return 10 ** (-sum(scores[1:]) / _token_count(sentences))


def _token_count(sentences: Sequence[str]) -> int:
    return sum(len(sentence.split()) + 1 for sentence in sentences)


# ---- the rows ----------------------------------------------------------------------------------------------------


@dataclass
class Splits:
    train: list[str]
    valid: list[str]
    test: list[str]

    @classmethod
    def read(cls, data_dir: str | os.PathLike) -> "Splits":
        data_dir = Path(data_dir)
        missing = [name for name in ("train.txt", "valid.txt", "test.txt") if not (data_dir / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{data_dir} lacks {', '.join(missing)}")
        splits = cls(*(read_sentences(data_dir / f"{name}.txt") for name in ("train", "valid", "test")))
        _check_reserved_words(splits.train)
        return splits


@dataclass
class _Arpa:
    order: int
    prune: tuple[int, ...]
    path: Path
    seconds: float


@dataclass
class _Model:
    arpa: _Arpa
    binary_format: str
    binary: Path
    train_seconds: float  # lmplz and build_binary

    @property
    def size_bytes(self) -> int:
        return self.binary.stat().st_size


def _unpruned(order: int) -> tuple[int, ...]:
    return (0,) * order


def _estimate(text_file: Path, work_dir: Path, order: int, prune: tuple[int, ...]) -> _Arpa:
    path = work_dir / f"{text_file.stem}-{order}gram-prune{'_'.join(map(str, prune))}.arpa"
    return _Arpa(order, prune, path, train_arpa(text_file, path, order, prune))


def _binarize(arpa: _Arpa, binary_format: str) -> _Model:
    binary = arpa.path.with_suffix(f".{binary_format.replace(' ', '').replace('-', '')}.bin")  # .vq8b8a255trie.bin
    return _Model(arpa, binary_format, binary, arpa.seconds + build_binary(arpa.path, binary, binary_format))


def choose_order(text_file: Path, work_dir: Path, splits: Splits, orders: Sequence[int] = ORDERS) -> _Arpa:
    """The unpruned model whose order gives the lowest validation perplexity (scored from the exact ARPA)."""
    valid_ppl = {}
    for order in orders:
        arpa = _estimate(text_file, work_dir, order, _unpruned(order))
        valid_ppl[order] = (KenLMScorer(arpa.path).perplexity(splits.valid), arpa)
        log.info("order %d, unpruned ARPA: valid ppl %.2f, lmplz %.1f s", order, valid_ppl[order][0], arpa.seconds)
    return min(valid_ppl.values(), key=lambda item: item[0])[1]


def smallest_binary(arpa: _Arpa, splits: Splits) -> _Model:
    """`arpa` in the BINARY_FORMATS entry that gives the smallest file."""
    models = [_binarize(arpa, binary_format) for binary_format in BINARY_FORMATS]
    for model in models:
        log.info("format %-26s %10d bytes, valid ppl %.2f", model.binary_format, model.size_bytes,
                 KenLMScorer(model.binary).perplexity(splits.valid))
    return min(models, key=lambda model: model.size_bytes)


def prune_candidates(order: int, max_threshold: int) -> list[tuple[int, ...]]:
    """lmplz thresholds (0, t2, .., tn), non-decreasing, each <= max_threshold, in order of their sum."""
    rising = itertools.combinations_with_replacement(range(max_threshold + 1), order - 1)
    return sorted(((0, *tail) for tail in rising if any(tail)), key=sum)


def prune_to_budget(text_file: Path, work_dir: Path, order: int, binary_format: str, splits: Splits,
                    size_budget: int, max_threshold: int = 3) -> _Model:
    """The pruning of the `order`-gram with the best validation perplexity among those within `size_budget` bytes.

    Thresholds all at least those of a pruning already within budget are skipped: they only remove more n-grams.
    """
    fitting: list[tuple[float, _Model]] = []
    sizes = []
    for prune in prune_candidates(order, max_threshold):
        if any(all(t >= f for t, f in zip(prune, model.arpa.prune)) for _, model in fitting):
            continue
        model = _binarize(_estimate(text_file, work_dir, order, prune), binary_format)
        sizes.append(model.size_bytes)
        if model.size_bytes > size_budget:
            log.info("prune %s: %d bytes, over budget", " ".join(map(str, prune)), model.size_bytes)
            continue
        valid_ppl = KenLMScorer(model.binary).perplexity(splits.valid)
        log.info("prune %s: %d bytes, valid ppl %.2f", " ".join(map(str, prune)), model.size_bytes, valid_ppl)
        fitting.append((valid_ppl, model))
    if not fitting:
        raise ValueError(f"no pruning with thresholds up to {max_threshold} brings the {order}-gram within "
                         f"{size_budget} bytes (smallest: {min(sizes)}); raise max_threshold")
    return min(fitting, key=lambda item: item[0])[1]


def _row(name: str, model: _Model, splits: Splits) -> dict:
    scorer = KenLMScorer(model.binary)
    return {
        "name": name,
        "binary_path": os.path.relpath(model.binary, REPO_ROOT),
        "order": model.arpa.order,
        "prune": list(model.arpa.prune),
        "binary_format": f"build_binary {model.binary_format}",
        "size_bytes": model.size_bytes,
        "valid_ppl": scorer.perplexity(splits.valid),
        "test_ppl": scorer.perplexity(splits.test),
        "score_tokens_per_second": scorer.tokens_per_second(splits.test),
        "train_seconds": model.train_seconds,
    }


def peer_rows(size_budget: int, data_dir: str | os.PathLike = DEFAULT_DATA_DIR,
              work_dir: str | os.PathLike = DEFAULT_WORK_DIR, orders: Sequence[int] = ORDERS,
              max_threshold: int = 3) -> list[dict]:
    """The benchmark's KenLM rows: the unpruned model of the best order, and that order pruned to `size_budget`.

    The order and the pruning are chosen on validation perplexity; the test split is only scored. ARPA and binary
    files go to `work_dir`. Raises KenLMNotBuiltError when KenLM is not built (see `kenlm_available`).
    """
    require_kenlm()
    splits = Splits.read(data_dir)
    work_dir = Path(work_dir)
    text_file = _write_text(work_dir / "train.txt", _per_line_text(splits.train))
    unpruned = smallest_binary(choose_order(text_file, work_dir, splits, orders), splits)
    order = unpruned.arpa.order
    pruned = prune_to_budget(text_file, work_dir, order, unpruned.binary_format, splits, size_budget, max_threshold)
    return [
        _row(f"KenLM {order}-gram (unpruned)", unpruned, splits),
        _row(f"KenLM {order}-gram pruned to <= {size_budget:,} bytes", pruned, splits),
    ]


def cross_line_effect(order: int, data_dir: str | os.PathLike = DEFAULT_DATA_DIR,
                      work_dir: str | os.PathLike = DEFAULT_WORK_DIR) -> dict:
    """Test perplexity of unpruned `order`-grams (exact ARPA) with and without context across line ends.

    per_line: the benchmark's convention, every line from `<s>`. carried_over: the same model reading the lines
    as one stream. stream: a model trained on the lines as one stream with `<eos>` at each line end, and scored
    that way, as the LSTM is.
    """
    require_kenlm()
    splits = Splits.read(data_dir)
    work_dir = Path(work_dir)
    per_line_text = _write_text(work_dir / "train.txt", _per_line_text(splits.train))
    stream_text = _write_text(work_dir / "train-stream.txt", _stream_text(splits.train))
    per_line = KenLMScorer(_estimate(per_line_text, work_dir, order, _unpruned(order)).path)
    stream = KenLMScorer(_estimate(stream_text, work_dir, order, _unpruned(order)).path)
    return {
        "order": order,
        "per_line_test_ppl": per_line.perplexity(splits.test),
        "carried_over_test_ppl": per_line.carried_over_perplexity(splits.test),
        "stream_test_ppl": stream.stream_perplexity(splits.test),
    }


# ---- command line ------------------------------------------------------------------------------------------------


def rows_markdown(rows: Sequence[dict]) -> str:
    lines = ["| row | order | prune | format | size (bytes) | valid ppl | test ppl | score tok/s | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['name']} | {row['order']} | {' '.join(map(str, row['prune']))} | "
                     f"`{row['binary_format']}` | {row['size_bytes']:,} | {row['valid_ppl']:.2f} | "
                     f"{row['test_ppl']:.2f} | {row['score_tokens_per_second']:,.0f} | {row['train_seconds']:.1f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, required=True, help="size budget of the pruned row's binary, bytes")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="folder with train.txt, valid.txt, test.txt")
    parser.add_argument("--work-dir", default=DEFAULT_WORK_DIR, help="where ARPA and binary files go")
    parser.add_argument("--orders", type=int, nargs="+", default=list(ORDERS), help="orders to choose from")
    parser.add_argument("--max-threshold", type=int, default=3, help="largest lmplz prune threshold tried")
    parser.add_argument("--cross-line", action="store_true", help="also measure context across line ends")
    parser.add_argument("--json", type=Path, help="write the rows (and the cross-line figures) here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        require_kenlm()
    except KenLMNotBuiltError as error:
        print(f"kenlm_peer: {error}", file=sys.stderr)
        return 1
    results = {"rows": peer_rows(args.budget, args.data_dir, args.work_dir, args.orders, args.max_threshold)}
    print(rows_markdown(results["rows"]))
    if args.cross_line:
        results["cross_line"] = cross_line_effect(results["rows"][0]["order"], args.data_dir, args.work_dir)
        print(json.dumps(results["cross_line"], indent=2))
    if args.json:
        _write_text(args.json, json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
