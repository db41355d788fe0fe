"""Training throughput: gankit's loop vs. the tutorials' loop, same architecture and batch size, one process.

The tutorial way: the 5,000 embedded digits written as MNIST IDX files, read by torchvision.datasets.MNIST
with per-sample PIL transforms (RandomRotation for dcgan, ToTensor, Normalize) through a DataLoader
(num_workers=0, shuffle=True), and a fresh noise batch (a second G forward) for the G step. The D step
detaches the fake batch (as pytorch/examples does), so the baseline is the faster reading of the tutorial.

gankit's way: `gankit.train.train` itself on the same data; images/s is read from the epoch records in
metrics.jsonl, excluding the first (warm-up) epoch.

Prints one JSON object. Usage: python benchmarks/throughput.py [--presets dcgan simple-gan] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import sys
import tempfile
import time
from pathlib import Path

import torch


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


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
    from gankit.models import build

    p = PRESETS[preset]
    aug = [T.RandomRotation((-20, 20))] if TUTORIAL_ROTATION[preset] else []
    ds = MNIST(str(root), train=True, download=False, transform=T.Compose(aug + [T.ToTensor(), T.Normalize((0.5,), (0.5,))]))
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


def gankit_loop(preset: str, epochs: int, work: Path) -> tuple[float, float]:
    """(images/s over epochs 2.., wall seconds) of gankit's own training on mnist5k."""
    from gankit import config
    from gankit.plots import read_metrics
    from gankit.train import train

    # the same networks and augmentation work as the tutorial loop (the dcgan preset no longer rotates by
    # default; the widths are pinned, the dcgan D's to the tutorial's 16-32-64 channels, and both unconditional,
    # so that the networks are compared like for like)
    sets = {"rotation": TUTORIAL_ROTATION[preset], "g_width": 1, "d_width": 1, "conditional": "false",
            "d_channels": "16,32,64" if preset == "dcgan" else ""}
    cfg = config.resolve(preset, sets=sets, epochs=epochs, device="cpu")
    result = train(cfg, work / f"run-{preset}", progress=False)
    epochs_rows = read_metrics(result.run_dir / "metrics.jsonl", kind="epoch")[1:]
    images = sum(r["images_per_s"] * r["seconds"] for r in epochs_rows)
    return images / sum(r["seconds"] for r in epochs_rows), result.seconds


def native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX), read from its flags, never assumed."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


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

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from profile_step import build

    trainer = build(preset, {"fused": False})  # autograd: the fused step's addmm calls are not all counted
    real, y = next(iter(trainer.batches.epoch(0)))
    with FlopCounterMode(display=False) as counter:
        trainer.train_step(real, y)
    return counter.get_total_flops() / real.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["simple-gan", "dcgan"])
    parser.add_argument("--epochs", type=int, default=3, help="gankit epochs per preset (first is warm-up)")
    args = parser.parse_args()

    from gankit.data import load

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
            ours, wall = gankit_loop(preset, args.epochs, work)
            steps = {"simple-gan": 300, "dcgan": 40}.get(preset, 40)
            theirs = tutorial_loop(preset, work, steps)
            flops = flops_per_image(preset)
            out["presets"][preset] = {"gankit_images_per_s": round(ours, 1),
                                      "mflop_per_image": round(flops / 1e6, 2),
                                      "share_of_fp32_peak": round(ours * flops / (fp32_peak * 1e9), 3),
                                      "tutorial_images_per_s": round(theirs, 1),
                                      "speedup": round(ours / theirs, 2),
                                      "gankit_wall_s": round(wall, 1), "gankit_epochs": args.epochs}
            print(json.dumps({preset: out["presets"][preset]}), file=sys.stderr)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
