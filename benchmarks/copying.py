"""Does the copy rate tell copying from learning? Prints JSON.

Half of the 5,000 embedded digits (2,500, written as a folder with its class subfolders) is the training set;
the other half is never shown to anything. Three fake sets are measured against the training set with
`gankit.evaluate_fakes` (the labeled evaluator, n = 1,250, the floor's size):
- copies: training images plus a little noise (uniform integer noise of +-4 grey levels): a copy rate near 1;
- unseen: real digits of the other half: about the 1% that the threshold lets through by construction;
- a dcgan trained on the training set for 20 epochs (unconditional): somewhere between, near the floor.
The same in the label-free evaluator's features (the training set as a flat folder). C_T (Meehan et al. 2020)
of each set, with 1,250 of the never-shown digits as the held-out sample (the "unseen" fakes are the other
1,250): far below 0 for copies, near 0 for new real digits.

    python benchmarks/copying.py --work /tmp/gankit-copying
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402


def write_halves(work: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """The training half as a labeled folder and a flat one; both halves' images as arrays."""
    from PIL import Image

    from gankit.data.loading import load

    data = load("mnist5k")
    order = np.random.default_rng(0).permutation(len(data))
    train, unseen = order[:2500], order[2500:]
    labeled, flat = work / "train", work / "train_flat"
    if not labeled.is_dir():
        for i in train:
            klass = data.classes[int(data.labels[i])]
            (labeled / klass).mkdir(parents=True, exist_ok=True)
            Image.fromarray(data.images[i, 0].numpy()).save(labeled / klass / f"{i:04d}.png")
        flat.mkdir()
        for i in train:
            Image.fromarray(data.images[i, 0].numpy()).save(flat / f"{i:04d}.png")
    return labeled, flat, data.images[train].numpy(), data.images[unseen].numpy()


def fake_sets(work: Path, labeled: Path, train: np.ndarray, unseen: np.ndarray) -> dict[str, Path]:
    import gankit

    noise = np.random.default_rng(1).integers(-4, 5, train.shape)
    sets = {"copies": np.clip(train.astype(int) + noise, 0, 255).astype(np.uint8), "unseen": unseen}
    out = {}
    for name, images in sets.items():
        out[name] = work / f"{name}.npy"
        np.save(out[name], images)
    out["dcgan-20"] = work / "dcgan-20.npy"
    if not out["dcgan-20"].is_file():
        run = work / "runs" / "dcgan-20"
        gankit.train("dcgan", run, progress=False, data=f"folder:{labeled}", epochs=20, conditional=False,
                     eval_every=0)
        gankit.generate(run, 2500, out["dcgan-20"])
    return out


def _features(real: str, kind: str, held_images: np.ndarray):
    """The evaluator of the training set, its features of every training image, and of the held-out sample."""
    import torch

    from gankit.data.loading import load
    from gankit.quality import evaluator as ev

    data = load(real)
    model = ev.evaluator_for(data, progress=False, kind=kind)
    return model, model.embed(data.images)[0], model.embed(torch.from_numpy(held_images))[0]


def _ct(model, pool, held, path: Path, name: str) -> float | None:
    import torch

    from gankit.quality import copying

    images = np.load(path)
    images = images[1250:] if name == "unseen" else images[:1250]  # unseen: not the held-out sample itself
    fakes = torch.from_numpy(images if images.dtype == np.uint8 else images.astype(np.float32))
    return copying.ct_statistic(model.embed(fakes)[0], pool, held)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/gankit-copying"))
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GANKIT_CACHE_DIR", str(args.work / "cache"))
    from gankit.quality.evaluate import evaluate_fakes

    labeled, flat, train, unseen = write_halves(args.work)
    sets = fake_sets(args.work, labeled, train, unseen)
    result = {"machine": machine()}
    for space, real, kind in (("labeled", f"folder:{labeled}", "classifier"), ("label_free", f"folder:{flat}", "self")):
        rows = {}
        model, pool, held = _features(real, kind, unseen[:1250])
        for name, path in sets.items():
            found = evaluate_fakes(path, real, n=1250, kind=kind, progress=False, seed=1 if name == "unseen" else 0)
            rows[name] = {"copy_rate": found.values["copy_rate"], "fd": found.values["fd"],
                          "floor_copy_rate": found.floor["copy_rate"], "floor_fd": found.floor["fd"],
                          "threshold": found.values["copying"]["threshold"], "n": found.n,
                          "ct": _ct(model, pool, held, path, name)}
        result[space] = rows
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
