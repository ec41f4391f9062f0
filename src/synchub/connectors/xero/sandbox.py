"""An in-process Xero organisation (Accounting API 2.0: Contacts, Invoices, Payments).

Follows Xero's published behaviour: `xero-tenant-id` required, `Idempotency-Key` replays the
first response, contact names unique among active contacts, approved invoices not editable,
payments no larger than the amount due, `ValidationException` error bodies, 429 with
`Retry-After` and `X-Rate-Limit-Problem`.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from synchub.connectors.oauth_sandbox import SandboxAuthServer
from synchub.connectors.sandbox import Sandbox
from synchub.connectors.xero.client import dumps_exact, format_xero_offset

BASE = "/api.xro/2.0"
_WHERE = re.compile(r'(\w+)=="((?:[^"\\]|\\.)*)"')
KEPT_IDEMPOTENCY_KEYS = 2000  # stored replies kept across processes, newest first
SANDBOX_TOKEN = "xero-sandbox-token"  # noqa: S105 - the sandbox's own fake credential
SANDBOX_CLIENT_ID = "xero-sandbox-client"
SANDBOX_CLIENT_SECRET = "xero-sandbox-client-secret"  # noqa: S105 - the sandbox app's secret
# OAuth 2.0 (ADR 0023): login.xero.com authorize, identity.xero.com token, api.xero.com tenants.
OAUTH_PATHS = ("/identity/connect/authorize", "/connect/token")


def _reply(status: int, body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(
        status, headers={"Content-Type": "application/json"}, content=dumps_exact(body).encode()
    )


def validation_error(message: str) -> httpx.Response:
    """Xero's 400 body for a failed validation."""
    return _reply(
        400,
        {
            "ErrorNumber": 10,
            "Type": "ValidationException",
            "Message": "A validation exception occurred",
            "Elements": [{"ValidationErrors": [{"Message": message}]}],
        },
    )


