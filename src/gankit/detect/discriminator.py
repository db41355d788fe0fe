"""The discriminator method: a GAN run's own D (from its checkpoint.pt) as a detector, with nothing trained.

Whether a GAN's discriminator is a good detector is an open question; gankit measures it beside the trained
methods instead of assuming it. D's weights are copied into the detector when it is made (so a run that keeps
training does not change it); the detector records the run, epoch and step they came from.

- Scores: D's output is a logit for the bce loss; for the others it is a critic score. P(generated) is
  sigmoid(boundary - D(x)) with the loss's decision boundary (0 for bce, hinge and wgan-gp, 0.5 for lsgan, whose
  targets are 1 and 0): a probability for bce, a monotone squashing otherwise. AUC and AP do not depend on it;
  accuracy at 0.5 means "on D's side of its own boundary".
- BatchNorm: in training D only ever normalized all-real or all-fake batches by their own statistics, and its
  running statistics average the two; scored with them (eval mode), gankit's dcgan D ranks held-out real digits
  below its own fakes (ROC AUC 0.34 after 2 epochs on 1,000 digits). So by default (`batchnorm="real"`) the
  statistics are recomputed once, when the detector is made, from the run's real training images (up to
  CALIBRATION of them): every image is then judged as D judged its real batches, each image alone (no score
  depends on the rest of its batch); the same D then reaches AUC 0.99. `batchnorm="running"` keeps the
  checkpoint's statistics, for comparison (BENCHMARKS.md). A D without BatchNorm (mlp, layer norm) is as it was.
- A conditional (projection) D needs a label, and an image to be judged comes without one. gankit scores each
  image under every class and keeps the most real-looking one (the max of D(x, y) over y): a real 7 is real
  as a 7, whatever D thinks of it as a 3. The mean over classes would count the nine wrong labels, where the
  projection term says "not this class", as evidence of fakeness; the evaluator's predicted class would make the
  score depend on a second network. `label_rule="mean"` is there to measure the difference (BENCHMARKS.md).
- D's real images: the run's training data; `detect train --method discriminator` records their hashes, so an
  evaluation on the same source leaves them out like any detector's training images. A run trained with
  `holdout` > 0 never trained on its held-out images (quality.evaluator.held_out): the detector records them too
  and its evaluations on the run's source measure real images with exactly those, and its BatchNorm statistics
  come from the trained images alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from gankit import config as config_mod
from gankit.checks import MAX_EPOCH, MAX_STEP, Field
from gankit.data import batches
from gankit.detect.base import Detector, prefixed, unprefixed
from gankit.errors import GankitError
from gankit.models.registry import ProjectionDiscriminator, eval_mode, from_config, run
from gankit.run import checkpoint, generator_file

BOUNDARY = {"bce": 0.0, "hinge": 0.0, "wgan-gp": 0.0, "lsgan": 0.5}
LABEL_RULES = ("max", "mean")
BATCHNORM = ("real", "running")
CALIBRATION = 5000  # real images whose BatchNorm statistics D uses with batchnorm="real"


class DiscriminatorDetector(Detector):
    name = "discriminator"
    trains = False
    SETTINGS = {"label_rule": Field(str, choices=LABEL_RULES), "batchnorm": Field(str, choices=BATCHNORM),
                "run_config": Field(dict), "run": Field(str, 0, 4096, optional=True),
                "epoch": Field(int, 0, MAX_EPOCH, optional=True), "step": Field(int, 0, MAX_STEP, optional=True),
                "loss": Field(str, 0, 100, optional=True), "calibration_images": Field(int, 0, None, optional=True)}

    def __init__(self, settings: dict[str, Any]):
        super().__init__({"label_rule": "max", "batchnorm": "real", **settings})
        for key, allowed in (("label_rule", LABEL_RULES), ("batchnorm", BATCHNORM)):
            if self.settings[key] not in allowed:
                raise GankitError(f"{key} must be one of {', '.join(allowed)}, got {self.settings[key]!r}")
        try:
            self.cfg = config_mod.override(config_mod.Config(), self.settings["run_config"])  # coerced, checked
        except (KeyError, TypeError, GankitError) as exc:
            raise GankitError(f"its run_config does not describe a gankit run ({exc})") from None
        cfg = self.cfg
        self.net = from_config(cfg)[1].eval()

    @classmethod
    def from_run(cls, run_dir: str | Path, real: torch.Tensor, label_rule: str = "max",
                 batchnorm: str = "real") -> "DiscriminatorDetector":
        """The discriminator in RUN_DIR/checkpoint.pt (loaded with weights_only=True), checked against the run's
        config; real: the run's real training images (uint8), whose statistics its BatchNorm layers take when
        batchnorm is "real"."""
        cfg = generator_file.load_run_config(run_dir)
        state = checkpoint.load_checkpoint(run_dir)
        detector = cls({"run": str(Path(run_dir).resolve()), "epoch": state["epoch"], "step": state["step"],
                        "loss": cfg.loss, "label_rule": label_rule, "batchnorm": batchnorm,
                        "run_config": cfg.to_dict()})
        saved = state["discriminator"]
        try:
            checkpoint.check_weights("discriminator", saved, detector.net)
        except GankitError as exc:
            raise GankitError(f"the checkpoint of {run_dir} does not fit its config: {exc}") from None
        detector.net.load_state_dict(saved)
        if batchnorm == "real":
            detector.settings["calibration_images"] = detector.calibrate(real[:CALIBRATION], cfg.batch_size)
        return detector

    @torch.no_grad()
    def calibrate(self, real: torch.Tensor, batch_size: int) -> int:
        """Replace every BatchNorm layer's running statistics by the average statistics of batches of `real`
        (batch_size each, as in training); the number of images used (0 when D has no BatchNorm)."""
        norms = [m for m in self.net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return 0
        self.net.eval()  # everything else stays in eval mode (a spectral norm's power iteration too)
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average over the batches below
            norm.train()
        for chunk in real.split(batch_size):
            if len(chunk) < 2:  # a BatchNorm of 1x1 features needs two images
                continue
            x = batches.to_float(chunk)
            run(self.net, x, torch.zeros(len(x), dtype=torch.long) if self.cfg.num_classes else None)
        for norm in norms:
            norm.momentum = 0.1
        self.net.eval()
        return len(real)

    @torch.no_grad()
    def scores(self, images: torch.Tensor) -> torch.Tensor:
        out = [self._realness(batches.to_float(chunk)) for chunk in images.split(500)]
        realness = torch.cat(out) if out else torch.zeros(0)
        return torch.sigmoid(BOUNDARY.get(self.cfg.loss, 0.0) - realness)

    def _realness(self, x: torch.Tensor) -> torch.Tensor:
        """D(x), or for a conditional D the max (or mean) of D(x, y) over the classes y."""
        with eval_mode(self.net):
            if not self.cfg.num_classes:
                return run(self.net, x).float().view(-1)
            per_class = self.per_class(x)
        return per_class.max(1).values if self.settings["label_rule"] == "max" else per_class.mean(1)

    def per_class(self, x: torch.Tensor) -> torch.Tensor:
        """D(x, y) for every class y: N x classes. A projection D's body runs once: D(x, y) = head(h) +
        <embed(y), h> is head(h) plus one matrix product with every class embedding."""
        net = self.net
        if isinstance(net, ProjectionDiscriminator):
            h = net.base.body(x)
            return (net.base.head(h).view(-1, 1) + h @ net.embed.weight.t()).float()
        return torch.stack([run(net, x, torch.full((len(x),), y, dtype=torch.long)).float().view(-1)
                            for y in range(self.cfg.num_classes)], 1)

    def fit(self, *args, **kwargs):  # noqa: ARG002 - the registry's interface
        raise GankitError("the discriminator method trains nothing: make its detector with --run RUN_DIR")

    def tensors(self) -> dict[str, torch.Tensor]:
        return prefixed("d", self.net.state_dict())

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        weights = unprefixed("d", tensors)
        checkpoint.check_weights("discriminator", weights, self.net)
        self.net.load_state_dict(weights)
