"""`gankit export`: a run's generator for other runtimes, as ONNX.

The exported graph is the `gankit.load` TrainedGenerator, the module `gankit generate` samples (the EMA generator in
a run that keeps one), in eval mode (BatchNorm with its running statistics):

    inputs   z       float32 N x z_dim, standard-normal noise (N dynamic)
             labels  int64 N class indices (conditional generators only)
    output   images  float32 N x C x H x W in [-1, 1]
    metadata "gankit": JSON of the model spec (model, g_width, z_dim, channels, image_size, num_classes), the
             class names, and the epoch and step it was saved at (as generator.safetensors holds them)

torch.onnx's exporter (torch.export + onnxscript) writes it; onnxruntime runs it. Both come with the `onnx`
extra and are imported only here.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch

from gankit.errors import GankitError
from gankit.files import atomic_write
from gankit.inference.outputs import check_output
from gankit.inference.trained import TrainedGenerator, load

FORMATS = ("onnx",)
INSTALL = 'pip install -e ".[onnx]" (or: pip install onnx onnxscript onnxruntime)'
MIN_OPSET = 18  # the exporter writes opset 18 and later; below, it keeps 18 and says so in a log line
MAX_BYTES = 2**31 - 2**26  # one ONNX file is one protobuf message, at most 2 GiB, weights included


def export(run_dir: str | Path, out: str | Path | None = None, format: str = "onnx", best: bool = False,
           opset: int | None = None, force: bool = False) -> Path:
    """Write a run's generator as a file other programs run; what `gankit export` does.

    Args:
        run_dir: a gankit run directory.
        out: the file to write (.onnx); None: RUN_NAME.onnx (RUN_NAME-best.onnx with best) in the current folder.
            Never inside a run directory; an existing file is replaced only with force.
        format: "onnx" (the only one so far).
        best: export best.safetensors (the lowest FD during training) instead of the last generator.
        opset: the ONNX opset (>= 18); None: the exporter's default.
        force: replace an existing file at out.
    Returns:
        the path written. The file appears whole or not at all (written beside it, then renamed).
    Raises:
        GankitError for an unknown format, a run without that generator, an output path that cannot be
        written, or a missing `onnx` extra (naming what to install).
    """
    if format not in FORMATS:
        raise GankitError(f"unknown export format {format!r}: gankit exports {', '.join(FORMATS)}")
    onnx = _import_onnx()
    if opset is not None and not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise GankitError(f"--opset must be in [{MIN_OPSET}, {onnx.defs.onnx_opset_version()}] (the exporter writes "
                          f"opset {MIN_OPSET} or later; this onnx knows up to {onnx.defs.onnx_opset_version()}), "
                          f"got {opset}")
    generator = load(run_dir, best=best)
    out = Path(out) if out is not None else Path(f"{Path(run_dir).resolve().name}{'-best' if best else ''}.onnx")
    _check_path(out, force)
    model = to_onnx(generator, opset)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: onnx.save_model(model, tmp))
    return out


def to_onnx(generator: TrainedGenerator, opset: int | None = None):
    """The generator as an onnx.ModelProto: inputs z (and labels), output images, batch size dynamic."""
    onnx = _import_onnx()
    size = sum(t.numel() * t.element_size() for t in generator.state_dict().values())
    if size > MAX_BYTES:
        raise GankitError(f"the generator's weights take {size / 2**30:.1f} GiB: more than one ONNX file holds "
                          "(2 GiB)")
    generator = generator.cpu().eval()
    batch = torch.export.Dim("batch", min=1)
    args: tuple = (torch.zeros(2, generator.z_dim),)
    shapes: dict = {"z": {0: batch}}
    if generator.num_classes:
        args, shapes = (*args, torch.zeros(2, dtype=torch.long)), {**shapes, "labels": {0: batch}}
    with warnings.catch_warnings():  # the exporter's notes on its own internals are not the user's business
        warnings.simplefilter("ignore")
        program = torch.onnx.export(generator, args, input_names=list(shapes), output_names=["images"],
                                    opset_version=opset, dynamic_shapes=shapes, external_data=False, dynamo=True,
                                    verbose=False)
    model = program.model_proto
    written = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None)
    if opset is not None and written != opset:
        raise GankitError(f"the exporter wrote opset {written}, not {opset}: choose another --opset")
    onnx.helper.set_model_props(model, {"gankit": json.dumps(generator.info())})
    model.doc_string = (f"gankit generator: z (N x {generator.z_dim} standard-normal noise)"
                        + (f", labels (N class indices of {generator.num_classes})" if generator.num_classes else "")
                        + f" -> images (N x {' x '.join(map(str, generator.image_shape))}, in [-1, 1])")
    return model


def read_info(path: str | Path) -> dict:
    """The "gankit" metadata of an exported ONNX file (model spec, classes, epoch, step)."""
    onnx = _import_onnx()
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(props.get("gankit", "{}"))


def _check_path(out: Path, force: bool) -> None:
    """An .onnx file path that can be written, outside any run directory; existing only with force."""
    if out.is_dir():
        raise GankitError(f"output {out} is a folder: give a file name ending in .onnx")
    if out.suffix.lower() != ".onnx":
        raise GankitError(f"output {out} must end in .onnx")
    folder = next(p for p in [out.parent, *out.parent.parents] if p.exists() or p == Path(p.anchor))
    if not folder.is_dir():
        raise GankitError(f"cannot write {out}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise GankitError(f"cannot write {out}: {folder} is not writable")
    check_output(out, [out], force, "the model")


def _import_onnx():
    """onnx, after checking that the exporter's other packages are there; else one line on what to install."""
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError as exc:
        raise GankitError(f"ONNX export needs the onnx extra ({exc.name} is missing): {INSTALL}") from None
    return onnx
