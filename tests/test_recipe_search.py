"""benchmarks/search.py's selection rules, on recorded outcomes (no training)."""

import json
import os
import sys
from argparse import Namespace

import pytest

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import search  # noqa: E402  (benchmarks/search.py)


@pytest.fixture
def teacher(tmp_path):
    """A finished float run, as far as the quality study reads it."""
    directory = tmp_path / "teacher"
    directory.mkdir()
    metrics = '{"valid_ppl": 160.0, "test_ppl": 163.0, "epochs": 20, "train_seconds": 60}'
    (directory / "metrics.json").write_text(metrics)
    return directory


def outcome(valid_ppl: float, best_epoch: int, epochs: int = 2, compression_ratio: float = 28.4) -> dict:
    return {"valid_ppl": valid_ppl, "best_epoch": best_epoch, "epochs": epochs, "compression_ratio": compression_ratio}


def stub_training(monkeypatch, valid: dict, default: float, compression_ratio: float = 28.4) -> list:
    """Training replaced by a stub that records each call as (recipe, run name, overrides, resume) and scores a run
    `valid[name]` (else `default`) at validation; the results file is written, results.json is not."""
    calls = []

    def fake_train(recipe, output_dir, overrides, resume, log_path):
        calls.append((recipe, os.path.basename(output_dir), overrides, resume))
        os.makedirs(os.path.join(output_dir, "checkpoint"), exist_ok=True)  # what a screen leaves
        ppl = valid.get(calls[-1][1], default)
        return {**outcome(ppl, 3, 3, compression_ratio=compression_ratio), "test_ppl": 1.0, "valid_curve": [ppl],
                "wall_seconds": 1.0}

    monkeypatch.setattr(search, "train", fake_train)
    monkeypatch.setattr(search, "real_text_steps", lambda recipe: 310)
    monkeypatch.setattr(search.report, "update", lambda sections, directory: None)
    return calls


def test_a_setting_that_peaked_inside_its_screen_is_tried_at_lower_learning_rates():
    peaked = {"screen": outcome(174.4, best_epoch=1), "overrides": {"training.lr": 0.001}}
    assert search.lower_rates("adam", peaked) == {"adam+lr0.0005": {"training.lr": 0.0005},
                                                  "adam+lr0.00025": {"training.lr": 0.00025}}
    improving = {"screen": outcome(174.4, best_epoch=2), "overrides": {"training.lr": 0.001}}
    assert search.lower_rates("adam", improving) == {}


def test_pq_variants_compete_only_at_the_smallest_file(tmp_path):
    args = Namespace(results=str(tmp_path / "absent.json"), results_dir=str(tmp_path))
    chooser = search.Search(args)
    chooser.results = {
        "pq-soft-kd": {"fp16": {"screen": outcome(182.1, 1, compression_ratio=52.94)},
                       "binary-reassign": {"screen": outcome(201.1, 2, compression_ratio=88.33)},
                       "binary-fixed": {"screen": outcome(195.1, 2, compression_ratio=88.32)}},
        "soft-kd": {"a": {"screen": outcome(180.0, 2)}, "b": {"screen": outcome(175.0, 2)}}}
    assert chooser.best_screened("pq-soft-kd", 2) == ["binary-fixed", "binary-reassign"]
    assert chooser.best_screened("soft-kd", 1) == ["b"]


