"""Training throughput: gankit's loop vs. the tutorials' loop, same architecture and batch size, one process.

The tutorial way: the 5,000 embedded digits written as MNIST IDX files, read by torchvision.datasets.MNIST
with per-sample PIL transforms (RandomRotation for dcgan, ToTensor, Normalize) through a DataLoader
(num_workers=0, shuffle=True), and a fresh noise batch (a second G forward) for the G step. The D step
detaches the fake batch (as pytorch/examples does), so the baseline is the faster reading of the tutorial.

gankit's way: `gankit.training.launch.train` itself on the same data; images/s is read from the epoch records in
metrics.jsonl, excluding the first (warm-up) epoch.

gankit and the tutorial loop alternate `--rounds` times (this host's speed swings by 30% between runs); the
medians and each round's ratio are reported. Prints one JSON object.
Usage: python benchmarks/throughput.py [--presets dcgan simple-gan] [--epochs 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import build, machine  # noqa: E402


def write_idx(root: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    """MNIST IDX files (torchvision's raw layout) holding the given uint8 images."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    n = images.shape[0]
    for split in ("train", "t10k"):
        (raw / f"{split}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, n, 28, 28) + images.reshape(n, -1).numpy().tobytes())
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, n) + labels.to(torch.uint8).numpy().tobytes())


TUTORIAL_ROTATION = {"simple-gan": 0, "dcgan": 20}  # RandomRotation(20) is part of the DCGAN tutorial


def tutorial_loop(preset: str, root: Path, steps: int, warmup: int = 3) -> float:
    """images/s of the tutorial-style loop (steps after `warmup` steps)."""
    import torchvision.transforms as T
    from torch.utils.data import DataLoader
    from torchvision.datasets import MNIST

    from gankit.config import PRESETS
    from gankit.models.registry import build

    p = PRESETS[preset]
    aug = [T.RandomRotation((-20, 20))] if TUTORIAL_ROTATION[preset] else []
    transform = T.Compose(aug + [T.ToTensor(), T.Normalize((0.5,), (0.5,))])
    ds = MNIST(str(root), train=True, download=False, transform=transform)
    loader = DataLoader(ds, batch_size=p["batch_size"], shuffle=True)
    torch.manual_seed(0)
    G, D = build(p["model"], p["z_dim"], 1, 28)
    for m in G.modules():  # the tutorial's plain torch layers, without gankit's faster deconvolution paths
        if isinstance(m, torch.nn.ConvTranspose2d):
            m.__class__ = torch.nn.ConvTranspose2d
    opt_g = torch.optim.Adam(G.parameters(), lr=p["lr"], betas=(p["beta1"], p["beta2"]))
    opt_d = torch.optim.Adam(D.parameters(), lr=p["lr"], betas=(p["beta1"], p["beta2"]))
    bce = torch.nn.BCEWithLogitsLoss()
    done, images, start = 0, 0, None
    while done < steps + warmup:
        for real, _ in loader:
            if done == warmup:
                start, images = time.perf_counter(), 0
            b = real.shape[0]
            noise = torch.randn(b, p["z_dim"])
            d_real, d_fake = D(real), D(G(noise).detach())
            loss_d = (bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))) / 2
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            noise = torch.randn(b, p["z_dim"])
            d_fake = D(G(noise))
            loss_g = bce(d_fake, torch.ones_like(d_fake))
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
            done += 1
            images += b
            if done >= steps + warmup:
                break
    return images / (time.perf_counter() - start)


def gankit_loop(preset: str, epochs: int, work: Path, exact: bool = True, **more) -> float:
    """images/s over epochs 2.. of gankit's own training on mnist5k: with the tutorial-exact flags, or the
    preset's own defaults (exact=False); `more` adds settings (cpu_bf16=True)."""
    from gankit import config
    from gankit.report.plots import read_metrics
    from gankit.training.launch import train

    # the same networks and augmentation work as the tutorial loop (the dcgan preset no longer rotates by
    # default; the widths are pinned, the dcgan D's to the tutorial's 16-32-64 channels, no EMA, and both
    # unconditional, so that the networks are compared like for like)
    sets = {"rotation": TUTORIAL_ROTATION[preset], "g_width": 1, "d_width": 1, "conditional": "false", "ema": 0,
            "d_channels": "16,32,64" if preset == "dcgan" else ""} if exact else {}
    cfg = config.resolve(preset, sets={**sets, **more}, epochs=epochs, device="cpu", eval_every=0)
    name = f"run-{preset}-{len(list(work.glob('run-*')))}"
    result = train(cfg, work / name, progress=False)
    epochs_rows = read_metrics(result.run_dir / "metrics.jsonl", kind="epoch")[1:]
    images = sum(r["images_per_s"] * r["seconds"] for r in epochs_rows)
    return images / sum(r["seconds"] for r in epochs_rows)


