"""deploy/: the Kubernetes manifests against the Kubernetes schemas (kubernetes-validate's bundled ones, offline),
the compose file against what `hotline up --gateways 2 --sip-proxy` starts, and both against the code they run
(the settings the gateway reads, its probes, its drain) and the measured figures deploy/README.md sizes them by."""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import json
import math
import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from unittest import mock

import kubernetes_validate
import pytest
import yaml

from hotline_domain.redis_spec import DEFAULT_MASTER, FAILOVER_WAIT_S, Sentinels
from voice_gateway import metrics, sip_proxy, stack
from voice_gateway.calls import Switchboard
from voice_gateway.config import PROJECT_ROOT, Settings
from voice_gateway.transports.sip import SipSettings

DEPLOY = PROJECT_ROOT / "deploy"
K8S = DEPLOY / "k8s"
README = (DEPLOY / "README.md").read_text(encoding="utf-8")
COMPOSE = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))
# The oldest Kubernetes the manifests are written for, and the newest whose schemas kubernetes-validate bundles.
VERSIONS = ("1.29", "1.37")
COMPOSE_GATEWAYS = ("gateway-1", "gateway-2")
SENTINEL_FAILOVER_S = 1.5  # what a failover takes beyond down-after-milliseconds (hotline_domain/redis_spec.py)
GOODBYE_S = inspect.signature(Switchboard.drain).parameters["goodbye_s"].default
# Variables only other variables use ($(VAR) in Kubernetes); the process itself does not read them.
HELPERS = {"POD_IP", "REDIS_PASSWORD"}


# --- reading the files ---
def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


@functools.cache
def _parsed() -> tuple[tuple[Path, dict[str, Any]], ...]:
    return tuple(
        (path, doc) for path in manifest_files() for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc
    )


def manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every document of every manifest (copies: a test may not change what the next one reads)."""
    for path, doc in _parsed():
        yield path, copy.deepcopy(doc)


def resource(kind: str, name: str) -> dict[str, Any]:
    found = [doc for _, doc in manifests() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} in deploy/k8s"
    return found[0]


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    spec = workload["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == name)


def container_env(workload: dict[str, Any], name: str) -> dict[str, str]:
    """A container's environment as the kubelet gives it: ConfigMaps, then env; Secrets and fields as stand-ins."""
    env: dict[str, str] = {}
    for source in container(workload, name).get("envFrom", []):
        env.update(resource("ConfigMap", source["configMapRef"]["name"])["data"])
    stand_ins = {"status.podIP": "10.0.1.11", "metadata.name": "gateway-7d9f-abcde"}
    for var in container(workload, name).get("env", []):
        if "value" in var:
            value = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], var["value"])
        elif "secretKeyRef" in var["valueFrom"]:
            value = f"secret-{var['valueFrom']['secretKeyRef']['key']}"
        else:
            value = stand_ins[var["valueFrom"]["fieldRef"]["fieldPath"]]
        env[var["name"]] = value
    return env


def compose_value(text: str) -> str:
    """Compose's interpolation: ${VAR:-default} and ${VAR:?error} with nothing set in the environment."""
    text = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(text))
    return re.sub(r"\$\{(\w+):\?[^}]*\}", r"set-\1", text)


def compose_env(service: str) -> dict[str, str]:
    return {k: compose_value(v) for k, v in COMPOSE["services"][service]["environment"].items()}


def readme_cells(label: str) -> list[str]:
    """The cells after `label` in the deploy/README.md table row that starts with it."""
    rows = [line for line in README.splitlines() if line.startswith(f"| {label} |")]
    assert len(rows) == 1, f"deploy/README.md: {len(rows)} rows '{label}'"
    return [cell.strip() for cell in rows[0].strip().strip("|").split("|")][1:]


def report_of(cell: str) -> dict[str, Any]:
    """The docs/bench report a README cell names."""
    name = re.search(r"`(docs/bench/[\w.-]+\.json)`", cell)
    assert name, f"no report named in {cell!r}"
    return json.loads((PROJECT_ROOT / name.group(1)).read_text(encoding="utf-8"))


def gateway_peak_mib(report: dict[str, Any]) -> float:
    """The gateway process's highest resident memory in a bench or soak report."""
    if "processes" in report:
        return float(report["processes"]["gateway"]["rss_mb_peak"])
    return max([report["end"]["rss_mb"]] + [s["rss_mb"] for s in report.get("samples", [])])


def millicores(text: str) -> float:
    return float(text[:-1]) if text.endswith("m") else float(text) * 1000


