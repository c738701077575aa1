"""Personal data in a text, found by pattern and checksum rather than by the encoder: emails,
phone numbers, IBANs, payment card numbers, national ids (US SSN, French NIR, UK NINO) and
street addresses. A number only counts where its checksum holds (IBAN mod 97, Luhn, the NIR's
key), so a long order number or a timestamp is not taken for one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}\b")
# +33 6 12 34 56 78, 06 12 34 56 78, (555) 123-4567, 555-123-4567, +1 555 123 4567, 020 7946 0958
PHONE = re.compile(
    r"(?<![\w+.])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]\d{2,4}){1,5}(?![\w-]|\.\d)"
)
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b")
CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
SSN = re.compile(r"(?<!\d)(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?!\d)")
NIR = re.compile(
    r"(?<!\d)[12][ ]?\d{2}[ ]?(?:0[1-9]|1[0-2]|[2-9]\d)[ ]?(?:\d{2}|2[AB])[ ]?\d{3}[ ]?\d{3}[ ]?(\d{2})(?!\d)"
)
NINO = re.compile(r"\b(?![DFIQUV])[A-Z](?![DFIQUVO])[A-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")
STREET_EN = (
    r"(?:Street|St\.?|Avenue|Ave\.?|Road|Rd\.?|Boulevard|Blvd\.?|Lane|Ln\.?|Drive|Dr\.?|Court|Ct\.?|Way|Place|Pl\.?"
    r"|Terrace|Close)"
)
ADDRESS = re.compile(
    rf"\b\d{{1,5}}[A-Za-z]?,?\s+(?:[A-Z][\w'-]*\s+){{1,4}}{STREET_EN}(?![\w])"
    r"|\b\d{1,4}(?:\s?(?:bis|ter))?,?\s+(?:rue|avenue|boulevard|bd|chemin|allée|place|impasse|quai|route|cours)"
    r"\s+(?:d[eu]s?\s+|de\s+la\s+|l')?[\w'-]+(?:\s+[\w'-]+){0,3}"
    r"|\b[A-ZÄÖÜ][\wäöüß-]*(?:straße|strasse|weg|gasse|platz)\s+\d{1,4}[a-z]?\b",
    re.IGNORECASE,
)
# IBAN lengths by country, for the countries most IBANs come from (ISO 13616 registry)
IBAN_LENGTHS = {
    "AT": 20, "BE": 16, "CH": 21, "CZ": 24, "DE": 22, "DK": 18, "ES": 24, "FI": 18, "FR": 27, "GB": 22,
    "GR": 27, "HU": 28, "IE": 22, "IT": 27, "LU": 20, "MC": 27, "NL": 18, "NO": 15, "PL": 28, "PT": 25,
    "RO": 24, "SE": 24, "SI": 19, "SK": 24,
}  # fmt: skip


@dataclass(frozen=True)
class Finding:
    kind: str  # email, phone, iban, card, ssn, nir, nino, address
    start: int
    end: int

    def text(self, source: str) -> str:
        return source[self.start : self.end]


def find(text: str) -> list[Finding]:
    """Every piece of personal data in `text`, in order; a span is reported once, by its most
    specific kind (an IBAN's digits are not also a phone number)."""
    found: list[Finding] = []
    for kind, pattern, valid in DETECTORS:
        for match in pattern.finditer(text):
            if valid(match) and not any(f.start < match.end() and match.start() < f.end for f in found):
                found.append(Finding(kind, match.start(), match.end()))
    return sorted(found, key=lambda f: f.start)


def redact(text: str) -> str:
    """`text` with each finding replaced by its kind: "call me on [phone]"."""
    for finding in reversed(find(text)):
        text = text[: finding.start] + f"[{finding.kind}]" + text[finding.end :]
    return text


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s)


def iban_valid(candidate: str) -> bool:
    iban = candidate.replace(" ", "").upper()
    expected = IBAN_LENGTHS.get(iban[:2])
    if expected is not None and len(iban) != expected:
        return False
    if not 15 <= len(iban) <= 34:
        return False
    number = "".join(str(int(c, 36)) for c in iban[4:] + iban[:4])
    return int(number) % 97 == 1


def luhn_valid(candidate: str) -> bool:
    digits = [int(d) for d in _digits(candidate)]
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def nir_valid(match: re.Match) -> bool:
    number = re.sub(r"\s", "", match.group(0))
    body, key = number[:13], int(number[13:])
    body = body.upper().replace("2A", "19").replace("2B", "18")  # Corsica's departments, for the key
    return key == 97 - int(body) % 97


def _phone_valid(match: re.Match) -> bool:
    digits = _digits(match.group(0))
    text = match.group(0)
    if not 9 <= len(digits) <= 15:
        return False
    if re.fullmatch(r"\d{4}[-./]\d{2}[-./]\d{2}|\d{2}[-./]\d{2}[-./]\d{4}", text.strip()):
        return False  # a date
    # international, with an area code in brackets, national (a leading 0), or North American 3-3-4
    return text.startswith(("+", "(", "0")) or re.fullmatch(r"\d{3}[-. ]\d{3}[-. ]\d{4}", text) is not None


DETECTORS = [
    ("email", EMAIL, lambda m: True),
    ("iban", IBAN, lambda m: iban_valid(m.group(0))),
    ("nir", NIR, nir_valid),
    ("card", CARD, lambda m: luhn_valid(m.group(0))),
    ("ssn", SSN, lambda m: True),
    ("nino", NINO, lambda m: True),
    ("address", ADDRESS, lambda m: True),
    ("phone", PHONE, _phone_valid),
]
