"""Pushing customers to Intercom is search-then-write on external_id: a retry after an answer
was lost (the contact made, the reply gone) never makes a second contact, even while
Intercom's search index has not caught up yet."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from synchub.connectors.base import Attempt, OutboundEvent
from synchub.connectors.fault import Fault
from synchub.connectors.intercom.client import IntercomClient
from synchub.connectors.intercom.push import IntercomDestination
from synchub.connectors.intercom.sandbox import IntercomSandbox
from synchub.core.clock import FixedClock
from synchub.core.errors import RejectedError, TransientError

NOW = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)


def _setup(*, index_delay_seconds: int = 0) -> tuple[IntercomSandbox, IntercomDestination]:
    clock = FixedClock(NOW)
    box = IntercomSandbox(clock=clock, index_delay_seconds=index_delay_seconds)
    http = httpx.Client(transport=box.transport())
    return box, IntercomDestination("intercom", IntercomClient(http, token=box.token, clock=clock))


def _event(customer: dict[str, object], links: dict[str, str] | None = None) -> OutboundEvent:
    return OutboundEvent(id="evt_1", type="customer.updated", subject=str(customer["id"]),
                         time=NOW, payload={"object": customer}, traceparent=None,
                         links=links or {})  # fmt: skip


CUSTOMER = {"id": "cus_01", "email": "mere@kowhai.nz", "name": "Mere Kowhai", "phone": None,
            "company_name": "Kōwhai Ltd", "product_account_id": "acct_9",
            "billing_status": "active"}  # fmt: skip
ATTEMPT = Attempt(delivery_id="dl_1", idempotency_key="k1", number=1)


def _creates(box: IntercomSandbox) -> int:
    return sum(1 for j in box.journal if j["created"])


def test_a_first_push_creates_and_a_second_updates() -> None:
    box, dest = _setup()
    done = dest.deliver(_event(CUSTOMER), ATTEMPT)
    [contact] = box.contacts.values()
    assert done.links[0].external_id == contact["id"]
    assert done.applied == ["cus_01"]
    assert (contact["external_id"], contact["role"], contact["email"]) == (
        "cus_01", "user", "mere@kowhai.nz")  # fmt: skip
    assert contact["custom_attributes"] == {"company_name": "Kōwhai Ltd",
                                            "product_account_id": "acct_9",
                                            "billing_status": "active"}  # fmt: skip
    dest.deliver(_event({**CUSTOMER, "name": "Mere K"}), ATTEMPT)  # no link yet: found by search
    assert len(box.contacts) == 1
    assert contact["name"] == "Mere K"
    assert box.versions_seen == {"2.16"}


@pytest.mark.parametrize("index_delay_seconds", [0, 60])
@pytest.mark.parametrize("lost", [Fault(status=502, apply_then_fail=True),
                                  Fault(timeout=True, apply_then_fail=True)])  # fmt: skip
def test_a_retry_after_a_lost_answer_makes_no_duplicate(
    lost: Fault, index_delay_seconds: int
) -> None:
    box, dest = _setup(index_delay_seconds=index_delay_seconds)
    box.faults.add(Fault(status=lost.status, timeout=lost.timeout, apply_then_fail=True,
                         method="POST", path=r"^/contacts$"))  # fmt: skip
    with pytest.raises(TransientError):
        dest.deliver(_event(CUSTOMER), ATTEMPT)
    assert len(box.contacts) == 1  # applied at Intercom; the answer was lost
    done = dest.deliver(_event(CUSTOMER), Attempt("dl_1", "k1", 2))
    assert len(box.contacts) == 1
    assert _creates(box) == 1
    assert done.links[0].external_id == next(iter(box.contacts))
    if index_delay_seconds:  # search could not see it yet: the 409 named it
        assert ("POST", "/contacts") in box.requests[-3:]


def test_a_contact_gone_from_the_crosswalk_is_found_again() -> None:
    box, dest = _setup()
    first = dest.deliver(_event(CUSTOMER), ATTEMPT).links[0].external_id
    lead = box.create_contact(role="lead", email="x@kowhai.nz")
    box.merge_contacts(lead, first)  # the user survives; its id stays
    dest.deliver(_event(CUSTOMER, {"cus_01": lead}), ATTEMPT)  # a link to the merged lead: 410
    assert len(box.contacts) == 1
    assert box.contacts[first]["external_id"] == "cus_01"


def test_someone_elses_contact_is_not_taken_over() -> None:
    box, dest = _setup()
    box.create_contact(role="user", email="mere@kowhai.nz", external_id="other-system-7")
    with pytest.raises(RejectedError, match="another external_id"):
        dest.deliver(_event(CUSTOMER), ATTEMPT)
    assert len(box.contacts) == 1


def test_non_customer_events_are_refused() -> None:
    _, dest = _setup()
    event = OutboundEvent(id="e", type="invoice.paid", subject="inv", time=NOW,
                          payload={"object": {}}, traceparent=None, links={})  # fmt: skip
    with pytest.raises(RejectedError):
        dest.deliver(event, ATTEMPT)
