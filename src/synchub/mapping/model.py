"""The mapping engine: a declarative, versioned spec turns a vendor object into observations.

A mapping document (YAML, one per connector) looks like::

    system: stripe
    versions:
      - version: stripe.v1
        objects:
          customer:
            entity: customer
            fields:
              email: {path: email, transform: email}
              name: {path: [name, description], transform: text}   # first non-null wins
            refs:
              ...: {path: customer, entity: customer}
            lines: {path: lines.data, id: id, fields: {...}}
            embedded: [{path: "items.data[0].price", object: price}]
            children: [{path: refunds.data, object: refund, parent_ref: payment_id}]

Paths are dotted with optional list indexes (``items.data[0].price``). In a line or a child, a
path that starts with ``^.`` is read on the parent object (``^.CurrencyCode``). Amounts in major
units name their currency: ``{path: Total, transform: money, currency: CurrencyCode}``.
`embedded` objects are mapped before their parent (the parent refers to them); `children`
after it (they refer to the parent, by `parent_ref`). Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from synchub.core.entities import ENTITIES, LINE_AMOUNT_TYPES, LINE_FIELDS
from synchub.core.errors import ConfigError, MappingError
from synchub.core.tax import tax_rounding
from synchub.mapping.transform import CURRENCY_TRANSFORMS, TRANSFORMS

_INDEX = re.compile(r"^(?P<key>[^\[\]]*)(?:\[(?P<idx>\d+)\])?$")


@dataclass(frozen=True)
class FieldRule:
    """How one canonical field is read: paths tried in order, a transform, or an operation."""

    paths: tuple[str, ...]
    transform: str = "id"
    op: str | None = None  # "difference" of two paths, "sum_each" of a product over a list,
    # "join" of texts
    each: tuple[str, ...] = ()  # for sum_each: the list, first of these paths that has one
    required: bool = False
    value_map: dict[str, str] | None = None
    currency: tuple[str, ...] = ()  # for money transforms: where the currency code is


@dataclass(frozen=True)
class RefRule:
    """A reference to another entity by the source system's id."""

    paths: tuple[str, ...]
    entity: str


@dataclass(frozen=True)
class ObjectMapping:
    """How one vendor object type becomes one canonical entity."""

    object_type: str
    entity: str
    id_path: str
    fields: dict[str, FieldRule]
    refs: dict[str, RefRule] = field(default_factory=dict)
    lines_path: str | None = None
    line_fields: dict[str, FieldRule] = field(default_factory=dict)
    line_id_path: str = "id"
    embedded: tuple[tuple[str, str], ...] = ()  # (path, object type)
    children: tuple[ChildRule, ...] = ()


@dataclass(frozen=True)
class ChildRule:
    """Records listed inside a parent that refer back to it (a charge's refunds, a Xero
    contact's ContactPersons)."""

    path: str
    object_type: str
    parent_ref: str  # the child's canonical field that refers to the parent
    scoped_id: bool = False  # the child's id is only unique within its parent


@dataclass(frozen=True)
class MappingVersion:
    """One version of a system's mappings."""

    system: str
    version: str
    objects: dict[str, ObjectMapping]


@dataclass(frozen=True)
class LineObservation:
    """One invoice line as the source sees it."""

    external_id: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class Observation:
    """What one source said about one record at one moment, in canonical words."""

    system: str
    object_type: str
    entity: str
    external_id: str
    fields: dict[str, Any]
    refs: dict[str, tuple[str, str]]  # canonical field -> (entity, source external id)
    lines: tuple[LineObservation, ...]
    mapping_version: str
    source_version: int  # the source's own ordering (e.g. event time in ms); higher is newer
    observed_at: datetime
    deleted: bool = False


def read_path(obj: Any, path: str) -> Any:
    """Follow a dotted path with optional [n] indexes; a missing step gives None."""
    current = obj
    for part in path.split("."):
        match = _INDEX.match(part)
        if match is None or current is None:
            return None
        key, idx = match.group("key"), match.group("idx")
        if key:
            current = current.get(key) if isinstance(current, dict) else None
        if idx is not None:
            index = int(idx)
            current = current[index] if isinstance(current, list) and index < len(current) else None
    return current


