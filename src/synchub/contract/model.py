"""Breaking-change rules for OpenAPI 3.1 documents (STANDARDS.md §8). Pure.

`compare(old, new)` walks every path and operation and returns one `Change` per difference,
with a stable `code` (the keys of `RULES`), its severity, and where it is: the path template,
the method and a JSON Pointer (RFC 6901). The pointer is logical: it starts at the operation
(`/paths/~1v1~1customers/post/...`) and follows `$ref`s as if they were inlined, so a field is
named where a client meets it. Removed things point into the old document, the rest into the
new one. Requests must keep accepting what they accepted (narrowing breaks); responses must keep
promising what they promised (widening breaks).

Paths match by template with parameter names ignored (`/v1/a/{id}` is `/v1/a/{a_id}`). A new
path, including every path under a new major prefix such as `/v2`, is an addition; a path
removed from `/v1` is breaking even when `/v2` has its equivalent.

Limits:
- Only local `$ref`s (`#/...`) are resolved; any other is reported as `unresolved-ref` and not
  compared. Keywords beside a `$ref` override those of the referenced schema.
- Cost: a `$ref` whose schema, and everything it refers to, is identical in both documents is
  skipped. Any other pair of named schemas is compared once per request or response body,
  where it is first reached, so a change inside a shared schema is reported once per body,
  with the first path that leads to it. Cycles end there too; inline ones at a depth of 64.
- `allOf`: members are merged; `properties` and `required` are combined and `type` is
  intersected; for other keywords the last member wins (constraints are not intersected).
- `anyOf`/`oneOf` (the first present): the union of the members' types is compared. Members
  are paired by equal `$ref`, then by a type or a `title` that only one member on each side
  has, then inline members in order; paired members are compared field by field, unpaired
  ones are reported as variants added or removed. Identical findings are reported once.
- Not compared: `not`, `if`/`then`/`else`, `prefixItems`, `patternProperties`,
  `dependentRequired`, `multipleOf`, `discriminator`, response headers, links, callbacks.
- Patterns and formats are compared as text, media types as written.
- A status code matches only the same key (`200` is not `2XX`).
- Changes inside non-2xx responses are one level milder (breaking → warning): problem+json
  bodies are fixed by STANDARDS.md §5 and clients read them leniently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import unquote

Json = dict[str, Any]
Severity = Literal["breaking", "warning", "safe"]
Direction = Literal["request", "response"]
Member = tuple[str, Json]  # an anyOf/oneOf alternative: its $ref ("" when inline), flattened

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
MAX_DEPTH = 64
ALL_TYPES = frozenset({"null", "boolean", "object", "array", "number", "integer", "string"})
_MAJOR = re.compile(r"^/v(\d+)(?=/|$)")
_TEMPLATE = re.compile(r"\{[^}/]*\}")
_UPPER_BOUNDS = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")
_LOWER_BOUNDS = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")

# Every code `compare` can return, and how much it hurts an existing client.
RULES: dict[str, Severity] = {
    "path-removed": "breaking",
    "path-added": "safe",
    "operation-removed": "breaking",
    "operation-added": "safe",
    "operation-deprecated": "warning",
    "description-changed": "safe",
    "security-added": "breaking",
    "security-tightened": "breaking",
    "security-removed": "warning",
    "parameter-added-required": "breaking",
    "parameter-added": "safe",
    "parameter-removed": "warning",
    "parameter-became-required": "breaking",
    "parameter-became-optional": "safe",
    "parameter-deprecated": "warning",
    "request-body-added-required": "breaking",
    "request-body-added": "safe",
    "request-body-removed": "warning",
    "request-body-became-required": "breaking",
    "request-body-became-optional": "safe",
    "request-media-type-removed": "breaking",
    "request-media-type-added": "safe",
    "response-success-status-removed": "breaking",
    "response-status-removed": "warning",
    "response-status-added": "safe",
    "response-media-type-removed": "breaking",
    "response-media-type-added": "safe",
    "request-type-changed": "breaking",
    "request-type-narrowed": "breaking",
    "request-type-widened": "safe",
    "request-enum-value-removed": "breaking",
    "request-enum-value-added": "safe",
    "request-enum-restricted": "breaking",
    "request-enum-lifted": "safe",
    "request-constraint-tightened": "breaking",
    "request-constraint-loosened": "safe",
    "request-pattern-added": "breaking",
    "request-pattern-changed": "breaking",
    "request-pattern-removed": "safe",
    "request-format-added": "breaking",
    "request-format-changed": "breaking",
    "request-format-removed": "safe",
    "request-property-added-required": "breaking",
    "request-property-added": "safe",
    "request-property-removed": "warning",
    "request-property-rejected": "breaking",
    "request-property-became-required": "breaking",
    "request-property-became-optional": "safe",
    "request-additional-properties-closed": "breaking",
    "request-variant-removed": "breaking",
    "request-variant-added": "safe",
    "response-type-changed": "breaking",
    "response-type-widened": "breaking",
    "response-became-nullable": "breaking",
    "response-type-narrowed": "safe",
    "response-enum-value-added": "breaking",
    "response-enum-value-removed": "safe",
    "response-enum-lifted": "breaking",
    "response-enum-restricted": "safe",
    "response-constraint-loosened": "breaking",
    "response-constraint-tightened": "safe",
    "response-pattern-removed": "breaking",
    "response-pattern-changed": "breaking",
    "response-pattern-added": "safe",
    "response-format-removed": "breaking",
    "response-format-changed": "breaking",
    "response-format-added": "safe",
    "response-property-removed": "breaking",
    "response-property-became-optional": "breaking",
    "response-property-became-required": "safe",
    "response-property-added": "safe",
    "response-variant-added": "breaking",
    "response-variant-removed": "safe",
    "field-deprecated": "warning",
    "unresolved-ref": "warning",
}


@dataclass(frozen=True)
class Change:
    """One difference between two documents, and how much it hurts existing clients."""

    severity: Severity
    code: str
    path: str
    method: str
    pointer: str
    message: str

    @property
    def location(self) -> str:
        """`METHOD /path#/pointer`, for people."""
        return f"{self.method.upper()} {self.path}".strip() + f"#{self.pointer}"


@dataclass(frozen=True)
class _At:
    """Where a comparison stands: both documents, the operation, the direction and the pointer."""

    old_doc: Json
    new_doc: Json
    path: str = ""
    method: str = ""
    pointer: str = ""
    direction: Direction = "request"
    subject: str = ""
    trail: str = ""
    seen: frozenset[tuple[str, str]] = frozenset()
    done: set[tuple[str, str]] = field(default_factory=set)
    unchanged: frozenset[str] = frozenset()
    softened: bool = False

    def to(self, *tokens: object) -> _At:
        """The same place, one or more pointer tokens deeper."""
        return replace(self, pointer=self.pointer + pointer_of(*tokens))

    def change(self, code: str, message: str) -> Change:
        """A change of this kind at this place."""
        severity = RULES[code]
        if self.softened and severity == "breaking":
            severity = "warning"
        where = " ".join(p for p in (self.subject, f"field {self.trail}" * bool(self.trail)) if p)
        text = f"{where}: {message}" if where else message
        return Change(severity, code, self.path, self.method, self.pointer, text)


@dataclass(frozen=True)
class _Op:
    """One side of an operation: its path template, method, path item and operation object."""

    path: str
    method: str
    item: Json
    spec: Json


def pointer_of(*tokens: object) -> str:
    """RFC 6901 JSON Pointer text for these tokens."""
    return "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in tokens)


def resolve_ref(doc: Json, ref: str) -> Any:
    """The value a local `$ref` (`#/a/b`) points at in doc, or None when it cannot be found."""
    if not ref.startswith("#"):
        return None
    node: Any = doc
    for raw in ref[1:].split("/")[1:]:
        token = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node


def deref(doc: Json, node: Any) -> Any:
    """node with its `$ref` chain followed (siblings override), or None if it cannot be."""
    seen: set[str] = set()
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        target = resolve_ref(doc, ref)
        if ref in seen or target is None:
            return None
        seen.add(ref)
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        node = {**target, **siblings} if siblings and isinstance(target, dict) else target
    return node


def flatten_schema(doc: Json, schema: Any) -> Json:
    """schema with `$ref`s followed and `allOf` merged into one object (limits: module doc)."""
    return _flatten(doc, schema, frozenset())


def _flatten(doc: Json, schema: Any, seen: frozenset[str]) -> Json:
    key = _key(schema)
    resolved = deref(doc, schema)
    if key in seen or not isinstance(resolved, dict):
        return {}
    members = resolved.get("allOf")
    if not isinstance(members, list):
        return resolved
    merged = {k: v for k, v in resolved.items() if k != "allOf"}
    for member in members:
        merged = _merge(merged, _flatten(doc, member, seen | {key}))
    return merged


def _merge(a: Json, b: Json) -> Json:
    merged = {**a, **b}
    properties = {**_mapping(a.get("properties")), **_mapping(b.get("properties"))}
    required = [*_names(a.get("required")), *_names(b.get("required"))]
    if properties:
        merged["properties"] = properties
    if required:
        merged["required"] = list(dict.fromkeys(required))
    if "type" in a and "type" in b:
        merged["type"] = sorted(schema_types(a) & schema_types(b))
    return merged


def schema_members(doc: Json, schema: Json, depth: int = 0) -> list[Member]:
    """The alternatives of a flattened schema (its anyOf or oneOf members), or the schema itself."""
    options = schema.get("anyOf", schema.get("oneOf"))
    if not isinstance(options, list) or depth > 8:
        return [("", schema)]
    base = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
    found: list[Member] = []
    for option in options:
        ref = option.get("$ref", "") if isinstance(option, dict) else ""
        flat = _merge(base, flatten_schema(doc, option))
        inner = schema_members(doc, flat, depth + 1)
        found += [(r or (str(ref) if len(inner) == 1 else ""), m) for r, m in inner]
    return found


def schema_types(schema: Json) -> frozenset[str]:
    """The JSON types an uncomposed schema admits (all when it does not say); number ⊇ integer."""
    declared = schema.get("type")
    if isinstance(declared, str):
        types = {declared}
    elif isinstance(declared, list):
        types = {t for t in declared if isinstance(t, str)}
    elif "enum" in schema or "const" in schema:
        types = {_json_type(v) for v in _enum_values(schema) or []}
    elif any(k in schema for k in ("properties", "additionalProperties", "required")):
        types = {"object"}
    elif "items" in schema:
        types = {"array"}
    else:
        return ALL_TYPES
    if schema.get("nullable") is True:
        types.add("null")
    if "number" in types:
        types.add("integer")
    return frozenset(types)


def show_types(types: frozenset[str]) -> str:
    """Types as people write them: `string | null`, or `any`."""
    if types == ALL_TYPES:
        return "any"
    shown = types - {"integer"} if "number" in types else types
    return " | ".join(sorted(shown)) or "nothing"


def effective_security(doc: Json, operation: Json) -> list[dict[str, list[str]]] | None:
    """The security requirements that apply to an operation, or None when it is open."""
    requirements = operation.get("security", doc.get("security"))
    if not isinstance(requirements, list) or not requirements or {} in requirements:
        return None
    return [
        {str(scheme): [str(s) for s in scopes or []] for scheme, scopes in r.items()}
        for r in requirements
        if isinstance(r, dict)
    ]


def compare(old: Json, new: Json) -> list[Change]:
    """Every difference between two OpenAPI 3.1 documents, in the old document's order."""
    root = _At(old_doc=old, new_doc=new, unchanged=unchanged_refs(old, new))
    before, after = _path_index(old), _path_index(new)
    changes: list[Change] = []
    for key, (path, item) in before.items():
        if key in after:
            changes += _compare_path((path, item), after[key], root)
        else:
            changes.append(_path_removed(path, after, root))
    for key, (path, _) in after.items():
        if key not in before:
            changes.append(_path_added(path, before, root))
    return list(dict.fromkeys(changes))  # anyOf members that share a base repeat its changes


