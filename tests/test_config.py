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
    assert (dcgan.conditional, simple.conditional) == ("auto", False)
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
    (["lr=inf"], "lr must be a finite number, got inf"),
    (["lr_d=nan"], "lr_d must be a finite number, got nan"),
    (["time_limit=inf"], "time_limit must be a finite number"),
    (["ema=-inf"], "ema must be a finite number"),
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


def test_resolution_for_data_makes_every_auto_value_concrete():
    cfg = config.resolve("dcgan")
    assert (cfg.conditional, cfg.d_norm, cfg.n_critic, cfg.channels, cfg.num_classes) == ("auto", "auto", 0, 0, 0)
    labeled = config.resolve_for_data(cfg, classes=10, channels=1)
    assert (labeled.conditional, labeled.num_classes, labeled.channels) == (True, 10, 1)
    assert (labeled.d_norm, labeled.n_critic) == ("batch", 1)
    flat = config.resolve_for_data(cfg, classes=0, channels=3)
    assert (flat.conditional, flat.num_classes, flat.channels) == (False, 0, 3)
    wgan = config.resolve_for_data(config.resolve("dcgan", sets={"loss": "wgan-gp", "d_norm": "auto"}), 10, 1)
    assert (wgan.d_norm, wgan.n_critic) == ("layer", 5)
    assert config.resolve_for_data(labeled, 10, 1) == labeled  # a concrete config passes unchanged
    off = config.resolve_for_data(config.override(cfg, {"conditional": "false"}), 10, 1)
    assert (off.conditional, off.num_classes) == (False, 0)


def test_resolution_refuses_data_that_does_not_fit():
    with pytest.raises(GankitError, match="conditional=true needs a labeled source"):
        config.resolve_for_data(config.resolve("dcgan", sets={"conditional": "true"}), 0, 1)
    trained = config.resolve_for_data(config.resolve("dcgan"), 10, 1)
    with pytest.raises(GankitError, match="draws 10 classes, and mnist5k now has 12"):
        config.resolve_for_data(trained, 12, 1)


def test_the_plan_decides_the_fused_step_and_autocast():
    simple = config.resolve_for_data(config.resolve("simple-gan"), 10, 1)
    assert config.plan(simple, "cpu") == config.Plan(fused=True, autocast=False, channels_last=False, compile=False)
    on_cuda = config.plan(simple, "cuda")  # amp on CUDA: autocast, which the hand-written step does not do
    assert (on_cuda.fused, on_cuda.autocast) == (False, True)
    assert config.plan(config.override(simple, {"amp": False}), "cuda").fused
    for change in ({"fused": False}, {"loss": "hinge"}, {"diffaug": "translation"}, {"spectral_norm": True},
                   {"r1_gamma": 1.0}, {"compile": True}):
        assert not config.plan(config.override(simple, change), "cpu").fused, change
    conditional = config.resolve_for_data(config.resolve("simple-gan", sets={"conditional": "true"}), 10, 1)
    assert not config.plan(conditional, "cpu").fused
    dcgan = config.resolve_for_data(config.resolve("dcgan", sets={"cpu_bf16": "false"}), 10, 1)
    assert config.plan(dcgan, "cpu") == config.Plan(fused=False, autocast=False, channels_last=True, compile=False)
    with pytest.raises(ValueError, match="concrete config"):
        config.plan(config.resolve("dcgan"), "cpu")
