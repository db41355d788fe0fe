"""A small image classifier: gankit's own feature space for measuring GANs offline, and a classifier in its own right.

Inception-v3 weights cannot be downloaded here, so the evaluator is a CNN trained on the same domain as the
GAN (conv-conv-fc with BatchNorm and dropout). Its 128-d penultimate activations are the features that the
Frechet distance, KID and precision/recall are computed in; its class predictions give mode coverage.

A trained classifier is one safetensors file; its config (shape, classes, data hash, accuracy) rides in
the file's metadata, so it loads without anything else.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from gankit import console
from gankit.checks import Field, expect, expect_fields
from gankit.config import MAX_IMAGE_SIZE
from gankit.data import batches, folders, loading
from gankit.errors import GankitError
from gankit.files import atomic_write, regular
from gankit.models.registry import eval_mode
from gankit.weights import check_tensors

FEATURES = 128


@dataclass
class ClassifierSpec:
    channels: int
    image_size: int
    classes: list[str]
    source: str = ""
    data_hash: str = ""
    val_accuracy: float = 0.0
    history: list[float] = field(default_factory=list)  # validation accuracy (or loss) per epoch
    seconds: float = 0.0
    objective: str = "labels"  # "labels": a classifier; "contrastive": label-free features (quality.selfsup)


class Classifier(nn.Module):
    """conv(32)-BN-ReLU-pool -> conv(64)-BN-ReLU-pool -> fc(128)-ReLU -> dropout -> fc(classes).

    Takes float images in [-1, 1] (what a generator emits). `features` gives the 128-d activations.
    """

    def __init__(self, spec: ClassifierSpec):
        super().__init__()
        self.spec = spec
        self.num_features = FEATURES  # read by torchmetrics when this module is its feature extractor
        self.body = nn.Sequential(
            nn.Conv2d(spec.channels, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(True),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(7), nn.Flatten(),
            nn.Linear(64 * 7 * 7, FEATURES), nn.ReLU(True),
        )
        # no classes (a label-free evaluator): the features are all there is
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(FEATURES, len(spec.classes))) if spec.classes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(x)
        return features if self.head is None else self.head(features)

    @torch.no_grad()
    def embed(self, images: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(features N x 128, logits N x classes or None without classes) for float images in [-1, 1] or uint8
        images, in eval mode."""
        device = next(self.parameters()).device
        feats, logits = [], []
        with eval_mode(self):
            for chunk in images.split(batch):
                x = batches.to_float(chunk) if chunk.dtype == torch.uint8 else chunk
                f = self.body(x.to(device, torch.float32).contiguous(memory_format=torch.channels_last))
                feats.append(f.cpu())
                if self.head is not None:
                    logits.append(self.head(f).cpu())
        return torch.cat(feats), (torch.cat(logits) if logits else None)


def data_hash(data: loading.ImageData) -> str:
    """A hash of what a loaded source holds (images and labels): the evaluator cache's key. A pack's (a folder's)
    is its fingerprint and shape, so a mapped folder is never read through to be hashed."""
    if data.fingerprint:
        n, c, h, w = data.images.shape
        return hashlib.sha256(f"{data.fingerprint}|{n}x{c}x{h}x{w}".encode()).hexdigest()
    return loading.identity(data)  # the content hash, computed once per load (the run's record uses it too)


