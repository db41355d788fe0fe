"""A trained generator for other programs: `gankit.load(RUN_DIR)`.

The returned `TrainedGenerator` is what `gankit generate` samples and `gankit export` exports: the run's exported
weights (generator.safetensors, or best.safetensors; the EMA generator in a run that keeps one) rebuilt from
the model spec of its config, in eval mode. It describes itself (z_dim, image_shape, classes, the epoch it was
saved at) and is an ordinary torch.nn.Module mapping noise (and labels) to images in [-1, 1].
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from gankit.config import DEVICE
from gankit.data.batches import to_uint8
from gankit.devices import resolve_device
from gankit.errors import GankitError
from gankit.files import is_whole
from gankit.inference.sampling import sample_blocks
from gankit.models.registry import eval_mode, run
from gankit.run import generator_file, layout

OUTPUTS = ("tensor", "uint8", "pil")
MAX_SAMPLE_BYTES = 8 << 30  # what sample() may hold at once (float32); gankit.generate writes any n in blocks


class TrainedGenerator(nn.Module):
    """A trained gankit generator: forward(z, labels=None) -> images in [-1, 1], N x C x H x W.

    z: N x z_dim float noise (standard normal); labels: N class indices (int64), for a conditional generator
    only. Attributes: z_dim, image_shape (C, H, W), classes (the class names, None when unconditional),
    num_classes (0 when unconditional), epoch and step (when it was saved; None if unrecorded), spec (what it
    takes to rebuild it), source (the file it was loaded from).
    """

    def __init__(self, net: nn.Module, spec: dict[str, Any], classes: Sequence[str] | None = None,
                 epoch: int | None = None, step: int | None = None, source: Path | None = None):
        super().__init__()
        self.net = net
        self.spec = dict(spec)
        self.z_dim = int(spec["z_dim"])
        self.image_shape = (int(spec["channels"]), int(spec["image_size"]), int(spec["image_size"]))
        self.num_classes = int(spec.get("num_classes") or 0)
        names = [str(c) for c in classes] if isinstance(classes, (list, tuple)) else []
        if self.num_classes and len(names) != self.num_classes:
            names = [str(i) for i in range(self.num_classes)]
        self.classes = names if self.num_classes else None
        self.epoch, self.step, self.source = epoch, step, source

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def info(self) -> dict[str, Any]:
        """The model spec, class names, epoch and step: what the safetensors and ONNX metadata hold."""
        return {**self.spec, "classes": self.classes, "epoch": self.epoch, "step": self.step}

    def extra_repr(self) -> str:
        return (f"z_dim={self.z_dim}, image_shape={self.image_shape}, classes={self.classes}, "
                f"epoch={self.epoch}")

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise GankitError(f"z must be N x {self.z_dim} noise, got shape {tuple(z.shape)}")
        if (labels is None) != (not self.num_classes):
            raise GankitError("this generator is conditional: pass N class indices as labels" if self.num_classes
                              else "this generator is unconditional: it takes no labels")
        if labels is not None and not _tracing() and (  # (exported: the graph must stay free of these checks)
                labels.shape != (z.shape[0],) or labels.dtype.is_floating_point or labels.dtype == torch.bool
                or (len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < self.num_classes))):
            raise GankitError(f"labels must be {z.shape[0]} integer class indices in [0, {self.num_classes}), got "
                              f"{labels.dtype} of shape {tuple(labels.shape)}")
        return run(self.net, z, labels)

    def class_index(self, name: str | int) -> int:
        """A class by name ("7", "Sneaker") or by index."""
        if not self.num_classes:
            raise GankitError("this generator is unconditional: it draws no classes (train with "
                              "--set conditional=true on labeled data for one that does)")
        return find_class(name, self.classes)

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, classes: str | int | Sequence[str | int] | None = None,
               output: str = "tensor"):
        """n images from seeded noise: the images `gankit generate RUN -n N --seed SEED` draws.

        classes (conditional generators): None takes turns over the classes (0, 1, ..., as generate's grid),
        one class (name or index) draws only that class, a sequence of n names or indices one per image.
        output: "tensor" (float32 N x C x H x W in [-1, 1], on the CPU), "uint8" (N x C x H x W, 0-255) or
        "pil" (a list of n PIL images, mode L or RGB).
        """
        if output not in OUTPUTS:
            raise GankitError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        if not is_whole(n) or n < 1:
            raise GankitError(f"n must be a whole number >= 1, got {n!r}")
        if not is_whole(seed) or not 0 <= seed < 2**63:
            raise GankitError(f"seed must be a whole number in [0, 2**63), got {seed!r}")
        n, seed = int(n), int(seed)
        if n * math.prod(self.image_shape) * 4 > MAX_SAMPLE_BYTES:
            raise GankitError(f"{n} images of {self.image_shape} would take more than {MAX_SAMPLE_BYTES >> 30} GiB "
                              "held at once: draw fewer per call, or write them to disk block by block with "
                              "gankit.generate(run_dir, n, 'fakes.npy' or a folder)")
        labels = self._labels(n, classes)
        with eval_mode(self):
            blocks = sample_blocks(self, n, self.z_dim, seed, device=self.device,
                                   labels=None if labels is None else lambda start, stop: labels[start:stop])
            images = torch.cat(list(blocks))
        if output == "tensor":
            return images
        return to_uint8(images) if output == "uint8" else to_pil(to_uint8(images))

    def _labels(self, n: int, classes) -> torch.Tensor | None:
        if torch.is_tensor(classes) or hasattr(classes, "tolist"):  # tensors, numpy arrays and scalars
            classes = classes.tolist()
        if classes is None:
            return torch.arange(n) % self.num_classes if self.num_classes else None
        if isinstance(classes, (str, int)):
            return torch.full((n,), self.class_index(classes), dtype=torch.long)
        if not isinstance(classes, Sequence):
            raise GankitError(f"classes must be a class (name or index) or a sequence of them, got {classes!r}")
        indices = [self.class_index(c) for c in classes]
        if len(indices) != n:
            raise GankitError(f"classes has {len(indices)} entries for {n} images: give one class, or one per image")
        return torch.tensor(indices, dtype=torch.long)


def find_class(name: str | int, classes: list[str]) -> int:
    """The index of a class given by name or by index (a whole number, or a string of digits)."""
    if isinstance(name, str) and name in classes:
        return classes.index(name)
    if is_whole(name) and 0 <= name < len(classes):  # numpy integers too
        return int(name)
    if isinstance(name, str) and name.isascii() and name.isdigit() and int(name) < len(classes):  # not "²"
        return int(name)
    raise GankitError(f"unknown class {name!r}: this run draws {', '.join(classes)}")


def to_pil(images: torch.Tensor) -> list:
    """N x C x H x W uint8 -> N PIL images (mode L for one channel, RGB for three)."""
    from PIL import Image

    arrays = images.cpu().permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a) for a in arrays]


def load(run_dir: str | Path, best: bool = False, device: str | torch.device = "cpu") -> TrainedGenerator:
    """The trained generator of a run directory, in eval mode, for use from Python.

    Args:
        run_dir: a gankit run directory (what `gankit train` wrote).
        best: load best.safetensors (the lowest FD during training) instead of generator.safetensors (the last
            epoch's); in a run with an EMA both hold the EMA generator.
        device: "cpu" (default), "cuda", "cuda:N" or "auto".
    Returns:
        a `TrainedGenerator`: call .sample(n) for images, or use it as a torch.nn.Module (z, labels) -> images.
    Raises:
        GankitError when the folder is no run, has no such export yet, or the device does not exist.
    """
    if not isinstance(run_dir, (str, Path)):
        raise GankitError(f"run_dir must be a path (str or pathlib.Path), got {type(run_dir).__name__}")
    if not isinstance(device, torch.device) and not DEVICE.fullmatch(str(device)):
        raise GankitError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    device = resolve_device(str(device))
    name = layout.BEST if best else layout.GENERATOR
    net, cfg = generator_file.load_generator(run_dir, device, name=name)
    info = generator_file.export_info(run_dir, name)
    epoch, step = info.get("epoch"), info.get("step")
    return TrainedGenerator(net, generator_file.model_spec(cfg), info.get("classes"),
                            epoch if is_whole(epoch) else None, step if is_whole(step) else None,
                            Path(run_dir) / name).eval()


def _tracing() -> bool:
    """Inside torch.export / torch.compile / tracing: the labels' values are symbols, not numbers to check."""
    exporting = getattr(torch.compiler, "is_exporting", lambda: False)
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or exporting()