def unchanged_refs(old: Json, new: Json) -> frozenset[str]:
    """Local `$ref`s whose target, and everything it refers to, is the same in both documents."""
    graph: dict[str, set[str]] = {}
    dirty: list[str] = []
    for ref in _refs_in(old) | _refs_in(new):
        before, after = resolve_ref(old, ref), resolve_ref(new, ref)
        graph[ref] = _refs_in(before) | _refs_in(after)
        if before is None or not _is_same(before, after):
            dirty.append(ref)
    users: dict[str, set[str]] = {}
    for ref, targets in graph.items():
        for target in targets:
            users.setdefault(target, set()).add(ref)
    tainted = set(dirty)
    while dirty:
        for user in users.get(dirty.pop(), set()) - tainted:
            tainted.add(user)
            dirty.append(user)
    return frozenset(graph.keys() - tainted)


def _refs_in(node: Any) -> set[str]:
    """Every `$ref` string inside node, without following them."""
    found: set[str] = set()
    stack, visited = [node], set()
    while stack:
        item = stack.pop()
        if id(item) in visited:
            continue
        visited.add(id(item))
        if isinstance(item, dict):
            if isinstance(item.get("$ref"), str):
                found.add(item["$ref"])
            stack += item.values()
        elif isinstance(item, list):
            stack += item
    return found


