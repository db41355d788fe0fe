"""Folders of color pictures as users have them: transparency, palette/LA/PA/CMYK/16-bit files, skipped files
named, the size and preset chosen for a color folder, a bare folder path."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from gankit import config
from gankit.cli import main
from gankit.data import folders, loading


def _palette_with_transparency(path, size=40):
    """A palette PNG whose background index is transparent through a tRNS chunk of bytes (as the emoji are),
    and whose transparent slot holds dark green: what a plain RGB conversion shows."""
    img = Image.new("P", (size, size), 0)
    img.putpalette([0, 100, 0] + [220, 30, 30] + [0, 0, 0] * 254)
    img.paste(1, (10, 10, 30, 30))  # a red square in the middle
    img.info["transparency"] = bytes([0] + [255] * 255)
    img.save(path, transparency=bytes([0] + [255] * 255))


def _folder(tmp_path):
    root = tmp_path / "pics"
    root.mkdir()
    _palette_with_transparency(root / "a_palette.png")
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[10:30, 10:30] = (30, 30, 220, 255)  # an opaque blue square on transparent black
    Image.fromarray(rgba, "RGBA").save(root / "b_rgba.png")
    la = np.zeros((40, 40, 2), np.uint8)
    la[10:30, 10:30] = (80, 255)
    Image.fromarray(la, "LA").save(root / "c_la.png")
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(root / "e_cmyk.jpg")  # red in CMYK
    Image.fromarray(np.full((40, 40), 65535, np.uint16)).save(root / "f_16bit.png")
    (root / "g_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def test_transparency_is_composited_onto_white_and_said_once(tmp_path, capsys):
    root = _folder(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Pillow warning may escape the decoder
        code = main(["data", f"folder:{root}", "--image-size", "32", "-o", str(tmp_path / "g.png")])
    captured = capsys.readouterr()
    assert code == 0
    assert "Palette images with Transparency" not in captured.err and "Warning" not in captured.err
    lines = [line for line in captured.err.splitlines() if "have transparency" in line]
    assert len(lines) == 1 and "3 of 5 images have transparency: composited onto white" in lines[0]
    ds = loading.load(f"folder:{root}", image_size=32)
    images = ds.images.numpy()
    assert images.shape == (5, 3, 32, 32)
    palette, rgba, la, cmyk, deep = images
    assert (palette[:, 0, 0] == 255).all() and tuple(palette[:, 16, 16]) == (220, 30, 30)  # white, not green
    assert (rgba[:, 0, 0] == 255).all() and tuple(rgba[:, 16, 16]) == (30, 30, 220)
    assert (la[:, 0, 0] == 255).all() and tuple(la[:, 16, 16]) == (80, 80, 80)
    assert cmyk[0, 16, 16] > 200 and cmyk[1, 16, 16] < 60  # red
    assert (deep == 255).all()  # 16-bit white scaled, not clipped to 255 by accident of another path
    assert "skipped 1 unreadable file(s): g_broken.png" in ds.describe()


def test_another_background_or_none(tmp_path):
    root = _folder(tmp_path)
    black = loading.load(f"folder:{root}", image_size=32, background="black").images.numpy()
    assert (black[0][:, 0, 0] == 0).all() and tuple(black[0][:, 16, 16]) == (220, 30, 30)
    kept = loading.load(f"folder:{root}", image_size=32, background="none").images.numpy()
    assert tuple(kept[0][:, 0, 0]) == (0, 100, 0)  # the alpha dropped: the palette's own color
    tinted = loading.load(f"folder:{root}", image_size=32, background="#336699").images.numpy()
    assert tuple(tinted[1][:, 0, 0]) == (0x33, 0x66, 0x99)
    with pytest.raises(Exception, match="background must be a color"):
        config.resolve(sets={"background": "plaid"})


def test_a_gray_folder_with_alpha_stays_gray_on_white(tmp_path):
    root = tmp_path / "gray"
    root.mkdir()
    for i in range(3):
        la = np.zeros((30, 30, 2), np.uint8)
        la[5:25, 5:25] = (40 * i, 255)
        Image.fromarray(la, "LA").save(root / f"{i}.png")
    ds = loading.load(f"folder:{root}", image_size=28)
    assert ds.images.shape[1] == 1 and int(ds.images[0, 0, 0, 0]) == 255


def test_skipped_files_are_named_first_few_and_counted(tmp_path):
    root = tmp_path / "some"
    root.mkdir()
    Image.new("RGB", (20, 20), "red").save(root / "good.png")
    for i in range(7):
        (root / f"bad{i}.png").write_bytes(b"nope")
    ds = loading.load(f"folder:{root}", image_size=28)
    line = next(n for n in ds.notes if n.startswith("skipped"))
    assert line == "skipped 7 unreadable file(s): bad0.png, bad1.png, bad2.png, bad3.png, bad4.png and 2 more"


def test_a_color_folder_gets_the_color_preset_and_a_square_size(tmp_path):
    root = _folder(tmp_path)
    notes: list[str] = []
    cfg = config.resolve(data=f"folder:{root}", notes=notes)
    assert (cfg.preset, cfg.image_size) == ("color", 32)
    assert len(notes) == 1 and "holds color pictures (about 40x40)" in notes[0] and "32x32" in notes[0]
    named = config.resolve("dcgan", data=f"folder:{root}", notes=(kept := []))
    assert (named.preset, named.image_size) == ("dcgan", 32) and "at 32x32" in kept[0]
    sized = config.resolve(data=f"folder:{root}", image_size=64, notes=(said := []))
    assert (sized.preset, sized.image_size) == ("color", 64) and "64x64" not in said[0]
    gray = tmp_path / "gray"
    gray.mkdir()
    Image.new("L", (30, 30), 128).save(gray / "x.png")
    plain = config.resolve(data=f"folder:{gray}", notes=(none := []))
    assert (plain.preset, plain.image_size, none) == ("dcgan", 28, [])


def test_a_pack_trains_at_its_own_size_without_image_size(tmp_path):
    root = _folder(tmp_path)
    dest = loading.pack(f"folder:{root}", tmp_path / "pack", image_size=32)
    assert config.resolve(data=f"packed:{dest}").image_size == 32


def test_a_bare_folder_path_is_taken_as_a_folder_and_a_typo_gets_a_did_you_mean(tmp_path, monkeypatch, capsys):
    _folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    notes: list[str] = []
    cfg = config.resolve(data="./pics", notes=notes)
    assert cfg.data == "folder:./pics" and notes[0] == "taking ./pics as folder:./pics"
    assert main(["data", "./pics", "-o", str(tmp_path / "d.png")]) == 0
    assert "taking ./pics as folder:./pics" in capsys.readouterr().err
    assert main(["train", "--data", "mnist5", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean mnist5k?" in err
    assert main(["data", "./nowhere"]) == 2
    assert "no folder ./nowhere exists; a folder of images is folder:PATH" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_palette_with_alpha_is_composited_too():
    pa = Image.new("PA", (8, 8))  # no file format Pillow writes holds PA: the decoder's step on the image
    pa.putpalette([0, 200, 0] * 256)
    pa.putdata([(0, 0)] * 32 + [(0, 255)] * 32)  # top half transparent, bottom half opaque green
    flat, transparent = folders._flatten(pa, (255, 255, 255))
    array = np.asarray(flat)
    assert transparent and flat.mode == "RGB"
    assert tuple(array[0, 0]) == (255, 255, 255) and tuple(array[7, 0]) == (0, 200, 0)


def test_decoder_keeps_no_transparency_flag_for_opaque_files(tmp_path):
    Image.new("RGB", (20, 20), "blue").save(tmp_path / "o.png")
    image, transparent = folders.decode_file(tmp_path / "o.png", 16)
    assert not transparent and image.shape == (3, 16, 16)


def test_a_crafted_pack_json_neither_crashes_nor_floods_the_notes(tmp_path):
    meta = {"count": 12, "skipped": 2, "transparent": 3, "background": "white"}
    hostile = [{"skipped": "5"}, {"skipped": [1]}, {"skipped": -3}, {"skipped": 10**30}, {"skipped_files": 7},
               {"skipped_files": ["x" * 10**7]}, {"skipped_files": "y" * 10**6}, {"skipped_files": [[1], None]},
               {"skipped_files": ["a\nb\x1b[31m"]}, {"transparent": "z" * 10**7}, {"transparent": [1]},
               {"background": "b" * 10**7}, {"background": 5}, {"background": "white\n\x1b[2J"}]
    for change in hostile:
        notes = folders.decoding_notes({**meta, **change})
        assert all(len(n) < 400 and n.isprintable() for n in notes), change
    assert folders.decoding_notes({**meta, "skipped_files": ["a\nb.png"]})[0] == \
        "skipped 2 unreadable file(s): a\\nb.png and 1 more"
    assert folders.decoding_notes({"count": 4, "skipped": 3})[0] == "skipped 3 unreadable file(s)"  # no names kept


def _crafted_tiff(path, tag, offset, value):
    """A small TIFF with one field of one IFD entry of `tag` overwritten (offset 2: its type, 8: its value)."""
    import io
    import struct

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, format="TIFF")
    data = bytearray(buf.getvalue())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for k in range(struct.unpack_from("<H", data, ifd)[0]):
        if struct.unpack_from("<H", data, ifd + 2 + 12 * k)[0] == tag:
            struct.pack_into("<H", data, ifd + 2 + 12 * k + offset, value)
    path.write_bytes(bytes(data))


def test_a_file_that_makes_the_decoder_raise_anything_is_one_skipped_file(tmp_path, capsys):
    root = tmp_path / "tiffs"
    root.mkdir()
    _crafted_tiff(root / "crafted.tif", 273, 2, 2)  # StripOffsets typed ASCII: Pillow raises TypeError on load
    _crafted_tiff(root / "samples.tif", 277, 8, 60000)  # SamplesPerPixel 60000: Pillow logs an error, then refuses
    Image.new("RGB", (8, 8), "blue").save(root / "good.png")
    assert folders.decode_file(root / "crafted.tif", 8) is None
    assert main(["data", str(root), "--image-size", "8", "-o", str(tmp_path / "g.png")]) == 0
    assert "skipped 2 unreadable file(s): crafted.tif, samples.tif" in capsys.readouterr().out
    # Pillow's log line would reach stderr through Python's last-resort handler (pytest installs its own)
    said = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from gankit.data import "
                           "folders; folders.decode_file(Path(sys.argv[1]), 8)", str(root / "samples.tif")],
                          capture_output=True, text=True, timeout=120)
    assert said.returncode == 0 and said.stderr == ""


def test_a_bare_folder_path_packs_and_names_its_grid_as_folder_does(tmp_path, monkeypatch, capsys):
    root = _folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["data", "./pics", "--image-size", "32"]) == 0  # the grid: data_folder.png, not data_./pics.png
    assert (tmp_path / "data_folder.png").is_file()
    assert main(["data", "./pics", "--pack", "p", "--background", "black", "-o", "p.png"]) == 0
    out = capsys.readouterr().out
    assert "composited onto black" in out and "skipped 1 unreadable file(s): g_broken.png" in out
    assert np.asarray(np.load(tmp_path / "p" / "images.npy"))[1][:, 0, 0].tolist() == [0, 0, 0]
    assert main(["data", "./pics", "-o", "pics/grid.png"]) == 2  # never into the folder it reads
    assert not (root / "grid.png").exists()
    assert main(["data", "pics/a_palette.png"]) == 2
    assert "pics/a_palette.png is not a folder" in capsys.readouterr().err
    assert main(["data", ""]) == 2  # an empty source is no folder (not the current one)
    assert "unknown data source ''" in capsys.readouterr().err


def test_a_background_outside_0_to_255_is_refused():
    for bad in ("rgb(300, 0, 0)", "rgb(99999999999999999999999, 0, 0)"):
        with pytest.raises(Exception, match="background must be a color"):
            config.resolve(sets={"background": bad})


def test_a_16_bit_transparent_gray_level_is_composited(tmp_path):
    deep = np.full((8, 8), 1000, np.uint16)
    deep[:4] = 65535
    Image.fromarray(deep).save(tmp_path / "key.png", transparency=1000)  # a tRNS gray level
    image, transparent = folders.decode_file(tmp_path / "key.png", 8, "black")
    assert transparent and image[0, 0, 0] == 255 and image[0, 7, 0] == 0  # the keyed level is the background


def test_one_color_spelled_two_ways_is_one_cached_pack(tmp_path):
    root = _folder(tmp_path)
    first = loading.load(f"folder:{root}", image_size=16, background="white")
    again = loading.load(f"folder:{root}", image_size=16, background="#FFFFFF")
    assert again.pack == first.pack and "reused" in again.cache
    other = loading.load(f"folder:{root}", image_size=16, background="rgb(0, 0,0)")
    assert other.pack != first.pack and first.pack.exists()  # another color: its own pack beside, none deleted
