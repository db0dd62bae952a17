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
    from hf_softbin.atomic import write_text_atomic

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
            # the vector instructions torch uses: perplexities differ by up to 2% between CPUs that differ in them
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__}


def _f(value, spec=".2f", missing="n/a") -> str:
    return missing if value is None else format(value, spec)


def _mb(size) -> str:
    return "n/a" if size is None else f"{size / 1e6:.2f} MB"


def _machine_line(results: dict, key: str) -> str:
    return _measured_on(results.get("machines", {}).get(key))


def _measured_on(m: dict | None) -> str:
    if not m:
        return ""
    capability = f" ({m['cpu_capability']})" if "cpu_capability" in m else ""  # older records lack it
    return (f"Measured {m['date']} on {m['cpu']}{capability}, {m['cores']} cores, torch threads {m['torch_threads']}; Python "
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


def render_allocator(results: dict) -> list[str]:
    """Training steps with glibc's default and with freed memory kept (benchmarks/allocator.py)."""
    section = results["allocator"]
    best = section["best"]
    default, kept = best["glibc default"], best["freed memory kept"]
    lines = ["## Freed memory kept for the next step", "",
             f"Command: `{section['command']}`. " + _machine_line(results, "allocator"), "",
             f"{section['steps']} training steps in fresh processes, the two settings in turns; each figure is the best "
             f"of {section['rounds']} rounds (the steps alone: not the set-up, nor the evaluation after them).", "",
             "| setting | CPU s | kernel s | page faults | wall s | peak memory |", "|---|---|---|---|---|---|"]
    lines += [f"| {setting} | {run['cpu_seconds']:.1f} | {run['kernel_seconds']:.1f} | {run['page_faults']:,} | "
              f"{run['wall_seconds']:.1f} | {_mb(run['peak_rss_bytes'])} |" for setting, run in best.items()]
    lines += ["", f"Kept vs default: {default['cpu_seconds'] / kept['cpu_seconds']:.2f}x less CPU time, "
              f"{default['wall_seconds'] / kept['wall_seconds']:.2f}x less wall time, "
              f"{kept['peak_rss_bytes'] / default['peak_rss_bytes']:.2f}x the peak memory."]
    return lines


def render_search(results: dict) -> list[str]:
    search = results["search"]
    lines = ["## Recipe search (validation perplexity only)", "", _machine_line(results, "search"), "",
             "Commands:", ""]
    lines += [f"- {family}: `{command}`" for family, commands in search["commands"].items() for command in commands]
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
    commands = {}  # each command, with the rows it measured last
    for key, row in rows.items():
        commands.setdefault(row["command"], []).append(key)
    lines = ["## Headline rows over seeds", "", _machine_line(results, "seeds"), "", "Commands:", "",
             *(f"- {', '.join(keys)}: `{command}`" for command, keys in commands.items()),
             "", "Each row's shipped recipe (configs/wt2-mini; a row named RECIPE+CHANGE: that recipe with the changes "
             "of the quality study named after it, benchmarks/seeds.py `ROW_CHANGES`), trained until validation stopped improving (or an epoch cap: marked `cap`), once "
             "per seed; seed s of a student distils from seed s of the float row "
             "(the ensemble-taught rows: from it and the float row's other seeds). A seed in parentheses is the "
             "training seed a run kept from elsewhere used. The ratio is of the means.", "",
             "| row | seeds | test ppl per seed | mean ± sd | mean / float mean | valid ppl per seed | epochs (best) | "
             "minutes of training |", "|---|---|---|---|---|---|---|---|"]
    for key, row in rows.items():
        runs = row["runs"]
        spread = "" if row["test_ppl_std"] is None else f" ± {row['test_ppl_std']:.2f}"
        ratio = _f(reference and row["test_ppl_mean"] / reference["test_ppl_mean"], ".3f")
        cells = {name: ", ".join(form(run) for run in runs) for name, form in (
            ("seeds", _seed_label), ("test", lambda run: f"{run['test_ppl']:.2f}"),
            ("valid", lambda run: f"{run['valid_ppl']:.2f}"),
            ("epochs", lambda run: f"{run['epochs']} ({_f(run['best_epoch'], '.0f')}"
                                   f"{'' if run.get('stopped_early', True) else ', cap'})"),
            ("minutes", lambda run: f"{run['train_seconds'] / 60:.0f}"))}
        lines.append(f"| {key} | {cells['seeds']} | {cells['test']} | {row['test_ppl_mean']:.2f}{spread} | {ratio} | "
                     f"{cells['valid']} | {cells['epochs']} | {cells['minutes']} |")
    return lines


def _seed_label(run: dict) -> str:
    """The seed, and in parentheses the training seed when a run kept from elsewhere trained with another one."""
    training_seed = run.get("training_seed", run["seed"])
    return str(run["seed"]) + ("" if training_seed == run["seed"] else f" ({training_seed})")


def render_quality(results: dict) -> list[str]:
    """The quality study: every setting screened, its validation curve, the finalist's full run; then what earlier
    teachers gave (a study distils from one teacher, and starts again with another)."""
    quality = results["quality"]
    lines = ["## Quality methods: changes to how the 1-bit student is trained", "", _machine_line(results, "quality"),
             "", "Commands:", ""]
    lines += [f"- {family}: `{command}`" for family, commands in quality["commands"].items() for command in commands]
    lines += ["", quality["protocol"], ""]
    for family, entries in quality["families"].items():
        lines += _quality_table(family, entries, quality.get("teachers", {}).get(family),
                                quality["winners"].get(family, {}).get("setting"))
    for study in quality.get("earlier", []):
        lines += [f"### {study['family']}, with an earlier teacher", "",
                  _measured_on(study["teacher"]["machine"]), "", "Commands:", ""]
        lines += [f"- `{command}`" for command in study["commands"]] + [""]
        lines += _quality_table(study["family"], study["settings"], study["teacher"], study["winner"])
    return lines


def _quality_table(family: str, entries: dict, teacher: dict | None, winner: str | None) -> list[str]:
    lines = []
    if teacher:
        lines += [f"Teacher ({family}): `{teacher['run_dir']}`, validation perplexity {teacher['valid_ppl']:.2f}, "
                  f"test {teacher['test_ppl']:.2f} ({teacher['epochs']} epochs, "
                  f"{teacher['train_seconds'] / 60:.0f} min of training).", ""]
    lines += ["| setting | change | best valid ppl | valid / teacher | validation at each evaluation | sampled "
              "tokens | size | minutes of training | test ppl |", "|---|---|---|---|---|---|---|---|---|"]
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
                         f"{run.get('sampled_tokens', 0):,} | {run['compression_ratio']:.1f}x | "
                         f"{run['train_seconds'] / 60:.0f} | "
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
              "(benchmarks/run.py says how they were chosen). Validation perplexity at each evaluation, to see which "
              "rows were still improving when the cap stopped them: after every epoch, and for a row that also trains "
              "on text sampled from its teacher, after every pass over the real text's worth of steps too:"]
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


