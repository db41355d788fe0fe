"""Hostile stops: kill `gankit train --preset simple-gan --epochs 60` at random moments, then `--resume` it.

Each trial starts a fresh run, stops it after a random 0.5 to 25 s (SIGKILL, or SIGINT as Ctrl-C in every
fourth trial), records what was on disk, then runs `gankit train --resume RUN` to the end. A trial passes when
the resume exits 0, the checkpoint says epoch 60, every step appears exactly once in metrics.jsonl, and no
temporary file is left. Prints one JSON object (the machine, each trial, the pass count).

Usage: python benchmarks/kill_resume.py [--trials 20] [--epochs 60] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from gankit.run import checkpoint, layout
from gankit.run.metrics_log import MetricsFile


def gankit(*argv: str) -> list[str]:
    return [sys.executable, "-m", "gankit", *argv]


def on_disk(run: Path) -> str:
    if not run.exists():
        return "no folder"
    if (run / layout.CHECKPOINT).exists():
        return f"checkpoint of epoch {checkpoint.load_checkpoint(run)['epoch']}"
    return "config.toml, no checkpoint" if (run / layout.CONFIG).exists() else "folder without config"


def trial(root: Path, index: int, delay: float, sig: int, epochs: int) -> dict:
    run = root / f"run{index:02d}"
    started = time.perf_counter()
    # SIGINT back to its default in the child: a shell that starts this script in the background ignores it,
    # and Python then never turns it into KeyboardInterrupt
    proc = subprocess.Popen(gankit("train", "--preset", "simple-gan", "--epochs", str(epochs), "--out", str(run),
                                   "--no-progress"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(delay)
    proc.send_signal(sig)
    _, err = proc.communicate()
    stopped = {"after_s": round(time.perf_counter() - started, 2), "signal": signal.Signals(sig).name,
               "exit": proc.returncode, "left": on_disk(run), "said": err.decode().strip().splitlines()[-1:]}
    if not run.exists():  # stopped before the folder was claimed: nothing to resume, a new run starts
        cmd = gankit("train", "--preset", "simple-gan", "--epochs", str(epochs), "--out", str(run), "--no-progress")
    else:
        cmd = gankit("train", "--resume", str(run), "--no-progress")
    finished = proc.returncode == 0  # it ended before the signal came: nothing to resume
    done = subprocess.CompletedProcess(cmd, 0, "", "") if finished else subprocess.run(cmd, capture_output=True,
                                                                                       text=True)
    steps = [r["step"] for r in MetricsFile(run / layout.METRICS).read("train")] if run.exists() else []
    final = checkpoint.load_checkpoint(run) if (run / layout.CHECKPOINT).exists() else {}
    ok = (done.returncode == 0 and final.get("epoch") == epochs and steps == list(range(1, final["step"] + 1))
          and not list(run.glob(".*.tmp")))
    result = {"trial": index, "stop": stopped, "resume_exit": done.returncode, "final_epoch": final.get("epoch"),
              "steps_logged_once": steps == list(range(1, len(steps) + 1)), "ok": ok}
    if not ok:
        result["resume_said"] = done.stderr.strip().splitlines()[-3:]
    shutil.rmtree(run, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min", type=float, default=0.5)
    parser.add_argument("--max", type=float, default=25.0)
    parser.add_argument("--signals", choices=["mixed", "kill", "int"], default="mixed",
                        help="mixed: SIGINT (Ctrl-C) every fourth trial, SIGKILL otherwise")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="gankit-kill-"))
    os.environ.setdefault("GANKIT_CACHE_DIR", str(root / "cache"))
    results = []
    for i in range(args.trials):
        use_int = args.signals == "int" or (args.signals == "mixed" and i % 4 == 3)
        sig = signal.SIGINT if use_int else signal.SIGKILL
        results.append(trial(root, i, rng.uniform(args.min, args.max), sig, args.epochs))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__},
                      "trials": results, "passed": sum(r["ok"] for r in results), "of": len(results)}))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
