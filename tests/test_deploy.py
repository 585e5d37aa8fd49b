"""The cluster deployment (deploy/compose.yaml, deploy/nginx.conf) gives the app what it needs: one Ray head that
trains nothing, a GPU node, app replicas that join the head with the cluster's token and share their run records,
and an nginx that keeps each browser session on one replica over a WebSocket.

Where `docker compose` works, Docker itself checks and renders the file (`config`) and the checks below read its
rendering; elsewhere they read the YAML as written. Either way every check runs."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from server.settings import Engine, Limits

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
NGINX = DEPLOY / "nginx.conf"
TOKEN = "0123456789abcdef" * 4  # what a host would generate; only ever given to `docker compose config`

KNOWN = {f"RESNET_{f.name.upper()}" for f in fields(Limits)} | {
    "RESNET_RAY_ADDRESS", "RESNET_RAY_CPUS", "RESNET_RAY_GPUS", "RESNET_RUNS_DIR", "RESNET_DATA_DIR"}


def _docker_compose() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


DOCKER = _docker_compose()


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "--format", "json"],
                          env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    """The compose model: Docker's rendering where Docker is here, else the YAML as written."""
    if DOCKER:
        done = _compose_config({**os.environ, "RAY_AUTH_TOKEN": TOKEN})
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))
    return dict(yaml.safe_load(COMPOSE.read_text()))


# ----------------------------------------------------------------------------------------------
# Reading services, whichever form (short as written, long as Docker renders it) they are in.


