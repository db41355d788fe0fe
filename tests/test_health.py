"""Health findings (training/health.py) and quality tracking while training (quality/tracking.py)."""

import json

import pytest

from gankit import config
from gankit.quality.tracking import Quality
from gankit.report.plots import latest_feature_space, read_metrics
from gankit.run import checkpoint, generator_file, layout
from gankit.training import losses
from gankit.training.health import WINDOW, Diverged, Health
from gankit.training.launch import resume, train
from gankit.training.losses import Loss, bce_d_loss

from .conftest import tiny_config


def test_early_stop_on_a_scripted_fd_sequence():
    q = Quality(None, None, n=100, patience=2)
    decisions = [q.record({"fd": fd}, epoch) for epoch, fd in enumerate([9.0, 7.0, 7.5, 6.0, 6.5, 6.1, 8.0], 1)]
    improved = [d[0] for d in decisions]
    assert improved == [True, True, False, True, False, False, False]
    stops = [d[1] for d in decisions]
    assert stops[:5] == [None] * 5
    assert "has not improved for 2 evaluations" in stops[5] and "best 6.000 at epoch 4" in stops[5]
    assert q.state.best_fd == 6.0 and q.state.best_epoch == 4
    # the state survives a checkpoint round trip
    q2 = Quality(None, None, n=100, patience=2)
    q2.load_state(q.state_dict())
    assert q2.state == q.state


def test_best_fd_of_another_evaluator_is_not_carried_over():
    import torch

    one, other = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    q = Quality(one, None, n=100, patience=3)
    q.record({"fd": 5.0}, 1)
    q.record({"fd": 6.0}, 2)
    same = Quality(one, None, n=100, patience=3)
    assert same.load_state(q.state_dict()) is None and same.state == q.state
    changed = Quality(other, None, n=100, patience=3)
    note = changed.load_state(q.state_dict())
    assert "best FD (5.000 at epoch 1) was measured by another evaluator" in note
    assert changed.state.best_fd is None and changed.state.since_best == 0 and changed.state.evaluations == 2
    assert changed.record({"fd": 9.0}, 3)[0]  # the first value in the new feature space is the best so far
    # a checkpoint from before evaluator fingerprints: its best FD cannot be trusted either
    old = {k: v for k, v in q.state_dict().items() if k != "evaluator"}
    assert "may have been measured by another evaluator" in Quality(one, None, n=100, patience=3).load_state(old)


def test_resume_under_another_evaluator_says_so_and_rechooses_the_best(tmp_path, mlp_run, monkeypatch, capsys):
    import shutil

    from gankit.quality import evaluator as ev

    run = tmp_path / "run"
    shutil.copytree(mlp_run, run)
    assert checkpoint.load_checkpoint(run)["quality"]["evaluator"]
    monkeypatch.setattr(ev, "fingerprint", lambda model: "a retrained evaluator")
    resume(run, {"epochs": 2}, progress=True)
    assert "was measured by another evaluator" in capsys.readouterr().err
    quality = checkpoint.load_checkpoint(run)["quality"]
    assert quality["best_epoch"] == 2 and quality["evaluator"] == "a retrained evaluator"
    assert generator_file.export_info(run, layout.BEST)["epoch"] == 2
    evals = read_metrics(run / layout.METRICS, kind="eval")
    assert len(evals[0]["evaluator"]) == 12 and evals[1]["evaluator"] == "a retrained evaluator"[:12]
    assert [e["epoch"] for e in latest_feature_space(evals)] == [2]


def test_metric_curves_show_one_feature_space():
    rows = [{"epoch": e, "evaluator": name} for e, name in enumerate(["a", "a", "b", "b"], 1)]
    assert [r["epoch"] for r in latest_feature_space(rows)] == [3, 4]
    assert [r["epoch"] for r in latest_feature_space(rows[:2])] == [1, 2]
    old = [{"epoch": e} for e in (1, 2, 3)]  # runs from before evaluators were recorded
    assert latest_feature_space(old) == old and latest_feature_space([]) == []


def test_never_stops_without_patience():
    q = Quality(None, None, n=100, patience=0)
    assert all(q.record({"fd": 10.0 + i}, i)[1] is None for i in range(20))


def _scripted_quality(monkeypatch, fds):
    """Replace the evaluation with a scripted FD sequence (the evaluator itself is tested elsewhere)."""
    sequence = iter(fds)
    monkeypatch.setattr(Quality, "measure", lambda self, *a, **k: {"fd": next(sequence), "classes_covered": 10})


def test_training_stops_early_and_keeps_the_best_generator(tmp_path, monkeypatch):
    _scripted_quality(monkeypatch, [5.0, 3.0, 4.0, 3.5, 1.0, 1.0])
    result = train(tiny_config(epochs=10, early_stop=2), tmp_path / "run", progress=False)
    assert result.epochs == 4 and result.stopped and "early stop" in result.stopped
    assert result.best_fd == 3.0 and result.best_epoch == 2
    assert generator_file.export_info(tmp_path / "run", layout.BEST)["epoch"] == 2
    assert generator_file.export_info(tmp_path / "run", layout.GENERATOR)["epoch"] == 4
    assert "early stop" in result.summary() and "best FD 3.000 at epoch 2" in result.summary()
    evals = read_metrics(tmp_path / "run" / layout.METRICS, kind="eval")
    assert [e["fd"] for e in evals] == [5.0, 3.0, 4.0, 3.5]
    assert checkpoint.load_checkpoint(tmp_path / "run")["quality"]["best_fd"] == 3.0


