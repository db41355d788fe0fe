"""The registry (`MODELS`: name -> architecture module) and what works on every architecture.

build(name, ...) -> (G, D) and from_config(cfg) (a run's pair: the one place that builds both networks from
a config's model settings); class conditioning (a one-hot label appended to the noise for G, a projection
head for D, Miyato & Koyama 2018) and spectral normalization of D; `run`, `class_labels`, `eval_mode` for the
code that calls them.
"""

from __future__ import annotations

import contextlib
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gankit.errors import GankitError
from gankit.models import dcgan, mlp

MODELS: dict[str, ModuleType] = {"mlp": mlp, "dcgan": dcgan}


class ConditionalGenerator(nn.Module):
    """G(z, y) = base([z, one_hot(y)]): the base generator sees z_dim + num_classes inputs (Mirza & Osindero
    2014). A learned N(0, 1) label embedding in place of the one-hot code was measured to collapse the
    dcgan generator on mnist5k (every sample the same after 150 steps); the fixed code trains like the
    unconditional model and draws the right class within 4 epochs."""

    def __init__(self, base: nn.Module, num_classes: int):
        super().__init__()
        self.base, self.num_classes = base, num_classes

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.base(torch.cat([z, F.one_hot(y, self.num_classes).to(z.dtype)], 1))


class ProjectionDiscriminator(nn.Module):
    """D(x, y) = head(h) + <embed(y), h> with h = body(x): the projection discriminator."""

    def __init__(self, base: nn.Module, num_classes: int):
        super().__init__()
        self.base = base
        self.embed = nn.Embedding(num_classes, base.head.in_features)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.base.body(x)
        return self.base.head(h).view(-1) + (self.embed(y) * h).sum(1)


def build(name: str, z_dim: int, channels: int, image_size: int, num_classes: int = 0, d_norm: str = "batch",
          spectral_norm: bool = False, g_width: float = 1.0, d_width: float = 1.0,
          d_widths: tuple[int, ...] = ()) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) for a registered architecture; G maps (N, z_dim) noise (and, when
    num_classes > 0, N labels) to images in [-1, 1]; D maps images (and labels) to N logits.
    d_widths: D's layer widths in place of the architecture's `d_channels(image_size)`."""
    G, D = MODELS[name].build(z_dim + num_classes, channels, image_size, d_norm=d_norm, g_width=g_width,
                              d_width=d_width, d_widths=d_widths)
    if num_classes:
        G, D = ConditionalGenerator(G, num_classes), ProjectionDiscriminator(D, num_classes)
    if spectral_norm:
        for module in list(D.modules()):
            if isinstance(module, (nn.Conv2d, nn.Linear, nn.Embedding)):
                nn.utils.parametrizations.spectral_norm(module)
    return G, D


def from_config(cfg: Any) -> tuple[nn.Module, nn.Module]:
    """(G, D) as a run's config describes them (a gankit.config.Config): the one place that builds both networks
    from a config's model settings, for training, the discriminator detector and anything else that needs them."""
    return build(cfg.model, cfg.z_dim, cfg.channels, cfg.image_size, cfg.num_classes, cfg.d_norm, cfg.spectral_norm,
                 cfg.g_width, cfg.d_width, parse_d_channels(cfg.model, cfg.image_size, cfg.d_channels))


def parse_d_channels(model: str, image_size: int, text: str) -> tuple[int, ...]:
    """The d_channels setting ("64,128,256") as numbers, () for the architecture's own, checked against its layers."""
    if not text.strip():
        return ()
    own = MODELS[model].d_channels(image_size)
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        widths = ()
    if len(widths) != len(own) or not all(w > 0 for w in widths):
        raise GankitError(
            f"d_channels for the {model} discriminator at {image_size}x{image_size} takes {len(own)} positive "
            f"whole numbers separated by commas (its own: {','.join(map(str, own))}), got '{text}'")
    return widths


def build_generator(name: str, z_dim: int, channels: int, image_size: int, num_classes: int = 0,
                    g_width: float = 1.0) -> nn.Module:
    return build(name, z_dim, channels, image_size, num_classes, g_width=g_width)[0]


def run(module: nn.Module, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """module(x) or, for a conditional G or D, module(x, labels)."""
    return module(x) if labels is None else module(x, labels)


def class_labels(n: int, num_classes: int, device: str | torch.device = "cpu",
                 prior: torch.Tensor | None = None) -> torch.Tensor | None:
    """n labels taking turns, 0, 1, ..., num_classes - 1, 0, 1, ..., or None for an unconditional model.

    prior (the real class frequencies): each class gets its share of the n labels (largest remainders), so that
    a conditional generator is measured on the data's class mix; a class that runs out leaves the turns.
    """
    if not num_classes:
        return None
    if prior is None or len(prior) != num_classes or not prior.sum() > 0:
        return torch.arange(n, device=device) % num_classes
    share = prior.double().cpu() / prior.sum().item() * n
    counts = share.floor().long()
    counts[(share - counts).argsort(descending=True, stable=True)[: n - int(counts.sum())]] += 1
    labels = torch.repeat_interleave(torch.arange(num_classes), counts)
    turn = torch.arange(n) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)  # index within its class
    return labels[torch.argsort(turn * num_classes + labels)].to(device)


@contextlib.contextmanager
def eval_mode(module: nn.Module):
    """Run a block with `module` in eval mode (BatchNorm running stats, no dropout), then restore its mode."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
