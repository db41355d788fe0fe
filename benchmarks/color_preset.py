"""Settings for a folder of color pictures, chosen at equal wall-clock budgets: each candidate (a list of
config values) trains for the same time on the same folder, several seeds, against the tutorial's loop
(benchmarks/tutorial_loop.py); each is then measured with the label-free FD against the real-vs-real floor
(`gankit evaluate --json`, the folder's self-supervised evaluator), its copy rate and its health findings.

    python benchmarks/color_preset.py --data folder:EMOJI --minutes 10 --seeds 0,1 [--threads 2 --parallel 1]
        [--only tutorial,color,...] [--extra "NAME:key=value;key=value"] [--kimg K]

Jobs run `parallel` at a time with `threads` each (2 x 1 on 2 cores: every job of a round sees the same
machine). Prints one JSON object per job as it ends, then a summary with the mean over seeds; the sample grids
are left in WORK/NAME-sSEED/ to look at.
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

from common import machine

HERE = Path(__file__).resolve().parent
CANDIDATES: dict[str, list[str]] = {
    # the color preset as it ships (whatever gankit picks for a color folder with no flags)
    "color": [],
    # the digits' dcgan preset, trained on the folder
    "dcgan": ["preset=dcgan"],
}


def gankit(*args: str) -> list[str]:
    return [sys.executable, "-m", "gankit", *args]


def run_job(name: str, sets: list[str], seed: int, args, work: Path) -> dict:
    out = work / f"{name}-s{seed}"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    start = time.perf_counter()
    if name == "tutorial":
        done = subprocess.run([sys.executable, str(HERE / "tutorial_loop.py"), "--data", args.data, "--image-size",
                               str(args.image_size), "--seconds", str(args.minutes * 60), "--seed", str(seed),
                               "--out", str(out)], env=env, capture_output=True, text=True)
        info = json.loads(done.stdout.splitlines()[-1]) if done.returncode == 0 else {"error": done.stderr[-800:]}
        measure = gankit("evaluate", "--fakes", str(out / "fakes.npy"), "--real", args.data, "--json")
    else:
        preset = [s.split("=", 1)[1] for s in sets if s.startswith("preset=")]
        flags = ["--preset", preset[0]] if preset else []
        sets = [s for s in sets if not s.startswith("preset=")]
        cmd = gankit("train", "--data", args.data, "--image-size", str(args.image_size), "--seed", str(seed),
                     "--out", str(out), "--no-progress", *flags, "--set",
                     f"kimg={args.kimg}" if args.kimg else f"time_limit={args.minutes * 60}",
                     *[x for s in sets for x in ("--set", s)])
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        info = {"error": done.stderr[-800:]} if done.returncode else _run_info(out)
        measure = gankit("evaluate", str(out), "--json")
    result = {"name": name, "seed": seed, "sets": sets, **info, "wall_s": round(time.perf_counter() - start, 1)}
    if "error" not in info:
        done = subprocess.run(measure, env=env, capture_output=True, text=True)
        if done.returncode == 0:
            values = json.loads(done.stdout)
            result.update({k: values.get(k) for k in ("fd", "kid", "precision", "recall", "copy_rate")})
            floor = values.get("floor") or {}
            result["floor_fd"] = floor.get("fd")
            if result["fd"] is not None and result["floor_fd"]:
                result["fd_over_floor"] = round(result["fd"] / result["floor_fd"], 3)
        else:
            result["eval_error"] = done.stderr[-400:]
    return result


def _run_info(out: Path) -> dict:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    steps = epochs[-1]["step"] if epochs else 0
    cfg = (out / "config.toml").read_text()
    batch = int(next(line.split("=")[1] for line in cfg.splitlines() if line.startswith("batch_size")))
    return {"steps": steps, "epochs": len(epochs), "kimg": round(steps * batch / 1000, 1),
            "health": sorted({r["issue"] for r in records if r.get("kind") == "health"})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--kimg", type=float, default=0, help="train gankit's candidates for this many thousand images "
                                                          "instead of --minutes (equal data, not equal time)")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--only", default="", help="candidates to run (default: all, and tutorial)")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME:K=V;K=V", help="another candidate")
    ap.add_argument("--work", type=Path)
    args = ap.parse_args()
    candidates = {"tutorial": [], **CANDIDATES}
    for item in args.extra:
        name, _, sets = item.partition(":")
        candidates[name] = [s for s in sets.split(";") if s]
    names = [n for n in args.only.split(",") if n] or list(candidates)
    work = args.work or Path(tempfile.mkdtemp(prefix="color-preset-"))
    jobs = [(n, candidates[n], int(s)) for s in args.seeds.split(",") for n in names]
    results, running = [], []
    while jobs or running:
        while jobs and len(running) < args.parallel:
            running.append(_start(jobs.pop(0), args, work))
        time.sleep(1)
        for item in [r for r in running if not r[1].is_alive()]:
            running.remove(item)
            results.append(item[2]["result"])
            print(json.dumps(item[2]["result"]), flush=True)
    summary = {}
    for name in names:
        rows = [r for r in results if r["name"] == name and r.get("fd") is not None]
        if rows:
            summary[name] = {"runs": len(rows), **{k: _mean(rows, k) for k in ("fd", "floor_fd", "fd_over_floor",
                                                                              "copy_rate", "kimg")},
                             "sets": candidates[name]}
    print(json.dumps({"machine": machine(), "data": args.data, "image_size": args.image_size,
                      "minutes": args.minutes, "threads": args.threads, "parallel": args.parallel,
                      "work": str(work), "summary": summary}))


def _mean(rows: list[dict], key: str) -> float:
    return round(sum(r.get(key) or 0 for r in rows) / len(rows), 3)


def _start(job, args, work):
    import threading

    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", run_job(*job, args, work)))
    thread.start()
    return job, thread, box


if __name__ == "__main__":
    main()
