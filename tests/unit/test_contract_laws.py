"""Laws of the contract checker, over generated schemas."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from synchub.contract.model import compare

Doc = dict[str, Any]

_SCALAR_TYPES = st.sampled_from(["string", "integer", "number", "boolean"])


@st.composite
def scalar_schemas(draw: st.DrawFn) -> Doc:
    """A scalar schema with a random mix of type, nullability, enum, bounds, pattern and format."""
    schema: Doc = {}
    if draw(st.booleans()):
        kind = draw(_SCALAR_TYPES)
        schema["type"] = [kind, "null"] if draw(st.booleans()) else kind
    if draw(st.booleans()):
        schema["enum"] = draw(st.lists(st.sampled_from(["a", "b", "c", 1, 2]), unique=True))
    for keyword in ("minLength", "maxLength", "minimum", "maximum"):
        if draw(st.booleans()):
            schema[keyword] = draw(st.integers(0, 5))
    for keyword, values in (("pattern", ["^a", "^b"]), ("format", ["email", "uuid"])):
        if draw(st.booleans()):
            schema[keyword] = draw(st.sampled_from(values))
    return schema


def _api(query: Doc, value: Doc) -> Doc:
    """One operation that takes `query` as a query parameter and returns `value` in its body."""
    body = {"type": "object", "properties": {"value": value}}
    return {
        "openapi": "3.1.0",
        "paths": {
            "/v1/things": {
                "get": {
                    "parameters": [{"name": "q", "in": "query", "schema": query}],
                    "responses": {
                        "200": {
                            "description": "ok",
                            "content": {"application/json": {"schema": body}},
                        }
                    },
                }
            }
        },
    }


def _is_breaking(old: Doc, new: Doc) -> bool:
    return any(c.severity == "breaking" for c in compare(old, new))


@given(scalar_schemas(), scalar_schemas())
def test_a_document_never_differs_from_a_copy_of_itself(query: Doc, value: Doc) -> None:
    doc = _api(query, value)

    assert compare(doc, copy.deepcopy(doc)) == []


@given(scalar_schemas(), scalar_schemas())
def test_narrowing_a_request_breaks_exactly_when_widening_a_response_back_does(
    a: Doc, b: Doc
) -> None:
    """A→B narrows what a request accepts iff B→A widens what a response promises."""
    request_breaks = _is_breaking(_api(a, {}), _api(b, {}))
    response_breaks = _is_breaking(_api({}, b), _api({}, a))

    assert request_breaks == response_breaks


@given(scalar_schemas())
def test_dropping_every_constraint_from_a_request_never_breaks(schema: Doc) -> None:
    assert not _is_breaking(_api(schema, {}), _api({}, {}))
