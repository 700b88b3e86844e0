"""``/openapi.json`` and the Swagger UI page ``/docs``, answered by the path router (no Quart).

The document is :func:`everos.api.openapi_document`, rendered to bytes once per process when
the app is made and kept: the route reads no database and builds nothing per request. ``/docs`` is
a small HTML page that loads Swagger UI from ``/docs/static/`` and points it at
``/openapi.json``: the JS and CSS are the files of the ``flask-swagger-ui`` package (Swagger UI 5,
which renders OpenAPI 3.1), read once and served from memory, so the page works with no network.
Any method but GET and HEAD gets 405 in EverOS's error envelope; an unknown file 404.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

from everos.api import openapi_document
from everos.web._envelope import dumps, error_body, mint_request_id

__all__ = ["DOCS_PATH", "DOCS_STATIC", "OPENAPI_PATH", "DocsApp", "docs_page", "is_docs_path"]

OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"
DOCS_STATIC = "/docs/static/"

# The files of Swagger UI the page loads, and their content types: nothing else is served.
STATIC_FILES = {
    "swagger-ui-bundle.js": b"text/javascript; charset=utf-8",
    "swagger-ui.css": b"text/css; charset=utf-8",
    "favicon-32x32.png": b"image/png",
}

# validatorUrl null: Swagger UI would otherwise fetch a badge from a public validator.
PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>everos API</title>
  <link rel="stylesheet" href="{DOCS_STATIC}swagger-ui.css">
  <link rel="icon" type="image/png" href="{DOCS_STATIC}favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{DOCS_STATIC}swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{url: "{OPENAPI_PATH}", dom_id: "#swagger-ui", validatorUrl: null,
                                 deepLinking: true, presets: [SwaggerUIBundle.presets.apis],
                                 layout: "BaseLayout"}});
  </script>
</body>
</html>
"""


def is_docs_path(path: str) -> bool:
    """Whether :class:`DocsApp` answers ``path``."""
    return path in (OPENAPI_PATH, DOCS_PATH) or path.startswith(DOCS_STATIC)


def docs_page() -> bytes:
    """The HTML of ``/docs``."""
    return PAGE.encode()


@functools.cache
def openapi_bytes() -> bytes:
    """``/openapi.json``'s body: built on the first call, the same bytes after."""
    return dumps(openapi_document())


def swagger_ui_dir() -> Path:
    """The folder of Swagger UI's distribution files in the ``flask-swagger-ui`` package, found
    without importing it (its ``__init__`` imports Flask)."""
    spec = importlib.util.find_spec("flask_swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the flask-swagger-ui package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "dist"


@functools.cache
def static_file(name: str) -> bytes:
    """One of :data:`STATIC_FILES`, read once (about 1.6 MB in all)."""
    return (swagger_ui_dir() / name).read_bytes()


class DocsApp:
    """Answers ``/openapi.json``, ``/docs`` and ``/docs/static/<file>`` from memory.

    The document is built here, when the server starts (about 30 ms), not on the event loop
    of the first request that asks for it."""

    def __init__(self) -> None:
        openapi_bytes()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path, method = scope["path"], scope["method"]
        headers: list[tuple[bytes, bytes]] = []
        if method not in ("GET", "HEAD"):
            status, kind = 405, b"application/json"
            payload = dumps(error_body(mint_request_id(), code="METHOD_NOT_ALLOWED", message="use GET", path=path))
            headers.append((b"allow", b"GET, HEAD"))
        elif path == OPENAPI_PATH:
            status, kind, payload = 200, b"application/json", openapi_bytes()
            headers.append((b"cache-control", b"no-cache"))
        elif path == DOCS_PATH:
            status, kind, payload = 200, b"text/html; charset=utf-8", docs_page()
            headers.append((b"cache-control", b"no-cache"))
        elif path.removeprefix(DOCS_STATIC) in STATIC_FILES:
            name = path.removeprefix(DOCS_STATIC)
            status, kind, payload = 200, STATIC_FILES[name], static_file(name)
            headers.append((b"cache-control", b"public, max-age=86400"))
        else:
            status, kind = 404, b"application/json"
            payload = dumps(error_body(mint_request_id(), code="NOT_FOUND", message="no such file", path=path))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", kind), (b"content-length", str(len(payload)).encode()), *headers]})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else payload})
