"""Is this record that one? Normal forms, match and blocking keys, a score and a decision. Pure.

The score is a Fellegi-Sunter match probability, the model splink uses: each field present
on both records is compared and falls into a level (exact, close, similar, different); each
level carries a weight, the log2 of how much likelier that agreement is between two records
of one customer than between two different customers; the score is
`1 / (1 + 2^-(prior + sum of weights))`. A field missing on either side says nothing, so a
name alone never reaches the automatic-link threshold. See ADR 0016.

Generic on purpose: customer records (name, company, email, phone, tax ids, product id) and
person registers such as the FEBRL data sets (name, address, suburb, postcode, state, date of
birth, social security id) go through the same `score`.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from enum import StrEnum

from rapidfuzz import fuzz

from synchub.mdm.identifiers import (
    domain_of,
    is_free_mail,
    normalise_domain,
    normalise_email,
    normalise_phone,
    normalise_tax_id,
    phone_key,
)
from synchub.register.model import MatchThresholds


class Level(StrEnum):
    """How well one field agrees between two records."""

    EXACT = "exact"
    CLOSE = "close"
    SIMILAR = "similar"
    DIFFERENT = "different"


class Verdict(StrEnum):
    """What to do with a scored pair (in increasing order of confidence)."""

    NEW = "new"  # below review_at: a different customer
    REVIEW = "review"  # a person confirms or rejects a match candidate
    LINK = "link"  # at or above link_at: the same customer


@dataclass(frozen=True)
class MatchRecord:
    """What matching looks at in one record; every field is optional."""

    name: str | None = None  # a person's or organisation's name as written
    company: str | None = None
    email: str | None = None
    domain: str | None = None  # a website or account domain; else the email's domain
    phone: str | None = None
    address: str | None = None  # street lines in one string
    locality: str | None = None  # suburb, town or city
    postcode: str | None = None
    region: str | None = None  # state or region
    country: str | None = None  # ISO 3166 alpha-2
    date_of_birth: date | None = None
    national_id: str | None = None  # e.g. FEBRL's soc_sec_id
    tax_ids: frozenset[str] = frozenset()  # any form parse_tax_id reads; normalised to keys
    product_id: str | None = None  # the product's own id, carried in vendor metadata


# -- normal forms -----------------------------------------------------------------------------

# Legal forms written several ways; each maps to one spelling (a fixed point of the map).
LEGAL_FORMS = {
    "limited": "ltd",
    "ltd": "ltd",
    "proprietary": "pty",
    "pty": "pty",
    "incorporated": "inc",
    "inc": "inc",
    "corporation": "corp",
    "corp": "corp",
    "company": "co",
    "co": "co",
    "llc": "llc",
    "plc": "plc",
    "gmbh": "gmbh",
    "kk": "kk",
}
_NOISE = frozenset({*LEGAL_FORMS.values(), "the", "and", "of", "mr", "mrs", "ms", "miss", "dr"})
_SEPARATORS = re.compile(r"[\W_]+")


def _fold(text: str) -> str:
    """Compatibility-decomposed, without combining marks (macrons), case-folded; repeated
    until stable so that folding twice never changes anything."""
    for _ in range(5):
        decomposed = unicodedata.normalize("NFKD", text)
        folded = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
        if folded == text:
            break
        text = folded
    return text


def normalise_name(value: str | None) -> str | None:
    """Words of a name, folded (`Māori` and `Maori` agree), legal forms in one spelling
    (`Limited` -> `ltd`). For comparison only: golden records keep the name as written."""
    if value is None:
        return None
    words = [LEGAL_FORMS.get(w, w) for w in _SEPARATORS.split(_fold(value)) if w]
    return " ".join(words) or None


def name_key(normalised: str | None) -> str | None:
    """A normalised name without legal forms, titles and stop words (`maori tech`)."""
    if not normalised:
        return None
    words = [w for w in normalised.split(" ") if w not in _NOISE]
    return " ".join(words) or normalised


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    return " ".join(w for w in _SEPARATORS.split(_fold(value)) if w) or None


def _code(value: str | None) -> str | None:
    if value is None:
        return None
    text = "".join(c for c in _fold(value) if c.isascii() and c.isalnum()).upper()
    return text or None


def normalise(record: MatchRecord) -> MatchRecord:
    """Every field in its normal form; normalising twice changes nothing."""
    email = normalise_email(record.email)
    return replace(
        record,
        name=normalise_name(record.name),
        company=normalise_name(record.company),
        email=email,
        domain=normalise_domain(record.domain) or domain_of(email),
        phone=normalise_phone(record.phone),
        address=_text(record.address),
        locality=_text(record.locality),
        postcode=_code(record.postcode),
        region=_text(record.region),
        country=_code(record.country),
        national_id=_code(record.national_id),
        tax_ids=frozenset(k for v in record.tax_ids if (k := normalise_tax_id(v))),
        product_id=_identifier(record.product_id),
    )


def _identifier(value: str | None) -> str | None:
    text = unicodedata.normalize("NFC", value).strip() if value else ""
    return text or None


# -- keys -------------------------------------------------------------------------------------


def match_keys(record: MatchRecord) -> list[tuple[str, str]]:
    """Deterministic keys of a normalised record, strongest first: a shared key links."""
    keys = [("product_id", record.product_id)] if record.product_id else []
    keys += [("tax_id", key) for key in sorted(record.tax_ids)]
    keys += [("email", record.email)] if record.email else []
    return keys


_SOUNDEX = str.maketrans("bfpvcgjkqsxzdtlmnr", "111122222222334556")


def soundex(word: str) -> str:
    """American Soundex of a folded word; a word without Latin letters keeps 4 characters."""
    letters = "".join(c for c in word if "a" <= c <= "z")
    if not letters:
        return word[:4]
    digits, last = [], letters[0].translate(_SOUNDEX)
    for c in letters[1:]:
        code = c.translate(_SOUNDEX)
        if code.isdigit() and code != last:
            digits.append(code)
        if c not in "hw":
            last = code
    return (letters[0].upper() + "".join(digits) + "000")[:4]


def phonetic_key(normalised: str | None) -> str | None:
    """Sorted Soundex codes of a name's first and last significant words (order-free)."""
    words = (name_key(normalised) or "").split()
    if not words:
        return None
    return " ".join(sorted({soundex(words[0]), soundex(words[-1])}))


