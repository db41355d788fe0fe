"""Start-up cost of the command line, before and after a change: wall seconds measured from outside.

For each version of gankit's source (this checkout, and a git revision exported to a temporary folder with
`git archive`) it times, in fresh processes (`python -m gankit ...` with PYTHONPATH at that source):

    help      gankit --help
    generate  gankit generate RUN -n 64 -o x.png   (RUN: a 1-epoch simple-gan run made once, read by both)
    train     gankit train --preset simple-gan --epochs 1 --set eval_every=0 --no-progress, and its fixed
              overhead: the wall time less the training seconds it reports ("trained 1 epochs ... in X s")

and `import gankit` for each. Versions alternate within every repeat so that the machine's load falls on
both alike; the medians are reported. Prints one JSON object with the machine.

Usage: python benchmarks/startup.py [--before 406b311] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAINED = re.compile(r"trained \d+ epochs \(\d+ steps\) in ([0-9.]+) s")


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        cpu = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    import torch

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "load_average": os.getloadavg()}


def export_source(revision: str, into: Path) -> Path:
    """src/ of a git revision, as files under `into` (no worktree, nothing in the repository changes)."""
    archive = into / "src.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), revision, "src"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def timed(argv: list[str], source: Path, cwd: Path) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(source)}
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return seconds, done.stdout


def one_round(source: Path, work: Path, run: Path, index: int) -> dict[str, float]:
    gankit = [sys.executable, "-m", "gankit"]
    times = {"import_gankit": timed([sys.executable, "-c", "import gankit"], source, work)[0],
             "help": timed([*gankit, "--help"], source, work)[0],
             "generate": timed([*gankit, "generate", str(run), "-n", "64", "-o", str(work / f"x{index}.png")],
                               source, work)[0]}
    wall, out = timed([*gankit, "train", "--preset", "simple-gan", "--epochs", "1", "--set", "eval_every=0",
                       "--out", str(work / f"run{index}"), "--no-progress"], source, work)
    training = float(TRAINED.search(out).group(1))
    times.update(train_wall=wall, train_reported=training, train_overhead=wall - training)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="406b311", help="git revision to compare with (default 406b311)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "before").mkdir()
        sources = {"before": export_source(args.before, tmp / "before"), "after": REPO / "src"}
        # one run for both versions' generate, made by the older one (a newer gankit reads older runs; an
        # older one refuses config keys added after it)
        run = tmp / "run"
        timed([sys.executable, "-m", "gankit", "train", "--preset", "simple-gan", "--epochs", "1", "--set",
               "eval_every=0", "--set", "subset=512", "--out", str(run), "--no-progress"], sources["before"], tmp)
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name in sources}
        for i in range(args.repeats):
            for name, source in (sources.items() if i % 2 == 0 else reversed(sources.items())):
                work = tmp / f"{name}-{i}"
                work.mkdir()
                rounds[name].append(one_round(source, work, run, i))
        medians = {name: {key: round(statistics.median(r[key] for r in rs), 3) for key in rs[0]}
                   for name, rs in rounds.items()}
        ratio = {key: round(medians["after"][key] / medians["before"][key], 3) for key in medians["after"]}
        print(json.dumps({"machine": machine(), "before": args.before, "repeats": args.repeats,
                          "median_s": medians, "after_over_before": ratio,
                          "all_s": {name: [{k: round(v, 3) for k, v in r.items()} for r in rs]
                                    for name, rs in rounds.items()}}, indent=1))


if __name__ == "__main__":
    main()
