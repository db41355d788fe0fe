"""Does the label-free evaluator order generators as a labeled judge does? Prints JSON.

On the 5,000 embedded digits with their labels hidden (written as a flat folder of PNGs), it trains
generators of clearly different quality (simple-gan and unconditional dcgan for 1 to 30 epochs, other losses,
and a collapsed set: 20 fakes repeated), draws 2,000 fakes from each, and measures every fake set three ways:
FD in the labeled classifier's features (mnist5k, `evaluator_kind=classifier`), FD in the label-free
evaluator's features (the flat folder), and with --inception FD in Inception-v3's (slow on a CPU: about 0.3 s
an image here, so against 600 real digits and 300 fakes a set). It reports Spearman's rank correlation between
the label-free FD and the others, and each set's copy rate. With --emoji DIR it also trains the label-free
evaluator on that folder at 32x32 (its first-training cost) and measures 7 runs on it (dcgan 1-25 epochs,
simple-gan, hinge) and a collapsed set.

    python benchmarks/label_free.py --work /tmp/lf [--emoji /tmp/emoji] [--inception]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

GENERATORS = [  # name, preset, epochs, extra settings (all unconditional: the judge must not be told classes)
    ("simple-gan-1", "simple-gan", 1, {}),
    ("simple-gan-5", "simple-gan", 5, {}),
    ("simple-gan-30", "simple-gan", 30, {}),
    ("dcgan-1", "dcgan", 1, {}),
    ("dcgan-3", "dcgan", 3, {}),
    ("dcgan-10", "dcgan", 10, {}),
    ("dcgan-30", "dcgan", 30, {}),
    ("dcgan-lsgan-5", "dcgan", 5, {"loss": "lsgan"}),
    ("dcgan-hinge-5", "dcgan", 5, {"loss": "hinge"}),
]


def write_flat(root: Path, count: int = 0) -> Path:
    """The embedded digits (the first `count`, or all) as a flat folder of PNGs: no labels."""
    from PIL import Image

    from gankit.data.loading import load

    if not root.is_dir():
        root.mkdir(parents=True)
        images = load("mnist5k").images
        for i, image in enumerate(images[:count] if count else images):
            Image.fromarray(image[0].numpy()).save(root / f"{i:04d}.png")
    return root


def fake_sets(work: Path, data: str, generators, image_size: int = 28) -> dict[str, Path]:
    import gankit

    out = {}
    for name, preset, epochs, sets in generators:
        npy = work / f"{name}.npy"
        if not npy.is_file():
            run = work / "runs" / name
            gankit.train(preset, run, progress=False, data=data, epochs=epochs, conditional=False, eval_every=0,
                         image_size=image_size, **sets)
            gankit.generate(run, 2000, npy)
        out[name] = npy
    if "dcgan-30" in out:  # a collapsed generator: 20 distinct fakes, each 100 times
        collapsed = work / "collapsed.npy"
        np.save(collapsed, np.repeat(np.load(out["dcgan-30"])[:20], 100, axis=0))
        out["collapsed"] = collapsed
    return out


def measure(sets: dict[str, Path], real: str, **how) -> dict[str, dict]:
    from gankit.quality.evaluate import evaluate_fakes

    found = {}
    for name, npy in sets.items():
        result = evaluate_fakes(npy, real, progress=False, **how)
        found[name] = {"fd": result.values["fd"], "floor_fd": result.floor["fd"],
                       "copy_rate": result.values.get("copy_rate"), "n": result.n}
    return found


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return round(float(spearmanr(a, b).statistic), 4)


def digits(work: Path, inception: bool) -> dict:
    flat = write_flat(work / "flat")
    sets = fake_sets(work, "mnist5k", GENERATORS)
    start = time.perf_counter()
    label_free = measure(sets, f"folder:{flat}", kind="self")  # trains the label-free evaluator on first use
    seconds = time.perf_counter() - start
    labeled = measure(sets, "mnist5k", kind="classifier")
    names = list(sets)
    out = {"generators": names, "label_free": label_free, "labeled": labeled,
           "label_free_first_use_s": round(seconds, 1),
           "spearman_label_free_vs_labeled": spearman([label_free[k]["fd"] for k in names],
                                                      [labeled[k]["fd"] for k in names])}
    if inception:  # Inception-v3 on a CPU: a reference of 600 real digits and 300 fakes a set (~20 minutes)
        small = write_flat(work / "flat600", count=600)
        incept = measure({k: sets[k] for k in names}, f"folder:{small}", features="inception", n=300)
        out["inception"] = incept
        out["spearman_label_free_vs_inception"] = spearman([label_free[k]["fd"] for k in names],
                                                           [incept[k]["fd"] for k in names])
    return out


def emoji(work: Path, folder: Path, inception: bool = False) -> dict:
    from gankit.data.loading import load
    from gankit.quality import evaluator as ev

    data = load(f"folder:{folder}", image_size=32)
    start = time.perf_counter()
    model = ev.evaluator_for(data, progress=False, kind="self")
    seconds = time.perf_counter() - start
    runs = [(f"emoji-dcgan-{e}", "dcgan", e, {}) for e in (1, 2, 4, 12, 25)]
    runs += [("emoji-simple-gan-4", "simple-gan", 4, {}), ("emoji-dcgan-hinge-4", "dcgan", 4, {"loss": "hinge"})]
    sets = fake_sets(work / "emoji", f"folder:{folder}", runs, image_size=32)
    collapsed = work / "emoji" / "collapsed.npy"  # 20 fakes of the best run, each 100 times
    np.save(collapsed, np.repeat(np.load(sets["emoji-dcgan-25"])[:20], 100, axis=0))
    sets["emoji-collapsed"] = collapsed
    found = measure(sets, f"folder:{folder}", kind="self")
    out = {"images": len(data), "evaluator_first_training_s": round(seconds, 1),
           "evaluator_val_loss": model.spec.history, "runs": found}
    if inception:  # against the first 600 pictures, 300 fakes a run, as for the digits
        import shutil

        small = work / "emoji600"
        if not small.is_dir():
            small.mkdir(parents=True)
            for path in sorted(folder.iterdir())[:600]:
                shutil.copy(path, small / path.name)
        out["inception"] = measure(sets, f"folder:{small}", features="inception", n=300)
        names = list(sets)
        out["spearman_label_free_vs_inception"] = spearman([found[k]["fd"] for k in names],
                                                           [out["inception"][k]["fd"] for k in names])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/gankit-label-free"))
    p.add_argument("--emoji", type=Path, help="a folder of color pictures (../shared/data/make_emoji_folder.py)")
    p.add_argument("--inception", action="store_true", help="also Inception FD (n = 500; needs the extra)")
    p.add_argument("--emoji-only", action="store_true", help="skip the digits (with --emoji)")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GANKIT_CACHE_DIR", str(args.work / "cache"))
    result = {"machine": machine()}
    if not args.emoji_only:
        result["digits"] = digits(args.work, args.inception)
    if args.emoji:
        result["emoji"] = emoji(args.work, args.emoji, args.inception)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
