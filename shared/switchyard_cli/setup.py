"""``switchyard setup``: which of a stack's secrets are still empty, and filling those Switchyard can fill.

Every secret is a JSON object the stack creates with empty values (infra/constructs/secrets.py). A secret is
``missing`` while all its values but ``base_url`` are empty (every webhook of a source is rejected with 401,
a connection cannot call its target), ``partial`` while some are (a connection may use only one of two
credentials, e.g. an API key or OAuth client credentials), ``set`` otherwise. Nothing here names a system:
what a secret holds is read from the secret.

Switchyard can fill two kinds itself, read from the key that holds them: ``signing_secrets`` (Standard
Webhooks: ``whsec_`` + base64 of 32 random bytes, given to the source afterwards) and ``tokens`` (a shared
token the sender echoes back, registered with the sender afterwards). Everything else comes from the
vendor and is asked for. A value already there is never replaced: setup can run again at any time.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

GENERATED = {
    "signing_secrets": lambda: "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
    "tokens": lambda: secrets.token_hex(32),
}
NOT_A_CREDENTIAL = frozenset({"base_url"})  # every connection has one, with a default


def empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


@dataclass
class SecretState:
    tag: str  # "source:nopcommerce", "connection:streak"
    arn: str
    value: dict[str, Any]
    empty_keys: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        credentials = [key for key in self.value if key not in NOT_A_CREDENTIAL]
        if not credentials or all(key in self.empty_keys for key in credentials):
            return "missing"
        return "partial" if self.empty_keys else "set"

    def report(self) -> dict[str, Any]:
        return {"secret": self.tag, "state": self.state, "empty": self.empty_keys, "arn": self.arn}


def inspect_secret(tag: str, arn: str, raw: str) -> SecretState:
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        return SecretState(tag, arn, {}, ["(not a JSON object)"])
    return SecretState(tag, arn, value, [key for key, item in value.items() if empty(item)])


def read_states(secretsmanager: Any, arns: dict[str, str]) -> list[SecretState]:
    states = []
    for tag, arn in sorted(arns.items()):
        raw = secretsmanager.get_secret_value(SecretId=arn).get("SecretString") or ""
        states.append(inspect_secret(tag, arn, raw))
    return states


def generate(state: SecretState) -> dict[str, str]:
    """The values Switchyard makes for the secret's empty keys it can make (``{key: value}``)."""
    return {key: GENERATED[key]() for key in state.empty_keys if key in GENERATED}


def with_values(state: SecretState, values: dict[str, Any]) -> dict[str, Any]:
    """The secret with ``values`` put into its empty keys (lists get a one-item list), every other key kept."""
    document = dict(state.value)
    for key, value in values.items():
        if key in state.empty_keys and not empty(value):
            document[key] = [value] if isinstance(state.value.get(key), list) else value
    return document


# --- beyond the secrets: real calls, webhook registration, OAuth consent (the systems' registry hooks) --------

CONSENT_TIMEOUT_SECONDS = 300


def _hooks(system: str) -> Any:
    from switchyard import registry

    try:
        return registry.system(system).setup
    except LookupError:
        return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]


def check_connections(states: list[SecretState], systems: dict[str, str]) -> list[dict[str, Any]]:
    """One real, read-only call per connection whose secret is filled and whose system offers one (``systems``:
    connection -> system). ``ok``: True reached, False refused (``error`` says why), None not checked."""
    checked = []
    for state in states:
        kind, _, name = state.tag.partition(":")
        if kind != "connection" or name not in systems:
            continue
        hooks = _hooks(systems[name])
        if state.state == "missing":
            checked.append({"connection": name, "ok": False, "error": "secret not filled"})
        elif hooks is None or hooks.check is None:
            checked.append({"connection": name, "ok": None, "reached": "no check offered"})
        else:
            try:
                checked.append({"connection": name, "ok": True, "reached": hooks.check(state.value)})
            except Exception as exc:  # whatever the vendor or the network answered: reported, the rest go on
                checked.append({"connection": name, "ok": False, "error": _one_line(exc)})
    return checked


