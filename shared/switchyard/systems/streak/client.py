"""Streak CRM client (https://api.streak.com): the calls the deal flows need, nothing more.

Auth is HTTP Basic with the API key as user name and an empty password. Box creation, contacts,
organizations and tasks are v2 (JSON); box updates, field values, pipelines and search are v1.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from switchyard.connectors.http import DEFAULT_TIMEOUT, jsonable, send
from switchyard.errors import ConnectionConfigError, PermanentError, RetryableError

# Search answers pages of relevance-ranked hits; a lookup that needs more pages than this is too broad
# to prove a record absent, so it is treated as incomplete (and nothing is created on it).
MAX_SEARCH_PAGES = 50


class StreakConnection(BaseModel):
    """The connection secret: ``{"base_url", "api_key", "team_key", "pipeline_key"}``."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    base_url: str = "https://api.streak.com"
    api_key: str = Field(min_length=1)
    team_key: str = Field(min_length=1)
    pipeline_key: str = Field(min_length=1)

    @classmethod
    def from_secret(cls, value: dict[str, Any]) -> StreakConnection:
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            missing = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors())
            raise ConnectionConfigError(f"Streak connection is incomplete: {missing}") from None


class StreakClient:
    def __init__(self, connection: StreakConnection, *, transport: httpx.BaseTransport | None = None,
                 timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> None:
        self.connection = connection
        self._http = httpx.Client(
            base_url=connection.base_url.rstrip("/"),
            auth=(connection.api_key, ""),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, *, json: Any = None, params: Any = None) -> Any:
        response = send(self._http, method, path, system="Streak",
                        json=jsonable(json) if json is not None else None, params=params)
        try:
            body = response.json() if response.content else None
        except ValueError:  # a 2xx that is not JSON (a proxy's page?): the write may have happened
            raise RetryableError(f"Streak answered {method} {path} with a body that is not JSON",
                                 reason="target_bad_response", target_status=response.status_code,
                                 target_response=response.text[:2000]) from None
        if isinstance(body, dict) and body.get("success") is False:  # Streak's error shape under a 2xx
            raise PermanentError(f"Streak refused {method} {path}", reason="target_rejected",
                                 target_status=response.status_code, target_response=body)
        return body

    # --- boxes ---------------------------------------------------------------------------------

    def search_boxes(self, query: str, pipeline_key: str) -> list[dict[str, Any]]:
        """Every box hit of a search, all pages read (raises if any page fails: an incomplete lookup)."""
        return self._search_all(query, "boxes", pipelineKey=pipeline_key)

    def _search_all(self, query: str, kind: str, **params: str) -> list[dict[str, Any]]:
        hits: dict[str, dict[str, Any]] = {}
        for hit in self.iter_search(query, kind, **params):  # ranks can shift between pages: once each
            hits.setdefault(str(hit.get("boxKey") or hit.get("key")), hit)
        return list(hits.values())

    def iter_search(self, query: str, kind: str, **params: str) -> Iterator[dict[str, Any]]:
        """Hits of one kind (``boxes``, ``contacts``, ``organizations``), page after page until an
        empty one; a caller that found what it needs may stop early and spare the next pages."""
        for page in range(1, MAX_SEARCH_PAGES + 1):
            body = self._call("GET", "/api/v1/search", params={"query": query, "page": page, **params})
            found = list((body or {}).get("results", {}).get(kind) or [])
            if not found:
                return
            yield from found
        raise RetryableError(f"Streak search for {query!r} has more than {MAX_SEARCH_PAGES} pages of {kind}",
                             reason="lookup_incomplete")

    def list_boxes(self, pipeline_key: str) -> list[dict[str, Any]]:
        """Every box of the pipeline, with its field values."""
        return list(self._call("GET", f"/api/v1/pipelines/{pipeline_key}/boxes") or [])

    def get_box(self, box_key: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/boxes/{box_key}")

    def create_box(self, pipeline_key: str, *, name: str, stage_key: str,
                   notes: str | None) -> dict[str, Any]:
        payload = {"name": name, "stageKey": stage_key}
        if notes:
            payload["notes"] = notes
        return self._call("POST", f"/api/v2/pipelines/{pipeline_key}/boxes", json=payload)

    def update_box(self, box_key: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Update a box in one call: name, notes, stageKey, contacts/organizations (replaced lists) and
        ``fields``, a map of field key -> value (Streak's "update a box"; unknown properties are ignored)."""
        return self._call("POST", f"/api/v1/boxes/{box_key}", json=changes)

    def get_pipeline(self, pipeline_key: str) -> dict[str, Any]:
        """The pipeline with its stages and field definitions (read-only copies)."""
        return self._call("GET", f"/api/v1/pipelines/{pipeline_key}")

    def list_webhooks(self, scope: str, key: str) -> list[dict[str, Any]]:
        """The webhooks registered under a pipeline (``scope="pipelineKey"``) or a team (``"teamKey"``)."""
        answer = self._call("GET", "/api/v2/webhooks", params={scope: key})
        hooks = answer.get("results", []) if isinstance(answer, dict) else answer
        return list(hooks or [])

    def create_webhook(self, scope: str, key: str, *, event: str, target_url: str, token: str) -> dict[str, Any]:
        return self._call("POST", "/api/v2/webhooks", params={scope: key},
                          json={"event": event, "targetUrl": target_url, "token": token})

    def list_fields(self, pipeline_key: str) -> list[dict[str, Any]]:
        """The pipeline's field definitions: key, name, type, dropdown items and tags."""
        return list(self._call("GET", f"/api/v1/pipelines/{pipeline_key}/fields") or [])

    def set_field(self, box_key: str, field_key: str, value: Any) -> dict[str, Any]:
        return self._call("POST", f"/api/v1/boxes/{box_key}/fields/{field_key}", json={"value": value})

    # --- contacts and organizations ------------------------------------------------------------

    def find_or_create_contact(self, team_key: str, email: str) -> dict[str, Any]:
        # getIfExisting only allows the dedupe key in the body; names go in a second call
        return self._call("POST", f"/api/v2/teams/{team_key}/contacts/",
                          params={"getIfExisting": "true"}, json={"emailAddresses": [email]})

    def get_contact(self, contact_key: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v2/contacts/{contact_key}")

    def update_contact(self, contact_key: str, changes: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", f"/api/v2/contacts/{contact_key}", json=changes)

    def find_or_create_organization(self, team_key: str, domain: str) -> dict[str, Any]:
        return self._call("POST", f"/api/v2/teams/{team_key}/organizations",
                          params={"getIfExisting": "true"}, json={"domains": [domain]})

    def create_organization(self, team_key: str, name: str, *, domains: list[str] | None = None,
                            addresses: list[str] | None = None,
                            properties: dict[str, Any] | None = None) -> dict[str, Any]:
        """A new organization (no ``getIfExisting``: that would return whichever one has the domain)."""
        payload: dict[str, Any] = {**(properties or {}), "name": name}
        if domains:
            payload["domains"] = domains
        if addresses:
            payload["addresses"] = addresses
        return self._call("POST", f"/api/v2/teams/{team_key}/organizations", json=payload)

    def update_organization(self, org_key: str, changes: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", f"/api/v2/organizations/{org_key}", json=changes)

    def search_organizations(self, query: str) -> Iterator[dict[str, Any]]:
        return self.iter_search(query, "organizations")

    # --- comments (the box's activity feed) --------------------------------------------------------

    def list_comments(self, box_key: str) -> list[dict[str, Any]]:
        body = self._call("GET", f"/api/v2/boxes/{box_key}/comments")
        return list((body or {}).get("results", []))

    def create_comment(self, box_key: str, message: str) -> Any:
        return self._call("POST", f"/api/v2/boxes/{box_key}/comments", json={"message": message})

    # --- tasks ---------------------------------------------------------------------------------

    def list_tasks(self, box_key: str) -> list[dict[str, Any]]:
        body = self._call("GET", f"/api/v2/boxes/{box_key}/tasks")
        return list((body or {}).get("results", []))

    def create_task(self, box_key: str, *, text: str, due_date_ms: int, assignee_email: str | None) -> Any:
        payload: dict[str, Any] = {"text": text, "dueDate": due_date_ms}
        if assignee_email:
            payload["assignedToSharingEntries"] = [{"email": assignee_email}]
        return self._call("POST", f"/api/v2/boxes/{box_key}/tasks", json=payload)
