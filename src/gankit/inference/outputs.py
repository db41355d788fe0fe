"""Where commands write what they make (samples, exported models, classifiers, detectors, packs, pictures): the
one rule they share.

Never into a folder gankit made for something else - a run directory (finished or not), a detector folder, a
pack - nor over an existing output without force; a file's own name may be a link (atomic_write replaces it,
never writes through it); temporary files are cleared only where gankit can prove it made them
(gankit.files.remove_orphans). A folder of samples is replaced as a whole, and only when everything in it is
gankit's (check_folder).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from gankit.data.packs import META as PACK_META
from gankit.errors import GankitError
from gankit.files import remove_orphans
from gankit.run.layout import DETECTOR_CONFIG, is_run_dir

SAMPLE_NAME = re.compile(r"^\d{4,}\.png$")  # what generate writes into a folder: 0000.png, 0001.png, ...


def holder(path: Path, folder: bool = False) -> tuple[str, Path] | None:
    """(what it is, the folder) of the run directory, detector folder or pack that writing `path` would write
    into, or None. Links are resolved, except a file's own name (replaced, not followed). folder: path is a
    folder to write into, so it may be such a folder itself."""
    real = path.resolve() if folder else path.parent.resolve() / path.name
    for parent in ([real] if folder else []) + list(real.parents):
        if is_run_dir(parent):
            return "run directory", parent
        if (parent / DETECTOR_CONFIG).is_file():
            return "detector folder", parent
        if (parent / PACK_META).is_file():
            return "pack", parent
    return None


def check_place(out: Path, what: str, folder: bool = False) -> None:
    """Refuse `out` inside a run directory, a detector folder or a pack (see holder) with one line."""
    found = holder(out, folder)
    if found is not None:
        kind, place = found
        raise GankitError(f"{out} is inside the {kind} {place}: write {what} elsewhere (a {kind}'s files are its "
                          "own; nothing was changed)")


def check_output(out: Path, targets: Iterable[Path], force: bool, what: str, folder: bool = False) -> None:
    """Refuse to write `out` (the files `targets`) inside a run directory, a detector folder or a pack, or over
    existing files without force; then clear the temporaries a killed gankit left of it. what: the kind of
    output, for the message ("samples")."""
    check_place(out, what, folder)
    existing = [t for t in targets if t.exists() or t.is_symlink()]
    if existing and not force:
        raise GankitError(f"{existing[0]} exists: pass --force to replace it, or choose another -o")
    real = out.parent.resolve() / out.name
    remove_orphans(real.parent, real.name)  # only gankit's own, of a process that is gone


def check_folder(out: Path, force: bool, what: str) -> None:
    """A folder that a command fills with numbered PNGs (generate): new, empty, or holding only such PNGs, which
    force replaces as a whole (gankit.files.atomic_folder). Anything else in it - a user's file, a subfolder -
    is refused, force or not: gankit never deletes what it did not write."""
    check_output(out, [], force, what, folder=True)
    if not out.is_dir():
        if out.exists() or out.is_symlink():
            raise GankitError(f"{out} exists and is not a folder: choose another -o for {what}")
        return
    entries = list(out.iterdir())
    foreign = [e.name for e in entries if not SAMPLE_NAME.match(e.name) or (e.is_dir() and not e.is_symlink())]
    if foreign:
        raise GankitError(f"{out} holds {foreign[0]!r}, which is not one of gankit's numbered PNGs: write {what} "
                          "into a new or empty folder (--force replaces only a folder of gankit's samples; nothing "
                          "was changed)")
    if entries and not force:
        raise GankitError(f"{min(entries)} exists: pass --force to replace the {len(entries)} samples in {out} (as "
                          "a whole), or choose another -o")


def check_png(out: Path, what: str, keep_out_of: Iterable[Path] = ()) -> None:
    """A picture a command draws (a grid of real images, a ROC curve): a path ending in .png, never inside a
    run directory, a pack, a detector folder or a folder the command reads (keep_out_of), and never over
    anything but a file. Whether an existing PNG there may be drawn again is the caller's rule (`gankit data`
    asks for --force)."""
    if out.suffix.lower() != ".png":
        raise GankitError(f"{out}: {what} is a PNG image: give a path ending in .png (nothing was written)")
    check_place(out, what)
    real = out.parent.resolve() / out.name
    for folder in keep_out_of:
        if real.is_relative_to(Path(folder).resolve()):
            raise GankitError(f"{out} is inside {folder}, which this command reads: write {what} elsewhere")
    if out.exists() and not out.is_file():
        raise GankitError(f"{out} exists and is not a file: choose another path for {what}")
