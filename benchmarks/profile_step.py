"""Where one training step's time goes: torch.profiler over steady-state steps of a preset, on this machine.

The steps are gankit's own (`Trainer.train_step` on `Trainer.batches`), with the tutorial-exact flags by
default (dcgan: rotation 20, no EMA, D 16-32-64, unconditional). Prints one JSON object: milliseconds per
step by category (convolutions by layer shape, BatchNorm, activations, the optimizer, the data path, the
rest), the top operators by self time, and images/s outside the profiler for reference.

Usage: python benchmarks/profile_step.py [--preset dcgan] [--steps 30] [--set KEY=VALUE ...] [--eval]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import build, machine, steps  # noqa: E402

CATEGORIES = [  # (category, substrings of the operator name), first match wins
    ("convolution", ("conv", "mkldnn_convolution", "col2im", "im2col", "fold")),
    ("matmul", ("addmm", "mm", "bmm", "linear", "matmul")),
    ("batchnorm", ("batch_norm", "native_batch_norm")),
    ("activation", ("leaky_relu", "tanh", "sigmoid", "relu")),
    ("loss", ("binary_cross_entropy", "softplus", "log_sigmoid")),
    ("optimizer", ("adam", "_fused_adam", "foreach", "lerp")),
    ("data", ("index_select", "grid_sample", "affine_grid", "randperm", "randn", "rand", "where", "flip")),
]


def category(name: str) -> str:
    low = name.lower()
    for cat, keys in CATEGORIES:
        if any(k in low for k in keys):
            return cat
    return "other (elementwise, copies, autograd bookkeeping)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="dcgan")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--eval", action="store_true", help="also time one evaluation against an epoch of steps")
    args = p.parse_args()
    from gankit import config

    trainer = build(args.preset, config.parse_sets(args.set))
    batch = trainer.cfg.batch_size
    steps(trainer, 10)  # warm-up: oneDNN primitives, allocator
    t = time.perf_counter()
    steps(trainer, args.steps)
    plain = args.steps * batch / (time.perf_counter() - t)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        steps(trainer, args.steps, label=True)
    events = prof.key_averages(group_by_input_shape=True)
    total_ms = sum(e.self_cpu_time_total for e in events) / 1000 / args.steps
    by_cat: dict[str, float] = defaultdict(float)
    conv_layers: dict[str, float] = defaultdict(float)
    for e in events:
        ms = e.self_cpu_time_total / 1000 / args.steps
        cat = category(e.key)
        by_cat[cat] += ms
        if cat == "convolution" and ms > 0.05:
            conv_layers[f"{e.key} {e.input_shapes[:2]}"] += ms
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:25]
    out = {"benchmark": "profile_step", "machine": machine(), "preset": args.preset,
           "config": {k: getattr(trainer.cfg, k) for k in ("model", "batch_size", "rotation", "ema", "d_channels",
                                                            "conditional", "channels_last")},
           "images_per_s_unprofiled": round(plain), "ms_per_step_profiled": round(total_ms, 2),
           "ms_per_step_unprofiled": round(batch / plain * 1000, 2),
           "by_category_ms": {k: round(v, 2) for k, v in sorted(by_cat.items(), key=lambda kv: -kv[1])},
           "convolution_ops_ms": {k: round(v, 2) for k, v in sorted(conv_layers.items(), key=lambda kv: -kv[1])},
           "top_ops": [{"op": e.key, "shapes": str(e.input_shapes[:3])[:120], "calls_per_step": e.count // args.steps,
                        "self_ms_per_step": round(e.self_cpu_time_total / 1000 / args.steps, 3)} for e in top]}
    if args.eval:
        out["evaluation"] = evaluation_share(trainer, batch / plain)
    print(json.dumps(out, indent=1))


def evaluation_share(trainer, seconds_per_step: float) -> dict:
    """One evaluation of the run (eval_samples fakes against the real reference, in the evaluator's features)
    timed against an epoch of steps: the share of training time evaluations take at the run's eval_every."""
    quality, cfg = trainer.quality, trainer.cfg
    quality.measure(trainer.G_sampled, cfg.z_dim, cfg.seed, trainer.device, cfg.num_classes)  # warm-up
    t = time.perf_counter()
    quality.measure(trainer.G_sampled, cfg.z_dim, cfg.seed, trainer.device, cfg.num_classes)
    seconds = time.perf_counter() - t
    epoch = len(trainer.batches) * seconds_per_step
    return {"eval_seconds": round(seconds, 2), "eval_samples": cfg.eval_samples, "epoch_seconds": round(epoch, 2),
            "eval_every": cfg.eval_every, "share_of_training": round(seconds / (seconds + cfg.eval_every * epoch), 3)}


if __name__ == "__main__":
    main()