def _is_same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except RecursionError:  # a YAML alias that contains itself
        return False


def _path_index(doc: Json) -> dict[str, tuple[str, Json]]:
    paths = _mapping(doc.get("paths"))
    index: dict[str, tuple[str, Json]] = {}
    for path, item in paths.items():
        resolved = deref(doc, item)
        if str(path).startswith("/") and isinstance(resolved, dict):
            index[_TEMPLATE.sub("{}", str(path))] = (str(path), resolved)
    return index


def _path_removed(path: str, after: dict[str, tuple[str, Json]], root: _At) -> Change:
    at = replace(root, path=path, pointer=pointer_of("paths", path))
    successor = _successor(path, after)
    note = f"; {successor} exists, but clients of {path} still call it" if successor else ""
    return at.change("path-removed", f"path {path} was removed{note}")


def _successor(path: str, after: dict[str, tuple[str, Json]]) -> str | None:
    major = _MAJOR.match(path)
    if major is None:
        return None
    key = _TEMPLATE.sub("{}", path)
    for other, (new_path, _) in after.items():
        found = _MAJOR.match(other)
        if found and int(found[1]) > int(major[1]) and _MAJOR.sub("", other) == _MAJOR.sub("", key):
            return new_path
    return None


def _path_added(path: str, before: dict[str, tuple[str, Json]], root: _At) -> Change:
    at = replace(root, path=path, pointer=pointer_of("paths", path))
    major = _MAJOR.match(path)
    known = {m[0] for m in (_MAJOR.match(p) for p in before) if m}
    if major and major[0] not in known:
        return at.change("path-added", f"path {path} was added under the new major {major[0]}")
    return at.change("path-added", f"path {path} was added")


