"""The batch scorer gives bit-for-bit the per-pair score (Hypothesis), for the default and for
arbitrary weights, on records of every field the score reads."""

from __future__ import annotations

from datetime import date

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from synchub.mdm.batch_scoring import LEVELS, compare_pairs, prepare, score_pairs
from synchub.mdm.matching import (
    DEFAULT_FIELD_WEIGHTS,
    Level,
    MatchRecord,
    Weights,
    compare,
    normalise,
    score,
)

NAMES = ["Aroha Ngāta", "Aroha Ngata", "Aroha Ngat", "Ngata Aroha", "Māori Tech Ltd",
         "Maori Tech Limited", "Maori Tek Ltd", "Aroha Ngati", "Tom Walker",
         "Tom Walkers", "Thomas Walker",
         "Kōwhai Café", "Liam O'Connor", "STRAẞE GmbH", "The Ltd", ""]  # fmt: skip
EMAILS = ["aroha@kowhai.nz", "Aroha@Kowhai.NZ ", "aroha@gmail.com", "ops+billing@kowhai.nz",
          "tom@kiwicafe.co.nz", "tom@gmail.com", "not-an-email"]  # fmt: skip
DOMAINS = ["kowhai.nz", "www.kowhai.nz", "shop.kowhai.nz", "gmail.com", "kiwicafe.co.nz"]
PHONES = ["+64 21 123 4567", "021 123 4567", "021 123 4568", "12"]
TAX_IDS = ["9429041234563", "abn:51824753556", "nz_gst:49091850", "eu_vat:DE12345", "x"]
DATES = [date(1980, 3, 4), date(1980, 4, 3), date(1980, 3, 5), date(1981, 3, 4), date(1, 1, 1)]
PLACES = ["12 Tullaroop Street", "12 Tullaroop St", "21 Tullaroop Street", "Canterbury", "2776",
          "2767", "3000"]  # fmt: skip


def pick(values: list[str]) -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), st.sampled_from(values), st.text(max_size=10))


records = st.builds(
    MatchRecord,
    name=pick(NAMES),
    company=pick(NAMES),
    email=pick(EMAILS),
    domain=st.one_of(st.none(), st.sampled_from(DOMAINS)),
    phone=st.one_of(st.none(), st.sampled_from(PHONES)),
    address=pick(PLACES),
    locality=pick(PLACES),
    postcode=pick(PLACES),
    region=st.one_of(st.none(), st.sampled_from(["vic", "nsw", "VIC"])),
    country=st.one_of(st.none(), st.sampled_from(["NZ", "AU", "nz"])),
    date_of_birth=st.one_of(st.none(), st.sampled_from(DATES), st.dates()),
    national_id=st.one_of(st.none(), st.sampled_from(["6988048", "6988084", "1234567"])),
    tax_ids=st.frozensets(st.sampled_from(TAX_IDS), max_size=2),
    product_id=st.one_of(st.none(), st.sampled_from(["acct_1", "acct_2"])),
)

weights = st.builds(
    Weights,
    prior=st.floats(-20, 5),
    fields=st.fixed_dictionaries(
        {
            name: st.fixed_dictionaries({level: st.floats(-15, 15) for level in Level})
            for name in DEFAULT_FIELD_WEIGHTS
        }
    ),
)


def all_pairs(count: int) -> tuple[np.ndarray, np.ndarray]:
    left, right = np.triu_indices(count, k=1)
    both = (
        np.concatenate([np.arange(count), left, right]),
        np.concatenate([np.arange(count), right, left]),
    )
    return both[0].astype(np.int64), both[1].astype(np.int64)


@settings(max_examples=150, deadline=None)
@given(st.lists(records, min_size=1, max_size=8), st.one_of(st.just(Weights()), weights))
def test_batch_scores_equal_the_per_pair_scores(
    batch: list[MatchRecord], weighting: Weights
) -> None:
    prepared = prepare(batch)
    left, right = all_pairs(len(batch))

    got = score_pairs(prepared, left, right, weighting)

    expected = [score(batch[i], batch[j], weighting) for i, j in zip(left, right, strict=True)]
    assert got.tolist() == expected  # exact, not approximately


@settings(max_examples=100, deadline=None)
@given(st.lists(records, min_size=2, max_size=6))
def test_batch_levels_equal_the_per_pair_levels(batch: list[MatchRecord]) -> None:
    prepared = prepare(batch)
    left, right = all_pairs(len(batch))

    levels = compare_pairs(prepared, left, right)

    for k, (i, j) in enumerate(zip(left, right, strict=True)):
        got = {f: LEVELS[c[k]] for f, c in levels.items() if c[k] >= 0}
        assert got == compare(normalise(batch[i]), normalise(batch[j]))


def test_a_sample_of_near_duplicates_scores_as_one_by_one() -> None:
    batch = [
        MatchRecord(name="Aroha Ngāta", company="Kōwhai Café Ltd", email="aroha@kowhai.nz"),
        MatchRecord(name="aroha ngata", company="Kowhai Cafe Limited", domain="www.kowhai.nz"),
        MatchRecord(name="Aroha Ngat", phone="+64 21 123 4567", email="aroha@gmail.com"),
        MatchRecord(name="Ngata, Aroha", phone="021 123 4567", domain="shop.kowhai.nz"),
        MatchRecord(name="Tom Walker", date_of_birth=date(1980, 3, 4), postcode="2776"),
        MatchRecord(name="Aroha Ngati", company="Kowhai Cafe Ltd", email="aroha@kowhai.nz"),
        MatchRecord(name="Thomas Walker", date_of_birth=date(1980, 3, 5), postcode="3000"),
        MatchRecord(name="Tom Walkers", date_of_birth=date(1980, 4, 3), postcode="2767"),
    ]
    left, right = all_pairs(len(batch))

    got = score_pairs(prepare(batch), left, right)

    expected = [score(batch[i], batch[j]) for i, j in zip(left, right, strict=True)]
    assert got.tolist() == expected
    assert len(set(expected)) > 5  # the sample exercises several levels, not one score
