"""A small document model shared by the model card and the datasheet.

A document is a title and parts; a part is a heading and blocks, each a
paragraph, a bullet list or a table. Markdown is the format logged to MLflow
and written under reports/; the analytics report renders the same parts as
HTML, so the card's text exists once.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ml.markdown import frame_table


@dataclass(frozen=True)
class Table:
    """A table block with its caption."""

    frame: pd.DataFrame
    caption: str


@dataclass(frozen=True)
class Bullets:
    """A bullet-list block."""

    items: tuple[str, ...]


Block = str | Table | Bullets


@dataclass
class Part:
    """One headed part of a document."""

    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    """A titled document: the parts in order."""

    title: str
    parts: list[Part] = field(default_factory=list)

    def part(self, title: str) -> Part:
        """Append an empty part and return it."""
        self.parts.append(Part(title))
        return self.parts[-1]

    def to_markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        for part in self.parts:
            lines += [f"## {part.title}", ""]
            for block in part.blocks:
                lines += [*block_markdown(block), ""]
        return "\n".join(lines)


def block_markdown(block: Block) -> list[str]:
    """The markdown lines of one block."""
    if isinstance(block, Table):
        return [f"*{block.caption}*", "", frame_table(block.frame)]
    if isinstance(block, Bullets):
        return [f"- {item}" for item in block.items]
    return [block]


def write_text(path: Path, text: str) -> Path:
    """Write `text` to `path` atomically (temp file + rename in the same folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        # mkstemp's file is private (600); a report is for reading, as the HTML beside it.
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
