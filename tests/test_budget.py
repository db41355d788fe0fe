"""How long a run trains: a kimg budget, the time limit checked before every step, the estimate at the start and
the whole run's progress."""

from __future__ import annotations

import json
import math

import pytest

from gankit import config
from gankit.errors import GankitError
from gankit.training import budget
from gankit.training.launch import resume, train
from tests.conftest import tiny_config


def _rows(run, kind):
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def test_a_kimg_budget_shows_that_many_images_whatever_the_folder_size(tmp_path):
    # 256 images in batches of 32: 8 steps an epoch; 0.4 kimg = 13 steps: one whole epoch and 5 of the next
    result = train(tiny_config(kimg=0.4, epochs=99), tmp_path / "run", progress=False)
    assert result.steps == math.ceil(400 / 32) == 13 and result.epochs == 2
    saved = config.load(tmp_path / "run" / "config.toml")
    assert (saved.kimg, saved.epochs) == (0.4, 2)  # the epochs it spans on this data, written down
    assert [r["step"] for r in _rows(tmp_path / "run", "epoch")] == [8, 13]
    # the same budget on half the data: the same number of images shown
    half = train(tiny_config(kimg=0.4, subset=128), tmp_path / "half", progress=False)
    assert half.steps == 13 and half.epochs == 4


def test_a_kimg_budget_resumes_to_a_larger_one_and_refuses_a_spent_one(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(kimg=0.4), run, progress=False)
    with pytest.raises(GankitError, match="already showed 0.416 kimg of its kimg=0.4: pass --set kimg=K"):
        resume(run, {"kimg": 0.4}, progress=False)
    more = resume(run, {"kimg": 0.8}, progress=False)
    assert more.steps == 25 and [r["step"] for r in _rows(run, "epoch")] == [8, 13, 21, 25]


def test_epochs_named_win_over_a_presets_kimg():
    assert config.PRESETS["color"].get("kimg")  # the color preset has a kimg budget
    assert config.resolve("color", epochs=3).kimg == 0
    assert config.resolve("color").kimg == config.PRESETS["color"]["kimg"]
    assert config.resolve("color", sets={"kimg": "5", "epochs": "3"}).kimg == 5


def test_the_time_limit_ends_within_one_step(tmp_path, monkeypatch):
    # the clock says the limit passed after 3 steps' checks: the run stops before the 4th step
    checks = []
    monkeypatch.setattr(budget.Budget, "out_of_time", lambda self: checks.append(1) or len(checks) > 3)
    result = train(tiny_config(epochs=5, time_limit=1.0, eval_every=0), tmp_path / "run", progress=False)
    assert result.steps == 4 and result.epochs == 1  # checked before steps 2, 3, 4 and 5 (the first always runs)
    assert "time limit" in result.stopped


def test_a_run_past_its_limit_after_an_epoch_starts_no_new_one(tmp_path, monkeypatch):
    # an epoch's end (evaluation, checkpoint) ran past the limit: the next epoch is not begun
    calls = []
    monkeypatch.setattr(budget.Budget, "out_of_time", lambda self: calls.append(1) or len(calls) > 7)
    result = train(tiny_config(epochs=5, time_limit=1.0, eval_every=0), tmp_path / "run", progress=False)
    assert result.steps == 8 and result.epochs == 1


def test_the_estimate_is_said_once_from_the_first_steps(tmp_path, capsys):
    train(tiny_config(epochs=4, eval_every=0, log_every=1), tmp_path / "run")  # 32 steps
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "estimate:" in line]
    assert len(lines) == 1 and "for the whole run on this machine (32 steps at" in lines[0]
    assert "run=" in err and "left=" in err  # the whole run's share and time left beside the epoch bar


def test_the_budget_counts_from_a_resumed_step():
    cfg = tiny_config(epochs=5)
    b = budget.Budget(cfg, 8, step=16, epoch=2)
    assert b.last == 40 and not b.done(39) and b.done(40)
    assert b.postfix(16) == {"run": "0%"}
    k = budget.Budget(config.override(cfg, {"kimg": 1.0}), 8, step=0, epoch=0)
    assert k.last == 32 and budget.epochs_for(k_cfg := config.override(cfg, {"kimg": 1.0}), 8) == 4
    assert budget.epochs_for(k_cfg, 5) == 7
    assert (budget.duration(45), budget.duration(720), budget.duration(5400)) == ("45 s", "12 min", "1.5 h")
    assert budget.clock(3725) == "1:02:05" and budget.clock(61) == "1:01"


def test_evaluations_left_is_counted_not_looped():
    from types import SimpleNamespace

    from gankit.training.trainer import Trainer

    def left(epoch, epochs, every):
        fake = SimpleNamespace(cfg=SimpleNamespace(eval_every=every, epochs=epochs), quality=True, epoch=epoch)
        return Trainer.evaluations_left(fake)

    assert left(0, 30, 2) == 15 and left(0, 31, 2) == 16 and left(4, 10, 3) == 3 and left(10, 10, 3) == 0
    assert [left(e, 7, 3) for e in range(8)] == [sum(1 for k in range(e + 1, 8) if k % 3 == 0 or k == 7)
                                                for e in range(8)]
    assert left(0, 10**15, 1) == 10**15  # at once, however long the run
    with pytest.raises(GankitError, match="kimg must be in"):
        config.resolve(sets={"kimg": "1e12"})


def test_a_kimg_budget_ended_part_way_resumes_to_one_that_fits_in_the_next_epoch(tmp_path):
    # 0.4 kimg ended epoch 2 at step 13 (of 16); 0.5 kimg = 16 steps: 3 more, in an epoch of their own
    run = tmp_path / "run"
    train(tiny_config(kimg=0.4), run, progress=False)
    more = resume(run, {"kimg": 0.5}, progress=False)
    assert (more.steps, more.epochs) == (16, 3) and [r["step"] for r in _rows(run, "epoch")] == [8, 13, 16]
    assert config.load(run / "config.toml").epochs == 3
    assert budget.epochs_for(config.override(tiny_config(), {"kimg": 0.5}), 8, step=13, epoch=2) == 3


def test_the_length_named_last_wins_over_a_config_files_kimg(tmp_path):
    (tmp_path / "k.toml").write_text("kimg = 5.0\n")
    assert config.resolve(file=tmp_path / "k.toml").kimg == 5
    assert config.resolve(file=tmp_path / "k.toml", epochs=3).kimg == 0  # --epochs 3 over the file's kimg
    assert config.resolve(file=tmp_path / "k.toml", sets={"epochs": "3"}).kimg == 0
    (tmp_path / "e.toml").write_text("epochs = 3\n")
    assert config.resolve(file=tmp_path / "e.toml", sets={"kimg": "2"}).kimg == 2  # --set kimg over the file