@dataclass
class Schedule:
    """How an evaluator network is trained (the classifier and the label-free one alike): a seeded split into
    training and validation images, AdamW with a one-cycle learning rate over all the epochs' steps."""

    train_idx: torch.Tensor
    val_idx: torch.Tensor
    opt: torch.optim.Optimizer
    sched: Any
    rng: torch.Generator
    batch_size: int

    @classmethod
    def of(cls, count: int, val_idx: torch.Tensor | None, params: list, epochs: int, batch_size: int, lr: float,
           seed: int) -> "Schedule":
        """val_idx None: a random 20% (at least 2 images) is the validation set. The caller seeds torch's global
        generator before it builds the network (the weights' initialization draws from it)."""
        order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
        if val_idx is None:
            val_idx = order[:max(2, count // 5)]
        train_idx = order[~torch.isin(order, val_idx)]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
        batch_size = min(batch_size, len(train_idx))
        steps = epochs * (len(train_idx) // batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps))
        return cls(train_idx, val_idx, opt, sched, torch.Generator().manual_seed(seed + 1), batch_size)


def train_classifier(data: loading.ImageData, epochs: int = 8, batch_size: int = 128, lr: float = 2e-3,
                     seed: int = 0, progress: bool = True, log=console.say,
                     val_idx: torch.Tensor | None = None) -> Classifier:
    """Train on `data` less the images at `val_idx` (default: a random 20%), report validation accuracy on
    those after each epoch."""
    if data.labels is None or not data.classes:
        raise GankitError(f"{data.name} has no labels to train a classifier on: use a source with classes "
                          "(a folder with one subfolder per class), or --features inception")
    if len(data) < 10:
        raise GankitError(f"{data.name} holds {len(data)} images: too few to train a classifier")
    if epochs < 1:
        raise GankitError(f"classifier epochs must be >= 1, got {epochs}")
    torch.manual_seed(seed)
    images, labels = data.images, data.labels
    spec = ClassifierSpec(images.shape[1], images.shape[2], list(data.classes), data.name, data_hash(data))
    model = Classifier(spec).to(memory_format=torch.channels_last)
    plan = Schedule.of(len(data), val_idx, list(model.parameters()), epochs, batch_size, lr, seed)
    train_idx, val_idx, opt, sched, rng, batch_size = plan.train_idx, plan.val_idx, plan.opt, plan.sched, plan.rng, \
        plan.batch_size
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = train_idx[torch.randperm(len(train_idx), generator=rng)]
        for i in range(len(perm) // batch_size):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            x = batches.augment(batches.to_float(images[idx]), 10.0, False, rng)
            loss = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        _, logits = model.embed(images[val_idx])
        accuracy = (logits.argmax(1) == labels[val_idx]).float().mean().item()
        spec.history.append(round(accuracy, 4))
        if progress:
            log(f"classifier epoch {epoch + 1}/{epochs}: validation accuracy {accuracy:.2%} "
                f"({len(val_idx)} images), {time.perf_counter() - start:.0f} s")
    spec.val_accuracy = spec.history[-1]
    spec.seconds = round(time.perf_counter() - start, 1)
    return model.eval()


def classifier_file(path: str | Path) -> Path:
    """Where save_classifier writes for `path`: a folder (or a name without a suffix) gets classifier.safetensors
    inside it."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path / "classifier.safetensors" if path.is_dir() or not path.suffix else path
    return path


def save_classifier(model: Classifier, path: str | Path) -> Path:
    path = classifier_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"gankit_classifier": json.dumps(asdict(model.spec))}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return path


def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> Classifier:
    path = Path(path)
    if path.is_dir():
        path = path / "classifier.safetensors"
    regular(path, missing=f"evaluator not found: {path}")  # a FIFO or a folder there: one line saying so
    try:
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
        weights = load_file(str(path), device=str(device))
        described = json.loads(meta["gankit_classifier"])
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise GankitError(f"{path} is not a gankit classifier or is damaged ({type(exc).__name__})") from None
    check_spec(described, f"{path}: its metadata")  # before a network is built from it
    model = Classifier(ClassifierSpec(**described)).to(device)
    check_tensors(weights, str(path), model.state_dict())  # real numbers, all finite, of the network's kind
    try:
        model.load_state_dict(weights)  # every key, and every shape, must fit the spec's network
    except RuntimeError as exc:
        raise GankitError(f"{path}: its weights do not fit the network its metadata describes "
                          f"({str(exc).splitlines()[0][:160]})") from None
    return model.to(memory_format=torch.channels_last).eval()  # ~2x faster convolutions on the CPU


# A classifier's metadata (ClassifierSpec), checked before a network is built from it: a crafted file must not
# allocate terabytes, nor carry a value that fails later.
SPEC_FIELDS = {"channels": Field(int, choices=(1, 3)), "image_size": Field(int, 8, MAX_IMAGE_SIZE),
               "classes": Field(list, 0, 100_000), "source": Field(str, 0, 4096, optional=True),
               "data_hash": Field(str, 0, 200, optional=True), "val_accuracy": Field(float, optional=True),
               "history": Field(list, 0, 100_000, optional=True), "seconds": Field(float, 0, None, optional=True),
               "objective": Field(str, choices=("labels", "contrastive"), optional=True)}


def check_spec(spec: Any, where: str) -> None:
    """A classifier's metadata (a dict of ClassifierSpec's fields) checked: GankitError naming what is wrong."""
    expect_fields(spec, SPEC_FIELDS, where, extra=False)
    if not all(isinstance(c, str) and len(c) <= 1000 for c in spec["classes"]):
        raise GankitError(f"{where}: 'classes' must be a list of names (strings)")
    for value in spec.get("history", []):
        expect(value, float, f"{where}: an entry of 'history'")


def classify(paths: list[str | Path], evaluator: str | Path) -> list[tuple[str, str, float]]:
    """(path, predicted class, probability) for each image file, with a trained gankit classifier."""
    model = load_classifier(evaluator)
    if not model.spec.classes:
        raise GankitError(f"{evaluator} is a label-free evaluator (features only): it has no classes to predict")
    out = []
    for path in paths:
        image = folders.read_image(Path(path), model.spec.image_size)
        if image is None:
            raise GankitError(f"cannot read image {path}")
        image = loading.fit(image.unsqueeze(0), model.spec.image_size, model.spec.channels)
        _, logits = model.embed(image)
        prob = torch.softmax(logits, 1)[0]
        out.append((str(path), model.spec.classes[int(prob.argmax())], float(prob.max())))
    return out
