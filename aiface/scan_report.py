"""``report.html`` of an ``aiface scan``: one self-contained page a person can read.

Counts per verdict, a histogram of the probabilities, thumbnails of the
images most likely AI-generated with their faces outlined, and the files
that could not be read, with why. Thumbnails are JPEG data URIs and the
histogram inline SVG: the page loads nothing from anywhere.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter

from aiface.preprocess import DEFAULT_MAX_BYTES, ImageError, load_image
from aiface.provenance_rule import DECLARED_AI, DECLARED_WORDS
from aiface.scan_files import InputError, read_regular
from aiface.verdict import INCONCLUSIVE, LIKELY_AI, NO_SIGN, VERDICTS, percent

# The words of each verdict a row can have: the pixels' three, and the file's own declaration.
WORDS = {**VERDICTS, DECLARED_AI: DECLARED_WORDS}

BINS = 20
THUMBNAILS = 24
THUMBNAIL_SIDE = 200
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:12px}.card{width:210px;font-size:12px;word-break:break-all}
.card img{display:block;max-width:200px;max-height:200px}
"""


def _histogram(probabilities: list[float], threshold: float) -> str:
    """An inline SVG bar chart of ``BINS`` equal-width bins over [0, 1], the threshold marked."""
    counts = [0] * BINS
    for p in probabilities:
        counts[min(int(p * BINS), BINS - 1)] += 1
    width, height, bar = 600, 160, 600 / BINS
    top = max(counts) or 1
    # Each bar's count is written above it (and in its tooltip): the page is read, not hovered.
    bars = "".join(
        f'<rect x="{i * bar + 1:.1f}" y="{height - 20 - c / top * (height - 40):.1f}" width="{bar - 2:.1f}" '
        f'height="{c / top * (height - 40):.1f}" fill="#5a7bd6"><title>{i / BINS:.2f}-{(i + 1) / BINS:.2f}: {c}'
        f"</title></rect>"
        + (f'<text x="{(i + 0.5) * bar:.1f}" y="{height - 23 - c / top * (height - 40):.1f}" font-size="10" '
           f'text-anchor="middle">{c}</text>' if c else "")
        for i, c in enumerate(counts)
    )
    x = threshold * width
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="histogram of P(AI-generated)">{bars}'
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{height - 20}" stroke="#c00" stroke-dasharray="4"/>'
            f'<text x="0" y="{height - 4}" font-size="11">0</text>'
            f'<text x="{width - 10}" y="{height - 4}" font-size="11">1</text>'
            f'<text x="{min(x + 4, width - 120):.1f}" y="12" font-size="11" fill="#c00">threshold {threshold:.3f}'
            f"</text></svg>")


def thumbnail(row: dict, max_pixels: int, max_bytes: int = DEFAULT_MAX_BYTES) -> str | None:
    """The image as a JPEG data URI, at most THUMBNAIL_SIDE px, each face outlined; None when it cannot be read
    again or has changed since it was scored."""
    import hashlib

    from PIL import Image, ImageDraw

    try:
        data = read_regular(row["path"], max_bytes)
        if hashlib.sha256(data).hexdigest() != row.get("sha256"):
            return None
        image = load_image(data, max_pixels)
    except (InputError, ImageError):
        return None
    picture = Image.fromarray(image.pixels)
    scale = THUMBNAIL_SIDE / max(image.width, image.height)
    picture = picture.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    draw = ImageDraw.Draw(picture)
    for face in row.get("faces", []):
        box = face["box"]
        draw.rectangle([box["x"] * scale, box["y"] * scale, (box["x"] + box["width"]) * scale,
                        (box["y"] + box["height"]) * scale], outline=(255, 40, 40), width=2)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def faces_text(count: int) -> str:
    return f"{count} face" if count == 1 else f"{count} faces"


def render(rows: list[dict], threshold: float, max_pixels: int, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    scored = [row for row in rows if not row.get("error")]
    failed = [row for row in rows if row.get("error")]
    counts = Counter(row["verdict"] for row in scored)
    model = rows[0]["model"] if rows else {"name": "?", "version": "?"}
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' "
        "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
        f"<title>aiface scan: {len(rows)} inputs</title><style>{STYLE}</style></head><body>",
        f"<h1>aiface scan</h1><p>{len(rows)} inputs: {len(scored)} scored, {len(failed)} could not be read. "
        f"Model {esc(model['name'])} {esc(model['version'])}, threshold {percent(threshold)}.</p>",
        "<h2>Verdicts</h2><table><tr><th>verdict</th><th>images</th></tr>",
    ]
    for code in (DECLARED_AI, LIKELY_AI, INCONCLUSIVE, NO_SIGN):
        parts.append(f"<tr><td>{esc(WORDS[code]['label'])}</td><td>{counts.get(code, 0)}</td></tr>")
    parts.append("</table>")
    parts.append("<h2>P(AI-generated)</h2>" + _histogram([row["probability_fake"] for row in scored], threshold))
    likely = sorted(scored, key=lambda row: -row["probability_fake"])[:THUMBNAILS]
    parts.append(f"<h2>Most likely AI-generated ({len(likely)})</h2><div class='grid'>")
    for row in likely:
        uri = thumbnail(row, max_pixels, max_bytes)
        picture = f"<img alt='' src='{uri}'>" if uri else "<p>(the file cannot be read again, or has changed)</p>"
        parts.append(f"<div class='card'>{picture}<b>{percent(row['probability_fake'])}</b> "
                     f"{esc(WORDS[row['verdict']]['badge'])}, {faces_text(len(row['faces']))}<br>"
                     f"{esc(row['path'])}</div>")
    parts.append("</div>")
    parts.append(f"<h2>Could not be read ({len(failed)})</h2>")
    if failed:
        parts.append("<table><tr><th>file</th><th>why</th></tr>")
        parts += [f"<tr><td>{esc(row['path'])}</td><td>{esc(row['error']['message'])}</td></tr>" for row in failed]
        parts.append("</table>")
    parts.append("<p>A probability is calibrated: of the images the model scores like this, that share is "
                 "AI-generated (on photos like those it was trained on). It is not proof.</p></body></html>")
    return "\n".join(parts) + "\n"
