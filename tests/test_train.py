import json
import math

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from gankit import GankitError
from gankit import config as config_mod
from gankit.images import read_png
from gankit.run import checkpoint, generator_file
from gankit.run.checkpoint import load_checkpoint
from gankit.training.launch import resume, train

from .conftest import grid_scale, snapshot, tiny_config


def _train_rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["kind"] == "train"]


@pytest.mark.parametrize("fixture", ["mlp_run", "dcgan_run"])
def test_one_epoch_writes_a_complete_run(request, fixture):
    run = request.getfixturevalue(fixture)
    for name in ("config.toml", "checkpoint.pt", "generator.safetensors", "metrics.jsonl", "loss_curves.png",
                 "samples/epoch_001.png"):
        assert (run / name).is_file(), name
    assert list((run / "tb").glob("events.out.tfevents.*"))
    rows = _train_rows(run)
    assert [r["step"] for r in rows] == list(range(1, 9))  # 256 images / batch 32, every step logged
    for r in rows:
        assert all(math.isfinite(r[k]) for k in ("loss_D", "loss_G", "D(x)", "D(G(z))"))
        assert 0 <= r["D(x)"] <= 1 and 0 <= r["D(G(z))"] <= 1
    grid = read_png(run / "samples" / "epoch_001.png")
    # 16 samples of 28x28 with 2 px padding: 4 x 4 (simple-gan); the dcgan preset is conditional on the labeled
    # digits, so its grid has a column per class and 16 rounds up to 2 whole rows
    rows, cols = (2, 10) if generator_file.load_run_config(run).num_classes else (4, 4)
    k = grid_scale(cols * 30 + 2)  # the file is enlarged to at least 512 px wide (TensorBoard's grid is not)
    assert grid.shape == (1, (rows * 30 + 2) * k, (cols * 30 + 2) * k)
    state = checkpoint.load_checkpoint(run)
    assert state["epoch"] == 1 and state["step"] == 8
    weights = load_file(str(run / "generator.safetensors"))
    cfg = generator_file.load_run_config(run)
    exported = state["ema"]["model"] if cfg.ema else state["generator"]  # dcgan exports its EMA generator
    assert cfg.ema == (0.999 if fixture == "dcgan_run" else 0.0)
    assert all(torch.equal(weights[k], v) for k, v in exported.items())
    assert cfg.channels == 1 and cfg.subset == 256


