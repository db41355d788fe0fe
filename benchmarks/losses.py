"""Losses and training options on mnist5k at an equal wall-clock budget: which works best here?

Every variant starts from the dcgan preset, changes only what its row says, and trains for the same number
of seconds (time_limit; evaluations every epoch are part of the budget, as they are for a user), or with
--epochs N for the same number of epochs (the default run's length is 30; a variant that names its own
epochs keeps them, and under --seconds the time limit still ends it). Then its best and last
generators are measured with n = 2,500 samples against the real-vs-real floor at that size. With --seeds
each variant is trained once per seed and the table shows the mean best FD and each seed's.
The evaluator is trained (or taken from the cache) before the first variant, outside every budget.

Prints one JSON object; with --table PATH also writes the markdown table that BENCHMARKS.md shows.
Usage: python benchmarks/losses.py [--seconds 90 | --epochs 20] [--seeds 0 1 2] [--variants NAME ...]
       [--out DIR] [--table t.md]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from gankit.data import loading

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

# The first rounds ran with the DCGAN project's discriminator (16-32-64 channels), the preset's until the sixth
# round, and unconditional (the preset's until the seventh); their variants keep both so that their rows can be
# reproduced.
TUTORIAL_D = {"d_channels": "16,32,64", "conditional": "false"}
# name -> --set overrides on top of the dcgan preset (plus TUTORIAL_D)
EARLIER: dict[str, dict[str, str]] = {
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
    # fourth round: capacity (the tutorial's D has 16-32-64 channels, its G 256-128-64)
    "bce + ema, d_width 2": {"rotation": "0", "ema": "0.999", "d_width": "2"},
    "bce + ema, d_width 4": {"rotation": "0", "ema": "0.999", "d_width": "4"},
    "bce + ema, g_width 0.5, d_width 2": {"rotation": "0", "ema": "0.999", "g_width": "0.5", "d_width": "2"},
}
VARIANTS: dict[str, dict[str, str]] = {
    **{name: {**TUTORIAL_D, **sets} for name, sets in EARLIER.items()},
    # sixth round: the preset's D (16-64-256), unconditional
    "bce + ema, D 16-64-256": {"conditional": "false"},
    # seventh round: class-conditional on the labeled source (one-hot label to G, projection D); a variant's
    # own epochs win over --epochs
    "bce + ema, conditional": {"conditional": "true"},
    "bce + ema, conditional, 30 epochs (the defaults)": {"conditional": "true", "epochs": "30"},
}
KEYS = ("fd", "precision", "recall", "classes_covered", "class_accuracy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90.0, help="training budget per variant")
    parser.add_argument("--epochs", type=int, help="train this many epochs per variant instead of --seconds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="train each variant once per seed")
    parser.add_argument("--variants", nargs="+", help="names (default: all); see VARIANTS")
    parser.add_argument("--out", help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--table", help="also write a markdown table here")
    parser.add_argument("-n", type=int, default=2500)
    args = parser.parse_args()

    work = Path(args.out or tempfile.mkdtemp())
    os.environ.setdefault("GANKIT_CACHE_DIR", str(work / "cache"))
    from gankit import config
    from gankit.quality import evaluator as ev
    from gankit.quality.evaluate import evaluate
    from gankit.training.launch import train

    ev.reference_for(data := loading.load("mnist5k"), ev.evaluator_for(data, progress=False))
    names = args.variants or list(VARIANTS)
    budget = ({"epochs": str(args.epochs)} if args.epochs
              else {"epochs": "1000", "time_limit": str(args.seconds)})
    out = {"benchmark": "losses", "machine": machine(), "data": "mnist5k", "n": args.n, "seeds": args.seeds,
           "budget": f"{args.epochs} epochs" if args.epochs else f"{args.seconds:.0f} s", "variants": {}}
    for i, name in enumerate(names):
        runs = []
        for seed in args.seeds:
            cfg = config.resolve("dcgan", None, {**budget, **VARIANTS[name], "seed": str(seed)})
            result = train(cfg, work / f"v{i:02d}-s{seed}", progress=False)
            last = evaluate(result.run_dir, args.n, progress=False)
            best = evaluate(result.run_dir, args.n, best=True, progress=False)
            runs.append({"seed": seed, "run": str(result.run_dir), "steps": result.steps, "epochs": result.epochs,
                         "seconds": round(result.seconds, 1), "images_per_s": round(result.images_per_s, 1),
                         "best_epoch": best.epoch, "best": {k: best.values.get(k) for k in KEYS},
                         "last": {k: last.values.get(k) for k in KEYS}, "floor": {k: last.floor.get(k) for k in KEYS},
                         "health": result.health})
        row = {"set": VARIANTS[name], "runs": runs,
               "mean_best_fd": round(sum(r["best"]["fd"] for r in runs) / len(runs), 3)}
        out["variants"][name] = row
        print(json.dumps({name: row}), file=sys.stderr)
    print(json.dumps(out, indent=2))
    if args.table:
        Path(args.table).write_text(markdown(out))


def markdown(out: dict) -> str:
    """One row per variant; with several seeds the FD columns are means and the seeds' best FDs follow."""
    floor = next(iter(out["variants"].values()))["runs"][0]["floor"]

    def mean(rows, get):
        return sum(get(r) for r in rows) / len(rows)

    lines = [f"| variant ({out['budget']} each) | best FD | last FD | precision | recall | classes | "
             "class acc. | images/s | steps | best FD per seed |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, v in out["variants"].items():
        rs = v["runs"]
        acc = ("" if rs[0]["best"].get("class_accuracy") is None
               else f"{mean(rs, lambda r: r['best']['class_accuracy']):.2f}")
        per_seed = ", ".join(f"{r['best']['fd']:.1f}" for r in rs) if len(rs) > 1 else ""
        lines.append(f"| {name} | {v['mean_best_fd']:.1f} | {mean(rs, lambda r: r['last']['fd']):.1f} | "
                     f"{mean(rs, lambda r: r['best']['precision']):.2f} | "
                     f"{mean(rs, lambda r: r['best']['recall']):.2f} | "
                     f"{min(r['best']['classes_covered'] for r in rs)} | {acc} | "
                     f"{mean(rs, lambda r: r['images_per_s']):.0f} | {mean(rs, lambda r: r['steps']):.0f} | "
                     f"{per_seed} |")
    lines.append(f"| real vs real (floor) | {floor['fd']:.2f} | | {floor['precision']:.2f} | {floor['recall']:.2f} | "
                 f"{floor['classes_covered']} | | | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
