"""`just validate-deploy`: deploy/compose.yaml and the Kubernetes overlays are valid, and say
what the services and the image expect. No engine or cluster runs here, so:

- compose.yaml validates against the Compose Specification's schema (check-jsonschema's
  bundled copy), and each overlay, rendered by `kubectl kustomize`, against the Kubernetes
  schemas of every version in support, strictly (kubernetes-validate: unknown fields fail);
- the rendered objects hold the rules deploy/ promises (non-root, read-only root, no
  capabilities, probes on the right ports, the drain arithmetic, the headless Service, the
  NetworkPolicy, every Secret a pod reads), and every setting they give a service is one the
  services read;
- deploy/Containerfile.source builds the same image as deploy/Containerfile (the lines after
  their last FROM agree), whose user and ports the manifests use.

The dev overlay generates its Secrets from files `just deploy-secrets` writes; it is rendered
from a copy of deploy/k8s with throwaway ones, so nothing in the checkout is read or written.
"""

import pathlib
import re
import shutil
import subprocess
import sys
from typing import Any

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
TOOLS = pathlib.Path(sys.executable).parent
# The three minor versions Kubernetes supports upstream (kubernetes-validate 1.37.0 bundles the
# schemas of 1.25 to 1.37). Move this along when requirements-dev.txt moves the package.
KUBERNETES_VERSIONS = ["1.35.0", "1.36.0", "1.37.0"]
OVERLAYS = ["dev", "production"]
SERVICES = {"auth-service": 50051, "user-service": 8080}
# The Secrets the base reads, as deploy/k8s/base/kustomization.yaml lists them, with their keys.
SECRETS = {
    "grimos-service-token": {"service-token"},
    "grimos-signing-key": {"signing-key.pem"},
    "auth-database": {"AUTH_DATABASE_URL"},
    "user-database": {"USER_DATABASE_URL"},
}


def run(argv: list[str], cwd: pathlib.Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="session")
def throwaway_secrets(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """What `just deploy-secrets` writes, in a scratch folder."""
    folder = tmp_path_factory.mktemp("secrets") / "secrets"
    done = run([str(DEPLOY / "secrets.sh"), str(folder)])
    assert done.returncode == 0, done.stderr
    return folder


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory, throwaway_secrets: pathlib.Path) -> dict[str, pathlib.Path]:
    """Each overlay rendered by `kubectl kustomize` into a file (also kept in target/deploy/)."""
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is missing: validate-deploy renders the overlays with `kubectl kustomize`")
    copy = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(DEPLOY / "k8s", copy, ignore=shutil.ignore_patterns("secrets"))
    shutil.copytree(throwaway_secrets, copy / "overlays" / "dev" / "secrets")
    out = ROOT / "target" / "deploy"
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for overlay in OVERLAYS:
        done = run(["kubectl", "kustomize", str(copy / "overlays" / overlay)])
        assert done.returncode == 0, f"kubectl kustomize {overlay}:\n{done.stderr}"
        files[overlay] = out / f"{overlay}.yaml"
        files[overlay].write_text(done.stdout)
    return files


