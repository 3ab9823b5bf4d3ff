"""The Helm chart, rendered by the real Helm engine and validated against real schemas.

No helm binary exists here, but `helm-python-sdk` binds Helm v4's own Go SDK (libhelm_c):
templates are rendered by Helm's template engine (Go text/template + Sprig + include /
required / tpl...) and values checked with Helm's values.schema.json validation. What this does
NOT cover: server-side things (``lookup`` returns nothing, ``.Capabilities`` are Helm's
defaults, no admission webhooks / defaulting, no CRD-presence check at install time).

Checks:
  * values.yaml and every example override validate against values.schema.json (jsonschema
    and Helm's own validation); invalid overrides are rejected;
  * every template renders for each value file;
  * core manifests validate strictly against Kubernetes' OpenAPI schemas (kubernetes-validate),
    RayCluster / RayCronJob (and the RayJob spec inside it) against KubeRay's CRD
    openAPIV3Schema (tests/deploy/data, Apache-2.0, see KUBERAY-CRDS-README.md), and each
    Ray pod template strictly as a core Pod;
  * the pools ConfigMap parses with talkfarm's own GraphSettings and pins pools to groups.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

helm = pytest.importorskip("helm_python", reason="helm-python-sdk (Helm's Go SDK bindings) not installed")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "talkfarm"
EXAMPLES = sorted((REPO / "deploy" / "helm" / "examples").glob("*.yaml"))
DATA = Path(__file__).parent / "data"
K8S_VERSIONS = ("1.30.0", "1.37.0")      # kubeVersion >= 1.27 in Chart.yaml; CronJob timeZone is GA since 1.27

VALUE_FILES = {"defaults": {}, **{path.stem: yaml.safe_load(path.read_text()) or {} for path in EXAMPLES}}


@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(str(CHART)) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def schema():
    return json.loads((CHART / "values.schema.json").read_text())


@pytest.fixture(scope="module")
def crd_schemas():
    schemas = {}
    for path in DATA.glob("ray.io_*.yaml"):
        crd = yaml.safe_load(path.read_text())
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        schemas[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    assert set(schemas) == {"RayCluster", "RayJob", "RayCronJob"}
    return schemas


def _render(chart, values: dict, namespace: str = "render") -> list[dict]:
    manifests = chart.render(values, name="nightly", namespace=namespace)
    docs = [doc for text in manifests.values() for doc in yaml.safe_load_all(text) if doc]
    assert docs, "nothing rendered"
    return docs


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def test_chart_lints(chart):
    report = helm.lint(str(CHART), strict=False)
    assert report["errors"] == [], report
    assert not [m for m in report["messages"] if m["severity"] >= 3], report["messages"]   # no errors


@pytest.mark.parametrize("name", sorted(VALUE_FILES))
def test_values_match_schema(chart, schema, name):
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(_merge(defaults, VALUE_FILES[name]), schema)
    chart.validate_schema(VALUE_FILES[name])          # Helm's own validation (coalesced values)


@pytest.mark.parametrize("override", [
    {"redis": {"enabled": False}},                          # external Redis without a URL
    {"nightly": {"kind": "Deployment"}},
    {"ray": {"gpuWorkers": {"gpusPerWorker": 0}}},
    {"pools": {"decode": {"size": 2, "cpus": 1, "gpus": 0, "maxInFlight": 2}}},
    {"nightly": {"schedule": "every night"}},
    {"metrics": {"serviceMonitor": {"interval": 30}}},
    {"ray": {"head": {"unknownField": 1}}},
])
def test_bad_values_are_rejected(chart, schema, override):
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_merge(defaults, override), schema)
    with pytest.raises(Exception):
        chart.validate_schema(override)


@pytest.mark.parametrize("name", sorted(VALUE_FILES))
def test_rendered_manifests_validate(chart, crd_schemas, name):
    docs = _render(chart, VALUE_FILES[name])
    kinds = [doc["kind"] for doc in docs]
    assert kinds.count("RayCluster") == 1
    for doc in docs:
        if doc["apiVersion"] == "ray.io/v1":
            jsonschema.Draft7Validator(crd_schemas[doc["kind"]]).validate(doc)
            if doc["kind"] == "RayCronJob":     # its job template is a RayJob spec
                jsonschema.Draft7Validator(crd_schemas["RayJob"]["properties"]["spec"]).validate(
                    doc["spec"]["jobTemplate"])
            for template in _pod_templates(doc):
                pod = {"apiVersion": "v1", "kind": "Pod", "metadata": template.get("metadata", {}),
                       "spec": template["spec"]}
                for version in K8S_VERSIONS:
                    kubernetes_validate.validate(pod, version, strict=True)
        elif doc["apiVersion"] == "monitoring.coreos.com/v1":
            _check_service_monitor(doc, docs)
        else:
            for version in K8S_VERSIONS:
                kubernetes_validate.validate(doc, version, strict=True)


def _pod_templates(doc: dict) -> list[dict]:
    if doc["kind"] == "RayCluster":
        return [doc["spec"]["headGroupSpec"]["template"], *(g["template"] for g in doc["spec"]["workerGroupSpecs"])]
    return []


def _check_service_monitor(monitor: dict, docs: list[dict]) -> None:
    """No ServiceMonitor CRD schema ships here: check it selects the metrics Service and its port."""
    assert monitor["kind"] == "ServiceMonitor"
    services = [d for d in docs if d["kind"] == "Service"
                and monitor["spec"]["selector"]["matchLabels"].items() <= d["metadata"]["labels"].items()]
    assert len(services) == 1, "the ServiceMonitor must select exactly the metrics Service"
    ports = {port["name"] for port in services[0]["spec"]["ports"]}
    assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} <= ports


def test_cluster_layout_and_pinning(chart):
    docs = _render(chart, VALUE_FILES.get("production-h100", {}))
    by_kind = {doc["kind"]: doc for doc in docs}
    cluster = by_kind["RayCluster"]["spec"]
    cpu, gpu = cluster["workerGroupSpecs"]
    assert (cpu["groupName"], gpu["groupName"]) == ("cpu", "gpu")
    gpu_container = gpu["template"]["spec"]["containers"][0]
    assert gpu_container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert gpu["rayStartParams"]["num-gpus"] == "2"
    assert json.loads(gpu["rayStartParams"]["resources"]) == {"talkfarm_gpu_node": 1000}
    assert json.loads(cpu["rayStartParams"]["resources"]) == {"talkfarm_cpu_node": 1000}
    assert cpu["rayStartParams"]["num-gpus"] == "0"
    assert gpu["template"]["spec"]["nodeSelector"]["nvidia.com/gpu.present"] == "true"
    assert any(t["key"] == "nvidia.com/gpu" for t in gpu["template"]["spec"]["tolerations"])
    # Every Ray container gets the S3 secret, token auth and the shared metrics folder; every pod the exporter.
    for template in _pod_templates(by_kind["RayCluster"]):
        ray_container, exporter = template["spec"]["containers"]
        env = {e["name"]: e for e in ray_container["env"]}
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "talkfarm-ray-token", "key": "auth_token"}
        assert ray_container["envFrom"] == [{"secretRef": {"name": "talkfarm-s3"}}]
        assert env["PROMETHEUS_MULTIPROC_DIR"]["value"] == "/tmp/talkfarm-metrics"
        assert exporter["name"] == "metrics-exporter" and exporter["ports"][0]["name"] == "metrics"

    # The pools file is valid for talkfarm itself; CPU stages pin to CPU workers, GPU stages to GPU workers.
    from pipeline.settings import GraphSettings

    pools = yaml.safe_load(by_kind["ConfigMap"]["data"]["pools.yaml"])
    graph = GraphSettings.model_validate(pools).config()
    for stage in ("alignment", "audio", "encode"):
        assert graph.pools[stage].resources.custom == {"talkfarm_cpu_node": 1.0}
        assert graph.pools[stage].resources.gpus == 0
    for stage in ("motion", "decode"):
        assert graph.pools[stage].resources.custom == {"talkfarm_gpu_node": 1.0}
        assert graph.pools[stage].resources.gpus > 0 and graph.pools[stage].resources.accelerator_type == "H100"
    assert graph.pools["decode"].size == 8 and graph.chunk_frames == 100


def test_nightly_cronjob_submits_through_jobs_api(chart):
    docs = _render(chart, VALUE_FILES.get("production-h100", {}), namespace="prod")
    cron = next(doc for doc in docs if doc["kind"] == "CronJob")
    assert cron["spec"]["schedule"] == "30 0 * * *" and cron["spec"]["timeZone"] == "Europe/Paris"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[:3] == ["talkfarm", "submit", "s3://renders-prod/requests/{date}.parquet"]
    args = dict(zip(command[3::2], command[4::2]))
    assert args["--address"] == "http://nightly-talkfarm-head-svc.prod.svc:8265"
    assert args["--priority"] == "10" and args["--graph"] == "/etc/talkfarm/pools.yaml"
    assert args["--redis"] == "redis://nightly-talkfarm-redis.prod.svc:6379/0"
    # The submitter parses these arguments.
    from pipeline.cli import build_parser

    parsed = build_parser().parse_args(command[1:])
    assert parsed.priority == 10 and parsed.out == "s3://renders-prod/out/{date}"
    assert parsed.allow == ["s3://renders-prod/portraits", "s3://renders-prod/voices"] and not parsed.allow_any
    env = {e["name"] for e in container["env"]}
    assert {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "AWS_REGION"} <= env


def test_ray_cron_job_carries_the_access_policy(chart):
    docs = _render(chart, VALUE_FILES["raycronjob"])
    entrypoint = next(doc for doc in docs if doc["kind"] == "RayCronJob")["spec"]["jobTemplate"]["entrypoint"]
    assert entrypoint.startswith("talkfarm batch ")
    assert '--allow "s3://talkfarm/portraits/$(date -u +%F)"' in entrypoint and "--allow-any" not in entrypoint
    docs = _render(chart, _merge(VALUE_FILES["raycronjob"], {"nightly": {"allowAny": True}}))
    assert next(doc for doc in docs if doc["kind"] == "RayCronJob")["spec"]["jobTemplate"]["entrypoint"].endswith(
        " --allow-any")


def test_external_redis_and_no_service_monitor(chart):
    docs = _render(chart, VALUE_FILES["external-redis-minio"])
    kinds = {doc["kind"] for doc in docs}
    assert "ServiceMonitor" not in kinds and "Deployment" not in kinds
    cron = next(doc for doc in docs if doc["kind"] == "CronJob")
    command = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--redis") + 1] == "redis://redis.data.svc:6379/2"
    with pytest.raises(Exception, match="externalUrl"):
        chart.render({"redis": {"enabled": False, "externalUrl": ""}}, name="x", namespace="y")


def test_pools_file_sets_the_driver_in_flight_limit(chart):
    """Left unset, the limit follows the pools (every slot of the request stages and the decoders);
    set in the values, the pools file carries it to the driver."""
    from pipeline.settings import GraphSettings

    def graph(values: dict):
        config_map = next(doc for doc in _render(chart, values) if doc["kind"] == "ConfigMap")
        return GraphSettings.model_validate(yaml.safe_load(config_map["data"]["pools.yaml"])).config()

    production = graph(VALUE_FILES["production-h100"])
    assert production.max_requests_in_flight is None
    # alignment 4 x 2 + audio 4 x 2 + motion 2 x 4 + decode 8 x 4
    assert production.requests_in_flight() == 8 + 8 + 8 + 32
    assert graph(_merge(VALUE_FILES["production-h100"], {"pools": {"maxRequestsInFlight": 200}})) \
        .requests_in_flight() == 200


def test_service_monitor_scrapes_what_the_exporter_serves(chart, shared_assets, tmp_path):
    """Follow the ServiceMonitor's endpoint to the Service port, its target port and the Ray pod
    container that declares it, run that container's command as rendered (on 127.0.0.1 here)
    over a metrics folder a real stage call wrote into, and scrape the port."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    docs = _render(chart, {"metrics": {"port": port}})
    monitor = next(doc for doc in docs if doc["kind"] == "ServiceMonitor")
    service = next(d for d in docs if d["kind"] == "Service"
                   and monitor["spec"]["selector"]["matchLabels"].items() <= d["metadata"]["labels"].items())
    [endpoint] = monitor["spec"]["endpoints"]
    target = next(p for p in service["spec"]["ports"] if p["name"] == endpoint["port"])["targetPort"]
    head = next(doc for doc in docs if doc["kind"] == "RayCluster")["spec"]["headGroupSpec"]["template"]
    exporter = next(c for c in head["spec"]["containers"] if any(p["name"] == target for p in c.get("ports", [])))
    container_port = next(p["containerPort"] for p in exporter["ports"] if p["name"] == target)
    assert container_port == port

    folder = tmp_path / "metrics"
    env = {**os.environ, **{e["name"]: e["value"] for e in exporter["env"]}}
    assert env["PROMETHEUS_MULTIPROC_DIR"] == next(
        m["mountPath"] for m in exporter["volumeMounts"] if m["name"] == "talkfarm-metrics")
    env["PROMETHEUS_MULTIPROC_DIR"] = str(folder)     # the pod's shared emptyDir, here a temp folder
    folder.mkdir()
    stage_call = ("import sys; from pipeline.executors import StageWorker; from core.schemas import RenderRequest; "
                  "from core.task import RenderTask; from workers.alignment.stage import AlignmentStage; "
                  "[task] = StageWorker(AlignmentStage).run([RenderTask(RenderRequest(id='r', image=sys.argv[1], "
                  "audio=sys.argv[1], output=sys.argv[2]))]); assert task.failure is not None")
    subprocess.run([sys.executable, "-c", stage_call, str(tmp_path / "missing.jpg"), str(tmp_path / "r.mp4")],
                   env=env, cwd=REPO, check=True, timeout=120)
    command = [sys.executable if part == "python" else part for part in exporter["command"]]
    command[command.index("--addr") + 1] = "127.0.0.1"
    server = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{endpoint['path']}", timeout=5) as response:
                    text = response.read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "the exporter never served"
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(10)
    assert 'talkfarm_stage_duration_seconds_count{stage="alignment"} 1.0' in text
