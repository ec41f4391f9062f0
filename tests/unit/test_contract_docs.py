"""The HTML reference page: self-contained, escaped, complete and readable."""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser
from typing import Any

from synchub.contract.docs import render_html

PROBLEM = "https://synchub.dev/problems/not-found"


def _spec() -> dict[str, Any]:
    """A document with tags, scopes, nested and recursive schemas, and problem types."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "synchub API",
            "version": "1.2.0",
            "description": "One truth about customers.\n\nErrors use `application/problem+json`.",
        },
        "servers": [{"url": "https://hub.example/v1"}],
        "security": [{"oauth2": []}],
        "tags": [
            {"name": "Customers", "description": "Golden customer records."},
            {"name": "Deliveries"},
        ],
        "paths": {
            "/v1/customers/{id}": {
                "parameters": [
                    {
                        "name": "id",
                        "in": "path",
                        "required": True,
                        "description": "Customer ID.",
                        "schema": {"type": "string", "pattern": "^cus_"},
                    }
                ],
                "get": {
                    "operationId": "getCustomer",
                    "tags": ["Customers"],
                    "summary": "Fetch a customer",
                    "description": f"Returns 404 with type {PROBLEM} when it is not visible.",
                    "security": [{"oauth2": ["read:customers"]}],
                    "parameters": [
                        {
                            "name": "expand",
                            "in": "query",
                            "description": "Related records to include.",
                            "schema": {"type": "array", "items": {"type": "string"}},
                        }
                    ],
                    "responses": {
                        200: {
                            "description": "The customer.",
                            "headers": {
                                "RateLimit": {
                                    "description": "Remaining quota.",
                                    "schema": {"type": "string"},
                                }
                            },
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Customer"}
                                }
                            },
                        },
                        "404": {"$ref": "#/components/responses/NotFound"},
                    },
                },
            },
            "/v1/customers": {
                "post": {
                    "tags": ["Customers"],
                    "summary": "Create a customer",
                    "security": [{"oauth2": ["write:customers"]}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/CustomerInput"}
                            }
                        },
                    },
                    "responses": {"201": {"description": "Created."}},
                }
            },
            "/v1/deliveries/{id}/replay": {
                "post": {
                    "tags": ["Deliveries"],
                    "deprecated": True,
                    "security": [{"oauth2": ["admin:deliveries"]}],
                    "responses": {"202": {"description": "Queued."}},
                }
            },
            "/health": {"get": {"security": [], "responses": {"200": {"description": "ok"}}}},
        },
        "components": {
            "securitySchemes": {
                "oauth2": {
                    "type": "oauth2",
                    "description": "Client credentials.",
                    "flows": {
                        "clientCredentials": {
                            "tokenUrl": "https://hub.example/oauth/token",
                            "scopes": {
                                "read:customers": "Read golden customer records.",
                                "write:customers": "Create and update customers.",
                            },
                        }
                    },
                }
            },
            "responses": {
                "NotFound": {
                    "description": "Not found.",
                    "content": {
                        "application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/Problem"},
                            "example": {"type": PROBLEM, "title": "Resource not found"},
                        }
                    },
                }
            },
            "schemas": {
                "Customer": {
                    "type": "object",
                    "required": ["id"],
                    "properties": {
                        "id": {"type": "string", "readOnly": True},
                        "status": {"type": "string", "enum": ["active", "archived"]},
                        "address": {
                            "type": "object",
                            "properties": {"city": {"type": "string", "description": "Town."}},
                        },
                        "parent": {
                            "anyOf": [{"$ref": "#/components/schemas/Customer"}, {"type": "null"}]
                        },
                        "children": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Customer"},
                        },
                    },
                },
                "CustomerInput": {
                    "allOf": [
                        {"type": "object", "properties": {"email": {"type": "string"}}},
                        {"required": ["email"], "properties": {"name": {"maxLength": 200}}},
                    ]
                },
                "Problem": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string", "format": "uri", "default": "about:blank"}
                    },
                },
            },
        },
    }


class _Page(HTMLParser):
    """Collects what a test asks about a page: tags, ids, links and nesting balance."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link"})

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.ids: list[str] = []
        self.links: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        found = dict(attrs)
        if found.get("id"):
            self.ids.append(str(found["id"]))
        if tag == "a" and found.get("href"):
            self.links.append(str(found["href"]))
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open[-1:] == [tag], (self.open[-5:], tag)
        self.open.pop()


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def test_page_is_well_formed_with_unique_anchors() -> None:
    page = _parse(render_html(_spec()))

    assert page.open == []
    assert len(page.ids) == len(set(page.ids))
    internal = [link[1:] for link in page.links if link.startswith("#")]
    assert set(internal) <= set(page.ids)


def test_page_loads_nothing_from_outside() -> None:
    html = render_html(_spec())
    page = _parse(html)

    assert not {"script", "link", "img", "iframe"} & set(page.tags)
    assert "@import" not in html
    assert "url(" not in html
    assert "default-src 'none'" in html
    assert 'name="viewport"' in html


def test_every_value_from_the_document_is_escaped() -> None:
    spec = _spec()
    spec["info"]["title"] = "<script>alert(1)</script>"
    spec["info"]["description"] = 'Click <a href="javascript:alert(1)">here</a> or javascript:x'
    customer = spec["components"]["schemas"]["Customer"]
    customer["properties"]['"><img src=x onerror=alert(1)>'] = {"enum": ["<b>bold</b>"]}

    html = render_html(spec)
    page = _parse(html)

    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "img" not in page.tags
    assert "b" not in page.tags
    assert not [link for link in page.links if not link.startswith(("#", "https://"))]


