"""The match score of many candidate pairs at once: the same numbers as `matching.score`.

`matching.score` compares two records in Python, field by field. Scoring millions of candidate
pairs that way costs microseconds each; here the records are normalised once
(`prepare`), each field becomes integer codes into its sorted distinct values, and a batch of
pairs (`score_pairs`) is compared per field over numpy arrays: equal codes are an exact level,
and rapidfuzz's `process.cpdist` computes the `token_sort_ratio` of each distinct unequal pair
of values once. `matching.probability` itself is called once per distinct pattern of levels
and looked up for every pair, so every score is bit-for-bit the per-pair one
(tests/unit/test_batch_scoring.py). Pure: no I/O. See ADR 0018.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date

import numpy as np
import numpy.typing as npt
from rapidfuzz import fuzz, process

from synchub.mdm.identifiers import is_free_mail, phone_key
from synchub.mdm.matching import (
    DEFAULT_WEIGHTS,
    Level,
    MatchRecord,
    Weights,
    name_key,
    normalise,
    probability,
)
from synchub.mdm.matching import _tax_level as tax_level

Codes = npt.NDArray[np.int64]
LevelCodes = npt.NDArray[np.int8]  # per pair: an index into LEVELS, or ABSENT
Floats = npt.NDArray[np.float64]

LEVELS: tuple[Level, ...] = (Level.EXACT, Level.CLOSE, Level.SIMILAR, Level.DIFFERENT)
EXACT, CLOSE, SIMILAR, DIFFERENT = range(4)
ABSENT = -1  # the field is missing on either record: it says nothing
MISSING = -1  # the code of a missing value

# `matching.compare`'s thresholds for the fields it grades with token_sort_ratio.
GRADED: Mapping[str, tuple[float, float | None]] = {
    "name": (0.9, 0.8),
    "company": (0.9, 0.8),
    "address": (0.9, 0.75),
    "locality": (0.85, None),
    "postcode": (0.75, None),
    "national_id": (0.85, None),
}
SAME = ("phone", "region", "country", "product_id")


@dataclass(frozen=True)
class Column:
    """One field of every record: codes into `values` (sorted, distinct), MISSING if absent."""

    codes: Codes
    values: tuple[str, ...]
    # For text graded by token_sort_ratio, when every value is words joined by single spaces:
    # each value with its words sorted (token_sort_ratio is `ratio` of these) and its length.
    sorted_words: npt.NDArray[np.object_] | None = None
    lengths: Codes | None = None


@dataclass(frozen=True)
class PreparedRecords:
    """Records normalised once, field by field, ready for `score_pairs`."""

    normalised: tuple[MatchRecord, ...]
    columns: Mapping[str, Column]
    emails: Column
    email_locals: Column  # the local part of the email, MISSING when shorter than 4
    dates: Column  # ISO dates of birth
    has_tax_ids: npt.NDArray[np.bool_]
    free_mail: npt.NDArray[np.bool_]  # per domain code, and False for MISSING (last)
    parent_domains: tuple[frozenset[int], ...]  # per domain code: codes it is a subdomain of


def column_of(values: Sequence[str | None]) -> Column:
    """Codes of a field's values; codes follow the sort order of the values (so a < b between
    codes is a < b between strings) and a missing value is MISSING."""
    present = sorted({v for v in values if v is not None})
    index = {v: i for i, v in enumerate(present)}
    codes = np.fromiter(
        (MISSING if v is None else index[v] for v in values), dtype=np.int64, count=len(values)
    )
    return Column(codes, tuple(present))


def graded_column(values: Sequence[str | None]) -> Column:
    """`column_of`, plus sorted words and lengths when the values allow (see Column)."""
    column = column_of(values)
    if not all(v == " ".join(v.split()) for v in column.values):
        return column
    return replace(
        column,
        sorted_words=_objects(" ".join(sorted(v.split(" "))) for v in column.values),
        lengths=np.array([len(v) for v in column.values], dtype=np.int64),
    )


def _objects(values: Iterable[str]) -> npt.NDArray[np.object_]:
    items = list(values)
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def _text_values(field: str, record: MatchRecord) -> str | None:
    value: str | None = getattr(record, field)
    if field in ("name", "company") and value is not None:
        return name_key(value) or value
    return value


def prepare(records: Sequence[MatchRecord]) -> PreparedRecords:
    """Normalise each record once and code every field the score compares."""
    normalised = tuple(normalise(r) for r in records)
    columns = {f: graded_column([_text_values(f, r) for r in normalised]) for f in GRADED}
    for field in SAME:
        columns[field] = column_of(
            [phone_key(r.phone) if field == "phone" else getattr(r, field) for r in normalised]
        )
    columns["domain"] = domains = column_of([r.domain for r in normalised])
    emails = column_of([r.email for r in normalised])
    locals_ = [r.email.rpartition("@")[0] if r.email else None for r in normalised]
    return PreparedRecords(
        normalised=normalised,
        columns=columns,
        emails=emails,
        email_locals=column_of([x if x is not None and len(x) >= 4 else None for x in locals_]),
        dates=column_of([_iso(r.date_of_birth) for r in normalised]),
        has_tax_ids=np.array([bool(r.tax_ids) for r in normalised], dtype=bool),
        free_mail=np.array([is_free_mail(v) for v in domains.values] + [False], dtype=bool),
        parent_domains=_parent_domains(domains.values),
    )


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


# -- levels per field -------------------------------------------------------------------------


def _pair_codes(column: Column, left: Codes, right: Codes) -> tuple[Codes, Codes, Codes]:
    """Both sides' codes and a mask of pairs where the field is present on both."""
    if not column.values:  # missing on every record: nothing to gather
        nothing = np.full(len(left), MISSING, dtype=np.int64)
        return nothing, nothing, np.zeros(len(left), dtype=bool)
    x, y = column.codes[left], column.codes[right]
    return x, y, (x != MISSING) & (y != MISSING)