def test_the_quality_study_screens_every_text_for_the_same_steps_then_methods_on_the_best(tmp_path, teacher,
                                                                                          monkeypatch):
    calls = []
    # The recorded outcome of a setting: sampled text 3x is the best text; row and column scalars help on it.
    valid = {"recipe": 175.0, "kl-only": 176.0, "sampled1x": 171.0, "sampled3x": 169.0, "sampled7x": 170.0,
             "sampled3x+row-col": 167.0}

    def fake_train(recipe, output_dir, overrides, resume, log_path):
        calls.append((os.path.basename(output_dir), overrides))
        return {**outcome(valid.get(os.path.basename(output_dir), 172.0), 3, 3), "test_ppl": 1.0,
                "valid_curve": [180.0, 172.0], "wall_seconds": 1.0, "sampled_tokens": 0}

    monkeypatch.setattr(search, "train", fake_train)
    monkeypatch.setattr(search, "real_text_steps", lambda recipe: 310)  # wt2-mini's; the corpus may be absent
    updates = []
    monkeypatch.setattr(search.report, "update", lambda sections, directory: updates.append(sections))
    search.main(["--family", "quality", "--teacher", str(teacher), "--screen-epochs", "3", "--stop-after", "methods",
                 "--runs-dir", str(tmp_path / "runs"), "--results", str(tmp_path / "results.json"),
                 "--log", str(tmp_path / "log"), "--ensemble", "other-teacher", "--results-dir", str(tmp_path)])
    names = [name for name, _ in calls]
    assert names[:5] == list(search.TEXT_VARIANTS)
    assert all(name.startswith("sampled3x+") for name in names[5:]) and "sampled3x+ensemble2" in names
    budgets = {overrides["training.max_steps"] for _, overrides in calls}
    assert budgets == {3 * 310}  # the same optimizer steps for every setting
    row_col = dict(calls)["sampled3x+row-col"]
    assert row_col["model.scaling"] == "row_col" and row_col["distill.sampled_text_ratio"] == 3
    assert row_col["distill.teacher"] == str(teacher) and row_col["distill.kd_lambda"] == 1.0
    assert "search" not in updates[-1] and set(updates[-1]["quality"]["families"]) == {"quality"}
    assert updates[-1]["quality"]["teachers"]["quality"]["valid_ppl"] == 160.0


def ensemble_study(tmp_path, teacher, monkeypatch, valid: dict) -> tuple[list, list]:
    """The quality study with a three-teacher ensemble, each setting's screen scoring `valid` (174 if not given):
    the (setting, overrides) of every training it starts, and its command-line arguments."""
    calls = []

    def fake_train(recipe, output_dir, overrides, resume, log_path):
        calls.append((os.path.basename(output_dir), overrides))
        return {**outcome(valid.get(os.path.basename(output_dir), 174.0), 3, 3), **RUN, "valid_curve": [174.0]}

    monkeypatch.setattr(search, "train", fake_train)
    monkeypatch.setattr(search, "real_text_steps", lambda recipe: 310)
    monkeypatch.setattr(search.report, "update", lambda sections, directory: None)
    arguments = ["--family", "quality", "--teacher", str(teacher), "--runs-dir", str(tmp_path / "runs"), "--results",
                 str(tmp_path / "results.json"), "--log", str(tmp_path / "log"), "--results-dir", str(tmp_path),
                 "--ensemble", "teacher-s2", "--ensemble", "teacher-s3", "--screen-epochs", "3"]
    return calls, arguments


def test_the_best_method_is_then_stacked_with_each_other_method_that_beat_the_text_alone(tmp_path, teacher,
                                                                                         monkeypatch):
    # sampled1x is the best text; the ensemble helps most, weight averaging and the ramp help too, the rest do not
    valid = {"recipe": 175.0, "kl-only": 176.0, "sampled1x": 173.0, "sampled3x": 174.0, "sampled7x": 174.5,
             "sampled1x+ensemble3": 170.0, "sampled1x+ema0.995": 171.5, "sampled1x+ramp1": 172.9}
    calls, arguments = ensemble_study(tmp_path, teacher, monkeypatch, valid)
    search.main([*arguments, "--stop-after", "methods"])
    assert not any(name.count("+") > 1 for name, _ in calls)  # the stage waits for its own invocation
    calls.clear()
    search.main([*arguments, "--stop-after", "stacked"])
    stacked = dict(calls)
    assert list(stacked) == ["sampled1x+ensemble3+ema0.995", "sampled1x+ensemble3+ramp1"]
    both = stacked["sampled1x+ensemble3+ema0.995"]
    assert both["distill.ensemble"] == "[teacher-s2,teacher-s3]" and both["training.ema_decay"] == 0.995
    assert both["distill.sampled_text_ratio"] == 1 and both["training.max_steps"] == 3 * 310