def objects(path: pathlib.Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The rendered objects by (kind, name)."""
    return {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(path.read_text()) if o}


def pods(objs: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each Deployment's pod spec by the Deployment's name."""
    return {name: o["spec"]["template"]["spec"] for (kind, name), o in objs.items() if kind == "Deployment"}


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# --- schemas -----------------------------------------------------------------------------


def test_compose_file_follows_the_compose_specification() -> None:
    done = run([str(TOOLS / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(DEPLOY / "compose.yaml")])
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_strictly_against_kubernetes(rendered: dict[str, pathlib.Path], overlay: str, version: str) -> None:
    done = run([str(TOOLS / "kubernetes-validate"), "--strict", "--quiet", "-k", version, str(rendered[overlay])])
    assert done.returncode == 0, done.stdout + done.stderr


# --- what the manifests promise ----------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_non_root_on_a_read_only_root_without_capabilities(rendered: dict[str, pathlib.Path], overlay: str) -> None:
    for name, pod in pods(objects(rendered[overlay])).items():
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] != 0, name
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            for kind in ("requests", "limits"):
                assert set(container["resources"][kind]) == {"cpu", "memory"}, f"{name} {kind}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_run_the_images_user_and_entrypoints_with_grpc_probes_on_their_port(rendered: dict[str, pathlib.Path], overlay: str) -> None:
    image = containerfile_runtime(DEPLOY / "Containerfile")
    uid, gid = (int(part) for part in image["USER"].split(":"))
    exposed = {int(port) for port in image["EXPOSE"].split()}
    specs = pods(objects(rendered[overlay]))
    for name, port in SERVICES.items():
        pod = specs[name]
        assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (uid, gid), name
        (container,) = pod["containers"]
        assert container["command"] == [f"/usr/local/bin/{name}"], name
        ports = [p["containerPort"] for p in container["ports"]]
        assert ports[0] == port and set(ports) <= exposed, name
        assert container["startupProbe"]["grpc"] == {"port": port}, name
        assert container["readinessProbe"]["grpc"] == {"port": port}, name
    assert specs["auth-service"]["containers"][0]["livenessProbe"]["grpc"] == {"port": 50051}
    # user-service's liveness ignores its dependencies (see user-service.yaml).
    assert specs["user-service"]["containers"][0]["livenessProbe"]["httpGet"]["path"] == "/healthz"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_scrapes_each_service_on_a_declared_port_that_serves_metrics(rendered: dict[str, pathlib.Path], overlay: str) -> None:
    # No CRDs: the prometheus.io/* pod annotations Prometheus' kubernetes_sd relabelling reads.
    # user-service serves /metrics on its one port; auth-service on AUTH_METRICS_LISTEN_ADDR's.
    objs = objects(rendered[overlay])
    for name, expected in {"user-service": "8080", "auth-service": "9090"}.items():
        template = objs[("Deployment", name)]["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/path"] == "/metrics", name
        assert annotations["prometheus.io/port"] == expected, name
        (container,) = template["spec"]["containers"]
        assert int(expected) in {p["containerPort"] for p in container["ports"]}, name
    auth = objs[("Deployment", "auth-service")]["spec"]["template"]["spec"]["containers"][0]
    assert env_of(auth)["AUTH_METRICS_LISTEN_ADDR"].endswith(":9090")


def limit_seconds(setting: str, container: dict[str, Any]) -> int:
    """A GRIMOS_* limit in whole seconds: the container's value, else the code's default."""
    value = env_of(container).get(setting)
    if value is None:
        source = (ROOT / "rust" / "server" / "src" / "limits.rs").read_text()
        found = re.search(rf'env = "{setting}", default_value = "([^"]+)"', source)
        assert found, f"{setting} has no default in limits.rs"
        value = found.group(1)
    assert re.fullmatch(r"\d+s", value), f"{setting}={value} is not a whole number of seconds"
    return int(value[:-1])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_grace_period_covers_the_pre_stop_sleep_the_drain_and_calls_in_flight(rendered: dict[str, pathlib.Path], overlay: str) -> None:
    specs = pods(objects(rendered[overlay]))
    for name in SERVICES:
        pod = specs[name]
        container = pod["containers"][0]
        sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert sleep >= 5, name
        drain = limit_seconds("GRIMOS_DRAIN_GRACE", container)
        in_flight = limit_seconds("GRIMOS_REQUEST_TIMEOUT", container)
        assert pod["terminationGracePeriodSeconds"] >= sleep + drain + in_flight + 5, name


def test_production_runs_three_auth_replicas_headless_and_two_to_ten_user_replicas(rendered: dict[str, pathlib.Path]) -> None:
    objs = objects(rendered["production"])
    assert objs[("Deployment", "auth-service")]["spec"]["replicas"] == 3
    assert objs[("Deployment", "user-service")]["spec"]["replicas"] == 2
    auth = objs[("Service", "auth-service")]["spec"]
    assert auth["clusterIP"] == "None" and auth["ports"][0]["port"] == 50051
    assert objs[("Service", "user-service")]["spec"]["type"] == "ClusterIP"
    hpa = objs[("HorizontalPodAutoscaler", "user-service")]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "user-service"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    for name in SERVICES:
        pdb = objs[("PodDisruptionBudget", name)]["spec"]
        assert pdb["selector"] == objs[("Deployment", name)]["spec"]["selector"] and pdb["maxUnavailable"] == 1
    # user-service follows every ready auth-service pod through the headless name.
    user = objs[("Deployment", "user-service")]["spec"]["template"]["spec"]["containers"][0]
    assert env_of(user)["AUTH_SERVICE_ADDRESS"] == "dns:///auth-service:50051"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_user_service_reaches_auth_service(rendered: dict[str, pathlib.Path], overlay: str) -> None:
    policy = objects(rendered[overlay])[("NetworkPolicy", "auth-service")]["spec"]
    assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "auth-service"}}
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "user-service"}}}],
            "ports": [{"protocol": "TCP", "port": 50051}],
        },
        # The metrics port, for Prometheus: nothing else.
        {"from": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": 9090}]},
    ]
    auth = pods(objects(rendered[overlay]))["auth-service"]["containers"][0]
    assert {p["name"]: p["containerPort"] for p in auth["ports"]} == {"grpc": 50051, "metrics": 9090}
    assert env_of(auth)["AUTH_METRICS_LISTEN_ADDR"] == "0.0.0.0:9090"


def secret_references(pod: dict[str, Any]) -> set[tuple[str, str]]:
    """Every (Secret, key) a pod reads: env entries and the items of its secret volumes."""
    refs = set()
    for container in pod["containers"]:
        for value in env_of(container).values():
            if isinstance(value, dict) and "secretKeyRef" in value:
                refs.add((value["secretKeyRef"]["name"], value["secretKeyRef"]["key"]))
    for volume in pod.get("volumes", []):
        sources = [s["secret"] for s in volume.get("projected", {}).get("sources", []) if "secret" in s]
        if "secret" in volume:
            sources.append({"name": volume["secret"]["secretName"], "items": volume["secret"].get("items")})
        for source in sources:
            for item in source.get("items") or [{"key": None}]:
                refs.add((source["name"], item["key"]))
    return refs


