"""The pure matching core: normal forms, tax id checks, keys, the score and the decision."""

from __future__ import annotations

from datetime import date

import pytest

from synchub.mdm.identifiers import (
    gs1_check_digit,
    is_valid_abn,
    is_valid_acn,
    is_valid_nz_ird,
    is_valid_nzbn,
    normalise_domain,
    normalise_email,
    normalise_tax_id,
)
from synchub.mdm.matching import (
    Level,
    MatchRecord,
    Verdict,
    blocking_keys,
    compare,
    contradicts,
    decide,
    match_keys,
    normalise,
    normalise_name,
    score,
    soundex,
)
from synchub.register.model import MatchThresholds

DEFAULTS = MatchThresholds()


# -- email ------------------------------------------------------------------------------------


def test_email_is_trimmed_lower_cased_and_nfc() -> None:
    decomposed = "  Ma\u0304ori@Kowhai.NZ "  # "a" + combining macron
    assert normalise_email(decomposed) == "m\u0101ori@kowhai.nz"  # precomposed "ā"


def test_plus_addressing_is_a_distinct_address() -> None:
    assert normalise_email("ops+billing@kowhai.nz") == "ops+billing@kowhai.nz"
    assert normalise_email("ops+billing@kowhai.nz") != normalise_email("ops@kowhai.nz")


def test_sharp_s_is_not_folded_into_ss() -> None:
    assert normalise_email("STRAẞE@x.de") == "straße@x.de"
    assert normalise_email("straße@x.de") != normalise_email("strasse@x.de")


def test_text_without_an_at_is_not_an_email() -> None:
    assert normalise_email("not an email") is None
    assert normalise_email("@x.nz") is None


def test_domains_lose_scheme_path_and_www() -> None:
    assert normalise_domain("https://www.Kowhai.co.nz/about") == "kowhai.co.nz"
    assert normalise_domain("localhost") is None


# -- tax ids ----------------------------------------------------------------------------------


def test_nzbn_is_a_gs1_number_with_a_mod_10_check_digit() -> None:
    assert gs1_check_digit("400638133393") == 1  # the GS1 worked example, EAN 4006381333931
    assert is_valid_nzbn("9429041234563")
    assert not is_valid_nzbn("9429041234564")  # one digit off
    assert not is_valid_nzbn("942904123456")  # twelve digits


def test_abn_passes_the_mod_89_check() -> None:
    assert is_valid_abn("51824753556")  # the ATO's example
    assert not is_valid_abn("51824753557")
    assert not is_valid_abn("01824753556")


def test_acn_and_ird_numbers_have_their_own_checks() -> None:
    assert is_valid_acn("004085616")
    assert not is_valid_acn("004085617")
    assert [is_valid_nz_ird(n) for n in ("49091850", "35901981", "136410132")] == [True] * 3
    assert not is_valid_nz_ird("136410133")
    assert not is_valid_nz_ird("9125568")  # below the range


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("9429041234563", "nzbn:9429041234563"),
        ("NZBN 9429 0412 3456 3", "nzbn:9429041234563"),
        ("51 824 753 556", "abn:51824753556"),
        ("au_abn:51-824-753-556", "abn:51824753556"),
        ("ABN 51 824 753 556", "abn:51824753556"),
        ("nz_gst:49-091-850", "nz_ird:49091850"),
        ("acn:004 085 616", "acn:004085616"),
        ("eu_vat:de 123 456 789", "eu_vat:DE123456789"),
    ],
)
def test_tax_ids_become_digits_under_their_scheme(text: str, key: str) -> None:
    assert normalise_tax_id(text) == key


@pytest.mark.parametrize(
    "text", ["9429041234564", "abn:51824753557", "nz_gst:136410133", "12345", "GB 123", ""]
)
def test_a_tax_id_that_fails_its_check_is_no_id(text: str) -> None:
    assert normalise_tax_id(text) is None


# -- names and keys ---------------------------------------------------------------------------


def test_macrons_case_and_legal_forms_do_not_separate_names() -> None:
    assert (
        normalise_name("Māori Tech Ltd")
        == normalise_name("MAORI TECH LIMITED")
        == ("maori tech ltd")
    )
    assert normalise_name("Kōwhai Café Pty. Ltd.") == "kowhai cafe pty ltd"


def test_soundex_follows_the_american_rules() -> None:
    assert [soundex(w) for w in ("robert", "rupert", "ashcraft", "tymczak", "pfister")] == [
        "R163",
        "R163",
        "A261",
        "T522",
        "P236",
    ]