def _compare_path(old: tuple[str, Json], new: tuple[str, Json], root: _At) -> list[Change]:
    changes: list[Change] = []
    for method in METHODS:
        old_spec, new_spec = old[1].get(method), new[1].get(method)
        at = replace(root, path=new[0], method=method, pointer=pointer_of("paths", new[0], method))
        if isinstance(old_spec, dict) and isinstance(new_spec, dict):
            before, after = (
                _Op(old[0], method, old[1], old_spec),
                _Op(new[0], method, new[1], new_spec),
            )
            changes += _compare_operation(before, after, at)
        elif isinstance(old_spec, dict):
            gone = replace(at, path=old[0], pointer=pointer_of("paths", old[0], method))
            changes.append(gone.change("operation-removed", f"{method.upper()} was removed"))
        elif isinstance(new_spec, dict):
            changes.append(at.change("operation-added", f"{method.upper()} was added"))
    return changes


def _compare_operation(old: _Op, new: _Op, at: _At) -> list[Change]:
    return [
        *_compare_annotations(old.spec, new.spec, at, deprecated="operation-deprecated"),
        *_compare_security(old, new, at),
        *_compare_parameters(old, new, at),
        *_compare_request_body(old, new, at),
        *_compare_responses(old, new, at),
    ]


def _compare_annotations(old: Json, new: Json, at: _At, *, deprecated: str | None) -> list[Change]:
    changes = []
    newly_deprecated = new.get("deprecated") is True and old.get("deprecated") is not True
    if deprecated and newly_deprecated:
        changes.append(at.to("deprecated").change(deprecated, "now deprecated"))
    for keyword in ("summary", "description"):
        if old.get(keyword) != new.get(keyword):
            changes.append(at.to(keyword).change("description-changed", f"{keyword} changed"))
    return changes


def _compare_security(old: _Op, new: _Op, at: _At) -> list[Change]:
    at = at.to("security")
    before = effective_security(at.old_doc, old.spec)
    after = effective_security(at.new_doc, new.spec)
    if before is None and after is None:
        return []
    if before is None:
        return [at.change("security-added", f"now requires {show_security(after or [])}")]
    if after is None:
        return [at.change("security-removed", "no longer requires authentication")]
    unmet = [r for r in before if not any(_is_met(n, r) for n in after)]
    if not unmet:
        return []
    message = f"callers with {show_security(unmet)} no longer qualify; now {show_security(after)}"
    return [at.change("security-tightened", message)]


def _is_met(requirement: dict[str, list[str]], granted: dict[str, list[str]]) -> bool:
    return all(s in granted and set(requirement[s]) <= set(granted[s]) for s in requirement)


