"""benchmarks/search.py's selection rules, on recorded outcomes (no training)."""

import sys
from argparse import Namespace

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import search  # noqa: E402  (benchmarks/search.py)


def outcome(valid_ppl: float, best_epoch: int, epochs: int = 2, compression_ratio: float = 28.4) -> dict:
    return {"valid_ppl": valid_ppl, "best_epoch": best_epoch, "epochs": epochs, "compression_ratio": compression_ratio}


def test_a_setting_that_peaked_inside_its_screen_is_tried_at_lower_learning_rates():
    peaked = {"screen": outcome(174.4, best_epoch=1), "overrides": {"training.lr": 0.001}}
    assert search.lower_rates("adam", peaked) == {"adam+lr0.0005": {"training.lr": 0.0005},
                                                  "adam+lr0.00025": {"training.lr": 0.00025}}
    improving = {"screen": outcome(174.4, best_epoch=2), "overrides": {"training.lr": 0.001}}
    assert search.lower_rates("adam", improving) == {}


def test_pq_variants_compete_only_at_the_smallest_file(tmp_path):
    args = Namespace(results=str(tmp_path / "absent.json"))
    chooser = search.Search(args)
    chooser.results = {
        "pq-soft-kd": {"fp16": {"screen": outcome(182.1, 1, compression_ratio=52.94)},
                       "binary-reassign": {"screen": outcome(201.1, 2, compression_ratio=88.33)},
                       "binary-fixed": {"screen": outcome(195.1, 2, compression_ratio=88.32)}},
        "soft-kd": {"a": {"screen": outcome(180.0, 2)}, "b": {"screen": outcome(175.0, 2)}}}
    assert chooser.best_screened("pq-soft-kd", 2) == ["binary-fixed", "binary-reassign"]
    assert chooser.best_screened("soft-kd", 1) == ["b"]
