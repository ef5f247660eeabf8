"""deploy/: the docker-compose deployment, checked without a Docker engine (none runs here).

- the compose file's structure: services, images built from the Dockerfile's targets, declared volumes, mounted
  files that exist, dependencies on services that exist (and have health checks where compose waits for health),
  every required variable documented in deploy/env.example; ``docker compose config`` too when a Docker CLI exists;
- the configs as each container sees them (the compose environment substituted): central and every ingest worker
  on PostgreSQL, the ``mosquitto`` broker, one shared group, distinct client ids and logins; the edge's health
  endpoint on the port its HEALTHCHECK polls, footage under the mounted /media, the same cameras and zones as the
  repository's cameras.yaml, and the same categories/routing/labels as central.yaml;
- (slow) the images' install steps as plain ``pip install .[edge]`` / ``.[central]`` in fresh venvs, import-checked,
  each without the other side's heavy dependencies.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from central.config import parse_central_config
from edge.config import parse_config
from edge.yamlconfig import read_yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
GENERATED = {"./broker"}  # made by `gridwatch-central broker-config` on the host (git-ignored)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?)([^}]*))?\}")


def env_example() -> dict[str, str]:
    out = {}
    for line in (DEPLOY / "env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip() or f"test-{k.strip().lower()}"
    return out


def interpolate(node, env: dict[str, str], missing: list[str]):  # noqa: ANN001, ANN201 - any YAML node
    """Compose's own variable substitution: ${VAR}, ${VAR:-default}, ${VAR:?error}."""
    if isinstance(node, dict):
        return {k: interpolate(v, env, missing) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env, missing) for v in node]
    if not isinstance(node, str):
        return node

    def repl(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op == ":-":
            return arg
        missing.append(name)
        return ""

    return _VAR.sub(repl, node)


def compose(env: dict[str, str] | None = None) -> dict:
    missing: list[str] = []
    doc = interpolate(yaml.safe_load(COMPOSE.read_text()), env_example() if env is None else env, missing)
    assert not missing, f"variables compose would refuse: {missing}"
    return doc


def dockerfile_targets() -> dict[str, str]:
    """Dockerfile stage name → the stage's text."""
    text = (REPO / "Dockerfile").read_text()
    parts = re.split(r"^FROM .* AS (\S+)\s*$", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def test_compose_file_structure() -> None:
    doc = compose()
    services = doc["services"]
    assert {"mosquitto", "postgres", "central", "ingest-1", "ingest-2", "edge"} <= set(services)
    targets = dockerfile_targets()
    declared_volumes = set(doc.get("volumes") or {})
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        if "build" in svc:
            assert (DEPLOY / svc["build"]["context"] / "Dockerfile").resolve() == REPO / "Dockerfile"
            assert svc["build"]["target"] in targets, f"{name}: no Dockerfile target {svc['build']['target']}"
        for mount in svc.get("volumes", []):
            src, _, rest = mount.partition(":")
            if src.startswith((".", "/")):
                if src in GENERATED:
                    continue
                if "media" in rest:  # the sample footage, next to the clone (never in the repository)
                    continue
                assert (DEPLOY / src).exists(), f"{name} mounts {src}, which is not in deploy/"
            else:
                assert src in declared_volumes, f"{name}: volume {src} is not declared"
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond.get("condition") == "service_healthy":
                target = services[dep].get("build", {}).get("target")
                assert "healthcheck" in services[dep] or "HEALTHCHECK" in targets.get(target, ""), \
                    f"{name} waits for {dep} to be healthy, but {dep} has no health check"
    # the two central containers that write evidence share one volume; the ingest workers run without migrating
    for name in ("central", "ingest-1", "ingest-2"):
        assert any(v.startswith("evidence:") for v in services[name]["volumes"]), name
    for name in ("ingest-1", "ingest-2"):
        assert "--no-migrate" in services[name]["command"] and services[name]["command"][1] == "ingest"
    # every variable the file requires (${VAR:?…}) is documented in env.example
    required = set(re.findall(r"\$\{([A-Z_0-9]+):\?", COMPOSE.read_text()))
    assert required <= set(env_example()), required - set(env_example())
    with pytest.raises(AssertionError, match="PGPASSWORD"):
        compose({})


def test_compose_config_with_the_docker_cli_when_there_is_one() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("no Docker CLI with compose here: the structure is checked by test_compose_file_structure")
    env = {**os.environ, **env_example()}
    done = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "-q"], env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr


def _container_env(service: str) -> dict[str, str]:
    svc = compose()["services"][service]
    return {k: str(v) for k, v in (svc.get("environment") or {}).items()}


def test_every_central_container_sees_the_compose_services() -> None:
    deploy_cfg = read_yaml(DEPLOY / "config" / "central.yaml")
    ids, users = set(), set()
    for service in ("central", "ingest-1", "ingest-2"):
        cfg = parse_central_config(deploy_cfg, source=service, env={**_container_env(service)})
        assert cfg.mqtt.host == "mosquitto" and cfg.mqtt.port == 1883, service
        assert cfg.mqtt.shared_group == "central", service
        assert cfg.database_url.startswith("postgresql://gridwatch:") and "@postgres:5432/" in cfg.database_url
        assert str(cfg.evidence_dir) == "/var/lib/gridwatch/evidence"
        assert cfg.mqtt.password, service
        ids.add(cfg.mqtt.client_id)
        users.add(cfg.mqtt.username)
    assert len(ids) == 3 and len(users) == 3  # one persistent session and one broker login per container
    assert str(cfg.zone_config_path) == "/config/cameras.yaml"
    # the same case rules as the repository's central.yaml
    root = parse_central_config(read_yaml(REPO / "central.yaml"), env={})
    for key in ("categories", "routing", "squads", "departments", "display_names", "calendar", "timezone"):
        assert getattr(cfg, key) == getattr(root, key), key


def test_the_edge_container_config() -> None:
    env = _container_env("edge")
    cfg = parse_config(read_yaml(DEPLOY / "config" / "cameras.yaml"), source="edge", env=env)
    assert cfg.mqtt.host == "mosquitto" and cfg.mqtt.username == "edge-demo-01" and cfg.mqtt.password
    assert cfg.health.address() == ("0.0.0.0", 9108)
    assert "127.0.0.1:9108/healthz" in dockerfile_targets()["edge"]  # the HEALTHCHECK polls that endpoint
    assert all(c.url.startswith("/media/") for c in cfg.cameras)
    assert any(v.endswith(":/media:ro") for v in compose()["services"]["edge"]["volumes"])
    assert "edge-demo-01" in parse_central_config(read_yaml(DEPLOY / "config" / "central.yaml"),
                                                  env=_container_env("central")).mqtt.edges
    root = parse_config(read_yaml(REPO / "cameras.yaml"), env={})
    assert cfg.edge_id == root.edge_id
    assert [(c.id, c.location, c.zones) for c in cfg.cameras] == [(c.id, c.location, c.zones) for c in root.cameras]
    assert "ffmpeg" in dockerfile_targets()["edge"]


def test_images_install_separate_dependency_sets() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    import tomllib

    project = tomllib.loads(pyproject)["project"]
    core = " ".join(project["dependencies"]).lower()
    edge = " ".join(project["optional-dependencies"]["edge"]).lower()
    central = " ".join(project["optional-dependencies"]["central"]).lower()
    for heavy in ("onnxruntime", "openvino", "scipy", "openpibo"):
        assert heavy in edge and heavy not in core and heavy not in central
    for server in ("fastapi", "sqlalchemy", "psycopg", "alembic", "uvicorn"):
        assert server in central and server not in core and server not in edge
    targets = dockerfile_targets()
    assert "'.[edge]'" in targets["build-edge"] and "'.[central]'" in targets["build-central"]
    assert "build-edge" in targets["edge"] and "build-central" in targets["central"]


# --------------------------------------------------------------------------- the images' install steps

EDGE_IMPORTS = "import edge.cli, edge.worker, edge.mqtt, edge.metrics, edge.detectors.ssd, cv2, onnxruntime"
CENTRAL_IMPORTS = "import central.cli, central.app, central.mqtt_ingest, central.web.routes, central.metrics"
ABSENT = {"edge": ["fastapi", "sqlalchemy", "psycopg", "uvicorn"], "central": ["onnxruntime", "openvino", "scipy"]}


def _install(extra: str, root: Path) -> tuple[str, float, str]:
    t0 = time.monotonic()
    venv = root / f"venv-{extra}"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # a copy of the sources only (what the Dockerfile copies), so nothing of the work tree leaks in
    src = root / f"src-{extra}"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for pkg in ("edge", "central"):
        shutil.copytree(REPO / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    done = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                           f"{src}[{extra}]"], capture_output=True, text=True, timeout=170)
    if done.returncode != 0:
        return extra, time.monotonic() - t0, f"pip install .[{extra}] failed:\n{done.stderr[-2000:]}"
    imports = EDGE_IMPORTS if extra == "edge" else CENTRAL_IMPORTS
    absent = ", ".join(repr(m) for m in ABSENT[extra])
    check = (f"{imports}\nimport importlib.util\n"
             f"present = [m for m in ({absent},) if importlib.util.find_spec(m)]\n"
             "assert not present, f'installed but belongs to the other side: {present}'\n")
    run = subprocess.run([str(py), "-c", check], capture_output=True, text=True, cwd=root, timeout=120)
    return extra, time.monotonic() - t0, "" if run.returncode == 0 else run.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_pip_install_extras_in_fresh_venvs_import_check(tmp_path: Path) -> None:
    """Both installs run side by side (about a minute here from the local package index and wheel cache)."""
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda extra: _install(extra, tmp_path), ["edge", "central"]))
    for extra, seconds, problem in results:
        assert not problem, f".[{extra}] ({seconds:.0f} s): {problem}"
    # the gridwatch-* entry points exist in each venv
    assert (tmp_path / "venv-edge" / "bin" / "gridwatch-edge").exists()
    assert (tmp_path / "venv-central" / "bin" / "gridwatch-central").exists()
