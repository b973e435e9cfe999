"""The deployment files (`deploy/`) against the code they deploy, without Docker or a cluster:
every role of `infra.dev.dev_roles` runs in Compose and in Kubernetes with its own command
line and every setting that has no safe default away from a developer's machine; Compose
follows the Compose Specification; HAProxy health-checks the gateways; the topics are made
replicated, with the names and retention `schemas/topics.py` gives them.

`tests/fixtures/compose-spec.json` is the Compose Specification's JSON schema, vendored
unchanged from github.com/compose-spec/compose-spec, `schema/compose-spec.json` at commit
170098ba07d9f53c383a41bfd4c5166b0a4529a6 (Apache License 2.0).
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from pydantic.fields import FieldInfo

from infra.cli import build_parser
from infra.dev import dev_roles
from infra.settings import Settings
from infra.supervisor import Role
from schemas.topics import Topics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_SPEC = ROOT / "tests" / "fixtures" / "compose-spec.json"
TOPICS_SCRIPT = DEPLOY / "kafka" / "create-topics.sh"
PYTHON = "python"
CLI = [PYTHON, "-m", "infra.cli"]

REPLICAS = {"gateway": 3, "decider-registration": 2, "projector-website": 2}
"""Replicas of each role; every other role runs one."""
KAFKA_BROKERS = 3
LOOPBACK = ("127.0.0.1", "localhost")
DEV_ONLY = re.compile(r"dev[-_]only")
SHARED = ("BUTTERFLY_PARTITIONS", "BUTTERFLY_TOPIC_PREFIX", "BUTTERFLY_DB_PREFIX")
"""Settings with a fine default that every role must still agree on: another partition
count, topic prefix or database prefix in one role would make it read other topics or
databases than the rest."""
REQUIRED_INTERPOLATION = re.compile(r"^\$\{[A-Z0-9_]+:\?[^}]+\}$")
DEFAULTED_INTERPOLATION = re.compile(r"^\$\{[A-Z0-9_]+:-([^}]*)\}$")


# The code's view: roles, their command lines, the settings they need.


def default_of(field: str) -> Any:
    return Settings.model_fields[field].default


def roles() -> list[Role]:
    """Every role `make run` starts, the simulators included."""
    return dev_roles(
        {},
        PYTHON,
        partner_port=default_of("partner_port"),
        payment_port=default_of("payment_sim_port"),
    )


def role_ids() -> list[str]:
    return [role.name for role in roles()]


def service_name(role: Role) -> str:
    return role.name.replace(".", "-")


def role_args(role: Role) -> list[str]:
    """The role's arguments to `butterfly`, as `make run` passes them."""
    assert role.argv[: len(CLI)] == CLI
    return role.argv[len(CLI) :]


def replicas_of(role: Role) -> int:
    return REPLICAS.get(service_name(role), 1)


def env_name(name: str, field: FieldInfo) -> str:
    alias = field.validation_alias
    if alias is None:
        return f"{Settings.model_config.get('env_prefix', '')}{name}".upper()
    assert isinstance(alias, str), f"{name}: an alias this test cannot read: {alias!r}"
    return alias


def unsafe_default(default: object) -> bool:
    """Empty (find or start a local service, or go without), on the loopback, or a dev-only
    secret: fine for `make run`, wrong anywhere else."""
    return isinstance(default, str) and (
        default == "" or any(host in default for host in LOOPBACK) or bool(DEV_ONLY.search(default))
    )


RUN_ONLY = frozenset({"replicas"})
"""Settings only `make run` reads (how many processes it starts on this machine): a deployment
says that with its own replicas."""


@cache
def required_settings() -> frozenset[str]:
    """Every environment variable a deployed role must be given."""
    unsafe = {
        env_name(name, field)
        for name, field in Settings.model_fields.items()
        if unsafe_default(field.default) and name not in RUN_ONLY
    }
    return frozenset(unsafe | set(SHARED))


@cache
def secret_settings() -> frozenset[str]:
    """The required settings that are secrets: the dev-only ones, the admin token, the ticket
    keys and the URLs that can carry passwords."""
    dev_only = {
        env_name(name, field)
        for name, field in Settings.model_fields.items()
        if isinstance(field.default, str) and DEV_ONLY.search(field.default)
    }
    return frozenset(
        dev_only | {"BUTTERFLY_ADMIN_TOKEN", "BUTTERFLY_TICKET_KEYS", "DATABASE_URL", "REDIS_URL"}
    )