def _read(obj: Any, path: str, parent: Any = None) -> Any:
    """read_path, where `^.rest` reads `rest` on the parent object."""
    if path.startswith("^."):
        return read_path(parent, path[2:])
    return read_path(obj, path)


def _first(obj: Any, paths: tuple[str, ...], parent: Any = None) -> Any:
    for path in paths:
        value = _read(obj, path, parent)
        if value is not None:
            return value
    return None


def _transform(rule: FieldRule, raw: Any, obj: Any, parent: Any) -> Any:
    if rule.transform in CURRENCY_TRANSFORMS:
        currency = _first(obj, rule.currency, parent)
        code = TRANSFORMS["currency"](currency)
        return CURRENCY_TRANSFORMS[rule.transform](raw, code)
    return TRANSFORMS[rule.transform](raw)


def _apply_rule(obj: Any, name: str, rule: FieldRule, version: str, parent: Any = None) -> Any:
    try:
        if rule.op == "difference":
            left, right = (_transform(rule, _read(obj, p, parent), obj, parent)
                           for p in rule.paths)  # fmt: skip
            raw = None if left is None or right is None else left - right
        elif rule.op == "join":  # texts joined by a space (FirstName + LastName)
            parts = [_read(obj, p, parent) for p in rule.paths]
            raw = " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip()) or None
        elif rule.op == "sum_each":
            items = _first(obj, rule.each, parent)
            # No list at all is "not stated" (None); an empty list is a stated zero.
            raw = None if items is None else sum(_product(item, rule.paths) for item in items)
        else:
            raw = _first(obj, rule.paths, parent)
        if rule.value_map is not None and raw is not None:
            key = str(raw).lower() if isinstance(raw, bool) else raw  # YAML maps true/false
            if not isinstance(key, str) or key not in rule.value_map:
                raise MappingError(f"unknown value {raw!r}")
            raw = rule.value_map[key]
        value = _transform(rule, raw, obj, parent)
    except MappingError as exc:
        raise MappingError(f"{version}: field {name!r} from {'|'.join(rule.paths)}: {exc}") from exc
    except TypeError as exc:
        raise MappingError(f"{version}: field {name!r}: unexpected shape ({exc})") from exc
    if value is None and rule.required:
        raise MappingError(f"{version}: required field {name!r} missing at {'|'.join(rule.paths)}")
    return value


def _product(item: Any, paths: tuple[str, ...]) -> int:
    result = 1
    for path in paths:
        value = read_path(item, path)
        if isinstance(value, bool) or not isinstance(value, int):
            raise MappingError(f"expected integers at {path}, got {value!r}")
        result *= value
    return result


def map_object(
    mapping: MappingVersion,
    object_type: str,
    obj: dict[str, Any],
    *,
    source_version: int,
    observed_at: datetime,
    deleted: bool = False,
    source: str | None = None,
) -> list[Observation]:
    """Map one vendor object (and the objects embedded in it) to observations, embedded first.

    `source` names the connection the object came from (defaults to the mapping's system).
    """
    spec = mapping.objects.get(object_type)
    if spec is None:
        raise MappingError(f"{mapping.version}: no mapping for {mapping.system} {object_type!r}")
    observations: list[Observation] = []
    _map_into(observations, mapping, spec, obj, source=source, source_version=source_version,
              observed_at=observed_at, deleted=deleted)  # fmt: skip
    return observations


