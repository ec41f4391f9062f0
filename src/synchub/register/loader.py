"""Load the register from YAML and validate it, naming file, line and problem for every error."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

from synchub.connectors.broker.model import check_nats_settings
from synchub.core.entities import ENTITIES
from synchub.core.errors import ConfigError
from synchub.register.model import (
    BROKER_SYSTEMS,
    BreakerPolicy,
    ClientOverride,
    Connection,
    FieldOwner,
    Flow,
    MatchThresholds,
    Mode,
    PlanTier,
    Rate,
    Register,
    RetryPolicy,
)

SYSTEMS = ("stripe", "xero", "hubspot", "intercom", "product", "nats")


@dataclass(frozen=True)
class RegisterProblem:
    """One problem in the register, located in its file."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class RegisterError(ConfigError):
    """The register is invalid; carries every problem found."""

    def __init__(self, problems: list[RegisterProblem]) -> None:
        self.problems = problems
        super().__init__("invalid register:\n" + "\n".join(f"  {p}" for p in problems))


# -- schema (pydantic, strict, no unknown keys) -------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Retry(_Strict):
    base_seconds: float = Field(default=1.0, gt=0)
    cap_seconds: float = Field(default=300.0, gt=0)
    max_attempts: int = Field(default=8, ge=1, le=100)
    max_age_seconds: float = Field(default=86400.0, gt=0)
    timeout_seconds: float = Field(default=15.0, gt=0, le=120)


class _Breaker(_Strict):
    failures: int = Field(default=5, ge=1, le=1000)
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    min_calls: int = Field(default=20, ge=1)
    window_seconds: float = Field(default=30.0, gt=0)
    open_seconds: float = Field(default=30.0, gt=0)
    probes: int = Field(default=3, ge=1, le=100)
    retry_tokens: float = Field(default=10.0, gt=0)
    token_ratio: float = Field(default=0.1, ge=0)


class _Connection(_Strict):
    system: Literal["stripe", "xero", "hubspot", "intercom", "product", "nats"]
    mode: Literal["sandbox", "live"] = "sandbox"
    owner: str = Field(min_length=1)
    criticality: Literal["low", "medium", "high"] = "medium"
    runbook: str | None = None
    mapping: str | None = None
    settings: dict[str, str] = Field(default_factory=dict)
    retry: _Retry = Field(default_factory=_Retry)
    breaker: _Breaker = Field(default_factory=_Breaker)


class _Flow(_Strict):
    source: str
    destination: str
    events: list[str] = Field(min_length=1)
    owner: str = Field(min_length=1)


class _Owner(_Strict):
    owner: str
    fallback: Literal["most_recent"] = "most_recent"


def _whole_seconds(value: float | None) -> float | None:
    # The RateLimit-Policy field states the window in whole seconds (STANDARDS §2).
    if value is not None and not float(value).is_integer():
        raise ValueError("must be a whole number of seconds")
    return value


WholeSeconds = Annotated[float, Field(ge=1, le=31_622_400), AfterValidator(_whole_seconds)]


class _Rate(_Strict):
    rate: int = Field(ge=1)
    period_seconds: WholeSeconds
    burst: int = Field(ge=1)


class _Plan(_Strict):
    rate: int = Field(default=600, ge=1)
    period_seconds: WholeSeconds = 60.0
    burst: int = Field(default=60, ge=1)
    monthly_quota: int = Field(default=1_000_000, ge=1)
    concurrency: int = Field(default=2, ge=1, le=1000)
    token: _Rate = _Rate(rate=60, period_seconds=60.0, burst=20)


class _Override(_Strict):
    rate: int | None = Field(default=None, ge=1)
    period_seconds: WholeSeconds | None = None
    burst: int | None = Field(default=None, ge=1)
    monthly_quota: int | None = Field(default=None, ge=1)
    concurrency: int | None = Field(default=None, ge=1, le=1000)


