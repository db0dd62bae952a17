"""Word error rates of n-best lists: first pass, oracle, and how often a better hypothesis sits below rank 1."""

import jiwer


def word_errors(ref: str, hyp: str) -> int:
    result = jiwer.process_words(ref, hyp)
    return result.substitutions + result.deletions + result.insertions


def corpus_wer(refs: list[str], hyps: list[str]) -> float:
    return jiwer.wer(refs, hyps)


def list_statistics(records: list[dict]) -> dict:
    """Corpus-level figures for records {"ref", "hyps": [{"text"}, ...]} with hyps best first."""
    ref_words = sum(len(record["ref"].split()) for record in records)
    errors = [[word_errors(record["ref"], hyp["text"]) for hyp in record["hyps"]] for record in records]
    first_wrong = [e for e in errors if e[0] > 0]
    better_below = [e for e in errors if min(e) < e[0]]
    return {
        "utterances": len(records),
        "reference_words": ref_words,
        "first_pass_wer": corpus_wer([r["ref"] for r in records], [r["hyps"][0]["text"] for r in records]),
        "oracle_wer": sum(min(e) for e in errors) / ref_words,
        "mean_list_length": sum(len(r["hyps"]) for r in records) / len(records),
        "rank1_has_errors": len(first_wrong) / len(records),
        "best_not_rank1": len(better_below) / len(records),
        "best_not_rank1_when_rank1_wrong": len(better_below) / len(first_wrong) if first_wrong else 0.0,
    }
