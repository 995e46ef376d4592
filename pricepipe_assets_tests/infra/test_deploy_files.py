"""The Docker Compose file, the Helm values and the Kubernetes manifests, checked without Docker or
Kubernetes: no engine runs here, so what can be checked offline is that every pricepipe container
runs a command this checkout accepts with settings it parses, that the data flows (a feed
publishes, a Dagster instance on PostgreSQL is ready before Dagster starts), and that names, images
and ports agree across the files."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.routing import Route

from pricepipe_assets.cli.main import build_parser
from pricepipe_assets.settings import Settings, SettingsError
from pricepipe_assets_tests.infra.test_exposure import REQUIRED_ENV, compose_file

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETTING_NAMES = {f"PRICEPIPE_{name.upper()}" for name in Settings.__dataclass_fields__}
SECRET_NAMES = {f"PRICEPIPE_{name.upper()}" for name, spec in Settings.__dataclass_fields__.items()
                if spec.metadata["secret"]}


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    """The services as compose runs them, with the variables it requires set."""
    return compose_file(REQUIRED_ENV)["services"]


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    return [document for name in ("api.yaml", "feed.yaml", "stream.yaml")
            for document in yaml.safe_load_all((INFRA / "k8s" / name).read_text())]


@pytest.fixture(scope="module")
def helm_values() -> dict[str, Any]:
    return yaml.safe_load((INFRA / "k8s" / "dagster-values.yaml").read_text())


def _pricepipe_services(services: dict[str, Any]) -> dict[str, Any]:
    return {name: spec for name, spec in services.items() if spec.get("image") == "pricepipe:local"}


def _of_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {document["metadata"]["name"]: document for document in manifests if document["kind"] == kind}


def _containers(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: deployment["spec"]["template"]["spec"]["containers"][0]
            for name, deployment in _of_kind(manifests, "Deployment").items()}


def _user_deployment(helm_values: dict[str, Any]) -> dict[str, Any]:
    (deployment,) = helm_values["dagster-user-deployments"]["deployments"]
    return deployment


def assert_runs_here(command: list[str]) -> None:
    """The command is a `pricepipe` subcommand, a uvicorn app, or a Dagster process on this checkout's workspace."""
    program, *arguments = command
    if program == "pricepipe":
        build_parser().parse_args(arguments)
    elif program == "uvicorn":
        module, attribute = arguments[0].split(":")
        assert hasattr(importlib.import_module(module), attribute), command
    else:
        assert program in {"dagster-webserver", "dagster-daemon"}, command
        assert (REPO / arguments[arguments.index("-w") + 1]).is_file(), command


def assert_settings(environment: dict[str, Any]) -> Settings:
    """Every variable is one of pricepipe's settings and all of them parse together."""
    text = {name: str(value) for name, value in environment.items()}
    assert set(text) <= SETTING_NAMES, set(text) - SETTING_NAMES
    try:
        return Settings.from_env(text)
    except SettingsError as error:
        pytest.fail(f"settings that do not parse: {error}")


def test_every_pricepipe_container_runs_a_command_this_checkout_accepts(services: dict[str, Any]) -> None:
    pricepipe = _pricepipe_services(services)
    assert set(pricepipe) == {"dagster-instance", "dagster-webserver", "dagster-daemon", "stream", "feed", "api"}
    for spec in pricepipe.values():
        assert_runs_here(spec["command"])


def test_the_feed_publishes_and_every_setting_given_is_one_pricepipe_parses(services: dict[str, Any]) -> None:
    assert services["feed"]["command"][:3] == ["pricepipe", "feed", "--source"]
    for spec in _pricepipe_services(services).values():
        settings = assert_settings(spec["environment"])
        assert settings.kafka_bootstrap == "kafka:9092" and settings.cassandra_hosts == ("cassandra",)


def test_dagster_starts_on_a_migrated_postgres_instance_whose_credentials_the_url_carries(
        services: dict[str, Any]) -> None:
    postgres = services["postgres"]["environment"]
    settings = assert_settings(services["dagster-instance"]["environment"])
    assert settings.dagster_postgres_url == (f"postgresql://{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}"
                                             f"@postgres:5432/{postgres['POSTGRES_DB']}")
    assert services["dagster-instance"]["command"] == ["pricepipe", "dagster-instance"]
    for name in ("dagster-webserver", "dagster-daemon"):
        depends = services[name]["depends_on"]
        assert depends["dagster-instance"] == {"condition": "service_completed_successfully"}, name
        assert depends["postgres"] == {"condition": "service_healthy"}, name
        assert services[name]["volumes"] == services["dagster-instance"]["volumes"], name


def test_every_dependency_is_a_service_of_the_file(services: dict[str, Any]) -> None:
    for name, spec in services.items():
        depends = spec.get("depends_on", [])
        assert set(depends) <= set(services), name


def test_the_image_installs_the_instance_settings_and_the_k8s_run_launcher(tmp_path: Path) -> None:
    """Builds the wheel the Dockerfile installs, from the files it copies: `pricepipe dagster-instance`
    in the container reads the instance settings from the installed package, not from a checkout."""
    dockerfile = (INFRA / "docker" / "Dockerfile").read_text()
    assert 'pip install --no-cache-dir ".[k8s]"' in dockerfile
    assert any(need.startswith("dagster-k8s") for need in PYPROJECT["project"]["optional-dependencies"]["k8s"])
    context = tmp_path / "context"
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            *sources, target = line.split()[1:]
            for source in sources:
                destination = context / target / (source if target == "./" else "")
                destination.parent.mkdir(parents=True, exist_ok=True)
                if (REPO / source).is_dir():
                    shutil.copytree(REPO / source, destination, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(REPO / source, destination)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(context)],
                   check=True, timeout=300)
    (wheel,) = tmp_path.glob("pricepipe-*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    assert {"infra/dagster/dagster.yaml", "infra/dagster/postgres-storage.yaml", "api/static/chart.html",
            "pricepipe_assets/definitions.py"} <= packaged


