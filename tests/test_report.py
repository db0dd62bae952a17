"""benchmarks/report.py's size-perplexity plot: every row labelled where no label overlaps another or a marker, and the
Pareto front computed from the rows."""

import json
import random
import sys

import numpy
import pytest
from matplotlib.markers import MarkerStyle

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import report  # noqa: E402  (benchmarks/report.py)


def row(name, size_bytes, test_ppl):
    return {"name": name, "size_bytes": size_bytes, "test_ppl": test_ppl}


def test_the_pareto_front_holds_the_rows_nothing_beats_on_both_size_and_perplexity():
    rows = [row("big and best", 9e6, 100.0), row("small", 1e6, 200.0), row("beaten", 3e6, 210.0),
            row("middle", 3e6, 150.0), row("same size, worse", 9e6, 101.0), row("tie with small", 1e6, 200.0)]
    assert [r["name"] for r in report.pareto_front(rows)] == ["small", "tie with small", "middle", "big and best"]


def label_boxes(figure):
    axis = figure.axes[0]
    renderer = figure.canvas.get_renderer()
    return axis, renderer, {text.get_text(): report.text_extent(text, renderer) for text in axis.texts}


def assert_labels_are_clear(figure, rows):
    axis, renderer, boxes = label_boxes(figure)
    assert sorted(boxes) == sorted(r["name"] for r in rows)  # every row labelled once
    frame = axis.get_window_extent(renderer)
    names = list(boxes)
    for i, name in enumerate(names):
        box = boxes[name]
        assert frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1), name
        for other in names[i + 1:]:
            assert not box.overlaps(boxes[other]), (name, other)
        for r in rows:
            x, y = axis.transData.transform((r["size_bytes"] / 1e6, r["test_ppl"]))
            assert not box.contains(x, y), (name, "covers the marker of", r["name"])


def test_the_committed_results_plot_without_overlapping_labels():
    rows = json.loads((REPO_ROOT / "benchmarks" / "results.json").read_text())["rows"]
    figure = report.ppl_vs_size_figure(rows)
    assert_labels_are_clear(figure, rows)
    front = {r["name"] for r in report.pareto_front(rows)}
    assert "soft + KD" in front and "soft" not in front  # soft + KD is as small and better


def test_the_quality_studys_finalists_join_the_plot_beside_the_benchmark_rows():
    results = json.loads((REPO_ROOT / "benchmarks" / "results.json").read_text())
    final = {"valid_ppl": 170.0, "test_ppl": 160.0, "model_bytes": 860_000}
    results["quality"] = {"winners": {"quality": {"setting": "sampled3x"}, "pq": {"setting": "m5"}},
                          "families": {"quality": {"sampled3x": {"screen": {}, "final": final}},
                                       "pq": {"m5": {"screen": {}}}},  # the PQ winner was only screened
                          "earlier": [{"winner": "sampled1x", "settings": {"sampled1x": {
                              "screen": {}, "final": {**final, "test_ppl": 172.0}}}}]}
    added = report.study_rows(results)
    assert added == [{"name": "study: sampled3x", "size_bytes": 860_000, "test_ppl": 160.0, "study": True},
                     {"name": "study: sampled1x (earlier teacher)", "size_bytes": 860_000, "test_ppl": 172.0,
                      "study": True}]
    rows = results["rows"] + added
    figure = report.ppl_vs_size_figure(rows)
    assert_labels_are_clear(figure, rows)
    assert "study: sampled3x" in {r["name"] for r in report.pareto_front(rows)}
    style = MarkerStyle("*")
    star = style.get_path().transformed(style.get_transform()).vertices  # as a scatter series draws it
    drawn = [collection.get_paths()[0].vertices for collection in figure.axes[0].collections]
    assert sum(numpy.array_equal(vertices, star) for vertices in drawn) == 2  # each study row, as a star


