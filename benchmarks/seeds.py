#!/usr/bin/env python
"""Recipes over several seeds: the headline rows (the float model, the shipped soft + KD recipe and the shipped PQ
recipe), and the soft + KD and PQ students taught by an ensemble of the float row's seeds.

    python benchmarks/seeds.py --seeds 1 2 3            # the headline rows, three seeds (many hours on 2 CPU cores)
    python benchmarks/seeds.py --rows float --seeds 1   # one row, one seed
    python benchmarks/seeds.py --rows soft-kd-ensemble pq-m5-ensemble --seeds 1 2 3   # after the float row's seeds

Perplexities move by about 2% between seeds and between machines, so a headline ratio is a ratio of means. Seed s of
each student distils from seed s of the float row (its teacher), so the students' spread includes their teachers';
an ensemble-taught student's seed s starts from float seed s and distils from it with the other seeds asked for.
Every run trains its recipe from configs/wt2-mini unchanged but for the seed, the teacher and the output directory
(and, for a row named RECIPE+CHANGE, that change of the quality study), until validation stops improving (or its
recipe's epoch cap). A run whose metrics.json exists is kept (the command continues where it stopped); each finished
run is written into benchmarks/results.json at once: the `seeds` section (per row: every seed's test and validation
perplexity, epochs and training time) and, in the benchmark's `rows`, `test_ppl_seeds` with `test_ppl` their mean
(and every row's ratio to the float row's mean).
"""

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402  (benchmarks/report.py, beside this script)
import search  # noqa: E402  (benchmarks/search.py: one way to run a recipe)

# Each row's recipe in configs/wt2-mini.
ROWS = {"float": "teacher.yaml", "soft-kd": "soft-kd.yaml", "pq-m5": "pq-soft-kd.yaml",
        "soft-kd-ensemble": "soft-kd-ensemble.yaml", "pq-m5-ensemble": "pq-soft-kd-ensemble.yaml"}
# Rows that are a recipe with a change of the quality study, measured over seeds beside the recipe itself.
STUDY_METHODS = search.method_variants("", [])  # the quality study's changes of method, named "+METHOD"
# the study's best stack: a second sign plane on the output layer's frequent words, paid for by a PQ embedding (28.9x),
# and progressive binarization over the first epoch
BEST_STACK = {**STUDY_METHODS["+two-plane-output"], **STUDY_METHODS["+ramp1"]}
# evaluated on the pass schedule only: five evaluations of patience are five passes' worth of steps
PASS_EVALUATIONS = {"training.eval_at_epoch_end": False}
ROW_CHANGES = {"soft-kd-ensemble+no-ema": {"training.ema_decay": 0.0},  # the ensemble recipe before weight averaging
               "soft-kd-ensemble+two-plane-output+ramp1": BEST_STACK,
               "soft-kd-ensemble+no-epoch-end-evaluation": PASS_EVALUATIONS,
               # shipped as soft-kd-ensemble-two-plane.yaml (tests/test_seeds.py holds the two equal)
               "soft-kd-ensemble+two-plane-output+ramp1+no-epoch-end-evaluation": {**BEST_STACK, **PASS_EVALUATIONS}}
ROWS |= {row: ROWS[row.split("+")[0]] for row in ROW_CHANGES}
# The rows taught by an ensemble of the float row's seeds: the ensemble recipes, with or without a change.
ENSEMBLE_ROWS = tuple(row for row in ROWS if row.split("+")[0].endswith("-ensemble"))
# The rows benchmarks/run.py trains (the key of the benchmark row each one updates). The ensemble-taught rows need
# three float models, so the benchmark has no row for them.
HEADLINE = ("float", "soft-kd", "pq-m5")


def run_dir(args, row: str, seed: int) -> str:
    if row == "float" and args.float_dirs:
        return args.float_dirs.format(seed=seed)
    return os.path.join(args.runs_dir, row, f"s{seed}")