def _distinct_pairs(x: Codes, y: Codes, size: int) -> tuple[Codes, Codes, Codes]:
    """The distinct (lower, higher) code pairs of unequal values and, per pair, its index."""
    low, high = np.minimum(x, y), np.maximum(x, y)
    keys, inverse = np.unique(low * size + high, return_inverse=True)
    return keys // size, keys % size, inverse.reshape(-1)


def ratios(column: Column, x: Codes, y: Codes, floor: float = 0.0) -> Floats:
    """token_sort_ratio / 100 of each pair, the lower value first as `matching` orders them.

    A ratio below `floor` may come back as 0: pairs whose lengths alone keep them below it
    are not compared (the Indel ratio is at most 2 min(len) / (len + len)), and rapidfuzz
    stops early under a cut-off a hair below it. Every ratio the thresholds tell apart is
    exact. Each distinct pair is compared once, as `ratio` of the sorted words.
    """
    result = np.zeros(len(x), dtype=np.float64)
    cutoff = max(floor * 100.0 - 1e-6, 0.0)
    compared = np.arange(len(x))
    if column.lengths is not None and cutoff > 0:
        lx, ly = column.lengths[x], column.lengths[y]
        bound = 200.0 * np.minimum(lx, ly) / (lx + ly)
        compared = np.flatnonzero(bound >= cutoff - 1e-6)
    if len(compared) == 0:
        return result
    low, high, inverse = _distinct_pairs(x[compared], y[compared], len(column.values))
    if column.sorted_words is not None:
        strings, scorer = column.sorted_words, fuzz.ratio
    else:
        strings, scorer = _objects(column.values), fuzz.token_sort_ratio
    scores = process.cpdist(
        strings[low],
        strings[high],
        scorer=scorer,
        score_cutoff=cutoff,
        dtype=np.float64,
        workers=-1,
    )
    result[compared] = np.asarray(scores, dtype=np.float64)[inverse] / 100.0
    return result


def graded_levels(
    column: Column, left: Codes, right: Codes, close: float, similar: float | None
) -> LevelCodes:
    """`matching._graded` over a batch: exact, close, similar or different (or ABSENT)."""
    x, y, both = _pair_codes(column, left, right)
    levels = np.full(len(left), ABSENT, dtype=np.int8)
    levels[both & (x == y)] = EXACT
    unequal = np.flatnonzero(both & (x != y))
    ratio = ratios(column, x[unequal], y[unequal], floor=min(close, similar or close))
    graded = np.full(len(unequal), DIFFERENT, dtype=np.int8)
    if similar is not None:
        graded[ratio >= similar] = SIMILAR
    graded[ratio >= close] = CLOSE
    levels[unequal] = graded
    return levels


def same_levels(column: Column, left: Codes, right: Codes) -> LevelCodes:
    """Exact or different where present on both."""
    x, y, both = _pair_codes(column, left, right)
    levels = np.full(len(left), ABSENT, dtype=np.int8)
    levels[both] = np.where(x[both] == y[both], EXACT, DIFFERENT)
    return levels


def email_levels(prepared: PreparedRecords, left: Codes, right: Codes) -> LevelCodes:
    """Exact, close (the same local part of 4+ characters at another domain) or different."""
    levels = same_levels(prepared.emails, left, right)
    lx, ly, both = _pair_codes(prepared.email_locals, left, right)
    levels[(levels == DIFFERENT) & both & (lx == ly)] = CLOSE
    return levels


def domain_levels(prepared: PreparedRecords, left: Codes, right: Codes) -> LevelCodes:
    """Absent when either is free mail; exact; close when one is a subdomain of the other."""
    free, parents = prepared.free_mail, prepared.parent_domains
    x, y, both = _pair_codes(prepared.columns["domain"], left, right)
    levels = np.full(len(left), ABSENT, dtype=np.int8)
    counted = both & ~free[x] & ~free[y]  # free[MISSING] is the padding entry
    levels[counted] = np.where(x[counted] == y[counted], EXACT, DIFFERENT)
    has_parent = np.array([bool(p) for p in parents] + [False], dtype=bool)
    for at in np.flatnonzero((levels == DIFFERENT) & (has_parent[x] | has_parent[y])):
        if y[at] in parents[x[at]] or x[at] in parents[y[at]]:
            levels[at] = CLOSE
    return levels