def _map_into(
    observations: list[Observation],
    mapping: MappingVersion,
    spec: ObjectMapping,
    obj: dict[str, Any],
    *,
    source: str | None,
    source_version: int,
    observed_at: datetime,
    deleted: bool,
    parent: tuple[str, str, str, Any] | None = None,  # (ref field, entity, external id, object)
    position: int = 0,
    scoped_id: bool = False,
) -> None:
    object_type = spec.object_type
    for path, embedded_type in spec.embedded:
        inner = read_path(obj, path)
        if isinstance(inner, dict):
            observations += map_object(
                mapping,
                embedded_type,
                inner,
                source=source,
                source_version=source_version,
                observed_at=observed_at,
            )
    parent_obj = parent[3] if parent else None
    external_id = _read(obj, spec.id_path, parent_obj)
    if parent is not None and scoped_id:
        local = external_id if isinstance(external_id, str) and external_id else str(position)
        external_id = f"{parent[2]}/{object_type}/{local}"
    if not isinstance(external_id, str) or not external_id:
        raise MappingError(f"{mapping.version}: {object_type} has no id at {spec.id_path!r}")
    values = {
        name: _apply_rule(obj, name, rule, mapping.version, parent_obj)
        for name, rule in spec.fields.items()
    }
    refs = {}
    for name, ref in spec.refs.items():
        target = _first(obj, ref.paths, parent_obj)
        if isinstance(target, dict):  # an expanded object
            target = target.get("id")
        if target is not None:
            refs[name] = (ref.entity, str(target))
    if parent is not None:
        refs[parent[0]] = (parent[1], parent[2])
    lines = tuple(_map_lines(spec, obj, mapping.version))
    if spec.entity == "invoice" and lines and "tax_rounding_minor" not in spec.fields:
        values["tax_rounding_minor"] = tax_rounding(
            values.get("tax_minor"), [ln.fields.get("tax_minor") for ln in lines]
        )
    if values.get("line_amount_type") not in (None, *LINE_AMOUNT_TYPES):
        raise MappingError(
            f"{mapping.version}: line_amount_type {values['line_amount_type']!r} is not one of "
            f"{sorted(LINE_AMOUNT_TYPES)}"
        )
    observations.append(
        Observation(
            system=source or mapping.system,
            object_type=object_type,
            entity=spec.entity,
            external_id=external_id,
            fields=values,
            refs=refs,
            lines=lines,
            mapping_version=mapping.version,
            source_version=source_version,
            observed_at=observed_at,
            deleted=deleted,
        )
    )
    for child in spec.children:
        child_spec = mapping.objects[child.object_type]
        items = read_path(obj, child.path) or []
        if not isinstance(items, list):
            raise MappingError(f"{mapping.version}: {object_type}.{child.path} is not a list")
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise MappingError(f"{mapping.version}: {child.path}[{index}] is not an object")
            _map_into(observations, mapping, child_spec, item, source=source,
                      source_version=source_version, observed_at=observed_at, deleted=False,
                      parent=(child.parent_ref, spec.entity, external_id, obj),
                      position=index, scoped_id=child.scoped_id)  # fmt: skip


def _map_lines(spec: ObjectMapping, obj: Any, version: str) -> list[LineObservation]:
    if spec.lines_path is None:
        return []
    items = read_path(obj, spec.lines_path) or []
    lines = []
    for position, item in enumerate(items):
        line_id = read_path(item, spec.line_id_path) or f"line-{position}"
        values = {
            n: _apply_rule(item, f"lines[{position}].{n}", r, version, obj)
            for n, r in spec.line_fields.items()
        }
        lines.append(LineObservation(external_id=str(line_id), fields=values))
    return lines


# -- parsing a mapping document ---------------------------------------------------------


def _paths(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"path must be a string or a list of strings, got {value!r}")


