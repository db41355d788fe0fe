"""The HTML both report pages are made of: one style sheet, images as data URIs, values as safe text.

Everything a page shows comes from files that anyone may have edited: every value goes through `text`.
"""

from __future__ import annotations

import base64
import html
import io

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
img { max-width: 100%; } .grids { display: flex; gap: 2em; flex-wrap: wrap; }
.grids figure { margin: 0; } .grids img { width: 360px; image-rendering: pixelated; border: 1px solid #ccc; }
table { border-collapse: collapse; } td, th { padding: 2px 12px; text-align: right; border-bottom: 1px solid #eee; }
td:first-child, th:first-child { text-align: left; } .warn { color: #a40; } .ok { color: #070; }
pre { background: #f6f6f6; padding: 0.8em; font-size: 0.85em; }
"""


def img_tag(data: bytes, alt: str) -> str:
    """A PNG as an <img> that carries its own bytes (the page is one self-contained file)."""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def png_of(draw) -> bytes | None:
    """The PNG that draw(file) writes, or None when it draws nothing (draw returns False)."""
    buffer = io.BytesIO()
    return buffer.getvalue() if draw(buffer) else None


def text(value) -> str:
    """Any value read from a file, as safe HTML: floats to 4 significant digits, everything else escaped."""
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))

