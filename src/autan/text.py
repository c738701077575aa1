"""Text every layer can carry: what a client sends is kept, except what no store can hold.

JSON lets a client send a lone UTF-16 surrogate ("\\ud800"), which no UTF-8 encoder accepts,
and a NUL, which PostgreSQL's text type refuses. Both become U+FFFD, the replacement character,
at the edge (request schemas, database columns), so a message holding one is saved, shown and
tokenized like any other, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def clean(text: str) -> str:
    """`text` with NULs and lone surrogates replaced by U+FFFD; everything else as it was."""
    return _UNSTORABLE.sub(REPLACEMENT, text)