def test_header_shows_title_version_description_and_base_url() -> None:
    text = _text(render_html(_spec()))

    assert "synchub API" in text
    assert "Version 1.2.0" in text
    assert "One truth about customers." in text
    assert "https://hub.example/v1" in text


def test_auth_lists_schemes_scopes_and_each_operations_scope() -> None:
    html = render_html(_spec())
    text = _text(html)

    assert "https://hub.example/oauth/token" in text
    assert "read:customers Read golden customer records." in text
    get_customer = html[html.index('id="op-getcustomer-customers"') :]
    assert "Authentication: oauth2 (read:customers)" in _text(get_customer[:2000])
    health = html[html.index("GET</span> <code>/health") :]
    assert "Authentication: none." in _text(health)


def test_operations_are_grouped_by_tag_in_the_documents_tag_order() -> None:
    text = _text(render_html(_spec()))
    main = text[text.index("Authentication") :]

    customers, deliveries, other = (main.index(t) for t in ("Customers", "Deliveries", "Other"))
    assert customers < main.index("/v1/customers/{id}") < deliveries
    assert deliveries < main.index("/v1/deliveries/{id}/replay") < other < main.index("/health")
    assert "Golden customer records." in main
    assert "Deprecated." in main


def test_parameters_show_name_in_required_type_and_description() -> None:
    text = _text(render_html(_spec()))

    assert "id path yes string Customer ID. pattern: ^cus_" in text
    assert "expand query no array of string Related records to include." in text


def test_schemas_render_as_nested_field_tables_with_refs_and_all_of_resolved() -> None:
    text = _text(render_html(_spec()))

    assert "address object no Town." not in text  # nested fields sit in their own table
    assert "Fields of address (object)" in text
    assert "city string no Town." in text
    assert "email string yes" in text
    assert "name any no max length: 200" in text
    assert 'one of: "active" , "archived"' in text
    assert 'type string (uri) no default: "about:blank"' in text
    assert "read-only" in text
    assert "RateLimit string Remaining quota." in text


def test_recursive_schemas_are_shown_once_then_named() -> None:
    text = _text(render_html(_spec()))

    assert "children array of Customer" in text
    assert "parent Customer | null no Same shape as Customer above." in text
    assert text.count("Same shape as Customer above.") == 2


def test_problem_type_uris_are_links_wherever_they_are_mentioned() -> None:
    page = _parse(render_html(_spec()))

    # the operation description, the response example and the problem types list
    assert page.links.count(PROBLEM) == 3


def test_text_and_badges_meet_wcag_aa_contrast() -> None:
    html = render_html(_spec())
    css = html[html.index("<style>") : html.index("</style>")]
    foregrounds = set(re.findall(r"[;{]color:#([0-9a-f]{6})", css)) - {"fff"}
    badges = re.findall(
        r"\.(?:get|post|put|patch|delete|other)[^{]*\{background:#([0-9a-f]{6})", css
    )
    light = {"ffffff", "f1f3f5"}

    assert foregrounds
    assert badges
    for fg in foregrounds:
        for bg in light:
            assert _contrast(fg, bg) >= 4.5, (fg, bg)
    for bg in badges:
        assert _contrast("ffffff", bg) >= 4.5, bg


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_an_empty_document_still_renders_a_page() -> None:
    page = _parse(render_html({}))

    assert page.open == []
    assert "h1" in page.tags


def test_densely_linked_schemas_are_unfolded_once_per_body() -> None:
    names = [f"S{i}" for i in range(16)]
    schemas = {
        n: {
            "type": "object",
            "properties": {m.lower(): {"$ref": f"#/components/schemas/{m}"} for m in names},
        }
        for n in names
    }
    spec = {
        "paths": {
            "/v1/s": {
                "get": {
                    "responses": {
                        "200": {
                            "description": "ok",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/S0"}}
                            },
                        }
                    }
                }
            }
        },
        "components": {"schemas": schemas},
    }

    html = render_html(spec)

    assert html.count("<table>") <= len(names)
    assert _parse(html).open == []


def test_bulleted_descriptions_become_lists() -> None:
    spec = _spec()
    spec["info"]["description"] = "Rules:\n\n- one\n  wrapped\n- two"

    html = render_html(spec)

    assert "<ul><li>one wrapped</li><li>two</li></ul>" in html


def test_nullable_fields_show_the_format_and_limits_of_their_value() -> None:
    spec = _spec()
    op = spec["paths"]["/v1/customers/{id}"]["get"]
    op["parameters"].append(
        {
            "name": "since",
            "in": "query",
            "schema": {
                "anyOf": [
                    {"type": "string", "format": "date-time", "maxLength": 40},
                    {"type": "null"},
                ]
            },
        }
    )

    text = _text(render_html(spec))

    assert "since query no string (date-time) | null max length: 40" in text


def test_error_bodies_are_folded_and_success_bodies_are_open() -> None:
    html = render_html(_spec())
    errors = html[html.index("<code>404</code>") :]

    assert errors.index("<details><summary>Headers and body</summary>") < errors.index("<table>")
    success = html[html.index("<code>200</code>") : html.index("<code>404</code>")]
    assert "Headers and body" not in success


def test_an_operation_with_two_tags_is_listed_under_both() -> None:
    spec = _spec()
    spec["paths"]["/v1/customers"]["post"]["tags"] = ["Customers", "Deliveries"]

    page = _parse(render_html(spec))

    assert {"op-post--v1-customers-customers", "op-post--v1-customers-deliveries"} <= set(page.ids)