def show_security(requirements: list[dict[str, list[str]]]) -> str:
    """Security requirements as `oauth2 (read:customers) or apiKey`."""
    shown = [
        " and ".join(f"{s} ({' '.join(scopes)})" if scopes else s for s, scopes in r.items())
        for r in requirements
    ]
    return " or ".join(shown) or "nothing"


def _compare_parameters(old: _Op, new: _Op, at: _At) -> list[Change]:
    before = _parameters(at.old_doc, old, _path_renames(old.path, new.path))
    after = _parameters(at.new_doc, new, {})
    changes: list[Change] = []
    for key, (pointer, param) in before.items():
        if key in after:
            here = _parameter_at(at, *after[key])
            changes += _compare_parameter(param, after[key][1], here)
        else:
            changes.append(_parameter_at(at, pointer, param).change("parameter-removed", "removed"))
    for key, (pointer, param) in after.items():
        if key not in before:
            required = _is_required(param)
            code = "parameter-added-required" if required else "parameter-added"
            message = "added" + " (required)" * required
            changes.append(_parameter_at(at, pointer, param).change(code, message))
    return changes


def _parameter_at(at: _At, pointer: str, param: Json) -> _At:
    return replace(at, pointer=pointer, subject=f"{param.get('in')} parameter {param['name']}")


def _parameters(doc: Json, op: _Op, renames: dict[str, str]) -> dict[tuple[str, str], Any]:
    listed = [
        (pointer_of("paths", op.path, "parameters", i), p)
        for i, p in enumerate(_items(op.item.get("parameters")))
    ] + [
        (pointer_of("paths", op.path, op.method, "parameters", i), p)
        for i, p in enumerate(_items(op.spec.get("parameters")))
    ]
    found: dict[tuple[str, str], Any] = {}
    for pointer, raw in listed:
        param = deref(doc, raw)
        if isinstance(param, dict) and isinstance(param.get("name"), str):
            found[_parameter_key(param, renames)] = (pointer, param)
    return found


def _parameter_key(param: Json, renames: dict[str, str]) -> tuple[str, str]:
    place, name = str(param.get("in", "")), str(param["name"])
    if place == "header":
        return place, name.lower()
    return place, renames.get(name, name) if place == "path" else name


def _path_renames(old_path: str, new_path: str) -> dict[str, str]:
    old_names = [m[1:-1] for m in _TEMPLATE.findall(old_path)]
    new_names = [m[1:-1] for m in _TEMPLATE.findall(new_path)]
    return dict(zip(old_names, new_names, strict=False))


def _is_required(param: Json) -> bool:
    return param.get("in") == "path" or param.get("required") is True


def _compare_parameter(old: Json, new: Json, at: _At) -> list[Change]:
    changes = _compare_annotations(old, new, at, deprecated="parameter-deprecated")
    if _is_required(new) and not _is_required(old):
        changes.append(at.to("required").change("parameter-became-required", "now required"))
    elif _is_required(old) and not _is_required(new):
        changes.append(at.to("required").change("parameter-became-optional", "now optional"))
    _, old_schema = _parameter_schema(old)
    new_tokens, new_schema = _parameter_schema(new)
    root = replace(at.to(*new_tokens), direction="request", done=set())
    return changes + _compare_schema(old_schema, new_schema, root)


def _parameter_schema(param: Json) -> tuple[tuple[str, ...], Any]:
    if "schema" in param:
        return ("schema",), param["schema"]
    for media, spec in _mapping(param.get("content")).items():
        return ("content", str(media), "schema"), _mapping(spec).get("schema", {})
    return ("schema",), {}


def _compare_request_body(old: _Op, new: _Op, at: _At) -> list[Change]:
    at = replace(at.to("requestBody"), direction="request", subject="request body")
    before = deref(at.old_doc, old.spec.get("requestBody"))
    after = deref(at.new_doc, new.spec.get("requestBody"))
    if not isinstance(after, dict):
        return [at.change("request-body-removed", "removed")] if isinstance(before, dict) else []
    required = after.get("required") is True
    if not isinstance(before, dict):
        code = "request-body-added-required" if required else "request-body-added"
        return [at.change(code, "added" + " (required)" * required)]
    changes = []
    if required != (before.get("required") is True):
        code = "request-body-became-required" if required else "request-body-became-optional"
        changes.append(at.to("required").change(code, f"now {code.rsplit('-', 1)[1]}"))
    return changes + _compare_content(before, after, at)


