"""Scaling out: processes, evaluation during training, and data bigger than memory. Prints one JSON object.

Parts (all by default; pick with --parts):
  procs    dcgan preset on the embedded digits: steady images/s (epochs after the first, from metrics.jsonl) for
           1 process (all cores), 1 process with 1 thread, and 2 processes under torchrun (gloo, 1 thread each),
           alternated over --reps launches.
  eval     the evaluation a run makes during training (eval_samples images: sample, embed, compare with the
           reference), timed under torchrun with 2 processes of 1 thread: on rank 0 while rank 1 waits (what
           gankit does), and sharded (each rank samples and embeds half; features gathered to rank 0).
  folder   a folder of --images 64x64 RGB PNGs written here: the first load (decode + pack into the cache), the
           second load (the cache), then training images/s (dcgan at 64x64, --seconds per run) from the mapped
           pack against the same images in memory, alternated.
  gpu      images/s on each visible GPU count (1 and all) when CUDA is there; otherwise "not available".

Usage: python benchmarks/scaling.py [--parts procs eval folder gpu] [--images 50000] [--reps 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gankit.data import loading

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def _env(cache: Path, threads: int | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env["GANKIT_CACHE_DIR"] = str(cache)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _steady(run: Path) -> float:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["images_per_s"] for r in rows if r.get("kind") == "epoch" and r["epoch"] > 1]
    return statistics.median(speeds)


def procs(work: Path, reps: int, epochs: int) -> dict:
    """dcgan images/s: 1 process, 1 process of 1 thread, 2 processes of 1 thread (torchrun, gloo)."""
    args = ["-m", "gankit", "train", "--preset", "dcgan", "--epochs", str(epochs), "--set", "eval_every=0",
            "--no-progress", "--device", "cpu"]
    ways = {"1 process, all threads": ([sys.executable], None), "1 process, 1 thread": ([sys.executable], 1),
            "2 processes, 1 thread each": ([*TORCHRUN, "--nproc_per_node=2"], 1)}
    found: dict[str, list[float]] = {k: [] for k in ways}
    for rep in range(reps):
        for way, (name, (launch, threads)) in enumerate(ways.items()):
            run = work / f"procs-{rep}-{way}"
            done = subprocess.run([*launch, *args, "--out", str(run)], env=_env(work / "cache", threads),
                                  capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(done.stderr[-2000:])
            found[name].append(_steady(run))
    return {k: {"images_per_s": round(statistics.median(v), 1), "runs": [round(x) for x in v]}
            for k, v in found.items()}


EVAL_WORKER = r"""
import json, sys, time, torch, torch.distributed as dist
from gankit import config
from gankit.data import loading
from gankit.quality import evaluator as ev, metrics
from gankit.devices import Rows, World, from_env
from gankit.training.distributed import start
from gankit.models.registry import build, class_labels
from gankit.inference.sampling import sample
world = from_env(); device = start(world, torch.device('cpu'))
cfg = config.resolve('dcgan')
ds = loading.load('mnist5k')
evaluator = ev.evaluator_for(ds, progress=False); reference = ev.reference_for(ds, evaluator)
n = metrics.comparable_n(reference, cfg.eval_samples)
torch.manual_seed(0)
G, _ = build(cfg.model, cfg.z_dim, 1, 28, 10, cfg.d_norm, cfg.spectral_norm, 1.0, 1.0, ())
G.eval()
labels = class_labels(n, 10, prior=reference.class_prior)
def timed(fn):
    dist.barrier(); t = time.perf_counter(); fn(); dist.barrier(); return time.perf_counter() - t
def rank0():
    if world.main:
        metrics.measure(lambda k: sample(G, k, cfg.z_dim, 0, labels=labels), evaluator, reference, n, 10, labels)
def sharded():
    rows = Rows.of(world, n)
    z = torch.randn(n, cfg.z_dim, generator=torch.Generator().manual_seed(0))[rows.start:rows.stop]
    with torch.no_grad():
        images = G(z, labels[rows.start:rows.stop])
    feats, logits = evaluator.embed(images)
    parts_f = [torch.empty_like(feats) for _ in range(world.size)]
    parts_l = [torch.empty_like(logits) for _ in range(world.size)]
    dist.all_gather(parts_f, feats); dist.all_gather(parts_l, logits)
    if world.main:
        metrics.compare(reference, torch.cat(parts_f), torch.cat(parts_l).argmax(1), 10)
runs = {'rank 0 alone': [], 'sharded': []}
for rep in range(3):
    runs['rank 0 alone'].append(timed(rank0)); runs['sharded'].append(timed(sharded))
if world.main:
    print(json.dumps({'n': n, **{k: sorted(v)[1] for k, v in runs.items()}}))
