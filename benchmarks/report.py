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
RESULTS_JSON = os.path.join(HERE, "results.json")
RESULTS_MD = os.path.join(HERE, "RESULTS.md")


def load() -> dict:
    if not os.path.exists(RESULTS_JSON):
        return {}
    with open(RESULTS_JSON, encoding="utf-8") as handle:
        return json.load(handle)


def update(key: str, value) -> None:
    """Store one section's results (with the machine it ran on) and render RESULTS.md again."""
    from hf_softbin.models.softbin_lstm.checkpoint import write_text_atomic

    results = load()
    results[key] = value
    results.setdefault("machines", {})[key] = machine()
    write_text_atomic(RESULTS_JSON, json.dumps(results, indent=1) + "\n")
    write_text_atomic(RESULTS_MD, render(results))


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
    lines = ["## Memory: packed models resident in 1 bit", "", f"Command: `{memory['command']}`. "
             + _machine_line(results, "memory"), "",
             "Resident weight bytes (`get_memory_footprint()`: every parameter and buffer) and the resident set a "
             "loaded model adds to a process that has already imported torch, transformers and hf_softbin, after "
             f"one forward pass over every word (fresh processes, median of {memory['rounds']}). Random weights: "
             "memory does not depend on their values.", "",
             "| shape | mode | resident weights | of float32 | RSS added by loading |", "|---|---|---|---|---|"]
    for shape, entry in memory["shapes"].items():
        for mode, row in entry["modes"].items():
            lines.append(f"| {shape} | {mode} | {row['footprint_bytes']:,} B | "
                         f"{row['footprint_fraction_of_float32']:.3f} (1/{1 / row['footprint_fraction_of_float32']:.1f}) | "
                         f"{row['rss_added_bytes'] / 2**20:.1f} MiB |")
    lines += ["", "Speed of packed-resident relative to packed-unpacked, side by side in one process (alternating "
              "rounds, best round each): batched scoring of wt2-mini validation sentences (batches of 64) and "
              "single-stream greedy generation of 100 tokens.", "",
              "| shape | batched scoring | single-stream generation |", "|---|---|---|"]
    for shape, entry in memory["shapes"].items():
        speed = entry["speed"]
        lines.append(f"| {shape} | {speed['batched_scoring_ratio']:.2f}x | {speed['generation_ratio']:.2f}x |")
    return lines


def render_search(results: dict) -> list[str]:
    search = results["search"]
    lines = ["## Recipe search (validation perplexity only)", "", f"Command: `{search['command']}`. "
             + _machine_line(results, "search"), "", search["protocol"], "",
             "| family | setting | screening valid ppl (epochs) | converged valid ppl | epochs (best) | test ppl |",
             "|---|---|---|---|---|---|"]
    for family, entries in search["families"].items():
        winner = search["winners"].get(family, {}).get("setting")
        for setting, entry in sorted(entries.items(), key=lambda item: item[1]["screen"]["valid_ppl"]):
            screen, final = entry["screen"], entry.get("final")
            mark = " **(winner)**" if setting == winner else ""
            lines.append(
                f"| {family} | `{setting}`{mark} | {screen['valid_ppl']:.2f} ({screen['epochs']}) | "
                f"{_f(final and final['valid_ppl'])} | "
                f"{'' if not final else str(final['epochs']) + ' (' + _f(final['best_epoch'], '.0f') + ')'} | "
                f"{_f(final and final['test_ppl'])} |")
    return lines


SECTIONS = (("search", render_search), ("memory", render_memory))


def render(results: dict) -> str:
    lines = ["# Benchmark results", "",
             "Rendered by benchmarks/report.py from benchmarks/results.json; every section names the command that "
             "measured it. Perplexities follow docs/evaluation.md (test stream, `<eos>` at line ends, state carried); "
             "speeds are ratios measured side by side, never absolute times.", ""]
    for key, section in SECTIONS:
        if key in results:
            lines += section(results) + [""]
    return "\n".join(lines)
