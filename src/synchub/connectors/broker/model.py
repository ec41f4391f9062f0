"""Where broker sinks put events, and the settings of a `system: nats` connection. Pure.

NATS JetStream layout (ADR 0010): one stream per workspace, `<stream_prefix>_<workspace>`,
bound to `<subject_prefix>.<workspace>.>`; each event is published on
`<subject_prefix>.<workspace>.<event type>`, e.g. `synchub.live.invoice.paid`. Event types
are dot-separated lowercase tokens, which NATS subjects allow as they are, so consumers can
subscribe to `synchub.live.invoice.>`. A workspace always becomes exactly one token.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from synchub.core.errors import PermanentError

NATS_SCHEMES = ("nats", "tls")
EVENT_TYPE = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)+")
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_SUBJECT_PREFIX = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


@dataclass(frozen=True)
class NatsOptions:
    """A nats connection's settings, parsed."""

    urls: tuple[str, ...] = ()  # none: sandbox mode uses the in-process broker
    stream_prefix: str = "SYNCHUB"
    subject_prefix: str = "synchub"
    # JetStream drops a message whose Nats-Msg-Id it stored within this window. It must
    # outlast the longest gap between two delivery attempts (checked against the retry policy).
    duplicate_window_seconds: float = 3600.0
    max_age_seconds: float = 30 * 86400.0  # how long the stream keeps events
    creds_file: str | None = None  # a NATS .creds file (JWT + NKey); secrets stay out of YAML


NATS_SETTINGS = (
    "url",
    "stream_prefix",
    "subject_prefix",
    "duplicate_window_seconds",
    "max_age_seconds",
    "creds_file",
)


@dataclass(frozen=True)
class SettingProblem:
    """One invalid setting; `key` is None when the problem is the settings as a whole."""

    key: str | None
    message: str


def workspace_token(workspace: str) -> str:
    """The workspace as one subject token and stream-name part.

    Letters, digits, `_` and `-` pass unchanged (every workspace id synchub issues); anything
    else becomes `_` with a hash of the original appended, so two workspaces never share one.
    """
    if _TOKEN.fullmatch(workspace):
        return workspace
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", workspace)[:40]
    return f"{cleaned}-{hashlib.sha256(workspace.encode()).hexdigest()[:8]}"


def stream_name(options: NatsOptions, workspace: str) -> str:
    """The JetStream stream that holds one workspace's events."""
    return f"{options.stream_prefix}_{workspace_token(workspace)}"


def stream_subjects(options: NatsOptions, workspace: str) -> str:
    """The subject filter that binds a workspace's subjects to its stream."""
    return f"{options.subject_prefix}.{workspace_token(workspace)}.>"


def subject_for(options: NatsOptions, workspace: str, event_type: str) -> str:
    """The subject one event type of one workspace is published on."""
    if not EVENT_TYPE.fullmatch(event_type):
        raise PermanentError(f"event type {event_type!r} cannot be a NATS subject")
    return f"{options.subject_prefix}.{workspace_token(workspace)}.{event_type}"


def subject_covers(pattern: str, subject_filter: str) -> bool:
    """Whether every subject the filter matches also matches the pattern (`*`, `>` wildcards)."""
    wanted = subject_filter.split(".")
    for i, part in enumerate(pattern.split(".")):
        if part == ">":
            return len(wanted) > i
        if i >= len(wanted) or wanted[i] == ">" or part not in ("*", wanted[i]):
            return False
    return len(pattern.split(".")) == len(wanted)


def _url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is what validates it
    except ValueError as exc:
        return f"url {url!r} is not a URL ({exc})"
    if parts.scheme not in NATS_SCHEMES:
        schemes = " or ".join(f"{s}://" for s in NATS_SCHEMES)
        return f"url {url!r} must start with {schemes}"
    if not parts.hostname:
        return f"url {url!r} has no host"
    if parts.username or parts.password:
        return f"url {url!r} carries credentials; the register is committed, use creds_file"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return f"url {url!r} must be scheme://host:port only"
    return None


def _seconds(
    settings: Mapping[str, str], key: str, default: float, problems: list[SettingProblem]
) -> float:
    if key not in settings:
        return default
    try:
        seconds = float(settings[key])
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        problems.append(SettingProblem(key, f"{key} must be a positive number of seconds"))
        return default
    return seconds


def parse_nats_settings(settings: Mapping[str, str]) -> tuple[NatsOptions, list[SettingProblem]]:
    """Parse a nats connection's settings; every problem is reported, defaults fill the gaps."""
    problems: list[SettingProblem] = []
    for key in settings:
        if key not in NATS_SETTINGS:
            close = difflib.get_close_matches(key, NATS_SETTINGS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(SettingProblem(key, f"unknown nats setting {key!r}{hint}"))
    urls = tuple(u.strip() for u in settings["url"].split(",")) if "url" in settings else ()
    problems += [SettingProblem("url", p) for u in urls if (p := _url_problem(u))]
    defaults = NatsOptions()
    stream_prefix = settings.get("stream_prefix", defaults.stream_prefix)
    if not _TOKEN.fullmatch(stream_prefix) or len(stream_prefix) > 32:
        message = "stream_prefix must be 1-32 letters, digits, '_' or '-'"
        problems.append(SettingProblem("stream_prefix", message))
    subject_prefix = settings.get("subject_prefix", defaults.subject_prefix)
    if not _SUBJECT_PREFIX.fullmatch(subject_prefix) or len(subject_prefix) > 64:
        message = "subject_prefix must be dot-separated tokens of letters, digits, '_' or '-'"
        problems.append(SettingProblem("subject_prefix", message))
    window = _seconds(
        settings, "duplicate_window_seconds", defaults.duplicate_window_seconds, problems
    )
    max_age = _seconds(settings, "max_age_seconds", defaults.max_age_seconds, problems)
    if window > max_age:
        message = "duplicate_window_seconds cannot be longer than max_age_seconds"
        problems.append(SettingProblem("duplicate_window_seconds", message))
    options = NatsOptions(
        urls=urls,
        stream_prefix=stream_prefix,
        subject_prefix=subject_prefix,
        duplicate_window_seconds=window,
        max_age_seconds=max_age,
        creds_file=settings.get("creds_file") or None,
    )
    return options, problems


def check_nats_settings(
    settings: Mapping[str, str], *, live: bool, longest_retry_gap_seconds: float
) -> list[SettingProblem]:
    """Everything wrong with a nats connection's settings, given its mode and retry policy."""
    options, problems = parse_nats_settings(settings)
    if live and not options.urls:
        problems.append(SettingProblem(None, "a live nats connection needs settings.url"))
    if options.duplicate_window_seconds < longest_retry_gap_seconds:
        problems.append(
            SettingProblem(
                "duplicate_window_seconds",
                f"duplicate_window_seconds ({options.duplicate_window_seconds:g}) is shorter "
                f"than the longest wait between two attempts ({longest_retry_gap_seconds:g} s: "
                "retry cap plus timeout), so a retry after a lost acknowledgement could store "
                "an event twice",
            )
        )
    return problems
