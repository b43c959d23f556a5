"""A small API protected by our access tokens (``authserver.resource``).

    RESOURCE_ISSUER=https://auth.example.com RESOURCE_AUDIENCE=https://api.example.com \
        python examples/resource_server.py

``/api/hello`` takes any valid token, ``/api/data`` scope ``all``, ``/api/admin`` role
``admin``.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, g, jsonify

from authserver.resource import TokenValidator, init_app, require


def create_app(validator: TokenValidator | None = None) -> Flask:
    if validator is None:
        validator = TokenValidator(
            os.environ["RESOURCE_ISSUER"], os.environ["RESOURCE_AUDIENCE"]
        )
    app = Flask(__name__)
    init_app(app, validator)

    @app.get("/api/hello")
    @require()
    def hello() -> Any:
        return jsonify(hello=g.claims.sub, client_id=g.claims.client_id)

    @app.get("/api/data")
    @require(scope="all")
    def data() -> Any:
        return jsonify(data=[1, 2, 3], scopes=list(g.claims.scopes))

    @app.get("/api/admin")
    @require(role="admin")
    def admin() -> Any:
        return jsonify(admin=True, roles=list(g.claims.roles))

    return app


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "5001"))
    create_app().run(host="127.0.0.1", port=port)
