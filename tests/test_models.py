import pytest
import torch
from torch import nn

from gankit import GankitError
from gankit import config as config_mod
from gankit.models.registry import MODELS, build
from gankit.run.checkpoint import load_checkpoint
from gankit.run.generator_file import export_info, load_generator, load_run_config
from gankit.training.launch import train

from .conftest import tiny_config


@pytest.mark.parametrize("name,size", [("mlp", 28), ("mlp", 32), ("mlp", 64),
                                       ("dcgan", 28), ("dcgan", 32), ("dcgan", 64)])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_ranges(name, size, channels):
    torch.manual_seed(0)
    G, D = build(name, 64, channels, size)
    z = torch.randn(5, 64)
    images = G(z)
    assert images.shape == (5, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1  # Tanh output, the range of the normalized data
    logits = D(images)
    assert logits.shape == (5,)  # one raw logit per image, no sigmoid
    assert not isinstance(list(D.modules())[-1], nn.Sigmoid)


def test_mlp_is_the_tutorial_network():
    G, D = build("mlp", 64, 1, 28)
    g_layers = [m for m in G.net]
    assert [type(m) for m in g_layers] == [nn.Linear, nn.LeakyReLU, nn.Linear, nn.Tanh]
    assert (g_layers[0].in_features, g_layers[0].out_features, g_layers[2].out_features) == (64, 256, 784)
    assert g_layers[1].negative_slope == 0.1
    linears = [m for m in D.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 128), (128, 1)]
    assert [m.negative_slope for m in D.modules() if isinstance(m, nn.LeakyReLU)] == [0.1]


def _convs(D):
    return [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0]) for m in D.modules()
            if isinstance(m, nn.Conv2d)]


def test_dcgan28_default_d_is_wider_in_its_later_layers():
    _, D = build("dcgan", 64, 1, 28)
    assert _convs(D) == [(1, 16, 3, 2), (16, 64, 5, 2), (64, 256, 5, 2)]
    assert [(m.in_features, m.out_features) for m in D.modules() if isinstance(m, nn.Linear)] == [(256, 1)]
    # d_widths replaces the widths, and d_width still multiplies them
    _, D2 = build("dcgan", 64, 1, 28, d_widths=(8, 16, 32), d_width=2)
    assert _convs(D2) == [(1, 16, 3, 2), (16, 32, 5, 2), (32, 64, 5, 2)]
    _, M = build("mlp", 64, 1, 28, d_widths=(64,))
    assert [(m.in_features, m.out_features) for m in M.modules() if isinstance(m, nn.Linear)] == [(784, 64), (64, 1)]


def test_dcgan28_is_the_tutorial_network():
    G, D = build("dcgan", 64, 1, 28, d_widths=(16, 32, 64))  # the project's D (`d_channels=16,32,64`)
    assert _convs(D) == [(1, 16, 3, 2), (16, 32, 5, 2), (32, 64, 5, 2)]
    assert [m.negative_slope for m in D.modules() if isinstance(m, nn.LeakyReLU)] == [0.2] * 3
    assert sum(isinstance(m, nn.BatchNorm2d) for m in D.modules()) == 3
    assert [(m.in_features, m.out_features) for m in D.modules() if isinstance(m, nn.Linear)] == [(64, 1)]
    deconvs = [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0])
               for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert deconvs == [(64, 256, 3, 2), (256, 128, 4, 1), (128, 64, 3, 2), (64, 1, 4, 2)]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in G.modules()) == 3
    assert isinstance(list(G.modules())[-1], nn.Tanh)


def test_dcgan_weights_are_normal_0_002():
    torch.manual_seed(0)
    G, _ = build("dcgan", 64, 3, 64)
    w = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, nn.ConvTranspose2d)])
    assert abs(w.mean().item()) < 1e-3
    assert w.std().item() == pytest.approx(0.02, rel=0.05)


def test_fast_deconv_paths_match_reference():
    # The generator computes some transposed convolutions as matmul (+ fold); they must equal the reference.
    torch.manual_seed(0)
    G, _ = build("dcgan", 64, 3, 32)
    z = torch.randn(4, 64, 1, 1)
    x = z
    for m in G.net:
        if isinstance(m, nn.ConvTranspose2d):
            ref = nn.functional.conv_transpose2d(x, m.weight, m.bias, m.stride, m.padding)
            torch.testing.assert_close(m(x), ref, rtol=1e-4, atol=1e-5)
        x = m(x)


