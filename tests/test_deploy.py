"""The deployment files, checked without a cluster or a Docker engine.

Kubernetes: ``kubectl kustomize`` renders the base and the PostgreSQL + Redis overlay,
and the rendered objects must line up (probes on the served paths and the container's
port, the image, ConfigMap, Secret and volumes the Deployment names, migrations before
``serve``, a non-root pod); the config in the ConfigMap must load through the CLI with
stand-ins for the Secret's files. Docker: the Dockerfile's health check, user and locked
install, docker-compose's health check, and a lock that covers every dependency.
"""

from __future__ import annotations

import importlib.metadata
import re
import secrets
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import IN_CI
from .support.factories import bcrypt_hash
from .support.servers import run_cli

ROOT = Path(__file__).resolve().parent.parent
KUSTOMIZE_DIRS = ["base", "overlays/postgres-redis"]
#: What `/healthz` and `/readyz` are (DESIGN.md, "Operations").
LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"


# -- Kubernetes --------------------------------------------------------------------------


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found:
        return found
    if Path("/usr/bin/kubectl").exists():
        return "/usr/bin/kubectl"
    message = "kubectl is missing (it renders deploy/kubernetes with `kubectl kustomize`)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Rendered:
    """The objects ``kubectl kustomize`` made of one directory, by kind and name."""

    name: str
    objects: dict[str, dict[str, dict[str, Any]]]

    def one(self, kind: str) -> dict[str, Any]:
        found = list(self.objects.get(kind, {}).values())
        assert len(found) == 1, f"{self.name}: expected one {kind}, found {len(found)}"
        return found[0]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        assert name in self.objects.get(kind, {}), (
            f"{self.name}: the Deployment names {kind} {name!r}, which is not rendered "
            f"(rendered: {sorted(self.objects.get(kind, {}))})"
        )
        return self.objects[kind][name]

    @property
    def pod(self) -> dict[str, Any]:
        return self.one("Deployment")["spec"]["template"]["spec"]  # type: ignore[no-any-return]

    @property
    def server(self) -> dict[str, Any]:
        return next(c for c in self.pod["containers"] if c["name"] == "authserver")

    def volume(self, name: str) -> dict[str, Any]:
        return next(v for v in self.pod["volumes"] if v["name"] == name)

    def mount_of(self, container: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
        """The volume ``path`` lies on in ``container``, and its path inside that volume."""
        for mount in container["volumeMounts"]:
            where = PurePosixPath(mount["mountPath"])
            if PurePosixPath(path).is_relative_to(where):
                return self.volume(mount["name"]), str(PurePosixPath(path).relative_to(where))
        raise AssertionError(f"{self.name}: {path} is on no mounted volume")

    def config(self) -> tuple[str, dict[str, Any]]:
        """The config file's path in the container and its content, from the ConfigMap."""
        env = {e["name"]: e.get("value") for e in self.server.get("env", [])}
        path = env["AUTHSERVER_CONFIG"]
        volume, key = self.mount_of(self.server, path)
        config_map = self.get("ConfigMap", volume["configMap"]["name"])
        assert key in config_map["data"], f"{self.name}: the ConfigMap has no {key}"
        return path, yaml.safe_load(config_map["data"][key])


@pytest.fixture(scope="module", params=KUSTOMIZE_DIRS)
def rendered(request: pytest.FixtureRequest) -> Rendered:
    directory = ROOT / "deploy" / "kubernetes" / request.param
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    objects: dict[str, dict[str, dict[str, Any]]] = {}
    for obj in yaml.safe_load_all(result.stdout):
        if obj:
            objects.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj
    return Rendered(request.param, objects)


def all_containers(rendered: Rendered) -> list[dict[str, Any]]:
    return [*rendered.pod.get("initContainers", []), *rendered.pod["containers"]]


def test_probes_ask_the_health_endpoints_on_the_served_port(rendered: Rendered) -> None:
    server = rendered.server
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert ports == {"http": 8080}
    # `serve` listens on every address of the pod, on that port.
    command = server["command"]
    assert command[:2] == ["authserver", "serve"]
    assert command[command.index("--bind") + 1] == f"0.0.0.0:{ports['http']}"
    probes = {
        kind: server[kind]["httpGet"]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes["livenessProbe"]["path"] == LIVENESS_PATH
    assert probes["startupProbe"]["path"] == LIVENESS_PATH
    assert probes["readinessProbe"]["path"] == READINESS_PATH
    for probe in probes.values():
        assert probe["port"] in (*ports, *ports.values())
    # A probe's timeout leaves room for /readyz's own 1 s deadline per check.
    assert server["readinessProbe"]["timeoutSeconds"] >= 2


def test_service_sends_to_the_pods_port(rendered: Rendered) -> None:
    service = rendered.one("Service")
    labels = rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    budget = rendered.one("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["maxUnavailable"] == 1


def test_image_config_and_secret_names_line_up(rendered: Rendered) -> None:
    kustomization = yaml.safe_load((ROOT / "deploy/kubernetes/base/kustomization.yaml").read_text())
    image = kustomization["images"][0]
    assert {c["image"] for c in all_containers(rendered)} == {
        f"{image['newName']}:{image['newTag']}"
    }
    for volume in rendered.pod["volumes"]:
        if "configMap" in volume:
            rendered.get("ConfigMap", volume["configMap"]["name"])
        if "secret" in volume:
            rendered.get("Secret", volume["secret"]["secretName"])
        if "persistentVolumeClaim" in volume:
            rendered.get("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    names = {v["name"] for v in rendered.pod["volumes"]}
    for container in all_containers(rendered):
        assert {m["name"] for m in container["volumeMounts"]} <= names
    _, config = rendered.config()
    assert config["issuer"].startswith("https://")


def test_migrations_run_before_the_server(rendered: Rendered) -> None:
    (migrate,) = rendered.pod["initContainers"]
    assert migrate["command"] == ["authserver", "db", "upgrade"]
    server = rendered.server
    # The same image, config and files as the server it prepares.
    assert migrate["image"] == server["image"]
    assert migrate["env"] == server["env"]
    assert migrate["volumeMounts"] == server["volumeMounts"]


def test_pod_runs_as_non_root_on_a_read_only_root(rendered: Rendered) -> None:
    pod = rendered.pod
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's user
    assert pod["automountServiceAccountToken"] is False
    # A Service `authserver` would inject AUTHSERVER_SERVICE_HOST and friends, and an
    # unknown AUTHSERVER_* variable is a configuration error.
    assert pod["enableServiceLinks"] is False
    for container in all_containers(rendered):
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        # gunicorn (and the metrics files) need a writable /tmp.
        volume, _ = rendered.mount_of(container, "/tmp/gunicorn")  # noqa: S108
        assert "emptyDir" in volume
        assert container["resources"]["requests"]["memory"]
        assert container["resources"]["limits"]["memory"]


def test_replicas_share_their_state(rendered: Rendered) -> None:
    deployment = rendered.one("Deployment")
    _, config = rendered.config()
    replicas = deployment["spec"]["replicas"]
    if replicas == 1:
        assert deployment["spec"]["strategy"]["type"] == "Recreate"
        return
    # More than one: PostgreSQL and Redis, nothing on a volume of its own.
    assert rendered.name == "overlays/postgres-redis"
    assert replicas == 2
    assert "database_url_file" in config
    assert "redis_url_file" in config
    assert "PersistentVolumeClaim" not in rendered.objects
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


#: Stand-ins for the Secret's files, by key: valid values of the right shape.
def stand_in(key: str) -> str:
    if key == "secret_key":
        return secrets.token_urlsafe(48)
    if key == "admin_password":
        return secrets.token_urlsafe(16)
    if key.endswith("client_secret_hash"):
        return bcrypt_hash(secrets.token_urlsafe(16))
    if key == "database_url":
        return "postgresql+psycopg://authserver:pw@127.0.0.1:5432/authserver"
    if key == "redis_url":
        return "redis://127.0.0.1:6379/0"
    raise AssertionError(f"no stand-in for the secret {key!r}")


def file_settings(value: Any, where: str = "") -> list[tuple[str, str]]:
    """Every ``*_file`` setting of a config, as (dotted path, file path)."""
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            if key.endswith("_file") and isinstance(inner, str):
                found.append((f"{where}{key}", inner))
            else:
                found += file_settings(inner, f"{where}{key}.")
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += file_settings(inner, f"{where.rstrip('.')}[{index}].")
    return found


def replace_files(config: Any, paths: dict[str, str]) -> Any:
    if isinstance(config, dict):
        return {
            k: paths.get(v, v) if k.endswith("_file") else replace_files(v, paths)
            for k, v in config.items()
        }
    if isinstance(config, list):
        return [replace_files(v, paths) for v in config]
    return config


@pytest.mark.live
def test_config_loads_with_the_secrets_it_names(rendered: Rendered, tmp_path: Path) -> None:
    """Every ``*_file`` of the config is a key of the mounted Secret; with those files
    standing in, ``authserver clients list`` loads the config through the CLI."""
    _, config = rendered.config()
    server = rendered.server
    named = file_settings(config)
    assert {setting for setting, _ in named} >= {
        "secret_key_file",
        "clients[0].client_secret_hash_file",
    }
    paths: dict[str, str] = {}
    for setting, path in named:
        volume, key = rendered.mount_of(server, path)
        assert "secret" in volume, f"{setting}: {path} is not on the Secret's volume"
        secret = rendered.get("Secret", volume["secret"]["secretName"])
        assert key in secret["data"], f"{setting}: the Secret has no key {key!r}"
        local = tmp_path / key
        local.write_text(stand_in(key) + "\n")
        paths[path] = str(local)
    config = replace_files(config, paths)
    if config.get("database_url", "").startswith("sqlite:"):
        # On the claim's volume, where the pod can write.
        volume, _ = rendered.mount_of(server, config["database_url"].removeprefix("sqlite:///"))
        assert "persistentVolumeClaim" in volume
        config["database_url"] = f"sqlite:///{tmp_path / 'authserver.db'}"
    config_path = tmp_path / "authserver.yaml"
    config_path.write_text(yaml.safe_dump(config))
    listed = run_cli("--config", str(config_path), "clients", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^ci\s+confidential\s+client_credentials", listed.stdout, re.M)


@pytest.mark.live
def test_placeholder_secrets_are_refused(rendered: Rendered, tmp_path: Path) -> None:
    """The files in git hold CHANGE-ME, which no server accepts: applying the example
    without real secrets fails at start-up instead of running with a known secret."""
    _, config = rendered.config()
    directories = [ROOT / "deploy/kubernetes" / rendered.name / "secrets"]
    directories.append(ROOT / "deploy/kubernetes/base/secrets")
    paths = {}
    for _, path in file_settings(config):
        key = PurePosixPath(path).name
        local = next(d / key for d in directories if (d / key).exists())
        assert local.read_text().strip() == "CHANGE-ME"
        paths[path] = str(local)
    config = replace_files(config, paths)
    config["database_url"] = config.get("database_url") and f"sqlite:///{tmp_path / 'a.db'}"
    if config["database_url"] is None:
        del config["database_url"]
    config_path = tmp_path / "authserver.yaml"
    config_path.write_text(yaml.safe_dump(config))
    listed = run_cli("--config", str(config_path), "clients", "list", cwd=tmp_path)
    assert listed.returncode == 2, listed.stdout
    assert "client_secret_hash" in listed.stderr
    assert "Traceback" not in listed.stderr


# -- Docker ------------------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """A Dockerfile's instructions, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            logical.append(pending.strip())
            pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in logical]


def final_stage(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (op, _) in enumerate(steps) if op == "FROM"]
    return steps[starts[-1] :]


def test_dockerfile_checks_readiness_and_runs_as_its_user() -> None:
    steps = final_stage(instructions(ROOT / "Dockerfile"))
    (healthcheck,) = [arg for op, arg in steps if op == "HEALTHCHECK"]
    (exposed,) = [arg for op, arg in steps if op == "EXPOSE"]
    assert f"http://127.0.0.1:{exposed}{READINESS_PATH}" in healthcheck
    assert "urllib.request" in healthcheck  # the slim image has no curl
    assert "--timeout=" in healthcheck
    (user,) = [arg for op, arg in steps if op == "USER"]
    assert user not in ("root", "0")
    (useradd,) = [arg for op, arg in steps if op == "RUN" and "useradd" in arg]
    assert "--uid 10001" in useradd  # deploy/kubernetes runs the pod as this uid
    (cmd,) = [arg for op, arg in steps if op == "CMD"]
    assert f"0.0.0.0:{exposed}" in cmd


def test_dockerfile_installs_only_locked_files() -> None:
    steps = instructions(ROOT / "Dockerfile")
    (base,) = [arg for op, arg in steps if op == "ARG" and arg.startswith("PYTHON_IMAGE=")]
    # A patch release by tag (a digest cannot be looked up from here).
    assert re.fullmatch(
        r"PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base
    )
    assert [arg for op, arg in steps if op == "FROM"] == [
        "${PYTHON_IMAGE} AS build",
        "${PYTHON_IMAGE}",
    ]
    installs = [arg for op, arg in steps if op == "RUN" and "pip install" in arg]
    assert any(
        "pip install --require-hashes --no-deps -r requirements-build.lock" in arg
        for arg in installs
    )
    assert any(
        "pip install --require-hashes --no-deps -r /tmp/requirements.lock" in arg
        for arg in installs
    )
    for arg in installs:  # nothing resolved at build time
        for command in arg.split("&&"):
            if "pip install" in command:
                assert "--no-deps" in command, command
    assert any("pip check" in arg for arg in installs)
    (wheel,) = [arg for op, arg in steps if op == "RUN" and "pip wheel" in arg]
    assert "--no-build-isolation" in wheel
    assert "--no-deps" in wheel


def test_dockerignore_keeps_local_state_out_but_what_is_copied_in() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # everything out (venvs, instance/, .git) unless let in
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for op, arg in instructions(ROOT / "Dockerfile"):
        if op == "COPY" and not arg.startswith("--from"):
            *sources, _ = arg.split()
            assert set(sources) <= allowed, sources
    assert not {".venv", "instance", ".git"} & allowed


def test_compose_health_check_asks_readiness() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    test = compose["services"]["authserver"]["healthcheck"]["test"]
    assert "http://127.0.0.1:8080/readyz" in " ".join(test)


def locked(path: Path) -> dict[str, tuple[str, int]]:
    """A pip-compile lock: name to (version, number of hashes)."""
    entries: dict[str, tuple[str, int]] = {}
    name = ""
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==(\S+)", line)
        if match:
            name = canonicalize_name(match[1])
            entries[name] = (match[2], 0)
        elif line.strip().startswith("--hash=sha256:"):
            version, hashes = entries[name]
            entries[name] = (version, hashes + 1)
    return entries


def test_lock_covers_every_runtime_dependency() -> None:
    """requirements.lock pins, with hashes, every dependency pyproject.toml names (with
    the postgres extra, and what those extras pull in) at a version it allows."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lock = locked(ROOT / "requirements.lock")
    assert "Python 3.11" in (ROOT / "requirements.lock").read_text()[:300]
    wanted = [
        *project["project"]["dependencies"],
        *project["project"]["optional-dependencies"]["postgres"],
    ]
    for text in wanted:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{name} is not in requirements.lock: run `make lock`"
        version, hashes = lock[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements.lock has {name}=={version}, pyproject.toml wants {text}: run `make lock`"
        )
        assert hashes, f"{name} has no hash in requirements.lock"
        for extra in requirement.extras:  # e.g. psycopg[binary] -> psycopg-binary
            environment = {**default_environment(), "extra": extra}
            for inner in importlib.metadata.requires(requirement.name) or []:
                pulled = Requirement(inner)
                marker = pulled.marker
                if marker and "extra" in str(marker) and marker.evaluate(environment):
                    assert canonicalize_name(pulled.name) in lock, (text, pulled.name)
    for name, (version, hashes) in lock.items():
        assert hashes, f"{name}=={version} has no hash"
    build = locked(ROOT / "requirements-build.lock")
    for text in project["build-system"]["requires"]:
        requirement = Requirement(text)
        version, _ = build[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version)
    assert re.search(r"^lock:", (ROOT / "Makefile").read_text(), re.M)