def register_webhooks(states: list[SecretState], systems: dict[str, str], webhook_url: Any, *,
                      apply: bool) -> list[dict[str, Any]]:
    """For every webhook source whose system registers its webhooks through its API: register Switchyard's URL
    (``webhook_url(source)``; None: unknown) with the connection of that system, or (``apply`` False) say
    whether it is."""
    by_tag = {state.tag: state for state in states}
    done: list[dict[str, Any]] = []
    for tag, state in sorted(by_tag.items()):
        kind, _, source = tag.partition(":")
        hooks = _hooks(source) if kind == "source" else None
        if hooks is None or hooks.register_webhooks is None:
            continue
        connection = next((by_tag.get(f"connection:{name}") for name, system in systems.items()
                           if system == source and f"connection:{name}" in by_tag), None)
        url = webhook_url(source)
        if url is None:  # a stack without the HTTP API's address (the local stack): nothing to register
            done.append({"source": source, "ok": None, "lines": ["skipped: no webhook URL (give --webhook-base-url)"]})
            continue
        if connection is None or connection.state == "missing" or state.state == "missing":
            done.append({"source": source, "ok": False, "lines": ["not registered: its secrets are not filled"]})
            continue
        try:
            lines = hooks.register_webhooks(connection.value, url, state.value, apply)
            done.append({"source": source, "ok": all("not registered" not in line for line in lines),
                         "lines": lines})
        except Exception as exc:
            done.append({"source": source, "ok": False, "lines": [f"failed: {_one_line(exc)}"]})
    return done


def needs_consent(states: list[SecretState], systems: dict[str, str]) -> list[str]:
    """Connections whose system takes an OAuth consent, with client credentials but no refresh token yet."""
    waiting = []
    for state in states:
        kind, _, name = state.tag.partition(":")
        hooks = _hooks(systems.get(name, "")) if kind == "connection" else None
        if hooks is None or hooks.consent_url is None:
            continue
        value = state.value
        if value.get("client_id") and value.get("client_secret") and empty(value.get("refresh_token")):
            waiting.append(name)
    return waiting


def open_browser(url: str) -> None:
    """Show the consent page (a test replaces this with a person's click)."""
    import webbrowser

    webbrowser.open(url)


def await_consent(secret: dict[str, Any], system: str, *, port: int, timeout: float = CONSENT_TIMEOUT_SECONDS,
                  show: Any = print) -> tuple[str, str, dict[str, str]]:
    """Run the consent once: listen on ``http://localhost:PORT/callback``, open the system's consent page, and
    wait for its redirect. Returns (code, redirect URI, every query parameter); refuses a redirect whose
    ``state`` is not the one sent (another tab, a forged link) or that carries an ``error``."""
    import http.server
    import threading
    from urllib.parse import parse_qs, urlparse

    hooks = _hooks(system)
    if hooks is None or hooks.consent_url is None:
        raise ValueError(f"{system} takes no OAuth consent")
    state = secrets.token_urlsafe(24)
    redirect_uri = f"http://localhost:{port}/callback"
    answer: dict[str, str] = {}
    arrived = threading.Event()

    class Callback(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            if parsed.path != "/callback":
                self.send_error(404)
                return
            query = {key: values[0] for key, values in parse_qs(parsed.query).items()}
            good = query.get("state") == state and "code" in query and "error" not in query
            self.send_response(200 if good else 400)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.end_headers()
            self.wfile.write(b"Switchyard received the consent: you can close this tab.\n" if good else
                             b"This is not the consent Switchyard asked for: run switchyard setup again.\n")
            if good or "error" in query:
                answer.update(query)
                arrived.set()

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Callback)
    thread = threading.Thread(target=server.serve_forever, name="consent-callback", daemon=True)
    thread.start()
    try:
        url = hooks.consent_url(secret, redirect_uri, state)
        show(f"Open this page to connect {system} (it redirects to {redirect_uri}):\n  {url}")
        open_browser(url)
        if not arrived.wait(timeout):
            raise TimeoutError(f"no consent within {int(timeout)} s")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    if "error" in answer:
        raise PermissionError(f"the consent was refused: {answer['error']}")
    return answer["code"], redirect_uri, answer
