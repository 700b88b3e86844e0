"""The HTTP surface: path router, health app, request layer and the Quart-Trio app."""

from everos.web._app import create_app, current_request_id, ok
from everos.web._docs import DocsApp
from everos.web._asgi import HEALTH_PATHS, KEY_SCOPE_KEY, AuthLayer, HealthApp, PathRouter, RequestLayer
from everos.web._limits import BodyDeadline, ConnectionCap, hypercorn_config
from everos.web._tcp import use_prompt_close

__all__ = [
    "HEALTH_PATHS",
    "KEY_SCOPE_KEY",
    "AuthLayer",
    "BodyDeadline",
    "ConnectionCap",
    "DocsApp",
    "HealthApp",
    "PathRouter",
    "RequestLayer",
    "create_app",
    "current_request_id",
    "hypercorn_config",
    "ok",
    "use_prompt_close",
]
