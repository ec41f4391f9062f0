"""Identifiers that say "this is the same customer": email addresses, domains, phone numbers
and tax ids, each in one normal form. Pure.

Tax ids are checked where their scheme has a check digit (NZBN: GS1 mod 10; ABN: mod 89;
ACN: mod 10; NZ IRD/GST number: mod 11). A number that fails its check is not an id: it
never links two records (ADR 0016).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Addresses at these domains say nothing about which organisation a person belongs to.
FREE_MAIL_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "hotmail.co.nz",
        "live.com",
        "msn.com",
        "yahoo.com",
        "yahoo.co.nz",
        "yahoo.com.au",
        "icloud.com",
        "me.com",
        "aol.com",
        "proton.me",
        "protonmail.com",
        "fastmail.com",
        "gmx.com",
        "xtra.co.nz",
        "slingshot.co.nz",
        "bigpond.com",
        "bigpond.net.au",
        "optusnet.com.au",
    }
)

_SCHEME_ALIASES = {
    "nzbn": "nzbn",
    "nz_nzbn": "nzbn",
    "abn": "abn",
    "au_abn": "abn",
    "acn": "acn",
    "au_acn": "acn",
    "ird": "nz_ird",
    "nz_ird": "nz_ird",
    "gst": "nz_ird",
    "nz_gst": "nz_ird",
}
_SCHEME = re.compile(r"^[a-z][a-z0-9_]{1,19}$")
_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]")


def normalise_email(value: str | None) -> str | None:
    """Trimmed, Unicode NFC and lower-cased; plus-addressing is kept (a distinct address).

    Lower-casing is simple case folding: full folding (`str.casefold`) turns `ß` into `ss`
    and would make two different mailboxes one. Text without an `@` is not an address.
    """
    if value is None:
        return None
    text = unicodedata.normalize("NFC", unicodedata.normalize("NFC", value).strip().lower())
    local, at, domain = text.rpartition("@")
    return text if at and local and domain else None


def normalise_domain(value: str | None) -> str | None:
    """A host name in lower case, without scheme, path, `www.` or a trailing dot."""
    if value is None:
        return None
    text = unicodedata.normalize("NFC", value).strip().lower()
    text = text.split("://", 1)[-1].split("/", 1)[0].split("@")[-1].strip().rstrip(".")
    while text.startswith("www."):
        text = text[4:]
    return text if "." in text and " " not in text else None


def domain_of(email: str | None) -> str | None:
    """The domain of a normalised email address."""
    if not email or "@" not in email:
        return None
    return normalise_domain(email.rpartition("@")[2])


def is_free_mail(domain: str | None) -> bool:
    """Whether a domain is a public mailbox provider (no evidence of an organisation)."""
    return domain in FREE_MAIL_DOMAINS


def normalise_phone(value: str | None) -> str | None:
    """The digits of a phone number; fewer than seven digits is not a number."""
    if value is None:
        return None
    digits = "".join(c for c in value if c.isascii() and c.isdigit())
    return digits if len(digits) >= 7 else None


def phone_key(digits: str | None) -> str | None:
    """The last nine digits: `+64 21 123 4567` and `021 123 4567` agree."""
    return digits[-9:] if digits else None


# -- tax ids ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaxId:
    """A business or tax number under its scheme, e.g. `nzbn:9429041234563`."""

    scheme: str
    number: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.number}"


def gs1_check_digit(body: str) -> int:
    """The GS1 mod-10 check digit of the digits before it (weights 3, 1, ... from the right)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def is_valid_nzbn(digits: str) -> bool:
    """An NZBN: a GS1 global location number, 13 digits with a mod-10 check digit."""
    if len(digits) != 13 or not digits.isdigit():
        return False
    return gs1_check_digit(digits[:12]) == int(digits[12])


_ABN_WEIGHTS = (10, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19)


def is_valid_abn(digits: str) -> bool:
    """An Australian Business Number: 11 digits; with 1 taken from the first, the weighted
    sum is a multiple of 89."""
    if len(digits) != 11 or not digits.isdigit() or digits[0] == "0":
        return False
    values = [int(digits[0]) - 1, *(int(d) for d in digits[1:])]
    return sum(w * v for w, v in zip(_ABN_WEIGHTS, values, strict=True)) % 89 == 0


def is_valid_acn(digits: str) -> bool:
    """An Australian Company Number: 9 digits, the last a weighted mod-10 complement."""
    if len(digits) != 9 or not digits.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(digits[:8], range(8, 0, -1), strict=True))
    return (10 - total % 10) % 10 == int(digits[8])


def _ird_check(base: str, weights: tuple[int, ...]) -> int:
    remainder = sum(int(d) * w for d, w in zip(base, weights, strict=True)) % 11
    return 0 if remainder == 0 else 11 - remainder


def is_valid_nz_ird(digits: str) -> bool:
    """An NZ IRD number (also the GST number): 8 or 9 digits, mod 11 with a second set of
    weights when the first gives 10 (Inland Revenue's published algorithm)."""
    if not digits.isdigit() or not 10_000_000 < int(digits) < 150_000_000:
        return False
    base, check = digits[:-1].rjust(8, "0"), int(digits[-1])
    calculated = _ird_check(base, (3, 2, 7, 6, 5, 4, 3, 2))
    if calculated == 10:
        calculated = _ird_check(base, (7, 4, 3, 2, 5, 2, 7, 6))
    return calculated == check


_CHECKS = {
    "nzbn": is_valid_nzbn,
    "abn": is_valid_abn,
    "acn": is_valid_acn,
    "nz_ird": is_valid_nz_ird,
}


def parse_tax_id(value: str | None, scheme: str | None = None) -> TaxId | None:
    """A tax id from text such as `abn:51 824 753 556`, `au_abn 51824753556` or a bare
    NZBN (13 digits) or ABN (11 digits). None when it is not a valid id.

    Known schemes keep digits only and must pass their check; another scheme keeps its
    letters and digits (e.g. `eu_vat:DE123456789`) with no check.
    """
    if value is None:
        return None
    text = unicodedata.normalize("NFKC", value).strip()
    head, sep, rest = text.partition(":")
    if sep and _SCHEME.match(head.strip().lower()):
        scheme, text = head.strip().lower(), rest
    elif (words := text.split(None, 1)) and words[0].lower() in _SCHEME_ALIASES:
        scheme, text = words[0].lower(), words[1] if len(words) > 1 else ""
    if scheme is None:
        return _inferred(text)
    scheme = _SCHEME_ALIASES.get(scheme.lower(), scheme.lower())
    if not _SCHEME.match(scheme):
        return None
    check = _CHECKS.get(scheme)
    if check is not None:
        digits = "".join(c for c in text if c.isascii() and c.isdigit())
        return TaxId(scheme, digits) if check(digits) else None
    number = _NOT_ALNUM.sub("", text).upper()
    return TaxId(scheme, number) if len(number) >= 4 and number.isascii() else None


def _inferred(text: str) -> TaxId | None:
    if any(c.isalpha() for c in text):
        return None  # letters without a scheme: not a number we can recognise
    digits = "".join(c for c in text if c.isascii() and c.isdigit())
    if is_valid_nzbn(digits):
        return TaxId("nzbn", digits)
    if is_valid_abn(digits):
        return TaxId("abn", digits)
    return None


def normalise_tax_id(value: str | None, scheme: str | None = None) -> str | None:
    """The match key of a tax id (`scheme:number`), or None when it is not a valid id."""
    parsed = parse_tax_id(value, scheme)
    return str(parsed) if parsed else None
