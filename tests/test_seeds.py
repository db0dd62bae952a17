"""benchmarks/seeds.py: every finished seed is recorded at once; the headline rows change when all their seeds ran."""

import json
import sys
from argparse import Namespace

import pytest

from hf_softbin.training.recipe import load_run_config

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import report  # noqa: E402  (benchmarks/report.py)
import seeds  # noqa: E402  (benchmarks/seeds.py)


COMMAND = "python benchmarks/seeds.py --rows float"


def run(seed, test_ppl, stopped_early=True):
    return {"seed": seed, "run_dir": f"runs/s{seed}", "test_ppl": test_ppl, "valid_ppl": test_ppl - 1, "epochs": 21,
            "best_epoch": 21, "stopped_early": stopped_early, "train_seconds": 600.0, "compression_ratio": 1.0,
            "valid_curve": [test_ppl]}


def test_a_row_takes_the_mean_of_its_seeds_only_once_every_seed_has_run(tmp_path):
    rows = [{"key": "float", "name": "float", "test_ppl": 166.78, "ppl_ratio": 1.0, "size_bytes": 24_675_376},
            {"key": "soft-kd", "name": "soft + KD", "test_ppl": 175.0, "ppl_ratio": 175.0 / 166.78,
             "size_bytes": 869_000},
            {"name": "KenLM 5-gram (unpruned)", "test_ppl": 238.3, "ppl_ratio": 238.3 / 166.78,
             "size_bytes": 3_030_000}]  # run.py writes its KenLM rows without a key
    (tmp_path / "results.json").write_text(json.dumps({"rows": rows}))
    args = Namespace(results_dir=str(tmp_path), seeds=[1, 2, 3])
    partial = {"float": seeds.summarize([run(1, 166.0), run(2, 168.0, stopped_early=False)], COMMAND)}
    seeds.update_results(args, partial)
    results = report.load(str(tmp_path))
    assert results["rows"] == rows  # two of three seeds: the headline is untouched
    assert [r["test_ppl"] for r in results["seeds"]["rows"]["float"]["runs"]] == [166.0, 168.0]  # but recorded
    assert "21 (21, cap)" in (tmp_path / "RESULTS.md").read_text()  # the capped run says so
    every_float_seed = {"float": seeds.summarize([run(1, 166.0), run(2, 168.0), run(3, 170.0)], COMMAND)}
    seeds.update_results(args, every_float_seed)
    assert report.load(str(tmp_path))["rows"] == rows  # the students' rows have no seeds yet: nothing changes
    students_command = "python benchmarks/seeds.py --rows soft-kd pq-m5"
    students = {key: seeds.summarize([run(1, 174.0), run(2, 175.0), run(3, 176.0)], students_command)
                for key in ("soft-kd", "pq-m5")}
    seeds.update_results(args, {**every_float_seed, **students})
    text = (tmp_path / "RESULTS.md").read_text()
    assert f"- float: `{COMMAND}`" in text and f"- soft-kd, pq-m5: `{students_command}`" in text  # each row's
    float_row, soft, kenlm = report.load(str(tmp_path))["rows"]
    assert float_row["test_ppl_seeds"] == [166.0, 168.0, 170.0] and float_row["test_ppl"] == 168.0
    assert soft["test_ppl_seeds"] == [174.0, 175.0, 176.0] and soft["ppl_ratio"] == 175.0 / 168.0
    assert "test_ppl_seeds" not in kenlm and kenlm["ppl_ratio"] == 238.3 / 168.0  # every ratio to the float mean


def finished(directory, training_seed=1234):
    """A run directory as training leaves it, as far as seeds.py reads it."""
    directory.mkdir(parents=True)
    metrics = {"test_ppl": 170.0, "valid_ppl": 169.0, "epochs": 7, "best_epoch": 5.3, "stopped_early": True,
               "train_seconds": 60.0, "compression_ratio": 28.4, "model_bytes": 867_488,
               "history": [{"valid_ppl": 169.0}],
               "config": {"training": {"seed": training_seed}}}
    (directory / "metrics.json").write_text(json.dumps(metrics))


@pytest.mark.parametrize("row", seeds.ENSEMBLE_ROWS)
def test_an_ensemble_row_starts_from_its_seeds_float_model_and_distils_from_every_seed(tmp_path, monkeypatch, row):
    floats = str(tmp_path / "float-s{seed}")
    for seed in (1, 2, 3):
        finished(tmp_path / f"float-s{seed}", training_seed=seed)
    finished(tmp_path / "runs" / row / "s1")  # kept from elsewhere: trained with the default seed
    calls = []

    def fake_train(recipe, directory, overrides, resume, log):
        calls.append((recipe, overrides))
        finished(tmp_path / directory, training_seed=overrides["training.seed"])

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(seeds.search, "train", fake_train)
    seeds.main(["--rows", row, "--seeds", "1", "2", "3", "--runs-dir", "runs", "--float-dirs", floats,
                "--results-dir", str(tmp_path), "--log", str(tmp_path / "log")])
    assert [recipe for recipe, _ in calls] == [seeds.ROWS[row]] * 2  # seed 1 had finished
    second = calls[0][1]
    assert second["training.seed"] == 2 and second["distill.teacher"] == floats.format(seed=2)
    assert second["distill.ensemble"] == f"[{floats.format(seed=1)},{floats.format(seed=3)}]"
    changes = seeds.ROW_CHANGES.get(row, {})  # a RECIPE+CHANGE row trains its recipe with that change
    assert {key: second[key] for key in changes} == changes
    assert set(second) - set(changes) == {"training.seed", "training.log_with", "training.log_every",
                                          "distill.teacher", "distill.ensemble"}  # nothing else changes
    runs = report.load(str(tmp_path))["seeds"]["rows"][row]["runs"]
    assert [(run["seed"], run["training_seed"]) for run in runs] == [(1, 1234), (2, 2), (3, 3)]
    assert f"| {row} | 1 (1234), 2, 3 |" in (tmp_path / "RESULTS.md").read_text()


def test_the_shipped_two_plane_recipe_is_the_row_measured_over_seeds():
    """configs/*/soft-kd-ensemble-two-plane.yaml ships what the seeds row measured: the ensemble recipe with the row's
    changes, nothing more and nothing less."""
    row = "soft-kd-ensemble+two-plane-output+ramp1+no-epoch-end-evaluation"
    recipes = REPO_ROOT / "configs" / "wt2-mini"
    changes = {key: str(value) for key, value in seeds.ROW_CHANGES[row].items()}  # as search.train passes them
    measured = load_run_config(str(recipes / seeds.ROWS[row]), changes)
    shipped = load_run_config(str(recipes / "soft-kd-ensemble-two-plane.yaml"))
    assert shipped.model["output_residual_rows"] == 0.75 and not shipped.training.eval_at_epoch_end
    for section in ("data", "model", "training", "distill"):
        assert getattr(shipped, section) == getattr(measured, section), section


def test_an_ensemble_row_needs_the_float_rows_other_seeds_first(tmp_path):
    finished(tmp_path / "float-s1", training_seed=1)
    args = Namespace(seeds=[1, 2], float_dirs=str(tmp_path / "float-s{seed}"), runs_dir=str(tmp_path))
    with pytest.raises(SystemExit, match="pq-m5-ensemble seed 1 .*float-s2"):
        seeds.ensemble_members(args, "pq-m5-ensemble", 1)
