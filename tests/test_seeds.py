"""benchmarks/seeds.py: every finished seed is recorded at once; the headline rows change when all their seeds ran."""

import json
import sys
from argparse import Namespace

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import report  # noqa: E402  (benchmarks/report.py)
import seeds  # noqa: E402  (benchmarks/seeds.py)


def run(seed, test_ppl, stopped_early=True):
    return {"seed": seed, "run_dir": f"runs/s{seed}", "test_ppl": test_ppl, "valid_ppl": test_ppl - 1, "epochs": 21,
            "best_epoch": 21, "stopped_early": stopped_early, "train_seconds": 600.0, "compression_ratio": 1.0,
            "valid_curve": [test_ppl]}


def test_a_row_takes_the_mean_of_its_seeds_only_once_every_seed_has_run(tmp_path):
    rows = [{"key": "float", "name": "float", "test_ppl": 166.78, "ppl_ratio": 1.0, "size_bytes": 24_675_376},
            {"key": "soft-kd", "name": "soft + KD", "test_ppl": 175.0, "ppl_ratio": 175.0 / 166.78,
             "size_bytes": 869_000}]
    (tmp_path / "results.json").write_text(json.dumps({"rows": rows}))
    args = Namespace(results_dir=str(tmp_path), command="python benchmarks/seeds.py", seeds=[1, 2, 3])
    partial = {"float": seeds.summarize([run(1, 166.0), run(2, 168.0, stopped_early=False)])}
    seeds.update_results(args, partial)
    results = report.load(str(tmp_path))
    assert results["rows"] == rows  # two of three seeds: the headline is untouched
    assert [r["test_ppl"] for r in results["seeds"]["rows"]["float"]["runs"]] == [166.0, 168.0]  # but recorded
    assert "21 (21, cap)" in (tmp_path / "RESULTS.md").read_text()  # the capped run says so
    every_float_seed = {"float": seeds.summarize([run(1, 166.0), run(2, 168.0), run(3, 170.0)])}
    seeds.update_results(args, every_float_seed)
    assert report.load(str(tmp_path))["rows"] == rows  # the students' rows have no seeds yet: nothing changes
    students = {key: seeds.summarize([run(1, 174.0), run(2, 175.0), run(3, 176.0)]) for key in ("soft-kd", "pq-m5")}
    seeds.update_results(args, {**every_float_seed, **students})
    float_row, soft = report.load(str(tmp_path))["rows"]
    assert float_row["test_ppl_seeds"] == [166.0, 168.0, 170.0] and float_row["test_ppl"] == 168.0
    assert soft["test_ppl_seeds"] == [174.0, 175.0, 176.0] and soft["ppl_ratio"] == 175.0 / 168.0