def gemm_peak(dtype: torch.dtype, n: int = 2048, seconds: float = 2.0) -> float:
    """GFLOP/s of an n x n matmul in dtype on this CPU (best of repeated calls for about `seconds`)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def flops_per_image(preset: str) -> float:
    """FLOPs of one training step (D step, G step, optimizers) per image, counted by FlopCounterMode on
    gankit's own step with the tutorial-exact flags."""
    from torch.utils.flop_counter import FlopCounterMode


    trainer = build(preset, {"fused": False})  # autograd: the fused step's addmm calls are not all counted
    real, y = next(iter(trainer.batches.epoch(0)))
    with FlopCounterMode(display=False) as counter:
        trainer.train_step(real, y)
    return counter.get_total_flops() / real.shape[0]


def measure(preset: str, rounds: int, epochs: int, work: Path, bf16: bool) -> dict:
    """gankit (tutorial-exact flags; the preset's defaults; with native bf16 also cpu_bf16) and the tutorial
    loop, alternated `rounds` times so that the host's swings fall on both: medians and each round's ratio."""
    steps = {"simple-gan": 300, "dcgan": 40}.get(preset, 40)
    runs: dict[str, list[float]] = {"gankit": [], "tutorial": [], "gankit_defaults": []}
    if bf16:
        runs["gankit_bf16"] = []
    for _ in range(rounds):
        runs["gankit"].append(gankit_loop(preset, epochs, work))
        runs["tutorial"].append(tutorial_loop(preset, work, steps))
        runs["gankit_defaults"].append(gankit_loop(preset, epochs, work, exact=False))
        if bf16:
            runs["gankit_bf16"].append(gankit_loop(preset, epochs, work, cpu_bf16=True))
    ratios = [ours / theirs for ours, theirs in zip(runs["gankit"], runs["tutorial"])]
    out = {f"{k}_images_per_s": round(statistics.median(v), 1) for k, v in runs.items()}
    out.update(speedup_median=round(statistics.median(ratios), 2), speedups=[round(r, 2) for r in ratios],
               runs={k: [round(x) for x in v] for k, v in runs.items()}, gankit_epochs=epochs, rounds=rounds)
    if bf16:
        out["bf16_speedup_median"] = round(statistics.median(
            [b / t for b, t in zip(runs["gankit_bf16"], runs["tutorial"])]), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["simple-gan", "dcgan"])
    parser.add_argument("--epochs", type=int, default=3, help="gankit epochs per run (the first is warm-up)")
    parser.add_argument("--rounds", type=int, default=3, help="gankit and the tutorial loop alternate this often")
    args = parser.parse_args()

    from gankit.data.loading import load
    from gankit.devices import native_bf16

    digits = load("mnist5k")
    out = {"benchmark": "throughput", "machine": machine(), "data": "mnist5k (5,000 digits)", "presets": {}}
    bf16 = native_bf16()
    fp32_peak = gemm_peak(torch.float32)
    # without native bf16 a 2048 matmul takes minutes: a 256 one shows the rate
    bf16_peak = gemm_peak(torch.bfloat16, 2048 if bf16 else 256, 2.0 if bf16 else 0.5)
    out["machine"].update(native_bf16=bf16, fp32_gemm_gflops=round(fp32_peak, 1), bf16_gemm_gflops=round(bf16_peak, 1))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_idx(work, digits.images, digits.labels)
        for preset in args.presets:
            result = measure(preset, args.rounds, args.epochs, work, bf16)
            flops = flops_per_image(preset)
            result.update(mflop_per_image=round(flops / 1e6, 2),
                          share_of_fp32_peak=round(result["gankit_images_per_s"] * flops / (fp32_peak * 1e9), 3))
            out["presets"][preset] = result
            print(json.dumps({preset: result}), file=sys.stderr)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
