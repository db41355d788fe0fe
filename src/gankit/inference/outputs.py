"""Where commands write what they make from a run (samples, exported models): the rules they share.

Never into a run directory (its own files are replaced only by training), an existing output only with
force, and temporary files left by a killed writer cleared before the next write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from gankit.data.packs import META as PACK_META
from gankit.errors import GankitError
from gankit.run.layout import CHECKPOINT, CONFIG, DETECTOR_CONFIG, GENERATOR


def run_dir_holding(path: Path, folder: bool = False) -> Path | None:
    """The run directory that `path` would be written into (links and relative paths resolved), or None.
    folder: path is a directory to write into, so it may be a run directory itself."""
    real = path.resolve()
    for parent in [real, *real.parents] if folder else real.parents:
        if (parent / CONFIG).is_file() and ((parent / GENERATOR).is_file() or (parent / CHECKPOINT).is_file()):
            return parent
    return None


def check_output(out: Path, targets: Iterable[Path], force: bool, what: str, folder: bool = False) -> None:
    """Refuse to write `out` (the files `targets`) inside a run directory, or over existing files without force;
    then clear out's orphaned temporary files. what: the kind of output, for the message ("samples")."""
    run = run_dir_holding(out, folder)
    if run is not None:
        raise GankitError(f"{out} is inside the run directory {run}: write {what} elsewhere "
                          "(a run's own files are never replaced)")
    existing = [t for t in targets if t.exists() or t.is_symlink()]
    if existing and not force:
        raise GankitError(f"{existing[0]} exists: pass --force to replace it, or choose another -o")
    real = out.resolve()
    for orphan in real.parent.glob(f".{real.name}.*.tmp"):  # left by a writer killed while writing it
        orphan.unlink(missing_ok=True)


def check_png(out: Path, what: str, keep_out_of: Iterable[Path] = ()) -> None:
    """A picture a command draws (a grid of real images, a ROC curve): a path ending in .png, never inside a
    run directory, a pack, a detector folder or a folder the command reads (keep_out_of), and never over
    anything but a file. Whether an existing PNG there may be drawn again is the caller's rule (`gankit data`
    asks for --force)."""
    if out.suffix.lower() != ".png":
        raise GankitError(f"{out}: {what} is a PNG image: give a path ending in .png (nothing was written)")
    run = run_dir_holding(out)
    if run is not None:
        raise GankitError(f"{out} is inside the run directory {run}: write {what} elsewhere")
    real = out.resolve()
    for folder in real.parents:
        for marker, kind in ((PACK_META, "pack"), (DETECTOR_CONFIG, "detector folder")):
            if (folder / marker).is_file():
                raise GankitError(f"{out} is inside the {kind} {folder}: write {what} elsewhere")
    for folder in keep_out_of:
        if real.is_relative_to(Path(folder).resolve()):
            raise GankitError(f"{out} is inside {folder}, which this command reads: write {what} elsewhere")
    if out.exists() and not out.is_file():
        raise GankitError(f"{out} exists and is not a file: choose another path for {what}")