def test_a_stack_that_beats_the_one_it_grew_from_is_stacked_again_with_each_remaining_method(tmp_path, teacher,
                                                                                           monkeypatch):
    # three methods help alone; ensemble + ema beats the ensemble, so it grows by the ramp; that third level does
    # not beat ensemble + ema, so stacking stops there
    valid = {"recipe": 175.0, "kl-only": 176.0, "sampled1x": 173.0, "sampled3x": 174.0, "sampled7x": 174.5,
             "sampled1x+ensemble3": 170.0, "sampled1x+ema0.995": 171.5, "sampled1x+ramp1": 172.9,
             "sampled1x+ensemble3+ema0.995": 169.0, "sampled1x+ensemble3+ramp1": 169.5,
             "sampled1x+ensemble3+ema0.995+ramp1": 169.2}
    calls, arguments = ensemble_study(tmp_path, teacher, monkeypatch, valid)
    search.main([*arguments, "--stop-after", "methods"])
    calls.clear()
    search.main([*arguments, "--stop-after", "stacked"])
    assert [name for name, _ in calls] == ["sampled1x+ensemble3+ema0.995", "sampled1x+ensemble3+ramp1",
                                           "sampled1x+ensemble3+ema0.995+ramp1"]
    three = calls[-1][1]
    assert three["distill.ensemble"] == "[teacher-s2,teacher-s3]" and three["training.ema_decay"] == 0.995
    assert three["training.binarize_ramp_epochs"] == 1.0 and three["distill.sampled_text_ratio"] == 1
    calls.clear()
    search.main([*arguments, "--stop-after", "stacked"])  # everything screened: nothing trains again
    assert calls == []


def test_the_pq_study_screens_layouts_of_50x_on_the_best_text_then_trains_the_best(tmp_path, teacher, monkeypatch):
    calls = stub_training(monkeypatch, {"m10-binary-codebooks": 171.0}, 175.0)
    search.main(["--family", "pq", "--teacher", str(teacher), "--screen-epochs", "3", "--runs-dir",
                 str(tmp_path / "runs"), "--results", str(tmp_path / "results.json"), "--log", str(tmp_path / "log"),
                 "--results-dir", str(tmp_path)])
    screens = [call for call in calls if not call[3]]
    assert [name for _, name, _, _ in screens] == [*search.PQ_LAYOUTS, search.PQ_FORMER_TEXT]
    assert all(recipe == "pq-soft-kd.yaml" and overrides["training.max_steps"] == 930
               for recipe, _, overrides, _ in screens)
    texts = {name: (overrides["distill.sampled_text_ratio"], overrides["distill.kd_lambda"])
             for _, name, overrides, _ in screens}
    assert texts.pop(search.PQ_FORMER_TEXT) == (0, 0.5)  # the recipe's layout on the former text
    assert set(texts.values()) == {(3, 1.0)}  # every layout on the best text
    finals = [name for _, name, _, resume in calls if resume]
    assert finals == ["m10-binary-codebooks"]  # the best screened continues to early stopping


