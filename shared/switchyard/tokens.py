"""OAuth tokens of a connection whose refresh token rotates, with one refresher per realm.

Some vendors answer each refresh with a new refresh token and soon refuse the old one (``invalid_grant``), so two
workers that refresh at once race: the loser's successor is dead, or the winner's is overwritten. Every
refresh therefore goes through ``TokenStore.refresh``, which guarantees a single refresher per realm:

1. take a lease on the realm (``lease#<connection>#<realm>`` in DynamoDB: a conditional write with an expiry);
   a worker that finds the lease held polls until it is released or has expired, then takes it itself;
2. re-read the stored tokens: if the access token changed since the caller looked (someone refreshed while
   it waited) and is still valid, return it, with no second refresh;
3. otherwise call ``do_refresh(stored refresh token)``;
4. persist the new access token and the rotated refresh token as one JSON document (``put_secret_value`` on
   the connection secret, every other key kept; Secrets Manager moves ``AWSCURRENT``/``AWSPREVIOUS``);
5. release the lease, recording the secret version just written so the next holder reads exactly that.

The one unrecoverable case: the vendor rotated the refresh token and the successor never reached storage:
its answer was lost on the way back (the caller retries the same token at once, which recovers it wherever
the vendor honours the previous token for a grace period, or did not rotate at all), or the process died
after ``do_refresh`` returned and before step 4 succeeded. The next refresh with the stored (now rotated)
token gets ``invalid_grant``: the caller raises ``ConnectionDownError``, the connection waits for a reconnect
(``switchyard.connection_state``), and a refresh token stored by the reconnect is used even by a refresh
that was already under way. Everything short of that is recovered: a failed
``do_refresh`` releases the lease; a failed write keeps the lease and the new tokens in this process,
which writes them again on its next call; a lease whose holder died expires and is taken over.

Access tokens are cached in memory until they expire (the caller applies its margin). The store on AWS
(Secrets Manager + DynamoDB) is ``switchyard.aws.tokens``: clients see only the ``TokenStore`` protocol.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from switchyard.errors import ConnectionConfigError, RetryableError

LEASE_RETENTION_SECONDS = 7 * 24 * 3600  # the lease item only carries a version hint: let TTL clean it up
DEFAULT_MARGIN_SECONDS = 60.0

# the keys this module writes into the connection document; every other key is left as it was
ACCESS_TOKEN = "access_token"
ACCESS_EXPIRES_AT = "access_token_expires_at"
REFRESH_TOKEN = "refresh_token"
REFRESH_EXPIRES_AT = "refresh_token_expires_at"
REFRESHED_AT = "tokens_refreshed_at"
# what the store writes into a connection secret: a refresh is no reason to rebuild the connection's client
STORE_WRITTEN_KEYS = frozenset({ACCESS_TOKEN, ACCESS_EXPIRES_AT, REFRESH_TOKEN, REFRESH_EXPIRES_AT, REFRESHED_AT})


@dataclass(frozen=True)
class TokenResponse:
    """What a token endpoint answered to a refresh."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: float = 3600.0
    refresh_expires_in: float | None = None

    @classmethod
    def from_oauth(cls, body: Mapping[str, Any], *, previous_refresh_token: str) -> TokenResponse:
        """Parse an OAuth 2 token response; a response without ``refresh_token`` keeps the previous one."""
        refresh_expires = body.get("x_refresh_token_expires_in")
        return cls(access_token=str(body["access_token"]),
                   refresh_token=str(body.get("refresh_token") or previous_refresh_token),
                   expires_in=float(body.get("expires_in", 3600)),
                   refresh_expires_in=float(refresh_expires) if refresh_expires is not None else None)


@dataclass(frozen=True)
class TokenState:
    """The tokens of one realm as stored. ``access_expires_at`` is epoch seconds (0: unknown/none)."""

    realm: str
    refresh_token: str
    access_token: str | None = None
    access_expires_at: float = 0.0

    def access_valid(self, now: float, margin: float = 0.0) -> bool:
        return bool(self.access_token) and self.access_expires_at - margin > now

    def __repr__(self) -> str:  # never print tokens
        return f"TokenState(realm={self.realm!r}, access_expires_at={self.access_expires_at!r})"


class TokenStore(Protocol):
    def current(self, realm: str) -> TokenState:
        """The stored tokens (no vendor call). Raises ConnectionConfigError when the realm has none."""
        ...

    def refresh(self, realm: str, do_refresh: Callable[[str], TokenResponse], *,
                stale: str | None = None) -> TokenState:
        """Tokens with a fresh access token, refreshing at most once across all workers of the realm.

        ``stale`` is the access token the caller found expired or had refused (401): a stored token other
        than it, still valid, is returned as it is. ``do_refresh`` exchanges a refresh token for new tokens.
        """
        ...


