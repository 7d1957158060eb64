"""The leased token store's edges, pinned after the full mutation run of tokens.py (2026-12-03): when a token
counts as valid, what a stored document must hold, the in-process cache, the polls of a waiting worker, the
version hint a lease passes on, and the refused token never handed back."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from switchyard.errors import ConnectionConfigError, PermanentError, RetryableError
from switchyard.tokens import InMemoryTokenStore, TokenResponse, TokenState

from tests.conftest import FakeClock

REALM = "9130"
T0 = 1_795_000_000.0


class CountingStore(InMemoryTokenStore):
    """Counts the storage reads (with the version hint each was given) and the lease attempts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reads: list[str | None] = []
        self.attempts = 0

    def _read(self, realm: str, version: str | None) -> Any:
        self.reads.append(version)
        return super()._read(realm, version)

    def _try_acquire(self, realm: str, owner: str, now: float) -> tuple[bool, str | None]:
        self.attempts += 1
        return super()._try_acquire(realm, owner, now)


def store(clock: FakeClock, document: dict[str, Any] | None = None, **options: Any) -> CountingStore:
    return CountingStore({REALM: document or {"refresh_token": "R0"}}, clock=clock, sleep=lambda s: None, **options)


def vendor(*answers: TokenResponse | Exception) -> Any:
    calls: list[str] = []
    queue = list(answers)

    def refresh(refresh_token: str) -> TokenResponse:
        calls.append(refresh_token)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    refresh.calls = calls  # type: ignore[attr-defined]
    return refresh


# --------------------------------------------------------------------------- TokenState and the stored document


def test_access_token_is_valid_until_the_second_it_expires_not_at_it() -> None:
    state = TokenState(REALM, "R0", "A0", access_expires_at=T0)

    assert state.access_valid(T0 - 0.5)
    assert not state.access_valid(T0)
    assert state.access_valid(T0 - 60.5, margin=60) and not state.access_valid(T0 - 60, margin=60)


@pytest.mark.parametrize("refresh_token", ["", 5, None], ids=["empty", "number", "null"])
def test_stored_document_without_a_refresh_token_as_text_asks_for_a_connect(refresh_token: Any) -> None:
    with pytest.raises(ConnectionConfigError, match="the connection of realm 9130 has no refresh_token"):
        store(FakeClock(T0), {"refresh_token": refresh_token}).current(REALM)


@pytest.mark.parametrize("expires", [None, "soon", [1]], ids=["missing", "text", "list"])
def test_stored_access_token_without_a_readable_expiry_expires_at_zero(expires: Any) -> None:
    document = {"refresh_token": "R0", "access_token": "A0"}
    if expires is not None:
        document["access_token_expires_at"] = expires

    state = store(FakeClock(T0), document).current(REALM)

    assert (state.realm, state.access_expires_at) == (REALM, 0.0)


def test_seeded_access_token_without_an_expiry_has_expired() -> None:
    tokens = InMemoryTokenStore()
    tokens.seed(REALM, "R0", access_token="A0")

    assert tokens.document(REALM)["access_token_expires_at"] == 0.0


# --------------------------------------------------------------------------- the cache


def test_current_serves_a_valid_access_token_from_the_cache() -> None:
    clock = FakeClock(T0)
    tokens = store(clock, {"refresh_token": "R0", "access_token": "A0", "access_token_expires_at": T0 + 600})

    first, again = tokens.current(REALM), tokens.current(REALM)

    assert first == again and again.access_token == "A0"
    assert len(tokens.reads) == 1


def test_current_after_a_refresh_serves_the_refreshed_token_without_reading() -> None:
    clock = FakeClock(T0)
    tokens = store(clock)
    tokens.refresh(REALM, vendor(TokenResponse("A1", "R1", expires_in=3600)))
    reads = len(tokens.reads)

    state = tokens.current(REALM)

    assert (state.realm, state.access_token) == (REALM, "A1")
    assert len(tokens.reads) == reads


# --------------------------------------------------------------------------- refresh


def test_refresh_stores_when_the_refresh_token_expires() -> None:
    tokens = store(FakeClock(T0))

    tokens.refresh(REALM, vendor(TokenResponse("A1", "R1", expires_in=3600, refresh_expires_in=8_726_400)))

    assert tokens.document(REALM)["refresh_token_expires_at"] == T0 + 8_726_400


def test_refresh_of_a_token_about_to_expire_within_the_margin_refreshes() -> None:
    tokens = store(FakeClock(T0), {"refresh_token": "R0", "access_token": "A0", "access_token_expires_at": T0 + 30})
    refresh = vendor(TokenResponse("A1", "R1"))

    state = tokens.refresh(REALM, refresh)

    assert state.access_token == "A1" and refresh.calls == ["R0"]


def test_refresh_counts_every_stored_document() -> None:
    clock = FakeClock(T0)
    tokens = store(clock)

    tokens.refresh(REALM, vendor(TokenResponse("A1", "R1")))
    tokens.refresh(REALM, vendor(TokenResponse("A2", "R2")), stale="A1")

    assert tokens.writes == 2


def test_refresh_reads_the_version_the_last_holder_left_on_the_lease() -> None:
    # the seeded document is version 1, the first refresh writes version 2 and leaves it on the lease
    tokens = store(FakeClock(T0))

    tokens.refresh(REALM, vendor(TokenResponse("A1", "R1")))
    tokens.refresh(REALM, vendor(TokenResponse("A2", "R2")), stale="A1")

    assert tokens.reads == [None, "2"]


