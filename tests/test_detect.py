"""Fake detection (gankit detect): the methods on data with a known answer, the metrics on a hand-computed case,
what evaluation never reuses, the detector folder on disk, bad input, the discriminator of a trained run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gankit.data import batches, loading
from gankit.detect import inputs, perturb, store
from gankit.detect.evaluation import evaluate_detector, score_files
from gankit.detect.scores import detection_metrics
from gankit.detect.training import train_detector
from gankit.images import save_png
from gankit.inference import fake_sources
from gankit.quality import classifier
from gankit.run import layout

from .conftest import snapshot
from .test_safety import _cli

TRAINED = ["cnn", "probe", "spectrum"]
FAST = {"cnn": {"epochs": 4}}  # enough for the data below; the default (20, early-stopped) is for real use


def synthetic(n: int, seed: int, corner: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 uint8 images: a Gaussian blob on the left (label 0) or right (label 1) over noise; corner=True
    adds a bright 4x4 square near the bottom-right corner (the fakes of the separable case)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    labels = rng.integers(0, 2, n)
    cx = np.where(labels == 0, rng.uniform(6, 12, n), rng.uniform(16, 22, n))
    cy = rng.uniform(6, 20, n)
    blob = 200 * np.exp(-((xx[None] - cx[:, None, None]) ** 2 + (yy[None] - cy[:, None, None]) ** 2) / 18.0)
    images = np.clip(blob + 30 + rng.normal(0, 12, (n, 28, 28)), 0, 255)
    if corner:
        images[:, 23:27, 23:27] = 255
    return images.round().astype(np.uint8)[:, None], labels


def _npy(path, images: np.ndarray):
    """Fakes as `gankit generate` writes them: float32 in [-1, 1]."""
    np.save(path, batches.to_float(torch.from_numpy(images)).numpy())
    return path


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A labeled real pack of 400 images, fakes with a bright corner and fakes like the real ones (.npy, each
    for training and for testing, from different seeds), and a quickly trained evaluator for the probe."""
    root = tmp_path_factory.mktemp("synth")
    images, labels = synthetic(400, 0)
    real = loading.ImageData(torch.from_numpy(images), torch.from_numpy(labels), ["left", "right"], "synthetic")
    loading.write_pack(real, root / "real")
    paths = {"real": f"packed:{root / 'real'}", "root": root}
    for name, seed, corner in (("corner_train", 1, True), ("corner_test", 2, True), ("same_train", 3, False),
                               ("same_test", 4, False)):
        paths[name] = str(_npy(root / f"{name}.npy", synthetic(200, seed, corner)[0]))
    model = classifier.train_classifier(real, epochs=2, progress=False)
    paths["evaluator"] = str(classifier.save_classifier(model, root / "evaluator.safetensors"))
    return paths


def _train(synth, method, fake, out, **kw):
    return train_detector(synth["real"], [synth[fake]], method, out, evaluator=synth["evaluator"], progress=False,
                          **{**FAST.get(method, {}), **kw})


# ------------------------------------------------------------------ the numbers
def test_metrics_on_hand_computed_cases():
    # fakes score 0.35 and 0.8, reals 0.1 and 0.4: 3 of the 4 (fake, real) pairs are ordered right -> AUC 0.75;
    # by descending score: 0.8 fake (precision 1 at recall 1/2), 0.4 real, 0.35 fake (2/3 at recall 1)
    # -> AP = 1/2 * 1 + 1/2 * 2/3 = 0.8333; at 0.5 only 0.8 is called generated: 3 of 4 right
    m = detection_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert m["auc"] == pytest.approx(0.75) and m["ap"] == pytest.approx(5 / 6)
    assert (m["acc"], m["real_acc"], m["fake_acc"], m["oracle_acc"]) == pytest.approx((0.75, 1.0, 0.5, 0.75))
    # perfectly ranked but every score under 0.5: the threshold, not the ranking, is wrong
    m = detection_metrics([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4])
    assert (m["auc"], m["ap"], m["acc"], m["real_acc"], m["fake_acc"]) == pytest.approx((1, 1, 0.5, 1, 0))
    assert m["oracle_acc"] == 1.0 and m["oracle_threshold"] == pytest.approx(0.3)


