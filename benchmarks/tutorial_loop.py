"""The reference a color-folder preset is measured against: the "Zero to GANs" lesson-6 loop (anime faces),
written out plainly, trained for a fixed wall-clock time on any gankit source.

Its networks and settings, as the lesson has them: D conv 3->64->128->256->512 (k4 s2 p1, BatchNorm from the
first layer, LeakyReLU 0.2), a 4x4 conv to one logit and a sigmoid; G ConvTranspose latent(128)->512->256->
128->64->3 (BatchNorm, ReLU, Tanh); BCE; Adam 2e-4 with betas (0.5, 0.999); batch 128; PyTorch's default
initialisation (the lesson does not apply the DCGAN paper's). At 32x32 both are one level shallower
(D 3->64->128->256, G latent->256->128->64->3). Each step: D on a real batch (target 1) and a fake one
(target 0), then G on a fresh fake batch (target 1), as the lesson's train_discriminator / train_generator.

    python benchmarks/tutorial_loop.py --data folder:EMOJI --image-size 32 --seconds 600 --out DIR

writes DIR/fakes.npy (uint8 N x C x H x W, for `gankit evaluate --fakes`), DIR/samples.png and prints JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common import machine
from gankit.data import loading
from gankit.images import grid, save_png

LATENT = 128


def networks(size: int, channels: int) -> tuple[nn.Module, nn.Module]:
    widths = {32: [64, 128, 256], 64: [64, 128, 256, 512]}[size]
    d: list[nn.Module] = []
    for cin, cout in zip([channels] + widths, widths):
        d += [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True)]
    d += [nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False), nn.Flatten(), nn.Sigmoid()]
    top = widths[::-1]
    g: list[nn.Module] = [nn.ConvTranspose2d(LATENT, top[0], 4, 1, 0, bias=False), nn.BatchNorm2d(top[0]),
                          nn.ReLU(True)]
    for cin, cout in zip(top, top[1:]):
        g += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
    g += [nn.ConvTranspose2d(top[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
    return nn.Sequential(*g), nn.Sequential(*d)


def lesson_step(G: nn.Module, D: nn.Module, opt_d, opt_g, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the lesson: D on a real and a fake batch, then G on a fresh fake batch; the two losses."""
    batch = real.shape[0]
    # D: BCE(D(x), 1) + BCE(D(G(z)), 0)
    opt_d.zero_grad()
    fake = G(torch.randn(batch, LATENT, 1, 1))
    loss_d = (F.binary_cross_entropy(D(real), torch.ones(batch, 1))
              + F.binary_cross_entropy(D(fake.detach()), torch.zeros(batch, 1)))
    loss_d.backward()
    opt_d.step()
    # G: BCE(D(G(z)), 1) on a fresh batch
    opt_g.zero_grad()
    loss_g = F.binary_cross_entropy(D(G(torch.randn(batch, LATENT, 1, 1))), torch.ones(batch, 1))
    loss_g.backward()
    opt_g.step()
    return loss_d, loss_g


def train(images: torch.Tensor, seconds: float, seed: int, batch: int = 128) -> tuple[nn.Module, dict]:
    torch.manual_seed(seed)
    G, D = networks(images.shape[-1], images.shape[1])
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    start, steps, epochs = time.perf_counter(), 0, 0
    while time.perf_counter() - start < seconds:
        order = torch.randperm(len(images))
        for k in range(0, len(order) - batch + 1, batch):  # the lesson's DataLoader: shuffle, full batches
            real = images[order[k:k + batch]].float().div(127.5).sub(1)
            loss_d, loss_g = lesson_step(G, D, opt_d, opt_g, real)
            steps += 1
            if time.perf_counter() - start >= seconds:
                break
        epochs += 1
    return G, {"steps": steps, "epochs": epochs, "kimg": round(steps * batch / 1000, 1),
               "seconds": round(time.perf_counter() - start, 1), "loss_d": float(loss_d), "loss_g": float(loss_g)}


def sample(G: nn.Module, n: int, seed: int) -> torch.Tensor:
    """n uint8 images from G in eval mode (the lesson samples in train mode; eval is what a user keeps)."""
    G.eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        out = torch.cat([G(torch.randn(min(500, n - k), LATENT, 1, 1, generator=g)) for k in range(0, n, 500)])
    return out.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    data = loading.load(args.data, image_size=args.image_size, channels=3)
    G, info = train(data.images, args.seconds, args.seed)
    fakes = sample(G, args.n, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "fakes.npy", fakes.numpy())
    save_png(grid(fakes[:64], nrow=8), args.out / "samples.png")
    print(json.dumps({"machine": machine(), "data": args.data, "image_size": args.image_size, **info,
                      "fakes": str(args.out / "fakes.npy")}))


if __name__ == "__main__":
    main()
