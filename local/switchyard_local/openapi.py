"""Prints the OpenAPI 3.1 document of the webhook endpoints, generated from the envelope models
(``make openapi`` writes docs/openapi.json; a test keeps the committed file current)."""

from __future__ import annotations

import json
from typing import Any

from switchyard.sources import envelope_json_schema, supported_sources

ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "examples": ["invalid_signature", "invalid_event"]},
        "message": {"type": "string"},
        "fields": {"type": "array", "items": {"type": "object", "properties": {
            "field": {"type": "string", "examples": ["data.Order.OrderTotal"]},
            "message": {"type": "string"}}}},
    },
}
SIGNATURE_HEADERS = [
    {"name": "webhook-id", "in": "header", "required": True, "schema": {"type": "string"},
     "description": "Unique per event, stable across retries: the event id and idempotency key."},
    {"name": "webhook-timestamp", "in": "header", "required": True, "schema": {"type": "integer"},
     "description": "Unix seconds of this attempt; rejected outside ±5 minutes."},
    {"name": "webhook-signature", "in": "header", "required": True, "schema": {"type": "string"},
     "description": "Space-separated `v1,<base64 HMAC-SHA256 of id.timestamp.body>`; any current secret."},
]


def _error(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Error"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


TOKEN_PARAMETERS = [
    {"name": "event", "in": "query", "required": True,
     "schema": {"type": "string", "enum": ["BOX_CHANGE_STAGE", "CONTACT_UPDATE"]},
     "description": "The event type: Streak posts bare objects, so each event type has its own URL."},
    {"name": "X-Streak-Webhook-Token", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "The token registered with the webhook (or give it as the `token` query parameter)."},
    {"name": "token", "in": "query", "required": False, "schema": {"type": "string"}},
]


INTUIT_PARAMETERS = [
    {"name": "intuit-signature", "in": "header", "required": True, "schema": {"type": "string"},
     "description": "base64 HMAC-SHA256 of the raw body, keyed with the app's verifier token (any current one)."},
]
# QuickBooks posts its own notification shapes, not the envelope: legacy or CloudEvents (API-NOTES 3.6)
# what switchyard.systems.quickbooks.webhooks accepts, so a body valid here is one ingest takes
_QBO_NAME = {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9]*$", "maxLength": 50}
_QBO_ID = {"type": "string", "minLength": 1, "maxLength": 50}
_QBO_REALM = {"type": "string", "pattern": "^[0-9]{1,20}$"}
QBO_NOTIFICATION_SCHEMAS: dict[str, Any] = {
    "QuickBooksEntityChange": {"type": "object", "required": ["name", "id", "operation", "lastUpdated"],
                               "properties": {
        "name": {**_QBO_NAME, "examples": ["Item"]},
        "id": _QBO_ID,
        "operation": {**_QBO_NAME, "maxLength": 20,
                      "examples": ["Create", "Update", "Delete", "Merge", "Void", "Emailed"]},
        "lastUpdated": {"type": "string", "format": "date-time"},
        "deletedId": {**_QBO_ID, "description": "merges: the id merged away"}}},
    "QuickBooksLegacyNotification": {"type": "object", "required": ["eventNotifications"], "properties": {
        "eventNotifications": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["realmId", "dataChangeEvent"], "properties": {
                "realmId": _QBO_REALM,
                "dataChangeEvent": {"type": "object", "required": ["entities"], "properties": {
                    "entities": {"type": "array",
                                 "items": {"$ref": "#/components/schemas/QuickBooksEntityChange"}}}}}}}}},
    "QuickBooksCloudEvent": {"type": "object", "required": [
        "specversion", "id", "type", "time", "intuitentityid", "intuitaccountid"], "properties": {
        "specversion": {"type": "string", "minLength": 1, "examples": ["1.0"]},
        "id": {"type": "string", "minLength": 1, "maxLength": 256,
               "description": "the event id and idempotency key"},
        "source": {"type": "string"},
        "type": {"type": "string", "pattern": "^qbo\\.[A-Za-z][A-Za-z0-9]*\\.[a-z]+\\.v1$",
                 "examples": ["qbo.item.updated.v1"]},
        "datacontenttype": {"type": "string"},
        "time": {"type": "string", "format": "date-time"},
        "intuitentityid": _QBO_ID,
        "intuitaccountid": {**_QBO_REALM, "description": "the realm id"},
        "data": {"type": "object"}}},
}
QBO_NOTIFICATION_BODY = {"oneOf": [
    {"$ref": "#/components/schemas/QuickBooksLegacyNotification"},
    {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/QuickBooksCloudEvent"}}]}


def _accepted(status: str) -> dict[str, Any]:
    return {status: {"description": "Durably queued on every subscribed flow", "content": {"application/json": {
        "schema": {"type": "object", "properties": {
            "event_id": {"type": "string"}, "type": {"type": "string"},
            "event_ids": {"type": "array", "items": {"type": "string"},
                          "description": "when the delivery held several objects"},
            "event_types": {"type": "array", "items": {"type": "string"},
                            "description": "the type of each of event_ids, when they differ (QuickBooks)"},
            "ignored": {"type": "integer", "description": "QuickBooks: changes of entities no flow routes, "
                                                          "acknowledged and not queued"},
            "flows": {"type": "array", "items": {"type": "string"}}}}}}}}


def document() -> dict[str, Any]:
    from switchyard.catalog import load_catalog

    sources = load_catalog().webhook_sources  # Salesforce events arrive through EventBridge: no endpoint
    schemas: dict[str, Any] = {"Error": ERROR}
    paths: dict[str, Any] = {}
    for source in sorted(supported_sources()):
        schema = envelope_json_schema(source, ref_template="#/components/schemas/{model}")
        name = f"{source.capitalize()}Event"
        for def_name, definition in schema.pop("$defs", {}).items():
            schemas[def_name] = definition
        schemas[name] = schema
        config = sources.get(source)
        if config is None:  # modelled, but no endpoint until the catalog declares the source
            continue
        if config.format == "object-array":  # Streak: an array of the bare changed objects
            body_schema: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"oneOf": [
                {"$ref": "#/components/schemas/StreakBox"}, {"$ref": "#/components/schemas/StreakContact"}]}}
            parameters = TOKEN_PARAMETERS
        elif config.format == "intuit":  # QuickBooks: its own notification, split into the events above
            schemas.update(QBO_NOTIFICATION_SCHEMAS)
            body_schema, parameters = QBO_NOTIFICATION_BODY, INTUIT_PARAMETERS
        else:
            body_schema, parameters = {"$ref": f"#/components/schemas/{name}"}, SIGNATURE_HEADERS
        paths[f"/webhooks/{source}"] = {"post": {
            "summary": f"Receive {source} events ({config.description})",
            "operationId": f"receive_{source}",
            "parameters": parameters,
            "requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}},
            "responses": {
                **_accepted(str(config.ack_status)),
                "400": _error("Body is not JSON"),
                "401": _error("Missing or bad signature or token, or stale timestamp"),
                "404": _error("Unknown source"),
                "413": _error("Body too large"),
                "422": _error("Body does not match the event schema (fields named)"),
                "503": _error("Could not queue the event; retry with backoff"),
            },
        }}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Switchyard webhooks", "version": "1",
                 "description": "Inbound webhooks. Signed with Standard Webhooks; 202 only once queued."},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def main() -> None:
    print(json.dumps(document(), indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