def test_the_pq_study_also_tries_every_layout_with_the_quality_winner(tmp_path, teacher, monkeypatch):
    current = json.loads((teacher / "metrics.json").read_text()) | {"run_dir": str(teacher)}
    winner = {**screened(168.0), "changes": {"distill.ensemble": "[teacher-s2,teacher-s3]"}}
    record = {"families": {"quality": {"sampled1x+ensemble3": winner, "sampled3x": screened(171.0)}},
              "winners": {"quality": {"setting": "sampled1x+ensemble3"}}, "teachers": {"quality": current}}
    calls = []

    def fake_train(recipe, output_dir, overrides, resume, log_path):
        calls.append((os.path.basename(output_dir), overrides, resume))
        return {**outcome(175.0, 3, 3), **RUN, "valid_curve": [175.0]}

    import report

    report.update({"quality": {"commands": {}, "protocol": search.QUALITY_PROTOCOL, **record}}, str(tmp_path))
    monkeypatch.setattr(search, "train", fake_train)
    monkeypatch.setattr(search, "real_text_steps", lambda recipe: 310)
    search.main(["--family", "pq", "--teacher", str(teacher), "--finalists", "0", "--runs-dir",
                 str(tmp_path / "runs"), "--results", str(tmp_path / "absent.json"), "--log", str(tmp_path / "log"),
                 "--results-dir", str(tmp_path)])
    screens = {name: overrides for name, overrides, _ in calls}
    assert list(screens) == [*search.PQ_LAYOUTS, search.PQ_FORMER_TEXT,
                             *(f"{layout}+sampled1x+ensemble3" for layout in search.PQ_LAYOUTS)]
    plain, with_winner = screens["m10-binary-codebooks"], screens["m10-binary-codebooks+sampled1x+ensemble3"]
    assert plain["distill.sampled_text_ratio"] == 3 and "distill.ensemble" not in plain  # the best text alone
    assert with_winner["distill.sampled_text_ratio"] == 1 and with_winner["distill.kd_lambda"] == 1.0
    assert with_winner["distill.ensemble"] == "[teacher-s2,teacher-s3]" and with_winner["model.pq_subvectors"] == 10


def test_families_saved_by_separate_commands_share_the_quality_section(tmp_path):
    import report

    def save(results_file, family):
        chooser = search.Search(Namespace(results=str(tmp_path / results_file), results_dir=str(tmp_path)))
        screen = {**outcome(170.0, 3), "valid_curve": [171.0, 170.5, 170.0], "test_ppl": None, "wall_seconds": 60.0,
                  "train_seconds": 50.0}
        chooser.results = {family: {"a": {"screen": screen}}, "commands": {family: [f"run {family}"]}}
        chooser.save()

    save("quality.json", "quality")
    save("parts.json", "parts")
    section = report.load(str(tmp_path))["quality"]
    assert set(section["families"]) == {"quality", "parts"}
    assert section["commands"] == {"quality": ["run quality"], "parts": ["run parts"]}
    assert "search" not in report.load(str(tmp_path))


def test_two_commands_screening_one_family_keep_each_others_settings(tmp_path):
    import report

    screen = {**outcome(170.0, 3), "valid_curve": [170.0], "test_ppl": None, "wall_seconds": 60.0,
              "train_seconds": 50.0}
    first, second = (search.Search(Namespace(results=str(tmp_path / name), results_dir=str(tmp_path)))
                     for name in ("first.json", "second.json"))
    first.results = {"quality": {"a": {"screen": screen}}, "commands": {"quality": ["first"]}}
    first.save()
    second.results = {"quality": {"a": {"screen": screen}, "b": {"screen": screen}}, "commands": {"quality": ["second"]}}
    first.results["quality"]["a"]["final"] = screen  # the first command trains `a` on while the second screens `b`
    first.save()
    second.save()  # its `a` is the record it started from: it keeps the other command's final run
    section = report.load(str(tmp_path))["quality"]
    assert set(section["families"]["quality"]) == {"a", "b"} and "final" in section["families"]["quality"]["a"]
    assert section["commands"]["quality"] == ["first", "second"]


