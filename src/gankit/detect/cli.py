"""`gankit detect train | eval | score`: the arguments, and thin calls into the library.

Only the standard library is imported at module level: `gankit --help` builds these parsers without torch.
"""

from __future__ import annotations

import argparse
import json

from gankit import console  # the standard library only, as this module

METHOD_NAMES = ("cnn", "probe", "spectrum", "discriminator")  # gankit.detect.methods.METHODS, without torch


def add_parser(sub, parser_class: type[argparse.ArgumentParser]) -> None:
    """The `detect` command and its three actions, under gankit's subcommands `sub`."""
    d = sub.add_parser("detect", help="real or generated? train, evaluate and use fake-image detectors")
    dsub = d.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=parser_class)
    t = dsub.add_parser("train", help="train a detector on real images and fakes (or wrap a run's discriminator)")
    t.add_argument("--real", metavar="SOURCE", help="real images: mnist5k, folder:PATH, packed:DIR, ...")
    t.add_argument("--fake", action="append", default=[], metavar="FAKES",
                   help="a run directory (its generator is sampled), a folder of images or an .npy file from "
                        "`gankit generate`; repeat for several")
    t.add_argument("--method", choices=METHOD_NAMES, default="cnn",
                   help="cnn (default), probe (frozen evaluator features + logistic regression), spectrum (radial "
                        "power spectrum + logistic regression), discriminator (a run's own D: needs --run)")
    t.add_argument("--run", metavar="RUN_DIR", help="with --method discriminator: the run whose D is the detector")
    t.add_argument("--out", metavar="DETECTOR_DIR", help="the detector folder to create (default "
                                                         "runs/detect-METHOD-TIME)")
    t.add_argument("--best", action="store_true", help="sample runs' best.safetensors instead of the last generator")
    t.add_argument("-n", type=int, help="real images to train on (default: all but the held-out part); as many fakes")
    t.add_argument("--holdout", type=float, default=0.5,
                   help="share of the real images never used, kept for evaluation (default 0.5)")
    t.add_argument("--features", choices=["evaluator", "inception"], default="evaluator",
                   help="probe: the domain evaluator's features (default) or Inception-v3's (the extra)")
    t.add_argument("--evaluator", metavar="PATH", help="probe: a classifier .safetensors (default: the cached "
                                                       "evaluator of the real source)")
    t.add_argument("--batchnorm", choices=["real", "running"], default="real",
                   help="discriminator: BatchNorm statistics of the run's real images (default) or the "
                        "checkpoint's running statistics")
    t.add_argument("--epochs", type=int, help="cnn: at most this many epochs (default 20; early stopping ends "
                                              "sooner)")
    t.add_argument("--label-rule", choices=["max", "mean"], default="max",
                   help="discriminator of a conditional run: score under the most real-looking class (default) "
                        "or the mean over classes")
    _common(t)
    t.add_argument("--no-progress", action="store_true", help="no progress lines")

    e = dsub.add_parser("eval", help="measure a detector: ROC AUC, AP, accuracy (real, fake), ROC curve")
    e.add_argument("detector", metavar="DETECTOR_DIR")
    e.add_argument("--real", required=True, metavar="SOURCE", help="real images (those it trained on are left out)")
    e.add_argument("--fake", action="append", required=True, metavar="FAKES", help="as for train; repeat for several")
    e.add_argument("--best", action="store_true", help="sample runs' best.safetensors instead of the last generator")
    e.add_argument("-n", type=int, help="real images to measure on (default up to 5,000); as many fakes")
    e.add_argument("--jpeg", type=int, metavar="Q", help="JPEG-compress every test image at quality Q first")
    e.add_argument("--blur", type=float, metavar="SIGMA", help="Gaussian-blur every test image first (pixels)")
    e.add_argument("--roc", metavar="PNG", help="where the ROC curve goes (default DETECTOR_DIR/roc.png)")
    e.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    _common(e)

    s = dsub.add_parser("score", help="P(generated) for image files (not calibrated for unseen generators)")
    s.add_argument("detector", metavar="DETECTOR_DIR")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.add_argument("--json", action="store_true", help="print one JSON list instead of a line per file")
    s.add_argument("--resize", action="store_true",
                   help="resize pictures of another size than the detector's (short side, then center crop) "
                        "instead of refusing them; said on stderr (and as resized_from with --json)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="the real split and a run's noise (default 0)")
    p.add_argument("--data-dir", metavar="DIR", help="where torchvision datasets live")


def run(args: argparse.Namespace) -> None:
    """Run `gankit detect ACTION`; GankitError is left to the caller (one line, exit 2)."""
    {"train": _train, "eval": _eval, "score": _score}[args.action](args)


def _train(args: argparse.Namespace) -> None:
    from gankit.detect.training import train_detector

    settings = {"epochs": args.epochs} if args.epochs is not None else {}
    result = train_detector(args.real, args.fake, args.method, args.out, run=args.run, best=args.best, n=args.n,
                            holdout=args.holdout, seed=args.seed, data_dir=args.data_dir, evaluator=args.evaluator,
                            features=args.features, label_rule=args.label_rule, batchnorm=args.batchnorm,
                            progress=not args.no_progress,
                            **settings)
    print(result.summary())


def _eval(args: argparse.Namespace) -> None:
    from gankit.detect.evaluation import evaluate_detector

    result = evaluate_detector(args.detector, args.real, args.fake, n=args.n, seed=args.seed, best=args.best,
                               jpeg=args.jpeg, blur=args.blur, data_dir=args.data_dir, roc=args.roc or True)
    print(json.dumps(result.to_dict()) if args.json else result.table())
    for note in result.notes:
        console.note(note)


def _score(args: argparse.Namespace) -> None:
    from gankit.detect.evaluation import CAVEAT, score_files

    scores = score_files(args.detector, args.files, resize=args.resize)
    console.note(CAVEAT)
    for note in scores.notes:
        console.note(note)
    if args.json:
        print(json.dumps([{"file": f, "p_generated": round(p, 6),
                           **({"resized_from": "{}x{}".format(*scores.resized[f])} if f in scores.resized else {})}
                          for f, p in scores]))
    else:
        for file, p in scores:
            print(f"{file}\t{p:.4f}")
