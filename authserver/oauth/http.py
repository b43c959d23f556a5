"""The request and response the web layer exchanges with the protocol layer."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request


@dataclass
class HttpResponse:
    status: int
    body: dict[str, Any]
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def location(self) -> str | None:
        """Where a redirect goes (authorization responses, RFC 6749 §4.1.2)."""
        return next((v for k, v in self.headers if k.lower() == "location"), None)

    @location.setter
    def location(self, value: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != "location"]
        self.headers.append(("Location", value))


class FormPayload(OAuth2Payload):  # type: ignore[misc]
    """Form parameters, every value of repeated ones kept (RFC 6749 §3.2 forbids them)."""

    def __init__(self, form: Mapping[str, list[str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, values in form.items():
            self._datalist[key].extend(values)
        self._data = {key: values[0] for key, values in self._datalist.items() if values}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class HttpRequest(OAuth2Request):  # type: ignore[misc]
    """An HTTP request as Authlib's grants and endpoints expect it.

    ``uri`` is our public URL (issuer + path), not what the socket saw, so a TLS
    terminating proxy in front of us does not make the request look insecure.
    """

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Mapping[str, str],
        form: Mapping[str, list[str]],
        *,
        query: Mapping[str, list[str]] | None = None,
        address: str = "",
    ) -> None:
        super().__init__(method, uri, headers=headers)
        #: Who sent it, as rate limits count it (the web layer's ``client_address``).
        self.address = address
        # The authorization endpoint takes its parameters from the query (RFC 6749
        # §4.1.1); every other endpoint from the form body.
        self.payload = FormPayload(query if query is not None else form)
        self._query = {k: v[0] for k, v in (query or {}).items() if v}

    @property
    def form(self) -> dict[str, str]:
        data: dict[str, str] = self.payload.data
        return data

    @property
    def args(self) -> dict[str, str]:
        return self._query