def parses_as_butterfly(args: list[str]) -> None:
    try:
        build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"`butterfly {shlex.join(args)}` is not a butterfly command line")


def test_the_required_settings_are_the_ones_a_deployment_cannot_do_without() -> None:
    required = required_settings()

    assert {
        "KAFKA_BOOTSTRAP_SERVERS",
        "DATABASE_URL",
        "REDIS_URL",
        "BUTTERFLY_ADMIN_TOKEN",
        "BUTTERFLY_TICKET_KEYS",
        "BUTTERFLY_PAYMENT_WEBHOOK_SECRET",
        "BUTTERFLY_HTTP_HOST",
        "BUTTERFLY_PARTITIONS",
    } <= required
    assert "BUTTERFLY_HTTP_PORT" not in required
    assert secret_settings() <= required


# Compose.


@cache
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def services() -> dict[str, Any]:
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: str(value) for name, value in env.items()}


def interpolated_default(value: str) -> str:
    """`${VAR:-default}` as Compose would read it with VAR unset; anything else as it is."""
    match = DEFAULTED_INTERPOLATION.match(value)
    return match.group(1) if match else value


def compose_spec_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads(COMPOSE_SPEC.read_text())
    validator = Draft7Validator(schema)
    return [
        f"{'/'.join(str(part) for part in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def test_compose_follows_the_compose_specification() -> None:
    assert compose_spec_errors(compose()) == []


def test_the_compose_schema_does_refuse_a_wrong_file() -> None:
    wrong = copy.deepcopy(compose())
    wrong["services"]["gateway"]["replicas"] = 3
    wrong["services"]["relay"]["depends_on"] = {"migrate": {"condition": "finished"}}

    assert len(compose_spec_errors(wrong)) == 2


@pytest.mark.parametrize("role", roles(), ids=role_ids())
def test_every_role_is_a_compose_service_running_its_command(role: Role) -> None:
    service = services()[service_name(role)]

    assert service["command"] == role_args(role)
    parses_as_butterfly(service["command"])
    assert service["build"]["dockerfile"] == "deploy/Dockerfile"
    assert service["deploy"]["replicas"] == replicas_of(role)
    assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def test_no_consumer_runs_more_replicas_than_there_are_partitions() -> None:
    partitions = int(interpolated_default(compose()["x-butterfly-env"]["BUTTERFLY_PARTITIONS"]))

    assert max(REPLICAS.values()) <= partitions


@pytest.mark.parametrize("role", roles(), ids=role_ids())
def test_every_role_in_compose_has_every_required_setting(role: Role) -> None:
    env = environment(services()[service_name(role)])

    assert required_settings() - env.keys() == set()
    assert [name for name in required_settings() if not env[name]] == []
    for name in secret_settings() - {"DATABASE_URL", "REDIS_URL"}:
        assert REQUIRED_INTERPOLATION.match(env[name]), f"{name} is not ${{{name}:?…}}"
    assert ":?" in env["DATABASE_URL"], "the database password comes from the environment"


def test_every_role_in_compose_agrees_on_the_shared_settings() -> None:
    values = {
        name: {environment(services()[service_name(role)])[name] for role in roles()}
        for name in (*SHARED, "KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")
    }

    assert {name: len(found) for name, found in values.items()} == dict.fromkeys(values, 1)


def kafka_brokers() -> dict[str, dict[str, str]]:
    return {
        name: environment(service)
        for name, service in services().items()
        if str(service.get("image", "")).startswith("apache/kafka:")
        and "KAFKA_NODE_ID" in environment(service)
    }


def test_kafka_is_three_kraft_brokers_replicating_every_write() -> None:
    brokers = kafka_brokers()

    assert len(brokers) == KAFKA_BROKERS
    assert len({env["KAFKA_NODE_ID"] for env in brokers.values()}) == KAFKA_BROKERS
    for name, env in brokers.items():
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
        assert sorted(voter.split("@")[1].split(":")[0] for voter in voters) == sorted(brokers)
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
        assert services()[name]["healthcheck"]["test"]
    for role in roles():
        bootstrap = environment(services()[service_name(role)])["KAFKA_BOOTSTRAP_SERVERS"]
        assert sorted(server.split(":")[0] for server in bootstrap.split(",")) == sorted(brokers)


def test_migrate_runs_once_after_the_databases_and_the_replicated_topics() -> None:
    migrate = services()["migrate"]
    steps = [shlex.split(step) for step in migrate["command"][0].split("&&")]

    assert migrate["entrypoint"] == ["/bin/sh", "-c"]
    assert steps == [["butterfly", "migrate"], ["butterfly", "topics"]]
    for step in steps:
        parses_as_butterfly(step[1:])
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {
        "mariadb": {"condition": "service_healthy"},
        "kafka-topics": {"condition": "service_completed_successfully"},
    }
    mariadb = services()["mariadb"]
    assert mariadb["image"] == "mariadb:11"
    assert mariadb["healthcheck"]["test"]
    assert any(volume.endswith(":/var/lib/mysql") for volume in mariadb["volumes"])
    assert services()["redis"]["healthcheck"]["test"]


def topics_script() -> tuple[list[str], list[str]]:
    """The topics deploy/kafka/create-topics.sh makes: (ordinary, kept for ever)."""
    text = TOPICS_SCRIPT.read_text()
    ordinary = re.findall(r"^ordinary (\S+)$", text, re.MULTILINE)
    forever = re.findall(r"^kept_forever (\S+)$", text, re.MULTILINE)
    return ordinary, forever


def test_the_topic_script_makes_every_topic_with_its_retention() -> None:
    ordinary, forever = topics_script()
    topics = Topics(default_of("topic_prefix"))

    assert sorted(topics.prefix + name for name in ordinary + forever) == sorted(topics.all())
    assert sorted(topics.prefix + name for name in forever) == sorted(topics.event_topics())


def test_compose_runs_the_topic_script_with_the_roles_settings() -> None:
    job = services()["kafka-topics"]
    env = environment(job)
    shared = compose()["x-butterfly-env"]

    assert job["entrypoint"] == ["/bin/sh", "/opt/butterfly/create-topics.sh"]
    assert "./kafka/create-topics.sh:/opt/butterfly/create-topics.sh:ro" in job["volumes"]
    assert env["KAFKA_REPLICATION_FACTOR"] == "3"
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "BUTTERFLY_PARTITIONS", "BUTTERFLY_TOPIC_PREFIX"):
        assert env[name] == str(shared[name])


