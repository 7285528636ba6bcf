"""A local webhook receiver for the demo stack: records every request, lists them at GET /requests.

Started by `make up` on 127.0.0.1:<SERVICE_PORT_BASE+9> so the demo rules' webhooks land
somewhere you can look at. Development tooling only; not part of any service.
"""

from __future__ import annotations

import json
import os
from collections import deque
from datetime import UTC, datetime

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

received: deque[dict[str, object]] = deque(maxlen=500)


async def record(request: Request) -> JSONResponse:
    body = await request.body()
    try:
        payload: object = json.loads(body) if body else None
    except json.JSONDecodeError:
        payload = body.decode("utf-8", "replace")
    received.append({"at": datetime.now(UTC).isoformat(), "method": request.method, "path": request.url.path,
                     "webhook_id": request.headers.get("webhook-id"), "body": payload})
    return JSONResponse({"received": True})


async def list_requests(_request: Request) -> JSONResponse:
    return JSONResponse({"requests": list(received)})


app = Starlette(routes=[
    Route("/requests", list_requests, methods=["GET"]),
    Route("/health/ready", lambda _r: JSONResponse({"status": "ready"}), methods=["GET"]),
    Route("/{path:path}", record, methods=["POST", "PUT", "PATCH"]),
])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("SINK_PORT", "8009")), log_level="warning")