# ------------------------------------------------------------------ the methods on known answers
@pytest.mark.parametrize("method", TRAINED)
def test_every_trained_method_separates_fakes_with_a_bright_corner(synth, tmp_path, method):
    trained = _train(synth, method, "corner_train", tmp_path / "det")
    assert trained.trained_on["validation"]["auc"] >= 0.99
    result = evaluate_detector(trained.path, synth["real"], [synth["corner_test"]])
    assert result.values["auc"] >= 0.99 and result.values["ap"] >= 0.99
    assert result.real["n"] == 200 and result.real["left_out"] == 200  # the held-out half only
    rows = store.evaluations(trained.path)
    assert len(rows) == 1 and rows[0]["auc"] == pytest.approx(result.values["auc"], abs=1e-5)
    assert (trained.path / layout.ROC).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("method", TRAINED)
def test_identical_distributions_are_at_chance(synth, tmp_path, method):
    # real against other real-like images labelled fake: nothing to learn, so AUC ~ 0.5 on new images
    trained = _train(synth, method, "same_train", tmp_path / "det")
    result = evaluate_detector(trained.path, synth["real"], [synth["same_test"]], roc=False, record=False)
    assert 0.4 <= result.values["auc"] <= 0.6, result.values


def test_the_probe_can_use_inception_features(synth, tmp_path, stub_weights):
    trained = _train(synth, "probe", "corner_train", tmp_path / "det", features="inception", n=100)
    stored = store.read(trained.path)
    assert stored.config["settings"]["features"] == "inception"
    assert not any(k.startswith("features.") for k in stored.tensors)  # the weights come from the extra
    result = evaluate_detector(trained.path, synth["real"], [synth["corner_test"]], n=100, roc=False)
    assert result.values["auc"] >= 0.99  # the stub's pooled pixels see the bright corner


def test_the_cnn_is_early_stopped_on_validation_and_keeps_its_best_epoch(synth, tmp_path):
    trained = _train(synth, "cnn", "same_train", tmp_path / "det", epochs=12, patience=2)
    settings = store.read(trained.path).config["settings"]
    epochs = [r for r in store.MetricsFile(trained.path / layout.METRICS).read("epoch")]
    assert settings["epochs_trained"] == len(epochs) < 12  # nothing to learn: it stops early
    best = min(epochs, key=lambda r: r["val_loss"])
    assert settings["best_epoch"] == best["epoch"] == len(epochs) - 2  # then `patience` epochs without gain


def test_augmentation_blurs_and_compresses_half_the_images_each(monkeypatch):
    seen = {}
    real_blur, real_jpeg = perturb.blur, perturb.jpeg

    def blur(images, sigma):
        seen["sigma"] = sigma
        return real_blur(images, sigma)

    def jpeg(images, quality):
        seen["quality"] = quality
        return real_jpeg(images, quality)

    monkeypatch.setattr(perturb, "blur", blur)
    monkeypatch.setattr(perturb, "jpeg", jpeg)
    images = torch.from_numpy(synthetic(4000, 0)[0])
    perturb.augment(images, torch.Generator().manual_seed(0))
    sigma, quality = seen["sigma"], seen["quality"]
    assert 0.45 < (sigma > 0).float().mean() < 0.55 and float(sigma.max()) <= 3.0  # sigma ~ U[0, 3] for half
    assert 0.45 < len(quality) / len(images) < 0.55  # JPEG for the other coin's half
    assert 30 <= int(quality.min()) and int(quality.max()) <= 100 and len(quality.unique()) > 60


