"""One traceparent per request: the trace id in a problem, in the logs and on the events a
write emits is the same, whether the caller sent a traceparent or not."""

from __future__ import annotations

from fastapi import Request

from synchub.api.writes import request_traceparent
from synchub.observability.tracecontext import trace_id_of
from tests.harness import Harness

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _echo(request: Request) -> dict[str, str]:
    return {"traceparent": request_traceparent(request), "trace_id": request.state.trace_id}


def test_a_request_without_traceparent_has_one_trace_everywhere(harness: Harness) -> None:
    harness.http.app.add_api_route("/_trace", _echo, methods=["GET"])  # type: ignore[attr-defined]
    first = harness.http.get("/_trace").json()
    again = harness.http.get("/_trace").json()
    assert trace_id_of(first["traceparent"]) == first["trace_id"]  # one trace per request
    assert first["trace_id"] != again["trace_id"]  # and a new one for the next request


def test_a_callers_traceparent_is_continued(harness: Harness) -> None:
    harness.http.app.add_api_route("/_trace", _echo, methods=["GET"])  # type: ignore[attr-defined]
    seen = harness.http.get("/_trace", headers={"traceparent": CALLER}).json()
    assert seen["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id_of(seen["traceparent"]) == seen["trace_id"]