def _field_rule(name: str, raw: Any) -> FieldRule:
    if isinstance(raw, str):
        return FieldRule(paths=(raw,))
    if not isinstance(raw, dict):
        raise ConfigError(f"field {name!r}: expected a mapping, got {raw!r}")
    known = {"path", "paths", "transform", "op", "each", "required", "map", "currency"}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"field {name!r}: unknown keys {sorted(unknown)}")
    transform = raw.get("transform", "id")
    if transform not in TRANSFORMS and transform not in CURRENCY_TRANSFORMS:
        raise ConfigError(f"field {name!r}: unknown transform {transform!r}")
    if (transform in CURRENCY_TRANSFORMS) != ("currency" in raw):
        raise ConfigError(
            f"field {name!r}: the transforms {sorted(CURRENCY_TRANSFORMS)} need `currency` "
            "(where the currency code is) and no other transform takes one"
        )
    op = raw.get("op")
    if op not in (None, "difference", "sum_each", "join"):
        raise ConfigError(f"field {name!r}: unknown op {op!r}")
    if op is not None and transform in CURRENCY_TRANSFORMS:
        raise ConfigError(f"field {name!r}: op {op!r} works on minor units, not {transform!r}")
    return FieldRule(
        paths=_paths(raw.get("path", raw.get("paths"))),
        transform=transform,
        op=op,
        each=_paths(raw["each"]) if "each" in raw else (),
        required=bool(raw.get("required", False)),
        value_map=raw.get("map"),
        currency=_paths(raw["currency"]) if "currency" in raw else (),
    )


def _object_mapping(object_type: str, raw: dict[str, Any]) -> ObjectMapping:
    entity = raw.get("entity")
    if entity not in ENTITIES:
        raise ConfigError(f"object {object_type!r}: unknown entity {entity!r}")
    known = {s.name for s in ENTITIES[entity]}
    fields = {n: _field_rule(n, r) for n, r in (raw.get("fields") or {}).items()}
    refs = {n: RefRule(_paths(r["path"]), r["entity"]) for n, r in (raw.get("refs") or {}).items()}
    for name in [*fields, *refs]:
        if name not in known:
            raise ConfigError(f"object {object_type!r}: {entity} has no field {name!r}")
    lines = raw.get("lines") or {}
    line_known = {s.name for s in LINE_FIELDS}
    line_fields = {n: _field_rule(n, r) for n, r in (lines.get("fields") or {}).items()}
    for name in line_fields:
        if name not in line_known:
            raise ConfigError(f"object {object_type!r}: invoice lines have no field {name!r}")
    embedded = tuple((e["path"], e["object"]) for e in raw.get("embedded") or [])
    children = tuple(
        ChildRule(c["path"], c["object"], c["parent_ref"], bool(c.get("scoped_id", False)))
        for c in raw.get("children") or []
    )
    return ObjectMapping(
        object_type=object_type,
        entity=entity,
        id_path=raw.get("id", "id"),
        fields=fields,
        refs=refs,
        lines_path=lines.get("path"),
        line_fields=line_fields,
        line_id_path=lines.get("id", "id"),
        embedded=embedded,
        children=children,
    )


def parse_mapping_document(raw: dict[str, Any]) -> dict[str, MappingVersion]:
    """Parse a mapping document into its versions, keyed by version id."""
    system = raw.get("system")
    if not isinstance(system, str):
        raise ConfigError("mapping document needs a 'system'")
    versions: dict[str, MappingVersion] = {}
    for entry in raw.get("versions") or []:
        version = entry.get("version")
        if not isinstance(version, str) or version in versions:
            raise ConfigError(f"{system}: missing or repeated mapping version {version!r}")
        objects = {t: _object_mapping(t, o) for t, o in (entry.get("objects") or {}).items()}
        for spec in objects.values():
            for _, embedded_type in spec.embedded:
                if embedded_type not in objects:
                    raise ConfigError(
                        f"{version}: embedded object {embedded_type!r} has no mapping"
                    )
            for child in spec.children:
                child_spec = objects.get(child.object_type)
                if child_spec is None:
                    raise ConfigError(
                        f"{version}: child object {child.object_type!r} has no mapping"
                    )
                if child.parent_ref not in {s.name for s in ENTITIES[child_spec.entity]}:
                    raise ConfigError(
                        f"{version}: {child_spec.entity} has no field {child.parent_ref!r}"
                    )
        versions[version] = MappingVersion(system=system, version=version, objects=objects)
    if not versions:
        raise ConfigError(f"{system}: mapping document has no versions")
    return versions