def pareto_front(rows: list[dict]) -> list[dict]:
    """The rows no other row beats on both file size and test perplexity (at least as good on both, better on one),
    smallest file first."""
    def beaten(row):
        return any(other["size_bytes"] <= row["size_bytes"] and other["test_ppl"] <= row["test_ppl"]
                   and (other["size_bytes"], other["test_ppl"]) != (row["size_bytes"], row["test_ppl"]) for other in rows)

    return sorted((row for row in rows if not beaten(row)), key=lambda row: row["size_bytes"])


NEAR_ANGLES = (0, 45, -45, 90, -90, 135, -135, 180)  # where a label goes first: beside its marker, no leader line
NEAR_DISTANCE = 5  # points between the marker and such a label
GRID_STEP = 6  # points between the farther places tried, each with a leader line


def place_labels(axis, points: list[tuple[float, float]], names: list[str], fontsize: float = 7) -> list:
    """Annotate each point with its name where the label overlaps no other label, marker, line or legend and stays
    inside the axes, and its leader line (if any) crosses no label: beside the marker if there is room, else at the
    nearest free place on a grid over the whole axes. Labels are placed one by one, the longest first; a label that
    finds no free place is moved to the front and all are placed again, until every label has one (or, after as many
    rounds as labels, the round with the fewest is kept: those labels go beside their marker anyway).
    Returns the annotations."""
    renderer = axis.figure.canvas.get_renderer()
    sizes = []
    for name in names:  # each label's width and height in pixels, measured once
        probe = axis.annotate(name, points[0], fontsize=fontsize)
        extent = text_extent(probe, renderer)
        sizes.append((extent.width * 1.04, extent.height * 1.15))  # a little air around the text
        probe.remove()
    order = sorted(range(len(points)), key=lambda index: -sizes[index][0])
    best = None
    for _ in range(len(points)):
        places, stuck = _places_in_order(axis, points, sizes, order)
        if best is None or len(stuck) < len(best[1]):
            best = (places, stuck)
        if not stuck:
            break
        order = stuck + [index for index in order if index not in stuck]
    pixels = axis.figure.dpi / 72
    annotations = []
    for index, (offset, ha, va, leader) in sorted(best[0].items()):
        annotations.append(axis.annotate(
            names[index], points[index], xytext=(offset[0] / pixels, offset[1] / pixels), textcoords="offset points",
            ha=ha, va=va, fontsize=fontsize,
            arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.5"} if leader else None))
    return annotations


def _places_in_order(axis, points, sizes, order: list[int]) -> tuple[dict, list[int]]:
    """One round of `place_labels`: each label's place (offset in pixels, alignment, leader line or not) by index,
    and the labels that found no free place."""
    import numpy as np

    renderer = axis.figure.canvas.get_renderer()
    frame = axis.get_window_extent(renderer)
    pixels = axis.figure.dpi / 72
    radius = 4 * pixels  # a marker's half width
    centres = axis.transData.transform(np.asarray(points, dtype=float))
    blocked = [np.column_stack([centres - radius, centres + radius])]  # boxes as rows of x0, y0, x1, y1
    for line in axis.get_lines():  # each segment (lines drawn straight between their vertices), as a thin box
        vertices = line.get_transform().transform(line.get_xydata())
        starts, ends = vertices[:-1], vertices[1:]
        blocked.append(np.column_stack([np.minimum(starts, ends) - 1, np.maximum(starts, ends) + 1]))
    if axis.get_legend() is not None:
        blocked.append(np.asarray([axis.get_legend().get_window_extent(renderer).extents]))
    labels = np.zeros((0, 4))  # what a leader line may not cross
    xs = np.arange(frame.x0, frame.x1, GRID_STEP * pixels)
    ys = np.arange(frame.y0, frame.y1, GRID_STEP * pixels)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)  # centres of the farther candidate boxes
    places, stuck = {}, []
    for index in order:
        centre, (width, height) = centres[index], sizes[index]
        near = []  # (offset of the text's anchor from the marker, alignment, offset of the box's centre)
        for angle in np.radians(NEAR_ANGLES):
            direction = np.array([np.cos(angle), np.sin(angle)])
            side = np.where(np.abs(direction) > 0.3, np.sign(direction), 0.0)  # where the box lies from the anchor
            alignment = ({1.0: "left", 0.0: "center", -1.0: "right"}[side[0]],
                         {1.0: "bottom", 0.0: "center", -1.0: "top"}[side[1]])
            anchor = NEAR_DISTANCE * pixels * direction
            near.append((anchor, alignment, anchor + side * [width / 2, height / 2]))
        far = grid[np.argsort(((grid - centre) ** 2).sum(axis=1))] - centre
        offsets = np.concatenate([np.asarray([box_offset for _, _, box_offset in near]), far])
        boxes = np.column_stack([centre + offsets - [width / 2, height / 2], centre + offsets + [width / 2, height / 2]])
        inside = ((boxes[:, 0] >= frame.x0) & (boxes[:, 1] >= frame.y0) & (boxes[:, 2] <= frame.x1)
                  & (boxes[:, 3] <= frame.y1))
        free = inside & ~_overlaps(boxes, np.concatenate(blocked + [labels]))
        for k in np.flatnonzero(free):
            if k < len(near):
                anchor, (ha, va), _ = near[k]
                places[index] = (tuple(anchor), ha, va, False)
            elif _leader_crosses(centre, boxes[k], radius, labels):
                continue
            else:
                places[index] = (tuple(offsets[k]), "center", "center", True)
            labels = np.vstack([labels, boxes[k]])
            break
        else:  # nowhere free: beside the marker anyway
            stuck.append(index)
            places[index] = ((NEAR_DISTANCE * pixels, 0.0), "left", "center", False)
    return places, stuck


def _overlaps(boxes, others):
    """For each of `boxes` (n, 4), whether it overlaps any of `others` (m, 4); boxes as x0, y0, x1, y1."""
    import numpy as np

    if len(others) == 0:
        return np.zeros(len(boxes), dtype=bool)
    return ((boxes[:, None, 0] < others[None, :, 2]) & (boxes[:, None, 2] > others[None, :, 0])
            & (boxes[:, None, 1] < others[None, :, 3]) & (boxes[:, None, 3] > others[None, :, 1])).any(axis=1)


def _leader_crosses(start, box, skip: float, labels) -> bool:
    """Whether the straight line from a marker's centre to the centre of its label's box crosses another label."""
    import numpy as np

    end = (box[:2] + box[2:]) / 2
    steps = np.linspace(0, 1, max(int(np.hypot(*(end - start)) / 2), 2))[:, None]
    samples = start + (end - start) * steps
    outside = ((np.hypot(*(samples - start).T) > skip)
               & ~((samples[:, 0] >= box[0]) & (samples[:, 0] <= box[2]) & (samples[:, 1] >= box[1])
                   & (samples[:, 1] <= box[3])))
    samples = samples[outside]
    return bool(_overlaps(np.column_stack([samples - 0.5, samples + 0.5]), labels).any()) if len(samples) else False


def text_extent(annotation, renderer):
    """Where an annotation's text lies in display pixels, without its leader line."""
    from matplotlib.text import Text

    annotation.update_positions(renderer)
    return Text.get_window_extent(annotation, renderer)


def study_rows(results: dict) -> list[dict]:
    """The quality study's winners trained to early stopping, as rows of the plot: the new frontier beside the
    benchmark's rows (one seed each until benchmarks/seeds.py has run their recipes). A winner that is one seed of a
    row measured over seeds is left to that row's mean."""
    quality = results.get("quality", {})
    averaged = {run["run_dir"] for row in results.get("seeds", {}).get("rows", {}).values() if len(row["runs"]) > 1
                for run in row["runs"]}
    winners = [(winner["setting"], quality["families"].get(family, {}), "")
               for family, winner in quality.get("winners", {}).items() if winner.get("run_dir") not in averaged]
    winners += [(study["winner"], study["settings"], " (earlier teacher)")
                for study in quality.get("earlier", []) if study["winner"]]
    rows = []
    for setting, entries, which in winners:
        final = entries.get(setting, {}).get("final")
        if final and final.get("model_bytes"):
            rows.append({"name": f"study: {setting}{which}", "size_bytes": final["model_bytes"],
                         "test_ppl": final["test_ppl"], "study": True})
    return rows


def seed_rows(results: dict) -> list[dict]:
    """Rows measured over two seeds or more that the benchmark's table does not already show as its means, as rows of
    the plot at their mean (the float seeds give the reference on the machine they ran on)."""
    folded = {row["key"] for row in results.get("rows", []) if "test_ppl_seeds" in row}
    rows = []
    for key, row in results.get("seeds", {}).get("rows", {}).items():
        runs = row["runs"]
        if key in folded or len(runs) < 2 or not all("model_bytes" in run for run in runs):
            continue
        rows.append({"name": f"{key}: mean of {len(runs)} seeds", "size_bytes": runs[0]["model_bytes"],
                     "test_ppl": row["test_ppl_mean"], "seeds": True})
    return rows


def ppl_vs_size_figure(rows: list[dict]):
    """Test perplexity against file size (log scale), every row labelled, and the Pareto front as a staircase; the
    quality study's rows (`study`) are stars, means over seeds (`seeds`) diamonds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5), dpi=PLOT_DPI)
    points = [(row["size_bytes"] / 1e6, row["test_ppl"]) for row in rows]
    front = pareto_front(rows)
    legend = {"study": "quality study winner, trained to early stopping (one seed)",
              "seeds": "mean over seeds (benchmarks/seeds.py; its machine is in RESULTS.md)"}
    for row, (x, y) in zip(rows, points):
        marker = ("*" if row.get("study") else "D" if row.get("seeds") else "s" if row["name"].startswith("KenLM")
                  else "^" if "PQ" in row["name"] else "o")
        kind = next((kind for kind in legend if row.get(kind)), None)
        label = legend.pop(kind) if kind in legend else None  # one legend entry for each kind
        axis.scatter(x, y, marker=marker, s=30, zorder=3, edgecolors="black" if row in front else "none", label=label)
    stairs = []  # across from each front row to the next one's size, then down to its perplexity
    for row, following in zip(front, front[1:] + [None]):
        x, y = row["size_bytes"] / 1e6, row["test_ppl"]
        stairs += [(x, y), (following["size_bytes"] / 1e6 if following else x * 1.5, y)]
    axis.plot(*zip(*stairs), linestyle="--", color="0.4", lw=1, zorder=2,
              label="Pareto front: no row is both smaller and lower")
    axis.set_xscale("log")
    xs, ys = [x for x, _ in points], [y for _, y in points]
    axis.set_xlim(min(xs) / 2.5, max(xs) * 6)  # room for labels on either side
    spread = max(ys) - min(ys) or 1.0
    axis.set_ylim(min(ys) - 0.15 * spread, max(ys) + 0.12 * spread)
    axis.set_xlabel("model file size (MB, log scale)")
    axis.set_ylabel("test perplexity (wt2-mini)")
    axis.grid(True, alpha=0.3)
    axis.legend(loc="upper right", fontsize=7, frameon=False)
    figure.tight_layout()
    place_labels(axis, points, [row["name"] for row in rows])
    return figure


PLOT_DPI = 110


def plot(results: dict, path: str) -> None:
    from hf_softbin.plotting import save_figure

    save_figure(ppl_vs_size_figure(results["rows"] + study_rows(results) + seed_rows(results)), path, dpi=PLOT_DPI)


SECTIONS = (("benchmark", render_benchmark), ("seeds", render_seeds), ("quality", render_quality), ("asr", render_asr), ("search", render_search),
            ("memory", render_memory), ("allocator", render_allocator))


def render(results: dict) -> str:
    lines = ["# Benchmark results", "",
             "Rendered by benchmarks/report.py from benchmarks/results.json; every section names the command that "
             "measured it. Perplexities follow docs/evaluation.md (test stream, `<eos>` at line ends, state carried); "
             "speeds are ratios measured side by side, never absolute times.", ""]
    for key, section in SECTIONS:
        if key in results:
            lines += section(results) + [""]
    return "\n".join(lines)
