"""report.md: the document blocks as GitHub Markdown; figures are PNG files in a folder beside it."""

from __future__ import annotations

from ssdd.report.document import Block, Card, Cards, Facts, Figure, Heading, Notes, Paragraph, Table


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ")


def table(block: Table) -> str:
    lines = [f"*{block.caption}*", ""] if block.caption else []
    lines.append("| " + " | ".join(_escape(h) for h in block.header) + " |")
    lines.append("|" + "|".join(" --- " if i == 0 else " ---: " for i in range(len(block.header))) + "|")
    lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in block.rows]
    return "\n".join(lines)


def render_block(block: Block, figure_dir: str, level_shift: int = 0) -> str:
    if isinstance(block, Heading):
        return "#" * (block.level + level_shift) + " " + block.text
    if isinstance(block, Paragraph):
        return block.text
    if isinstance(block, Notes):
        return f"**{block.title}**\n\n" + "\n".join(f"- {item}" for item in block.items)
    if isinstance(block, Facts):
        return "\n".join(f"- **{label}**: {value}" for label, value in block.pairs)
    if isinstance(block, Table):
        return table(block)
    if isinstance(block, Figure):
        return f"![{block.key}]({figure_dir}/{block.key}.png)\n\n*{block.caption}*"
    if isinstance(block, Card):
        title = f"### {block.title}" + (f" ({block.subtitle})" if block.subtitle else "")
        inner = [render_block(b, figure_dir, level_shift + 1) for b in [*block.blocks, *block.aside]]
        return "\n\n".join([title, *inner])
    if isinstance(block, Cards):
        return "\n\n".join(render_block(card, figure_dir, level_shift) for card in block.cards)
    raise TypeError(f"unknown block {type(block).__name__}")


def render(blocks: list[Block], figure_dir: str) -> str:
    """The whole report; `figure_dir` is the figures' folder relative to report.md."""
    return "\n\n".join(render_block(b, figure_dir) for b in blocks) + "\n"