def mebibytes(text: str) -> float:
    units = {"Mi": 1, "Gi": 1024}
    return float(text[:-2]) * units[text[-2:]]


def seconds(text: str) -> float:
    """A compose duration: 31m, 90s, 1h."""
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in re.findall(r"(\d+)([hms])", text))


class ReadRecorder(dict):
    """An environment that notes which variables were read."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)


def gateway_reads(env: Mapping[str, str]) -> tuple[Settings, set[str]]:
    """The gateway's settings from `env` (they must parse), and the variables it read: its own and SIP's."""
    recorder = ReadRecorder(env)
    settings = Settings.from_env(recorder)
    sip = ReadRecorder(settings.gateway.sip)
    SipSettings.from_settings(dataclasses.replace(settings.gateway, sip=sip))
    return settings, recorder.read | sip.read


# --- the schemas ---
@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_passes_the_kubernetes_schema(version: str) -> None:
    failures = []
    for path, doc in manifests():
        try:
            kubernetes_validate.validate(doc, version, strict=True)  # strict: an unknown field is an error
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
            where = "/".join(str(p) for p in getattr(exc, "absolute_path", []))
            failures.append(f"{path.name} {doc['kind']}/{doc['metadata']['name']} {where}: {exc.message}")
    assert not failures, "\n".join(failures)


def test_kustomization_applies_every_manifest_in_the_namespace() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert sorted(kustomization["resources"]) == [p.name for p in manifest_files()]
    assert kustomization["namespace"] == "hotline"
    for path, doc in manifests():
        assert doc["metadata"].get("namespace", "hotline") == "hotline", f"{path.name} {doc['kind']}"
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "hotline", f"{path.name} {doc['kind']} names no namespace"


def test_secrets_are_referenced_never_checked_in_and_the_readme_says_how_to_make_them() -> None:
    assert not [doc for _, doc in manifests() if doc["kind"] == "Secret"]
    made: dict[str, set[str]] = {}
    for command in README.replace("\\\n", " ").splitlines():
        if name := re.search(r"create secret generic (\S+)", command):
            made[name.group(1)] = {
                Path(m.group(2)).name if m.group(1) == "file" else m.group(2)
                for m in re.finditer(r"--from-(literal|file)=([^=\s]+)", command)
            }
    used: dict[str, set[str]] = {}
    for _, doc in manifests():
        text = json.dumps(doc)
        for name, key in re.findall(r'"secretKeyRef": \{"name": "([\w-]+)", "key": "([\w.-]+)"\}', text):
            used.setdefault(name, set()).add(key)
        for name in re.findall(r'"secretName": "([\w-]+)"', text):
            used.setdefault(name, set())
    assert used, "no Secret referenced at all"
    for name, keys in used.items():
        assert name in made, f"deploy/README.md does not make the Secret {name}"
        assert keys <= made[name], f"{name}: the README makes {sorted(made[name])}, the manifests use {sorted(keys)}"
    identity_file = container_env(resource("Deployment", "actions"), "actions")["HOTLINE_IDENTITY_KEY_FILE"]
    key_files = {
        "hotline-recording-key": container(resource("Deployment", "gateway"), "keys")["command"],
        "hotline-identity-key": [identity_file],
    }
    for name, uses in key_files.items():
        assert any(Path(arg).name in made[name] for arg in uses), f"{name}: the file the pod reads is not the one made"


# --- the gateway ---
def test_gateway_probes_and_drain_match_the_gateway() -> None:
    gateway = resource("Deployment", "gateway")
    app = container(gateway, "gateway")
    source = (PROJECT_ROOT / "voice_gateway" / "app.py").read_text(encoding="utf-8")
    port = int(container_env(gateway, "gateway")["HOTLINE_GATEWAY_PORT"])
    ports = {p["name"]: p["containerPort"] for p in app["ports"]}
    assert ports["http"] == port
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")):
        assert app[probe]["httpGet"]["path"] == path and app[probe]["httpGet"]["port"] == "http"
        assert f'path == "{path}"' in source, f"the gateway serves no {path}"
    sleep = app["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    drain_s = float(container_env(gateway, "gateway")["HOTLINE_DRAIN_S"])
    grace = gateway["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= float(sleep[1]) + drain_s + GOODBYE_S + 10, "the kubelet would kill calls still draining"
    assert grace <= float(sleep[1]) + drain_s + GOODBYE_S + 120


def test_gateway_manifest_sets_only_what_the_gateway_reads_and_it_parses() -> None:
    gateway = resource("Deployment", "gateway")
    env = container_env(gateway, "gateway")
    settings, read = gateway_reads(env)
    assert set(env) - read - HELPERS == set(), "set in deploy/k8s/gateway.yaml but read by nobody"
    config = settings.gateway
    assert (config.host, config.console_host) == ("0.0.0.0", "0.0.0.0")
    assert config.sip_host == env["POD_IP"] and config.webrtc_addresses == env["POD_IP"]
    assert gateway["spec"]["template"]["spec"]["hostNetwork"] is True
    assert config.gateway_id and settings.redis_sentinels
    ports = {p["name"]: (p["containerPort"], p["protocol"]) for p in container(gateway, "gateway")["ports"]}
    assert ports == {
        "http": (config.port, "TCP"),
        "console": (config.console_port, "TCP"),
        "sip": (config.sip_port, "UDP"),
    }
    assert f"/etc/hotline/keys/{Path(config.recording_key_file).name}" == config.recording_key_file
    service = resource("Service", "gateway")["spec"]["ports"]
    assert {(p["port"], p["targetPort"]) for p in service} == {(config.port, "http"), (config.console_port, "console")}


def test_hpa_scales_the_gateways_on_their_active_calls_gauge() -> None:
    hpa = resource("HorizontalPodAutoscaler", "gateway")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"}
    (metric,) = hpa["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == metrics.ACTIVE_CALLS._name
    target = float(metric["pods"]["target"]["averageValue"])
    max_calls = int(container_env(resource("Deployment", "gateway"), "gateway")["HOTLINE_MAX_CALLS"])
    assert target == float(readme_cells("HPA target (active calls per pod)")[0])
    assert 0 < target < max_calls, "the pods would be full before the HPA adds one"
    destinations = dispatcher_entries(resource("ConfigMap", "kamailio-dispatcher")["data"]["dispatcher.list"])
    assert hpa["maxReplicas"] <= len(destinations), "more gateways (one per node) than Kamailio knows"


def test_gateway_resources_follow_the_measured_figures_in_the_readme() -> None:
    gateway = resource("Deployment", "gateway")
    resources = container(gateway, "gateway")["resources"]
    calls = [int(c) for c in readme_cells("calls per pod (`HOTLINE_MAX_CALLS`)")]
    per_call_cells = readme_cells("gateway CPU per call")
    cpu = readme_cells("CPU request")
    memory = [c.split(" / ") for c in readme_cells("memory request / limit")]
    peaks = readme_cells("gateway peak memory")
    for column in range(2):  # Whisper base (the manifest), Vosk
        report = report_of(per_call_cells[column])
        measured = report["processes"]["gateway"]["cpu_cores"] / report["summary"]["concurrent"]
        assert float(per_call_cells[column].split()[0]) == pytest.approx(measured, abs=1e-4)  # 4 decimals
        needed = calls[column] * measured * 1000
        assert needed - 1 <= millicores(cpu[column]) <= needed * 1.1
        peak = gateway_peak_mib(report_of(peaks[column]))
        assert float(peaks[column].split()[0].replace(",", "")) == pytest.approx(peak)
        request, limit = (mebibytes(m) for m in memory[column])
        assert peak <= request <= math.ceil(peak) + 1 and limit == 2 * request
    assert int(container_env(gateway, "gateway")["HOTLINE_MAX_CALLS"]) == calls[0]
    assert resources["requests"] == {"cpu": cpu[0], "memory": memory[0][0]}
    assert resources["limits"] == {"memory": memory[0][1]}  # no CPU limit: a throttled decode is a caller waiting


def test_every_report_the_readme_cites_is_committed() -> None:
    prose = re.sub(r"```.*?```", "", README, flags=re.DOTALL)  # the code blocks name reports still to be made
    cited = set(re.findall(r"docs/bench/[\w.-]+\.(?:json|txt)", prose))
    cited |= {f"docs/bench/{name}" for name in re.findall(r"`((?:bench|soak)-\d{8}-\d{6}-[\w-]+\.json)`", prose)}
    assert len(cited) >= 5
    assert [c for c in sorted(cited) if not (PROJECT_ROOT / c).is_file()] == []


# --- the dialogue side and Redis ---
def test_only_rasa_reaches_the_action_server() -> None:
    policy = resource("NetworkPolicy", "actions-from-rasa")["spec"]
    actions, rasa = resource("Deployment", "actions"), resource("Deployment", "rasa")
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["podSelector"]["matchLabels"].items() <= actions["spec"]["template"]["metadata"]["labels"].items()
    (rule,) = policy["ingress"]
    (source,) = rule["from"]
    assert set(source) == {"podSelector"}
    assert source["podSelector"]["matchLabels"].items() <= rasa["spec"]["template"]["metadata"]["labels"].items()
    assert [p["port"] for p in rule["ports"]] == [container(actions, "actions")["ports"][0]["containerPort"]]
    url = container_env(rasa, "rasa")["ACTION_SERVER_URL"]
    assert url == f"http://actions.hotline.svc.cluster.local:{rule['ports'][0]['port']}/webhook"


def test_sentinels_watch_the_primary_the_clients_ask_for_fast_enough() -> None:
    scripts = resource("ConfigMap", "redis-scripts")["data"]
    for name, script in scripts.items():
        done = subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True)
        assert done.returncode == 0, f"{name}: {done.stderr}"
    sentinel = scripts["sentinel.sh"]
    (master,) = set(re.findall(r"sentinel monitor (\S+) ", sentinel))
    asked = set(re.findall(r"get-master-addr-by-name (\S+)", scripts["redis.sh"] + sentinel))
    down_after_ms = int(re.search(r"down-after-milliseconds \S+ (\d+)", sentinel).group(1))
    assert down_after_ms / 1000 + SENTINEL_FAILOVER_S < FAILOVER_WAIT_S, "a failover outlasts the clients' retries"
    redis = resource("StatefulSet", "redis")["spec"]
    headless = resource("Service", redis["serviceName"])["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    pods = [f"redis-{i}.{redis['serviceName']}.hotline.svc.cluster.local" for i in range(redis["replicas"])]
    assert all(f"{redis['serviceName']}.hotline.svc.cluster.local" in s for s in scripts.values())
    clients = {
        "gateway": (container_env(resource("Deployment", "gateway"), "gateway"), "HOTLINE_REDIS_"),
        "rasa": (container_env(resource("Deployment", "rasa"), "rasa"), "REDIS_"),
        "actions": (container_env(resource("Deployment", "actions"), "actions"), "REDIS_"),
    }
    for who, (env, prefix) in clients.items():
        sentinels = Sentinels.parse(env[f"{prefix}SENTINELS"], env[f"{prefix}SENTINEL_MASTER"])
        assert sentinels.addresses == tuple((pod, 26379) for pod in pods), who
        assert sentinels.master == master == DEFAULT_MASTER and asked == {master}, who


# --- Kamailio ---
def dispatcher_entries(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def defines(args: list[str]) -> dict[str, str]:
    """Kamailio's -A NAME=VALUE defines."""
    pairs = [args[i + 1] for i, arg in enumerate(args) if arg == "-A"]
    return dict(pair.split("=", 1) for pair in pairs)