class _Thresholds(_Strict):
    link_at: float = Field(default=0.95, ge=0, le=1)
    review_at: float = Field(default=0.6, ge=0, le=1)

    weights: dict[str, Any] | None = None  # Fellegi-Sunter weights (ADR 0018)

    @model_validator(mode="after")
    def _ordered(self) -> _Thresholds:
        if self.review_at > self.link_at:
            raise ValueError("review_at must not be above link_at")
        return self

    @model_validator(mode="after")
    def _valid_weights(self) -> _Thresholds:
        if self.weights is not None:
            from synchub.mdm.weights import weights_from_mapping  # mdm imports the register

            weights_from_mapping(self.weights)  # raises ValueError naming the field
        return self


class _Document(_Strict):
    workspace: str | None = Field(default=None, pattern=r"^[a-z0-9_-]{1,40}$")
    timezone: str | None = None
    connections: dict[str, _Connection] = Field(default_factory=dict)
    flows: dict[str, _Flow] = Field(default_factory=dict)
    ownership: dict[str, dict[str, _Owner]] = Field(default_factory=dict)
    plans: dict[str, _Plan] = Field(default_factory=dict)
    client_plans: dict[str, str] = Field(default_factory=dict)
    client_overrides: dict[str, _Override] = Field(default_factory=dict)
    webhook_limits: dict[str, _Rate] = Field(default_factory=dict)
    matching: dict[str, _Thresholds] = Field(default_factory=dict)


# -- YAML with line numbers ----------------------------------------------------------------


def _to_python(node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node))
            if key in result:
                raise _DuplicateKeyError(key_node.start_mark.line + 1, f"duplicate key {key!r}")
            result[key] = _to_python(value_node, (*path, key), lines)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(v, (*path, i), lines) for i, v in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


