"""An HTTP front door that behaves like the API Gateway HTTP API of the synthesized template:
it matches the template's routes and calls the integrated function with a payload v2 event."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request, Response

from switchyard_local.functions import FunctionError, InProcessFunction

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # HTTP API limit


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # e.g. /webhooks/{source}
    function: InProcessFunction

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method:
            return None
        pattern = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path)) + "$"
        found = re.match(pattern, path)
        return found.groupdict() if found else None


class FrontDoor:
    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes

    def __call__(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        return self.handle(request)(environ, start_response)

    def handle(self, request: Request) -> Response:
        for route in self.routes:
            params = route.match(request.method, request.path)
            if params is not None:
                break
        else:
            return _json(404, {"message": "Not Found"})
        body = request.get_data(cache=False)
        if len(body) > MAX_PAYLOAD_BYTES:
            return _json(413, {"message": "Request Entity Too Large"})
        try:
            result = route.function.invoke(_payload_v2(request, route, params, body))
        except FunctionError:
            return _json(500, {"message": "Internal Server Error"})
        return _response(result)


def _payload_v2(request: Request, route: Route, params: dict[str, str], body: bytes) -> dict[str, Any]:
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    return {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": request.path,
        "rawQueryString": request.query_string.decode(),
        **({"queryStringParameters": {k: ",".join(v) for k, v in request.args.lists()}} if request.args else {}),
        "headers": headers,
        "requestContext": {
            "http": {"method": request.method, "path": request.path, "protocol": "HTTP/1.1",
                     "sourceIp": request.remote_addr or "127.0.0.1",
                     "userAgent": request.headers.get("user-agent", "")},
            "requestId": str(uuid.uuid4()),
            "routeKey": route.route_key,
            "stage": "$default",
            "timeEpoch": int(time.time() * 1000),
        },
        "pathParameters": params,
        "body": text,
        "isBase64Encoded": encoded,
    }


def _response(result: Any) -> Response:
    if not isinstance(result, dict) or "statusCode" not in result:
        return Response(json.dumps(result), status=200, content_type="application/json")
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else body
    return Response(data, status=int(result["statusCode"]), headers=result.get("headers") or {})


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")
