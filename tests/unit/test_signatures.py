"""Standard Webhooks verification: genuine deliveries pass, everything else is one SignatureError."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterator

import pytest
from switchyard.errors import SignatureError, StaleTimestampError
from switchyard.signatures import StandardWebhookVerifier, sign

NOW = 1_795_166_100  # 2026-11-20T09:15:00Z, far from the wall clock on purpose: the clock is injected
BODY = b'{"type":"order.placed","timestamp":"2026-11-20T09:15:00Z","data":{}}'
OLD_SECRET = "whsec_" + base64.b64encode(b"old-secret-old-secret-old-secret").decode()
NEW_SECRET = "whsec_" + base64.b64encode(b"new-secret-new-secret-new-secret").decode()


def verifier(*secrets: str, now: float = NOW) -> StandardWebhookVerifier:
    return StandardWebhookVerifier(list(secrets), clock=lambda: now)


def test_verify_valid_signature_returns_event_id(signing_secret: str) -> None:
    headers = sign(signing_secret, "msg_1", NOW, BODY)

    assert verifier(signing_secret).verify(BODY, headers) == "msg_1"


@pytest.mark.parametrize("sender_secret", [OLD_SECRET, NEW_SECRET], ids=["old", "new"])
def test_verify_during_rotation_accepts_either_secret(sender_secret: str) -> None:
    headers = sign(sender_secret, "msg_rot", NOW, BODY)

    assert verifier(OLD_SECRET, NEW_SECRET).verify(BODY, headers) == "msg_rot"


def test_verify_secret_not_configured_rejected() -> None:
    headers = sign(OLD_SECRET, "msg_1", NOW, BODY)

    with pytest.raises(SignatureError, match="no signature matches"):
        verifier(NEW_SECRET).verify(BODY, headers)


def test_verify_several_signatures_in_header_any_match_accepted(signing_secret: str) -> None:
    # Given a sender listing a signature for another secret first (space-separated, as the spec allows)
    other = sign(OLD_SECRET, "msg_1", NOW, BODY)["webhook-signature"]
    headers = sign(signing_secret, "msg_1", NOW, BODY)
    headers["webhook-signature"] = f"{other} {headers['webhook-signature']}"

    assert verifier(signing_secret).verify(BODY, headers) == "msg_1"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda body, h: (body + b" ", h), id="body"),
        pytest.param(lambda body, h: (body, {**h, "webhook-id": "msg_other"}), id="event-id"),
        pytest.param(lambda body, h: (body, {**h, "webhook-timestamp": str(NOW + 1)}), id="timestamp"),
    ],
)
def test_verify_tampered_delivery_raises_signature_error(signing_secret: str, tamper) -> None:
    body, headers = tamper(BODY, sign(signing_secret, "msg_1", NOW, BODY))

    with pytest.raises(SignatureError) as raised:
        verifier(signing_secret).verify(body, headers)
    assert not isinstance(raised.value, StaleTimestampError)
    assert raised.value.status_code == 401


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_verify_missing_header_raises_signature_error_naming_it(signing_secret: str, missing: str) -> None:
    headers = sign(signing_secret, "msg_1", NOW, BODY)
    del headers[missing]

    with pytest.raises(SignatureError, match=missing):
        verifier(signing_secret).verify(BODY, headers)


def test_verify_empty_header_counts_as_missing(signing_secret: str) -> None:
    headers = {**sign(signing_secret, "msg_1", NOW, BODY), "webhook-signature": ""}

    with pytest.raises(SignatureError, match="webhook-signature"):
        verifier(signing_secret).verify(BODY, headers)


@pytest.mark.parametrize("offset", [-301, 301, -3600, 86_400], ids=["past", "future", "hour-old", "day-ahead"])
def test_verify_timestamp_outside_tolerance_raises_stale_timestamp(signing_secret: str, offset: int) -> None:
    # Given a correctly signed delivery whose timestamp is more than 5 minutes away from now
    headers = sign(signing_secret, "msg_1", NOW + offset, BODY)

    with pytest.raises(StaleTimestampError) as raised:
        verifier(signing_secret).verify(BODY, headers)
    assert raised.value.status_code == 401
    assert raised.value.code == "stale_timestamp"


@pytest.mark.parametrize("offset", [-300, 300, -299, 299])
def test_verify_timestamp_at_tolerance_edge_accepted(signing_secret: str, offset: int) -> None:
    headers = sign(signing_secret, "msg_1", NOW + offset, BODY)

    assert verifier(signing_secret).verify(BODY, headers) == "msg_1"


def test_verify_custom_tolerance_is_honoured(signing_secret: str) -> None:
    headers = sign(signing_secret, "msg_1", NOW - 500, BODY)
    lenient = StandardWebhookVerifier([signing_secret], tolerance_seconds=600, clock=lambda: NOW)

    assert lenient.verify(BODY, headers) == "msg_1"
    with pytest.raises(StaleTimestampError):
        verifier(signing_secret).verify(BODY, headers)


@pytest.mark.parametrize("timestamp", ["soon", "1795166100.5", "", " "])
def test_verify_non_integer_timestamp_raises_signature_error(signing_secret: str, timestamp: str) -> None:
    headers = {**sign(signing_secret, "msg_1", NOW, BODY), "webhook-timestamp": timestamp}

    with pytest.raises(SignatureError):
        verifier(signing_secret).verify(BODY, headers)


@pytest.mark.parametrize(
    "signature",
    [
        "v1",  # no comma
        "v1 nocomma",
        "v1,not*base64!",
        "v1,",
        "v1,a,b",
        ",abc",
        "v2,AAAA",  # unknown version
        "v1,\u00e9\u00e9\u00e9\u00e9",  # non-ASCII
    ],
)
def test_verify_malformed_signature_header_raises_signature_error(signing_secret: str, signature: str) -> None:
    headers = {**sign(signing_secret, "msg_1", NOW, BODY), "webhook-signature": signature}

    with pytest.raises(SignatureError, match="no signature matches"):
        verifier(signing_secret).verify(BODY, headers)


def test_verify_malformed_entry_before_valid_one_still_accepted(signing_secret: str) -> None:
    headers = sign(signing_secret, "msg_1", NOW, BODY)
    headers["webhook-signature"] = f"v1,%%% garbage {headers['webhook-signature']}"

    assert verifier(signing_secret).verify(BODY, headers) == "msg_1"


def test_verify_non_utf8_body_raises_signature_error(signing_secret: str) -> None:
    body = b"\xff\xfe{not utf-8}"
    headers = sign(signing_secret, "msg_1", NOW, b"{}")

    with pytest.raises(SignatureError):
        verifier(signing_secret).verify(body, headers)


@pytest.mark.parametrize("secrets", [[], [""]], ids=["none", "blank"])
def test_verify_no_secret_configured_raises_signature_error(signing_secret: str, secrets: list[str]) -> None:
    headers = sign(signing_secret, "msg_1", NOW, BODY)

    with pytest.raises(SignatureError, match="no signing secret"):
        StandardWebhookVerifier(secrets, clock=lambda: NOW).verify(BODY, headers)


def test_sign_produces_standard_webhooks_headers(signing_secret: str) -> None:
    headers = sign(signing_secret, "msg_1", NOW, BODY)

    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(NOW)
    version, _, signature = headers["webhook-signature"].partition(",")
    assert version == "v1"
    assert len(base64.b64decode(signature, validate=True)) == 32  # HMAC-SHA256


@pytest.mark.parametrize("tag", ["v2", "v1a", "V1", ""], ids=["v2", "v1a", "upper-V1", "no-version"])
def test_verify_correct_hmac_under_another_version_tag_rejected(signing_secret: str, tag: str) -> None:
    headers = sign(signing_secret, "msg_1", NOW, BODY)
    headers["webhook-signature"] = tag + "," + headers["webhook-signature"].partition(",")[2]

    with pytest.raises(SignatureError, match="no signature matches"):
        verifier(signing_secret).verify(BODY, headers)


@pytest.mark.parametrize("junk", ["!", "*", "-", "_"], ids=["bang", "star", "dash", "underscore"])
def test_verify_correct_hmac_with_a_non_base64_character_rejected(signing_secret: str, junk: str) -> None:
    # a lenient decoder would drop the stray character and find the genuine HMAC
    headers = sign(signing_secret, "msg_1", NOW, BODY)
    version, _, encoded = headers["webhook-signature"].partition(",")
    headers["webhook-signature"] = f"{version},{encoded[:8]}{junk}{encoded[8:]}"

    with pytest.raises(SignatureError, match="no signature matches"):
        verifier(signing_secret).verify(BODY, headers)


def test_verify_names_every_missing_header_in_order(signing_secret: str) -> None:
    with pytest.raises(SignatureError) as raised:
        verifier(signing_secret).verify(BODY, {})

    assert str(raised.value) == "missing header(s): webhook-id, webhook-timestamp, webhook-signature"


@pytest.mark.parametrize(("tolerance", "minutes"), [(600, "10"), (300, "5"), (90, "1")])
def test_verify_stale_timestamp_says_the_tolerance_in_whole_minutes(signing_secret: str, tolerance: int,
                                                                   minutes: str) -> None:
    headers = sign(signing_secret, "msg_1", NOW - tolerance - 1, BODY)
    strict = StandardWebhookVerifier([signing_secret], tolerance_seconds=tolerance, clock=lambda: NOW)

    with pytest.raises(StaleTimestampError) as raised:
        strict.verify(BODY, headers)
    assert str(raised.value) == f"webhook-timestamp is outside the {minutes}-minute tolerance"


@pytest.fixture
def machine_outside_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A developer's laptop five hours west of UTC (the CLI and the demo sign there; Lambda runs in UTC)."""
    monkeypatch.setenv("TZ", "EST5")  # POSIX form: no time-zone database needed
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def reference_signature(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks signature written out from the spec: HMAC-SHA256 of ``id.timestamp.body``."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{event_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@pytest.mark.usefixtures("machine_outside_utc")
def test_sign_outside_utc_signs_the_unix_timestamp_it_sends(signing_secret: str) -> None:
    headers = sign(signing_secret, "msg_tz", NOW, BODY)

    assert headers["webhook-signature"] == reference_signature(signing_secret, "msg_tz", NOW, BODY)


@pytest.mark.usefixtures("machine_outside_utc")
def test_verify_outside_utc_accepts_a_genuine_delivery(signing_secret: str) -> None:
    headers = {"webhook-id": "msg_tz", "webhook-timestamp": str(NOW),
               "webhook-signature": reference_signature(signing_secret, "msg_tz", NOW, BODY)}

    assert verifier(signing_secret).verify(BODY, headers) == "msg_tz"
