"""The OpenAPI 3.1 document of the admin API (to be written)."""

from __future__ import annotations

from typing import Any


def openapi_document(base_url: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "authserver admin API", "version": "1"},
        "servers": [{"url": base_url + "/api/v1"}],
        "paths": {},
    }
