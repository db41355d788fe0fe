"""The GPU check: on a machine with CUDA, in a few minutes, every CUDA path gankit has, with images/s.

    python benchmarks/gpu_check.py [--device cuda] [--work DIR] [--quick]

1. NCCL: a one-process group (init, all_reduce, a DDP step), as torchrun starts it.
2. `gankit train` of the dcgan preset, 1 epoch at 28x28 on the embedded digits, bf16 autocast (amp), under
   torchrun with 1 process.
3. `gankit train` of the color preset at 64x64 on a folder of color pictures the script draws itself (no download),
   1 epoch, amp, under torchrun with 1 process.
4. generate, evaluate (the digits' classifier; FD, KID, precision/recall) and export (ONNX when installed) on CUDA.

Each step's images/s (from the run's metrics.jsonl), wall time and error, if any, are printed as one JSON object.
`--device cpu --quick` runs the same steps on a CPU (gloo instead of NCCL), to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from common import machine


def color_folder(root: Path, count: int) -> Path:
    """`count` 64x64 color pictures with transparency (discs and boxes on a clear ground), as a user's folder."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        img = Image.new("RGBA", (72, 64), (0, 0, 0, 0))
        draw = ImageDraw.Draw(img)
        color = tuple(int(c) for c in rng.integers(0, 256, 3)) + (255,)
        x, y, r = (int(v) for v in rng.integers(8, 56, 3) // [1, 1, 3])
        (draw.ellipse if i % 2 else draw.rectangle)([x - r - 4, y - r - 4, x + r + 4, y + r + 4], fill=color)
        img.save(root / f"{i:05d}.png")
    return root


def step(name: str, argv: list[str], env: dict, results: dict, torchrun: bool = False, timeout: int = 240) -> bool:
    """Run one command, record its wall time, exit code and last error line under results[name]."""
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"] if torchrun \
        else [sys.executable]
    start = time.perf_counter()
    try:
        done = subprocess.run([*launch, "-m", "gankit", *argv], env=env, capture_output=True, text=True,
                              timeout=timeout)
        code, err = done.returncode, done.stderr
    except subprocess.TimeoutExpired:
        code, err = -1, f"timed out after {timeout} s"
    errors = [line for line in err.splitlines() if "error" in line.lower() or "Traceback" in line]
    results[name] = {"seconds": round(time.perf_counter() - start, 1), "exit": code,
                     "error": (errors[-1] if errors else err.strip().splitlines()[-1:] or [""])[-1][:300]
                     if code else None}
    return code == 0


def images_per_s(run: Path) -> float | None:
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
              if '"kind": "epoch"' in line]
    return epochs[-1].get("images_per_s") if epochs else None


def nccl(device: str) -> dict:
    """A one-process group on this device: init, all_reduce, one DDP step."""
    import torch
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("GPU_CHECK_PORT", "29517"))
    backend = "nccl" if device.startswith("cuda") else "gloo"
    start = time.perf_counter()
    try:
        dist.init_process_group(backend, rank=0, world_size=1)
        x = torch.ones(4, device=device)
        dist.all_reduce(x)
        model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 1).to(device))
        model(torch.randn(16, 8, device=device)).sum().backward()
        ok = bool(x.sum().item() == 4) and model.module.weight.grad is not None
        return {"backend": backend, "ok": ok, "seconds": round(time.perf_counter() - start, 2), "error": None}
    except Exception as exc:  # noqa: BLE001 - the check reports every failure, it does not stop at one
        return {"backend": backend, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--work", type=Path, default=None, help="where the runs go (default: a new temp folder)")
    parser.add_argument("--quick", action="store_true", help="small data, for a CPU check of the script")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check-"))
    env = {**os.environ, "GANKIT_CACHE_DIR": str(work / "cache")}
    quick = ["--set", "subset=512"] if args.quick else []
    dev = ["--device", args.device, "--no-progress", "--set", "eval_every=0"]
    results: dict = {"machine": machine(), "device": args.device, "nccl": nccl(args.device)}
    digits, faces = work / "dcgan28", work / "color64"
    folder = color_folder(work / "pictures", 256 if args.quick else 2048)
    if step("train_dcgan_28", ["train", "--preset", "dcgan", "--epochs", "1", "--out", str(digits), *dev, *quick],
            env, results, torchrun=True):
        results["train_dcgan_28"]["images_per_s"] = images_per_s(digits)
    if step("train_color_64", ["train", "--data", f"folder:{folder}", "--image-size", "64", "--epochs", "1",
                               "--out", str(faces), *dev, *quick], env, results, torchrun=True):
        results["train_color_64"]["images_per_s"] = images_per_s(faces)
    step("generate", ["generate", str(digits), "-n", "256", "-o", str(work / "g.png"), "--device", args.device],
         env, results)
    n = "500" if args.quick else "2000"
    step("evaluate", ["evaluate", str(digits), "-n", n, "--json", "--device", args.device], env, results)
    step("export", ["export", str(faces), "-o", str(work / "g.onnx")], env, results)
    results["ok"] = bool(results["nccl"]["ok"]) and all(
        r["exit"] == 0 for k, r in results.items() if isinstance(r, dict) and "exit" in r)
    results["work"] = str(work)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
