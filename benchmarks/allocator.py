#!/usr/bin/env python
"""Training steps with and without freed memory kept for the next step (hf_softbin/allocator.py).

    python benchmarks/allocator.py --steps 40 --rounds 2 --set distill.teacher=runs/quality/teacher-s1 \
        --set "distill.ensemble=[runs/quality/teacher-s2,runs/quality/teacher-s3]"

Each measurement is a fresh process (glibc's setting holds for a whole process) that trains `--steps` steps of the
recipe and reports what its training steps alone took: CPU time, kernel time, page faults and wall time, and the
process's peak memory. The two settings take turns, round after round; each figure is the best of the rounds.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import memory_bytes  # noqa: E402  (benchmarks/measure.py)
import report  # noqa: E402  (benchmarks/report.py, beside this script)

SETTINGS = ("glibc default", "freed memory kept")


def train_steps(recipe: str, overrides: dict, keep_freed: bool) -> dict:
    """The child process: train the steps and measure them (not the set-up, nor the evaluation after them)."""
    from hf_softbin.allocator import reuse_freed_memory
    from hf_softbin.training import loop
    from hf_softbin.training.recipe import load_run_config

    if keep_freed and not reuse_freed_memory():
        raise SystemExit("this C library has no mallopt: nothing to compare")
    spent = {"cpu_seconds": 0.0, "kernel_seconds": 0.0, "page_faults": 0, "wall_seconds": 0.0}

    class MeasuredRun(loop.TrainingRun):
        def train_epoch(self, stop):
            before, began = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            super().train_epoch(stop)
            after = resource.getrusage(resource.RUSAGE_SELF)
            spent["wall_seconds"] += time.perf_counter() - began
            spent["cpu_seconds"] += (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
            spent["kernel_seconds"] += after.ru_stime - before.ru_stime
            spent["page_faults"] += after.ru_minflt - before.ru_minflt

        def finish(self):
            return {**spent, "peak_rss_bytes": memory_bytes("VmHWM")}

    return MeasuredRun(load_run_config(recipe, overrides)).run()


def measure(args, keep_freed: bool) -> dict:
    with tempfile.TemporaryDirectory() as output_dir:
        overrides = {**args.extra, "training.max_steps": str(args.steps), "training.eval_every": str(10 * args.steps),
                     "training.log_with": "null", "output_dir": output_dir}
        child = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(
            {"recipe": args.recipe, "overrides": overrides, "keep_freed": keep_freed})]
        done = subprocess.run(child, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"the measured run failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default=os.path.join("configs", "wt2-mini", "soft-kd-ensemble.yaml"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a recipe override")
    parser.add_argument("--results-dir", default=report.HERE, help="where results.json and RESULTS.md go")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        task = json.loads(args.child)
        print(json.dumps(train_steps(task["recipe"], task["overrides"], task["keep_freed"])))
        return 0
    args.extra = dict(item.split("=", 1) for item in args.set)
    runs = {setting: [] for setting in SETTINGS}
    for _ in range(args.rounds):
        for setting in SETTINGS:
            runs[setting].append(measure(args, keep_freed=setting == SETTINGS[1]))
            print(setting, runs[setting][-1], flush=True)
    best = {setting: {key: min(run[key] for run in measured) for key in measured[0]}
            for setting, measured in runs.items()}
    command = " ".join(["python benchmarks/allocator.py", *(sys.argv[1:] if argv is None else argv)])
    report.update({"allocator": {"command": command, "steps": args.steps, "rounds": args.rounds, "best": best}},
                  args.results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