class XeroSandbox(Sandbox):
    """One Xero organisation in memory."""

    vendor = "xero"

    def __init__(self, *, token: str = SANDBOX_TOKEN, tenant_id: str | None = None) -> None:
        super().__init__()
        self.token = token
        self.tenant_id = tenant_id or str(uuid.UUID(int=0x5A4E))
        self.contacts: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self.idempotency: dict[str, tuple[str, httpx.Response]] = {}
        self.idempotency_mismatches = 0
        self._invoice_seq = 0
        self.oauth = SandboxAuthServer(
            client_id=SANDBOX_CLIENT_ID, client_secret=SANDBOX_CLIENT_SECRET,
            client_auth="basic", rotate_refresh_tokens=True, prefix="xero-",
        )  # fmt: skip
        self.route("GET", OAUTH_PATHS[0], self.oauth.authorize)
        self.route("POST", OAUTH_PATHS[1], self._token)
        self.route("GET", r"/connections", self._tenants)
        self.route("POST", BASE + r"/Contacts(?:/([0-9a-f-]{36}))?", self._save_contact)
        self.route("GET", BASE + r"/Contacts/([0-9a-f-]{36})", self._get_contact)
        self.route("GET", BASE + r"/(Contacts|Invoices)", self._list)
        self.route("POST", BASE + r"/Invoices(?:/([0-9a-f-]{36}))?", self._save_invoice)
        self.route("GET", BASE + r"/Invoices/([0-9a-f-]{36})", self._get_invoice)
        self.route("PUT", BASE + r"/Payments", self._create_payment)

    def to_state(self) -> dict[str, Any]:
        """Contacts, invoices, payments, the invoice counter and the newest stored
        idempotent responses (Xero forgets keys too; the file stays small)."""
        with self.lock:
            keys = list(self.idempotency.items())[-KEPT_IDEMPOTENCY_KEYS:]
            return {
                "contacts": self.contacts,
                "invoices": self.invoices,
                "payments": self.payments,
                "invoice_seq": self._invoice_seq,
                "idempotency_mismatches": self.idempotency_mismatches,
                "oauth": self.oauth.to_state(),
                "idempotency": [
                    [key, fingerprint, r.status_code, list(r.headers.items()), r.text]
                    for key, (fingerprint, r) in keys
                ],
            }

    def from_state(self, state: dict[str, Any]) -> None:
        """Continue a kept organisation: numbers go on, stored replies still replay."""
        with self.lock:
            self.contacts = dict(state["contacts"])
            self.invoices = dict(state["invoices"])
            self.payments = dict(state["payments"])
            self._invoice_seq = int(state["invoice_seq"])
            self.idempotency_mismatches = int(state["idempotency_mismatches"])
            self.oauth.from_state(state.get("oauth", {}))
            self.idempotency = {
                key: (fingerprint, httpx.Response(status, headers=headers, content=text.encode()))
                for key, fingerprint, status, headers, text in state["idempotency"]
            }

    def authorised(self, request: httpx.Request) -> bool:
        """OAuth bearer token and the organisation's tenant id (the OAuth endpoints check
        their own client credentials; `/connections` needs no tenant)."""
        if request.url.path in OAUTH_PATHS:
            return True
        bearer = request.headers.get("Authorization") == f"Bearer {self.token}"
        bearer = bearer or self.oauth.accepts(request)
        if request.url.path == "/connections":
            return bearer
        return bool(bearer and request.headers.get("xero-tenant-id") == self.tenant_id)

    def _token(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        self._unsaved = True  # issued and spent tokens are kept with the organisation
        return self.oauth.token(request, match)

    def _tenants(self, _request: httpx.Request, _match: re.Match[str]) -> httpx.Response:
        """GET /connections: the organisations this token may reach (just this one)."""
        return httpx.Response(200, json=[{"id": str(uuid.UUID(int=0x5A4F)),
                                          "tenantId": self.tenant_id, "tenantType": "ORGANISATION",
                                          "tenantName": "Sandbox Ltd"}])  # fmt: skip

    def unauthorised(self) -> httpx.Response:
        """Xero's 401."""
        return _reply(
            401,
            {
                "Type": None,
                "Title": "Unauthorized",
                "Status": 401,
                "Detail": "AuthenticationUnsuccessful",
            },
        )

    def respond(self, request: httpx.Request) -> httpx.Response:
        """Replay the stored response for a repeated Idempotency-Key."""
        key = request.headers.get("Idempotency-Key")
        if key is None or request.method == "GET":
            return super().respond(request)
        fingerprint = hashlib.sha256(
            request.method.encode() + request.url.path.encode() + request.content
        ).hexdigest()
        with self.lock:  # held across check and store: concurrent same-key requests run once
            if key in self.idempotency:
                stored_fingerprint, response = self.idempotency[key]
                if stored_fingerprint != fingerprint:
                    self.idempotency_mismatches += 1
                return httpx.Response(
                    response.status_code, headers=response.headers, content=response.content
                )
            response = super().respond(request)
            if response.status_code < 500 and response.status_code != 429:
                self.idempotency[key] = (fingerprint, response)
            return response

    def seed_contact(self, name: str, email: str = "") -> str:
        """A contact someone created by hand in Xero (not through synchub)."""
        with self.lock:
            contact_id = str(uuid.uuid4())
            self.contacts[contact_id] = {
                "ContactID": contact_id,
                "ContactStatus": "ACTIVE",
                "Name": name,
                "EmailAddress": email,
                "UpdatedDateUTC": format_xero_offset(datetime.now(UTC)),
            }
            self.changed()
            return contact_id

    @staticmethod
    def _body(request: httpx.Request, collection: str) -> dict[str, Any]:
        data = json.loads(request.content, parse_float=Decimal)
        items = data.get(collection) or []
        return dict(items[0]) if items else {}

    @staticmethod
    def _ok(collection: str, item: dict[str, Any]) -> httpx.Response:
        return _reply(
            200,
            {
                "Id": str(uuid.uuid4()),
                "Status": "OK",
                "ProviderName": "synchub",
                "DateTimeUTC": format_xero_offset(datetime.now(UTC)),
                collection: [item],
            },
        )

    def _save_contact(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        body = self._body(request, "Contacts")
        contact_id = match.group(1)
        if contact_id and contact_id not in self.contacts:
            return validation_error("Contact not found")
        name = (body.get("Name") or (self.contacts.get(contact_id or "", {}).get("Name"))) or ""
        if not name.strip():
            return validation_error("The contact name must be specified.")
        for other in self.contacts.values():
            if (
                other["ContactID"] != contact_id
                and other["ContactStatus"] == "ACTIVE"
                and other["Name"].casefold() == name.casefold()
            ):
                return validation_error(
                    f"The contact name {name} is already assigned to another contact. "
                    "The contact name must be unique across all active contacts."
                )
        contact_id = contact_id or str(uuid.uuid4())
        created = contact_id not in self.contacts
        record = self.contacts.setdefault(
            contact_id, {"ContactID": contact_id, "ContactStatus": "ACTIVE"}
        )
        record.update({k: v for k, v in body.items() if k != "ContactID"})
        record["UpdatedDateUTC"] = format_xero_offset(datetime.now(UTC))
        self.record(request, entity=f"Contacts/{contact_id}", key=record.get("ContactNumber"),
                    created=created)  # fmt: skip
        return self._ok("Contacts", record)

    def _list(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        """GET /Contacts or /Invoices, with Xero's `where=Field=="value"` filter."""
        collection = match.group(1)
        records = list((self.contacts if collection == "Contacts" else self.invoices).values())
        where = request.url.params.get("where")
        if where:
            clause = _WHERE.fullmatch(where.strip())
            if clause is None:
                return validation_error(f"unsupported where clause: {where}")
            field, value = clause.group(1), re.sub(r"\\(.)", r"\1", clause.group(2))
            records = [r for r in records if str(r.get(field) or "").casefold() == value.casefold()]
        return _reply(
            200,
            {
                "Id": str(uuid.uuid4()),
                "Status": "OK",
                "ProviderName": "synchub",
                "DateTimeUTC": format_xero_offset(datetime.now(UTC)),
                collection: records,
            },
        )

    def _get_contact(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        record = self.contacts.get(match.group(1))
        if record is None:
            return _reply(404, {"Title": "Not Found", "Status": 404})
        return self._ok("Contacts", record)

    def _save_invoice(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        body = self._body(request, "Invoices")
        invoice_id = match.group(1)
        if invoice_id:
            current = self.invoices.get(invoice_id)
            if current is None:
                return validation_error("Invoice not found")
            if body.get("Status") == "VOIDED" and set(body) == {"Status"}:
                if current["AmountPaid"] > 0:
                    return validation_error("Invoice not of valid status for modification")
                current["Status"] = "VOIDED"
                self.record(request, entity=f"Invoices/{invoice_id}", key=current["Reference"])
                return self._ok("Invoices", current)
            if current["Status"] != "DRAFT":
                return validation_error("Invoice not of valid status for modification")
        contact_id = (body.get("Contact") or {}).get("ContactID")
        if contact_id not in self.contacts:
            return validation_error("A valid contact must be specified")
        lines = []
        for line in body.get("LineItems") or []:
            amount = line.get("Quantity", Decimal(1)) * line.get("UnitAmount", Decimal(0))
            lines.append({**line, "LineItemID": str(uuid.uuid4()), "LineAmount": amount})
        if not lines:
            return validation_error("Invoices must have at least one line item")
        line_total = sum((ln["LineAmount"] for ln in lines), Decimal(0))
        tax = sum((Decimal(ln.get("TaxAmount", 0)) for ln in lines), Decimal(0))
        if body.get("LineAmountTypes") == "NoTax":
            tax = Decimal(0)
        inclusive = body.get("LineAmountTypes") == "Inclusive"
        subtotal = line_total - tax if inclusive else line_total
        invoice_id = invoice_id or str(uuid.uuid4())
        created = invoice_id not in self.invoices
        if created:
            self._invoice_seq += 1
        record = {
            "InvoiceID": invoice_id,
            "InvoiceNumber": f"INV-{self._invoice_seq:04d}",
            "Type": body.get("Type", "ACCREC"),
            "Contact": {"ContactID": contact_id, "Name": self.contacts[contact_id]["Name"]},
            "Date": body.get("Date"),
            "DueDate": body.get("DueDate"),
            "Status": body.get("Status", "DRAFT"),
            "LineAmountTypes": body.get("LineAmountTypes"),
            "LineItems": lines,
            "SubTotal": subtotal,
            "TotalTax": tax,
            "Total": subtotal + tax,
            "AmountPaid": Decimal(0),
            "AmountDue": subtotal + tax,
            "CurrencyCode": body.get("CurrencyCode"),
            "Reference": body.get("Reference"),
            "UpdatedDateUTC": format_xero_offset(datetime.now(UTC)),
        }
        self.invoices[invoice_id] = record
        self.record(request, entity=f"Invoices/{invoice_id}", key=record["Reference"],
                    created=created)  # fmt: skip
        return self._ok("Invoices", record)

    def _get_invoice(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        record = self.invoices.get(match.group(1))
        if record is None:
            return _reply(404, {"Title": "Not Found", "Status": 404})
        return self._ok("Invoices", record)

    def _create_payment(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        body = self._body(request, "Payments")
        invoice = self.invoices.get((body.get("Invoice") or {}).get("InvoiceID", ""))
        if invoice is None:
            return validation_error("Invoice could not be found")
        if invoice["Status"] != "AUTHORISED":
            return validation_error("Payment cannot be applied to an invoice that is not approved")
        amount = Decimal(body.get("Amount", 0))
        if amount <= 0 or amount > invoice["AmountDue"]:
            return validation_error(
                "Payment amount exceeds the amount outstanding on this document"
            )
        payment_id = str(uuid.uuid4())
        invoice["AmountPaid"] += amount
        invoice["AmountDue"] -= amount
        if invoice["AmountDue"] == 0:
            invoice["Status"] = "PAID"
        record = {
            "PaymentID": payment_id,
            "Amount": amount,
            "Date": body.get("Date"),
            "Status": "AUTHORISED",
            "Reference": body.get("Reference"),
            "Invoice": {"InvoiceID": invoice["InvoiceID"]},
        }
        self.payments[payment_id] = record
        self.record(request, entity=f"Payments/{payment_id}",
                    key=f"invoice={invoice['InvoiceID']}", created=True)  # fmt: skip
        return self._ok("Payments", record)
