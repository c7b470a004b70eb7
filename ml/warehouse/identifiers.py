"""MariaDB identifiers in SQL text, quoted by SQLAlchemy rather than by hand.

Table and database names cannot be bound parameters, so they are spliced into
the statement; SQLAlchemy's MySQL dialect quotes each part with backticks and
doubles any backtick inside it, so a name can never end its quotes early.
Values are always bound parameters, never spliced.
"""

from __future__ import annotations

from sqlalchemy.dialects import mysql

_PREPARER = mysql.dialect().identifier_preparer


def quoted(*parts: str) -> str:
    """`` `db`.`table` `` from ("db", "table"): each part quoted and escaped."""
    if not parts or not all(parts):
        raise ValueError(f"identifier parts must be non-empty, got {parts!r}")
    return ".".join(_PREPARER.quote_identifier(part) for part in parts)
