"""The personal-data detector on many generated numbers: valid checksums are found, a number
one digit off is not taken for an IBAN or a card, and plain prose finds nothing."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from autan.guard import pii


def iban(country: str, body: str) -> str:
    """A valid IBAN: the check digits make the mod-97 remainder 1 (ISO 13616)."""
    number = int("".join(str(int(c, 36)) for c in body + country + "00"))
    return f"{country}{98 - number % 97:02d}{body}"


def luhn(prefix: str) -> str:
    """`prefix` with the Luhn check digit appended."""
    for check in "0123456789":
        digits = [int(d) for d in prefix + check]
        total = sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(reversed(digits)))
        if total % 10 == 0:
            return prefix + check
    raise AssertionError


def kinds(text: str) -> list[str]:
    return [f.kind for f in pii.find(text)]


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**23 - 1), st.integers(0, 22), st.integers(1, 9))
def test_ibans_are_found_and_one_changed_digit_is_not(number, position, change):
    valid = iban("FR", f"{number:023d}")
    assert kinds(f"Pay to {valid} by Friday") == ["iban"]
    spaced = " ".join(valid[i : i + 4] for i in range(0, len(valid), 4))
    assert kinds(f"IBAN: {spaced}.") == ["iban"]
    k = 4 + position
    wrong = valid[:k] + str((int(valid[k]) + change) % 10) + valid[k + 1 :]
    assert "iban" not in kinds(f"Pay to {wrong} by Friday")  # mod 97 catches every single-digit change


@settings(max_examples=300, deadline=None)
@given(st.integers(10**14, 10**15 - 1), st.integers(1, 9))
def test_card_numbers_pass_luhn_or_are_not_cards(prefix, change):
    card = luhn(str(prefix))
    assert kinds(f"card {card[:4]} {card[4:8]} {card[8:12]} {card[12:]} exp 12/29") == ["card"]
    wrong = card[:-1] + str((int(card[-1]) + change) % 10)
    assert "card" not in kinds(f"order number {wrong}")


def test_each_kind_in_its_usual_forms():
    cases = {
        "write to jean.dupont+work@example.fr today": ["email"],
        "call +33 6 12 34 56 78 after six": ["phone"],
        "call 06 12 34 56 78 after six": ["phone"],
        "my number is (555) 123-4567": ["phone"],
        "SSN 123-45-6789 on file": ["ssn"],
        "NINO AB 12 34 56 C": ["nino"],
        "she lives at 221B Baker Street, London": ["address"],
        "au 12 rue de la Paix, Paris": ["address"],
        "Hauptstraße 5 in Berlin": ["address"],
    }
    for text, expected in cases.items():
        assert kinds(text) == expected, text


def test_french_nir_needs_its_key():
    body = "1850775123456"  # sex, year, month, department, commune, order
    key = 97 - int(body) % 97
    assert kinds(f"NIR {body}{key:02d}") == ["nir"]
    assert "nir" not in kinds(f"NIR {body}{(key % 97) + 1:02d}")


def test_prose_dates_times_and_versions_are_not_personal_data():
    rng = random.Random(0)
    words = [
        "the",
        "model",
        "ran",
        "for",
        "12",
        "minutes",
        "on",
        "2",
        "cores",
        "and",
        "scored",
        "42.99",
        "on",
        "HellaSwag",
        "in",
        "2024",
    ]
    for _ in range(500):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 20)))
        assert pii.find(text) == [], text
    for text in ("released 2024-11-03", "at 12:30:45", "version 1.2.3.4", "see RFC 7231 section 6"):
        assert pii.find(text) == [], text


def test_redact_replaces_each_finding_by_its_kind():
    text = "Mail bob@example.com or ring +44 20 7946 0958."
    assert pii.redact(text) == "Mail [email] or ring [phone]."
