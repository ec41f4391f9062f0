"""Which OpenAPI changes break existing clients: one flagged and one safe pair per rule."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest

from synchub.contract.model import RULES, Change, compare, unchanged_refs

Doc = dict[str, Any]
Mutation = Callable[[Doc, Doc], None]


def _doc() -> Doc:
    """A small but realistic /v1 document: list, create, fetch, and an open status route."""
    customer_ref = {"$ref": "#/components/schemas/Customer"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "synchub", "version": "1.0.0"},
        "paths": {
            "/v1/customers": {
                "get": {
                    "security": [{"oauth2": ["read:customers"]}],
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                        },
                        {"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
                    ],
                    "responses": {"200": _json_response(_ref("CustomerList"))},
                },
                "post": {
                    "security": [{"oauth2": ["write:customers"]}],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("CustomerInput")}},
                    },
                    "responses": {
                        "201": _json_response(customer_ref),
                        "422": _json_response(_ref("Problem"), "application/problem+json"),
                    },
                },
            },
            "/v1/customers/{id}": {
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "get": {
                    "security": [{"oauth2": ["read:customers"]}],
                    "responses": {"200": _json_response(customer_ref)},
                },
            },
            "/v1/status": {"get": {"responses": {"200": _json_response({"type": "object"})}}},
        },
        "components": {
            "schemas": {
                "Customer": {
                    "type": "object",
                    "required": ["id", "email"],
                    "properties": {
                        "id": {"type": "string"},
                        "email": {"type": "string", "format": "email"},
                        "name": {"type": "string", "description": "Display name."},
                        "status": {"type": "string", "enum": ["active", "archived"]},
                        "balance": {"type": "integer"},
                        "parent": customer_ref,
                        "tags": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "CustomerList": {
                    "type": "object",
                    "required": ["data"],
                    "properties": {"data": {"type": "array", "items": customer_ref}},
                },
                "CustomerInput": {
                    "type": "object",
                    "required": ["email"],
                    "properties": {
                        "email": {"type": "string", "maxLength": 254},
                        "name": {"type": "string", "minLength": 1, "maxLength": 200},
                        "country": {"type": "string", "pattern": "^[A-Z]{2}$"},
                        "plan": {"type": "string", "enum": ["free", "pro"]},
                        "seats": {"type": "number", "minimum": 1, "maximum": 500},
                    },
                },
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status"],
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "code": {"type": "string"},
                    },
                },
            },
            "securitySchemes": {"oauth2": {"type": "oauth2", "flows": {}}},
        },
    }


def _ref(name: str) -> Doc:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_response(schema: Doc, media: str = "application/json") -> Doc:
    return {"description": "ok", "content": {media: {"schema": schema}}}


def _schema(doc: Doc, name: str) -> Doc:
    schema: Doc = doc["components"]["schemas"][name]
    return schema


def _prop(doc: Doc, schema: str, name: str) -> Doc:
    prop: Doc = _schema(doc, schema)["properties"][name]
    return prop


def _op(doc: Doc, path: str, method: str) -> Doc:
    op: Doc = doc["paths"][path][method]
    return op


def _changes(mutate: Mutation) -> list[Change]:
    old, new = _doc(), _doc()
    mutate(old, new)
    return compare(old, new)


def _codes(changes: list[Change], severity: str) -> set[str]:
    return {c.code for c in changes if c.severity == severity}


# --- mutations that must be flagged as breaking --------------------------------------------


def _remove_path(old: Doc, new: Doc) -> None:
    del new["paths"]["/v1/customers/{id}"]


def _move_path_to_v2(old: Doc, new: Doc) -> None:
    new["paths"]["/v2/customers/{id}"] = new["paths"].pop("/v1/customers/{id}")


def _remove_operation(old: Doc, new: Doc) -> None:
    del new["paths"]["/v1/customers"]["post"]


def _rename_success_status(old: Doc, new: Doc) -> None:
    responses = _op(new, "/v1/customers", "post")["responses"]
    responses["200"] = responses.pop("201")


def _remove_response_field(old: Doc, new: Doc) -> None:
    del _schema(new, "Customer")["properties"]["name"]


def _retype_response_field(old: Doc, new: Doc) -> None:
    _prop(new, "Customer", "balance")["type"] = "string"


def _widen_response_number(old: Doc, new: Doc) -> None:
    _prop(new, "Customer", "balance")["type"] = "number"


def _make_response_nullable(old: Doc, new: Doc) -> None:
    _prop(new, "Customer", "name")["type"] = ["string", "null"]


def _make_response_nullable_by_any_of(old: Doc, new: Doc) -> None:
    _schema(new, "Customer")["properties"]["parent"] = {
        "anyOf": [_ref("Customer"), {"type": "null"}]
    }


def _add_response_enum_value(old: Doc, new: Doc) -> None:
    _prop(new, "Customer", "status")["enum"].append("deleted")


def _make_response_field_optional(old: Doc, new: Doc) -> None:
    _schema(new, "Customer")["required"] = ["id"]


def _remove_response_media_type(old: Doc, new: Doc) -> None:
    content = _op(new, "/v1/customers/{id}", "get")["responses"]["200"]["content"]
    content["application/xml"] = content.pop("application/json")


def _add_required_request_field(old: Doc, new: Doc) -> None:
    _schema(new, "CustomerInput")["properties"]["phone"] = {"type": "string"}
    _schema(new, "CustomerInput")["required"].append("phone")


def _make_request_field_required(old: Doc, new: Doc) -> None:
    _schema(new, "CustomerInput")["required"].append("name")


def _add_required_query_parameter(old: Doc, new: Doc) -> None:
    params = _op(new, "/v1/customers", "get")["parameters"]
    params.append({"name": "workspace", "in": "query", "required": True, "schema": {}})


def _add_required_header_parameter(old: Doc, new: Doc) -> None:
    params = _op(new, "/v1/customers", "get")["parameters"]
    params.append({"name": "X-Workspace", "in": "header", "required": True, "schema": {}})


def _add_path_parameter(old: Doc, new: Doc) -> None:
    item = new["paths"].pop("/v1/customers/{id}")
    item["parameters"].append({"name": "ws", "in": "path", "required": True, "schema": {}})
    new["paths"]["/v1/{ws}/customers/{id}"] = item
    old["paths"]["/v1/{ws}/customers/{id}"] = old["paths"].pop("/v1/customers/{id}")


def _make_parameter_required(old: Doc, new: Doc) -> None:
    _op(new, "/v1/customers", "get")["parameters"][0]["required"] = True


def _retype_parameter(old: Doc, new: Doc) -> None:
    _op(new, "/v1/customers", "get")["parameters"][0]["schema"]["type"] = "string"


def _lower_parameter_maximum(old: Doc, new: Doc) -> None:
    _op(new, "/v1/customers", "get")["parameters"][0]["schema"]["maximum"] = 50


def _retype_request_field(old: Doc, new: Doc) -> None:
    _prop(new, "CustomerInput", "seats")["type"] = "string"


def _narrow_request_number(old: Doc, new: Doc) -> None:
    _prop(new, "CustomerInput", "seats")["type"] = "integer"


def _lower_max_length(old: Doc, new: Doc) -> None:
    _prop(new, "CustomerInput", "email")["maxLength"] = 100


def _raise_min_length(old: Doc, new: Doc) -> None:
    _prop(new, "CustomerInput", "name")["minLength"] = 3


def _raise_minimum(old: Doc, new: Doc) -> None:
    _prop(new, "CustomerInput", "seats")["minimum"] = 5


def _lower_maximum(old: Doc, new: Doc) -> None:
    _prop(new, "CustomerInput", "seats")["maximum"] = 10


def _add_pattern(old: Doc, new: Doc) -> None:
    _prop(new, "CustomerInput", "name")["pattern"] = "^[A-Za-z ]+$"


def _change_pattern(old: Doc, new: Doc) -> None:
    _prop(new, "CustomerInput", "country")["pattern"] = "^[A-Z]{3}$"


def _remove_request_enum_value(old: Doc, new: Doc) -> None:
    _prop(new, "CustomerInput", "plan")["enum"] = ["free"]


def _restrict_request_to_enum(old: Doc, new: Doc) -> None:
    _prop(new, "CustomerInput", "name")["enum"] = ["a", "b"]


def _close_request_object(old: Doc, new: Doc) -> None:
    _schema(new, "CustomerInput")["additionalProperties"] = False


def _remove_request_field_from_closed_object(old: Doc, new: Doc) -> None:
    del _schema(new, "CustomerInput")["properties"]["country"]
    _schema(old, "CustomerInput")["additionalProperties"] = False
    _schema(new, "CustomerInput")["additionalProperties"] = False


def _secure_open_operation(old: Doc, new: Doc) -> None:
    _op(new, "/v1/status", "get")["security"] = [{"oauth2": ["read:status"]}]


def _secure_operation_with_empty_security(old: Doc, new: Doc) -> None:
    _op(old, "/v1/status", "get")["security"] = []
    _op(new, "/v1/status", "get")["security"] = [{"oauth2": []}]


def _secure_everything_at_the_top(old: Doc, new: Doc) -> None:
    new["security"] = [{"oauth2": []}]


def _require_another_scope(old: Doc, new: Doc) -> None:
    _op(new, "/v1/customers", "get")["security"] = [{"oauth2": ["read:customers", "admin"]}]


def _remove_request_media_type(old: Doc, new: Doc) -> None:
    content = _op(new, "/v1/customers", "post")["requestBody"]["content"]
    content["application/x-www-form-urlencoded"] = content.pop("application/json")


def _add_required_request_body(old: Doc, new: Doc) -> None:
    _op(new, "/v1/status", "get")["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }


def _make_request_body_required(old: Doc, new: Doc) -> None:
    _op(old, "/v1/customers", "post")["requestBody"]["required"] = False


def _add_response_variant(old: Doc, new: Doc) -> None:
    for doc in (old, new):
        doc["components"]["schemas"]["Card"] = {"type": "object", "properties": {}}
        doc["components"]["schemas"]["Bank"] = {"type": "object", "properties": {}}
        doc["components"]["schemas"]["Wallet"] = {"type": "object", "properties": {}}
        _schema(doc, "Customer")["properties"]["method"] = {"oneOf": [_ref("Card"), _ref("Bank")]}
    _prop(new, "Customer", "method")["oneOf"].append(_ref("Wallet"))


def _remove_request_variant(old: Doc, new: Doc) -> None:
    for doc in (old, new):
        doc["components"]["schemas"]["Card"] = {"type": "object", "properties": {}}
        doc["components"]["schemas"]["Bank"] = {"type": "object", "properties": {}}
        _schema(doc, "CustomerInput")["properties"]["method"] = {
            "oneOf": [_ref("Card"), _ref("Bank")]
        }
    _prop(new, "CustomerInput", "method")["oneOf"].pop()


def _narrow_request_any_of(old: Doc, new: Doc) -> None:
    _schema(old, "CustomerInput")["properties"]["ref"] = {
        "anyOf": [{"type": "string"}, {"type": "integer"}]
    }
    _schema(new, "CustomerInput")["properties"]["ref"] = {"anyOf": [{"type": "string"}]}


def _remove_field_inside_all_of(old: Doc, new: Doc) -> None:
    for doc in (old, new):
        customer = _schema(doc, "Customer")
        doc["components"]["schemas"]["Named"] = {
            "type": "object",
            "properties": {"nickname": {"type": "string"}},
        }
        doc["components"]["schemas"]["Customer"] = {"allOf": [customer, _ref("Named")]}
    del _schema(new, "Named")["properties"]["nickname"]


def _remove_field_deep_in_recursive_schema(old: Doc, new: Doc) -> None:
    for doc in (old, new):
        doc["components"]["schemas"]["Node"] = {
            "type": "object",
            "properties": {
                "label": {"type": "string"},
                "children": {"type": "array", "items": _ref("Node")},
            },
        }
        _schema(doc, "Customer")["properties"]["tree"] = _ref("Node")
    del _schema(new, "Node")["properties"]["label"]


BREAKING: list[tuple[Mutation, str]] = [
    (_remove_path, "path-removed"),
    (_move_path_to_v2, "path-removed"),
    (_remove_operation, "operation-removed"),
    (_rename_success_status, "response-success-status-removed"),
    (_remove_response_field, "response-property-removed"),
    (_retype_response_field, "response-type-changed"),
    (_widen_response_number, "response-type-widened"),
    (_make_response_nullable, "response-became-nullable"),
    (_make_response_nullable_by_any_of, "response-became-nullable"),
    (_add_response_enum_value, "response-enum-value-added"),
    (_make_response_field_optional, "response-property-became-optional"),
    (_remove_response_media_type, "response-media-type-removed"),
    (_add_required_request_field, "request-property-added-required"),
    (_make_request_field_required, "request-property-became-required"),
    (_add_required_query_parameter, "parameter-added-required"),
    (_add_required_header_parameter, "parameter-added-required"),
    (_add_path_parameter, "parameter-added-required"),
    (_make_parameter_required, "parameter-became-required"),
    (_retype_parameter, "request-type-changed"),
    (_lower_parameter_maximum, "request-constraint-tightened"),
    (_retype_request_field, "request-type-changed"),
    (_narrow_request_number, "request-type-narrowed"),
    (_lower_max_length, "request-constraint-tightened"),
    (_raise_min_length, "request-constraint-tightened"),
    (_raise_minimum, "request-constraint-tightened"),
    (_lower_maximum, "request-constraint-tightened"),
    (_add_pattern, "request-pattern-added"),
    (_change_pattern, "request-pattern-changed"),
    (_remove_request_enum_value, "request-enum-value-removed"),
    (_restrict_request_to_enum, "request-enum-restricted"),
    (_close_request_object, "request-additional-properties-closed"),
    (_remove_request_field_from_closed_object, "request-property-rejected"),
    (_secure_open_operation, "security-added"),
    (_secure_operation_with_empty_security, "security-added"),
    (_secure_everything_at_the_top, "security-added"),
    (_require_another_scope, "security-tightened"),
    (_remove_request_media_type, "request-media-type-removed"),
    (_add_required_request_body, "request-body-added-required"),
    (_make_request_body_required, "request-body-became-required"),
    (_add_response_variant, "response-variant-added"),
    (_remove_request_variant, "request-variant-removed"),
    (_narrow_request_any_of, "request-type-narrowed"),
    (_remove_field_inside_all_of, "response-property-removed"),
    (_remove_field_deep_in_recursive_schema, "response-property-removed"),
]


@pytest.mark.parametrize(("mutate", "code"), BREAKING, ids=[m.__name__ for m, _ in BREAKING])
def test_breaking_change_is_flagged(mutate: Mutation, code: str) -> None:
    changes = _changes(mutate)

    assert code in _codes(changes, "breaking"), changes


# --- mutations that must not break anyone ---------------------------------------------------


def _add_optional_request_field(old: Doc, new: Doc) -> None:
    _schema(new, "CustomerInput")["properties"]["phone"] = {"type": "string"}


def _add_response_field(old: Doc, new: Doc) -> None:
    _schema(new, "Customer")["properties"]["created_at"] = {"type": "string"}


def _add_required_response_field(old: Doc, new: Doc) -> None:
    _schema(new, "Customer")["properties"]["created_at"] = {"type": "string"}
    _schema(new, "Customer")["required"].append("created_at")


def _add_path(old: Doc, new: Doc) -> None:
    new["paths"]["/v1/invoices"] = {"get": {"responses": {"200": {"description": "ok"}}}}


def _add_v2_with_breaking_shape(old: Doc, new: Doc) -> None:
    new["paths"]["/v2/customers"] = {
        "post": {
            "security": [{"oauth2": ["admin"]}],
            "parameters": [{"name": "ws", "in": "query", "required": True, "schema": {}}],
            "requestBody": {"required": True, "content": {"text/csv": {"schema": {}}}},
            "responses": {"202": {"description": "accepted"}},
        }
    }


def _add_optional_parameter(old: Doc, new: Doc) -> None:
    params = _op(new, "/v1/customers", "get")["parameters"]
    params.append({"name": "cursor", "in": "query", "schema": {"type": "string"}})


def _add_operation(old: Doc, new: Doc) -> None:
    _op(new, "/v1/customers/{id}", "get")  # exists
    new["paths"]["/v1/customers/{id}"]["delete"] = {"responses": {"204": {"description": "x"}}}


def _rename_path_parameter(old: Doc, new: Doc) -> None:
    item = new["paths"].pop("/v1/customers/{id}")
    item["parameters"][0]["name"] = "customer_id"
    new["paths"]["/v1/customers/{customer_id}"] = item


def _change_header_case(old: Doc, new: Doc) -> None:
    _op(new, "/v1/customers", "get")["parameters"][1]["name"] = "x-trace"


def _raise_max_length(old: Doc, new: Doc) -> None:
    _prop(new, "CustomerInput", "email")["maxLength"] = 320


def _lower_minimum(old: Doc, new: Doc) -> None:
    _prop(new, "CustomerInput", "seats")["minimum"] = 0


def _raise_parameter_maximum(old: Doc, new: Doc) -> None:
    _op(new, "/v1/customers", "get")["parameters"][0]["schema"]["maximum"] = 500


def _drop_request_pattern(old: Doc, new: Doc) -> None:
    del _prop(new, "CustomerInput", "country")["pattern"]


def _add_request_enum_value(old: Doc, new: Doc) -> None:
    _prop(new, "CustomerInput", "plan")["enum"].append("enterprise")


def _remove_response_enum_value(old: Doc, new: Doc) -> None:
    _prop(new, "Customer", "status")["enum"] = ["active"]


def _widen_request_integer(old: Doc, new: Doc) -> None:
    _op(new, "/v1/customers", "get")["parameters"][0]["schema"]["type"] = "number"


def _make_request_field_optional(old: Doc, new: Doc) -> None:
    _schema(new, "CustomerInput")["required"] = []


def _make_parameter_optional(old: Doc, new: Doc) -> None:
    _op(old, "/v1/customers", "get")["parameters"][0]["required"] = True


def _add_response_status(old: Doc, new: Doc) -> None:
    responses = _op(new, "/v1/customers", "post")["responses"]
    responses["409"] = _json_response(_ref("Problem"), "application/problem+json")
    responses["202"] = {"description": "accepted"}


def _add_request_media_type(old: Doc, new: Doc) -> None:
    content = _op(new, "/v1/customers", "post")["requestBody"]["content"]
    content["application/merge-patch+json"] = {"schema": _ref("CustomerInput")}


def _change_descriptions(old: Doc, new: Doc) -> None:
    _prop(new, "Customer", "name")["description"] = "What the customer is called."
    _op(new, "/v1/customers", "get")["summary"] = "List customers"


def _inline_a_ref(old: Doc, new: Doc) -> None:
    content = _op(new, "/v1/customers", "post")["requestBody"]["content"]
    content["application/json"]["schema"] = copy.deepcopy(_schema(new, "CustomerInput"))


def _split_schema_into_all_of(old: Doc, new: Doc) -> None:
    schema = _schema(new, "CustomerInput")
    base = {"type": "object", "properties": {"email": schema["properties"].pop("email")}}
    new["components"]["schemas"]["Base"] = base
    new["components"]["schemas"]["CustomerInput"] = {"allOf": [_ref("Base"), schema]}


def _add_required_read_only_field_to_request(old: Doc, new: Doc) -> None:
    _schema(new, "CustomerInput")["properties"]["id"] = {"type": "string", "readOnly": True}
    _schema(new, "CustomerInput")["required"].append("id")


def _use_integer_status_keys(old: Doc, new: Doc) -> None:
    responses = _op(old, "/v1/customers/{id}", "get")["responses"]
    responses[200] = responses.pop("200")


def _add_response_variant_to_request(old: Doc, new: Doc) -> None:
    _schema(old, "CustomerInput")["properties"]["ref"] = {"anyOf": [{"type": "string"}]}
    _schema(new, "CustomerInput")["properties"]["ref"] = {
        "anyOf": [{"type": "string"}, {"type": "integer"}]
    }


SAFE: list[Mutation] = [
    _add_optional_request_field,
    _add_response_field,
    _add_required_response_field,
    _add_path,
    _add_v2_with_breaking_shape,
    _add_optional_parameter,
    _add_operation,
    _rename_path_parameter,
    _change_header_case,
    _raise_max_length,
    _lower_minimum,
    _raise_parameter_maximum,
    _drop_request_pattern,
    _add_request_enum_value,
    _remove_response_enum_value,
    _widen_request_integer,
    _make_request_field_optional,
    _make_parameter_optional,
    _add_response_status,
    _add_request_media_type,
    _change_descriptions,
    _inline_a_ref,
    _split_schema_into_all_of,
    _add_required_read_only_field_to_request,
    _use_integer_status_keys,
    _add_response_variant_to_request,
]


@pytest.mark.parametrize("mutate", SAFE, ids=[m.__name__ for m in SAFE])
def test_compatible_change_is_not_flagged(mutate: Mutation) -> None:
    changes = _changes(mutate)

    assert [c for c in changes if c.severity != "safe"] == []


# --- warnings, locations and the rest -------------------------------------------------------


def _deprecate_operation(old: Doc, new: Doc) -> None:
    _op(new, "/v1/customers", "get")["deprecated"] = True


def _deprecate_field(old: Doc, new: Doc) -> None:
    _prop(new, "Customer", "name")["deprecated"] = True


def _deprecate_parameter(old: Doc, new: Doc) -> None:
    _op(new, "/v1/customers", "get")["parameters"][0]["deprecated"] = True


def _remove_optional_parameter(old: Doc, new: Doc) -> None:
    _op(new, "/v1/customers", "get")["parameters"].pop(0)


def _remove_request_field(old: Doc, new: Doc) -> None:
    del _schema(new, "CustomerInput")["properties"]["country"]


def _drop_security(old: Doc, new: Doc) -> None:
    del _op(new, "/v1/customers", "get")["security"]


def _remove_error_field(old: Doc, new: Doc) -> None:
    del _schema(new, "Problem")["properties"]["code"]


def _remove_error_status(old: Doc, new: Doc) -> None:
    del _op(new, "/v1/customers", "post")["responses"]["422"]


WARNINGS: list[tuple[Mutation, str]] = [
    (_deprecate_operation, "operation-deprecated"),
    (_deprecate_field, "field-deprecated"),
    (_deprecate_parameter, "parameter-deprecated"),
    (_remove_optional_parameter, "parameter-removed"),
    (_remove_request_field, "request-property-removed"),
    (_drop_security, "security-removed"),
    (_remove_error_field, "response-property-removed"),
    (_remove_error_status, "response-status-removed"),
]


@pytest.mark.parametrize(("mutate", "code"), WARNINGS, ids=[m.__name__ for m, _ in WARNINGS])
def test_change_needing_sign_off_is_a_warning_not_breaking(mutate: Mutation, code: str) -> None:
    changes = _changes(mutate)

    assert code in _codes(changes, "warning"), changes
    assert _codes(changes, "breaking") == set()


def test_identical_documents_have_no_changes() -> None:
    assert compare(_doc(), _doc()) == []


def test_compare_does_not_modify_its_inputs() -> None:
    old, new = _doc(), _doc()
    _remove_field_inside_all_of(old, new)
    before = (copy.deepcopy(old), copy.deepcopy(new))

    compare(old, new)

    assert (old, new) == before


def test_change_names_path_method_and_a_logical_pointer() -> None:
    changes = _changes(_remove_response_field)

    (change,) = [
        c for c in changes if c.code == "response-property-removed" and c.path.endswith("{id}")
    ]
    assert (change.path, change.method) == ("/v1/customers/{id}", "get")
    assert change.pointer == (
        "/paths/~1v1~1customers~1{id}/get/responses/200/content/application~1json"
        "/schema/properties/name"
    )
    assert "name" in change.message


def test_removed_field_is_reported_for_every_operation_that_returns_it() -> None:
    changes = _changes(_remove_response_field)

    where = {(c.path, c.method) for c in changes if c.code == "response-property-removed"}
    assert where == {
        ("/v1/customers", "get"),
        ("/v1/customers", "post"),
        ("/v1/customers/{id}", "get"),
    }


def test_v1_path_moved_to_v2_names_the_successor_and_adds_the_v2_path() -> None:
    changes = _changes(_move_path_to_v2)

    removed = next(c for c in changes if c.code == "path-removed")
    added = next(c for c in changes if c.code == "path-added")
    assert "/v2/customers/{id}" in removed.message
    assert (added.severity, added.path) == ("safe", "/v2/customers/{id}")
    assert "new major /v2" in added.message


def test_operation_level_parameter_overrides_path_level_one() -> None:
    old, new = _doc(), _doc()
    op = _op(new, "/v1/customers/{id}", "get")
    op["parameters"] = [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    ]

    assert compare(old, new) == []


def test_parameters_and_bodies_may_be_refs() -> None:
    old, new = _doc(), _doc()
    for doc in (old, new):
        doc["components"]["parameters"] = {
            "Limit": _op(doc, "/v1/customers", "get")["parameters"][0]
        }
        _op(doc, "/v1/customers", "get")["parameters"][0] = {
            "$ref": "#/components/parameters/Limit"
        }
    new["components"]["parameters"]["Limit"]["required"] = True

    assert "parameter-became-required" in _codes(compare(old, new), "breaking")


def test_unresolvable_ref_is_a_warning_not_a_crash() -> None:
    old, new = _doc(), _doc()
    _schema(new, "Customer")["properties"]["owner"] = {"$ref": "other.yaml#/User"}
    _schema(old, "Customer")["properties"]["owner"] = {"$ref": "other.yaml#/User"}

    assert "unresolved-ref" in _codes(compare(old, new), "warning")


def test_self_containing_objects_terminate() -> None:
    old, new = _doc(), _doc()
    for doc in (old, new):
        loop: Doc = {"type": "object", "properties": {}}
        loop["properties"]["again"] = loop  # what a YAML alias to an ancestor produces
        _schema(doc, "Customer")["properties"]["loop"] = loop
    _schema(new, "Customer")["properties"]["loop"]["properties"]["extra"] = {"type": "string"}

    assert _codes(compare(old, new), "breaking") == set()


def test_ref_cycles_through_several_schemas_terminate() -> None:
    old, new = _doc(), _doc()
    for doc in (old, new):
        doc["components"]["schemas"]["A"] = {"properties": {"b": _ref("B")}}
        doc["components"]["schemas"]["B"] = {"allOf": [_ref("A"), {"properties": {"a": _ref("A")}}]}
        _schema(doc, "Customer")["properties"]["a"] = _ref("A")
    del _schema(new, "B")["allOf"][1]["properties"]["a"]

    assert "response-property-removed" in _codes(compare(old, new), "breaking")


def test_every_rule_has_a_kebab_case_code_and_a_known_severity() -> None:
    for code, severity in RULES.items():
        assert re.fullmatch(r"[a-z]+(-[a-z0-9]+)+", code), code
        assert severity in ("breaking", "warning", "safe")


def _dense(size: int, *, extra: bool = False) -> Doc:
    """`size` schemas that each refer to every other one: 2**size paths from the top."""
    names = [f"S{i}" for i in range(size)]
    schemas = {
        n: {"type": "object", "properties": {m.lower(): _ref(m) for m in names}} for n in names
    }
    if extra:
        schemas["S0"]["properties"]["extra"] = {"type": "string"}
    return {
        "openapi": "3.1.0",
        "paths": {"/v1/s": {"get": {"responses": {"200": _json_response(_ref("S1"))}}}},
        "components": {"schemas": schemas},
    }


def test_densely_linked_schemas_are_compared_once_per_body() -> None:
    changes = compare(_dense(16), _dense(16, extra=True))

    assert [(c.code, c.severity) for c in changes] == [("response-property-added", "safe")]
    assert changes[0].message.endswith("field s0.extra: added")


def test_unchanged_refs_are_those_whose_whole_closure_is_equal() -> None:
    old, new = _doc(), _doc()
    _prop(new, "CustomerInput", "email")["maxLength"] = 10

    unchanged = unchanged_refs(old, new)

    assert "#/components/schemas/Problem" in unchanged
    assert "#/components/schemas/Customer" in unchanged
    assert "#/components/schemas/CustomerInput" not in unchanged


def test_unchanged_refs_taint_everything_that_reaches_a_change() -> None:
    old, new = _doc(), _doc()
    _prop(new, "Customer", "name")["maxLength"] = 10

    unchanged = unchanged_refs(old, new)

    assert "#/components/schemas/Customer" not in unchanged
    assert "#/components/schemas/CustomerList" not in unchanged


def test_a_named_schema_that_becomes_one_of_several_keeps_its_pairing() -> None:
    old, new = _doc(), _doc()
    for doc in (old, new):
        doc["components"]["schemas"]["Card"] = {"type": "object", "properties": {}}
        doc["components"]["schemas"]["Bank"] = {"type": "object", "properties": {}}
    _schema(old, "Customer")["properties"]["method"] = _ref("Card")
    _schema(new, "Customer")["properties"]["method"] = {"oneOf": [_ref("Card"), _ref("Bank")]}

    changes = [c for c in compare(old, new) if c.path == "/v1/customers/{id}"]

    assert [(c.code, c.message.rsplit(": ", 1)[1]) for c in changes] == [
        ("response-variant-added", "alternative Bank was added")
    ]


def test_inline_alternatives_of_one_type_pair_by_title() -> None:
    """Alternatives that differ only in `required` (a common idiom) are not variant changes."""
    old, new = _doc(), _doc()
    for doc in (old, new):
        _schema(doc, "CustomerInput")["anyOf"] = [
            {"title": "by email", "required": ["email"]},
            {"title": "by name", "required": ["name"]},
        ]
    _schema(new, "CustomerInput")["anyOf"].reverse()
    _schema(new, "CustomerInput")["properties"]["phone"] = {"type": "string"}

    changes = compare(old, new)

    assert [c.code for c in changes] == ["request-property-added"]