def _state_from(realm: str, document: Mapping[str, Any]) -> TokenState:
    refresh_token = document.get(REFRESH_TOKEN)
    if not isinstance(refresh_token, str) or not refresh_token:
        raise ConnectionConfigError(f"the connection of realm {realm} has no refresh_token: connect the company")
    stored_realm = document.get("realm_id")
    if stored_realm is not None and str(stored_realm) != realm:
        raise ConnectionConfigError(f"the connection secret is for realm {stored_realm}, not {realm}")
    access_token = document.get(ACCESS_TOKEN)
    try:
        expires_at = float(document.get(ACCESS_EXPIRES_AT) or 0)
    except (TypeError, ValueError):
        expires_at = 0.0
    return TokenState(realm, refresh_token, access_token if isinstance(access_token, str) and access_token else None,
                      expires_at)


class LeasedTokenStore:
    """The single-writer refresh, over four storage primitives that subclasses provide.

    ``lease_seconds`` bounds how long a dead holder blocks the realm (keep it well above the token call's
    timeout); a waiter polls every ``poll_seconds`` for at most ``wait_seconds`` before giving up with a
    ``RetryableError("token_refresh_busy")``.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 lease_seconds: float = 45.0, poll_seconds: float = 0.1, wait_seconds: float | None = None,
                 margin_seconds: float = DEFAULT_MARGIN_SECONDS) -> None:
        if lease_seconds <= 0 or poll_seconds <= 0:
            raise ValueError("lease_seconds and poll_seconds must be positive")
        self._clock = clock
        self._sleep = sleep
        self._lease_seconds = lease_seconds
        self._poll_seconds = poll_seconds
        self._max_polls = math.ceil((lease_seconds + 5 if wait_seconds is None else wait_seconds) / poll_seconds)
        self._margin = margin_seconds
        self._lock = threading.Lock()
        self._cache: dict[str, TokenState] = {}
        # realm -> (lease owner, document, state): refreshed tokens not yet persisted (see the module docstring)
        self._unsaved: dict[str, tuple[str, dict[str, Any], TokenState]] = {}

    # ----------------------------------------------------------------- storage primitives

    def _try_acquire(self, realm: str, owner: str, now: float) -> tuple[bool, str | None]:
        """Take the lease if free or expired; return (taken, version hint left by the last holder)."""
        raise NotImplementedError

    def _release(self, realm: str, owner: str, version: str | None) -> None:
        """Release the lease if ``owner`` still holds it, leaving ``version`` as the hint. Never raises."""
        raise NotImplementedError

    def _read(self, realm: str, version: str | None) -> tuple[TokenState, dict[str, Any]]:
        """The stored document (the newer of the current one and ``version``) and its tokens."""
        raise NotImplementedError

    def _write(self, realm: str, document: dict[str, Any], owner: str) -> str:
        """Store ``document`` as the new current one (idempotent per ``owner``); return its version."""
        raise NotImplementedError

    # ----------------------------------------------------------------- TokenStore

    def current(self, realm: str) -> TokenState:
        unsaved = self._persist_unsaved(realm)
        if unsaved is not None:
            return unsaved
        with self._lock:
            cached = self._cache.get(realm)
        if cached is not None and cached.access_valid(self._clock()):
            return cached
        state, _ = self._read(realm, None)
        with self._lock:
            self._cache[realm] = state
        return state

    def refresh(self, realm: str, do_refresh: Callable[[str], TokenResponse], *,
                stale: str | None = None) -> TokenState:
        unsaved = self._persist_unsaved(realm)
        if unsaved is not None:
            if self._usable(unsaved, stale):
                return unsaved
            with self._lock:
                still_unsaved = realm in self._unsaved
            if still_unsaved:  # we hold the lease and the only live refresh token: nothing else to try
                raise RetryableError(f"the refreshed tokens of realm {realm} could not be stored yet",
                                     reason="token_store_unavailable")
        owner = str(uuid.uuid4())
        version = self._acquire(realm, owner)
        keep_lease = False
        try:
            state, document = self._read(realm, version)
            if self._usable(state, stale):
                return self._remember(state)  # refreshed by someone else while we waited
            try:
                tokens = do_refresh(state.refresh_token)
            except Exception:
                latest, latest_document = self._read(realm, None)
                if latest.refresh_token == state.refresh_token:
                    raise
                if self._usable(latest, stale):
                    return self._remember(latest)  # our lease had expired and another worker refreshed
                # a newer refresh token was stored meanwhile (a reconnect, or a refresher whose lease had
                # expired): that one is the connection's, not the one just refused
                state, document = latest, latest_document
                tokens = do_refresh(state.refresh_token)
            now = self._clock()
            fresh = TokenState(realm, tokens.refresh_token, tokens.access_token, now + tokens.expires_in)
            document = {**document, REFRESH_TOKEN: fresh.refresh_token, ACCESS_TOKEN: fresh.access_token,
                        ACCESS_EXPIRES_AT: fresh.access_expires_at, REFRESHED_AT: now}
            if tokens.refresh_expires_in is not None:
                document[REFRESH_EXPIRES_AT] = now + tokens.refresh_expires_in
            try:
                version = self._write(realm, document, owner)
            except Exception as exc:
                # The rotated refresh token now lives only here. Keep the lease (another worker would refresh
                # with the dead token) and the document, and write it again on the next call.
                keep_lease = True
                with self._lock:
                    self._unsaved[realm] = (owner, document, fresh)
                raise RetryableError(f"the refreshed tokens of realm {realm} could not be stored yet",
                                     reason="token_store_unavailable") from exc
            return self._remember(fresh)
        finally:
            if not keep_lease:
                self._release(realm, owner, version)

    # ----------------------------------------------------------------- internals

    def _usable(self, state: TokenState, stale: str | None) -> bool:
        return state.access_token != stale and state.access_valid(self._clock(), self._margin)

    def _remember(self, state: TokenState) -> TokenState:
        with self._lock:
            self._cache[state.realm] = state
        return state

    def _acquire(self, realm: str, owner: str) -> str | None:
        for attempt in range(self._max_polls + 1):
            taken, version = self._try_acquire(realm, owner, self._clock())
            if taken:
                return version
            if attempt < self._max_polls:
                self._sleep(self._poll_seconds)
        raise RetryableError(f"another worker is still refreshing the tokens of realm {realm}",
                             reason="token_refresh_busy", retry_after=self._lease_seconds)

    def _persist_unsaved(self, realm: str) -> TokenState | None:
        """Write tokens a failed write left behind; return them (usable even if the write fails again)."""
        with self._lock:
            unsaved = self._unsaved.get(realm)
        if unsaved is None:
            return None
        owner, document, state = unsaved
        try:
            version = self._write(realm, document, owner)
        except Exception:
            return state
        with self._lock:
            self._unsaved.pop(realm, None)
        self._release(realm, owner, version)
        return self._remember(state)


@dataclass
class _MemoryBackend:
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    leases: dict[str, tuple[str, float, str | None]] = field(default_factory=dict)  # owner, expires, version
    versions: dict[str, int] = field(default_factory=dict)
    writes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class InMemoryTokenStore(LeasedTokenStore):
    """For unit tests: connection documents per realm in memory, same contract as SecretsManagerTokenStore
    (tests/contract/test_refresh_token_store_contract.py). ``shared_with`` makes a second store on the same
    storage, as another worker process would see it (own lease owner ids, own token cache)."""

    def __init__(self, documents: Mapping[str, Mapping[str, Any]] | None = None, *,
                 shared_with: InMemoryTokenStore | None = None, **options: Any) -> None:
        super().__init__(**options)
        self._backend: _MemoryBackend = shared_with._backend if shared_with is not None else _MemoryBackend()
        for realm, document in (documents or {}).items():
            self._put(realm, dict(document))

    @property
    def writes(self) -> int:
        """How many refreshed documents were stored."""
        return self._backend.writes

    def seed(self, realm: str, refresh_token: str, *, access_token: str | None = None,
             access_expires_at: float = 0.0, **other: Any) -> None:
        """Store a realm's connection document as the consent flow would."""
        document = {**other, REFRESH_TOKEN: refresh_token}
        if access_token is not None:
            document |= {ACCESS_TOKEN: access_token, ACCESS_EXPIRES_AT: access_expires_at}
        self._put(realm, document)

    def document(self, realm: str) -> dict[str, Any]:
        with self._backend.lock:
            return dict(self._backend.documents[realm])

    def _put(self, realm: str, document: dict[str, Any]) -> str:
        with self._backend.lock:
            self._backend.documents[realm] = document
            self._backend.versions[realm] = self._backend.versions.get(realm, 0) + 1
            return str(self._backend.versions[realm])

    def _try_acquire(self, realm: str, owner: str, now: float) -> tuple[bool, str | None]:
        with self._backend.lock:
            held = self._backend.leases.get(realm)
            if held is not None and held[0] and held[1] > now:
                return False, None
            hint = held[2] if held else None
            self._backend.leases[realm] = (owner, now + self._lease_seconds, hint)
            return True, hint

    def _release(self, realm: str, owner: str, version: str | None) -> None:
        with self._backend.lock:
            held = self._backend.leases.get(realm)
            if held is not None and held[0] == owner:
                self._backend.leases[realm] = ("", 0.0, version)

    def _read(self, realm: str, version: str | None) -> tuple[TokenState, dict[str, Any]]:
        with self._backend.lock:
            document = self._backend.documents.get(realm)
            if document is None:
                raise ConnectionConfigError(f"no connection is stored for realm {realm}")
            document = dict(document)
        return _state_from(realm, document), document

    def _write(self, realm: str, document: dict[str, Any], owner: str) -> str:
        version = self._put(realm, dict(document))
        with self._backend.lock:
            self._backend.writes += 1
        return version