def services(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(model["services"])


def environment(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def command(svc: dict[str, Any]) -> list[str]:
    """The words the container runs, as the compose file states them (empty when it states none)."""
    cmd = svc.get("command")
    if cmd is None:
        return []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(word) for word in cmd]


def script(svc: dict[str, Any]) -> str:
    """The command as one line (a `sh -c` script included)."""
    return " ".join(command(svc))


def flag(text: str, name: str) -> str | None:
    """The value of `--name=value` or `--name value` in a command line."""
    m = re.search(rf"(?:^|\s){re.escape(name)}(?:=|\s+)([^\s\"']+|\"[^\"]*\"|'[^']*')", text)
    return m[1] if m else None


def mounts(svc: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (a volume name, or a host path as written or rendered)."""
    found = {}
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            found[v["target"]] = str(v["source"])
        else:
            source, target = v.split(":")[:2]
            found[target] = source
    return found


def depends_on(svc: dict[str, Any]) -> set[str]:
    deps = svc.get("depends_on") or []
    return set(deps)


def app_listen(svc: dict[str, Any]) -> tuple[int, str] | None:
    """(port, address) a service serves the app on, or None when it does not run the app."""
    words = command(svc)
    line = " ".join(words)
    if words and PurePosixPath(words[0]).name == "serve" and "deploy" in words[0]:  # deploy/serve [PORT] [ADDRESS]
        return int(words[1]) if len(words) > 1 else 8501, words[2] if len(words) > 2 else "127.0.0.1"
    if re.search(r"\bstreamlit run app\.py\b", line):
        return int(flag(line, "--server.port") or 8501), flag(line, "--server.address") or ""
    return None


def apps(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services(model).items() if app_listen(svc) is not None}


def ray_nodes(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services(model).items() if re.search(r"\bray start\b", script(svc))}


def head(model: dict[str, Any]) -> tuple[str, int]:
    heads = [name for name, svc in ray_nodes(model).items() if "--head" in script(svc).split()]
    assert len(heads) == 1, f"exactly one Ray head, not {heads}"
    return heads[0], int(flag(script(services(model)[heads[0]]), "--port") or 6379)


def named_volumes(model: dict[str, Any]) -> set[str]:
    return set(model.get("volumes") or {})


# ----------------------------------------------------------------------------------------------
# The checks.


def test_docker_compose_accepts_the_file_and_wants_the_token_or_the_yaml_says_so() -> None:
    if DOCKER:
        assert _compose_config({**os.environ, "RAY_AUTH_TOKEN": TOKEN}).returncode == 0
        without = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_TOKEN"}
        assert _compose_config(without).returncode != 0  # no cluster without a token
    else:
        written = yaml.safe_load(COMPOSE.read_text())
        tokens = {environment(svc).get("RAY_AUTH_TOKEN") for svc in written["services"].values()} - {None}
        # Interpolated from the host's environment, and required (`:?`): never a token written in the file.
        assert tokens and all(re.fullmatch(r"\$\{RAY_AUTH_TOKEN:\?[^}]+\}", t or "") for t in tokens), tokens


def test_every_container_of_the_image_says_what_it_runs(model: dict[str, Any]) -> None:
    """The file states each command: what a service runs is read here, never left to the image's default."""
    built = {n: svc for n, svc in services(model).items() if svc.get("build")}
    assert built, "no service is built from the project's image"
    assert all(command(svc) for svc in built.values()), [n for n, svc in built.items() if not command(svc)]


def test_one_head_that_trains_nothing_and_nodes_that_join_it(model: dict[str, Any]) -> None:
    name, port = head(model)
    nodes = ray_nodes(model)
    assert flag(script(nodes[name]), "--num-cpus") == "0"  # the head schedules no training and no actor
    workers = {n: svc for n, svc in nodes.items() if n != name}
    assert workers, "no Ray node to train on"
    for n, svc in nodes.items():
        line = script(svc)
        assert "--block" in line.split(), n  # the container lives as long as the node
        assert flag(line, "--node-ip-address"), n  # a node advertises the one address given
        assert environment(svc).get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == "0", n
        if n != name:
            assert flag(line, "--address") == f"{name}:{port}", n
            assert name in depends_on(svc), n


def test_a_worker_reserves_nvidia_gpus(model: dict[str, Any]) -> None:
    """A Ray node other than the head reserves NVIDIA GPUs (count "all" as written, -1 as Docker renders it)."""
    name, _ = head(model)
    gpu_nodes = []
    for n, svc in ray_nodes(model).items():
        devices = (((svc.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices") or []
        if any(d.get("driver") == "nvidia" and "gpu" in (d.get("capabilities") or [])
               and (str(d.get("count")) in ("all", "-1") or int(d.get("count") or 0) >= 1 or d.get("device_ids"))
               for d in devices):
            gpu_nodes.append(n)
    assert gpu_nodes and name not in gpu_nodes, gpu_nodes


def test_apps_join_the_head_with_the_token_every_node_has(model: dict[str, Any]) -> None:
    name, port = head(model)
    replicas = apps(model)
    assert len(replicas) >= 2, f"at least two app replicas, not {sorted(replicas)}"
    tokens = set()
    for n, svc in {**ray_nodes(model), **replicas}.items():
        env = environment(svc)
        assert env.get("RAY_AUTH_MODE") == "token", n
        assert env.get("RAY_AUTH_TOKEN"), n
        tokens.add(env["RAY_AUTH_TOKEN"])
    assert len(tokens) == 1, "every node and app needs the same token"
    for n, svc in replicas.items():
        assert environment(svc).get("RESNET_RAY_ADDRESS") == f"{name}:{port}", n
        assert name in depends_on(svc), n
        assert app_listen(svc)[1] == "0.0.0.0", n  # type: ignore[index]  # reachable from the proxy


def test_replicas_share_run_records_and_workers_read_the_datasets_apps_download(model: dict[str, Any]) -> None:
    volumes = named_volumes(model)
    replicas = apps(model)
    runs = set()
    for n, svc in replicas.items():
        path = environment(svc).get("RESNET_RUNS_DIR")
        assert path, f"{n}: run records would stay inside the container"
        runs.add(mounts(svc).get(path))
    assert len(runs) == 1 and runs <= volumes, f"one named volume for every replica's run records: {runs}"
    # Training workers load datasets with download=False (server/work.py): what an app downloaded must be there.
    name, _ = head(model)
    readers = {**replicas, **{n: svc for n, svc in ray_nodes(model).items() if n != name}}
    data = set()
    for n, svc in readers.items():
        path = environment(svc).get("RESNET_DATA_DIR")
        assert path, n
        data.add(mounts(svc).get(path))
    assert len(data) == 1 and data <= volumes, f"one named volume for datasets: {data}"


def test_every_resnet_variable_is_one_the_app_knows_and_valid(model: dict[str, Any]) -> None:
    for n, svc in services(model).items():
        env = environment(svc)
        unknown = {k for k in env if k.startswith("RESNET_")} - KNOWN
        assert not unknown, f"{n}: variables server/settings.py does not read: {unknown}"
        Limits.from_env(env)
        Engine.from_env(env)


def _nginx_directives() -> str:
    return "\n".join(line.split("#", 1)[0] for line in NGINX.read_text().splitlines())


def _size_bytes(value: str) -> int:
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", value)
    assert m, value
    return int(m[1]) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[m[2].lower()]


def _seconds(value: str) -> int:
    m = re.fullmatch(r"(\d+)(s|m|h|d)?", value)
    assert m, f"{value}: seconds, minutes, hours or days"
    return int(m[1]) * {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]]


def test_nginx_is_sticky_over_every_replica_and_passes_websockets(model: dict[str, Any]) -> None:
    proxies = {n: svc for n, svc in services(model).items() if str(svc.get("image", "")).startswith("nginx:")}
    assert len(proxies) == 1, proxies
    (proxy,) = proxies.values()
    mounted = {target: source for target, source in mounts(proxy).items() if target.startswith("/etc/nginx/")}
    assert any(Path(source).name == NGINX.name and (DEPLOY / source).resolve() == NGINX.resolve()
               for source in mounted.values()), mounted
    published = [str(p.get("published")) + ":" + str(p.get("target")) if isinstance(p, dict) else str(p)
                 for p in proxy.get("ports") or []]
    assert "8080:80" in published, published

    conf = _nginx_directives()
    upstreams = dict(re.findall(r"upstream\s+(\S+)\s*\{([^}]*)\}", conf))
    assert len(upstreams) == 1, upstreams
    ((upstream, body),) = upstreams.items()
    assert re.search(r"^\s*ip_hash\s*;", body, re.M), "a Streamlit session lives in one replica: sticky upstream"
    listed = set(re.findall(r"^\s*server\s+(\S+?)(?:\s[^;]*)?;", body, re.M))
    assert listed == {f"{n}:{app_listen(svc)[0]}" for n, svc in apps(model).items()}  # type: ignore[index]
    assert re.search(r"^\s*listen\s+80\s*;", conf, re.M)
    assert re.search(rf"proxy_pass\s+http://{re.escape(upstream)}\s*;", conf)
    assert re.search(r"proxy_http_version\s+1\.1\s*;", conf)

    assert re.search(r"proxy_set_header\s+Upgrade\s+\$http_upgrade\s*;", conf)
    connection = re.search(r"proxy_set_header\s+Connection\s+(\S+)\s*;", conf)
    assert connection, "no Connection header: WebSockets do not pass"
    value = connection[1].strip("\"'")
    if value.startswith("$"):  # a map of $http_upgrade, "upgrade" when the browser asks for it
        mapped = re.search(rf"map\s+\$http_upgrade\s+{re.escape(value)}\s*\{{([^}}]*)\}}", conf)
        assert mapped and re.search(r"default\s+upgrade\s*;", mapped[1]), value
    else:
        assert value.lower() == "upgrade", value
    timeout = re.search(r"proxy_read_timeout\s+(\S+)\s*;", conf)
    assert timeout and _seconds(timeout[1]) >= 3600, "an idle session's socket must stay open"

    # nginx refuses bodies over 1 MB unless told: uploads up to the replicas' own cap must get through.
    body_max = re.search(r"client_max_body_size\s+(\S+)\s*;", conf)
    hosted = dict(line.split("=", 1) for line in (DEPLOY / "hosted.env").read_text().splitlines()
                  if line and not line.startswith("#"))
    for n, svc in apps(model).items():
        env = environment(svc)
        profile = hosted if PurePosixPath(command(svc)[0]).name == "serve" else {}
        cap_mb = int(env.get("STREAMLIT_SERVER_MAX_UPLOAD_SIZE") or profile.get("STREAMLIT_SERVER_MAX_UPLOAD_SIZE")
                     or 200)
        assert body_max and _size_bytes(body_max[1]) >= cap_mb * 2**20, n
