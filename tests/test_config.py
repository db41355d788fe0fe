import pytest

from gankit import GankitError, config


def test_presets_carry_the_tutorials_hyperparameters():
    simple = config.resolve("simple-gan")
    assert (simple.model, simple.lr, simple.z_dim, simple.batch_size, simple.epochs, simple.rotation) == \
        ("mlp", 3e-4, 64, 32, 50, 0.0)
    dcgan = config.resolve("dcgan")
    assert (dcgan.model, dcgan.lr, dcgan.beta1, dcgan.beta2, dcgan.z_dim, dcgan.batch_size, dcgan.epochs) == \
        ("dcgan", 2e-3, 0.5, 0.99, 64, 128, 30)
    assert dcgan.rotation == 0.0 and dcgan.ema == 0.999 and dcgan.loss == "bce" and dcgan.data == "mnist5k"
    assert (dcgan.conditional, simple.conditional) == ("auto", "false")
    assert config.resolve().preset == "dcgan"


def test_file_then_set_then_flags_override(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('preset = "simple-gan"\nlr = 1e-3\nbatch_size = 16\nepochs = 7\n')
    cfg = config.resolve(None, f, config.parse_sets(["lr=5e-4", "label_smoothing=0.1", "hflip=true"]), epochs=2)
    assert (cfg.preset, cfg.model, cfg.lr, cfg.batch_size, cfg.epochs) == ("simple-gan", "mlp", 5e-4, 16, 2)
    assert cfg.label_smoothing == 0.1 and cfg.hflip is True


def test_save_and_load_round_trip(tmp_path):
    cfg = config.resolve("dcgan", sets={"seed": "5"})
    config.save(cfg, tmp_path / "config.toml")
    assert config.load(tmp_path / "config.toml") == cfg


@pytest.mark.parametrize("sets,message", [
    (["nope=1"], "unknown config key 'nope'"),
    (["lr=fast"], "config key 'lr' expects float, got 'fast'"),
    (["lr=0"], "lr must be > 0"),
    (["lr=-1e-3"], "lr must be > 0"),
    (["batch_size=0"], "batch_size must be >= 1"),
    (["epochs=0"], "epochs must be >= 1"),
    (["hflip=maybe"], "config key 'hflip' expects bool"),
    (["image_size=48"], "dcgan model makes images of size 28, 32, 64, not 48"),
    (["model=resnet"], "unknown model 'resnet'"),
    (["loss=wasserstein"], "unknown loss 'wasserstein'"),
    (["label_smoothing=0.7"], "label_smoothing must be in"),
    (["device=tpu"], "device must be auto, cpu or cuda"),
    (["lr"], "--set expects key=value"),
])
def test_bad_values_are_one_clear_error(sets, message):
    with pytest.raises(GankitError, match=message.replace("(", r"\(")):
        config.resolve("dcgan", sets=config.parse_sets(sets))


def test_unknown_preset():
    with pytest.raises(GankitError, match="unknown preset 'gan9000'"):
        config.resolve("gan9000")


def test_bad_toml(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("lr = = 3")
    with pytest.raises(GankitError, match="not valid TOML"):
        config.resolve(None, f)
    with pytest.raises(GankitError, match="config file not found"):
        config.resolve(None, tmp_path / "missing.toml")
    f.write_text("batch_size = 'big'")
    with pytest.raises(GankitError, match="batch_size' expects int"):
        config.resolve(None, f)
