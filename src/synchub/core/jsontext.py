"""Strings a parsed JSON document may hold that no store of ours can keep.

JSON lets a string escape any code unit: `"\\u0000"` (NUL) and `"\\ud800"` (a UTF-16
surrogate without its pair) parse in Python, but PostgreSQL refuses NUL in text and a lone
surrogate is not Unicode text at all (it cannot be encoded as UTF-8, so SQLite refuses it
too; RFC 7493 I-JSON forbids it). Intake refuses such documents, naming each bad string by
its RFC 6901 JSON pointer, so they are never stored to fail later.
"""

from __future__ import annotations

import re
from typing import Any

from synchub.core.errors import FieldProblem

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
NUL_DETAIL = "contains a NUL character, which cannot be stored"
SURROGATE_DETAIL = "contains an unpaired UTF-16 surrogate (\\ud800-\\udfff), which is not text"


def pointer_token(name: str) -> str:
    """One RFC 6901 reference token: `~` as `~0`, `/` as `~1`."""
    return name.replace("~", "~0").replace("/", "~1")


def _detail(text: str) -> str | None:
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    return NUL_DETAIL if found.group() == "\x00" else SURROGATE_DETAIL


def unstorable_strings(document: Any, *, pointer: str = "", limit: int = 10) -> list[FieldProblem]:
    """The strings (values or member names) of `document` holding NUL or a lone surrogate.

    At most `limit` problems, in document order. A bad member name is reported at the
    object that holds it (the name itself cannot be written into a pointer we answer with).
    Iterative, so a deeply nested document cannot exhaust the stack.
    """
    problems: list[FieldProblem] = []
    stack: list[tuple[str, Any]] = [(pointer, document)]
    while stack and len(problems) < limit:
        where, value = stack.pop()
        if isinstance(value, str):
            detail = _detail(value)
            if detail is not None:
                problems.append(FieldProblem(where, detail))
        elif isinstance(value, dict):
            children = []
            for name, child in value.items():
                detail = _detail(name)
                if detail is not None:
                    problems.append(FieldProblem(where, f"a member name {detail}"))
                    continue
                children.append((f"{where}/{pointer_token(name)}", child))
            stack.extend(reversed(children))
        elif isinstance(value, list):
            stack.extend(reversed([(f"{where}/{i}", child) for i, child in enumerate(value)]))
    return problems[:limit]