def _parent_domains(values: tuple[str, ...]) -> tuple[frozenset[int], ...]:
    """Per domain, the codes of the other domains it is a subdomain of (`a.b.nz` -> `b.nz`)."""
    index = {v: i for i, v in enumerate(values)}
    parents = []
    for value in values:
        labels = value.split(".")
        suffixes = (".".join(labels[k:]) for k in range(1, len(labels)))
        parents.append(frozenset(index[s] for s in suffixes if s in index))
    return tuple(parents)


def date_levels(column: Column, left: Codes, right: Codes) -> LevelCodes:
    """Exact; close when day and month are swapped or one digit differs; else different."""
    x, y, both = _pair_codes(column, left, right)
    levels = np.full(len(left), ABSENT, dtype=np.int8)
    levels[both] = np.where(x[both] == y[both], EXACT, DIFFERENT)
    unequal = np.flatnonzero(levels == DIFFERENT)
    if len(unequal) == 0:
        return levels
    digits = np.array([list(v.encode()) for v in column.values], dtype=np.uint8).reshape(
        len(column.values), -1
    )
    a, b = digits[x[unequal]], digits[y[unequal]]
    one_digit = (a != b).sum(axis=1) == 1
    year, month, day = slice(0, 4), slice(5, 7), slice(8, 10)
    swapped = (
        (a[:, year] == b[:, year]).all(axis=1)
        & (a[:, month] == b[:, day]).all(axis=1)
        & (a[:, day] == b[:, month]).all(axis=1)
    )
    levels[unequal[one_digit | swapped]] = CLOSE
    return levels


def tax_levels(prepared: PreparedRecords, left: Codes, right: Codes) -> LevelCodes:
    """`matching._tax_level`, pair by pair: only pairs where both records hold tax ids."""
    records = prepared.normalised
    levels = np.full(len(left), ABSENT, dtype=np.int8)
    has = prepared.has_tax_ids
    if len(left) == 0 or not has.any():
        return levels
    for at in np.flatnonzero(has[left] & has[right]):
        level = tax_level(records[left[at]].tax_ids, records[right[at]].tax_ids)
        levels[at] = ABSENT if level is None else LEVELS.index(level)
    return levels


def compare_pairs(prepared: PreparedRecords, left: Codes, right: Codes) -> dict[str, LevelCodes]:
    """`matching.compare` for each pair (left[k], right[k]): per field, a level code."""
    left, right = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    columns = prepared.columns
    levels = {
        field: graded_levels(columns[field], left, right, close, similar)
        for field, (close, similar) in GRADED.items()
    }
    levels |= {field: same_levels(columns[field], left, right) for field in SAME}
    levels["email"] = email_levels(prepared, left, right)
    levels["domain"] = domain_levels(prepared, left, right)
    levels["date_of_birth"] = date_levels(prepared.dates, left, right)
    levels["tax_id"] = tax_levels(prepared, left, right)
    return levels


# -- the score --------------------------------------------------------------------------------

TABLE_LIMIT = 5**9  # level patterns looked up in a table up to 9 fields; past that, sorted


def pattern_codes(levels: Mapping[str, LevelCodes]) -> tuple[list[str], Codes]:
    """Per pair, one integer for its levels of every field present anywhere (base 5)."""
    fields = sorted(f for f, codes in levels.items() if (codes != ABSENT).any())
    size = len(next(iter(levels.values()))) if levels else 0
    code = np.zeros(size, dtype=np.int64)
    for field in fields:
        code = code * 5 + (levels[field].astype(np.int64) + 1)
    return fields, code


def _levels_of(fields: list[str], code: int) -> dict[str, Level]:
    found: dict[str, Level] = {}
    for field in reversed(fields):
        code, digit = divmod(code, 5)
        if digit:
            found[field] = LEVELS[digit - 1]
    return found


def probabilities(levels: Mapping[str, LevelCodes], weights: Weights = DEFAULT_WEIGHTS) -> Floats:
    """`matching.probability` of each pair: called once per distinct level pattern (so the
    sum, its order and the logistic are that function's own), then looked up."""
    fields, code = pattern_codes(levels)
    if len(code) == 0:
        return np.zeros(0, dtype=np.float64)
    if 5 ** len(fields) <= TABLE_LIMIT:
        seen = np.zeros(5 ** len(fields), dtype=bool)
        seen[code] = True
        table = np.zeros(len(seen), dtype=np.float64)
        for used in np.flatnonzero(seen).tolist():
            table[used] = probability(_levels_of(fields, used), weights)
        return np.asarray(table[code], dtype=np.float64)
    distinct, inverse = np.unique(code, return_inverse=True)
    values = [probability(_levels_of(fields, int(c)), weights) for c in distinct]
    return np.asarray(np.array(values, dtype=np.float64)[inverse.reshape(-1)], dtype=np.float64)


def score_pairs(
    prepared: PreparedRecords, left: Codes, right: Codes, weights: Weights = DEFAULT_WEIGHTS
) -> Floats:
    """`matching.score(records[left[k]], records[right[k]], weights)` for every k."""
    return probabilities(compare_pairs(prepared, left, right), weights)
