"""An object built from secrets and rebuilt when one of them changes (key rotation, a new base URL) without a
redeploy: what a Lambda asks for on each request, while building happens once per cold start and per change."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T", covariant=True)


class SecretBound(Generic[T]):
    """``get()`` reads the secrets (``read``: the secret reader's short cache) and returns the object built
    from their current values, building it again only when a value other than ``ignored_keys`` changed
    (e.g. tokens a client's own token store rotates). ``build`` receives ``{name: secret value}``."""

    def __init__(self, read: Callable[[str], Mapping[str, Any]], secret_ids: Mapping[str, str],
                 build: Callable[[Mapping[str, Mapping[str, Any]]], T], *,
                 ignored_keys: Collection[str] = ()) -> None:
        self._read = read
        self._secret_ids = dict(secret_ids)
        self._build = build
        self._ignored = frozenset(ignored_keys)
        self._built_from: dict[str, dict[str, Any]] | None = None
        self._current: T | None = None
        self._lock = threading.Lock()  # a batch's entities ask at once (cold start): one build, not one each

    def get(self) -> T:
        values = {name: self._read(secret_id) for name, secret_id in self._secret_ids.items()}
        stable = {name: {k: v for k, v in value.items() if k not in self._ignored} for name, value in values.items()}
        with self._lock:
            if self._current is None or self._built_from != stable:
                self._current, self._built_from = self._build(values), stable
            return self._current