def test_blur_and_jpeg_change_images_as_they_should():
    images = torch.from_numpy(synthetic(8, 0)[0])
    assert torch.equal(perturb.blur(images, 0.0), images)
    blurred = perturb.blur(images, 1.0)
    def roughness(x):  # mean difference between horizontal neighbours: the pixel noise
        return (x[..., 1:].float() - x[..., :-1].float()).abs().mean()

    assert roughness(blurred) < roughness(images) / 2  # the noise is smoothed away
    assert abs(blurred.float().mean() - images.float().mean()) < 1.0  # brightness kept
    # one sigma per image: the second image is left alone while the first is blurred
    mixed = perturb.blur(images[:2], torch.tensor([1.0, 0.0]))
    assert torch.equal(mixed[1], images[1]) and torch.equal(mixed[0], blurred[0])
    compressed = perturb.jpeg(images, 10)
    assert compressed.shape == images.shape and compressed.dtype == torch.uint8 and not torch.equal(compressed, images)


# ------------------------------------------------------------------ what evaluation never reuses
def test_evaluation_never_reuses_the_real_training_images(synth, tmp_path, scored):
    trained = _train(synth, "spectrum", "corner_train", tmp_path / "det")
    training_hashes = store.read(trained.path).hashes("real")
    assert len(training_hashes) == 200
    # the same digits read again through another source (a folder of their PNGs) are still recognized
    images = loading.load(synth["real"]).images
    folder = tmp_path / "again"
    folder.mkdir()
    for i, image in enumerate(images):
        save_png(image, folder / f"{i:03d}.png")
    for source in (synth["real"], f"folder:{folder}"):
        scored.clear()
        result = evaluate_detector(trained.path, source, [synth["corner_test"]], roc=False, record=False)
        assert result.real == {"source": source, "n": 200, "left_out": 200}
        real_scored = scored[0][:result.real["n"]]
        assert not torch.isin(inputs.image_hashes(real_scored), training_hashes).any()
    # a detector trained on all of a source has nothing to be measured on there
    everything = _train(synth, "spectrum", "corner_train", tmp_path / "all", holdout=0.0)
    with pytest.raises(Exception, match="every real image"):
        evaluate_detector(everything.path, synth["real"], [synth["corner_test"]])


def test_evaluation_leaves_out_the_training_fakes(synth, tmp_path):
    trained = _train(synth, "spectrum", "corner_train", tmp_path / "det")
    with pytest.raises(Exception, match="every fake from .* was used to train"):
        evaluate_detector(trained.path, synth["real"], [synth["corner_train"]], roc=False)
    assert store.evaluations(trained.path) == []


# ------------------------------------------------------------------ the folder on disk
def test_a_failed_training_leaves_no_half_directory(synth, tmp_path, monkeypatch, capsys):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.MetricsFile, "append", full_disk)  # the last file written
    code, out, err = _cli(capsys, "detect", "train", "--real", synth["real"], "--fake", synth["corner_train"],
                          "--method", "spectrum", "--out", tmp_path / "det", "--no-progress")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "No space" in err
    assert list(tmp_path.iterdir()) == []  # neither the detector nor its temporary folder
    # a temporary folder left by a killed training is removed by the next training into the same place
    monkeypatch.undo()
    killed = subprocess.Popen(["true"])
    killed.wait()
    orphan = tmp_path / f".det.gankit-{killed.pid}-abc12345.tmp"  # gankit's name, of a process that is gone
    orphan.mkdir()
    (orphan / "detector.toml").touch()
    _train(synth, "spectrum", "corner_train", tmp_path / "det")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["det"]
    assert sorted(p.name for p in (tmp_path / "det").iterdir()) == sorted(
        [layout.DETECTOR_CONFIG, layout.DETECTOR_WEIGHTS, layout.TRAINED_ON, layout.METRICS])


def test_the_detector_describes_itself(synth, tmp_path):
    trained = _train(synth, "cnn", "corner_train", tmp_path / "det")
    stored = store.read(trained.path)
    assert stored.config["method"] == "cnn" and stored.shape == (1, 28)
    assert stored.config["settings"]["augment_p"] == 0.5
    assert stored.trained_on["real"]["n_used"] == 200 and stored.trained_on["real"]["n_held_out"] == 200
    assert stored.trained_on["fakes"][0] == {"kind": "npy", "path": synth["corner_train"], "n": 200}
    assert len(stored.hashes("fake")) == 200
    assert {r["kind"] for r in store.MetricsFile(trained.path / layout.METRICS).read()} == {"epoch", "trained"}


