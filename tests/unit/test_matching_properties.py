"""Laws of the matching core (Hypothesis): symmetric scores in [0, 1], idempotent normal forms,
decisions monotone in the score, check digits that catch every single-digit slip."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from synchub.mdm.identifiers import (
    gs1_check_digit,
    is_valid_abn,
    is_valid_nzbn,
    normalise_domain,
    normalise_email,
    normalise_phone,
    normalise_tax_id,
)
from synchub.mdm.matching import (
    MatchRecord,
    Verdict,
    blocking_keys,
    decide,
    match_keys,
    normalise,
    normalise_name,
    score,
)
from synchub.register.model import MatchThresholds

NAMES = ["Aroha Ngāta", "Aroha Ngata", "Māori Tech Ltd", "Maori Tech Limited", "Tom Walker",
         "Kōwhai Café", "Haruto Satō", "佐藤 陽翔", "Liam O'Connor", "STRAẞE GmbH"]  # fmt: skip
EMAILS = ["aroha@kowhai.nz", "Aroha@Kowhai.NZ ", "ops+billing@kowhai.nz", "tom@kiwicafe.co.nz",
          "a@gmail.com", "straße@x.de", "not-an-email"]  # fmt: skip
TAX_IDS = ["9429041234563", "abn:51824753556", "nz_gst:49091850", "9429041234564", "eu_vat:DE1"]

text = st.one_of(st.none(), st.sampled_from(NAMES), st.text(max_size=20))
emails = st.one_of(st.none(), st.sampled_from(EMAILS), st.emails(), st.text(max_size=12))
records = st.builds(
    MatchRecord,
    name=text,
    company=text,
    email=emails,
    domain=st.one_of(st.none(), st.sampled_from(["kowhai.nz", "www.kowhai.nz", "gmail.com"])),
    phone=st.one_of(st.none(), st.sampled_from(["+64 21 123 4567", "021 123 4567", "12"])),
    address=text,
    locality=text,
    postcode=st.one_of(st.none(), st.sampled_from(["1010", "6011", "4223"]), st.text(max_size=5)),
    region=text,
    country=st.one_of(st.none(), st.sampled_from(["NZ", "AU", "nz"])),
    date_of_birth=st.one_of(st.none(), st.dates()),
    national_id=st.one_of(st.none(), st.text(alphabet="0123456789", max_size=8)),
    tax_ids=st.frozensets(st.one_of(st.sampled_from(TAX_IDS), st.text(max_size=14)), max_size=2),
    product_id=st.one_of(st.none(), st.sampled_from(["acct_1", "acct_2"]), st.text(max_size=6)),
)


@given(records, records)
def test_score_is_symmetric_and_a_probability(a: MatchRecord, b: MatchRecord) -> None:
    value = score(a, b)
    assert value == score(b, a)
    assert 0.0 <= value <= 1.0


@given(records)
def test_normalising_a_record_twice_changes_nothing(record: MatchRecord) -> None:
    once = normalise(record)
    assert normalise(once) == once
    assert match_keys(normalise(once)) == match_keys(once)
    assert blocking_keys(normalise(once)) == blocking_keys(once)


@given(st.text())
def test_each_normal_form_is_idempotent(value: str) -> None:
    for normal in (normalise_name, normalise_email, normalise_domain, normalise_phone,
                   normalise_tax_id):  # fmt: skip
        once = normal(value)
        assert normal(once) == once


@given(records, records)
def test_normalised_input_scores_the_same(a: MatchRecord, b: MatchRecord) -> None:
    assert score(normalise(a), normalise(b)) == score(a, b)


RANK = {Verdict.NEW: 0, Verdict.REVIEW: 1, Verdict.LINK: 2}


@st.composite
def thresholds(draw: st.DrawFn) -> MatchThresholds:
    low, high = sorted(draw(st.lists(st.floats(0, 1), min_size=2, max_size=2)))
    return MatchThresholds(link_at=high, review_at=low)


@given(st.floats(0, 1), st.floats(0, 1), thresholds())
def test_decisions_are_monotone_in_the_score(x: float, y: float, limits: MatchThresholds) -> None:
    low, high = sorted((x, y))
    assert RANK[decide(low, limits)] <= RANK[decide(high, limits)]


@given(st.text(alphabet="0123456789", min_size=12, max_size=12), st.data())
def test_the_nzbn_check_digit_catches_any_single_digit_slip(body: str, data: st.DataObject) -> None:
    nzbn = body + str(gs1_check_digit(body))
    assert is_valid_nzbn(nzbn)
    at = data.draw(st.integers(0, 12))
    digit = data.draw(st.sampled_from([d for d in "0123456789" if d != nzbn[at]]))
    assert not is_valid_nzbn(nzbn[:at] + digit + nzbn[at + 1 :])


@given(st.text(alphabet="0123456789", min_size=9, max_size=9), st.data())
def test_the_abn_check_catches_any_single_digit_slip(body: str, data: st.DataObject) -> None:
    valid = [f"{p}{body}" for p in range(10, 100) if is_valid_abn(f"{p}{body}")]
    if not valid:
        return
    abn = valid[0]
    at = data.draw(st.integers(1, 10))  # the first digit may not become 0: try the others
    digit = data.draw(st.sampled_from([d for d in "0123456789" if d != abn[at]]))
    assert not is_valid_abn(abn[:at] + digit + abn[at + 1 :])