def test_kamailio_in_kubernetes_dispatches_to_the_gateways_sip_port() -> None:
    kamailio = resource("Deployment", "kamailio")
    cfg = container(kamailio, "kamailio")
    found = defines(cfg["args"])
    assert found["LISTEN"] == "udp:$(POD_IP):5060" and "POD_IP" in {e["name"] for e in cfg["env"]}
    mount = next(m["mountPath"] for m in cfg["volumeMounts"] if m["name"] == "dispatcher")
    assert found["DISPATCHER_LIST"] == f'"{mount}/dispatcher.list"'
    entries = dispatcher_entries(resource("ConfigMap", "kamailio-dispatcher")["data"]["dispatcher.list"])
    sip_port = int(container_env(resource("Deployment", "gateway"), "gateway")["HOTLINE_SIP_PORT"])
    hosts = [re.match(r"1 sip:([\d.]+):(\d+) ", line).group(1) for line in entries]
    assert entries == dispatcher_entries(sip_proxy.dispatcher_list([(host, sip_port) for host in hosts]))
    service = resource("Service", "kamailio")["spec"]["ports"]
    assert service == [{"name": "sip", "port": 5060, "targetPort": "sip", "protocol": "UDP"}]


# --- docker-compose ---
def stack_gateways(tmp_path: Path) -> list[dict[str, str]]:
    """The environments `hotline up --gateways 2 --sip-proxy` gives its gateways, with the default settings."""
    with mock.patch.dict(os.environ, {"HOME": os.environ.get("HOME", "/root")}, clear=True):
        hotline = stack.Stack(Settings(var_dir=tmp_path), gateway_port=8080, gateways=2, sip_proxy=True)
        processes = hotline.gateway_processes()
    return [{k: v for k, v in (p.env or {}).items() if k != "HOME"} for p in processes]