class _DuplicateKeyError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def _line_of(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


@dataclass
class _Parsed:
    file: str
    document: _Document
    lines: dict[tuple[Any, ...], int]


def _parse_file(path: Path, problems: list[RegisterProblem]) -> _Parsed | None:
    name = str(path)
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"))
        lines: dict[tuple[Any, ...], int] = {}
        data = _to_python(node, (), lines) if node is not None else {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problems.append(RegisterProblem(name, mark.line + 1 if mark else 1, str(exc.problem)))
        return None
    except _DuplicateKeyError as exc:
        problems.append(RegisterProblem(name, exc.line, str(exc)))
        return None
    if not isinstance(data, dict):
        problems.append(RegisterProblem(name, 1, "a register file must be a mapping"))
        return None
    try:
        return _Parsed(name, _Document.model_validate(data), lines)
    except PydanticValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            problems.append(RegisterProblem(name, _line_of(lines, loc), _describe(err, loc)))
        return None


_KNOWN_KEYS = sorted(
    {
        f
        for m in (_Document, _Connection, _Flow, _Owner, _Retry, _Breaker, _Plan, _Rate, _Override)
        for f in m.model_fields
    }
    | set(_Thresholds.model_fields)
)


def _describe(err: Any, loc: tuple[Any, ...]) -> str:
    """A validation error in the register's own words."""
    where = ".".join(str(p) for p in loc[:-1]) or "top level"
    if err["type"] == "extra_forbidden":
        key = str(loc[-1])
        close = difflib.get_close_matches(key, _KNOWN_KEYS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{where}: unknown key {key!r}{hint}"
    return f"{'.'.join(str(p) for p in loc)}: {err['msg']}"


# -- cross references ----------------------------------------------------------------------


def _is_timezone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _check_references(
    parsed: list[_Parsed],
    *,
    event_types: set[str],
    mappings: dict[str, set[str]],
    problems: list[RegisterProblem],
) -> None:
    connections = {n: (p, c) for p in parsed for n, c in p.document.connections.items()}
    plans = {"default", *(n for p in parsed for n in p.document.plans)}
    for p in parsed:
        for client_id, plan in p.document.client_plans.items():
            if plan not in plans:
                problems.append(RegisterProblem(
                    p.file, _line_of(p.lines, ("client_plans", client_id)),
                    f"client {client_id!r}: unknown plan {plan!r}"))  # fmt: skip
        for name in p.document.webhook_limits:
            if name != "default" and name not in connections:
                problems.append(RegisterProblem(
                    p.file, _line_of(p.lines, ("webhook_limits", name)),
                    f"webhook_limits: {name!r} is neither default nor a connection"))  # fmt: skip
    for p in parsed:
        if p.document.timezone is not None and not _is_timezone(p.document.timezone):
            problems.append(
                RegisterProblem(
                    p.file,
                    _line_of(p.lines, ("timezone",)),
                    f"unknown time zone {p.document.timezone!r}",
                )
            )
        for name, conn in p.document.connections.items():
            if conn.mapping is not None and conn.mapping not in mappings.get(conn.system, set()):
                known = ", ".join(sorted(mappings.get(conn.system, set()))) or "none"
                problems.append(
                    RegisterProblem(
                        p.file,
                        _line_of(p.lines, ("connections", name, "mapping")),
                        f"connection {name!r}: mapping version {conn.mapping!r} does not exist "
                        f"for {conn.system} (known: {known})",
                    )
                )
        for name, flow in p.document.flows.items():
            for end in ("source", "destination"):
                target = getattr(flow, end)
                if target not in connections:
                    problems.append(
                        RegisterProblem(
                            p.file,
                            _line_of(p.lines, ("flows", name, end)),
                            f"flow {name!r}: {end} {target!r} is not a connection",
                        )
                    )
            for i, event in enumerate(flow.events):
                if event not in event_types:
                    problems.append(
                        RegisterProblem(
                            p.file,
                            _line_of(p.lines, ("flows", name, "events", i)),
                            f"flow {name!r}: unknown event type {event!r}",
                        )
                    )
        for key, owners in p.document.ownership.items():
            if key not in ENTITIES:
                problems.append(
                    RegisterProblem(
                        p.file,
                        _line_of(p.lines, ("ownership", key)),
                        f"ownership: unknown entity {key!r}",
                    )
                )
                continue
            fields = {s.name for s in ENTITIES[key]}
            for field_name, rule in owners.items():
                line = _line_of(p.lines, ("ownership", key, field_name))
                if field_name not in fields:
                    close = difflib.get_close_matches(field_name, sorted(fields), n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    message = f"ownership: {key} has no field {field_name!r}{hint}"
                    problems.append(RegisterProblem(p.file, line, message))
                if rule.owner not in connections:
                    message = (
                        f"ownership of {key}.{field_name}: owner {rule.owner!r} is not a connection"
                    )
                    problems.append(RegisterProblem(p.file, line, message))


def _repeated_names(parsed: list[_Parsed], problems: list[RegisterProblem]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for p in parsed:
        for section in ("connections", "flows"):
            for name in getattr(p.document, section):
                if (section, name) in seen:
                    problems.append(
                        RegisterProblem(
                            p.file,
                            _line_of(p.lines, (section, name)),
                            f"{section[:-1]} {name!r} is also declared in {seen[(section, name)]}",
                        )
                    )
                seen[(section, name)] = p.file


def _check_matching(parsed: list[_Parsed], problems: list[RegisterProblem]) -> None:
    """Match thresholds name a known entity, once across all files."""
    seen: dict[str, str] = {}
    for p in parsed:
        for entity in p.document.matching:
            line = _line_of(p.lines, ("matching", entity))
            if entity not in ENTITIES:
                message = f"matching: unknown entity {entity!r}"
                problems.append(RegisterProblem(p.file, line, message))
            elif entity in seen:
                message = f"matching for {entity!r} is also declared in {seen[entity]}"
                problems.append(RegisterProblem(p.file, line, message))
            seen.setdefault(entity, p.file)


def _check_brokers(parsed: list[_Parsed], problems: list[RegisterProblem]) -> None:
    """Broker connections (ADR 0010): valid settings, and never the source of a flow."""
    brokers = {
        n for p in parsed for n, c in p.document.connections.items() if c.system in BROKER_SYSTEMS
    }
    for p in parsed:
        for name, conn in p.document.connections.items():
            if conn.system != "nats":
                continue
            gap = conn.retry.cap_seconds + conn.retry.timeout_seconds
            found = check_nats_settings(
                conn.settings, live=conn.mode == "live", longest_retry_gap_seconds=gap
            )
            for problem in found:
                where = ("settings", problem.key) if problem.key else ("settings",)
                line = _line_of(p.lines, ("connections", name, *where))
                message = f"connection {name!r}: {problem.message}"
                problems.append(RegisterProblem(p.file, line, message))
        for name, flow in p.document.flows.items():
            if flow.source in brokers:
                line = _line_of(p.lines, ("flows", name, "source"))
                message = f"flow {name!r}: {flow.source!r} is a broker sink; it cannot be a source"
                problems.append(RegisterProblem(p.file, line, message))


# -- building the model --------------------------------------------------------------------


def _build(parsed: list[_Parsed]) -> Register:
    workspace = next((p.document.workspace for p in parsed if p.document.workspace), "default")
    timezone = next(
        (p.document.timezone for p in parsed if p.document.timezone), "Pacific/Auckland"
    )
    connections = {
        name: Connection(
            name=name,
            system=c.system,
            mode=Mode(c.mode),
            owner=c.owner,
            criticality=c.criticality,
            runbook=c.runbook,
            mapping=c.mapping,
            settings=dict(c.settings),
            retry=RetryPolicy(**c.retry.model_dump()),
            breaker=BreakerPolicy(**c.breaker.model_dump()),
        )
        for p in parsed
        for name, c in p.document.connections.items()
    }
    flows = tuple(
        Flow(
            name=n,
            source=f.source,
            destination=f.destination,
            events=tuple(f.events),
            owner=f.owner,
        )
        for p in parsed
        for n, f in p.document.flows.items()
    )
    ownership = tuple(
        FieldOwner(entity=e, field_name=fn, owner=r.owner, fallback=r.fallback)
        for p in parsed
        for e, owners in p.document.ownership.items()
        for fn, r in owners.items()
    )
    return Register(
        workspace=workspace,
        timezone=timezone,
        connections=connections,
        flows=flows,
        ownership=ownership,
        plans={
            n: PlanTier(
                name=n, **pl.model_dump(exclude={"token"}), token=Rate(**pl.token.model_dump())
            )
            for p in parsed
            for n, pl in p.document.plans.items()
        },
        client_plans={c: n for p in parsed for c, n in p.document.client_plans.items()},
        client_overrides={
            c: ClientOverride(**o.model_dump())
            for p in parsed
            for c, o in p.document.client_overrides.items()
        },
        webhook_limits={
            n: Rate(**r.model_dump()) for p in parsed for n, r in p.document.webhook_limits.items()
        },
        matching={
            e: MatchThresholds(**t.model_dump())
            for p in parsed
            for e, t in p.document.matching.items()
        },
    )


def load_register(
    directory: Path, *, event_types: set[str], mappings: dict[str, set[str]]
) -> Register:
    """Load every *.yaml under the directory; raise RegisterError listing every problem."""
    problems: list[RegisterProblem] = []
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not directory.is_dir():
        raise RegisterError(
            [
                RegisterProblem(
                    str(directory),
                    0,
                    "the register folder does not exist (set SYNCHUB_REGISTER_DIR)",
                )
            ]
        )
    if not files:
        raise RegisterError([RegisterProblem(str(directory), 0, "no register files (*.yaml) here")])
    parsed = [p for f in files if (p := _parse_file(f, problems)) is not None]
    if not problems:
        _repeated_names(parsed, problems)
        _check_references(parsed, event_types=event_types, mappings=mappings, problems=problems)
        _check_brokers(parsed, problems)
        _check_matching(parsed, problems)
    if problems:
        raise RegisterError(problems)
    return _build(parsed)
