"""Quality of each preset with default settings on mnist5k: final and best FD, precision, recall, coverage,
wall time, and the real-vs-real floor, all in gankit's evaluator feature space.

Each preset is trained exactly as `gankit train --preset P` would (its evaluations included), in a
fresh cache directory so the first run's wall time includes training the evaluator. Then the last and the
best generator are evaluated with n = 2,500 samples, the size of the real reference half, so that run and
floor are measured at the same sample size.

Prints one JSON object. Usage: python benchmarks/quality.py [--presets dcgan simple-gan] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

KEYS = ("fd", "kid", "precision", "recall", "classes_covered", "class_kl", "spread")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["dcgan", "simple-gan"])
    parser.add_argument("--out", help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--set", action="append", default=[], help="extra config values for every preset")
    parser.add_argument("-n", type=int, default=2500)
    args = parser.parse_args()

    work = Path(args.out or tempfile.mkdtemp())
    os.environ["GANKIT_CACHE_DIR"] = str(work / "cache")  # fresh: the evaluator is trained on first need
    from gankit import config
    from gankit.quality.evaluate import evaluate
    from gankit.training.launch import train

    out = {"benchmark": "quality", "machine": machine(), "data": "mnist5k", "n": args.n, "presets": {}}
    for preset in args.presets:
        cfg = config.resolve(preset, None, config.parse_sets(args.set))
        start = time.perf_counter()
        result = train(cfg, work / preset, progress=False)
        wall = time.perf_counter() - start
        last = evaluate(result.run_dir, args.n, progress=False)
        best = evaluate(result.run_dir, args.n, best=True, progress=False)
        out["presets"][preset] = {
            "epochs": result.epochs, "wall_s": round(wall, 1), "train_s": round(result.seconds, 1),
            "last": {k: last.values.get(k) for k in KEYS}, "best": {k: best.values.get(k) for k in KEYS},
            "best_epoch": best.epoch, "floor": {k: last.floor.get(k) for k in KEYS},
            "fd_over_floor": {"last": round(last.values["fd"] / last.floor["fd"], 2),
                              "best": round(best.values["fd"] / best.floor["fd"], 2)},
            "health": result.health,
        }
        print(json.dumps({preset: out["presets"][preset]}), file=sys.stderr)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