@pytest.mark.parametrize("fmt", [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize("bias", [False, True])
def test_fast_last_conv_matches_reference_forward_and_backward(fmt, bias):
    # D's last convolution (kernel = its whole 5x5 input) runs as one matmul: same values, same gradients.
    from gankit.models.dcgan import Conv2d
    torch.manual_seed(0)
    conv = Conv2d(8, 6, 5, 2, bias=bias).to(memory_format=fmt)
    x = torch.randn(4, 8, 5, 5).contiguous(memory_format=fmt).requires_grad_(True)
    out = conv(x)
    ref = nn.functional.conv2d(x, conv.weight, conv.bias, 2)
    assert out.shape == (4, 6, 1, 1)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, [x, conv.weight], g)
    ref_grads = torch.autograd.grad(ref, [x, conv.weight], g)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # larger inputs take the ordinary convolution
    big = torch.randn(2, 8, 13, 13).contiguous(memory_format=fmt)
    assert conv(big).shape == (2, 6, 5, 5)

@pytest.mark.parametrize("size", [16, 48, 128])
def test_dcgan_rejects_sizes_it_cannot_make(size):
    with pytest.raises(GankitError, match="dcgan model makes images of size 28, 32, 64"):
        build("dcgan", 64, 1, size)


def test_registry_lists_models():
    assert set(MODELS) >= {"mlp", "dcgan"}


@pytest.mark.parametrize("name,size", [("dcgan", 28), ("dcgan", 32), ("mlp", 28)])
def test_width_multipliers_scale_every_layer(name, size):
    def widths(module):
        return [m.out_features if isinstance(m, nn.Linear) else m.out_channels
                for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))]

    G1, D1 = build(name, 64, 1, size)
    G2, D2 = build(name, 64, 1, size, g_width=0.5, d_width=2)
    # every hidden layer scaled, the output layers (image channels, one logit) unchanged
    assert widths(G2)[:-1] == [w // 2 for w in widths(G1)[:-1]] and widths(G2)[-1] == widths(G1)[-1]
    assert widths(D2)[:-1] == [w * 2 for w in widths(D1)[:-1]] and widths(D2)[-1] == 1
    images = G2(torch.randn(4, 64))
    assert images.shape == (4, 1, size, size) and D2(images).shape == (4,)


def test_class_labels_take_turns_and_follow_a_prior():
    from gankit.models.registry import class_labels

    assert class_labels(5, 0) is None
    assert class_labels(12, 5).tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    # a balanced prior gives the same turns; a skewed one each class's share (largest remainders)
    assert class_labels(20, 10, prior=torch.full((10,), 500)).tolist() == (torch.arange(20) % 10).tolist()
    skewed = class_labels(10, 3, prior=torch.tensor([250, 150, 100]))
    assert skewed.tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 0, 0]
    assert torch.bincount(class_labels(7, 3, prior=torch.tensor([0.6, 0.3, 0.1])), minlength=3).tolist() == [4, 2, 1]
    assert class_labels(6, 2, prior=torch.ones(3)).tolist() == [0, 1, 0, 1, 0, 1]  # a prior of other classes: turns
    assert class_labels(4, 2, prior=torch.zeros(2)).tolist() == [0, 1, 0, 1]  # no counts at all: turns
    assert class_labels(3, 5, prior=torch.ones(5)).tolist() == [0, 1, 2]  # ties go to the first classes
    assert class_labels(4, 3, prior=torch.tensor([0, 5, 5])).tolist() == [1, 2, 1, 2]  # an empty class: never


def test_conditional_and_spectral_norm_models():
    G, D = build("dcgan", 64, 1, 28, num_classes=10, spectral_norm=True)
    z, y = torch.randn(4, 64), torch.tensor([0, 3, 7, 9])
    images = G(z, y)
    assert images.shape == (4, 1, 28, 28)
    assert G.base.net[0].in_channels == 64 + 10  # noise and a one-hot label
    assert G(z[:1], y[:1]).sub(G(z[:1], y[1:2])).abs().sum() > 0  # the label changes the image
    assert D(images, y).shape == (4,)
    assert D(images, y).sub(D(images, (y + 1) % 10)).abs().sum() > 0  # the projection sees the label
    assert any("parametrizations" in k for k in D.state_dict())
    _, critic = build("dcgan", 64, 3, 32, d_norm="layer")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in critic.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in critic.modules())


def test_width_multipliers_train_and_rebuild_from_the_run(tmp_path):
    # a wider D and a narrower G: trained, recorded in config.toml, and rebuilt by generate/evaluate
    run = tmp_path / "wide"
    train(tiny_config(preset="dcgan", subset=64, eval_every=0, g_width=0.5, d_width=2.0, d_channels="8,16,32",
                      conditional=False), run,
          progress=False)
    cfg = load_run_config(run)
    assert (cfg.g_width, cfg.d_width, cfg.d_channels) == (0.5, 2.0, "8,16,32")
    # the resumed run rebuilds the same D (16-32-64 channels) from config.toml and loads its weights into it
    result = train(config_mod.override(cfg, {"epochs": 2}), run, resume=True, progress=False)
    assert result.epochs == 2
    d = load_checkpoint(run)["discriminator"]
    assert [v.shape[0] for k, v in d.items() if k.endswith("weight") and v.dim() == 4] == [16, 32, 64]
    generator, _ = load_generator(run)
    first = next(m for m in generator.modules() if isinstance(m, torch.nn.ConvTranspose2d))
    assert first.out_channels == 128  # 256 * 0.5
    assert generator(torch.randn(3, 64)).shape == (3, 1, 28, 28)
    assert export_info(run, "generator.safetensors")["g_width"] == 0.5  # the export describes itself