def test_first_settings_are_screened_before_the_others_in_the_order_given(tmp_path, teacher, monkeypatch):
    calls = []

    def fake_train(recipe, output_dir, overrides, resume, log_path):
        calls.append(os.path.basename(output_dir))
        return {**outcome(170.0, 3, 3), "test_ppl": 1.0, "valid_curve": [170.0], "wall_seconds": 1.0}

    monkeypatch.setattr(search, "train", fake_train)
    monkeypatch.setattr(search, "real_text_steps", lambda recipe: 310)
    monkeypatch.setattr(search.report, "update", lambda sections, directory: None)
    search.main(["--family", "quality", "--teacher", str(teacher), "--stop-after", "text", "--first", "sampled3x",
                 "recipe", "--runs-dir", str(tmp_path / "runs"), "--results", str(tmp_path / "results.json"),
                 "--log", str(tmp_path / "log"), "--results-dir", str(tmp_path)])
    assert calls == ["sampled3x", "recipe", "kl-only", "sampled1x", "sampled7x"]


def test_later_settings_wait_and_the_next_stage_builds_on_the_best_screened(tmp_path, teacher, monkeypatch):
    calls = []
    valid = {"sampled1x": 171.0, "sampled3x": 169.0}

    def fake_train(recipe, output_dir, overrides, resume, log_path):
        calls.append(os.path.basename(output_dir))
        return {**outcome(valid.get(calls[-1], 175.0), 3, 3), "test_ppl": 1.0, "valid_curve": [175.0],
                "wall_seconds": 1.0}

    monkeypatch.setattr(search, "train", fake_train)
    monkeypatch.setattr(search, "real_text_steps", lambda recipe: 310)
    monkeypatch.setattr(search.report, "update", lambda sections, directory: None)
    common = ["--family", "quality", "--teacher", str(teacher), "--stop-after", "methods", "--runs-dir",
              str(tmp_path / "runs"), "--results", str(tmp_path / "results.json"), "--log", str(tmp_path / "log"),
                 "--results-dir", str(tmp_path)]
    search.main(common + ["--later", "sampled7x", "sampled3x+bop"])
    assert "sampled7x" not in calls and "sampled3x+bop" not in calls and "sampled3x+row-col" in calls
    calls.clear()
    search.main(common)  # a later invocation screens what waited, and nothing twice
    assert calls == ["sampled7x", "sampled3x+bop"]


def test_a_screen_interrupted_with_its_session_continues_from_its_checkpoint(tmp_path, teacher, monkeypatch):
    (tmp_path / "runs" / "quality" / "kl-only" / "checkpoint").mkdir(parents=True)  # what a stopped screen leaves
    calls = {}

    def fake_train(recipe, output_dir, overrides, resume, log_path):
        calls[os.path.basename(output_dir)] = resume
        return {**outcome(170.0, 3, 3), "test_ppl": 1.0, "valid_curve": [170.0], "wall_seconds": 1.0}

    monkeypatch.setattr(search, "train", fake_train)
    monkeypatch.setattr(search, "real_text_steps", lambda recipe: 310)
    monkeypatch.setattr(search.report, "update", lambda sections, directory: None)
    search.main(["--family", "quality", "--teacher", str(teacher), "--stop-after", "text", "--runs-dir",
                 str(tmp_path / "runs"), "--results", str(tmp_path / "results.json"), "--log", str(tmp_path / "log"),
                 "--results-dir", str(tmp_path)])
    assert calls == {"recipe": False, "kl-only": True, "sampled1x": False, "sampled3x": False, "sampled7x": False}


