"""Decoding a webhook body as strict JSON: hostile input is a 400, never a crash or a silent guess.

Python's ``json`` accepts what RFC 8259 leaves undefined or forbids, and fails on some inputs with
errors that are not ``JSONDecodeError``. At the webhook edge every one of those is a clear 400:
- ``NaN``, ``Infinity`` and numbers beyond a double (``1e400`` would become ``inf``);
- integers longer than any source sends (Python refuses beyond 4,300 digits with a ValueError);
- duplicate keys in one object (the last would silently win, and the worker might read another);
- nesting deeper than any source's entities (the C decoder raises RecursionError near 1,000 levels);
- text other than UTF-8 (``json.loads`` would guess UTF-16 or UTF-32 from bytes).
No pydantic, no yaml: this is on the ingest Lambda's cold-start path.
"""

from __future__ import annotations

import json
import math
from typing import Any

from switchyard.errors import MalformedBodyError

MAX_DEPTH = 32  # the deepest event (an accounting system's notification) is 6 levels deep
MAX_INTEGER_DIGITS = 20  # int64 and epoch milliseconds fit in 19


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise MalformedBodyError(f"body is not valid JSON: the key {duplicate!r} appears twice in one object")
    return document


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise MalformedBodyError(f"body is not valid JSON: an integer has more than {MAX_INTEGER_DIGITS} digits")
    return int(text)


def _float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise MalformedBodyError(f"body is not valid JSON: the number {text[:40]} is out of range")
    return number


def _constant(name: str) -> Any:
    raise MalformedBodyError(f"body is not valid JSON: {name} is not a JSON value")


def decode(body: bytes | str) -> Any:
    """The decoded body, or MalformedBodyError (400) saying what is wrong with it."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body  # RFC 8259: UTF-8, not UTF-16/32
        document = json.loads(text, object_pairs_hook=_object, parse_int=_integer, parse_float=_float,
                              parse_constant=_constant)
    except RecursionError:
        raise MalformedBodyError(f"body is not valid JSON: nested deeper than {MAX_DEPTH} levels") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedBodyError(f"body is not valid JSON: {exc}") from None
    except ValueError as exc:  # anything else the decoder refuses
        raise MalformedBodyError(f"body is not valid JSON: {str(exc)[:200]}") from None
    _check_depth(document)
    return document


def _check_depth(document: Any) -> None:
    """Breadth first, without recursion: the document is level 1, its containers' children level 2..."""
    level = [document] if isinstance(document, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            raise MalformedBodyError(f"body is not valid JSON: nested deeper than {MAX_DEPTH} levels")
        level = [child for node in level for child in (node.values() if isinstance(node, dict) else node)
                 if isinstance(child, dict | list)]