def _compare_content(old: Json, new: Json, at: _At) -> list[Change]:
    before, after = _mapping(old.get("content")), _mapping(new.get("content"))
    verb = "accepted" if at.direction == "request" else "returned"
    changes: list[Change] = []
    for media, spec in before.items():
        here = replace(at.to("content", media), subject=f"{at.subject} {media}")
        if media in after:
            old_schema = _mapping(spec).get("schema", {})
            new_schema = _mapping(after[media]).get("schema", {})
            root = replace(here.to("schema"), done=set())
            changes += _compare_schema(old_schema, new_schema, root)
        else:
            changes.append(here.change(f"{at.direction}-media-type-removed", f"no longer {verb}"))
    for media in after:
        if media not in before:
            here = replace(at.to("content", media), subject=f"{at.subject} {media}")
            changes.append(here.change(f"{at.direction}-media-type-added", f"now {verb}"))
    return changes


def _compare_responses(old: _Op, new: _Op, at: _At) -> list[Change]:
    at = replace(at.to("responses"), direction="response")
    before, after = _responses(at.old_doc, old.spec), _responses(at.new_doc, new.spec)
    changes: list[Change] = []
    for status, response in before.items():
        here = replace(at.to(status), subject=f"response {status}", softened=status[:1] != "2")
        if status in after:
            changes += _compare_annotations(response, after[status], here, deprecated=None)
            changes += _compare_content(response, after[status], here)
        else:
            changes.append(_status_removed(status, after, here))
    for status in after:
        if status not in before:
            here = replace(at.to(status), subject=f"response {status}")
            changes.append(here.change("response-status-added", "added"))
    return changes


def _responses(doc: Json, operation: Json) -> dict[str, Json]:
    found = {str(k): deref(doc, v) for k, v in _mapping(operation.get("responses")).items()}
    return {k: v for k, v in found.items() if isinstance(v, dict)}


def _status_removed(status: str, after: dict[str, Json], at: _At) -> Change:
    if status[:1] != "2":
        return at.change("response-status-removed", "removed")
    successes = [s for s in after if s[:1] == "2"]
    note = f"; the operation now answers {', '.join(successes)}" if successes else ""
    return at.change("response-success-status-removed", f"removed{note}")


def _compare_schema(old_raw: Any, new_raw: Any, at: _At) -> list[Change]:
    pair = (_key(old_raw), _key(new_raw))
    if pair[0] in at.unchanged and _is_same(old_raw, new_raw):
        return []  # the same $ref, with the same siblings, to an unchanged schema
    if pair in at.seen or len(at.seen) >= MAX_DEPTH or not _is_first_visit(*pair, at.done):
        return []
    at = replace(at, seen=at.seen | {pair})
    if deref(at.old_doc, old_raw) is None or deref(at.new_doc, new_raw) is None:
        return [
            at.change("unresolved-ref", "a $ref here cannot be resolved, so it is not compared")
        ]
    before, after = _alternatives(at.old_doc, old_raw), _alternatives(at.new_doc, new_raw)
    old_types, new_types = _union(before), _union(after)
    changes = _compare_types(old_types, new_types, at)
    pairs, lost, gained = _pair(before, after)
    composed = len(before) > 1 or len(after) > 1
    for old, new in pairs:
        if not composed or _is_first_visit(old[0] or "@", new[0] or "@", at.done):
            changes += _compare_body(old[1], new[1], at)
    changes += [_variant(at, "removed", m) for m in lost if schema_types(m[1]) <= new_types]
    changes += [_variant(at, "added", m) for m in gained if schema_types(m[1]) <= old_types]
    return changes


def _is_first_visit(old_key: str, new_key: str, done: set[tuple[str, str]]) -> bool:
    """Whether two named schemas meet for the first time in this body (inline ones always do).

    Shared schemas are compared once per request or response body, where first reached:
    walking every path through a densely linked schema graph would be exponential.
    """
    if old_key.startswith("@") or new_key.startswith("@"):
        return True
    if (old_key, new_key) in done:
        return False
    done.add((old_key, new_key))
    return True


def _alternatives(doc: Json, raw: Any) -> list[Member]:
    members = schema_members(doc, flatten_schema(doc, raw))
    if len(members) == 1 and isinstance(raw, dict) and isinstance(raw.get("$ref"), str):
        return [(raw["$ref"], members[0][1])]
    return members


def _union(members: list[Member]) -> frozenset[str]:
    return frozenset().union(*(schema_types(m) for _, m in members))