def test_a_pass_over_the_real_text_is_counted_in_optimizer_steps(wt2_mini, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # the recipes name the corpus relative to the repository
    # 216,348 tokens (words, one <eos> a line and the leading one) in 20 rows, cut into segments of 35
    assert search.real_text_steps("soft-kd.yaml") == 310


def test_the_fair_row_is_a_float_student_distilled_the_same_way(tmp_path, teacher, monkeypatch):
    calls = stub_training(monkeypatch, {"float-student+sampled3x+ensemble2": 155.0}, 158.0, compression_ratio=1.0)
    search.main(["--family", "float-kd", "--teacher", str(teacher), "--ensemble", "teacher-s2", "--runs-dir",
                 str(tmp_path / "runs"), "--results", str(tmp_path / "results.json"), "--log", str(tmp_path / "log"),
                 "--results-dir", str(tmp_path)])
    screens = {name: overrides for _, name, overrides, resume in calls if not resume}
    assert list(screens) == ["float-student", "float-student+sampled3x", "float-student+sampled3x+ensemble2"]
    for overrides in screens.values():
        assert overrides["model.quantization"] == "{embedding: float, lstm: float, output: float}"
        assert overrides["distill.teacher"] == str(teacher)
    assert screens["float-student"]["distill.kd_lambda"] == 0.5  # the shipped recipe's mix on the real text
    ensemble = screens["float-student+sampled3x+ensemble2"]
    assert ensemble["distill.sampled_text_ratio"] == 3 and ensemble["distill.ensemble"] == "[teacher-s2]"
    assert [name for _, name, _, resume in calls if resume] == ["float-student+sampled3x+ensemble2"]


def test_the_wider_teacher_study_changes_who_teaches_the_shipped_ensemble_recipe(tmp_path, teacher, monkeypatch):
    # the float student screens best, but it is the fair row: the 1-bit setting with the wider member wins
    valid = {"float-student+ensemble3+wider": 150.0, "ensemble3+wider": 160.0, "teacher+wider": 161.0}
    calls = stub_training(monkeypatch, valid, 165.0)
    common = ["--family", "wider-teacher", "--teacher", str(teacher), "--runs-dir", str(tmp_path / "runs"),
              "--results", str(tmp_path / "results.json"), "--log", str(tmp_path / "log"), "--results-dir",
              str(tmp_path), "--ensemble", "teacher-s2", "--ensemble", "teacher-s3", "--screen-epochs", "3"]
    with pytest.raises(SystemExit, match="--wider-teacher RUN_DIR"):
        search.main(common)
    search.main([*common, "--wider-teacher", "wide"])
    screens = {name: overrides for recipe, name, overrides, resume in calls if not resume}
    assert {recipe for recipe, *_ in calls} == {"soft-kd-ensemble.yaml"}  # the shipped recipe's own settings
    assert list(screens) == ["ensemble3", "ensemble3+wider", "teacher+wider", "float-student+ensemble3+wider"]
    assert screens["ensemble3"]["distill.ensemble"] == "[teacher-s2,teacher-s3]"
    assert screens["ensemble3+wider"]["distill.ensemble"] == "[teacher-s2,teacher-s3,wide]"
    assert screens["teacher+wider"]["distill.ensemble"] == "[wide]"
    assert all(overrides["distill.teacher"] == str(teacher) for overrides in screens.values())
    assert all(overrides["training.max_steps"] == 3 * 310 for overrides in screens.values())  # the same steps
    fair = screens["float-student+ensemble3+wider"]
    assert fair["model.quantization"] == "{embedding: float, lstm: float, output: float}"
    assert [name for _, name, _, resume in calls if resume] == ["ensemble3+wider"]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["winners"]["wider-teacher"]["setting"] == "ensemble3+wider"


RUN = {"test_ppl": 1.0, "wall_seconds": 1.0, "train_seconds": 1.0, "sampled_tokens": 0}


def screened(valid_ppl: float) -> dict:
    return {"overrides": {}, "changes": {}, "screen": {**outcome(valid_ppl, 3, 3), **RUN, "valid_curve": [valid_ppl]}}


def search_after_record(tmp_path, teacher, monkeypatch, record: dict, *flags: str) -> list[tuple[str, bool]]:
    """Record `record` as the quality section of results.json (as the repository keeps it), then run the quality
    study with no results file of its own: the (setting, resumed) of every run it trains."""
    import report

    section = {"winners": {}, "teachers": {}, "commands": {}, "protocol": search.QUALITY_PROTOCOL, **record}
    report.update({"quality": section}, str(tmp_path))
    calls = []

    def fake_train(recipe, output_dir, overrides, resume, log_path):
        calls.append((os.path.basename(output_dir), resume))
        return {**outcome(170.0, 3, 3), **RUN, "valid_curve": [170.0]}

    monkeypatch.setattr(search, "train", fake_train)
    monkeypatch.setattr(search, "real_text_steps", lambda recipe: 310)
    search.main(["--family", "quality", "--teacher", str(teacher), *flags, "--runs-dir", str(tmp_path / "runs"),
                 "--results", str(tmp_path / "absent.json"), "--log", str(tmp_path / "log"),
                 "--results-dir", str(tmp_path)])
    return calls


def test_a_search_whose_results_file_was_lost_continues_from_the_record(tmp_path, teacher, monkeypatch):
    import report

    valid = {"recipe": 175.0, "kl-only": 176.0, "sampled1x": 171.0, "sampled3x": 169.0}
    record = {"families": {"quality": {name: screened(ppl) for name, ppl in valid.items()}},
              "commands": {"quality": ["an earlier session's command"]}}
    calls = search_after_record(tmp_path, teacher, monkeypatch, record, "--finalists", "1", "--later",
                                *search.method_variants("sampled3x", []))
    # only the text never screened; the best screened setting, whose run directory is gone, trains from the start
    assert calls == [("sampled7x", False), ("sampled3x", False)]
    families = report.load(str(tmp_path))["quality"]["families"]["quality"]
    assert set(families) == {"recipe", "kl-only", "sampled1x", "sampled3x", "sampled7x"}
    assert "final" in families["sampled3x"]


def test_a_study_with_another_teacher_starts_again_and_keeps_the_earlier_one(tmp_path, teacher, monkeypatch):
    import report

    earlier_teacher = {"run_dir": str(teacher), "valid_ppl": 166.16, "test_ppl": 166.61, "epochs": 21,
                       "train_seconds": 60, "machine": report.machine()}  # the same directory, trained again since
    record = {"families": {"quality": {"sampled3x": screened(175.8)}, "parts": {"lstm-only": screened(175.8)}},
              "winners": {"quality": {"setting": "sampled3x"}},
              "teachers": {"quality": earlier_teacher, "parts": earlier_teacher},
              "commands": {"quality": ["the earlier command"], "parts": ["the parts command"]}}
    calls = search_after_record(tmp_path, teacher, monkeypatch, record, "--stop-after", "text")
    # every text again, sampled3x included, with the new teacher
    assert [name for name, _ in calls] == list(search.TEXT_VARIANTS)
    section = report.load(str(tmp_path))["quality"]
    assert section["teachers"]["quality"]["valid_ppl"] == 160.0 and "quality" not in section["winners"]
    assert set(section["families"]) == {"quality"} and set(section["teachers"]) == {"quality"}
    assert set(section["families"]["quality"]) == set(search.TEXT_VARIANTS)
    [earlier, parts] = section["earlier"]  # the parts family distilled from the same earlier teacher
    assert earlier["teacher"] == earlier_teacher and earlier["winner"] == "sampled3x"
    assert list(earlier["settings"]) == ["sampled3x"] and earlier["commands"] == ["the earlier command"]
    assert parts["family"] == "parts" and list(parts["settings"]) == ["lstm-only"] and parts["winner"] is None
    assert "quality, with an earlier teacher" in (tmp_path / "RESULTS.md").read_text()


def test_methods_build_on_the_best_text_even_when_a_method_screened_better(tmp_path, teacher, monkeypatch):
    valid = {"recipe": 175.0, "kl-only": 176.0, "sampled1x": 171.0, "sampled3x": 173.0, "sampled7x": 174.0,
             "sampled1x+ema0.995": 168.0}
    current = json.loads((teacher / "metrics.json").read_text()) | {"run_dir": str(teacher)}
    record = {"families": {"quality": {name: screened(ppl) for name, ppl in valid.items()}},
              "teachers": {"quality": current}}
    calls = search_after_record(tmp_path, teacher, monkeypatch, record, "--stop-after", "methods")
    assert [name for name, _ in calls] == [name for name in search.method_variants("sampled1x", [])
                                           if name != "sampled1x+ema0.995"]
