"""Capturing structlog entries in a test, whatever level an earlier test configured.

`synchub` commands run in-process by CLI tests configure logging for their level (a filtering
wrapper drops INFO at WARNING), and structlog's configuration is global: `capture_logs` alone
would then see nothing below that level. This lets every level through while it captures.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog
from structlog.testing import capture_logs


@contextmanager
def captured_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Every log entry made inside the block, at any level."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with capture_logs() as logs:
            yield logs
    finally:
        structlog.configure(**saved)