def train_seed(args, row: str, seed: int) -> dict:
    directory = run_dir(args, row, seed)
    metrics_file = os.path.join(directory, "metrics.json")
    if not os.path.exists(metrics_file):
        overrides = {"training.seed": seed, "training.log_with": None, "training.log_every": 100,
                     **ROW_CHANGES.get(row, {})}
        if row != "float":
            teacher = run_dir(args, "float", seed)
            if not os.path.exists(os.path.join(teacher, "metrics.json")):
                raise SystemExit(f"{row} seed {seed} distils from the float row's seed {seed}: train it first "
                                 f"({teacher} has no metrics.json)")
            overrides["distill.teacher"] = teacher
            if row in ENSEMBLE_ROWS:
                overrides["distill.ensemble"] = "[" + ",".join(ensemble_members(args, row, seed)) + "]"
        print(f"[{row}] training seed {seed} in {directory}", flush=True)
        search.train(ROWS[row], directory, overrides, os.path.isdir(os.path.join(directory, "checkpoint")), args.log)
    with open(metrics_file, encoding="utf-8") as handle:
        metrics = json.load(handle)
    # the seed the run trained with (a run kept from elsewhere, e.g. a search's finalist, may have used another)
    return {"seed": seed, "training_seed": metrics["config"]["training"]["seed"],
            "run_dir": os.path.relpath(os.path.realpath(directory)),  # where it trained (a kept run is a link to it)
            "test_ppl": metrics["test_ppl"], "valid_ppl": metrics["valid_ppl"], "epochs": metrics["epochs"],
            "best_epoch": metrics["best_epoch"], "stopped_early": metrics["stopped_early"],
            "train_seconds": metrics["train_seconds"], "compression_ratio": metrics["compression_ratio"],
            "model_bytes": metrics["model_bytes"],
            "valid_curve": [round(point["valid_ppl"], 2) for point in metrics["history"]]}


def ensemble_members(args, row: str, seed: int) -> list[str]:
    """The float row's other seeds, which an ensemble-taught row's seed `seed` averages with its teacher."""
    members = [run_dir(args, "float", other) for other in args.seeds if other != seed]
    missing = [member for member in members if not os.path.exists(os.path.join(member, "metrics.json"))]
    if not members or missing:
        raise SystemExit(f"{row} seed {seed} distils from the float row's other seeds too: ask for two "
                         f"seeds or more and train them first ({', '.join(missing) or 'no other seed'})")
    return members


def summarize(runs: list[dict], command: str) -> dict:
    """A row: its runs, their mean and spread, and the command that measured it."""
    tests = [run["test_ppl"] for run in runs]
    return {"runs": runs, "test_ppl_mean": statistics.mean(tests),
            "test_ppl_std": statistics.stdev(tests) if len(tests) > 1 else None, "command": command}


def update_results(args, seeds: dict) -> None:
    """The `seeds` section (every finished run, at once), and the benchmark's headline rows once every one of them
    has every seed asked for: test_ppl = the mean over seeds. The rows change together, since every ratio is to the
    float row: a row's headline figure is never a partial mean, nor a ratio of a new mean to an older single run."""
    results = report.load(args.results_dir)
    sections = {"seeds": {"rows": seeds}}
    rows = results.get("rows")
    complete = {key for key, row in seeds.items() if {run["seed"] for run in row["runs"]} >= set(args.seeds)}
    if rows and complete >= set(HEADLINE):
        for row in rows:
            if row.get("key") in complete & set(HEADLINE):  # the KenLM rows have no key
                measured = seeds[row["key"]]
                row["test_ppl_seeds"] = [run["test_ppl"] for run in measured["runs"]]
                row["test_ppl"] = measured["test_ppl_mean"]
        reference = next(row for row in rows if row["key"] == "float")
        for row in rows:
            row["ppl_ratio"] = row["test_ppl"] / reference["test_ppl"]
        sections["rows"] = rows
    report.update(sections, args.results_dir)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(HEADLINE))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--runs-dir", default=os.path.join("runs", "seeds"))
    parser.add_argument("--float-dirs", help="where the float row's seeds are (or go), with {seed}, e.g. "
                                             "runs/quality/teacher-s{seed}")
    parser.add_argument("--results-dir", default=report.HERE, help="where results.json and RESULTS.md go")
    parser.add_argument("--log", default=os.path.join("runs", "seeds", "seeds.log"))
    args = parser.parse_args(argv)
    args.command = " ".join(["python benchmarks/seeds.py", *(sys.argv[1:] if argv is None else argv)])
    os.makedirs(os.path.dirname(os.path.abspath(args.log)), exist_ok=True)
    seeds = report.load(args.results_dir).get("seeds", {}).get("rows", {})
    for row in args.rows:
        runs = {run["seed"]: run for run in seeds.get(row, {}).get("runs", [])}
        for seed in args.seeds:
            runs[seed] = train_seed(args, row, seed)
            seeds[row] = summarize([runs[key] for key in sorted(runs)], args.command)
            update_results(args, seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