# ------------------------------------------------------------------ bad input: one line, exit 2, nothing written
def _refused(capsys, tmp_path, argv, message):
    before = snapshot(tmp_path)
    code, out, err = _cli(capsys, *argv)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err
    assert snapshot(tmp_path) == before


def test_bad_input_is_one_line_and_writes_nothing(synth, tmp_path, capsys, mlp_run):
    (tmp_path / "notes.txt").write_text("not fakes")
    (tmp_path / "empty").mkdir()
    np.save(tmp_path / "big.npy", np.zeros((4, 1, 32, 32), np.float32))
    np.save(tmp_path / "wide.npy", np.full((4, 1, 28, 28), 3.0, np.float32))
    train = ["detect", "train", "--real", synth["real"], "--out", tmp_path / "det", "--method", "spectrum"]
    _refused(capsys, tmp_path, train + ["--fake", tmp_path / "notes.txt"], "none of: a run directory")
    _refused(capsys, tmp_path, train + ["--fake", tmp_path / "empty"], "no images in")
    _refused(capsys, tmp_path, train + ["--fake", synth["corner_train"], "--fake", tmp_path / "big.npy"],
             "32x32 images and the detector takes 1-channel 28x28")
    _refused(capsys, tmp_path, train + ["--fake", tmp_path / "wide.npy"], "outside [-1, 1]")
    _npy(tmp_path / "reals.npy", synthetic(400, 0)[0])  # the real pack's own images, given as fakes
    _refused(capsys, tmp_path, train + ["--fake", tmp_path / "reals.npy"], "are, pixel for pixel, real images of")
    _refused(capsys, tmp_path, train + ["--fake", synth["corner_train"], "--epochs", "3"], "not a setting")
    _refused(capsys, tmp_path, train + ["--fake", synth["corner_train"], "-n", "0"], "-n is the number of real")
    _refused(capsys, tmp_path, train + ["--fake", synth["corner_train"], "-n", "-5"], "at least 10")
    _refused(capsys, tmp_path, ["detect", "train", "--method", "discriminator", "--out", tmp_path / "d"],
             "needs --run")
    for target, message in ((tmp_path / "empty", "not a detector directory"), (mlp_run, "it is a run directory"),
                            (tmp_path / "missing", "not found")):
        _refused(capsys, tmp_path, ["detect", "eval", target, "--real", synth["real"], "--fake",
                                    synth["corner_test"]], message)
        _refused(capsys, tmp_path, ["detect", "score", target, tmp_path / "notes.txt"], message)


def test_eval_and_score_refuse_bad_images(synth, tmp_path, capsys):
    trained = _train(synth, "spectrum", "corner_train", tmp_path / "det")
    np.save(tmp_path / "big.npy", np.zeros((4, 1, 32, 32), np.float32))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    save_png(torch.zeros(1, 32, 32, dtype=torch.uint8), tmp_path / "large.png")
    _refused(capsys, tmp_path, ["detect", "eval", trained.path, "--real", synth["real"], "--fake",
                                tmp_path / "big.npy"], "the detector takes 1-channel 28x28")
    _refused(capsys, tmp_path, ["detect", "eval", trained.path, "--real", synth["real"], "--fake",
                                synth["corner_test"], "--jpeg", "0"], "--jpeg takes a quality")
    _refused(capsys, tmp_path, ["detect", "score", trained.path, tmp_path / "broken.png"], "cannot read")
    _refused(capsys, tmp_path, ["detect", "score", trained.path, tmp_path / "nothing.png"], "no such file")
    _refused(capsys, tmp_path, ["detect", "score", trained.path, tmp_path / "large.png"], "is 32x32")