# HAProxy.


def haproxy_sections() -> dict[str, list[str]]:
    """Each section of haproxy.cfg (`backend gateways`, `defaults`, …): its lines, comments
    and blank lines left out."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in (DEPLOY / "haproxy" / "haproxy.cfg").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not raw[0].isspace():
            current = sections.setdefault(" ".join(line.split()), [])
        else:
            current.append(" ".join(line.split()))
    return sections


def test_haproxy_health_checks_every_gateway_on_readiness() -> None:
    sections = haproxy_sections()
    backend = sections["backend gateways"]
    defaults = sections["defaults"]
    port = environment(services()["gateway"])["BUTTERFLY_HTTP_PORT"]

    assert "option httpchk" in backend
    assert any(line.startswith("http-check send meth GET uri /health/ready ") for line in backend)
    assert "http-check expect status 200" in backend
    servers = [line for line in backend if line.startswith(("server ", "server-template "))]
    assert servers
    for server in servers:
        assert f" gateway:{port} " in f"{server} "
        assert " check" in server
    assert "option redispatch" in defaults
    assert "retries 2" in defaults
    default_server = next(line for line in defaults if line.startswith("default-server "))
    for option in ("inter 1s", "fall 2", "rise 2"):
        assert f" {option} " in f"{default_server} "


def test_haproxy_passes_the_client_address_and_compose_wires_it() -> None:
    frontend = haproxy_sections()["frontend butterfly"]
    haproxy = services()["haproxy"]

    assert frontend.index("http-request del-header X-Forwarded-For") < frontend.index(
        "option forwardfor"
    )
    assert environment(services()["gateway"])["FORWARDED_ALLOW_IPS"]
    assert "ports" not in services()["gateway"]
    assert haproxy["image"] == "haproxy:2.8"
    assert "./haproxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in haproxy["volumes"]


# The image.


def test_the_image_installs_every_package_and_runs_butterfly_unprivileged() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [
        pattern.rstrip("*")
        for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    copied = re.findall(r"^COPY (\S+) \1$", dockerfile, re.MULTILINE)

    assert "\nFROM python:3.11-slim\n" in dockerfile
    assert sorted(copied) == sorted(packages)
    assert all(f"!{package}/" in ignored for package in packages)
    assert "RUN pip install . " in dockerfile
    assert re.search(r"^USER (?!root)\S+$", dockerfile, re.MULTILINE)
    assert 'ENTRYPOINT ["butterfly"]' in dockerfile


# Kubernetes.


@cache
def manifests() -> tuple[dict[str, Any], ...]:
    found: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return tuple(found)


def manifest(kind: str, name: str) -> dict[str, Any]:
    matches = [m for m in manifests() if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} manifests"
    return matches[0]


def containers(pod_spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from pod_spec.get("initContainers", [])
    yield from pod_spec["containers"]


def env_names(container: dict[str, Any]) -> set[str]:
    """The variables a container gets: its `env` and every key of its `envFrom` sources."""
    names = {item["name"] for item in container.get("env", [])}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            names |= manifest("ConfigMap", source["configMapRef"]["name"])["data"].keys()
        if "secretRef" in source:
            secret = manifest("Secret", source["secretRef"]["name"])
            names |= {**secret.get("data", {}), **secret.get("stringData", {})}.keys()
    return names


def test_the_manifests_parse_and_kustomize_lists_every_one() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")

    assert sorted(kustomization["resources"]) == files
    assert manifest("Namespace", "butterfly")
    for m in manifests():
        assert m["apiVersion"]
        assert m["metadata"]["name"]
        if m["kind"] != "Namespace":
            assert m["metadata"]["namespace"] == "butterfly"


@pytest.mark.parametrize("role", roles(), ids=role_ids())
def test_every_role_is_a_deployment_running_its_command(role: Role) -> None:
    deployment = manifest("Deployment", service_name(role))
    (container,) = deployment["spec"]["template"]["spec"]["containers"]

    assert container["command"] == ["butterfly"]
    assert container["args"] == role_args(role)
    parses_as_butterfly(container["args"])
    assert deployment["spec"]["replicas"] == replicas_of(role)
    assert container["resources"]["requests"].keys() >= {"cpu", "memory"}
    assert container["resources"]["limits"]["memory"]


@pytest.mark.parametrize("role", roles(), ids=role_ids())
def test_every_role_in_kubernetes_has_every_required_setting(role: Role) -> None:
    (container,) = manifest("Deployment", service_name(role))["spec"]["template"]["spec"][
        "containers"
    ]

    assert required_settings() - env_names(container) == set()


def test_secrets_are_in_secrets_and_the_rest_in_the_config_map() -> None:
    config = manifest("ConfigMap", "butterfly-config")["data"]
    secret = manifest("Secret", "butterfly-secrets")["stringData"]

    assert secret_settings() <= secret.keys()
    assert not secret_settings() & config.keys()
    assert required_settings() <= config.keys() | secret.keys()
    assert all(isinstance(value, str) for value in config.values())


def test_the_gateway_is_a_probed_service_scaled_by_cpu() -> None:
    deployment = manifest("Deployment", "gateway")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    service = manifest("Service", "gateway")
    hpa = manifest("HorizontalPodAutoscaler", "gateway")
    (port,) = container["ports"]

    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]
    assert (
        str(port["containerPort"])
        == manifest("ConfigMap", "butterfly-config")["data"]["BUTTERFLY_HTTP_PORT"]
    )
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "gateway",
    }
    assert hpa["spec"]["minReplicas"] == deployment["spec"]["replicas"]
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]


def test_the_migration_job_makes_the_topics_then_migrates() -> None:
    pod = manifest("Job", "butterfly-migrate")["spec"]["template"]["spec"]
    topics_init, migrate = pod["initContainers"]
    (topics,) = pod["containers"]
    script = manifest("ConfigMap", "butterfly-kafka-topics")["data"]["create-topics.sh"]

    assert script == TOPICS_SCRIPT.read_text()
    assert topics_init["image"].startswith("apache/kafka:")
    assert topics_init["command"] == ["/bin/sh", "/opt/butterfly/create-topics.sh"]
    assert {"KAFKA_BOOTSTRAP_SERVERS", "BUTTERFLY_PARTITIONS"} <= env_names(topics_init)
    assert (migrate["args"], topics["args"]) == (["migrate"], ["topics"])
    for container in (migrate, topics):
        assert container["command"] == ["butterfly"]
        parses_as_butterfly(container["args"])
        assert required_settings() - env_names(container) == set()
    (database_url,) = [item for item in migrate["env"] if item["name"] == "DATABASE_URL"]
    assert database_url["valueFrom"]["secretKeyRef"]["name"] == "butterfly-admin-database"


def test_every_pod_runs_unprivileged() -> None:
    pods = [
        m["spec"]["template"]["spec"] for m in manifests() if m["kind"] in ("Deployment", "Job")
    ]

    assert pods
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in containers(pod):
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
