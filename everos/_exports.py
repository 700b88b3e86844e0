"""One helper for every package's ``__init__``: public names report the package, not the private
module they live in (``everos.store.Database``, not ``everos.store._sqlite.Database``), as trio and
httpx do, so docs, reprs and error messages name the public path."""

from __future__ import annotations

from typing import Any

__all__ = ["claim_public_names"]


def claim_public_names(namespace: dict[str, Any]) -> None:
    """Set ``__module__`` of every name in ``namespace["__all__"]`` defined in a private module of
    the package (``<package>._x``) to the package. Values that refuse (constants) are left alone."""
    package = namespace["__name__"]
    for name in namespace["__all__"]:
        value = namespace[name]
        if getattr(value, "__module__", "").startswith(package + "._"):
            try:
                value.__module__ = package
            except (AttributeError, TypeError):
                pass
