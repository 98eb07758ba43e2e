"""report.html: the document blocks as one self-contained page (inline CSS, figures as base64 PNG, no
scripts, nothing fetched)."""

from __future__ import annotations

import base64
import html
import re

from ssdd.report.document import Block, Card, Cards, Facts, Figure, Heading, Notes, Paragraph, Table

STYLE = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: #1f2328;
       background: #f6f8fa; margin: 0; }
main { max-width: 1240px; margin: 0 auto; padding: 20px 28px 40px; }
h1 { font-size: 24px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 28px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 16px; margin: 0 0 8px; }
h3 .sub { font-weight: normal; color: #57606a; font-size: 13px; margin-left: 6px; }
p { margin: 8px 0; }
p.small { font-size: 12px; color: #57606a; }
p.lead { font-weight: 600; margin-top: 14px; }
code { font: 12px ui-monospace, "DejaVu Sans Mono", monospace; background: #eef1f4; padding: 1px 4px;
       border-radius: 4px; overflow-wrap: anywhere; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 3px 14px; margin: 6px 0 10px; }
dl.facts dt { color: #57606a; }
dl.facts dd { margin: 0; font-variant-numeric: tabular-nums; }
.notes { background: #fff8e1; border: 1px solid #e6c65c; border-radius: 6px; padding: 8px 14px; margin: 12px 0; }
.notes ul { margin: 4px 0; padding-left: 20px; }
.cards { display: flex; flex-direction: column; gap: 16px; }
.card { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 14px 16px; min-width: 0; }
.split { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 680px); gap: 10px 24px;
         align-items: start; }
@media (max-width: 1100px) { .split { grid-template-columns: minmax(0, 1fr); } }
.scroll { overflow-x: auto; margin: 8px 0; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; background: #fff; }
caption { text-align: left; font-weight: 600; padding: 4px 0; color: #1f2328; }
th, td { padding: 4px 7px; border-bottom: 1px solid #e1e4e8; text-align: right; white-space: nowrap; }
th { background: #eef1f4; font-weight: 600; white-space: normal; vertical-align: bottom; }
th:first-child, td:first-child { text-align: left; }
tr.ref td { background: #f6f8fa; color: #444c56; font-style: italic; }
figure { margin: 10px 0; }
figure img { max-width: 100%; height: auto; display: block; }
.notes.protocol { background: #eef4fb; border-color: #8fb3de; }
figcaption { font-size: 12px; color: #57606a; margin-top: 4px; }
"""


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk: figures keep their drawn size, shrunk only to fit."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def _text(text: str) -> str:
    """Escape, then turn `code` spans into <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def table(block: Table) -> str:
    caption = f"<caption>{_text(block.caption)}</caption>" if block.caption else ""
    head = "".join(f"<th>{_text(h)}</th>" for h in block.header)
    body = []
    for i, row in enumerate(block.rows):
        css = ' class="ref"' if i < len(block.emphasis) and block.emphasis[i] else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{_text(c)}</td>" for c in row) + "</tr>")
    return (f'<div class="scroll"><table>{caption}<thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def render_block(block: Block, figures: dict[str, bytes]) -> str:
    if isinstance(block, Heading):
        anchor = f' id="{html.escape(block.anchor)}"' if block.anchor else ""
        return f"<h{block.level}{anchor}>{_text(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        return f'<p class="{"small" if block.small else "lead"}">{_text(block.text)}</p>'
    if isinstance(block, Notes):
        items = "".join(f"<li>{_text(item)}</li>" for item in block.items)
        css = "notes" + (f" {block.style}" if block.style else "")
        return f'<div class="{css}"><strong>{_text(block.title)}</strong><ul>{items}</ul></div>'
    if isinstance(block, Facts):
        rows = "".join(f"<dt>{_text(label)}</dt><dd>{_text(value)}</dd>" for label, value in block.pairs)
        return f'<dl class="facts">{rows}</dl>'
    if isinstance(block, Table):
        return table(block)
    if isinstance(block, Figure):
        data = base64.b64encode(figures[block.key]).decode("ascii")
        width, _ = png_size(figures[block.key])
        return (f'<figure><img width="{width}" alt="{html.escape(block.caption)}" '
                f'src="data:image/png;base64,{data}"><figcaption>{_text(block.caption)}</figcaption></figure>')
    if isinstance(block, Card):
        sub = f'<span class="sub">{_text(block.subtitle)}</span>' if block.subtitle else ""
        inner = "".join(render_block(b, figures) for b in block.blocks)
        if block.aside:
            aside = "".join(render_block(b, figures) for b in block.aside)
            inner = f'<div class="split"><div>{inner}</div><div>{aside}</div></div>'
        return f'<section class="card"><h3>{_text(block.title)}{sub}</h3>{inner}</section>'
    if isinstance(block, Cards):
        return '<div class="cards">' + "".join(render_block(c, figures) for c in block.cards) + "</div>"
    raise TypeError(f"unknown block {type(block).__name__}")


def render(blocks: list[Block], figures: dict[str, bytes], title: str) -> str:
    body = "\n".join(render_block(b, figures) for b in blocks)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
            f"<body><main>\n{body}\n</main></body></html>\n")
