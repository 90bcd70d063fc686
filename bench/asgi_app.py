"""The model server's app on an ASGI server, for ``bench_server.py`` only.

It answers exactly like the plain-asyncio server (same ``App.handle``), so
running it under uvicorn measures what the HTTP stack alone costs. Settings
come from the same ``MODEL_*`` environment variables.
"""

from __future__ import annotations

from typing import Any

from model_server import app as app_module
from model_server import model
from model_server.settings import Settings

_settings = Settings.from_env()
_metadata = model.read_metadata(_settings.model_dir)
APP = app_module.App(_settings, _metadata)
APP.model = model.load(_settings.model_dir, _metadata, compile_model=_settings.model_compile)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI 3 entry point."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    content_type = None
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value
    target = scope["raw_path"] + (b"?" + scope["query_string"] if scope["query_string"] else b"")
    client = scope.get("client") or ("", 0)
    _, response = APP.handle(
        scope["method"].encode(), target, content_type, body, client[0].startswith("127.")
    )
    headers = [(b"content-type", response.content_type), (b"x-model-version", APP.version_header)]
    for line in response.headers.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b": ")
            headers.append((name.lower(), value))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