def _compare_types(old: frozenset[str], new: frozenset[str], at: _At) -> list[Change]:
    if old == new:
        return []
    lost, gained = old - new, new - old
    if lost and gained:
        kind = "changed"
    elif at.direction == "request":
        kind = "narrowed" if lost else "widened"
    else:
        kind = "narrowed" if lost else "became-nullable" if gained == {"null"} else "widened"
    code = f"{at.direction}-{'type-' * (kind != 'became-nullable')}{kind}"
    return [at.change(code, f"type changed from {show_types(old)} to {show_types(new)}")]


def _pair(
    before: list[Member], after: list[Member]
) -> tuple[list[tuple[Member, Member]], list[Member], list[Member]]:
    if len(before) == 1 and len(after) == 1:
        old, new = before[0], after[0]
        return ([(old, new)] if _types_meet(old, new) else []), [], []
    lost, gained = list(before), list(after)
    pairs = [p for sign in (_by_ref, _by_types, _by_title) for p in _pair_by(sign, lost, gained)]
    return pairs + _pair_in_order(lost, gained), lost, gained


def _by_ref(member: Member) -> str:
    return member[0]


def _by_types(member: Member) -> str:
    return " ".join(sorted(schema_types(member[1]) - {"null"}))


def _by_title(member: Member) -> str:
    return str(member[1].get("title", ""))


def _pair_by(
    sign: Callable[[Member], str], lost: list[Member], gained: list[Member]
) -> list[tuple[Member, Member]]:
    """Pairs members whose signature only they have on each side (removing them from the lists)."""
    pairs = []
    for member in list(lost):
        mine = sign(member)
        matches = [m for m in gained if sign(m) == mine]
        if mine and len(matches) == 1 and [sign(m) for m in lost].count(mine) == 1:
            pairs.append((member, matches[0]))
            lost.remove(member)
            gained.remove(matches[0])
    return pairs


def _pair_in_order(lost: list[Member], gained: list[Member]) -> list[tuple[Member, Member]]:
    """Pairs what is left of the inline members by position, when their types overlap."""
    pairs = []
    for member in [m for m in lost if not m[0]]:
        match = next((m for m in gained if not m[0] and _types_meet(member, m)), None)
        if match is not None:
            pairs.append((member, match))
            lost.remove(member)
            gained.remove(match)
    return pairs


def _types_meet(a: Member, b: Member) -> bool:
    return bool(schema_types(a[1]) & schema_types(b[1]))


def _variant(at: _At, what: str, member: Member) -> Change:
    name = member[0].rsplit("/", 1)[-1] or _by_title(member) or show_types(schema_types(member[1]))
    return at.change(f"{at.direction}-variant-{what}", f"alternative {name} was {what}")


def _compare_body(old: Json, new: Json, at: _At) -> list[Change]:
    return [
        *_compare_annotations(old, new, at, deprecated="field-deprecated"),
        *_compare_enum(old, new, at),
        *_compare_bounds(old, new, at),
        *_compare_text(old, new, at),
        *_compare_properties(old, new, at),
        *_compare_children(old, new, at),
    ]


def _compare_enum(old: Json, new: Json, at: _At) -> list[Change]:
    before, after = _enum_index(old), _enum_index(new)
    if before == after:
        return []
    if before is None or after is None:
        kind = "restricted" if before is None else "lifted"
        shown = f"limited to {_show_values(list((after or {}).values()))}"
        message = f"values are now {shown}" if before is None else "values are no longer limited"
        return [at.to("enum").change(f"{at.direction}-enum-{kind}", message)]
    changes = []
    for what, values in (
        ("removed", [v for k, v in before.items() if k not in after]),
        ("added", [v for k, v in after.items() if k not in before]),
    ):
        if values:
            message = f"enum value(s) {what}: {_show_values(values)}"
            changes.append(at.to("enum").change(f"{at.direction}-enum-value-{what}", message))
    return changes


def _enum_index(schema: Json) -> dict[str, Any] | None:
    values = _enum_values(schema)
    if values is None:
        return None
    return {json.dumps(v, sort_keys=True, default=str): v for v in values}


def _enum_values(schema: Json) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    values = schema.get("enum")
    return list(values) if isinstance(values, list) else None


def _show_values(values: list[Any]) -> str:
    return ", ".join(json.dumps(v, default=str) for v in values)


def _compare_bounds(old: Json, new: Json, at: _At) -> list[Change]:
    changes = []
    for keyword in (*_UPPER_BOUNDS, *_LOWER_BOUNDS, "uniqueItems"):
        before, after = _bound(old, keyword), _bound(new, keyword)
        if before == after:
            continue
        if before is None or after is None:
            tighter = before is None
        else:
            tighter = after < before if keyword in _UPPER_BOUNDS else after > before
        code = f"{at.direction}-constraint-{'tightened' if tighter else 'loosened'}"
        changes.append(at.to(keyword).change(code, f"{keyword} {_describe(before, after)}"))
    return changes