def test_compose_gateways_are_the_ones_hotline_up_starts(tmp_path: Path) -> None:
    ours = [compose_env(name) for name in COMPOSE_GATEWAYS]
    for theirs, env, name in zip(stack_gateways(tmp_path), ours, COMPOSE_GATEWAYS, strict=True):
        assert set(theirs) <= set(env), f"{name} lacks {sorted(set(theirs) - set(env))}"
        for port in ("HOTLINE_GATEWAY_PORT", "HOTLINE_CONSOLE_PORT", "HOTLINE_SIP_PORT"):
            assert env[port] == theirs[port], f"{name} {port}"
        settings, read = gateway_reads(env)
        assert set(env) - read == set(), f"{name}: set but read by nobody"
        service = COMPOSE["services"][name]
        assert service["networks"]["default"]["ipv4_address"] == settings.gateway.sip_host
        health = " ".join(service["healthcheck"]["test"])
        assert f"127.0.0.1:{settings.gateway.port}/healthz" in health
        assert seconds(service["stop_grace_period"]) >= settings.gateway.drain_s + GOODBYE_S + 10
        assert "keys:/keys:ro" in service["volumes"]
    shared = ("REDIS_URL", "RASA_URL", "RASA_TOKEN", "HOTLINE_GATEWAY_TOKEN", "HOTLINE_CONSOLE_DB_URL")
    shared += ("HOTLINE_CONSOLE_SECRET", "HOTLINE_RECORDING_KEY_FILE", "HOTLINE_DRAIN_S")
    for variable in shared:
        assert len({env[variable] for env in ours}) == 1, f"{variable} differs between the gateways"
    assert len({env["HOTLINE_GATEWAY_ID"] for env in ours}) == len(ours)
    assert ours[0]["HOTLINE_DRAIN_S"] == container_env(resource("Deployment", "gateway"), "gateway")["HOTLINE_DRAIN_S"]