def blocking_keys(record: MatchRecord) -> list[tuple[str, str]]:
    """Keys of a normalised record that narrow the records worth scoring against it."""
    names = {phonetic_key(record.name), phonetic_key(record.company)}
    keys = [("name", key) for key in sorted(k for k in names if k is not None)]
    if record.domain and not is_free_mail(record.domain):
        keys.append(("domain", record.domain))
    if record.phone:
        keys.append(("phone", phone_key(record.phone) or record.phone))
    if record.postcode:
        keys.append(("postcode", record.postcode))
    return keys


def contradicts(a: MatchRecord, b: MatchRecord) -> bool:
    """Two normalised records with different product ids, or different numbers under one
    tax scheme, are two customers whatever else they share."""
    if a.product_id and b.product_id and a.product_id != b.product_id:
        return True
    return _tax_level(a.tax_ids, b.tax_ids) is Level.DIFFERENT


# -- comparison and score ---------------------------------------------------------------------


def _similarity(scorer: Callable[..., float], x: str, y: str) -> float:
    first, second = sorted((x, y))  # one argument order: symmetric to the last bit
    return scorer(first, second) / 100.0


def _graded(x: str, y: str, *, close: float, similar: float | None = None) -> Level:
    if x == y:
        return Level.EXACT
    ratio = _similarity(fuzz.token_sort_ratio, x, y)
    if ratio >= close:
        return Level.CLOSE
    if similar is not None and ratio >= similar:
        return Level.SIMILAR
    return Level.DIFFERENT


def _name_level(x: str, y: str) -> Level:
    return _graded(name_key(x) or x, name_key(y) or y, close=0.9, similar=0.8)


def _domain_level(x: str, y: str) -> Level | None:
    if is_free_mail(x) or is_free_mail(y):
        return None
    if x == y:
        return Level.EXACT
    if x.endswith("." + y) or y.endswith("." + x):
        return Level.CLOSE
    return Level.DIFFERENT


def _email_level(x: str, y: str) -> Level:
    if x == y:
        return Level.EXACT
    local_x, local_y = x.rpartition("@")[0], y.rpartition("@")[0]
    return Level.CLOSE if local_x == local_y and len(local_x) >= 4 else Level.DIFFERENT


def _tax_level(x: frozenset[str], y: frozenset[str]) -> Level | None:
    if x & y:
        return Level.EXACT
    schemes_x = {k.partition(":")[0] for k in x}
    schemes_y = {k.partition(":")[0] for k in y}
    return Level.DIFFERENT if schemes_x & schemes_y else None