def test_production_reads_exactly_the_secrets_the_base_lists(rendered: dict[str, pathlib.Path]) -> None:
    refs = set().union(*(secret_references(pod) for pod in pods(objects(rendered["production"])).values()))
    assert refs == {(name, key) for name, keys in SECRETS.items() for key in keys}


def test_dev_generates_every_secret_its_pods_read(rendered: dict[str, pathlib.Path]) -> None:
    objs = objects(rendered["dev"])
    for name, pod in pods(objs).items():
        for secret, key in secret_references(pod):
            assert ("Secret", secret) in objs, f"{name} reads Secret {secret}, which dev does not generate"
            assert key is None or key in objs[("Secret", secret)]["data"], f"{name} reads {secret}/{key}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_file_setting_names_a_file_a_volume_mounts(rendered: dict[str, pathlib.Path], overlay: str) -> None:
    for name in SERVICES:
        pod = pods(objects(rendered[overlay]))[name]
        container = pod["containers"][0]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for setting, value in env_of(container).items():
            if not setting.endswith("_FILE"):
                continue
            path = pathlib.PurePosixPath(value)
            (mount,) = [m for m in container["volumeMounts"] if pathlib.PurePosixPath(m["mountPath"]) == path.parent]
            items = [i["path"] for s in volumes[mount["name"]]["projected"]["sources"] for i in s["secret"]["items"]]
            assert path.name in items, f"{name}: {setting}={value} is not in its volume"


def settings_read_by_the_services() -> set[str]:
    """Every environment variable a clap setting of the workspace reads."""
    names = set()
    for source in (ROOT / "rust").glob("*/src/**/*.rs"):
        names.update(re.findall(r'env = "([A-Z0-9_]+)"', source.read_text()))
    return names


def test_every_setting_given_to_a_service_is_read_by_it(rendered: dict[str, pathlib.Path]) -> None:
    known = settings_read_by_the_services()
    given = set(containerfile_runtime(DEPLOY / "Containerfile")["ENV"]) - {"PATH"}
    for overlay in OVERLAYS:
        for name in SERVICES:
            given |= set(env_of(pods(objects(rendered[overlay]))[name]["containers"][0]))
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for name in SERVICES:
        given |= set(compose["services"][name]["environment"])
    assert given - known - {"RUST_LOG"} == set()


# --- Compose -----------------------------------------------------------------------------


def test_compose_runs_two_auth_replicas_found_by_name_with_secrets_from_deploy_secrets(throwaway_secrets: pathlib.Path) -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    image = containerfile_runtime(DEPLOY / "Containerfile")
    assert services["auth-service"]["deploy"]["replicas"] == 2
    assert services["user-service"]["environment"]["AUTH_SERVICE_ADDRESS"] == "dns:///auth-service:50051"
    made = {path.name for path in throwaway_secrets.iterdir()}
    for name in SERVICES:
        service = services[name]
        assert service["user"] == image["USER"] and service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert service["entrypoint"] == [f"/usr/local/bin/{name}"], name
        assert service["healthcheck"]["test"] == ["CMD", f"/usr/local/bin/{name}", "--health-check"], name
        assert service["environment"]["GRIMOS_SERVICE_TOKEN_FILE"] == "/run/secrets/service-token", name
        assert "service-token" in service["secrets"] and set(service["secrets"]) <= set(compose["secrets"]), name
        for env_file in service["env_file"]:
            assert pathlib.PurePosixPath(env_file).name in made, f"{name}: {env_file} is not made by deploy/secrets.sh"
    assert services["auth-service"]["environment"]["AUTH_SIGNING_KEY_FILE"] == "/run/secrets/signing-key.pem"
    for secret in compose["secrets"].values():
        assert pathlib.PurePosixPath(secret["file"]).name in made, f"{secret} is not made by deploy/secrets.sh"


# --- the image ---------------------------------------------------------------------------


def containerfile_runtime(path: pathlib.Path) -> dict[str, Any]:
    """The instructions after the last FROM, continuation lines joined, COPY left out; ENV
    as a dict."""
    lines = re.sub(r"\\\n\s*", " ", path.read_text()).splitlines()
    last_from = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    found: dict[str, Any] = {}
    for line in lines[last_from + 1 :]:
        if not line.strip() or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        if instruction == "ENV":
            found["ENV"] = dict(pair.split("=", 1) for pair in rest.split())
        elif instruction != "COPY":
            found[instruction] = rest.strip()
    return found


def test_the_source_variant_builds_the_same_image() -> None:
    prebuilt = containerfile_runtime(DEPLOY / "Containerfile")
    assert prebuilt == containerfile_runtime(DEPLOY / "Containerfile.source")
    assert set(prebuilt) == {"ENV", "USER", "WORKDIR", "VOLUME", "EXPOSE", "ENTRYPOINT"}