def test_a_study_winner_that_is_one_seed_of_a_mean_is_plotted_only_in_that_mean():
    final = {"valid_ppl": 170.0, "test_ppl": 169.3, "model_bytes": 867_488}
    results = {"quality": {"winners": {"quality": {"setting": "sampled1x+ensemble3", "run_dir": "runs/q/ensemble3"},
                                       "pq": {"setting": "m5", "run_dir": "runs/q/m5"}},
                           "families": {"quality": {"sampled1x+ensemble3": {"final": final}},
                                        "pq": {"m5": {"final": {**final, "model_bytes": 466_080}}}}},
               "seeds": {"rows": {"soft-kd-ensemble": {"runs": [{"run_dir": "runs/q/ensemble3"},
                                                                {"run_dir": "runs/seeds/soft-kd-ensemble/s2"}]},
                                  "pq-m5-ensemble": {"runs": [{"run_dir": "runs/q/m5"}]}}}}  # one seed: no mean
    assert [row["name"] for row in report.study_rows(results)] == ["study: m5"]


def test_rows_measured_over_seeds_join_the_plot_at_their_mean_unless_the_table_shows_it():
    results = json.loads((REPO_ROOT / "benchmarks" / "results.json").read_text())

    def measured(*tests, model_bytes=867_488):
        runs = [{"seed": seed, "test_ppl": test, "model_bytes": model_bytes} for seed, test in enumerate(tests, 1)]
        return {"runs": runs, "test_ppl_mean": sum(tests) / len(tests)}

    results["seeds"] = {"rows": {"float": measured(168.0, 166.0, model_bytes=24_680_000),
                                 "soft-kd-ensemble": measured(169.0, 170.0, 168.0),
                                 "soft-kd": measured(172.0)}}  # one seed: not a mean yet
    for row in results["rows"]:
        row.pop("test_ppl_seeds", None)
    added = report.seed_rows(results)
    assert added == [{"name": "float: mean of 2 seeds", "size_bytes": 24_680_000, "test_ppl": 167.0, "seeds": True},
                     {"name": "soft-kd-ensemble: mean of 3 seeds", "size_bytes": 867_488, "test_ppl": 169.0,
                      "seeds": True}]
    next(row for row in results["rows"] if row["key"] == "float")["test_ppl_seeds"] = [168.0, 166.0]
    assert [row["name"] for row in report.seed_rows(results)] == ["soft-kd-ensemble: mean of 3 seeds"]  # in the table
    rows = results["rows"] + added
    figure = report.ppl_vs_size_figure(rows)
    assert_labels_are_clear(figure, rows)
    style = MarkerStyle("D")
    diamond = style.get_path().transformed(style.get_transform()).vertices
    drawn = [collection.get_paths()[0].vertices for collection in figure.axes[0].collections]
    assert sum(numpy.array_equal(vertices, diamond) for vertices in drawn) == 2


@pytest.mark.parametrize("seed", [0, 1])
def test_a_crowd_of_rows_with_long_names_still_gets_clear_labels(seed):
    rng = random.Random(seed)
    rows = [row(f"row {i} with a long descriptive name", rng.uniform(0.8e6, 1.2e6), rng.uniform(170, 190))
            for i in range(6)]
    rows += [row(f"far {i}", rng.uniform(2e5, 3e7), rng.uniform(150, 260)) for i in range(6)]
    assert_labels_are_clear(report.ppl_vs_size_figure(rows), rows)


def test_the_allocator_section_gives_each_setting_and_the_ratios():
    def run(cpu, wall, peak):
        return {"cpu_seconds": cpu, "kernel_seconds": cpu / 3, "page_faults": 7_000_000, "wall_seconds": wall,
                "peak_rss_bytes": peak}

    results = {"allocator": {"command": "python benchmarks/allocator.py", "steps": 40, "rounds": 2,
                             "best": {"glibc default": run(30.0, 32.0, 1_000_000_000),
                                      "freed memory kept": run(20.0, 16.0, 1_070_000_000)}}}
    text = "\n".join(report.render_allocator(results))
    assert "| glibc default | 30.0 | 10.0 | 7,000,000 | 32.0 |" in text
    assert "1.50x less CPU time, 2.00x less wall time, 1.07x the peak memory" in text