def test_score_prints_a_probability_per_file_and_the_caveat_once(synth, tmp_path, capsys):
    trained = _train(synth, "spectrum", "corner_train", tmp_path / "det")
    files = []
    for name, corner in (("real", False), ("fake", True)):
        save_png(torch.from_numpy(synthetic(1, 9, corner)[0][0]), tmp_path / f"{name}.png")
        files.append(tmp_path / f"{name}.png")
    code, out, err = _cli(capsys, "detect", "score", trained.path, *files)
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 2 and err.count("not calibrated") == 1
    p_real, p_fake = (float(line.split("\t")[1]) for line in lines)
    assert 0 <= p_real < 0.5 < p_fake <= 1
    code, out, _ = _cli(capsys, "detect", "score", trained.path, *files, "--json")
    assert [r["p_generated"] for r in json.loads(out)] == pytest.approx([p_real, p_fake], abs=1e-4)
    assert score_files(trained.path, files)[1][1] == pytest.approx(p_fake, abs=1e-4)


# ------------------------------------------------------------------ the discriminator, the CLI, the reports
def test_the_discriminator_of_a_trained_run_is_a_detector(dcgan_run, tmp_path, capsys):
    out = tmp_path / "d"
    code, text, _ = _cli(capsys, "detect", "train", "--method", "discriminator", "--run", dcgan_run, "--out", out)
    assert code == 0 and "nothing trained" in text
    stored = store.read(out)
    assert len(stored.hashes("real")) == 256  # the run's 256 training digits, left out of every evaluation
    code, text, _ = _cli(capsys, "detect", "eval", out, "--real", "mnist5k", "--fake", dcgan_run, "-n", "300",
                         "--json")
    row = json.loads(text)
    assert code == 0 and 0 <= row["auc"] <= 1 and row["real"]["n"] == 300 and row["real"]["left_out"] > 0
    images = torch.cat([loading.load("mnist5k").images[:50], fake_sources.load_fakes(dcgan_run, 50, (1, 28)).images])
    for rule in ("max", "mean"):
        scores = store_detector(stored, label_rule=rule).scores(images)
        assert scores.shape == (100,) and 0 <= float(scores.min()) and float(scores.max()) <= 1
        assert scores.std() > 0  # not a constant


def test_the_discriminator_normalizes_with_its_real_images_statistics(dcgan_run, tmp_path):
    calibrated = store.read(train_detector(method="discriminator", run=dcgan_run, out=tmp_path / "real").path)
    running = store.read(train_detector(method="discriminator", run=dcgan_run, out=tmp_path / "running",
                                        batchnorm="running").path)
    body = store_detector(calibrated).net.base.body
    conv, norm = body[0], body[1]
    assert isinstance(norm, torch.nn.BatchNorm2d)
    # the run's 256 training digits, in equal batches of its batch size: the running mean is their mean
    real = batches.to_float(loading.load("mnist5k", subset=256).images)
    with torch.no_grad():
        assert torch.allclose(norm.running_mean, conv(real).mean((0, 2, 3)), atol=1e-4)
    assert calibrated.config["settings"]["calibration_images"] == 256
    assert not torch.allclose(calibrated.tensors["d.base.body.1.running_mean"],
                              running.tensors["d.base.body.1.running_mean"])


def test_a_projection_discriminator_is_scored_under_every_class_at_once(dcgan_run):
    from gankit.detect.discriminator import DiscriminatorDetector
    from gankit.models.registry import run

    detector = DiscriminatorDetector.from_run(dcgan_run, loading.load("mnist5k", subset=256).images)
    x = batches.to_float(fake_sources.load_fakes(dcgan_run, 20, (1, 28)).images)
    with torch.no_grad():
        detector.net.eval()
        one_by_one = torch.stack([run(detector.net, x, torch.full((20,), y)) for y in range(10)], 1)
        assert torch.allclose(detector.per_class(x), one_by_one, atol=1e-5)
        realness = one_by_one.max(1).values
    assert torch.allclose(detector.scores(batches.to_uint8(x)), torch.sigmoid(-realness), atol=1e-5)


def store_detector(stored, **changes):
    from gankit.detect.methods import restore

    return restore("discriminator", {**stored.config["settings"], **changes}, stored.tensors)