def test_the_helm_user_code_serves_the_code_location_with_the_settings_configmap(
        helm_values: dict[str, Any], manifests: list[dict[str, Any]]) -> None:
    deployment = _user_deployment(helm_values)
    assert deployment["name"] == PYPROJECT["tool"]["dagster"]["code_location_name"]
    flag, module = deployment["dagsterApiGrpcArgs"]
    assert flag == "-m" and module == PYPROJECT["tool"]["dagster"]["module_name"]
    importlib.import_module(module)
    configmaps = {reference["name"] for reference in deployment["envConfigMaps"]}
    assert configmaps <= set(_of_kind(manifests, "ConfigMap"))
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert helm_values["runLauncher"]["type"] == "K8sRunLauncher"
    assert helm_values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"


def test_the_batch_lane_limit_is_the_one_the_local_instance_and_the_jobs_use(helm_values: dict[str, Any]) -> None:
    from pricepipe_assets.defs.run_queue import BATCH_LANE

    local = yaml.safe_load((INFRA / "dagster" / "dagster.yaml").read_text())["run_coordinator"]["config"]
    helm = helm_values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"]
    assert helm == local["tag_concurrency_limits"]
    assert [{"key": key, "value": value} for key, value in BATCH_LANE.items()] == [
        {"key": limit["key"], "value": limit["value"]} for limit in helm]


def test_the_settings_configmap_holds_settings_that_parse_and_no_secret(manifests: list[dict[str, Any]]) -> None:
    for configmap in _of_kind(manifests, "ConfigMap").values():
        settings = assert_settings(configmap["data"])
        assert not set(configmap["data"]) & SECRET_NAMES
        assert settings.kafka_replication_factor == 3 and settings.cassandra_consistency == "LOCAL_QUORUM"


def test_every_kubernetes_container_runs_this_checkout_with_its_settings(manifests: list[dict[str, Any]]) -> None:
    configmaps = set(_of_kind(manifests, "ConfigMap"))
    containers = _containers(manifests)
    assert set(containers) == {"pricepipe-api", "pricepipe-feed", "pricepipe-stream"}
    for container in containers.values():
        assert_runs_here(container["command"])
        assert {source["configMapRef"]["name"] for source in container["envFrom"] if "configMapRef" in source} <= configmaps
        variables = [variable for variable in container.get("env", []) if variable["name"].startswith("PRICEPIPE_")]
        assert {variable["name"] for variable in variables} <= SETTING_NAMES
        assert_settings({variable["name"]: variable["value"] for variable in variables if "value" in variable})
    assert containers["pricepipe-feed"]["command"][:2] == ["pricepipe", "feed"]
    feed = _of_kind(manifests, "Deployment")["pricepipe-feed"]["spec"]
    assert feed["replicas"] == 1 and feed["strategy"]["type"] == "Recreate"


def test_the_stream_workers_share_partitions_and_report_to_the_charts_instance(
        manifests: list[dict[str, Any]]) -> None:
    stream = _of_kind(manifests, "Deployment")["pricepipe-stream"]["spec"]
    (container,) = stream["template"]["spec"]["containers"]
    assert container["command"] == ["pricepipe", "stream"] and stream["replicas"] >= 2
    env = {variable["name"]: variable for variable in container["env"]}
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == f"{env['DAGSTER_HOME']['value']}/dagster.yaml"
    assert "secretKeyRef" in env["DAGSTER_PG_PASSWORD"]["valueFrom"]


def test_every_pricepipe_pod_runs_one_image(manifests: list[dict[str, Any]], helm_values: dict[str, Any]) -> None:
    image = _user_deployment(helm_values)["image"]
    assert image["tag"] == PYPROJECT["project"]["version"]
    assert {container["image"] for container in _containers(manifests).values()} == {
        f"{image['repository']}:{image['tag']}"}


def test_api_ports_and_probes_agree(manifests: list[dict[str, Any]]) -> None:
    from api.app import app

    container = _containers(manifests)["pricepipe-api"]
    port = int(container["command"][container["command"].index("--port") + 1])
    assert [declared["containerPort"] for declared in container["ports"]] == [port]
    routes = {route.path for route in app.routes if isinstance(route, Route)}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == port, probe
        assert container[probe]["httpGet"]["path"] in routes, probe
    service = _of_kind(manifests, "Service")["pricepipe-api"]["spec"]
    assert service["selector"] == _of_kind(manifests, "Deployment")["pricepipe-api"]["spec"]["selector"]["matchLabels"]
    assert [(declared["port"], declared["targetPort"]) for declared in service["ports"]] == [(port, port)]


def test_the_api_is_served_with_its_limits_against_hostile_requests(services: dict[str, Any],
                                                                      manifests: list[dict[str, Any]]) -> None:
    from api.server import UVICORN_HTTP

    for command in (services["api"]["command"], _containers(manifests)["pricepipe-api"]["command"]):
        assert command[command.index("--http") + 1] == UVICORN_HTTP
