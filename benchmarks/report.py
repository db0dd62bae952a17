"""benchmarks/results.json holds every measurement; benchmarks/RESULTS.md is rendered from it, section by section.

Each benchmark script stores its own key with `update(key, value)`; the page is rendered again from the whole file,
so the sections of scripts that did not run this time keep their last results (each section names its command).
"""

import datetime
import json
import os
import platform

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def load(directory: str = HERE) -> dict:
    path = os.path.join(directory, "results.json")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def update(sections: dict, directory: str = HERE) -> None:
    """Store some sections' results (with the machine they ran on) and render RESULTS.md again."""
    from hf_softbin.models.softbin_lstm.checkpoint import write_text_atomic

    os.makedirs(directory, exist_ok=True)
    results = load(directory)
    for key, value in sections.items():
        results[key] = value
        results.setdefault("machines", {})[key] = machine()
    write_text_atomic(os.path.join(directory, "results.json"), json.dumps(results, indent=1) + "\n")
    write_text_atomic(os.path.join(directory, "RESULTS.md"), render(results))
    if "rows" in results:
        plot(results, os.path.join(directory, "ppl_vs_size.png"))


def machine() -> dict:
    import transformers

    return {"date": datetime.date.today().isoformat(), "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__}


def _f(value, spec=".2f", missing="n/a") -> str:
    return missing if value is None else format(value, spec)


def _mb(size) -> str:
    return "n/a" if size is None else f"{size / 1e6:.2f} MB"


def _machine_line(results: dict, key: str) -> str:
    m = results.get("machines", {}).get(key)
    if not m:
        return ""
    return (f"Measured {m['date']} on {m['cpu']}, {m['cores']} cores, torch threads {m['torch_threads']}; Python "
            f"{m['python']}, torch {m['torch']}, transformers {m['transformers']}.")


# ---- sections ------------------------------------------------------------------------------------------------------


def render_memory(results: dict) -> list[str]:
    memory = results["memory"]
    lines = ["## Decoding and memory: packed models resident in 1 bit", "", f"Command: `{memory['command']}`. "
             + _machine_line(results, "memory"), "",
             "Random weights (speed and memory do not depend on their values). Speeds side by side in one process, "
             f"alternating rounds, best of {memory['rounds']}: single-stream greedy `generate()` (tokens/s), the bare "
             "forward loop it runs (tokens/s; the difference is generate's own cost a step), the `score_word` state "
             "API (words/s); *fused step* rows run one-token steps through the fused LSTM kernel (the path before "
             "explicit gate products). Memory in fresh processes, imports and code paths warmed on a tiny model first, "
             f"median of {memory['rounds']}: the resident set a model adds by loading and 50 greedy decoding steps.",
             ""]
    for shape, entry in memory["shapes"].items():
        decoding, scoring = entry["decoding"], entry["batched_scoring"]
        lines += [f"### {shape}", "", "| path | generate tok/s | forward tok/s | generate's own ms/step | "
                  "score_word words/s | relative difference | same greedy tokens |", "|---|---|---|---|---|---|---|"]
        for row, values in decoding["rows"].items():
            difference = decoding["relative_difference_from_the_reference"].get(row)
            same = decoding["same_greedy_tokens_as_the_reference"].get(row)
            lines.append(f"| {row} | {values['generate_tokens_per_second']:.0f} | "
                         f"{values['forward_tokens_per_second']:.0f} | {values['generate_own_ms_per_step']:.2f} | "
                         f"{values['score_word_words_per_second']:.0f} | {_f(difference, '.1e', 'reference')} | "
                         f"{'-' if same is None else ('yes' if same else 'no')} |")
        lines += ["", f"Batched scoring of {scoring['sentences']} wt2-mini validation lines ({scoring['tokens']:,} "
                  "tokens, batches of 64) and memory:", "",
                  "| model | scoring tok/s | relative difference | resident weights | RSS added after 50 steps |",
                  "|---|---|---|---|---|"]
        for row, speed in scoring["tokens_per_second"].items():
            held = entry["memory"].get(row, {})
            difference = scoring["relative_difference_from_the_reference"].get(row)
            weights, added = (held[key] / 2**20 if key in held else None for key in ("footprint_bytes", "rss_added_bytes"))
            lines.append(f"| {row} | {speed:.0f} | {_f(difference, '.1e', 'reference' if row == 'packed-unpacked' else '-')}"
                         f" | {_f(weights, '.2f')} MiB | {_f(added, '.1f')} MiB |")
        lines += ["", "| target (issue 21) | measured | bound | met |", "|---|---|---|---|"]
        for target in entry["targets"]:
            spec = ".1e" if target["bound"] < 1e-3 else ".2f"
            lines.append(f"| {target['what']} | {target['value']:{spec}} | {target['relation']} "
                         f"{target['bound']:{spec}} | {'yes' if target['met'] else '**no**'} |")
        lines.append("")
    return lines


def render_search(results: dict) -> list[str]:
    search = results["search"]
    lines = ["## Recipe search (validation perplexity only)", "", _machine_line(results, "search"), "",
             "Commands, one a family:", ""]
    lines += [f"- {family}: `{command}`" for family, command in search["commands"].items()]
    lines += ["", search["protocol"], "",
              "| family | setting | screening valid ppl (epochs) | converged valid ppl | epochs (best) | test ppl | "
              "compression |", "|---|---|---|---|---|---|---|"]
    for family, entries in search["families"].items():
        winner = search["winners"].get(family, {}).get("setting")
        for setting, entry in sorted(entries.items(), key=lambda item: item[1]["screen"]["valid_ppl"]):
            screen, final = entry["screen"], entry.get("final")
            mark = " **(winner)**" if setting == winner else ""
            shown = final or screen
            converged = "screening only" if setting == winner and not final else _f(final and final["valid_ppl"])
            lines.append(
                f"| {family} | `{setting}`{mark} | {screen['valid_ppl']:.2f} ({screen['epochs']}) | {converged} | "
                f"{'' if not final else str(final['epochs']) + ' (' + _f(final['best_epoch'], '.0f') + ')'} | "
                f"{_f(shown['test_ppl']) if final or mark else 'n/a'} | {screen['compression_ratio']:.1f}x |")
    if search.get("not_searched"):
        lines += ["", f"Not searched yet: {', '.join(search['not_searched'])}. Their recipes in configs/methods are "
                  "the search's starting points."]
    return lines


def render_seeds(results: dict) -> list[str]:
    """The headline rows over seeds: mean, spread, and the ratio of means to the float row."""
    seeds = results["seeds"]
    rows = seeds["rows"]
    reference = rows.get("float")
    lines = ["## Headline rows over seeds", "", f"Command: `{seeds['command']}`. " + _machine_line(results, "seeds"),
             "", "Each row's shipped recipe (configs/wt2-mini), trained until validation stopped improving, once per "
             "seed; seed s of a student distils from seed s of the float row. The ratio is of the means.", "",
             "| row | seeds | test ppl per seed | mean ± sd | mean / float mean | valid ppl per seed | epochs (best) | "
             "minutes of training |", "|---|---|---|---|---|---|---|---|"]
    for key, row in rows.items():
        runs = row["runs"]
        spread = "" if row["test_ppl_std"] is None else f" ± {row['test_ppl_std']:.2f}"
        ratio = _f(reference and row["test_ppl_mean"] / reference["test_ppl_mean"], ".3f")
        cells = {name: ", ".join(form(run) for run in runs) for name, form in (
            ("seeds", lambda run: str(run["seed"])), ("test", lambda run: f"{run['test_ppl']:.2f}"),
            ("valid", lambda run: f"{run['valid_ppl']:.2f}"),
            ("epochs", lambda run: f"{run['epochs']} ({_f(run['best_epoch'], '.0f')})"),
            ("minutes", lambda run: f"{run['train_seconds'] / 60:.0f}"))}
        lines.append(f"| {key} | {cells['seeds']} | {cells['test']} | {row['test_ppl_mean']:.2f}{spread} | {ratio} | "
                     f"{cells['valid']} | {cells['epochs']} | {cells['minutes']} |")
    return lines


def render_quality(results: dict) -> list[str]:
    """The quality study: every setting screened, its validation curve, the finalist's full run."""
    quality = results["quality"]
    lines = ["## Quality methods: changes to how the 1-bit student is trained", "", _machine_line(results, "quality"),
             "", "Commands:", ""]
    lines += [f"- {family}: `{command}`" for family, command in quality["commands"].items()]
    lines += ["", quality["protocol"], ""]
    for family, entries in quality["families"].items():
        teacher = quality.get("teachers", {}).get(family)
        if teacher:
            lines += [f"Teacher ({family}): `{teacher['run_dir']}`, validation perplexity {teacher['valid_ppl']:.2f}, "
                      f"test {teacher['test_ppl']:.2f} ({teacher['epochs']} epochs, "
                      f"{teacher['train_seconds'] / 60:.0f} min of training).", ""]
        lines += ["| setting | change | best valid ppl | valid / teacher | validation after each pass over the real "
                  "text | sampled tokens | minutes | test ppl |", "|---|---|---|---|---|---|---|---|"]
        winner = quality["winners"].get(family, {}).get("setting")
        for setting, entry in sorted(entries.items(), key=lambda item: item[1]["screen"]["valid_ppl"]):
            for stage in ("screen", "final"):
                run = entry.get(stage)
                if run is None:
                    continue
                change = ", ".join(f"{key}={value}" for key, value in entry.get("changes", {}).items()) or "(none)"
                ratio = _f(teacher and run["valid_ppl"] / teacher["valid_ppl"], ".3f")
                name = f"`{setting}`" + (" **(winner)**" if setting == winner and stage == "final" else "")
                name += " (continued to early stopping)" if stage == "final" else ""
                lines.append(f"| {name} | {change} | {run['valid_ppl']:.2f} | {ratio} | "
                             f"{', '.join(f'{value:.1f}' for value in run['valid_curve'])} | "
                             f"{run.get('sampled_tokens', 0):,} | {run['wall_seconds'] / 60:.0f} | "
                             f"{_f(run['test_ppl'])} |")
        lines.append("")
    return lines


def _seeds_note(row: dict) -> str:
    seeds = row.get("test_ppl_seeds")
    return f" (mean of {len(seeds)} seeds)" if seeds else ""


def render_benchmark(results: dict) -> list[str]:
    bench, rows = results["benchmark"], results["rows"]
    reference = rows[0]
    lines = ["## The comparison on wt2-mini", "", f"Command: `{bench['command']}` ({bench['seconds'] / 60:.0f} min). "
             + _machine_line(results, "benchmark"), "",
             f"Reference: the `{reference['name']}` row (test perplexity {reference['test_ppl']:.2f}, "
             f"{reference['size_bytes']:,} bytes). Every trained row uses its shipped recipe in configs/wt2-mini (each "
             "chosen by the search below), stops when validation stops improving or at its epoch cap, and keeps its "
             "best-validation weights; test perplexity was never used to choose anything.", "",
             "| row | what it is | epochs (best) | test ppl | ppl / float32 | file | compression (file / tensors) "
             "| train tok/s vs float32 | score tok/s vs float32 |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        epochs = f"{row['epochs']} ({_f(row.get('best_epoch'), '.0f')})" if row.get("epochs") is not None else "-"
        counts = _f(row.get("count_compression_ratio"), ".1f", "-")
        lines.append(
            f"| {row['name']} | {row.get('what', '')} | {epochs} | {row['test_ppl']:.2f}{_seeds_note(row)} | "
            f"{row['ppl_ratio']:.3f} | "
            f"{_mb(row['size_bytes'])} | {row['compression_ratio']:.1f}x / {counts}{'x' if counts != '-' else ''} | "
            f"{_f(row.get('train_tps_ratio'), '.2f', '-')} | {_f(row.get('score_tps_ratio'), '.2f', '-')} |")
    caps = ", ".join(f"{recipe.removesuffix('.yaml')} {cap}" for recipe, cap in bench["epoch_caps"].items())
    lines += ["", f"- Epoch caps: {caps}; the PQ rows beside the recipe's m: {bench['short_pq_cap']} "
              "(benchmarks/run.py says how they were chosen). Validation perplexity after each epoch, to see which "
              "rows were still improving when the cap stopped them:"]
    lines += [f"  - {row['name']}: {', '.join(f'{value:.1f}' for value in row['valid_curve'])}"
              for row in rows if row.get("valid_curve")]
    lines += ["- Training speed: tokens/s of training steps on the same batches in one process, interleaved rounds, "
              f"best round each; soft without the teacher: {bench['training_speed_without_teacher']:.2f}x of float32. "
              "Scoring speed: the test stream in fresh processes run alternately, best round.",
              "- KenLM rows: `benchmarks/kenlm_peer.py` (modified Kneser-Ney, order chosen on validation, pruned to "
              "the soft + KD file size; the n-gram restarts at `<s>` on every line, the LSTM carries its state)."]
    sizes = results.get("pq_reference_shape_sizes", {})
    if sizes:
        lines += ["", "At the reference shape (vocabulary 10,000, 2x650), the same layouts (random weights; sizes do "
                  "not depend on them):", "", "| layout | float32 file | packed file | ratio |", "|---|---|---|---|"]
        lines += [f"| {name} | {size['float32_bytes']:,} | {size['packed_bytes']:,} | {size['ratio']:.1f}x |"
                  for name, size in sizes.items()]
    return lines


def render_asr(results: dict) -> list[str]:
    asr, rows = results["asr"], results["asr_rows"]
    lists = asr["lists"]
    lines = ["## Word error rate: rescoring a real recognizer's n-best lists", "",
             f"Command: `{asr['command']}`. " + _machine_line(results, "asr"), "",
             f"Lists from `scripts/asr_nbest/make_nbest.py` (pocketsphinx on flite speech with noise; see its README): "
             f"{lists['dev_utterances']} tuning utterances (wt2-mini valid.txt), {lists['test_utterances']} test "
             f"utterances (test.txt), {lists['mean_hypotheses']:.1f} hypotheses a list on average. A hypothesis scores "
             "`am + fillers + W * lm + P * words + W0 * first-pass lm`; W in "
             f"{asr['lm_weights']}, P in {asr['penalties']} (by 0.5 and 1) and W0 in {asr['first_pass_weights']} were "
             "tuned on the tuning lists, never on the test lists.", "",
             "| rescoring LM | test WER | tuning WER | W | P | W0 |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['name']} | {100 * row['wer']:.2f}% | {100 * row['dev_wer']:.2f}% | "
                     f"{_f(row['lm_weight'], 'g', '-')} | {_f(row['penalty'], 'g', '-')} | "
                     f"{_f(row['first_pass_weight'], 'g', '-')} |")
    return lines


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hf_softbin.training.loop import save_figure

    figure, axis = plt.subplots(figsize=(7.5, 4.8))
    for row in results["rows"]:
        marker = "s" if row["name"].startswith("KenLM") else ("^" if "PQ" in row["name"] else "o")
        axis.scatter(row["size_bytes"] / 1e6, row["test_ppl"], marker=marker)
        axis.annotate(row["name"], (row["size_bytes"] / 1e6, row["test_ppl"]), textcoords="offset points",
                      xytext=(5, 4), fontsize=7)
    axis.set_xscale("log")
    axis.set_xlabel("model file size (MB, log scale)")
    axis.set_ylabel("test perplexity (wt2-mini)")
    axis.grid(True, alpha=0.3)
    save_figure(figure, path, dpi=110)


SECTIONS = (("benchmark", render_benchmark), ("seeds", render_seeds), ("quality", render_quality), ("asr", render_asr), ("search", render_search),
            ("memory", render_memory))


def render(results: dict) -> str:
    lines = ["# Benchmark results", "",
             "Rendered by benchmarks/report.py from benchmarks/results.json; every section names the command that "
             "measured it. Perplexities follow docs/evaluation.md (test stream, `<eos>` at line ends, state carried); "
             "speeds are ratios measured side by side, never absolute times.", ""]
    for key, section in SECTIONS:
        if key in results:
            lines += section(results) + [""]
    return "\n".join(lines)
