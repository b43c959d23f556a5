"""Issue 16.12 (RFC 9700 §2.6, RFC 8252 §7-8): redirect URIs in config are https, or
http on a loopback host; never ``javascript:``, ``data:`` or ``file:``. Checked through
the CLI's entry point: a clear line naming the key, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .support.servers import run_cli

pytestmark = pytest.mark.live


def config_with(tmp_path: Path, redirect_uri: str) -> Path:
    path = tmp_path / "authserver.yaml"
    client = {
        "client_id": "app",
        "public": True,
        "grant_types": ["authorization_code"],
        "redirect_uris": [redirect_uri],
    }
    path.write_text(
        yaml.safe_dump(
            {
                "database_url": f"sqlite:///{tmp_path / 'a.db'}",
                "secret_key_file": str(tmp_path / "sk"),
                "clients": [client],
            }
        )
    )
    return path


@pytest.mark.parametrize(
    "uri",
    [
        "http://app.example.com/cb",
        "http://10.0.0.1/cb",
        "javascript:alert(1)//",
        "JavaScript:alert(1)",
        "data:text/html,hi",
        "file:///etc/passwd",
    ],
)
def test_unsafe_redirect_uri_is_refused(tmp_path: Path, uri: str) -> None:
    result = run_cli("--config", str(config_with(tmp_path, uri)), "clients", "list", cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "clients[0].redirect_uris[0]" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example.com/cb",
        "http://127.0.0.1/callback",
        "http://localhost:53593/callback",
        "http://[::1]/cb",
    ],
)
def test_safe_redirect_uri_is_accepted(tmp_path: Path, uri: str) -> None:
    result = run_cli("--config", str(config_with(tmp_path, uri)), "clients", "list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "app" in result.stdout
