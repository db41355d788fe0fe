"""The probe and spectrum methods: fixed features of each image and a logistic-regression head.

- probe: the frozen penultimate features of the domain evaluator (gankit's classifier for the real data, 128-d;
  `--evaluator PATH` for another) or of Inception-v3 (`--features inception`, the extra). Ojha et al. 2023
  ("Towards universal fake image detectors") found a linear probe on frozen features to generalize to unseen
  generators better than a network trained end to end. The evaluator's weights are copied into the detector,
  so it scores the same whatever happens to the cache.
- spectrum: the azimuthally averaged log power spectrum of each image (grayscale; one value per integer radius
  of spatial frequency), the frequency baseline: upsampling leaves traces in the spectrum's high frequencies
  (Frank et al. 2020, Durall et al. 2020).

The head: features standardized with the training set's mean and deviation, then scikit-learn's
LogisticRegression (L2, classes weighted equally); its strength C is chosen from a small grid by the balanced
log-loss on the validation images. Scoring needs no scikit-learn object: the head is four tensors.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from sklearn.linear_model import LogisticRegression

from gankit import console
from gankit.checks import Field
from gankit.config import MAX_IMAGE_SIZE
from gankit.detect.base import Detector, prefixed, unprefixed
from gankit.detect.scores import balanced_log_loss, detection_metrics, labels_for
from gankit.errors import GankitError
from gankit.quality import classifier as clf

C_GRID = (0.01, 0.1, 1.0, 10.0)


class LinearDetector(Detector):
    """A logistic-regression head on `features(images)`; subclasses define the features."""

    def features(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        if not len(images):
            return torch.zeros(0)
        features = self.features(images).double()
        if features.shape[1:] != self.head["mean"].shape:
            raise GankitError(f"its logistic head takes {len(self.head['mean'])} features, and its {self.name} "
                              f"features have {features.shape[1]}: a head of another detector; train it again")
        x = (features - self.head["mean"]) / self.head["scale"]
        return torch.sigmoid(x @ self.head["coef"] + self.head["intercept"]).float()

    def tensors(self) -> dict[str, torch.Tensor]:
        return prefixed("head", self.head)

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        self.head = {k: v.double() for k, v in unprefixed("head", tensors).items()}
        if set(self.head) != {"mean", "scale", "coef", "intercept"}:
            raise GankitError("its weights lack the logistic head (mean, scale, coef, intercept)")
        mean, scale, coef, intercept = (self.head[k] for k in ("mean", "scale", "coef", "intercept"))
        if (mean.dim() != 1 or not len(mean) or scale.shape != mean.shape or coef.shape != mean.shape
                or intercept.numel() != 1 or not bool((scale > 0).all())):
            raise GankitError(f"its logistic head does not fit together (mean {tuple(mean.shape)}, scale "
                              f"{tuple(scale.shape)}, coef {tuple(coef.shape)}, intercept {tuple(intercept.shape)}; "
                              "every scale > 0): train it again")
        self.head["intercept"] = intercept.reshape(())

    def fit(self, real: torch.Tensor, fake: torch.Tensor, val_real: torch.Tensor, val_fake: torch.Tensor,
            seed: int = 0, log: Callable[[str], None] = console.silent) -> list[dict[str, Any]]:
        x = self.features(torch.cat([real, fake])).double()
        val_x = self.features(torch.cat([val_real, val_fake])).double()
        y, val_y = labels_for(len(real), len(fake)), labels_for(len(val_real), len(val_fake))
        mean, scale = x.mean(0), x.std(0).clamp(min=1e-6)
        xs, val_xs = ((x - mean) / scale).numpy(), ((val_x - mean) / scale).numpy()
        rows, best = [], None
        for c in C_GRID:
            model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=seed).fit(xs, y)
            val_scores = model.predict_proba(val_xs)[:, 1]
            val_loss = balanced_log_loss(val_y, val_scores)
            rows.append({"kind": "choice", "C": c, "val_loss": round(val_loss, 5),
                         "val_auc": round(detection_metrics(val_y, val_scores)["auc"], 5)})
            log(f"{self.name} C={c}: validation loss {val_loss:.4f}, AUC {rows[-1]['val_auc']:.4f}")
            if best is None or val_loss < best[0] - 1e-6:
                best = (val_loss, c, model)
        _, self.settings["C"], model = best
        self.head = {"mean": mean, "scale": scale, "coef": torch.from_numpy(model.coef_[0]).double(),
                     "intercept": torch.tensor(float(model.intercept_[0]), dtype=torch.float64)}
        return rows


class ProbeDetector(LinearDetector):
    """Logistic regression on the evaluator's (or Inception's) frozen features."""

    name = "probe"
    SETTINGS = {"features": Field(str, choices=("evaluator", "inception")), "evaluator": Field(dict, optional=True),
                "evaluator_path": Field(str, 0, 4096, optional=True), "C": Field(float, 0, None, optional=True)}

    def __init__(self, settings: dict[str, Any], extractor: torch.nn.Module | None = None):
        super().__init__({"features": "evaluator", **settings})
        self.extractor = extractor

    def features(self, images: torch.Tensor) -> torch.Tensor:
        if self.extractor is None:
            self.extractor = self._load_extractor(None)
        return self.extractor.embed(images)[0]

    def tensors(self) -> dict[str, torch.Tensor]:
        own = super().tensors()
        if self.settings["features"] == "evaluator":
            own.update(prefixed("features", self.extractor.state_dict()))
        return own

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        super().load(tensors)
        self.extractor = self._load_extractor(unprefixed("features", tensors))

    def _load_extractor(self, weights: dict[str, torch.Tensor] | None) -> torch.nn.Module:
        if self.settings["features"] == "inception":
            from gankit.quality.inception import InceptionFeatures

            return InceptionFeatures()
        spec = self.settings.get("evaluator")
        if not isinstance(spec, dict) or weights is None:
            raise GankitError("its probe has no evaluator weights: train it again")
        clf.check_spec(spec, "its evaluator")  # before a network is built from it
        try:
            model = clf.Classifier(clf.ClassifierSpec(**spec))
            model.load_state_dict(weights)
        except (TypeError, RuntimeError) as exc:
            raise GankitError(f"its evaluator does not load ({str(exc).splitlines()[0][:120]})") from None
        return model.to(memory_format=torch.channels_last).eval()


def radial_spectrum(images: torch.Tensor) -> torch.Tensor:
    """The azimuthally averaged log power spectrum of uint8 images N x C x H x W (channels averaged to gray):
    N x R, one value per integer radius of spatial frequency (R = 20 for 28x28)."""
    h, w = images.shape[-2:]
    fy = torch.fft.fftfreq(h).mul(h).view(-1, 1)
    fx = torch.fft.fftfreq(w).mul(w).view(1, -1)
    radius = (fy ** 2 + fx ** 2).sqrt().round().long().flatten()
    counts = torch.bincount(radius).double()
    out = []
    for chunk in images.split(1024):
        gray = chunk.double().mean(1) / 255
        log_power = torch.log(torch.fft.fft2(gray).abs().pow(2) + 1e-10).flatten(1)
        sums = torch.zeros(len(chunk), len(counts), dtype=torch.float64).index_add_(1, radius, log_power)
        out.append(sums / counts)
    return torch.cat(out) if out else torch.zeros(0, len(counts))


class SpectrumDetector(LinearDetector):
    """Logistic regression on the radial log power spectrum."""

    name = "spectrum"
    SETTINGS = {"channels": Field(int, choices=(1, 3)), "image_size": Field(int, 8, MAX_IMAGE_SIZE),
                "C": Field(float, 0, None, optional=True)}

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return radial_spectrum(images)