def test_refresh_never_hands_back_the_refused_token_a_reconnect_left_in_place() -> None:
    # the vendor refuses R0: meanwhile a reconnect stored R5 but left the access token the caller had refused
    tokens = store(FakeClock(T0), {"refresh_token": "R0", "access_token": "A0", "access_token_expires_at": T0 + 600})

    def refused_then_reconnected(refresh_token: str) -> TokenResponse:
        if refresh_token == "R0":
            tokens.seed(REALM, "R5", access_token="A0", access_expires_at=T0 + 600)
            raise PermanentError("invalid_grant", reason="target_auth_failed", target_status=400)
        return TokenResponse("A6", "R6")

    state = tokens.refresh(REALM, refused_then_reconnected, stale="A0")

    assert (state.access_token, state.refresh_token) == ("A6", "R6")


def test_refresh_while_the_kept_tokens_are_still_unstored_never_returns_the_refused_one() -> None:
    tokens = store(FakeClock(T0))
    tokens.fail = True  # type: ignore[attr-defined]
    real_write = tokens._write

    def write(realm: str, document: dict[str, Any], owner: str) -> str:
        if tokens.fail:  # type: ignore[attr-defined]
            raise OSError("Secrets Manager unavailable")
        return real_write(realm, document, owner)

    tokens._write = write  # type: ignore[method-assign]
    with pytest.raises(RetryableError):
        tokens.refresh(REALM, vendor(TokenResponse("A1", "R1")))

    with pytest.raises(RetryableError) as raised:
        tokens.refresh(REALM, vendor(TokenResponse("A2", "R2")), stale="A1")  # the target refused A1

    assert raised.value.reason == "token_store_unavailable"
    assert str(raised.value) == "the refreshed tokens of realm 9130 could not be stored yet"


def test_kept_tokens_once_stored_are_not_written_again() -> None:
    tokens = store(FakeClock(T0))
    failures = [OSError("Secrets Manager unavailable")]
    real_write = tokens._write

    def write(realm: str, document: dict[str, Any], owner: str) -> str:
        if failures:
            raise failures.pop()
        return real_write(realm, document, owner)

    tokens._write = write  # type: ignore[method-assign]
    with pytest.raises(RetryableError):
        tokens.refresh(REALM, vendor(TokenResponse("A1", "R1")))

    assert tokens.current(REALM).access_token == "A1"  # stored now
    tokens.current(REALM)
    tokens.refresh(REALM, vendor(TokenResponse("A2", "R2")), stale="A1")

    assert tokens.writes == 2  # the kept document once, then A2
    assert tokens.reads[-1] == "2"  # the persisted write's version was left on the lease


def test_two_threads_storing_the_kept_tokens_at_once_both_get_them() -> None:
    # a worker's lookups run side by side (switchyard.concurrency): both may find the kept tokens unstored
    tokens = store(FakeClock(T0))
    failures = [OSError("Secrets Manager unavailable")]
    both_writing = threading.Barrier(2, timeout=5)
    real_write = tokens._write

    def write(realm: str, document: dict[str, Any], owner: str) -> str:
        if failures:
            raise failures.pop()
        both_writing.wait()
        return real_write(realm, document, owner)

    tokens._write = write  # type: ignore[method-assign]
    with pytest.raises(RetryableError):
        tokens.refresh(REALM, vendor(TokenResponse("A1", "R1")))
    seen: list[Any] = []

    def read() -> None:
        try:
            seen.append(tokens.current(REALM).access_token)
        except Exception as exc:  # handed to the assertion
            seen.append(exc)

    threads = [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert seen == ["A1", "A1"]


# --------------------------------------------------------------------------- the lease


def test_waiting_worker_polls_every_poll_interval_for_the_lease_plus_five_seconds() -> None:
    clock, sleeps = FakeClock(T0), []
    holder = store(clock, lease_seconds=10, poll_seconds=1)
    assert holder._try_acquire(REALM, "someone-else", clock())[0]
    waiter = CountingStore(shared_with=holder, clock=clock, sleep=sleeps.append, lease_seconds=10, poll_seconds=1)

    with pytest.raises(RetryableError) as raised:
        waiter.refresh(REALM, vendor(TokenResponse("A1", "R1")))

    assert raised.value.reason == "token_refresh_busy"
    assert sleeps == [1] * 15  # (10 + 5) / 1, the clock standing still: the holder is alive
    assert waiter.attempts == 16


def test_default_poll_is_a_tenth_of_a_second() -> None:
    clock, sleeps = FakeClock(T0), []
    holder = store(clock)
    assert holder._try_acquire(REALM, "someone-else", clock())[0]
    waiter = CountingStore(shared_with=holder, clock=clock, sleep=sleeps.append, wait_seconds=0.3)

    with pytest.raises(RetryableError):
        waiter.refresh(REALM, vendor(TokenResponse("A1", "R1")))

    assert sleeps == [0.1] * 3


def test_late_release_of_an_expired_lease_leaves_the_new_holder_s_lease_alone() -> None:
    clock = FakeClock(T0)
    first = store(clock, lease_seconds=30)
    second = InMemoryTokenStore(shared_with=first, clock=clock, lease_seconds=30)
    third = InMemoryTokenStore(shared_with=first, clock=clock, lease_seconds=30)
    assert first._try_acquire(REALM, "first", T0)[0]
    assert second._try_acquire(REALM, "second", T0 + 31)[0]  # the first holder's lease had expired

    first._release(REALM, "first", "9")

    assert third._try_acquire(REALM, "third", T0 + 32) == (False, None)
