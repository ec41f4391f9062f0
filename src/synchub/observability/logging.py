"""structlog set-up: JSON (or console) logs on stderr, with secrets removed by key name."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

SECRET_KEYS = ("authorization", "secret", "token", "password", "signature", "api_key", "cookie")


def redact_secret_keys(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace the value of any field whose name says it holds a secret."""
    for key in list(event):
        if any(marker in key.lower() for marker in SECRET_KEYS):
            event[key] = "[redacted]"
    return event


class CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]  # stdlib generic
    """Writes to whatever sys.stderr is at the time of each record (survives redirection)."""

    @property  # a read-only view of the current stream
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stderr)


def configure_logging(*, level: str = "INFO", json: bool = True) -> None:
    """Configure structlog and the standard library to write one event per line to stderr."""
    numeric = logging.getLevelName(level.upper())
    logging.basicConfig(
        level=numeric, format="%(message)s", force=True, handlers=[CurrentStderrHandler()]
    )
    for noisy in (
        "httpx",
        "httpcore",
        "uvicorn.access",
        "alembic",
    ):  # full URLs at INFO; ours say enough
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secret_keys,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