dist.destroy_process_group()
"""


def evaluation(work: Path) -> dict:
    """Seconds of one training-time evaluation on 2 processes of 1 thread: rank 0 alone vs sharded."""
    script = work / "eval_worker.py"
    script.write_text(EVAL_WORKER)
    done = subprocess.run([*TORCHRUN, "--nproc_per_node=2", str(script)], env=_env(work / "cache", 1),
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"eval_samples": result["n"], "seconds_rank0_alone": round(result["rank 0 alone"], 2),
            "seconds_sharded": round(result["sharded"], 2)}


def write_folder(root: Path, count: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    base = rng.integers(0, 256, (64, 3, 64, 64), dtype=np.uint8)
    for i in range(count):
        image = np.roll(base[i % 64], i // 64, axis=2).transpose(1, 2, 0)
        Image.fromarray(np.ascontiguousarray(image), "RGB").save(root / f"{i:06d}.png")


def folder(work: Path, count: int, seconds: float, reps: int) -> dict:
    """Decode/pack time, reload time, and packed vs in-memory training images/s."""
    from gankit import config
    from gankit.training.trainer import Trainer

    root = work / "faces"
    t = time.perf_counter()
    write_folder(root, count)
    written = time.perf_counter() - t
    os.environ["GANKIT_CACHE_DIR"] = str(work / "cache")
    t = time.perf_counter()
    first = loading.load(f"folder:{root}", image_size=64)
    decode = time.perf_counter() - t
    t = time.perf_counter()
    again = loading.load(f"folder:{root}", image_size=64)
    reload = time.perf_counter() - t
    assert "reused" in again.cache and first.images.shape == (count, 3, 64, 64)
    speeds: dict[str, list[float]] = {"packed (mapped)": [], "in memory": []}
    pipeline: dict[str, list[float]] = {"packed (mapped)": [], "in memory": []}
    for rep in range(reps):
        for name in speeds:
            cfg = config.resolve("dcgan", data=f"folder:{root}", image_size=64, epochs=1, device="cpu",
                                 eval_every=0, time_limit=seconds, sample_count=8)
            run = work / f"fold-{rep}-{name[:2]}"
            run.mkdir()
            trainer = Trainer(cfg, run, progress=False)
            if name == "in memory":
                trainer.batches.images = trainer.batches.images.clone()  # the same images, read into memory
            trainer.fit()
            epoch = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"epoch"' in x]
            speeds[name].append([r for r in epoch if r["kind"] == "epoch"][0]["images_per_s"])
            pipeline[name].append(_pipeline(trainer.batches))
    packed, memory = (statistics.median(v) for v in speeds.values())
    return {"images": count, "seconds_to_write_pngs": round(written, 1), "first_load_seconds": round(decode, 1),
            "second_load_seconds": round(reload, 2), "pack_bytes": int(first.images.numel()),
            "train_images_per_s": {k: [round(x, 1) for x in v] for k, v in speeds.items()},
            "packed_over_in_memory": round(packed / memory, 3),
            "data_path_images_per_s_first_and_second_epoch": pipeline}


def _pipeline(batches) -> list[float]:
    """images/s of the data path alone (gather, to float, augment: the batches a step gets), over two whole
    epochs: the first maps the pack's pages in, the second is the steady state."""
    speeds = []
    for epoch in (98, 99):
        t, seen = time.perf_counter(), 0
        for x, _ in batches.epoch(epoch):
            seen += x.shape[0]
        speeds.append(round(seen / (time.perf_counter() - t)))
    return speeds


def gpu(work: Path, epochs: int) -> dict:
    if not torch.cuda.is_available():
        return {"available": False}
    count = torch.cuda.device_count()
    out = {"available": True, "devices": count, "name": torch.cuda.get_device_name()}
    args = ["-m", "gankit", "train", "--preset", "dcgan", "--epochs", str(epochs), "--set", "eval_every=0",
            "--no-progress", "--device", "cuda"]
    for procs_ in sorted({1, count}):
        launch = [sys.executable] if procs_ == 1 else [*TORCHRUN, f"--nproc_per_node={procs_}"]
        run = work / f"gpu-{procs_}"
        done = subprocess.run([*launch, *args, "--out", str(run)], env=_env(work / "cache", None),
                              capture_output=True, text=True)
        out[f"{procs_} GPU images/s"] = _steady(run) if done.returncode == 0 else done.stderr[-500:]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", default=["procs", "eval", "folder", "gpu"])
    p.add_argument("--images", type=int, default=50_000)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=40.0, help="training seconds per folder run")
    args = p.parse_args()
    out = {"machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "procs" in args.parts:
            out["procs"] = procs(work, args.reps, args.epochs)
        if "eval" in args.parts:
            out["eval"] = evaluation(work)
        if "folder" in args.parts:
            out["folder"] = folder(work, args.images, args.seconds, args.reps)
        if "gpu" in args.parts:
            out["gpu"] = gpu(work, args.epochs)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
