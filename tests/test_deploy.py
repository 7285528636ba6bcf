"""deploy/ checked offline, without a cluster or a Docker engine.

Both Kustomize overlays are rendered and every built-in object is validated against the
Kubernetes schemas; the invariants a reviewer would check are derived from the code, not from
hand lists: the topics from ``automation_shared.topics``, each service's Kafka use from its
consumers (built with ``create_app``, which connects to nothing) and from the publish sites in
its source, the Ingress paths from the services' OpenAPI documents, the metric names from
``automation_shared.metrics``. Dockerfiles, compose, the front door's nginx configuration, the
alert rules, the Grafana dashboard and the operations guide are checked too.
"""

from __future__ import annotations

import ast
import base64
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import promql_parser
import pytest
import yaml
from automation_shared import kafka_security, metrics, topics
from automation_shared.service import STOP_GRACE_SECONDS
from automation_shared.settings import Settings
from fastapi import FastAPI
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = "1.32.0"  # schemas shipped by kubernetes-validate
# custom resources of the operators the platform needs (docs/operations.md, "Install order")
CUSTOM_KINDS = {
    ("kafka.strimzi.io/v1", "Kafka"), ("kafka.strimzi.io/v1", "KafkaNodePool"), ("kafka.strimzi.io/v1", "KafkaTopic"),
    ("kafka.strimzi.io/v1", "KafkaUser"), ("postgresql.cnpg.io/v1", "Cluster"), ("postgresql.cnpg.io/v1", "Database"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule"),
}
# metrics the alerts and the dashboard use that no service exports yet (docs/operations.md, "Alerts")
METRICS_TO_COME = {"automation_approvals_pending", "automation_approval_wait_seconds_sum",
                   "automation_approval_wait_seconds_count", "automation_approval_wait_seconds_bucket"}
REQUIRED_ALERTS = {"AutomationRunFailureRateHigh", "AutomationPendingExecutionsHigh", "AutomationApprovalWaitHigh",
                   "AutomationServiceCpuHigh", "AutomationConsumerLagHigh", "AutomationDeadLettersGrowing"}


# ------------------------------------------------------------------------------------ the code's facts


def service_packages() -> dict[str, str]:
    """service name -> Python package, from the layout ``services/<name>/src/<package>/main.py``."""
    return {main.parents[2].name: main.parent.name for main in sorted(ROOT.glob("services/*/src/*/main.py"))}


SERVICES = service_packages()


@cache
def app_of(service: str) -> FastAPI:
    """The service's app as ``make up`` builds it; building it connects to nothing."""
    module = importlib.import_module(f"{SERVICES[service]}.main")
    app: FastAPI = module.create_app(Settings(service_name=service, namespace="", dev_mode=True))
    return app


def openapi_paths(service: str) -> set[str]:
    return set(app_of(service).openapi()["paths"])


def api_prefixes(service: str) -> set[str]:
    """``/api/v1/<resource>`` of every API route of the service."""
    return {"/".join(path.split("/")[:4]) for path in openapi_paths(service) if path.startswith("/api/")}


def consumed(service: str) -> dict[str, str]:
    """topic -> consumer group of every subscription the service registers."""
    runtime = app_of(service).state.runtime
    return {consumer.subscription.topic: consumer.group for consumer in runtime.consumers}


TOPIC_CONSTANTS = {name: value for name, value in vars(topics).items() if name.isupper() and isinstance(value, str)}
PUBLISH_CALLS = {"Outgoing", "tombstone", "publish"}


def _topic_argument(call: ast.Call) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == "topic":
            return keyword.value
    return call.args[0] if call.args else None


def _resolve(expr: ast.expr, scopes: list[ast.AST]) -> tuple[set[str], list[ast.expr]]:
    """The topics ``expr`` can be: ``topics.X``, a name assigned from those, a dict of them indexed."""
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.id == "topics":
        return {TOPIC_CONSTANTS[expr.attr]}, []
    if isinstance(expr, ast.Subscript):
        return _resolve(expr.value, scopes)
    if isinstance(expr, ast.Dict):
        found: set[str] = set()
        unresolved: list[ast.expr] = []
        for value in expr.values:
            more, missing = _resolve(value, scopes)
            found |= more
            unresolved += missing
        return found, unresolved
    if isinstance(expr, ast.Name):
        found, unresolved = set(), []
        for scope in scopes:
            for node in ast.walk(scope):
                pairs: list[tuple[ast.expr, ast.expr]] = []
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                            pairs += list(zip(target.elts, node.value.elts, strict=False))
                        else:
                            pairs.append((target, node.value))
                elif isinstance(node, ast.AnnAssign) and node.value is not None:
                    pairs.append((node.target, node.value))
                for target, value in pairs:
                    if isinstance(target, ast.Name) and target.id == expr.id:
                        more, missing = _resolve(value, scopes)
                        found |= more
                        unresolved += missing
        if found or unresolved:
            return found, unresolved
    return set(), [expr]


def publish_sites(service: str) -> tuple[set[str], list[str]]:
    """Topics the service's code publishes to (``Outgoing(...)``, ``Outgoing.tombstone``, ``publisher.publish``),
    and the publish sites whose topic the source does not tell (``file:line expression``)."""
    package_dir = ROOT / "services" / service / "src" / SERVICES[service]
    found: set[str] = set()
    unresolved: list[str] = []
    for path in sorted(package_dir.rglob("*.py")):
        if "migrations" in path.relative_to(package_dir).parts:
            continue
        tree = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            argument = _topic_argument(node) if name in PUBLISH_CALLS else None
            if argument is None:
                continue
            scopes: list[ast.AST] = []
            current: ast.AST = node
            while current in parents:
                current = parents[current]
                if isinstance(current, ast.FunctionDef | ast.AsyncFunctionDef | ast.Module):
                    scopes.append(current)
            more, missing = _resolve(argument, scopes)
            found |= more
            unresolved += [f"{path.name}:{node.lineno} {ast.unparse(expr)}" for expr in missing]
    return found, unresolved


def kafka_use(service: str) -> dict[tuple[str, str], set[str]]:
    """``(resource type, name) -> operations`` the service needs: Read on what it consumes and its groups,
    Write on what it publishes and on the dead-letter topic of everything it consumes."""
    needs: dict[tuple[str, str], set[str]] = {}
    for topic, group in consumed(service).items():
        needs.setdefault(("topic", topic), set()).update({"Read", "Describe"})
        needs.setdefault(("topic", topics.dlq(topic)), set()).update({"Write", "Describe"})
        needs.setdefault(("group", group), set()).add("Read")
    for topic in publish_sites(service)[0]:
        needs.setdefault(("topic", topic), set()).update({"Write", "Describe"})
    return needs


def settings_env_names() -> dict[str, str]:
    """Environment variable -> Settings field, for every field."""
    names: dict[str, str] = {}
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        for name in ([str(c) for c in choices] if choices else [f"AUTOMATION_{field_name.upper()}"]):
            names[name] = field_name
    return names


def primary_env_name(field_name: str) -> str:
    choices = getattr(Settings.model_fields[field_name].validation_alias, "choices", None)
    return str(choices[0]) if choices else f"AUTOMATION_{field_name.upper()}"


def exported_metric_names() -> set[str]:
    """Sample names the services expose: automation_shared.metrics plus prometheus-client's process metrics."""
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    names: set[str] = set()
    for collector in vars(metrics).values():
        if isinstance(collector, Counter | Gauge | Histogram):
            for family in collector.describe():
                names |= {family.name + suffix for suffix in suffixes[family.type]}
    for family in ProcessCollector(registry=None).collect():
        names |= {sample.name for sample in family.samples}
    return names


# ------------------------------------------------------------------------------------ rendering


def kustomize_command() -> list[str]:
    """kustomize from ``deploy/local/stack.sh install`` (built with go install), else one on PATH."""
    for candidate in (os.environ.get("KUSTOMIZE"), str(ROOT / ".local/bin/kustomize"), shutil.which("kustomize")):
        if candidate and Path(candidate).exists():
            return [candidate, "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    pytest.fail("no kustomize: `deploy/local/stack.sh install` builds it into .local/bin (needs go)")


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run([*kustomize_command(), str(K8S / "overlays" / overlay)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in rendered(overlay) if doc["kind"] == kind]


def one(overlay: str, kind: str, name: str) -> dict[str, Any]:
    [doc] = [doc for doc in of_kind(overlay, kind) if doc["metadata"]["name"] == name]
    return doc


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# ------------------------------------------------------------------------------------ Kubernetes


def test_the_code_facts_are_found() -> None:
    assert set(SERVICES) == {"trigger-detector", "executor", "approvals", "timeline-projector"}
    assert consumed("executor") == {topics.TRIGGER_DETECTED: "executor.run-starter",
                                    topics.APPROVAL_DECIDED: "executor.approval-waiter",
                                    topics.AUTOMATION_RULES: "executor.rule-watcher"}
    assert {topics.RUN_STARTED, topics.ACTION_COMPLETED, topics.ACTION_SCHEDULED, topics.RUN_FINISHED} <= publish_sites(
        "executor")[0]
    assert topics.AUTOMATION_RULES in publish_sites("trigger-detector")[0]
    assert publish_sites("timeline-projector") == (set(), [])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid(overlay: str) -> None:
    """Built-in kinds validate (strictly: no unknown field) against the Kubernetes schemas; the rest are the
    operators' custom resources the install guide names."""
    validated = 0
    for doc in rendered(overlay):
        kind = (doc["apiVersion"], doc["kind"])
        if kind in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{kind} is neither a Kubernetes kind nor a known custom resource")
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {error.message} at {list(error.path)}")
        validated += 1
    assert validated >= 25
    [namespace] = of_kind(overlay, "Namespace")
    assert {doc["metadata"].get("namespace") for doc in rendered(overlay) if doc["kind"] != "Namespace"} == {
        namespace["metadata"]["name"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_deployment_is_hardened(overlay: str) -> None:
    deployments = {doc["metadata"]["name"]: doc for doc in of_kind(overlay, "Deployment")}
    assert set(deployments) == set(SERVICES)
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]
        spec = pod["spec"]
        labels = pod["metadata"]["labels"]
        assert selects(deployment["spec"]["selector"]["matchLabels"], labels)
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
        assert spec["serviceAccountName"] == name and spec["automountServiceAccountToken"] is False
        for container in containers(spec):
            assert container["image"].split(":")[0] == f"automation/{name}", container["name"]
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["limits"]) and {"cpu", "memory"} <= set(resources["requests"])
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
        [main] = spec["containers"]
        env = {item["name"]: item.get("value") for item in main["env"]}
        assert env["AUTOMATION_SERVICE_NAME"] == name
        paths = openapi_paths(name)
        for probe, path in (("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready"),
                            ("startupProbe", "/health/live")):
            assert main[probe]["httpGet"]["path"] == path and path in paths, probe
            assert main[probe]["httpGet"]["port"] == "http"
        # the in-flight batch and leaving the consumer groups fit in the grace period after preStop
        pre_stop = int(main["lifecycle"]["preStop"]["exec"]["command"][-1])
        assert spec["terminationGracePeriodSeconds"] >= pre_stop + 2 * STOP_GRACE_SECONDS
        # migrations before the service starts, as its own Job does too
        [migrate] = spec["initContainers"]
        assert migrate["command"][-2:] == ["migrate", SERVICES[name]]
        job = one(overlay, "Job", f"{name}-migrate")
        assert job["spec"]["template"]["spec"]["containers"][0]["command"] == migrate["command"]
        assert [pdb for pdb in of_kind(overlay, "PodDisruptionBudget")
                if selects(pdb["spec"]["selector"]["matchLabels"], labels)], f"{name} has no PodDisruptionBudget"
        [service] = [svc for svc in of_kind(overlay, "Service") if selects(svc["spec"]["selector"], labels)]
        assert service["metadata"]["name"] == name and service["spec"]["ports"][0]["name"] == "http"
        assert one(overlay, "ServiceAccount", name)


def test_prod_spreads_replicas_and_autoscales_within_the_partitions() -> None:
    partitions = int(one("prod", "ConfigMap", "automation-config")["data"]["AUTOMATION_PARTITIONS"])
    for deployment in of_kind("prod", "Deployment"):
        name = deployment["metadata"]["name"]
        assert deployment["spec"]["replicas"] >= 2
        anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
        terms = anti["preferredDuringSchedulingIgnoredDuringExecution"]
        assert {t["podAffinityTerm"]["labelSelector"]["matchLabels"]["app.kubernetes.io/name"] for t in terms} == {name}
        [hpa] = [h for h in of_kind("prod", "HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == name]
        assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"] <= partitions
    assert not of_kind("dev", "HorizontalPodAutoscaler")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_topic_has_a_kafka_topic_as_create_topics_makes_it(overlay: str) -> None:
    kafka_topics = {doc["metadata"]["name"]: doc for doc in of_kind(overlay, "KafkaTopic")}
    specs = {spec.name: spec for spec in topics.all_topic_specs()}
    assert set(kafka_topics) == set(specs)
    partitions = int(one(overlay, "ConfigMap", "automation-config")["data"]["AUTOMATION_PARTITIONS"])
    assert partitions == Settings.model_fields["partitions"].default
    [pool] = of_kind(overlay, "KafkaNodePool")
    [cluster] = of_kind(overlay, "Kafka")
    for name, doc in kafka_topics.items():
        assert doc["metadata"]["labels"]["strimzi.io/cluster"] == cluster["metadata"]["name"]
        assert doc["spec"]["partitions"] == partitions
        assert {key: str(value) for key, value in doc["spec"]["config"].items()} == specs[name].configs(), name
        assert doc["spec"]["replicas"] <= pool["spec"]["replicas"]
    assert cluster["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False


def acl_map(user: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for acl in user["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        assert resource["patternType"] == "literal"
        granted.setdefault((resource["type"], resource["name"]), set()).update(acl["operations"])
    return granted


def test_each_kafka_user_may_do_exactly_what_its_service_does() -> None:
    users = {doc["metadata"]["labels"]["app.kubernetes.io/name"]: doc for doc in of_kind("prod", "KafkaUser")}
    assert set(users) == set(SERVICES)
    [cluster] = of_kind("prod", "Kafka")
    assert cluster["spec"]["kafka"]["authorization"]["type"] == "simple"
    for service, user in users.items():
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        granted, needed = acl_map(user), kafka_use(service)
        assert granted == needed, (f"deploy/k8s/base/kafka/users.yaml, {user['metadata']['name']}: "
                                   f"the code needs {sorted((k, sorted(v)) for k, v in needed.items())}")
        deployment = one("prod", "Deployment", service)
        env = {item["name"]: item for item in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["AUTOMATION_KAFKA_SASL_USERNAME"]["value"] == user["metadata"]["name"]
        assert env["AUTOMATION_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == user["metadata"]["name"]


@pytest.mark.parametrize("service", SERVICES)
def test_every_publish_site_names_its_topic(service: str) -> None:
    """A publish whose topic the source does not tell may only re-send a row the service stored itself
    (``row.topic``); anything else would escape the ACL derivation above."""
    _found, unresolved = publish_sites(service)
    assert all(site.endswith(".topic") for site in unresolved), unresolved


def test_dev_runs_kafka_without_authentication() -> None:
    [cluster] = of_kind("dev", "Kafka")
    assert "authorization" not in cluster["spec"]["kafka"]
    assert all("authorization" not in user["spec"] for user in of_kind("dev", "KafkaUser"))
    listeners = {listener["port"]: listener for listener in cluster["spec"]["kafka"]["listeners"]}
    config = one("dev", "ConfigMap", "automation-config")["data"]
    port = int(config["KAFKA_BOOTSTRAP_SERVERS"].rsplit(":", 1)[1])
    assert "authentication" not in listeners[port] and config["AUTOMATION_KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"
    prod = one("prod", "ConfigMap", "automation-config")["data"]
    [prod_cluster] = of_kind("prod", "Kafka")
    prod_port = int(prod["KAFKA_BOOTSTRAP_SERVERS"].rsplit(":", 1)[1])
    prod_listener = {item["port"]: item for item in prod_cluster["spec"]["kafka"]["listeners"]}[prod_port]
    assert prod_listener["authentication"]["type"] == "scram-sha-512" and prod_listener["tls"] is True
    assert prod["AUTOMATION_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"


def container_environment(overlay: str, container: dict[str, Any]) -> dict[str, str]:
    """The environment a container starts with: its ConfigMaps and the Secrets the overlay renders, then its
    ``env``; a value from a Secret key is the placeholder ``<secret NAME/KEY>`` (the cluster holds those)."""
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            environment.update(one(overlay, "ConfigMap", source["configMapRef"]["name"])["data"])
        for secret in of_kind(overlay, "Secret"):
            if secret["metadata"]["name"] == source.get("secretRef", {}).get("name"):
                environment.update({key: base64.b64decode(value).decode() for key, value in secret["data"].items()})
    for item in container.get("env", []):
        ref = item["valueFrom"]["secretKeyRef"] if "value" not in item else None
        environment[item["name"]] = item["value"] if ref is None else f"<secret {ref['name']}/{ref['key']}>"
    return environment


def settings_in(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as a process with exactly ``environment`` (of the platform's variables) reads them."""
    for name in list(os.environ):
        if name.startswith(("AUTOMATION_", "KAFKA_")):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return Settings()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_reads_valid_settings_and_services_connect_as_their_listener_requires(
        overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each container's environment passes the settings' validation (the ``migrate`` containers too, without
    the Kafka password or CA), and each service's Kafka clients use the protocol of the listener it bootstraps
    from, its KafkaUser's SCRAM credentials and the cluster CA mounted where the CA file setting points."""
    # the CA file is in the pod, not here: the "context" is the file it would load
    monkeypatch.setattr(kafka_security, "create_ssl_context", lambda *, cafile: cafile)
    checked: set[str] = set()
    [cluster] = of_kind(overlay, "Kafka")
    listeners = {item["port"]: item for item in cluster["spec"]["kafka"]["listeners"]}
    users = {user["metadata"]["labels"]["app.kubernetes.io/name"]: user["metadata"]["name"]
             for user in of_kind(overlay, "KafkaUser")}
    for doc in of_kind(overlay, "Deployment") + of_kind(overlay, "Job"):
        pod = doc["spec"]["template"]["spec"]
        for container in containers(pod):
            settings = settings_in(container_environment(overlay, container), monkeypatch)
            if doc["kind"] != "Deployment" or container not in pod["containers"]:
                continue  # migrations connect to Postgres only
            service = doc["metadata"]["name"]
            checked.add(service)
            options = kafka_security.kafka_client_options(settings)
            listener = listeners[int(settings.kafka_bootstrap_servers.rsplit(":", 1)[1])]
            authentication = listener.get("authentication", {}).get("type")
            protocol = ("SASL_" if authentication else "") + ("SSL" if listener["tls"] else "PLAINTEXT")
            assert options["security_protocol"] == protocol, service
            if authentication:
                assert options["sasl_mechanism"] == authentication.upper(), service
                assert options["sasl_plain_username"] == users[service], service
                assert options["sasl_plain_password"] == f"<secret {users[service]}/password>", service
            else:
                assert "sasl_mechanism" not in options and "sasl_plain_username" not in options, service
            if listener["tls"]:
                cafile = options["ssl_context"]
                [mount] = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == cafile.parent]
                [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
                assert volume["secret"]["secretName"] == f"{cluster['metadata']['name']}-cluster-ca-cert"
                assert {"key": "ca.crt", "path": cafile.name} in volume["secret"]["items"], service
            else:
                assert "ssl_context" not in options, service
    assert checked == set(SERVICES)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_has_a_postgres_role_owning_only_its_schema(overlay: str) -> None:
    [cluster] = of_kind(overlay, "Cluster")
    [database] = of_kind(overlay, "Database")
    roles = {role["passwordSecret"]["name"]: role["name"] for role in cluster["spec"]["managed"]["roles"]}
    schemas = {schema["name"]: schema["owner"] for schema in database["spec"]["schemas"]}
    assert database["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
    assert len(set(roles.values())) == len(SERVICES) and sorted(schemas.values()) == sorted(roles.values())
    for service, package in SERVICES.items():
        env = {item["name"]: item for item in one(overlay, "Deployment", service)["spec"]["template"]["spec"][
            "containers"][0]["env"]}
        secret = env["PG_USER"]["valueFrom"]["secretKeyRef"]["name"]
        assert env["PG_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == secret
        assert "$(PG_USER):$(PG_PASSWORD)@" in env["AUTOMATION_DATABASE_URL"]["value"]
        schema = importlib.import_module(package).SCHEMA
        assert schemas[schema] == roles[secret], service
    if overlay == "dev":  # the generated development secrets carry the role names
        for secret in of_kind(overlay, "Secret"):
            if secret["metadata"]["name"] in roles:
                assert secret["type"] == "kubernetes.io/basic-auth"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_routes_each_api_prefix_to_its_service(overlay: str) -> None:
    [ingress] = of_kind(overlay, "Ingress")
    routed = [(path["path"], path["backend"]["service"]["name"], path["pathType"])
              for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]]
    assert {(prefix, service) for prefix, service, _ in routed} == {
        (prefix, service) for service in SERVICES for prefix in api_prefixes(service)}
    assert len(routed) == len({prefix for prefix, _, _ in routed}), "a prefix routed twice"
    assert {kind for _, _, kind in routed} == {"Prefix"}
    services = {svc["metadata"]["name"] for svc in of_kind(overlay, "Service")}
    assert {service for _, service, _ in routed} <= services


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_confine_every_pod(overlay: str) -> None:
    policies = of_kind(overlay, "NetworkPolicy")
    pods = [(doc["metadata"]["name"], doc["spec"]["template"]["metadata"]["labels"])
            for doc in rendered(overlay) if doc["kind"] in {"Deployment", "Job"}]
    deny = [p for p in policies if not p["spec"].get("ingress") and not p["spec"].get("egress")
            and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}]
    for name, labels in pods:
        assert any(selects(p["spec"]["podSelector"]["matchLabels"], labels) for p in deny), name
        external = [p for p in policies if selects(p["spec"]["podSelector"]["matchLabels"], labels)
                    and any("ipBlock" in peer for rule in p["spec"].get("egress", []) for peer in rule["to"])]
        role = (labels["app.kubernetes.io/name"], labels["app.kubernetes.io/component"])
        is_executor = role == ("executor", "service")
        assert bool(external) == is_executor, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_environment_variable_is_a_setting(overlay: str) -> None:
    known = set(settings_env_names())
    config = one(overlay, "ConfigMap", "automation-config")["data"]
    assert config["AUTOMATION_NAMESPACE"] == "", "topics, ACLs and schemas here are unprefixed"
    names = set(config)
    for doc in of_kind(overlay, "Deployment") + of_kind(overlay, "Job"):
        for container in containers(doc["spec"]["template"]["spec"]):
            env = container["env"]
            helpers = {item["name"] for item in env if not item["name"].startswith(("AUTOMATION_", "KAFKA_"))}
            used = " ".join(str(item.get("value", "")) for item in env)
            assert all(f"$({helper})" in used for helper in helpers), helpers
            names |= {item["name"] for item in env} - helpers
    for secret in of_kind(overlay, "Secret"):
        names |= {key for key in secret.get("data", {}) if key.startswith("AUTOMATION_")}
    assert names <= known, names - known


# ------------------------------------------------------------------------------------ images and compose


def dockerfile_stages(path: Path) -> tuple[dict[str, str], list[list[tuple[str, str]]]]:
    """Global ARG defaults and the instructions (keyword, arguments) of each stage."""
    text = re.sub(r"\\\n", " ", path.read_text())
    args: dict[str, str] = {}
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest.strip()))
        elif keyword == "ARG" and "=" in rest:
            name, value = rest.strip().split("=", 1)
            args[name] = value
    return args, stages


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = re.escape(pattern.lstrip("!").rstrip("/")).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def files_under(relative: str) -> Iterator[str]:
    path = ROOT / relative
    if path.is_file():
        yield relative
        return
    for file in sorted(path.rglob("*")):
        if file.is_file() and "__pycache__" not in file.parts and ".mypy_cache" not in file.parts:
            yield str(file.relative_to(ROOT))


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile(service: str) -> None:
    path = DEPLOY / "docker" / f"{service}.Dockerfile"
    args, stages = dockerfile_stages(path)
    assert len(stages) >= 2, "multi-stage"
    final = stages[-1]
    base = final[0][1].split()[0]
    assert re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base) == "python:3.11-slim"
    keywords = [keyword for keyword, _ in final]
    [user] = [rest for keyword, rest in final if keyword == "USER"]
    assert user.split(":")[0] not in {"root", "0"}
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k in {"RUN", "COPY"})
    [healthcheck] = [rest for keyword, rest in final if keyword == "HEALTHCHECK"]
    assert "/health/live" in healthcheck and "/health/live" in openapi_paths(service)
    final_runs = " ".join(rest for keyword, rest in final if keyword == "RUN")
    assert not re.search(r"apt-get|apk |gcc|build-essential|\buv\b|pip install", final_runs)
    [cmd] = [rest for keyword, rest in final if keyword == "CMD"]
    assert f"{SERVICES[service]}.main:create_app" in cmd and "--factory" in cmd
    installs = " ".join(rest for stage in stages[:-1] for keyword, rest in stage if keyword == "RUN")
    assert "--constraint requirements.lock" in installs and f"./services/{service}" in installs
    patterns = dockerignore_patterns()
    for stage in stages:
        for keyword, rest in stage:
            if keyword != "COPY" or rest.startswith("--from"):
                continue
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), source
                for file in files_under(source.rstrip("/")):
                    assert not dockerignored(file, patterns), f"{file} is excluded by .dockerignore"
    for outside in (".git/config", ".venv/bin/python", ".local/dev/pgdata.path", f"services/{service}/tests/x.py"):
        assert dockerignored(outside, patterns), outside


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return document


def test_compose_runs_the_platform_from_its_dockerfiles() -> None:
    services = compose()["services"]
    kafka_version = re.search(r"<kafka.version>(.+)</kafka.version>",
                              (DEPLOY / "local/kafka/pom.xml").read_text()).group(1)  # type: ignore[union-attr]
    assert services["kafka"]["image"] == f"apache/kafka:{kafka_version}"
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["topics"]["command"][-1] == "create-topics"
    for name, spec in services.items():
        if "build" in spec:
            context = DEPLOY / spec["build"]["context"]
            assert (context / spec["build"]["dockerfile"]).is_file(), name
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
    for service, package in SERVICES.items():
        spec = services[service]
        assert spec["build"]["dockerfile"] == f"deploy/docker/{service}.Dockerfile"
        assert spec["environment"]["AUTOMATION_SERVICE_NAME"] == service
        migration = services[f"migrate-{service}"]
        assert migration["command"][-2:] == ["migrate", package]
        assert spec["depends_on"][f"migrate-{service}"]["condition"] == "service_completed_successfully"
        assert spec["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        assert set(spec["environment"]) <= set(settings_env_names()), service
    assert services["frontdoor"]["ports"] == ["8000:8000"]
    assert {"prometheus", "grafana"} <= set(services)


def test_front_door_configurations_follow_the_ingress() -> None:
    spec = importlib.util.spec_from_file_location("frontdoor", DEPLOY / "local/frontdoor.py")
    assert spec is not None and spec.loader is not None
    frontdoor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(frontdoor)
    [ingress] = of_kind("prod", "Ingress")
    routes = [(path["path"], path["backend"]["service"]["name"])
              for path in ingress["spec"]["rules"][0]["http"]["paths"]]
    assert frontdoor.ingress_routes() == routes
    assert (DEPLOY / "nginx/nginx.conf").read_text() == frontdoor.compose_config(), \
        "regenerate: python deploy/local/frontdoor.py compose > deploy/nginx/nginx.conf"
    local = frontdoor.render(routes, {name: f"127.0.0.1:{8001 + i}" for i, name in enumerate(SERVICES)},
                             listen="127.0.0.1:8000", pid="/x/nginx.pid", error_log="/x/e", access_log="/x/a")
    for prefix, service in routes:
        assert f"location = {prefix} {{ proxy_pass http://{service}; }}" in local
        assert f"location {prefix}/ {{ proxy_pass http://{service}; }}" in local


# ------------------------------------------------------------------------------------ alerts and dashboard


def metric_names(expression: str) -> set[str]:
    found: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.add(node.name)
            return
        for attribute in dir(node):
            if attribute.startswith("_"):
                continue
            value = getattr(node, attribute)
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, promql_parser.Expr):
                    visit(child)

    visit(promql_parser.parse(expression))
    return found


def alert_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())["groups"]
    return groups


def test_alert_rules_parse_use_real_metrics_and_cover_the_seed() -> None:
    rules = [rule for group in alert_groups() for rule in group["rules"]]
    assert REQUIRED_ALERTS <= {rule["alert"] for rule in rules}
    known = exported_metric_names() | METRICS_TO_COME
    for rule in rules:
        names = metric_names(rule["expr"])
        assert names and names <= known, (rule["alert"], names - known)
        assert rule["labels"]["severity"] in {"warning", "critical"}
    [prometheus_rule] = of_kind("prod", "PrometheusRule")
    assert prometheus_rule["spec"]["groups"] == alert_groups(), "deploy/prometheus/alerts.yml and the PrometheusRule"
    scrape = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    assert scrape["scrape_configs"][0]["job_name"] == "automation"
    [monitor] = of_kind("prod", "ServiceMonitor")
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics" and endpoint["relabelings"][0]["replacement"] == "automation"
    assert "/metrics" in openapi_paths("executor")


def test_dashboard_panels_use_real_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana/dashboards/automation.json").read_text())
    known = exported_metric_names() | METRICS_TO_COME
    used: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            names = metric_names(target["expr"].replace("$__rate_interval", "5m"))
            assert names <= known, (panel["title"], names - known)
            used |= names
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("per topic", "trigger-to-action latency", "runs by outcome", "failure rate", "consumer lag",
                  "outbox", "approvals pending", "approval wait", "dead letters"):
        assert topic in titles, topic
    assert {"automation_consumer_lag", "automation_outbox_backlog", "automation_dead_letters_total",
            "automation_runs_total"} <= used
    provisioning = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/automation.yml").read_text())
    assert provisioning["providers"][0]["options"]["path"] in " ".join(compose()["services"]["grafana"]["volumes"])


# ------------------------------------------------------------------------------------ documentation


def test_operations_guide_documents_every_setting_and_real_commands() -> None:
    guide = (ROOT / "docs/operations.md").read_text()
    architecture = (ROOT / "docs/architecture.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for field_name in Settings.model_fields:
        assert f"`{primary_env_name(field_name)}`" in guide, field_name
    makefile = (ROOT / "Makefile").read_text()
    stack = (DEPLOY / "local/stack.sh").read_text()
    cli = (ROOT / "shared/src/automation_shared/cli.py").read_text()
    for text in (guide, architecture, readme):
        for target in re.findall(r"`make ([a-z-]+)", text):
            assert re.search(rf"^{target}:", makefile, re.MULTILINE), f"make {target}"
        for command in re.findall(r"deploy/local/stack\.sh ([a-z-]+)", text):
            assert re.search(rf"^\s+{command}\)", stack, re.MULTILINE), f"stack.sh {command}"
        for command in re.findall(r"automation_shared\.cli ([a-z-]+)", text):
            assert f'add_parser("{command}"' in cli, command
        for path in re.findall(r"\]\((?!https?:)([^)#]+)", text):
            base = ROOT if text is readme else ROOT / "docs"
            assert (base / path).exists(), path
        assert "DESIGN.md" not in text and "../shared" not in text
    assert "docs/architecture.md" in readme and "docs/operations.md" in readme


def test_the_test_infrastructure_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    assert spec is not None and spec.loader is not None
    switch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(switch)
    for name in ("AUTOMATION_TEST_INFRA", "KAFKA_BOOTSTRAP_SERVERS", "AUTOMATION_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(switch, "docker_available", lambda: True)
    assert switch.infra_mode() == "containers"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    assert switch.infra_mode() == "stack"
    monkeypatch.setenv("AUTOMATION_TEST_INFRA", "containers")
    assert switch.infra_mode() == "containers"
    monkeypatch.setenv("AUTOMATION_TEST_INFRA", "docker")
    with pytest.raises(pytest.UsageError):
        switch.infra_mode()
    monkeypatch.delenv("AUTOMATION_TEST_INFRA")
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS")
    monkeypatch.setattr(switch, "docker_available", lambda: False)
    assert switch.infra_mode() == "stack"
    assert "AUTOMATION_TEST_INFRA=stack" in (DEPLOY / "local/test.sh").read_text()
