"""The report as a list of format-free blocks; markdown.py and html.py render the same blocks, so report.md
and report.html always print the same numbers."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Heading:
    text: str
    level: int = 2
    anchor: str = ""


@dataclass
class Paragraph:
    text: str  # `code` spans are the only markup
    small: bool = False


@dataclass
class Notes:
    items: list[str]
    title: str = "Notes"
    style: str = ""  # "" (a warning) or "protocol"


@dataclass
class Facts:
    """Label / value pairs (a card's key numbers)."""

    pairs: list[tuple[str, str]]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""
    emphasis: list[bool] = field(default_factory=list)  # per row: a reference row (no pre-training, full data)


@dataclass
class Figure:
    key: str  # the figure's file stem; its PNG bytes are in the figures mapping
    caption: str


@dataclass
class Card:
    title: str
    blocks: list[Block]
    subtitle: str = ""
    aside: list[Block] = field(default_factory=list)  # a second column in report.html, after `blocks` in report.md


@dataclass
class Cards:
    """A run of cards (report.html draws each as a panel)."""

    cards: list[Card]


Block = Heading | Paragraph | Notes | Facts | Table | Figure | Card | Cards
