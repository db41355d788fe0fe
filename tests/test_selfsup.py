"""The label-free evaluator (quality/selfsup.py), quality on unlabeled folders, `evaluate --fakes`, reals.png."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gankit import GankitError
from gankit.cli import main
from gankit.data import batches
from gankit.data.loading import grid_picks, load
from gankit.images import grid, read_png, upscale
from gankit.quality import classifier, metrics, selfsup
from gankit.quality import evaluator as ev
from gankit.quality.evaluate import evaluate, evaluate_fakes
from gankit.training.launch import train

from .conftest import grid_scale, tiny_config


@pytest.fixture(scope="module")
def flat(tmp_path_factory) -> Path:
    """120 real digits as a flat folder of PNGs: no labels."""
    root = tmp_path_factory.mktemp("flat")
    for i, image in enumerate(load("mnist5k", subset=120).images):
        Image.fromarray(image[0].numpy()).save(root / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def unlabeled(flat):
    return load(f"folder:{flat}")


def test_views_are_random_seeded_and_stay_images():
    x = batches.to_float(load("mnist5k", subset=8).images)
    a, b = selfsup.views(x, torch.Generator().manual_seed(0)), selfsup.views(x, torch.Generator().manual_seed(0))
    c = selfsup.views(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1 and not torch.equal(a, x)
    rgb = selfsup.views(x.expand(-1, 3, -1, -1), torch.Generator().manual_seed(0))
    assert rgb.shape == (8, 3, 28, 28)


def test_nt_xent_is_simclrs_loss():
    # two views that agree exactly, orthogonal across images: each view's partner scores 1/t, the other
    # 2N - 2 views 0, so the loss is -log(e^(1/t) / (e^(1/t) + 2N - 2))
    z = torch.eye(4)
    t = selfsup.TEMPERATURE
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 6))
    assert selfsup.nt_xent(z, z).item() == pytest.approx(expected, rel=1e-5)
    assert selfsup.nt_xent(z, z.roll(1, 0)).item() > expected + 1  # partners that disagree cost more


def test_label_free_evaluator_trains_saves_and_has_no_classes(unlabeled, tmp_path):
    model = selfsup.train_contrastive(unlabeled, epochs=3, batch_size=32, progress=False)
    assert model.spec.objective == "contrastive" and model.spec.classes == [] and model.head is None
    assert len(model.spec.history) == 3 and all(math.isfinite(v) for v in model.spec.history)
    features, logits = model.embed(unlabeled.images[:10])
    assert features.shape == (10, classifier.FEATURES) and logits is None
    path = classifier.save_classifier(model, tmp_path / "free.safetensors")
    again = classifier.load_classifier(path)
    assert again.spec == model.spec and torch.allclose(again.embed(unlabeled.images[:10])[0], features)
    with pytest.raises(GankitError, match="label-free evaluator"):
        classifier.classify([tmp_path / "x.png"], path)


def test_training_lowers_the_contrastive_loss_on_held_out_images(unlabeled):
    model = selfsup.train_contrastive(unlabeled, epochs=6, batch_size=32, progress=False)
    assert model.spec.history[-1] < model.spec.history[0]


def test_unlabeled_data_gets_the_label_free_evaluator_once(unlabeled, monkeypatch):
    assert ev.kind_for(unlabeled) == "self"
    assert ev.kind_for(load("mnist5k", subset=50)) == "classifier"
    with pytest.raises(GankitError, match="no labels to train a classifier evaluator"):
        ev.kind_for(unlabeled, "classifier")
    model = ev.evaluator_for(unlabeled, progress=False, epochs=2)
    assert model.spec.objective == "contrastive"
    monkeypatch.setattr(selfsup, "train_contrastive", lambda *a, **k: pytest.fail("retrained, not cached"))
    cached = ev.evaluator_for(unlabeled, progress=False, epochs=2)
    assert ev.fingerprint(cached) == ev.fingerprint(model)


def test_label_free_features_tell_real_images_from_noise(unlabeled):
    model = ev.evaluator_for(unlabeled, progress=False, epochs=2)
    ref = ev.reference_for(unlabeled, model)
    assert ref.num_classes == 0 and len(ref.preds_b) == 0
    floor = metrics.floor(ref, 60)
    noise = torch.randint(0, 256, (60, 1, 28, 28), dtype=torch.uint8)
    junk = metrics.measure(lambda k: noise[:k], model, ref, 60)
    assert junk["fd"] > 3 * floor["fd"] and junk["precision"] < floor["precision"]
    assert "classes_covered" not in junk


def test_an_unlabeled_folder_is_evaluated_while_training(flat, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(data=f"folder:{flat}", subset=0, epochs=2, eval_samples=40), run, progress=False)
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "eval"]
    assert [e["epoch"] for e in evals] == [1, 2] and all(e["fd"] > 0 and "spread" in e for e in evals)
    assert (run / "best.safetensors").is_file()
    result = evaluate(run, n=40, progress=False, record=False)
    assert result.values["fd"] > result.floor["fd"] >= 0


def test_evaluator_kind_self_on_a_labeled_source(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(evaluator_kind="self", epochs=1, eval_samples=40, subset=120), run, progress=False)
    last = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "eval"]
    assert evals and "classes_covered" not in evals[-1]  # label-free: no classes to cover
    assert last


def test_evaluator_kind_is_checked():
    with pytest.raises(GankitError, match="evaluator_kind must be one of"):
        tiny_config(evaluator_kind="labels")


def test_evaluate_fakes_from_an_npy_and_a_folder(unlabeled, flat, tmp_path, capsys):
    noise = np.random.default_rng(0).uniform(-1, 1, (40, 1, 28, 28)).astype(np.float32)
    np.save(tmp_path / "noise.npy", noise)
    junk = evaluate_fakes(tmp_path / "noise.npy", f"folder:{flat}", progress=False)
    real = evaluate_fakes(flat, f"folder:{flat}", n=40, progress=False)
    assert junk.n == 40 and real.n == 40 and junk.floor == real.floor
    assert junk.values["fd"] > 3 * real.values["fd"]
    assert main(["evaluate", "--fakes", str(tmp_path / "noise.npy"), "--real", f"folder:{flat}", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fakes"]["kind"] == "npy" and out["n"] == 40 and out["fd"] == junk.values["fd"]
    assert out["floor"]["fd"] == junk.floor["fd"]


@pytest.mark.parametrize("argv, message", [
    (["evaluate"], "give a run directory, or --fakes"),
    (["evaluate", "RUN", "--fakes", "F", "--real", "mnist5k"], "give a run directory, or --fakes"),
    (["evaluate", "--fakes", "F"], "--fakes needs --real"),
    (["evaluate", "--fakes", "F", "--real", "mnist5k", "--best"], "--best is for a run directory"),
    (["evaluate", "RUN", "--real", "mnist5k"], "--real and --data-dir go with --fakes"),
    (["evaluate", "--fakes", "missing.txt", "--real", "mnist5k"], "are none of: a run directory"),
])
def test_evaluate_fakes_misuse_is_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_too_few_fakes_is_one_line(flat, tmp_path, capsys):
    np.save(tmp_path / "few.npy", np.zeros((5, 1, 28, 28), dtype=np.float32))
    assert main(["evaluate", "--fakes", str(tmp_path / "few.npy"), "--real", f"folder:{flat}"]) == 2
    assert "holds 5 readable images" in capsys.readouterr().err


def test_fakes_of_another_size_are_refused(flat, tmp_path, capsys):
    np.save(tmp_path / "big.npy", np.zeros((20, 3, 32, 32), dtype=np.float32))
    evaluated = evaluate_fakes(tmp_path / "big.npy", f"folder:{flat}", n=20, progress=False)  # reals at their size
    assert evaluated.n == 20
    (tmp_path / "mixed").mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "mixed" / "a.png")
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(tmp_path / "mixed" / "b.png")
    with pytest.raises(GankitError, match="never resized"):
        evaluate_fakes(tmp_path / "mixed", f"folder:{flat}", progress=False)


def test_reals_png_is_the_sample_grids_layout(mlp_run, dcgan_run):
    for run in (mlp_run, dcgan_run):
        reals, sample = read_png(run / "reals.png"), read_png(run / "samples" / "epoch_001.png")
        assert reals.shape == sample.shape
    data = load("mnist5k", subset=256)
    picks = grid_picks(data, 20, 10)  # conditional: column c holds class c
    index = [int(torch.nonzero((data.images == p).flatten(1).all(1)).flatten()[0]) for p in picks]
    assert [int(data.labels[i]) for i in index] == [k % 10 for k in range(20)]
    assert torch.equal(read_png(dcgan_run / "reals.png"), upscale(grid(grid_picks(data, 20, 10), nrow=10)))


# ---------------------------------------------------------------- is it copying?
@pytest.fixture(scope="module")
def pool_and_unseen():
    """300 labeled digits to measure against, and 300 others that are in no pool."""
    from gankit.data.loading import ImageData

    full = load("mnist5k", subset=600)
    pool = ImageData(full.images[:300].clone(), full.labels[:300].clone(), full.classes, "pool300")
    model = ev.evaluator_for(pool, progress=False, epochs=2)
    return pool, full.images[300:], model, ev.reference_for(pool, model)


def test_copies_of_training_images_have_a_copy_rate_near_1(pool_and_unseen):
    pool, unseen, model, ref = pool_and_unseen
    noise = torch.randint(-3, 4, pool.images[:150].shape, generator=torch.Generator().manual_seed(0))
    copies = (pool.images[:150].int() + noise).clamp(0, 255).to(torch.uint8)  # training images, a little noise
    copied = metrics.measure(lambda k: copies[:k], model, ref, 150)
    new = metrics.measure(lambda k: unseen[:k], model, ref, 150)
    floor = metrics.floor(ref, 150)
    assert copied["copy_rate"] > 0.9
    assert new["copy_rate"] < 0.1 and floor["copy_rate"] < 0.1
    details = copied["copying"]
    assert details["threshold"] > 0 and details["quantile"] == 0.01 and details["pool"] == 300
    assert details["ct"] is None and details["rate"] == copied["copy_rate"]


def test_the_copy_threshold_is_the_real_images_own_nearest_distance():
    from gankit.quality import copying

    pool = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    dist, index = copying.nearest(pool, pool, skip_from=0)  # leave-one-out: nobody is their own neighbour
    assert dist.tolist() == [1.0, 1.0, 2.0, 4.0] and index.tolist() == [1, 0, 1, 2]
    assert copying.threshold(dist, 0.0) == 1.0
    test = copying.copy_test(torch.tensor([[0.1], [5.0]]), pool, 1.0)
    assert test["rate"] == 0.5  # 0.1 from a real point: a copy; 5.0 is 2 away from its nearest: new


def test_evaluate_writes_the_copy_gallery_and_the_report_shows_it(mlp_run, tmp_path):
    import shutil

    from gankit.report.run_page import write_report

    run = Path(shutil.copytree(mlp_run, tmp_path / "run"))
    result = evaluate(run, n=40, progress=False)
    assert 0 <= result.values["copy_rate"] <= 1 and result.floor["copy_rate"] < 0.1
    gallery = read_png(run / "copies.png")
    side = (4 * 30 + 2) * grid_scale(4 * 30 + 2)  # 4 x 4 pairs, enlarged to at least 512 px as grids are
    assert gallery.shape[0] == 1 and gallery.shape[1] == side and gallery.shape[2] == side
    page = write_report(run).read_text()
    assert "Is it copying?" in page and "real training images" in page
    assert evaluate(run, n=40, progress=False, record=False).values == result.values


# ---------------------------------------------------------------- held-out images and C_T
def test_mann_whitney_z_and_ct_tell_copies_from_new_samples():
    from gankit.quality import copying

    lo, hi = torch.arange(30.0), torch.arange(30.0) + 100
    assert copying.mann_whitney_z(hi, lo) > 6 and copying.mann_whitney_z(lo, hi) < -6
    assert abs(copying.mann_whitney_z(lo, lo + 0.5) + copying.mann_whitney_z(lo + 0.5, lo)) < 1e-9
    g = torch.Generator().manual_seed(0)
    train, held = torch.randn(2000, 6, generator=g), torch.randn(600, 6, generator=g)
    copies = train[:600] + 0.01 * torch.randn(600, 6, generator=g)
    new = torch.randn(600, 6, generator=g)
    far = 3 * torch.randn(600, 6, generator=g)
    ct_copies, ct_new, ct_far = (copying.ct_statistic(x, train, held) for x in (copies, new, far))
    assert ct_copies < -5 and abs(ct_new) < 2.5 and ct_far > 5
    assert copying.ct_statistic(new[:5], train, held) is None  # no cell holds 20 fakes


def test_held_out_images_are_never_trained_on():
    data = load("mnist5k", subset=200)
    held = ev.held_out(data, 0.25)
    assert len(held) == 50 and set(held.tolist()) <= set(ev.halves(data)[1].tolist())
    keep = torch.nonzero(~torch.isin(torch.arange(len(data)), held)).flatten()
    shown = batches.Batches(data.images, 10, seed=0, keep=keep)
    assert len(shown) == 15
    seen = torch.cat([x for e in range(3) for x, _ in shown.epoch(e)])
    held_images = batches.to_float(data.images[held]).flatten(1)
    assert not (torch.cdist(seen.flatten(1), held_images) < 1e-6).any()
    assert len(ev.held_out(data, 0.0)) == 0
    with pytest.raises(GankitError, match="holdout must be"):
        tiny_config(holdout=0.6)


def test_a_run_with_held_out_images_reports_ct(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(holdout=0.5, subset=256, epochs=1, eval_samples=100), run, progress=False)
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "eval"]
    assert isinstance(evals[-1]["copying"]["ct"], float) and evals[-1]["floor"]["copying"]["ct"] is None
    result = evaluate(run, n=100, progress=False, record=False)
    assert isinstance(result.values["copying"]["ct"], float)
    again = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][0]
    assert again


# ---------------------------------------------------------------- hostile inputs (review findings)
def test_a_crafted_cached_evaluator_or_reference_is_rebuilt(unlabeled, monkeypatch):
    import json as json_mod

    from safetensors.torch import load_file, save_file

    model = ev.evaluator_for(unlabeled, progress=False, epochs=2)
    ref = ev.reference_for(unlabeled, model)
    digest = classifier.data_hash(unlabeled)[:16]
    cached = next(p for p in Path(ev.cache_dir(), "evaluators").glob("*-self-v1.safetensors") if digest in p.name)
    weights = load_file(str(cached))
    spec = json_mod.loads(json_mod.dumps(model.spec.__dict__))
    for crafted, meta in [({**weights, "body.0.weight": torch.zeros(32, 1, 5, 5)}, spec),
                          (weights, {**spec, "channels": 10**9}), (weights, {**spec, "classes": ["a", "b"]}),
                          ({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                            for k, v in weights.items()}, spec)]:
        save_file(crafted, str(cached), metadata={"gankit_classifier": json_mod.dumps(meta)})
        with pytest.raises(GankitError, match="not a gankit classifier|do not fit|NaN or infinite|its metadata"):
            classifier.load_classifier(cached)
    monkeypatch.setattr(selfsup, "EPOCHS", 1)
    rebuilt = ev.evaluator_for(unlabeled, progress=False, epochs=1)  # the damaged entry is retrained
    assert rebuilt.spec.objective == "contrastive"
    again = ev.reference_for(unlabeled, rebuilt)
    path = next(Path(ev.cache_dir(), "reference").glob(f"*{ev.fingerprint(rebuilt)[:12]}*"))
    save_file({"features_a": torch.zeros(5, 3), "features_b": torch.zeros(5, 3), "preds_b": torch.zeros(0),
               "class_prior": torch.zeros(0)}, str(path))
    assert torch.equal(ev.reference_for(unlabeled, rebuilt).features_a, again.features_a)
    assert ref is not None


def test_fakes_too_small_or_too_large_are_one_line(flat, tmp_path, capsys):
    for name, shape in (("tiny.npy", (20, 1, 2, 2)), ("huge.npy", (2, 1, 2048, 2048))):
        np.save(tmp_path / name, np.zeros(shape, dtype=np.uint8))
        assert main(["evaluate", "--fakes", str(tmp_path / name), "--real", f"folder:{flat}"]) == 2
        assert "gankit measures images of 8x8 to 1024x1024" in capsys.readouterr().err


def test_a_fifo_metrics_log_and_a_folder_copies_png_do_not_hang_or_lose_the_record(mlp_run, tmp_path, capsys):
    import os
    import shutil

    run = Path(shutil.copytree(mlp_run, tmp_path / "run"))
    (run / "copies.png").unlink(missing_ok=True)  # an earlier evaluation of the shared run may have written it
    (run / "copies.png").mkdir()
    before = len((run / "metrics.jsonl").read_text().splitlines())
    result = evaluate(run, n=20, progress=False)
    assert len((run / "metrics.jsonl").read_text().splitlines()) == before + 1
    assert any("copies.png" in note for note in result.notes)
    (run / "metrics.jsonl").unlink()
    os.mkfifo(run / "metrics.jsonl")
    assert main(["evaluate", str(run), "-n", "20"]) == 2
    assert "is a FIFO (named pipe), not a regular file" in capsys.readouterr().err
