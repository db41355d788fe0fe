"""Color-folder throughput: the anime-faces tutorial loop against gankit on the same folder and architecture.

The tutorial way (lesson 6 of "Zero to GANs", written out plainly): torchvision's ImageFolder over the folder,
PIL Resize + CenterCrop + ToTensor + Normalize per sample, a DataLoader (batch 128, shuffle, 3 workers as the
lesson has), its DCGAN (benchmarks/tutorial_loop.networks: D conv 3->64->128->256->512 k4 s2 p1, G
ConvTranspose 128->512->256->128->64->3; one level shallower at 32x32), BCE, Adam 2e-4. Each step: D on a
real and a fake batch, G on a fresh fake batch.

gankit's way: its Trainer on the same folder (decoded once into a pack, batches on the device), the dcgan model
(the same layers: G z->512->...->64->3, D 3->64->...->512), the lesson's latent of 128, with
- `exact`: no EMA, no ADA, fp32 (the tutorial's work, gankit's loop);
- `preset`: the color preset as it ships (EMA, ADA; fp32);
- `preset_bf16`: the same with cpu_bf16=true (where the CPU has native bf16).

Rounds alternate the loops (this host's speed swings between runs); medians and per-round ratios are printed
with the FLOPs per image and the share of this CPU's GEMM peak in the dtype used.

    python benchmarks/color_throughput.py --folder EMOJI [--sizes 32 64] [--rounds 3] [--steps 12]
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
from tutorial_loop import LATENT, lesson_step, networks  # noqa: E402


def tutorial(folder: Path, size: int, count: int, warmup: int = 3) -> float:
    """images/s of the lesson's loop, data loading included (the DataLoader's workers run beside the step)."""
    import torchvision.transforms as T
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    root = Path(tempfile.mkdtemp())
    (root / "pictures").symlink_to(folder.resolve())  # ImageFolder wants class folders: one class
    stats = (0.5, 0.5, 0.5)
    ds = ImageFolder(str(root), transform=T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(),
                                                     T.Normalize(stats, stats)]))
    loader = DataLoader(ds, batch_size=128, shuffle=True, num_workers=3, drop_last=True, persistent_workers=True)
    torch.manual_seed(0)
    G, D = networks(size, 3)
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    done, start = 0, 0.0
    while done < count + warmup:
        for real, _ in loader:
            if done == warmup:
                start = time.perf_counter()
            lesson_step(G, D, opt_d, opt_g, real)
            done += 1
            if done == count + warmup:
                break
    return count * 128 / (time.perf_counter() - start)


def gankit_trainer(folder: Path, size: int, kind: str):
    sets = {"data": f"folder:{folder}", "image_size": size, "eval_every": 0, "z_dim": LATENT}
    if kind == "exact":
        sets.update(ema=0, ada=False, cpu_bf16=False, lr=2e-4, beta2=0.999)
    elif kind == "preset_bf16":
        sets.update(cpu_bf16=True)
    return build("color", sets)


def timed(trainer, count: int) -> float:
    start = time.perf_counter()
    steps(trainer, count)
    return count * trainer.cfg.batch_size / (time.perf_counter() - start)


def flops_per_image(trainer) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    real, y = next(iter(trainer.batches.epoch(0)))
    with FlopCounterMode(display=False) as counter:
        trainer.train_step(real, y)
    return counter.get_total_flops() / real.shape[0]


def measure(folder: Path, size: int, rounds: int, count: int, peaks: dict[str, float]) -> dict:
    trainers = {kind: gankit_trainer(folder, size, kind) for kind in ("exact", "preset", "preset_bf16")}
    for trainer in trainers.values():
        steps(trainer, 3)
    runs: dict[str, list[float]] = {"tutorial": [], "exact": [], "preset": [], "preset_bf16": []}
    for _ in range(rounds):
        runs["tutorial"].append(tutorial(folder, size, count))
        for kind, trainer in trainers.items():
            runs[kind].append(timed(trainer, count))
    med = {k: statistics.median(v) for k, v in runs.items()}
    flops = flops_per_image(trainers["exact"])
    bf16 = trainers["preset_bf16"].plan.autocast
    return {"images_per_s": {k: round(v, 1) for k, v in med.items()},
            "runs": {k: [round(x, 1) for x in v] for k, v in runs.items()},
            "exact_vs_tutorial": [round(e / t, 2) for e, t in zip(runs["exact"], runs["tutorial"])],
            "preset_vs_tutorial": [round(p / t, 2) for p, t in zip(runs["preset"], runs["tutorial"])],
            "preset_bf16_vs_tutorial": [round(p / t, 2) for p, t in zip(runs["preset_bf16"], runs["tutorial"])],
            "mflop_per_image": round(flops / 1e6, 1), "bf16_native": bf16,
            "exact_share_of_fp32_peak": round(med["exact"] * flops / peaks["fp32"], 3),
            "preset_bf16_share_of_peak": round(med["preset_bf16"] * flops / peaks["bf16" if bf16 else "fp32"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    from gankit.devices import native_bf16

    peaks = {"fp32": gemm_peak(torch.float32) * 1e9,
             "bf16": gemm_peak(torch.bfloat16, 2048 if native_bf16() else 256) * 1e9}
    out = {"benchmark": "color_throughput", "machine": machine(), "folder": str(args.folder),
           "gemm_gflops": {k: round(v / 1e9, 1) for k, v in peaks.items()}, "sizes": {}}
    for size in args.sizes:
        out["sizes"][size] = measure(args.folder, size, args.rounds, args.steps, peaks)
        print(json.dumps({size: out["sizes"][size]}), file=sys.stderr, flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