def test_compose_kamailio_dispatches_over_the_compose_gateways() -> None:
    service = COMPOSE["services"]["kamailio"]
    found = defines(service["command"])
    address = service["networks"]["default"]["ipv4_address"]
    assert found["LISTEN"] == f"udp:{address}:{Settings().gateway.sip_port}"  # the public SIP port, as --sip-proxy
    assert found["PING_S"] == str(inspect.signature(stack.kamailio_process).parameters["ping_s"].default)
    (mount,) = [v for v in service["volumes"] if v.startswith("./kamailio/dispatcher.compose.list:")]
    assert found["DISPATCHER_LIST"] == f'"{mount.split(":")[1]}"'
    gateways = [compose_env(name) for name in COMPOSE_GATEWAYS]
    expected = sip_proxy.dispatcher_list([(env["HOTLINE_SIP_HOST"], int(env["HOTLINE_SIP_PORT"])) for env in gateways])
    listed = (DEPLOY / "kamailio" / "dispatcher.compose.list").read_text(encoding="ascii")
    assert dispatcher_entries(listed) == dispatcher_entries(expected)
    allowed = SipSettings.from_settings(gateway_reads(gateways[0])[0].gateway)
    assert allowed.admits(address), "the gateways refuse Kamailio's INVITEs"
    health = service["healthcheck"]["test"]
    assert health[-1] == f"sip:{address}:5060"


def test_haproxy_spreads_callers_over_the_compose_gateways_by_readiness() -> None:
    text = (DEPLOY / "haproxy" / "hotline.cfg").read_text(encoding="utf-8")
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    assert not [line for line in lines if "shutdown-sessions" in line], "a draining gateway's calls would be cut"
    backends: dict[str, list[str]] = {}
    current = ""
    for line in lines:
        if line.startswith(("backend ", "frontend ", "defaults", "global", "resolvers ")):
            current = line.split()[1] if line.startswith("backend ") else ""
        elif current:
            backends.setdefault(current, []).append(line)
    servers = {
        backend: {tuple(line.split()[1:3]) for line in body if line.startswith("server ")}
        for backend, body in backends.items()
    }
    envs = {name: compose_env(name) for name in COMPOSE_GATEWAYS}
    assert servers["gateways"] == {(n, f"{n}:{e['HOTLINE_GATEWAY_PORT']}") for n, e in envs.items()}
    assert servers["consoles"] == {(n, f"{n}:{e['HOTLINE_CONSOLE_PORT']}") for n, e in envs.items()}
    assert "http-check send meth GET uri /readyz" in backends["gateways"]
    assert "balance leastconn" in backends["gateways"]
    published = COMPOSE["services"]["haproxy"]["ports"]
    assert {p.split(":")[-1] for p in published} == {"8080", "8081"}