def _date_level(x: date, y: date) -> Level:
    if x == y:
        return Level.EXACT
    swapped = x.year == y.year and x.month == y.day and x.day == y.month
    one_digit = sum(a != b for a, b in zip(x.isoformat(), y.isoformat(), strict=True)) == 1
    return Level.CLOSE if swapped or one_digit else Level.DIFFERENT


def _same(x: str, y: str) -> Level:
    return Level.EXACT if x == y else Level.DIFFERENT


def compare(a: MatchRecord, b: MatchRecord) -> dict[str, Level]:
    """How each field present on both normalised records agrees."""
    levels: dict[str, Level | None] = {}
    pairs: list[tuple[str, object, object, Callable[..., Level | None]]] = [
        ("name", a.name, b.name, _name_level),
        ("company", a.company, b.company, _name_level),
        ("email", a.email, b.email, _email_level),
        ("domain", a.domain, b.domain, _domain_level),
        ("phone", phone_key(a.phone), phone_key(b.phone), _same),
        ("address", a.address, b.address, lambda x, y: _graded(x, y, close=0.9, similar=0.75)),
        ("locality", a.locality, b.locality, lambda x, y: _graded(x, y, close=0.85)),
        ("postcode", a.postcode, b.postcode, lambda x, y: _graded(x, y, close=0.75)),
        ("region", a.region, b.region, _same),
        ("country", a.country, b.country, _same),
        ("date_of_birth", a.date_of_birth, b.date_of_birth, _date_level),
        ("national_id", a.national_id, b.national_id, lambda x, y: _graded(x, y, close=0.85)),
        ("product_id", a.product_id, b.product_id, _same),
    ]
    for name, x, y, level_of in pairs:
        if x is not None and y is not None:
            levels[name] = level_of(x, y)
    levels["tax_id"] = _tax_level(a.tax_ids, b.tax_ids)
    return {k: v for k, v in levels.items() if v is not None}


Weighting = dict[Level, float]


def _w(exact: float, different: float, *, close: float = 0.0, similar: float = 0.0) -> Weighting:
    return {
        Level.EXACT: exact,
        Level.CLOSE: close,
        Level.SIMILAR: similar,
        Level.DIFFERENT: different,
    }


# log2 Bayes factors: e.g. an exact name is 2^9 times likelier for one customer than for two.
DEFAULT_FIELD_WEIGHTS: Mapping[str, Mapping[Level, float]] = {
    "name": _w(9, -6, close=6, similar=2),
    "company": _w(5, -2, close=3, similar=1),
    "email": _w(12, -1, close=2),
    "domain": _w(5, -2, close=3),
    "phone": _w(8, -2),
    "address": _w(6, -3, close=4, similar=1),
    "locality": _w(3, -2, close=2),
    "postcode": _w(4, -3, close=1),
    "region": _w(1, -2),
    "country": _w(0.5, -3),
    "date_of_birth": _w(8, -5, close=3),
    "national_id": _w(10, -6, close=3),
    "tax_id": _w(12, -10),
    "product_id": _w(14, -12),
}


@dataclass(frozen=True)
class Weights:
    """The scorer's parameters: prior log2 odds of a match within a block, field weights."""

    prior: float = -8.0
    fields: Mapping[str, Mapping[Level, float]] = field(
        default_factory=lambda: DEFAULT_FIELD_WEIGHTS
    )


DEFAULT_WEIGHTS = Weights()


def probability(levels: Mapping[str, Level], weights: Weights = DEFAULT_WEIGHTS) -> float:
    """The match probability in [0, 1] that the compared levels give."""
    evidence = sum(weights.fields[name][level] for name, level in sorted(levels.items()))
    total = weights.prior + evidence
    return 1.0 / (1.0 + math.pow(2.0, -max(-60.0, min(60.0, total))))


def score(a: MatchRecord, b: MatchRecord, weights: Weights = DEFAULT_WEIGHTS) -> float:
    """How likely two records are one customer, in [0, 1]; symmetric."""
    return probability(compare(normalise(a), normalise(b)), weights)


def decide(value: float, thresholds: MatchThresholds) -> Verdict:
    """Link at or above `link_at`, review at or above `review_at`, else a new record."""
    if value >= thresholds.link_at:
        return Verdict.LINK
    if value >= thresholds.review_at:
        return Verdict.REVIEW
    return Verdict.NEW