def test_tensorboard_events_hold_scalars_and_images(dcgan_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(dcgan_run / "tb"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"loss_D", "loss_G", "D(x)", "D(G(z))"} <= set(tags["scalars"])
    assert "samples" in tags["images"]
    assert [e.step for e in acc.Scalars("loss_G")] == list(range(1, 9))
    assert acc.Images("samples")[0].width == 10 * 30 + 2  # conditional: one column per class


def test_resume_gives_identical_losses(tmp_path):
    cfg = tiny_config(preset="dcgan", epochs=2, subset=128)
    straight = train(cfg, tmp_path / "straight", progress=False)
    train(tiny_config(preset="dcgan", epochs=1, subset=128), tmp_path / "split", progress=False)
    resumed = resume(tmp_path / "split", {"epochs": 2}, progress=False)
    a, b = _train_rows(tmp_path / "straight"), _train_rows(tmp_path / "split")
    assert len(a) == len(b) == 8
    assert a == b  # every logged value of every step, bit for bit
    assert straight.steps == resumed.steps == 8
    sa, sb = checkpoint.load_checkpoint(tmp_path / "straight"), checkpoint.load_checkpoint(tmp_path / "split")
    assert all(torch.equal(sa["generator"][k], sb["generator"][k]) for k in sa["generator"])
    assert len(list((tmp_path / "split" / "samples").glob("*.png"))) == 2


def test_resume_drops_log_lines_past_the_checkpoint(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(), run, progress=False)
    with (run / "metrics.jsonl").open("a") as fh:  # a crash after the checkpoint logged steps 9 and 10
        for step in (9, 10):
            fh.write(json.dumps({"kind": "train", "epoch": 2, "step": step, "loss_D": 9.0}) + "\n")
    resume(run, {"epochs": 2}, progress=False)
    steps = [r["step"] for r in _train_rows(run)]
    assert steps == list(range(1, 17))
    assert all(r["loss_D"] != 9.0 for r in _train_rows(run))


def test_crash_during_checkpoint_save_keeps_the_old_one(tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(tiny_config(), run, progress=False)
    before = (run / "checkpoint.pt").read_bytes()
    real_save = torch.save

    def torn_save(obj, path, *args, **kwargs):
        real_save(obj, path, *args, **kwargs)
        with open(path, "r+b") as fh:  # half-written file, then the process "dies"
            fh.truncate(1000)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(KeyboardInterrupt):
        resume(run, {"epochs": 2}, progress=False)
    monkeypatch.undo()
    assert (run / "checkpoint.pt").read_bytes() == before
    assert checkpoint.load_checkpoint(run)["epoch"] == 1
    assert not list(run.glob(".checkpoint.pt.*"))  # no temporary file left behind
    resume(run, {"epochs": 2}, progress=False)  # and the run still resumes
    assert checkpoint.load_checkpoint(run)["epoch"] == 2


def test_refuses_to_overwrite_an_existing_run(mlp_run):
    before = snapshot(mlp_run)
    with pytest.raises(GankitError, match="already exists: continue it with --resume"):
        train(tiny_config(), mlp_run, progress=False)
    assert snapshot(mlp_run) == before


def test_resume_errors_leave_the_run_untouched(tmp_path, mlp_run):
    before = snapshot(mlp_run)
    with pytest.raises(GankitError, match="already trained 1 of 1 epochs"):
        resume(mlp_run, progress=False)
    with pytest.raises(GankitError, match="cannot change lr when resuming"):
        resume(mlp_run, {"lr": "0.1"}, progress=False)
    assert snapshot(mlp_run) == before
    with pytest.raises(GankitError, match="run directory not found"):
        resume(tmp_path / "nowhere", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GankitError, match="has no config.toml"):
        resume(tmp_path / "empty", progress=False)


def test_corrupt_or_missing_checkpoint(tmp_path, mlp_run):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(mlp_run, run)
    (run / "checkpoint.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    before = snapshot(run)
    with pytest.raises(GankitError, match="is corrupt or unreadable"):
        resume(run, {"epochs": 2}, progress=False)
    assert snapshot(run) == before
    (run / "checkpoint.pt").unlink()  # as if killed after its first export, before its first checkpoint
    result = resume(run, {"epochs": 2}, progress=False)  # trained again from epoch 1
    assert result.epochs == 2 and [r["step"] for r in _train_rows(run)] == list(range(1, 17))
    (run / "checkpoint.pt").unlink()  # now the export is of epoch 2: a checkpoint existed and was lost
    with pytest.raises(GankitError, match="has trained .* but its checkpoint.pt is missing"):
        resume(run, {"epochs": 3}, progress=False)


def test_checkpoint_never_unpickles_code(tmp_path):
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    (tmp_path / "config.toml").write_text("")
    torch.save({"x": Evil()}, tmp_path / "checkpoint.pt")
    with pytest.raises(GankitError, match="corrupt or unreadable"):
        checkpoint.load_checkpoint(tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_bad_data_creates_no_run_directory(tmp_path):
    with pytest.raises(GankitError, match="image folder not found"):
        train(tiny_config(data=f"folder:{tmp_path / 'none'}"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_cuda_requested_without_cuda(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(GankitError, match="CUDA is not available"):
        train(tiny_config(device="cuda"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_label_smoothing_and_folder_rgb_training(tmp_path):
    from PIL import Image

    faces = tmp_path / "faces"  # apart from the run directories: a folder source reads every image below it
    faces.mkdir()
    for i in range(40):
        Image.new("RGB", (36, 36), (6 * i, 100, 200 - 4 * i)).save(faces / f"{i}.png")
    cfg = tiny_config(preset="dcgan", data=f"folder:{faces}", image_size=32, subset=0, batch_size=8,
                      hflip=True, label_smoothing=0.1)
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.steps == 5
    assert generator_file.load_run_config(tmp_path / "run").channels == 3
    grid = read_png(tmp_path / "run" / "samples" / "epoch_001.png")
    assert grid.shape[0] == 3
    # the same first step without smoothing (stopped after it; the EMA plays no part in step 1)
    plain = config_mod.override(cfg, {"label_smoothing": 0.0, "ema": 0.0, "time_limit": 1e-9, "log_every": 1})
    assert train(plain, tmp_path / "plain", progress=False).steps == 1
    smoothed, unsmoothed = _train_rows(tmp_path / "run")[0], _train_rows(tmp_path / "plain")[0]
    assert (smoothed["D(x)"], smoothed["D(G(z))"]) == (unsmoothed["D(x)"], unsmoothed["D(G(z))"])
    # the real target 1 -> 1 - s changes BCE(r, target) by s * r for a logit r, so loss_D (the mean of the real
    # and the fake term) by s / 2 * E r; the first step's logits are small, where E r ~ logit(D(x))
    d_x = smoothed["D(x)"]
    assert smoothed["loss_D"] - unsmoothed["loss_D"] == pytest.approx(0.1 / 2 * math.log(d_x / (1 - d_x)), rel=0.1)


def test_each_loss_trains_and_resumes_identically(tmp_path):
    sets = dict(preset="dcgan", loss="wgan-gp", ema=0.99, diffaug="translation,cutout", conditional=True,
                subset=128, eval_every=0)
    train(tiny_config(**sets, epochs=2), tmp_path / "straight", progress=False)
    train(tiny_config(**sets, epochs=1), tmp_path / "resumed", progress=False)
    from gankit.training.launch import resume

    resume(tmp_path / "resumed", {"epochs": 2}, progress=False)
    rows = [[json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
            for run in ("straight", "resumed")]
    train_rows = [[(r["loss_D"], r["loss_G"]) for r in rs if r["kind"] == "train"] for rs in rows]
    assert train_rows[0] == train_rows[1] and len(train_rows[0]) == 8
    g_losses = [g for _, g in train_rows[0]]
    assert g_losses[0] == g_losses[3] == 0.0 and g_losses[4] != 0.0  # first G step after n_critic = 5 D steps
    # the penalty is in the critic's loss: loss_D = E D(G(z)) - E D(x) + gp_lambda * penalty (D(x) and D(G(z))
    # are the critic's raw mean scores for wgan-gp), and the penalty of a freshly built critic is not 0
    penalties = [r["loss_D"] - (r["D(G(z))"] - r["D(x)"]) for r in rows[0] if r["kind"] == "train"]
    assert len(penalties) == 8 and all(p > 0.05 for p in penalties), penalties
    cfg = config_mod.load(tmp_path / "straight" / "config.toml")
    assert (cfg.n_critic, cfg.d_norm, cfg.num_classes) == (5, "layer", 10)  # "auto" written down
    state = load_checkpoint(tmp_path / "straight")
    from safetensors.torch import load_file

    exported = load_file(str(tmp_path / "straight" / "generator.safetensors"))
    ema_weights, live = state["ema"]["model"], state["generator"]
    key = "base.net.0.weight"
    assert torch.equal(exported[key], ema_weights[key]) and not torch.equal(exported[key], live[key])
    assert state["ema"]["updates"] == 1  # 8 steps, G steps at 5 (and 10 would be the next)


@pytest.mark.parametrize("sets", [dict(loss="lsgan"), dict(loss="hinge", spectral_norm=True, r1_gamma=1.0, r1_every=2),
                                  dict(loss="bce", lr_d=1e-4, diffaug="color")])
def test_options_train_a_dcgan(tmp_path, sets):
    run = tmp_path / "run"
    result = train(tiny_config(preset="dcgan", subset=64, eval_every=0, **sets), run, progress=False)
    assert result.steps == 2 and all(torch.isfinite(torch.tensor(v)) for v in result.last.values())
    assert (run / "progress.gif").is_file()
    rows = _train_rows(run)
    assert [r["step"] for r in rows] == [1, 2]
    assert all(math.isfinite(r[k]) for r in rows for k in ("loss_D", "loss_G", "D(x)", "D(G(z))"))
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert {k: state["config"][k] for k in sets} == sets  # the options are what the run used and recorded
    assert generator_file.load_run_config(run).to_dict() == state["config"]
    cfg = state["config"]
    assert [g["lr"] for g in state["opt_d"]["param_groups"]] == [cfg["lr_d"] or cfg["lr"]]
    assert [p.name for p in sorted((run / "samples").glob("*.png"))] == ["epoch_001.png"]  # one per epoch
    # conditional on the labeled digits: sample_count 16 rounds up to 2 rows of 10 classes
    k = grid_scale(10 * 30 + 2)
    assert read_png(run / "samples" / "epoch_001.png").shape == (1, (2 * 30 + 2) * k, (10 * 30 + 2) * k)
    exported = load_file(str(run / "generator.safetensors"))
    assert exported.keys() == state["ema"]["model"].keys()  # the dcgan preset exports its EMA generator
    assert all(torch.equal(exported[k], v) for k, v in state["ema"]["model"].items())
    assert all(torch.isfinite(v).all() for v in exported.values() if v.is_floating_point())


def test_time_limit_stops_and_keeps_a_resumable_run(tmp_path):
    result = train(tiny_config(epochs=50, time_limit=0.001, log_every=2, eval_every=0), tmp_path / "run",
                   progress=False)
    # checked before every step: the first step always runs, and the limit has passed before the second
    assert result.epochs == 1 and result.steps == 1 and "time limit" in result.stopped
    assert load_checkpoint(tmp_path / "run")["epoch"] == 1
    with Image.open(tmp_path / "run" / "progress.gif") as gif:
        assert gif.n_frames == 1 + 4 or gif.n_frames == 1  # identical frames may be merged by Pillow


def test_resume_on_another_device_kind_reseeds_with_a_warning(tmp_path, capsys):
    from gankit.run.checkpoint import save_checkpoint
    from gankit.training.launch import resume

    run = tmp_path / "run"
    train(tiny_config(eval_every=0, subset=64), run, progress=False)
    state = load_checkpoint(run)
    state["rng_device"], state["rng"] = "cuda", torch.zeros(16, dtype=torch.uint8)  # as a CUDA run saves it
    save_checkpoint(state, run)
    result = resume(run, {"epochs": 2}, progress=True)
    assert result.epochs == 2 and "losses will not match a straight run" in capsys.readouterr().err
