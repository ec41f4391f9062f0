"""The HTML reference page for an OpenAPI 3.1 document: one self-contained file. Pure.

No external CSS, scripts, fonts or images; a Content-Security-Policy meta tag forbids them.
Every value from the document passes through `html.escape`. Descriptions are plain text:
paragraphs, `- ` bullet lists, `code` spans and http(s) links (so every problem type URI is a
link), nothing else of Markdown. An operation is listed under each of its tags ("Other" when it
has none). Schemas are nested field tables with `$ref`s and `allOf` resolved; within one body a
named schema is unfolded once and later named, which ends recursion and keeps linked schemas
from multiplying the page (also capped at 6 levels and 400 rows per body).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from html import escape
from typing import Any

from synchub.contract.model import (
    METHODS,
    Json,
    deref,
    effective_security,
    flatten_schema,
    schema_members,
    schema_types,
    show_security,
    show_types,
)

MAX_DEPTH = 6  # nested tables deeper than this are hard to read on any screen
MAX_ROWS = 400  # field rows per body; the rest is left to the OpenAPI document
_URL = re.compile(r"https?://[^\s<>\"'`)\]}]+")
_PROBLEM = re.compile(r"https?://[^\s<>\"'`)\]}]*/problems/[A-Za-z0-9._~-]+")
_CODE = re.compile(r"`([^`]+)`")
_FACTS = (
    ("pattern", "pattern"),
    ("minLength", "min length"),
    ("maxLength", "max length"),
    ("minimum", "minimum"),
    ("exclusiveMinimum", "greater than"),
    ("maximum", "maximum"),
    ("exclusiveMaximum", "less than"),
    ("minItems", "min items"),
    ("maxItems", "max items"),
    ("default", "default"),
    ("example", "example"),
)
_CSS = """
body{margin:0;background:#fff;color:#1a1a1a;font:16px/1.5 system-ui,-apple-system,"Segoe UI",
Roboto,sans-serif}
header,nav,main{max-width:62rem;margin:0 auto;padding:0 1rem}
a{color:#0b57d0}
h1,h2,h3,h4{line-height:1.25}
h2{border-bottom:2px solid #d0d4d9;padding-bottom:.25rem;margin-top:2.5rem}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em;
background:#f1f3f5;border-radius:3px}
code{padding:0 .2em;overflow-wrap:anywhere}
pre{padding:.75rem;overflow-x:auto}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border:1px solid #c4c9cf;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f1f3f5}
.op{border:1px solid #c4c9cf;border-radius:6px;padding:0 1rem 1rem;margin:1.5rem 0}
.method{display:inline-block;min-width:4.2em;padding:.1em .4em;border-radius:4px;color:#fff;
font-weight:700;font-size:.85em;text-align:center}
.get{background:#1d6b3a}.post{background:#1f4f99}.put,.patch{background:#7a4a00}
.delete{background:#a01818}.other{background:#4a4a4a}
.muted{color:#555}.warn{color:#8a1c1c;font-weight:700}
details{margin:.25rem 0}summary{cursor:pointer}
@media (max-width:40rem){body{font-size:15px}th,td{padding:.25rem}.op{padding:0 .5rem .5rem}}
"""
_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
{body}
</body>
</html>
"""

Operation = tuple[str, str, str, Json]  # anchor, method, path, operation object


def render_html(spec: Json) -> str:
    """The reference page for an OpenAPI document, as one self-contained HTML string."""
    info = _mapping(spec.get("info"))
    groups = _group_by_tag(spec)
    sections = [_tag_section(spec, tag, ops) for tag, ops in groups.items()]
    body = [
        _header(spec),
        _contents(groups),
        "<main>",
        _auth_section(spec),
        *sections,
        _problem_section(spec),
        "</main>",
    ]
    title = escape(str(info.get("title", "API reference")))
    return _PAGE.format(title=title, css=_CSS.strip(), body="\n".join(body))


def _header(spec: Json) -> str:
    info = _mapping(spec.get("info"))
    servers = [str(_mapping(s).get("url", "")) for s in _items(spec.get("servers"))]
    lines = [
        "<header>",
        f"<h1>{escape(str(info.get('title', 'API reference')))}</h1>",
        f'<p class="muted">Version {escape(str(info.get("version", "")))} · '
        f"OpenAPI {escape(str(spec.get('openapi', '')))}</p>",
        _prose(info.get("description")),
    ]
    if servers:
        lines.append("<p>Base URL: " + ", ".join(_text(s) for s in servers) + "</p>")
    return "\n".join([*lines, "</header>"])


def _contents(groups: dict[str, list[Operation]]) -> str:
    items = []
    for tag, ops in groups.items():
        links = "".join(
            f'<li><a href="#{a}">{escape(m.upper())} {escape(p)}</a></li>' for a, m, p, _ in ops
        )
        items.append(f'<li><a href="#{_anchor("tag", tag)}">{escape(tag)}</a><ul>{links}</ul></li>')
    return '<nav aria-label="Contents"><h2>Contents</h2><ul>' + "".join(items) + "</ul></nav>"


def _group_by_tag(spec: Json) -> dict[str, list[Operation]]:
    groups: dict[str, list[Operation]] = {
        str(_mapping(t).get("name")): [] for t in _items(spec.get("tags"))
    }
    used: set[str] = set()
    for path, raw in _mapping(spec.get("paths")).items():
        item = _mapping(deref(spec, raw))
        for method in METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            for tag in [str(t) for t in _items(op.get("tags"))] or ["Other"]:
                name = str(op.get("operationId") or f"{method}-{path}")
                anchor = _unique(_anchor("op", f"{name}-{tag}"), used)
                groups.setdefault(tag, []).append((anchor, method, str(path), op))
    return {tag: ops for tag, ops in groups.items() if ops}


def _anchor(prefix: str, text: str) -> str:
    return f"{prefix}-" + re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-").lower()


def _unique(anchor: str, used: set[str]) -> str:
    candidate, n = anchor, 1
    while candidate in used:
        n += 1
        candidate = f"{anchor}-{n}"
    used.add(candidate)
    return candidate


def _auth_section(spec: Json) -> str:
    schemes = _mapping(_mapping(spec.get("components")).get("securitySchemes"))
    rows = [
        f"<tr><td><code>{escape(str(name))}</code></td><td>{escape(str(_mapping(s).get('type')))}"
        f"</td><td>{_scheme_details(_mapping(s))}</td></tr>"
        for name, s in schemes.items()
    ]
    default = effective_security(spec, {})
    default_text = show_security(default) if default else "none (operations are open)"
    return "\n".join(
        [
            '<section aria-labelledby="auth"><h2 id="auth">Authentication</h2>',
            f"<p>Default requirement: {escape(default_text)}. "
            "Each operation below names the scope it needs.</p>",
            _table(["Scheme", "Type", "Details"], rows) if rows else "",
            "</section>",
        ]
    )


def _scheme_details(scheme: Json) -> str:
    parts = [_prose(scheme.get("description"))]
    for key in ("scheme", "bearerFormat", "in", "name", "openIdConnectUrl"):
        if key in scheme:
            parts.append(f"<div>{escape(key)}: {_text(str(scheme[key]))}</div>")
    for flow, spec in _mapping(scheme.get("flows")).items():
        parts.append(_flow(str(flow), _mapping(spec)))
    return "".join(parts)


def _flow(name: str, flow: Json) -> str:
    urls = "".join(
        f"<div>{escape(key)}: {_text(str(flow[key]))}</div>"
        for key in ("authorizationUrl", "tokenUrl", "refreshUrl")
        if key in flow
    )
    scopes = "".join(
        f"<li><code>{escape(str(scope))}</code> {escape(str(text))}</li>"
        for scope, text in _mapping(flow.get("scopes")).items()
    )
    return f"<p><strong>{escape(name)} flow</strong></p>{urls}<ul>{scopes}</ul>"


def _tag_section(spec: Json, tag: str, ops: list[Operation]) -> str:
    info = next(
        (_mapping(t) for t in _items(spec.get("tags")) if _mapping(t).get("name") == tag), {}
    )
    anchor = _anchor("tag", tag)
    parts = [f'<section aria-labelledby="{anchor}"><h2 id="{anchor}">{escape(tag)}</h2>']
    parts.append(_prose(info.get("description")))
    parts += [_operation(spec, *op) for op in ops]
    return "\n".join([*parts, "</section>"])


def _operation(spec: Json, anchor: str, method: str, path: str, op: Json) -> str:
    css = method if method in ("get", "post", "put", "patch", "delete") else "other"
    title = (
        f'<span class="method {css}">{escape(method.upper())}</span> <code>{escape(path)}</code>'
    )
    parts = [f'<article class="op" id="{anchor}"><h3>{title}</h3>']
    if op.get("summary"):
        parts.append(f"<p><strong>{_text(str(op['summary']))}</strong></p>")
    if op.get("deprecated") is True:
        parts.append('<p class="warn">Deprecated.</p>')
    parts += [_prose(op.get("description")), _operation_auth(spec, op)]
    parts += [_parameters(spec, path, op), _request_body(spec, op), _responses(spec, op)]
    return "\n".join([*parts, "</article>"])


def _operation_auth(spec: Json, op: Json) -> str:
    requirements = effective_security(spec, op)
    if requirements is None:
        return "<p>Authentication: none.</p>"
    return f"<p>Authentication: {escape(show_security(requirements))}.</p>"


def _parameters(spec: Json, path: str, op: Json) -> str:
    item = _mapping(deref(spec, _mapping(spec.get("paths")).get(path)))
    merged: dict[tuple[str, str], Json] = {}
    for raw in [*_items(item.get("parameters")), *_items(op.get("parameters"))]:
        param = _mapping(deref(spec, raw))
        merged[(str(param.get("in")), str(param.get("name")))] = param
    rows = [_parameter_row(spec, p) for p in merged.values()]
    if not rows:
        return ""
    return "<h4>Parameters</h4>" + _table(["Name", "In", "Required", "Type", "Description"], rows)


def _parameter_row(spec: Json, param: Json) -> str:
    schema = param.get("schema", {})
    required = "yes" if param.get("in") == "path" or param.get("required") is True else "no"
    notes = _prose(param.get("description")) + _facts(_essence(spec, schema))
    if param.get("deprecated") is True:
        notes = '<span class="warn">Deprecated.</span> ' + notes
    cells = [f"<code>{escape(str(param.get('name')))}</code>", escape(str(param.get("in")))]
    cells += [required, escape(_label(spec, schema)), notes]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _request_body(spec: Json, op: Json) -> str:
    body = _mapping(deref(spec, op.get("requestBody")))
    if not body:
        return ""
    needed = "required" if body.get("required") is True else "optional"
    head = f'<h4>Request body <span class="muted">({needed})</span></h4>'
    return head + _prose(body.get("description")) + _content(spec, body)


def _responses(spec: Json, op: Json) -> str:
    parts = ["<h4>Responses</h4>"]
    for status, raw in _mapping(op.get("responses")).items():
        response = _mapping(deref(spec, raw))
        summary = _text(str(response.get("description", "")))
        parts.append(f"<h5><code>{escape(str(status))}</code> {summary}</h5>")
        details = _headers(spec, response) + _content(spec, response)
        if details and not str(status).startswith("2"):  # error bodies repeat; fold them
            details = f"<details><summary>Headers and body</summary>{details}</details>"
        parts.append(details)
    return "\n".join(parts)


def _headers(spec: Json, response: Json) -> str:
    rows = []
    for name, raw in _mapping(response.get("headers")).items():
        header = _mapping(deref(spec, raw))
        schema = header.get("schema", {})
        cells = [f"<code>{escape(str(name))}</code>", escape(_label(spec, schema))]
        cells.append(_prose(header.get("description")) + _facts(_essence(spec, schema)))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return _table(["Header", "Type", "Description"], rows) if rows else ""


def _content(spec: Json, holder: Json) -> str:
    parts = []
    for media, raw in _mapping(holder.get("content")).items():
        media_type = _mapping(raw)
        parts.append(f"<p>Media type <code>{escape(str(media))}</code></p>")
        if "schema" in media_type:
            parts.append(_schema(spec, media_type["schema"], _Body(), 0))
        parts.append(_examples(media_type))
    return "\n".join(parts)


def _examples(media_type: Json) -> str:
    values = [media_type["example"]] if "example" in media_type else []
    values += [_mapping(e).get("value") for e in _mapping(media_type.get("examples")).values()]
    return "".join(
        f"<details><summary>Example</summary><pre>{_text(_json(v))}</pre></details>"
        for v in values
        if v is not None
    )


@dataclass
class _Body:
    """What one body's tables have shown so far: named schemas, and rows left in its budget.

    A named schema is unfolded once per body; later mentions point back to it. That ends
    recursion and keeps densely linked schemas from multiplying the page.
    """

    shown: set[str] = field(default_factory=set)
    rows_left: int = MAX_ROWS

    def is_first(self, raw: Any) -> bool:
        """Whether raw is inline or a named schema not yet shown in this body (then it is)."""
        ref = _ref_of(raw)
        if ref in self.shown:
            return False
        if ref:
            self.shown.add(ref)
        return True


def _schema(spec: Json, raw: Any, body: _Body, depth: int) -> str:
    """A schema as a field table when it has fields, else its type and facts."""
    body.is_first(raw)
    members = _alternatives(spec, flatten_schema(spec, raw))
    if len(members) > 1 and depth < MAX_DEPTH:
        options = "".join(_member(spec, ref, m, body, depth) for ref, m in members)
        return f"<p>One of:</p><ul>{options}</ul>"
    flat = members[0][1]
    properties = _mapping(flat.get("properties"))
    if properties and depth < MAX_DEPTH:
        required = {str(r) for r in _items(flat.get("required"))}
        rows = [
            _field_row(spec, str(n), s, n in required, body, depth) for n, s in properties.items()
        ]
        return _table(["Field", "Type", "Required", "Description"], rows)
    items = flat.get("items")
    if isinstance(items, dict) and _has_fields(spec, items) and depth < MAX_DEPTH:
        return "<p>Array of:</p>" + _schema(spec, items, body, depth + 1)
    return f"<p>{escape(_label(spec, raw))}</p>{_facts(flat)}"


def _alternatives(spec: Json, flat: Json) -> list[tuple[str, Json]]:
    """flat's anyOf/oneOf members, leaving out a bare null (the type label shows it)."""
    members = schema_members(spec, flat)
    return [m for m in members if schema_types(m[1]) != frozenset({"null"})] or members


def _member(spec: Json, ref: str, member: Json, body: _Body, depth: int) -> str:
    name = escape(_member_name(ref, member))
    if not body.is_first({"$ref": ref} if ref else member):
        return f'<li>{name} <span class="muted">(shown above)</span></li>'
    return f"<li>{name}{_schema(spec, member, body, depth + 1)}</li>"


def _field_row(spec: Json, name: str, raw: Any, required: bool, body: _Body, depth: int) -> str:
    body.rows_left -= 1
    if body.rows_left < 0:
        return ""
    flat = flatten_schema(spec, raw)
    notes = _prose(flat.get("description")) + _facts(_essence(spec, raw))
    if flat.get("deprecated") is True:
        notes = '<span class="warn">Deprecated.</span> ' + notes
    notes += _nested(spec, name, raw, body, depth)
    cells = [f"<code>{escape(name)}</code>", escape(_label(spec, raw)), "yes" if required else "no"]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in [*cells, notes]) + "</tr>"


def _nested(spec: Json, name: str, raw: Any, body: _Body, depth: int) -> str:
    """The fields under a field, folded, or a note when they were shown above or cut."""
    target = _expandable(spec, raw)
    if not _has_fields(spec, target):
        return ""
    label = escape(_label(spec, target))
    if _ref_of(target) in body.shown:
        return f'<p class="muted">Same shape as {label} above.</p>'
    if depth + 1 >= MAX_DEPTH or body.rows_left <= 0:
        return f'<p class="muted">Fields of {label} are in the OpenAPI document.</p>'
    inner = _schema(spec, target, body, depth + 1)
    summary = f"Fields of <code>{escape(name)}</code> ({label})"
    return f"<details><summary>{summary}</summary>{inner}</details>"


def _expandable(spec: Json, raw: Any) -> Any:
    """What a field unfolds into: its array items, or the one alternative of a nullable ref."""
    flat = flatten_schema(spec, raw)
    if schema_types(flat) - {"null"} == {"array"}:
        return _mapping(flat.get("items"))
    members = _alternatives(spec, flat)
    if len(members) == 1 and members[0][0]:
        return {"$ref": members[0][0]}
    return raw


def _essence(spec: Json, raw: Any) -> Json:
    """The schema whose constraints a row shows: the one alternative of a nullable schema."""
    alternatives = _alternatives(spec, flatten_schema(spec, raw))
    return alternatives[0][1] if len(alternatives) == 1 else flatten_schema(spec, raw)


def _has_fields(spec: Json, raw: Any) -> bool:
    flat = flatten_schema(spec, raw)
    return bool(_mapping(flat.get("properties"))) or len(_alternatives(spec, flat)) > 1


def _label(spec: Json, raw: Any, depth: int = 0) -> str:
    """A schema's type in a few words: `Customer`, `array of string`, `string (date-time)`."""
    flat = flatten_schema(spec, raw)
    members = schema_members(spec, flat)
    if len(members) > 1:
        return " | ".join(_member_name(ref, m) for ref, m in members)
    types = schema_types(flat)
    name = _ref_name(raw)
    if name and types & {"object", "array"} == types - {"null"}:
        return name + " | null" * ("null" in types)
    if types - {"null"} == {"array"} and depth < MAX_DEPTH:
        items = f"array of {_label(spec, flat.get('items', {}), depth + 1)}"
        return items + " | null" * ("null" in types)
    fmt = f" ({flat['format']})" if "format" in flat else ""
    return show_types(types) + fmt


def _member_name(ref: str, member: Json) -> str:
    if ref:
        return ref.rsplit("/", 1)[-1]
    fmt = f" ({member['format']})" if "format" in member else ""
    return show_types(schema_types(member)) + fmt


def _ref_name(raw: Any) -> str:
    return _ref_of(raw).rsplit("/", 1)[-1]


def _facts(flat: Json) -> str:
    facts = [f"{label}: {_value(key, flat[key])}" for key, label in _FACTS if key in flat]
    values = flat.get("enum", [flat["const"]] if "const" in flat else None)
    if isinstance(values, list):
        facts.insert(0, "one of: " + ", ".join(f"<code>{_text(_json(v))}</code>" for v in values))
    facts += [
        word
        for key, word in (("readOnly", "read-only"), ("writeOnly", "write-only"))
        if flat.get(key) is True
    ]
    return f'<div class="muted">{"; ".join(facts)}</div>' if facts else ""


def _value(keyword: str, value: Any) -> str:
    """A keyword's value: patterns and formats as written, examples and defaults as JSON."""
    if keyword in ("pattern", "format") and isinstance(value, str):
        return f"<code>{_text(value)}</code>"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return escape(str(value))
    return f"<code>{_text(_json(value))}</code>"


def _problem_section(spec: Json) -> str:
    found = sorted({uri.rstrip(".,;:") for uri in _PROBLEM.findall(_json(spec))})
    if not found:
        return ""
    items = "".join(f'<li><a href="{escape(u)}">{escape(u)}</a></li>' for u in found)
    return (
        '<section aria-labelledby="problems"><h2 id="problems">Problem types</h2>'
        "<p>Error responses are <code>application/problem+json</code> (RFC 9457). "
        f"Their <code>type</code> is one of:</p><ul>{items}</ul></section>"
    )


def _prose(value: Any) -> str:
    """Description text as paragraphs, and `- ` lines as bullet lists."""
    if not isinstance(value, str) or not value.strip():
        return ""
    blocks = [b.strip() for b in re.split(r"\n\s*\n", value) if b.strip()]
    return "".join(_list(b) if b.startswith(("- ", "* ")) else f"<p>{_text(b)}</p>" for b in blocks)


def _list(block: str) -> str:
    items: list[str] = []
    for line in block.splitlines():
        if line.startswith(("- ", "* ")):
            items.append(line[2:].strip())
        else:  # a wrapped line continues the item above
            items[-1] += " " + line.strip()
    return "<ul>" + "".join(f"<li>{_text(item)}</li>" for item in items) + "</ul>"


def _text(value: str) -> str:
    """Escaped text with http(s) URLs as links and `code` spans as code."""
    parts, last = [], 0
    for match in _URL.finditer(value):
        url = match[0].rstrip(".,;:")
        parts.append(_CODE.sub(r"<code>\1</code>", escape(value[last : match.start()])))
        parts.append(f'<a href="{escape(url)}">{escape(url)}</a>')
        last = match.start() + len(url)
    parts.append(_CODE.sub(r"<code>\1</code>", escape(value[last:])))
    return "".join(parts)


def _table(headings: list[str], rows: list[str]) -> str:
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headings)
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=False, default=str)


def _ref_of(raw: Any) -> str:
    ref = raw.get("$ref") if isinstance(raw, dict) else None
    return ref if isinstance(ref, str) else ""


def _mapping(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