def test_keys_come_strongest_first_and_blocks_skip_free_mail() -> None:
    record = normalise(
        MatchRecord(
            name="Aroha Ngāta",
            email="Aroha@Kowhai.nz",
            tax_ids=frozenset({"9429041234563"}),
            product_id="acct_42",
        )
    )
    assert match_keys(record) == [
        ("product_id", "acct_42"),
        ("tax_id", "nzbn:9429041234563"),
        ("email", "aroha@kowhai.nz"),
    ]
    assert ("domain", "kowhai.nz") in blocking_keys(record)
    gmail = normalise(MatchRecord(name="Aroha Ngata", email="aroha@gmail.com"))
    assert [kind for kind, _ in blocking_keys(gmail)] == ["name"]
    assert blocking_keys(gmail)[0] == blocking_keys(record)[0]  # the same phonetic name key


def test_different_numbers_under_one_scheme_contradict() -> None:
    a = normalise(MatchRecord(tax_ids=frozenset({"abn:51824753556"})))
    b = normalise(MatchRecord(tax_ids=frozenset({"nzbn:9429041234563", "abn:53004085616"})))
    c = normalise(MatchRecord(tax_ids=frozenset({"nzbn:9429041234563"})))
    assert contradicts(a, b)
    assert not contradicts(a, c)  # different schemes say nothing
    assert contradicts(
        normalise(MatchRecord(product_id="p1")), normalise(MatchRecord(product_id="p2"))
    )


# -- score and decision -----------------------------------------------------------------------


def test_the_same_organisation_written_two_ways_links() -> None:
    a = MatchRecord(name="Māori Tech Ltd", email="info@maoritech.co.nz")
    b = MatchRecord(name="Maori Tech Limited", email="accounts@maoritech.co.nz")
    assert compare(normalise(a), normalise(b))["name"] is Level.EXACT
    assert decide(score(a, b), DEFAULTS) is Verdict.LINK


def test_a_misspelt_name_at_the_same_domain_goes_to_review() -> None:
    a = MatchRecord(name="Aroha Ngata", email="aroha@kowhai.nz")
    b = MatchRecord(name="Aroha Ngatta", email="a.ngata@kowhai.nz")
    assert decide(score(a, b), DEFAULTS) is Verdict.REVIEW


def test_a_name_alone_never_links_automatically() -> None:
    assert decide(score(MatchRecord(name="Aroha Ngata"), MatchRecord(name="Aroha Ngata")),
                  DEFAULTS) is Verdict.REVIEW  # fmt: skip


def test_the_same_name_at_other_organisations_is_a_new_customer() -> None:
    a = MatchRecord(name="Aroha Ngata", email="aroha@kowhai.nz")
    b = MatchRecord(name="Aroha Ngata", email="mahi@pohutukawa.nz")
    assert decide(score(a, b), DEFAULTS) is Verdict.NEW


def test_colleagues_at_one_company_are_not_one_customer() -> None:
    a = MatchRecord(name="Tom Walker", email="tom@kiwicafe.co.nz", company="Kiwi Cafe Ltd")
    b = MatchRecord(name="Aroha Ngata", email="aroha@kiwicafe.co.nz", company="Kiwi Cafe Ltd")
    assert score(a, b) < 0.1


def test_a_person_register_scores_with_the_same_model() -> None:
    """FEBRL-shaped records: typos in the name and a swapped day and month still match."""
    a = MatchRecord(name="michaela neumann", address="8 stanley street", locality="miami",
                    postcode="4223", region="nsw", date_of_birth=date(1915, 1, 19),
                    national_id="5304218")  # fmt: skip
    b = MatchRecord(name="michaela naumann", address="8 stanley st", locality="miami",
                    postcode="4223", region="nsw", date_of_birth=date(1915, 1, 19),
                    national_id="5304218")  # fmt: skip
    other = MatchRecord(name="courtney painter", address="12 pinkerton circuit",
                        locality="bega flats", postcode="4223", region="vic",
                        date_of_birth=date(1960, 5, 1), national_id="4066625")  # fmt: skip
    assert score(a, b) > 0.99
    assert score(a, other) < 0.01


def test_decisions_follow_the_thresholds() -> None:
    thresholds = MatchThresholds(link_at=0.9, review_at=0.5)
    assert [decide(s, thresholds) for s in (0.0, 0.49, 0.5, 0.89, 0.9, 1.0)] == [
        Verdict.NEW,
        Verdict.NEW,
        Verdict.REVIEW,
        Verdict.REVIEW,
        Verdict.LINK,
        Verdict.LINK,
    ]


def test_thresholds_out_of_order_are_refused() -> None:
    with pytest.raises(ValueError, match="review_at <= link_at"):
        MatchThresholds(link_at=0.5, review_at=0.9)