def test_evaluations_every_k_epochs_and_always_the_last(tmp_path, monkeypatch):
    # the dcgan preset evaluates every 2 epochs; the last epoch is always evaluated, and best tracks only those
    assert config.resolve("dcgan").eval_every == 2 and config.resolve("simple-gan").eval_every == 1
    _scripted_quality(monkeypatch, [4.0, 2.0, 3.0])
    result = train(tiny_config(epochs=5, eval_every=2, subset=64), tmp_path / "run", progress=False)
    evals = read_metrics(tmp_path / "run" / layout.METRICS, kind="eval")
    assert [(e["epoch"], e["fd"]) for e in evals] == [(2, 4.0), (4, 2.0), (5, 3.0)]
    assert (result.best_fd, result.best_epoch) == (2.0, 4)
    assert generator_file.export_info(tmp_path / "run", layout.BEST)["epoch"] == 4


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(tiny_config(eval_every=0, fused=False), run, progress=False)  # the loss registry path
    before = {name: (run / name).read_bytes() for name in (layout.CHECKPOINT, layout.GENERATOR)}
    monkeypatch.setitem(losses.LOSSES, "bce", Loss(bce_d_loss, lambda fake: fake.mean() * float("nan")))
    with pytest.raises(Diverged, match="loss_G is not finite"):
        resume(run, {"epochs": 2})
    assert {name: (run / name).read_bytes() for name in before} == before
    health = read_metrics(run / layout.METRICS, kind="health")
    assert health and health[-1]["issue"] == "divergence" and "learning rate" in health[-1]["remedy"]
    assert checkpoint.load_checkpoint(run)["epoch"] == 1


def test_discriminator_winning_is_reported_once():
    found = []
    h = Health()
    for step in range(2 * WINDOW):  # balanced: nothing to report
        found += h.on_step(1, step, {"loss_D": 0.6, "loss_G": 0.8, "D(x)": 0.55, "D(G(z))": 0.45})
    assert found == []
    for step in range(2 * WINDOW):  # D wins: D(x) -> 1, D(G(z)) -> 0, G's loss climbing
        found += h.on_step(2, 1000 + step, {"loss_D": 0.05, "loss_G": 3.0 + step / 100, "D(x)": 0.97,
                                            "D(G(z))": 0.03})
    assert [f.kind for f in found] == ["d_wins"]
    assert "label_smoothing" in found[0].line()


def test_collapse_is_reported_from_coverage_or_spread():
    found = []
    h = Health()
    found += h.on_eval(1, 10, {"fd": 500.0, "spread": 0.1, "classes_covered": 1}, 10, None, evaluations=1)
    assert found == []  # an untrained generator lacks variety: not yet a collapse
    found += h.on_eval(1, 10, {"fd": 5.0, "spread": 0.9, "classes_covered": 10}, 10, None)
    assert found == []
    found += h.on_eval(2, 20, {"fd": 50.0, "spread": 0.9, "classes_covered": 2}, 10, 10)
    assert [f.kind for f in found] == ["collapse"] and "only 2 of 10 classes" in found[0].message
    found += h.on_eval(3, 30, {"fd": 5.0, "spread": 0.9, "classes_covered": 10}, 10, 10)  # recovered
    found += h.on_eval(4, 40, {"fd": 9.0, "spread": 0.2, "classes_covered": 10}, 10, 10)
    assert len(found) == 2 and "spread is 0.20" in found[1].message


def test_training_evaluates_each_epoch(mlp_run):
    evals = read_metrics(mlp_run / layout.METRICS, kind="eval")
    # 256 images: half B, the floor's real sample, holds 128, so fakes are drawn at that n too (not 2000)
    assert len(evals) == 1 and evals[0]["epoch"] == 1 and evals[0]["n"] == evals[0]["floor_n"] == 128
    for key in ("fd", "kid", "precision", "recall", "classes_covered", "class_kl", "spread"):
        assert key in evals[0] and key in evals[0]["floor"]
    assert (mlp_run / layout.BEST).is_file()


def test_report_is_one_page_with_its_images(mlp_run, tmp_path):
    import base64
    import shutil

    from gankit.report.run_page import write_report

    run = tmp_path / "run"
    shutil.copytree(mlp_run, run)
    with open(run / layout.METRICS, "a") as fh:
        fh.write(json.dumps({"kind": "health", "issue": "collapse", "epoch": 1, "step": 8,
                             "message": "mode collapse: test finding", "remedy": "try label smoothing"}) + "\n")
    page = write_report(run).read_text()
    images = page.split('src="data:image/png;base64,')[1:]
    assert len(images) == 5  # loss curves, metric curves, best grid, last grid, real images
    for chunk in images:
        assert base64.b64decode(chunk.split('"', 1)[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "mode collapse: test finding" in page and "preset = &quot;simple-gan&quot;" in page
    assert "real vs real" in page and "<script" not in page
    assert "http" not in page.replace("<!doctype html>", "")  # self-contained: nothing to fetch
