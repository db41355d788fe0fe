"""bf16 autocast against fp32 on this CPU: speed (alternated rounds, medians, share of each dtype's GEMM peak)
and quality (the best FD of a default-length run over several seeds each way), for the cases users train:
the simple-gan and dcgan presets at 28x28 on the embedded digits, and the color preset at 32x32 and 64x64 on
a folder (the simple-gan's fp32 is its hand-written fused step; bf16 takes the autograd step).

    python benchmarks/bf16.py [--folder DIR] [--rounds 3] [--steps 20] [--seeds 0,1,2] [--fd dcgan28,color32]
        [--color-kimg 60] [--cases simplegan28,dcgan28,color32,color64]

Speed: a Trainer per case and dtype (benchmarks/common.build), `steps` training steps timed after 3 warm-up
steps, fp32 and bf16 alternating `rounds` times. Quality: `gankit.train` with the preset's own settings (the
digits: the default run, 30 epochs; the folder: `color-kimg` thousand images, evaluated at the end against the
folder's label-free evaluator), cpu_bf16 false and true, per seed. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import build, machine, steps  # noqa: E402
from throughput import gemm_peak  # noqa: E402


def cases(folder: str | None) -> dict[str, tuple[str, dict]]:
    out = {"simplegan28": ("simple-gan", {}), "dcgan28": ("dcgan", {})}  # (simple-gan: fp32 is its fused step)
    if folder:
        for size in (32, 64):
            out[f"color{size}"] = ("color", {"data": f"folder:{folder}", "image_size": size, "eval_every": 0})
    return out


def flops_per_image(trainer) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    real, y = next(iter(trainer.batches.epoch(0)))
    with FlopCounterMode(display=False) as counter:
        trainer.train_step(real, y)
    return counter.get_total_flops() / real.shape[0]


def speed(preset: str, sets: dict, rounds: int, count: int) -> dict:
    """images/s of fp32 and bf16 steps, alternated; the medians, each round's ratio, the FLOPs per image."""
    trainers = {dtype: build(preset, {**sets, "cpu_bf16": dtype == "bf16"}) for dtype in ("fp32", "bf16")}
    assert trainers["bf16"].plan.autocast and not trainers["fp32"].plan.autocast, "bf16 did not turn on"
    runs: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for trainer in trainers.values():
        steps(trainer, 3)
    for _ in range(rounds):
        for dtype, trainer in trainers.items():
            start = time.perf_counter()
            steps(trainer, count)
            runs[dtype].append(count * trainer.cfg.batch_size / (time.perf_counter() - start))
    ratios = [b / f for f, b in zip(runs["fp32"], runs["bf16"])]
    return {"fp32_images_per_s": round(statistics.median(runs["fp32"]), 1),
            "bf16_images_per_s": round(statistics.median(runs["bf16"]), 1),
            "bf16_speedup_median": round(statistics.median(ratios), 2), "speedups": [round(r, 2) for r in ratios],
            "mflop_per_image": round(flops_per_image(trainers["fp32"]) / 1e6, 2),
            "batch_size": trainers["fp32"].cfg.batch_size}


def quality(preset: str, sets: dict, seeds: list[int], kimg: float, work: Path) -> dict:
    """The best FD of a run per seed, fp32 and bf16."""
    from gankit import config
    from gankit.training.launch import train

    out: dict[str, list] = {"fp32": [], "bf16": [], "fp32_seconds": [], "bf16_seconds": []}
    for seed in seeds:
        for dtype in ("fp32", "bf16"):
            more = {**sets, "cpu_bf16": dtype == "bf16", "seed": seed}
            if preset == "color":
                more.update(kimg=kimg, eval_every=10_000)  # one evaluation, at the end
            cfg = config.resolve(preset, sets=more, device="cpu")
            result = train(cfg, work / f"{preset}-{sets.get('image_size', 28)}-{dtype}-s{seed}", progress=False)
            out[dtype].append(round(result.best_fd, 3) if result.best_fd is not None else None)
            out[f"{dtype}_seconds"].append(round(result.seconds, 1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", help="a folder of color pictures (the emoji: ../shared/data/make_emoji_folder.py)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--fd", default="dcgan28,color32", help="the cases whose FD is measured ('' = none)")
    parser.add_argument("--cases", default="", help="only these cases (default: all)")
    parser.add_argument("--color-kimg", type=float, default=60.0)
    args = parser.parse_args()
    from gankit.devices import cpu_flags, native_bf16

    flags = cpu_flags()
    out: dict = {"benchmark": "bf16", "machine": machine(), "cases": {}}
    fp32_peak, bf16_peak = gemm_peak(torch.float32), gemm_peak(torch.bfloat16, 2048 if native_bf16() else 256)
    out["machine"].update(native_bf16=native_bf16(), amx_bf16="amx_bf16" in flags,
                          avx512_bf16="avx512_bf16" in flags, fp32_gemm_gflops=round(fp32_peak, 1),
                          bf16_gemm_gflops=round(bf16_peak, 1))
    seeds = [int(s) for s in args.seeds.split(",") if s]
    with tempfile.TemporaryDirectory() as tmp:
        for name, (preset, sets) in cases(args.folder).items():
            if args.cases and name not in args.cases.split(","):
                continue
            result = speed(preset, sets, args.rounds, args.steps)
            flops = result["mflop_per_image"] * 1e6
            result["fp32_share_of_fp32_peak"] = round(result["fp32_images_per_s"] * flops / (fp32_peak * 1e9), 3)
            result["bf16_share_of_bf16_peak"] = round(result["bf16_images_per_s"] * flops / (bf16_peak * 1e9), 3)
            if name in args.fd.split(","):
                result["fd"] = quality(preset, sets, seeds, args.color_kimg, Path(tmp))
            out["cases"][name] = result
            print(json.dumps({name: result}), file=sys.stderr, flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
