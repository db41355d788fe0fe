"""Losses and training options on mnist5k at an equal wall-clock budget: which works best here?

Every variant starts from the dcgan preset, changes only what its row says, and trains for the same number
of seconds (time_limit; evaluations every epoch are part of the budget, as they are for a user). Then its
best and last generators are measured with n = 2,500 samples against the real-vs-real floor at that size.
The evaluator is trained (or taken from the cache) before the first variant, outside every budget.

Prints one JSON object; with --table PATH also writes the markdown table that BENCHMARKS.md shows.
Usage: python benchmarks/losses.py [--seconds 90] [--variants bce ema ...] [--out DIR] [--table t.md]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from throughput import machine  # noqa: E402

# name -> --set overrides on top of the dcgan preset
VARIANTS: dict[str, dict[str, str]] = {
    "bce, rotation 20 (tutorial)": {},
    "bce": {"rotation": "0"},
    "lsgan": {"rotation": "0", "loss": "lsgan"},
    "hinge": {"rotation": "0", "loss": "hinge"},
    "hinge + spectral norm": {"rotation": "0", "loss": "hinge", "spectral_norm": "true"},
    # WGAN-GP with the paper's optimizer (Adam 1e-4, betas (0, 0.9)); the tutorial's 2e-3 makes it diverge
    "wgan-gp, Adam 1e-4 (0, 0.9)": {"rotation": "0", "loss": "wgan-gp", "lr": "1e-4", "beta1": "0", "beta2": "0.9"},
    "bce + r1 (gamma 0.1)": {"rotation": "0", "r1_gamma": "0.1"},
    "bce + spectral norm": {"rotation": "0", "spectral_norm": "true"},
    "bce + ttur (lr_d 4e-3, lr 1e-3)": {"rotation": "0", "lr": "1e-3", "lr_d": "4e-3"},
    "bce + ema": {"rotation": "0", "ema": "0.999"},
    "bce + diffaug": {"rotation": "0", "diffaug": "translation,cutout"},
    "bce + conditional": {"rotation": "0", "conditional": "true"},
    "bce + ema + conditional": {"rotation": "0", "ema": "0.999", "conditional": "true"},
    "bce + ema + diffaug + conditional": {"rotation": "0", "ema": "0.999", "diffaug": "translation,cutout",
                                          "conditional": "true"},
    # second round, around the best of the first
    "hinge + ema": {"rotation": "0", "loss": "hinge", "ema": "0.999"},
    "bce + ema + ttur (lr_d 4e-3, lr 1e-3)": {"rotation": "0", "ema": "0.999", "lr": "1e-3", "lr_d": "4e-3"},
    "bce + ema, batch 64": {"rotation": "0", "ema": "0.999", "batch_size": "64"},
    "wgan-gp, Adam 5e-4 (0.5, 0.9)": {"rotation": "0", "loss": "wgan-gp", "lr": "5e-4", "beta2": "0.9"},
    # third round: the optimizer around bce + ema
    "bce + ema, lr 1e-3": {"rotation": "0", "ema": "0.999", "lr": "1e-3"},
    "bce + ema + label smoothing 0.1": {"rotation": "0", "ema": "0.999", "label_smoothing": "0.1"},
}
KEYS = ("fd", "precision", "recall", "classes_covered", "class_accuracy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90.0, help="training budget per variant")
    parser.add_argument("--variants", nargs="+", help="names (default: all); see VARIANTS")
    parser.add_argument("--out", help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--table", help="also write a markdown table here")
    parser.add_argument("-n", type=int, default=2500)
    args = parser.parse_args()

    work = Path(args.out or tempfile.mkdtemp())
    os.environ.setdefault("GANKIT_CACHE_DIR", str(work / "cache"))
    from gankit import config
    from gankit import data as data_mod
    from gankit import evaluator as ev
    from gankit.evaluate import evaluate
    from gankit.train import train

    ev.reference_for(data := data_mod.load("mnist5k"), ev.evaluator_for(data, progress=False))
    names = args.variants or list(VARIANTS)
    out = {"benchmark": "losses", "machine": machine(), "data": "mnist5k", "seconds": args.seconds, "n": args.n,
           "variants": {}}
    for i, name in enumerate(names):
        sets = {**VARIANTS[name], "epochs": "1000", "time_limit": str(args.seconds)}
        cfg = config.resolve("dcgan", None, sets)
        result = train(cfg, work / f"v{i:02d}", progress=False)
        last = evaluate(result.run_dir, args.n, progress=False)
        best = evaluate(result.run_dir, args.n, best=True, progress=False)
        row = {"set": VARIANTS[name], "run": str(result.run_dir), "steps": result.steps, "epochs": result.epochs,
               "images_per_s": round(result.images_per_s, 1), "best_epoch": best.epoch,
               "best": {k: best.values.get(k) for k in KEYS}, "last": {k: last.values.get(k) for k in KEYS},
               "floor": {k: last.floor.get(k) for k in KEYS}, "health": result.health}
        out["variants"][name] = row
        print(json.dumps({name: row}), file=sys.stderr)
    print(json.dumps(out, indent=2))
    if args.table:
        Path(args.table).write_text(markdown(out))


def markdown(out: dict) -> str:
    floor = next(iter(out["variants"].values()))["floor"]
    lines = [f"| variant ({out['seconds']:.0f} s each) | best FD | last FD | precision | recall | classes | "
             "class acc. | images/s | steps |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in out["variants"].items():
        b = r["best"]
        acc = f"{b['class_accuracy']:.2f}" if b.get("class_accuracy") is not None else ""
        lines.append(f"| {name} | {b['fd']:.1f} | {r['last']['fd']:.1f} | {b['precision']:.2f} | {b['recall']:.2f} | "
                     f"{b['classes_covered']} | {acc} | {r['images_per_s']:.0f} | {r['steps']} |")
    lines.append(f"| real vs real (floor) | {floor['fd']:.2f} | | {floor['precision']:.2f} | {floor['recall']:.2f} | "
                 f"{floor['classes_covered']} | | | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
