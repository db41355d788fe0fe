"""A label-free evaluator: gankit's classifier network trained on the real images alone (SimCLR's objective).

Where a source has no labels (a flat folder, a pack without classes, or `evaluator_kind=self` on any source),
the feature space FD, KID and precision/recall are measured in is learned from the images themselves: two
random views of every image (a crop zoomed back to full size, a small shift and turn, brightness and contrast,
for color also saturation and an occasional gray view) go through the network and a small projection head,
and the NT-Xent loss (Chen et al. 2020, temperature 0.2) pulls the two views of one image together and pushes
the views of the other images of the batch away. The projection head is dropped after training: the 128
features before it are the evaluator's, as the penultimate features are for the labeled classifier.

Trained on half A less nothing (half B, the floor's real sample, is its validation set, as for the labeled
evaluator); the validation loss on half B is recorded per epoch in the spec's history.
Written here rather than taken from a library: lightly or solo-learn bring their own trainers and
dependencies for what is one loss function and one augmentation function on the batch.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from gankit import console
from gankit.data import batches, loading
from gankit.errors import GankitError
from gankit.quality.classifier import FEATURES, Classifier, ClassifierSpec, Schedule, data_hash

TEMPERATURE = 0.2
EPOCHS = 30  # of half A (BENCHMARKS.md: the label-free evaluator)
PROJECTION = 64  # the projection head's output: the space the loss is computed in


def views(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """One random view of each float image in [-1, 1] (N x C x H x W), drawn from rng: a crop of 55-100% of the
    side zoomed back to full size, shifted by up to 1/8 of the image and turned by up to 10 degrees (the border
    is filled by reflection), then brightness +-0.25 and contrast x[0.7, 1.3]; color images also get saturation
    x[0, 1.6] and are turned gray one time in five."""
    n = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, generator=rng) * (hi - lo) + lo

    scale, angle = uniform(0.55, 1.0), uniform(-10.0, 10.0) * (math.pi / 180)
    shift = torch.stack([uniform(-0.25, 0.25), uniform(-0.25, 0.25)], 1)
    cos, sin = angle.cos() * scale, angle.sin() * scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if x.shape[1] == 3:
        gray = x.mean(1, keepdim=True)
        x = gray + (x - gray) * uniform(0.0, 1.6).view(n, 1, 1, 1)
        x = torch.where((torch.rand(n, generator=rng) < 0.2).view(n, 1, 1, 1), gray.expand_as(x), x)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * uniform(0.7, 1.3).view(n, 1, 1, 1) + mean + uniform(-0.25, 0.25).view(n, 1, 1, 1)
    return x.clamp(-1.0, 1.0)


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """SimCLR's loss for two views a, b (N x D) of the same N images: each view must pick its partner out of
    the 2N - 1 others."""
    z = F.normalize(torch.cat([a, b]), dim=1)
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))  # a view is not its own partner
    n = a.shape[0]
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(a.device)
    return F.cross_entropy(sim, partner)


def _projection() -> nn.Module:
    return nn.Sequential(nn.Linear(FEATURES, FEATURES), nn.ReLU(True), nn.Linear(FEATURES, PROJECTION))


@torch.no_grad()
def _validation_loss(model: Classifier, head: nn.Module, images: torch.Tensor, batch_size: int) -> float:
    """The loss on fixed views of the validation images (seeded: comparable from epoch to epoch)."""
    rng, losses = torch.Generator().manual_seed(4321), []
    model.eval()
    head.eval()
    for chunk in images.split(batch_size):
        if len(chunk) < 2:
            continue
        x = batches.to_float(chunk)
        a, b = views(x, rng), views(x, rng)
        losses.append(float(nt_xent(head(model(a)), head(model(b)))))
    return sum(losses) / max(1, len(losses))


def train_contrastive(data: loading.ImageData, epochs: int = 30, batch_size: int = 256, lr: float = 2e-3,
                      seed: int = 0, progress: bool = True, log=console.say,
                      val_idx: torch.Tensor | None = None) -> Classifier:
    """A label-free evaluator for `data`: the classifier network without classes, trained on every image but
    those at `val_idx` (default: a random 20%), whose loss is reported after each epoch."""
    if len(data) < 2 * 8:
        raise GankitError(f"{data.name} holds {len(data)} images: too few to train a label-free evaluator")
    if epochs < 1:
        raise GankitError(f"evaluator epochs must be >= 1, got {epochs}")
    torch.manual_seed(seed)
    images = data.images
    spec = ClassifierSpec(images.shape[1], images.shape[2], [], data.name, data_hash(data), objective="contrastive")
    model, head = Classifier(spec).to(memory_format=torch.channels_last), _projection()
    plan = Schedule.of(len(data), val_idx, [*model.parameters(), *head.parameters()], epochs, batch_size, lr, seed)
    train_idx, val_idx, opt, sched, rng, batch_size = plan.train_idx, plan.val_idx, plan.opt, plan.sched, plan.rng, \
        plan.batch_size
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        head.train()
        perm = train_idx[torch.randperm(len(train_idx), generator=rng)]
        for i in range(len(perm) // batch_size):
            x = batches.to_float(images[perm[i * batch_size:(i + 1) * batch_size]])
            a, b = (views(x, rng).contiguous(memory_format=torch.channels_last) for _ in range(2))
            loss = nt_xent(head(model(a)), head(model(b)))  # (1) two views of each image agree
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        val = _validation_loss(model, head, images[val_idx], batch_size)
        spec.history.append(round(val, 4))
        if progress:
            log(f"label-free evaluator epoch {epoch + 1}/{epochs}: validation loss {val:.3f} "
                f"({len(val_idx)} images), {time.perf_counter() - start:.0f} s")
    spec.seconds = round(time.perf_counter() - start, 1)
    return model.eval()
