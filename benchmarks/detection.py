"""Fake detection across generators: which detectors generalize to generators they were not trained on, and
which survive JPEG and blur.

mnist5k is split once (seeded) into three disjoint parts: 2,000 digits train the generators (and the evaluator
whose features the probe uses), 1,500 train the detectors (all of them: the test digits are a separate part),
1,500 test them. No detector or generator has seen a test digit. Generators (each a `gankit train` on the first
part, without evaluations): simple-gan; dcgan unconditional; dcgan with the preset's defaults (conditional, EMA),
at epoch 2 (early: a copy of the run taken then) and at its end (late); dcgan with the hinge loss. Fakes that
train detectors are drawn from noise seed 1, fakes that test them from seed 2.

For each generator A and method (cnn, probe, spectrum; discriminator = A's own D, nothing trained), a detector
is made from A; each is evaluated on every generator B's test fakes against the 1,500 test digits, on clean
images, after JPEG quality 75, and after Gaussian blur sigma 1. The discriminator is also measured with the
checkpoint's BatchNorm statistics and with the mean over classes, on its own generator.

Prints one JSON object; `--markdown FILE.json` prints the tables of a saved result instead.
Usage: python benchmarks/detection.py [--out DIR] [--epochs 30] [--threads 1] > detection.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from gankit.data import loading

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

METHODS = ("cnn", "probe", "spectrum", "discriminator")
CONDITIONS = {"clean": {}, "jpeg75": {"jpeg": 75}, "blur1": {"blur": 1.0}}
SPLIT = (2000, 1500, 1500)  # generators, detectors, test
KEYS = ("auc", "ap", "acc", "real_acc", "fake_acc", "oracle_acc")


def split_data(work: Path) -> dict[str, str]:
    """Three packs of mnist5k digits, disjoint, each keeping labels: gen, det, test."""
    import torch


    data = loading.load("mnist5k")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(2026))
    sources, start = {}, 0
    for name, size in zip(("gen", "det", "test"), SPLIT):
        index = order[start:start + size].sort().values
        start += size
        part = loading.ImageData(data.images[index].clone(), data.labels[index].clone(), data.classes,
                                  f"mnist5k-{name}")
        sources[name] = f"packed:{loading.write_pack(part, work / 'data' / name)}"
    return sources


def train_generators(work: Path, gen: str, epochs: int, simple_epochs: int | None) -> dict[str, dict]:
    """The runs (name -> {run, seconds}); the early dcgan is the default run copied after 2 epochs."""
    from gankit import config
    from gankit.training.launch import resume, train

    # the unconditional dcgan with seed 0 never leaves its first checkerboard on these 2,000 digits (FD ~6,000,
    # BENCHMARKS.md); seed 1 learns digits, and a detector benchmark wants generators that work
    plans = {"simple-gan": ("simple-gan", {}), "dcgan-uncond": ("dcgan", {"conditional": False, "seed": 1}),
             "dcgan-late": ("dcgan", {}), "dcgan-hinge": ("dcgan", {"loss": "hinge"})}
    runs = {}
    for name, (preset, sets) in plans.items():
        start = time.perf_counter()
        cfg = config.resolve(preset, None, {**sets, "eval_every": 0, "device": "cpu"}, data=gen,
                             epochs=2 if name == "dcgan-late"
                             else (simple_epochs if preset == "simple-gan" else epochs))
        run = work / "runs" / name
        result = train(cfg, run, progress=False)
        if name == "dcgan-late":  # the same run at epoch 2 (early) and at the end (late)
            shutil.copytree(run, work / "runs" / "dcgan-early")
            runs["dcgan-early"] = {"run": str(work / "runs" / "dcgan-early"), "epochs": 2}
            result = resume(run, {"epochs": epochs}, progress=False)
        runs[name] = {"run": str(run), "epochs": result.epochs, "seconds": round(time.perf_counter() - start, 1)}
        print(json.dumps({name: runs[name]}), file=sys.stderr)
    return runs


def measure_generators(runs: dict[str, dict], evaluator: str) -> None:
    """Each generator's FD (and the real-vs-real floor) in the gen-part evaluator's features, n = 1,000."""
    from gankit.quality.evaluate import evaluate

    for info in runs.values():
        result = evaluate(info["run"], 1000, evaluator, progress=False, record=False)
        info["fd"], info["fd_floor"] = round(result.values["fd"], 2), round(result.floor["fd"], 2)


def draw_fakes(work: Path, runs: dict[str, dict], n: int) -> dict[str, dict[str, str]]:
    """name -> {train: .npy (seed 1), test: .npy (seed 2)} of n fakes each."""
    from gankit.inference.generate import generate

    fakes = {}
    for name, info in runs.items():
        fakes[name] = {}
        for which, seed in (("train", 1), ("test", 2)):
            out = work / "fakes" / f"{name}-{which}.npy"
            generate(info["run"], n, out, seed=seed)
            fakes[name][which] = str(out)
    return fakes


def make_detectors(work: Path, sources: dict, runs: dict, fakes: dict, evaluator: str) -> dict[str, dict]:
    """(generator, method) -> detector folder; and the discriminator variants of the default run."""
    from gankit.detect.training import train_detector

    detectors, seconds = {}, {}
    for name in runs:
        for method in METHODS:
            out = work / "detectors" / f"{name}-{method}"
            start = time.perf_counter()
            if method == "discriminator":
                train_detector(method=method, run=runs[name]["run"], out=out, progress=False)
            else:
                train_detector(sources["det"], [fakes[name]["train"]], method, out, holdout=0.0,
                               evaluator=evaluator, progress=False)
            detectors[f"{name}/{method}"] = str(out)
            seconds[f"{name}/{method}"] = round(time.perf_counter() - start, 1)
            print(json.dumps({"detector": f"{name}/{method}", "seconds": seconds[f"{name}/{method}"]}),
                  file=sys.stderr)
    for variant, options in (("mean", {"label_rule": "mean"}), ("running", {"batchnorm": "running"})):
        out = work / "detectors" / f"dcgan-late-discriminator-{variant}"
        train_detector(method="discriminator", run=runs["dcgan-late"]["run"], out=out, progress=False, **options)
        detectors[f"dcgan-late/discriminator-{variant}"] = str(out)
    return {"folders": detectors, "seconds": seconds}


def evaluate_all(detectors: dict[str, str], sources: dict, fakes: dict) -> dict:
    """matrix[method][A][B][condition] = the numbers; variants on their own generator."""
    from gankit.detect.evaluation import evaluate_detector

    matrix: dict = {}
    for key, folder in detectors.items():
        a, method = key.split("/")
        targets = [a] if method.startswith("discriminator-") else list(fakes)  # variants: on their own run
        for b in targets:
            for condition, degrade in CONDITIONS.items():
                result = evaluate_detector(folder, sources["test"], [fakes[b]["test"]], n=SPLIT[2], roc=False,
                                           **degrade)
                assert result.real["left_out"] == 0 and result.real["n"] == SPLIT[2]
                matrix.setdefault(method, {}).setdefault(a, {}).setdefault(b, {})[condition] = {
                    k: round(result.values[k], 4) for k in KEYS}
        print(json.dumps({"evaluated": key}), file=sys.stderr)
    return matrix


def run_benchmark(work: Path, epochs: int, simple_epochs: int | None = None) -> dict:
    os.environ["GANKIT_CACHE_DIR"] = str(work / "cache")
    from gankit.quality import classifier

    start = time.perf_counter()
    sources = split_data(work)
    gen_data = loading.load(sources["gen"])
    evaluator = classifier.save_classifier(classifier.train_classifier(gen_data, progress=False),
                                           work / "evaluator.safetensors")
    runs = train_generators(work, sources["gen"], epochs, simple_epochs)
    measure_generators(runs, str(evaluator))
    fakes = draw_fakes(work, runs, SPLIT[2])
    made = make_detectors(work, sources, runs, fakes, str(evaluator))
    matrix = evaluate_all(made["folders"], sources, fakes)
    return {"benchmark": "detection", "machine": machine(), "split": dict(zip(("gen", "det", "test"), SPLIT)),
            "generators": runs, "detector_seconds": made["seconds"], "matrix": matrix,
            "seconds": round(time.perf_counter() - start, 1)}


# ------------------------------------------------------------------ tables for BENCHMARKS.md
def summary(result: dict) -> list[str]:
    """Per method and condition: mean AUC and accuracy on the generator trained on (diagonal) and on the others."""
    lines = ["| method | test images | seen generator: AUC / acc | unseen generators: mean AUC / mean acc | "
             "worst unseen AUC |", "|---|---|---|---|---|"]
    for method in METHODS:
        rows = result["matrix"].get(method, {})
        for condition in CONDITIONS:
            seen = [rows[a][a][condition] for a in rows]
            unseen = [rows[a][b][condition] for a in rows for b in rows[a] if b != a]
            mean = lambda cells, k: sum(c[k] for c in cells) / len(cells)  # noqa: E731
            lines.append(f"| {method} | {condition} | {mean(seen, 'auc'):.3f} / {mean(seen, 'acc'):.2f} | "
                         f"{mean(unseen, 'auc'):.3f} / {mean(unseen, 'acc'):.2f} | "
                         f"{min(c['auc'] for c in unseen):.3f} |")
    variants = {k: v for k, v in result["matrix"].items() if k.startswith("discriminator-")}
    lines += ["", "| discriminator of dcgan-late, on its own fakes | clean AUC / acc | jpeg75 AUC | blur1 AUC |",
              "|---|---|---|---|"]
    for name, rows in [("real BatchNorm statistics, max over classes (default)", result["matrix"]["discriminator"])] + [
            (k, v) for k, v in variants.items()]:
        c = rows["dcgan-late"]["dcgan-late"]
        lines.append(f"| {name} | {c['clean']['auc']:.3f} / {c['clean']['acc']:.2f} | {c['jpeg75']['auc']:.3f} | "
                     f"{c['blur1']['auc']:.3f} |")
    return lines + [""]


def markdown(result: dict) -> str:
    """The summary, then per method and condition: rows A (trained on), columns B (tested on), cells
    'AUC / acc at 0.5'."""
    gens = list(result["generators"])
    lines = summary(result)
    for condition in CONDITIONS:
        for method in METHODS:
            rows = result["matrix"].get(method, {})
            lines += [f"**{method}, {condition}** (ROC AUC / accuracy at 0.5; row: trained on, column: tested on)",
                      "", "| trained on \\ tested on | " + " | ".join(gens) + " |", "|---" * (len(gens) + 1) + "|"]
            for a in gens:
                cells = []
                for b in gens:
                    c = rows.get(a, {}).get(b, {}).get(condition)
                    text = "" if c is None else f"{c['auc']:.3f} / {c['acc']:.2f}"
                    cells.append(f"**{text}**" if a == b and text else text)  # the diagonal: seen generator
                lines.append(f"| {a} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="keep everything here (default: a temporary folder)")
    parser.add_argument("--epochs", type=int, default=30, help="dcgan epochs (the preset's default is 30)")
    parser.add_argument("--simple-epochs", type=int, help="simple-gan epochs (default: the preset's 50)")
    parser.add_argument("--threads", type=int, help="torch threads (on a shared machine, 1 avoids the threads "
                                                    "waiting for each other)")
    parser.add_argument("--markdown", metavar="FILE.json", help="print the tables of a saved result and exit")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    work = Path(args.out or tempfile.mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    print(json.dumps(run_benchmark(work, args.epochs, args.simple_epochs), indent=1))


if __name__ == "__main__":
    main()
