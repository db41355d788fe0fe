"""The numbers of a detection: ROC AUC, average precision, accuracy at 0.5 (overall, on real, on fake) and the
oracle accuracy at the best threshold. "Generated" is the positive class (label 1); scores are P(generated), and
a score of exactly 0.5 counts as generated (the threshold is inclusive, as scikit-learn's ROC thresholds are).

ROC AUC and AP are computed by scikit-learn. High AUC/AP with low accuracy at 0.5 means the scores rank real
below fake but the 0.5 threshold is in the wrong place: it did not transfer to these images (Wang et al. 2020).
The oracle accuracy picks the threshold on the very labels it is measured on: an upper bound, not a result.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

ROC_POINTS = 101  # points of the ROC curve kept in metrics.jsonl (enough to draw it)


def labels_for(n_real: int, n_fake: int) -> np.ndarray:
    return np.concatenate([np.zeros(n_real, dtype=np.int64), np.ones(n_fake, dtype=np.int64)])


def detection_metrics(labels: np.ndarray | torch.Tensor, scores: np.ndarray | torch.Tensor) -> dict:
    """auc, ap, acc (at 0.5), real_acc, fake_acc, oracle_acc and oracle_threshold for binary labels
    (1 = generated) and scores (P(generated)); both classes must be present."""
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    fake, real = y == 1, y == 0
    predicted = s >= 0.5
    fpr, tpr, thresholds = roc_curve(y, s)
    # accuracy at each ROC threshold: fakes caught (tpr) plus reals passed (1 - fpr), weighted by their counts
    correct = tpr * fake.sum() + (1 - fpr) * real.sum()
    best = int(np.argmax(correct))
    return {"auc": float(roc_auc_score(y, s)), "ap": float(average_precision_score(y, s)),
            "acc": float((predicted == fake).mean()), "real_acc": float((~predicted[real]).mean()),
            "fake_acc": float(predicted[fake].mean()), "oracle_acc": float(correct[best] / len(y)),
            "oracle_threshold": float(min(thresholds[best], 1.0))}


def roc_points(labels: np.ndarray, scores: np.ndarray, keep: int = ROC_POINTS) -> dict[str, list[float]]:
    """The ROC curve (false-positive rate, true-positive rate), thinned to about `keep` points along the curve."""
    fpr, tpr, _ = roc_curve(np.asarray(labels), np.asarray(scores, dtype=np.float64))
    if len(fpr) > keep:
        along = np.concatenate([[0], np.cumsum(np.hypot(np.diff(fpr), np.diff(tpr)))])
        index = np.unique(np.searchsorted(along, np.linspace(0, along[-1], keep)).clip(0, len(fpr) - 1))
        fpr, tpr = fpr[index], tpr[index]
    return {"fpr": [round(float(v), 4) for v in fpr], "tpr": [round(float(v), 4) for v in tpr]}


def balanced_log_loss(labels: np.ndarray, scores: np.ndarray) -> float:
    """Binary cross-entropy with each class weighing half: the validation loss of every trained method."""
    y = np.asarray(labels)
    p = np.clip(np.asarray(scores, dtype=np.float64), 1e-7, 1 - 1e-7)
    return float(-(np.log(1 - p[y == 0]).mean() + np.log(p[y == 1]).mean()) / 2)