def _bound(schema: Json, keyword: str) -> float | None:
    value = schema.get(keyword)
    if keyword == "uniqueItems":
        return 1 if value is True else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None  # OpenAPI 3.0's boolean exclusiveMaximum is not a bound
    return value


def _describe(before: Any, after: Any) -> str:
    if before is None:
        return f"added ({after})"
    if after is None:
        return f"removed (was {before})"
    return f"changed from {before} to {after}"


def _compare_text(old: Json, new: Json, at: _At) -> list[Change]:
    changes = []
    for keyword in ("pattern", "format"):
        before, after = old.get(keyword), new.get(keyword)
        if before == after:
            continue
        kind = "added" if before is None else "removed" if after is None else "changed"
        code = f"{at.direction}-{keyword}-{kind}"
        changes.append(at.to(keyword).change(code, f"{keyword} {_describe(before, after)}"))
    return changes


def _compare_properties(old: Json, new: Json, at: _At) -> list[Change]:
    before = _visible_properties(at.old_doc, old, at.direction)
    after = _visible_properties(at.new_doc, new, at.direction)
    old_required, new_required = set(_names(old.get("required"))), set(_names(new.get("required")))
    changes: list[Change] = []
    for name, schema in before.items():
        here = _field(at, name)
        if name not in after:
            changes.append(_property_removed(new, here))
            continue
        if (name in old_required) != (name in new_required):
            kind = "required" if name in new_required else "optional"
            changes.append(here.change(f"{at.direction}-property-became-{kind}", f"now {kind}"))
        changes += _compare_schema(schema, after[name], here)
    for name in after:
        if name not in before:
            changes.append(_property_added(name in new_required, _field(at, name)))
    return changes


def _field(at: _At, name: str) -> _At:
    dotted = f"{at.trail}.{name}" if at.trail else name
    return replace(at.to("properties", name), trail=dotted)


def _visible_properties(doc: Json, schema: Json, direction: Direction) -> Json:
    hidden = "readOnly" if direction == "request" else "writeOnly"
    return {
        str(name): spec
        for name, spec in _mapping(schema.get("properties")).items()
        if flatten_schema(doc, spec).get(hidden) is not True
    }


def _property_removed(new: Json, at: _At) -> Change:
    if at.direction == "response":
        return at.change("response-property-removed", "removed")
    if _is_closed(new):
        return at.change("request-property-rejected", "removed, and unknown fields are rejected")
    return at.change("request-property-removed", "removed (now ignored)")


def _property_added(required: bool, at: _At) -> Change:
    if at.direction == "request" and required:
        return at.change("request-property-added-required", "added (required)")
    return at.change(f"{at.direction}-property-added", "added" + " (required)" * required)


def _is_closed(schema: Json) -> bool:
    return schema.get("additionalProperties") is False or (
        schema.get("unevaluatedProperties") is False
    )


def _compare_children(old: Json, new: Json, at: _At) -> list[Change]:
    changes = []
    if "items" in old or "items" in new:
        items = replace(at.to("items"), trail=f"{at.trail}[]")
        changes += _compare_schema(old.get("items", {}), new.get("items", {}), items)
    extra_old, extra_new = old.get("additionalProperties"), new.get("additionalProperties")
    if isinstance(extra_old, dict) and isinstance(extra_new, dict):
        values = replace(at.to("additionalProperties"), trail=f"{at.trail}.*")
        changes += _compare_schema(extra_old, extra_new, values)
    elif at.direction == "request" and _is_closed(new) and not _is_closed(old):
        message = "unknown fields are now rejected"
        changes.append(
            at.to("additionalProperties").change(
                f"{at.direction}-additional-properties-closed", message
            )
        )
    return changes


def _key(schema: Any) -> str:
    if isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        return str(schema["$ref"])
    return f"@{id(schema)}"  # an inline schema is its own position in the document


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    kinds: tuple[tuple[type, str], ...] = (
        (int, "integer"),
        (float, "number"),
        (str, "string"),
        (list, "array"),
        (dict, "object"),
    )
    return next((name for kind, name in kinds if isinstance(value, kind)), "string")


def _mapping(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _names(value: Any) -> list[str]:
    return [str(v) for v in _items(value)]