def test_reports_show_a_detector_and_how_detectable_a_runs_fakes_are(mlp_run, tmp_path, capsys):
    run = tmp_path / "runs" / "mlp"
    shutil.copytree(mlp_run, run)
    det = tmp_path / "runs" / "detect-spectrum"
    assert _cli(capsys, "detect", "train", "--real", "mnist5k", "--fake", run, "--method", "spectrum", "-n", "200",
                "--out", det, "--no-progress")[0] == 0
    code, text, _ = _cli(capsys, "detect", "eval", det, "--real", "mnist5k", "--fake", run, "-n", "200",
                         "--blur", "1")
    assert code == 0 and "ROC AUC" in text and "blur 1" in text
    assert _cli(capsys, "report", det)[0] == 0
    page = (det / "report.html").read_text()
    assert "gankit detector" in page and "data:image/png;base64" in page and "blur 1" in page
    assert _cli(capsys, "report", run)[0] == 0
    page = (run / "report.html").read_text()
    assert "Detectability" in page and "detect-spectrum (spectrum)" in page


def test_the_detect_command_line_imports_no_torch():
    code = "import sys, gankit.detect.cli; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def test_the_roc_curve_never_lands_on_a_run_or_a_pack(synth, tmp_path, capsys, mlp_run):
    trained = _train(synth, "spectrum", "corner_train", tmp_path / "det")
    pack = Path(synth["real"].split(":", 1)[1])
    before = {p: p.read_bytes() for p in (mlp_run / "generator.safetensors", pack / "images.npy")}
    evaluate = ["detect", "eval", trained.path, "--real", synth["real"], "--fake", synth["corner_test"], "--roc"]
    for target, message in ((mlp_run / "generator.safetensors", "ending in .png"),
                            (mlp_run / "roc.png", "inside the run directory"),
                            (pack / "images.npy", "ending in .png"), (pack / "roc.png", "inside the pack")):
        code, out, err = _cli(capsys, *evaluate, target)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert all(p.read_bytes() == b for p, b in before.items())
    assert not (mlp_run / "roc.png").exists() and not (pack / "roc.png").exists()


def test_a_fifo_in_a_detector_folder_is_refused_not_waited_on(synth, tmp_path, capsys):
    import os

    trained = _train(synth, "spectrum", "corner_train", tmp_path / "det")
    for name in ("detector.safetensors", "trained_on.json", "metrics.jsonl"):
        copy = tmp_path / f"fifo-{name}"
        shutil.copytree(trained.path, copy)
        (copy / name).unlink()
        os.mkfifo(copy / name)
        code, out, err = _cli(capsys, "detect", "eval", copy, "--real", synth["real"], "--fake", synth["corner_test"])
        assert code == 2 and f"{name} is a FIFO (named pipe), not a regular file" in err, err


def test_fakes_in_either_byte_order_read_alike(synth, tmp_path):

    little = np.load(synth["corner_test"])
    np.save(tmp_path / "big_endian.npy", little.astype(">f4"))
    a = fake_sources.load_fakes(synth["corner_test"], None, (1, 28))
    b = fake_sources.load_fakes(tmp_path / "big_endian.npy", None, (1, 28))
    assert np.load(tmp_path / "big_endian.npy").dtype.byteorder == ">" and torch.equal(a.images, b.images)
    assert a.images.shape == (200, 1, 28, 28) and a.images.dtype == torch.uint8


def test_fakes_are_refused_once_more_than_a_tenth_are_real_images():
    from gankit.detect.training import _check_apart
    from gankit.errors import GankitError

    reals = torch.from_numpy(synthetic(100, 0)[0])
    fakes = torch.from_numpy(synthetic(100, 1, corner=True)[0])

    def check(fake_images):
        _check_apart({"real_hashes": inputs.image_hashes(reals), "fake_hashes": inputs.image_hashes(fake_images)},
                     "packed:real")

    check(torch.cat([reals[:10], fakes[10:]]))  # a tenth: a GAN may copy a few training images; still trained
    with pytest.raises(GankitError, match=r"11 of the 100 fakes are, pixel for pixel, real images of packed:real"):
        check(torch.cat([reals[:11], fakes[11:]]))
    with pytest.raises(GankitError, match="100 of the 100 fakes"):  # one real image, over and over
        check(reals[:1].expand(100, -1, -1, -1))
