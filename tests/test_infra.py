"""infra/: what can be checked without a cluster or a Docker engine.

The GPU base job template is rendered by prefect-kubernetes' own code (the same
`from_template_and_values` + `prepare_for_flow_run` a worker runs for each flow run); the
worker manifests, the compose file and the Dockerfiles are parsed and cross-checked against
each other and against pyproject.toml.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from uuid import uuid4

import jsonschema
import pytest
import yaml
from package_copy import installed_layout, run_in_copy

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
TEMPLATE_PATH = INFRA / "k8s" / "gpu-base-job-template.json"
WORKER_MANIFESTS = INFRA / "k8s" / "worker.yaml"
KUSTOMIZATION = INFRA / "k8s" / "kustomization.yaml"
COMPOSE_PATH = INFRA / "compose" / "compose.yaml"
DOCKERFILES = {flavour: INFRA / "docker" / f"{flavour}.Dockerfile" for flavour in ("cpu", "gpu")}
GPU_POOL = "relabel-gpu"


def _template() -> dict[str, Any]:
    return json.loads(TEMPLATE_PATH.read_text())


def _render(values: dict[str, Any]) -> dict[str, Any]:
    """The Job manifest a Kubernetes worker would submit for a flow run with these job
    variables: prefect-kubernetes' own rendering and flow-run preparation."""
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import FlowRun
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    async def render() -> KubernetesWorkerJobConfiguration:
        # The template holds no block or variable references, so rendering never calls the
        # API; a client is passed only so that Prefect does not start a temporary server.
        async with PrefectClient(api="http://127.0.0.1:9/api") as client:
            return await KubernetesWorkerJobConfiguration.from_template_and_values(
                _template(), values, client=client
            )

    configuration = asyncio.run(render())
    configuration.prepare_for_flow_run(FlowRun(flow_id=uuid4(), name="gentle-otter"))
    return configuration.job_manifest


def _pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["template"]["spec"]


@pytest.mark.slow
def test_gpu_count_renders_into_limits_with_gpu_node_placement() -> None:
    manifest = _render({
        "gpu_count": 2,
        "image": "registry.example.com/team/relabel-gpu:0.1.0",
        "env": {"MLFLOW_TRACKING_URI": "http://mlflow.example.com"},
    })
    pod = _pod_spec(manifest)
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container["resources"]["requests"] == {"cpu": "4", "memory": "16Gi"}
    # Unset optional variables disappear instead of rendering as empty strings.
    assert "cpu" not in container["resources"]["limits"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert container["image"] == "registry.example.com/team/relabel-gpu:0.1.0"
    env = {item["name"]: item.get("value") for item in container["env"]}
    # Deployment env is merged with the pool's default env, and Prefect adds its own.
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.example.com"
    assert env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert "PREFECT__FLOW_RUN_ID" in env
    assert container["envFrom"] == [
        {"configMapRef": {"name": "relabel-settings", "optional": True}},
        {"secretRef": {"name": "relabel-credentials", "optional": True}},
    ]
    assert container["args"][:3] == ["prefect", "flow-run", "execute"]
    assert pod["serviceAccountName"] == "relabel-flow-run"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert manifest["metadata"]["namespace"] == "relabel"


@pytest.mark.slow
def test_defaults_request_one_gpu_and_overrides_replace_placement() -> None:
    pod = _pod_spec(_render({}))
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["containers"][0]["image"] == "relabel-gpu:0.1.0"

    selector = {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    tolerations = [{"key": "gpu", "operator": "Equal", "value": "l4", "effect": "NoSchedule"}]
    pod = _pod_spec(_render({"node_selector": selector, "tolerations": tolerations,
                             "memory_limit": "64Gi", "cpu_limit": "8"}))
    assert pod["nodeSelector"] == selector
    assert pod["tolerations"] == tolerations
    assert pod["containers"][0]["resources"]["limits"] == {
        "cpu": "8", "memory": "64Gi", "nvidia.com/gpu": 1}


def test_every_declared_variable_is_referenced_and_every_reference_declared() -> None:
    """Prefect silently ignores a variable that no placeholder uses, so a typo would make a
    job variable (say gpu_count) do nothing."""
    from prefect.utilities.templating import find_placeholders

    template = _template()
    declared = set(template["variables"]["properties"])
    referenced = {p.name for p in find_placeholders(template["job_configuration"])}
    assert declared - referenced == set(), "declared but never used in the job manifest"
    assert referenced - declared == set(), "used in the job manifest but never declared"
    job_manifest_refs = {p.name for p in find_placeholders(
        template["job_configuration"]["job_manifest"])}
    for name in ("gpu_count", "node_selector", "tolerations", "image", "env",
                 "cpu_request", "memory_request", "credentials_secret", "settings_configmap"):
        assert name in job_manifest_refs


def test_template_is_derived_from_the_stock_kubernetes_template() -> None:
    """Nothing of the template prefect-kubernetes ships is lost: a later prefect-kubernetes
    that adds a variable makes this fail, prompting a re-derivation."""
    from prefect_kubernetes.worker import KubernetesWorker

    stock = KubernetesWorker.get_default_base_job_template()
    ours = _template()
    assert set(stock["variables"]["properties"]) <= set(ours["variables"]["properties"])
    assert set(stock["job_configuration"]) <= set(ours["job_configuration"])
    stock_container = stock["job_configuration"]["job_manifest"]["spec"]["template"]["spec"][
        "containers"][0]
    our_container = _pod_spec(ours["job_configuration"]["job_manifest"])["containers"][0]
    for key, value in stock_container.items():
        if key != "resources":
            assert our_container[key] == value, key


def test_variable_defaults_satisfy_the_schema_and_bad_values_fail() -> None:
    """The server validates deployment job variables against this schema."""
    schema = _template()["variables"]
    defaults = {name: spec["default"] for name, spec in schema["properties"].items()
                if "default" in spec}
    jsonschema.validate(defaults, schema)
    for bad in ({"gpu_count": -1}, {"gpu_count": "two"}, {"tolerations": {"key": "x"}},
                {"node_selector": {"gpu": 1}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**defaults, **bad}, schema)


def _manifests() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(WORKER_MANIFESTS.read_text()) if doc]


def _one(kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in _manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name} in {WORKER_MANIFESTS}"
    return matches[0]


def test_worker_manifests_are_consistent_with_the_template() -> None:
    template_defaults = {k: v.get("default") for k, v in _template()["variables"]["properties"]
                         .items()}
    namespace = template_defaults["namespace"]
    for doc in _manifests():
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace, doc["metadata"]["name"]

    deployment = _one("Deployment", "prefect-worker")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["command"]
    assert command[:3] == ["prefect", "worker", "start"]
    assert command[command.index("--pool") + 1] == GPU_POOL
    assert command[command.index("--type") + 1] == "kubernetes"
    assert "--with-healthcheck" in command
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"

    # The worker's identity may create Jobs and follow their pods in its namespace.
    account = _one("ServiceAccount", pod["serviceAccountName"])["metadata"]["name"]
    binding = _one("RoleBinding", "prefect-worker")
    assert {"kind": "ServiceAccount", "name": account, "namespace": namespace} in binding[
        "subjects"]
    role = _one("Role", binding["roleRef"]["name"])
    grants = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
              for resource in rule["resources"] for verb in rule["verbs"]}
    for needed in [("batch", "jobs", "create"), ("batch", "jobs", "watch"),
                   ("", "pods", "watch"), ("", "pods/log", "get"), ("", "events", "list")]:
        assert needed in grants, needed
    assert not any(d["kind"].startswith("Cluster") for d in _manifests())

    # The flow-run pods' service account exists and gets no API token.
    flow_run_account = _one("ServiceAccount", template_defaults["service_account_name"])
    assert flow_run_account["automountServiceAccountToken"] is False

    # --base-job-template points into the ConfigMap that kustomize builds from the JSON file.
    template_arg = Path(command[command.index("--base-job-template") + 1])
    mount = next(m for m in container["volumeMounts"]
                 if template_arg.parent == Path(m["mountPath"]))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    generators = {g["name"]: g for g in kustomization["configMapGenerator"]}
    assert generators[volume["configMap"]["name"]]["files"] == [template_arg.name]
    assert (KUSTOMIZATION.parent / template_arg.name).is_file()
    assert kustomization["resources"] == [WORKER_MANIFESTS.name]
    # The worker's Prefect API address comes from a generated ConfigMap; auth is optional.
    (api_config,) = [e["configMapRef"]["name"] for e in container["envFrom"]
                     if "configMapRef" in e]
    assert any(literal.startswith("PREFECT_API_URL=http")
               for literal in generators[api_config]["literals"])
    assert all(e["secretRef"]["optional"] for e in container["envFrom"] if "secretRef" in e)


def test_gpu_check_job_matches_the_pool_placement() -> None:
    defaults = {k: v.get("default") for k, v in _template()["variables"]["properties"].items()}
    job = yaml.safe_load((INFRA / "k8s" / "gpu-check-job.yaml").read_text())
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["nodeSelector"] == defaults["node_selector"]
    assert pod["tolerations"] == defaults["tolerations"]
    assert container["image"] == defaults["image"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["command"][:2] == ["bash", "infra/gpu-check.sh"]
    assert pod["serviceAccountName"] == defaults["service_account_name"]
    template_pod = _pod_spec(_template()["job_configuration"]["job_manifest"])
    assert pod["securityContext"] == template_pod["securityContext"]


def test_template_runs_as_the_gpu_image_user() -> None:
    uid = _pod_spec(_template()["job_configuration"]["job_manifest"])["securityContext"][
        "runAsUser"]
    assert f"--uid {uid} " in DOCKERFILES["gpu"].read_text()


# --- compose ---------------------------------------------------------------------------

def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_PATH.read_text())


def test_compose_has_the_whole_stack_with_health_checks() -> None:
    services = _compose()["services"]
    assert set(services) >= {"prefect-db", "prefect-server", "mlflow-db", "mlflow", "s3",
                             "worker"}
    for name, service in services.items():
        one_shot = service.get("restart") == "no"
        assert one_shot or "healthcheck" in service, f"{name} has no healthcheck"
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], dependency
    assert "postgresql+asyncpg://" in services["prefect-server"]["environment"][
        "PREFECT_API_DATABASE_CONNECTION_URL"]
    mlflow_command = " ".join(services["mlflow"]["command"])
    assert "--backend-store-uri=postgresql://" in mlflow_command
    assert "--artifacts-destination=s3://" in mlflow_command
    worker_env = services["worker"]["environment"]
    assert worker_env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert worker_env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert worker_env["AWS_ENDPOINT_URL"] == "http://s3:8333"
    worker_command = services["worker"]["command"]
    assert worker_command[worker_command.index("--pool") + 1] == "relabel-local"


def test_compose_publishes_only_needed_ports_on_loopback() -> None:
    services = _compose()["services"]
    published = {}
    for name, service in services.items():
        for port in service.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)
            published[name] = port
    assert published == {"prefect-server": "127.0.0.1:4200:4200",
                         "mlflow": "127.0.0.1:5000:5000", "s3": "127.0.0.1:8333:8333"}
    for name in ("prefect-db", "mlflow-db", "worker"):
        assert "ports" not in services[name]


def test_compose_volumes_and_secrets_come_from_outside() -> None:
    compose = _compose()
    declared = set(compose["volumes"])
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in declared, f"{name} mounts {source}, not a named volume"
    text = COMPOSE_PATH.read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    used = set(re.findall(r"\$\{(\w+)", text))
    assert used == required, "every interpolated variable must be required, not defaulted"
    example = (INFRA / "compose" / ".env.example").read_text()
    example_keys = {line.split("=")[0] for line in example.splitlines()
                    if line and not line.startswith("#")}
    assert required == example_keys
    for service in compose["services"].values():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET", key):
                assert str(value).startswith("${"), f"{key} is hard-coded"
    build = compose["x-relabel-image"]["build"]
    assert (COMPOSE_PATH.parent / build["context"] / build["dockerfile"]).resolve() == \
        DOCKERFILES["cpu"]


# --- Dockerfiles -------------------------------------------------------------------------

def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in dockerfile.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        current += " " + stripped.removesuffix("\\")
        if not stripped.endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(line.split()[0].upper(), line.partition(" ")[2]) for line in logical]


@pytest.mark.parametrize("flavour", sorted(DOCKERFILES))
def test_dockerfiles_install_from_pyproject_only(flavour: str) -> None:
    steps = _instructions(DOCKERFILES[flavour])
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"])
    installs = [args for op, args in steps if op == "RUN" and "pip install" in args]
    assert installs, "no install step"
    dependency_install = next(a for a in installs if "-r pyproject.toml" in a)
    requested = set(re.findall(r"--extra (\S+)", dependency_install))
    assert requested <= extras, requested - extras
    assert ("gpu" in requested) == (flavour == "gpu")
    assert "dask" in requested
    for args in installs:
        # Either the dependency list from pyproject.toml, or the project itself without deps.
        assert "-r pyproject.toml" in args or ("--no-deps ." in args), args
        assert "requirements" not in args
    # Nor a requirements file anywhere a source of the images lives (generated folders such
    # as mlruns/ hold MLflow's own requirements.txt files and are not sources).
    for folder in (ROOT, *(ROOT / d for d in ("relabel", "tasks", "flows", "infra"))):
        assert not list(folder.glob("requirements*.txt")), folder


@pytest.mark.parametrize("flavour", sorted(DOCKERFILES))
def test_dockerfiles_run_as_non_root_without_secrets(flavour: str) -> None:
    steps = _instructions(DOCKERFILES[flavour])
    stages = [i for i, (op, _) in enumerate(steps) if op == "FROM"]
    assert len(stages) >= 2, "multi-stage: build tools stay out of the runtime image"
    final = steps[stages[-1]:]
    users = [args for op, args in final if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    for op, args in steps:
        if op in ("ENV", "ARG"):
            assert not re.search(r"(PASSWORD|SECRET|TOKEN|API_KEY|ACCESS_KEY)", args), args
    # The deps layer is copied before the code, so code edits do not reinstall dependencies.
    build = steps[stages[-2]:stages[-1]]
    copies = [args for op, args in build if op == "COPY"]
    assert copies.index("pyproject.toml README.md ./") < copies.index("relabel ./relabel")


def test_docker_context_is_an_allow_list_covering_every_copy() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "everything not listed stays out of the build context"
    allowed = [p[1:].rstrip("/") for p in patterns if p.startswith("!")]
    assert ".env" not in allowed and not any("data" in p for p in allowed)
    for dockerfile in DOCKERFILES.values():
        for op, args in _instructions(dockerfile):
            if op != "COPY" or "--from=" in args:
                continue
            sources = [a for a in args.split() if not a.startswith("--")][:-1]
            for source in sources:
                assert any(source == a or source.startswith(a + "/") for a in allowed), source
                assert (ROOT / source).exists(), source


def _runtime_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = _instructions(dockerfile)
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def _lay_out_workdir(dockerfile: Path, app: Path) -> None:
    """Copy into `app` what the runtime stage's COPY lines put in its WORKDIR."""
    for op, args in _runtime_stage(dockerfile):
        if op != "COPY" or "--from=" in args:
            continue
        *sources, dest = [a for a in args.split() if not a.startswith("--")]
        assert not dest.startswith("/"), f"{args}: expected a path relative to WORKDIR"
        for source in sources:
            target = app / dest / Path(source).name if dest.endswith("/") else app / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(ROOT / source, target)


@pytest.mark.parametrize("flavour", sorted(DOCKERFILES))
def test_runtime_workdir_does_not_shadow_the_installed_package(flavour: str,
                                                               tmp_path: Path) -> None:
    """The image's import check, run in a copy of its WORKDIR against a wheel-style install.

    `python -c` and Prefect's flow-run loader put the working directory first on sys.path, so
    a relabel/ source folder there (which has no tasks/ inside) would hide the installed
    package and `import relabel.tasks.ingest` would fail in the image.
    """
    app = tmp_path / "app"
    _lay_out_workdir(DOCKERFILES[flavour], app)
    # The image's `uv pip install --no-deps .`: relabel/ with tasks/ and flows/ inside.
    site = installed_layout(tmp_path / "site")
    (check,) = [args for op, args in _runtime_stage(DOCKERFILES[flavour])
                if op == "RUN" and args.startswith("python -c ")]
    imports = shlex.split(check)[2].removeprefix("import ").split(",")
    # Only relabel's modules can be shadowed by the WORKDIR; third-party ones come from the
    # virtualenv either way (and psycopg2 is not installed outside the image).
    relabel_modules = [m.strip() for m in imports if m.strip().split(".")[0] == "relabel"]
    assert "relabel.tasks.ingest" in relabel_modules
    imported_from = run_in_copy(
        site, f"import json, {', '.join(relabel_modules)}\n"
        "print(json.dumps(relabel.__file__))", cwd=app)
    assert Path(imported_from).is_relative_to(site)
    # What the image still needs in its WORKDIR: prefect.yaml and its flow entry points.
    for deployment in yaml.safe_load((app / "prefect.yaml").read_text())["deployments"]:
        assert (app / deployment["entrypoint"].partition(":")[0]).is_file(), deployment["name"]
    if flavour == "gpu":
        assert (app / "infra" / "gpu-check.sh").is_file()
        assert (app / "benchmarks" / "gpu_check.py").is_file()



# --- prefect.yaml ------------------------------------------------------------------------

def _deployments() -> list[dict[str, Any]]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


def _pools_served_by_infra() -> dict[str, dict[str, Any]]:
    """Work pool name -> its base job template, for every pool a worker in infra/ serves."""
    from prefect.workers.process import ProcessWorker

    compose_worker = _compose()["services"]["worker"]["command"]
    k8s_worker = _one("Deployment", "prefect-worker")["spec"]["template"]["spec"][
        "containers"][0]["command"]
    served = {}
    for command in (compose_worker, k8s_worker):
        pool, kind = command[command.index("--pool") + 1], command[command.index("--type") + 1]
        served[pool] = (_template() if kind == "kubernetes"
                        else ProcessWorker.get_default_base_job_template())
    assert set(served) == {"relabel-local", GPU_POOL}
    return served


def test_every_deployment_targets_a_pool_that_infra_serves() -> None:
    served = _pools_served_by_infra()
    for deployment in _deployments():
        pool = deployment["work_pool"]
        assert pool["name"] in served, f"{deployment['name']}: no worker in infra/ serves it"
        # Job variables must satisfy the pool's schema (the server checks this on deploy).
        schema = served[pool["name"]]["variables"]
        defaults = {k: v["default"] for k, v in schema["properties"].items() if "default" in v}
        jsonschema.validate({**defaults, **pool.get("job_variables", {})}, schema)


def test_gpu_deployment_runs_where_the_gpu_image_keeps_the_code() -> None:
    (gpu,) = [d for d in _deployments() if d["work_pool"]["name"] == GPU_POOL]
    (step,) = gpu["pull"]
    directory = step["prefect.deployments.steps.set_working_directory"]["directory"]
    workdirs = [args for op, args in _instructions(DOCKERFILES["gpu"]) if op == "WORKDIR"]
    assert workdirs[-1] == directory
    assert gpu["parameters"]["config"]["profile"] == "gpu"
    assert gpu["work_pool"]["job_variables"]["gpu_count"] >= 1


@pytest.mark.parametrize("name", [d["name"] for d in _deployments()])
def test_deployment_entrypoint_imports_and_parameters_validate(name: str) -> None:
    from prefect import Flow
    from prefect.flows import load_flow_from_entrypoint

    from relabel.config import PipelineConfig

    (deployment,) = [d for d in _deployments() if d["name"] == name]
    path, _, _ = deployment["entrypoint"].partition(":")
    assert (ROOT / path).is_file()
    flow = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
    assert isinstance(flow, Flow)
    parameters = deployment.get("parameters", {})
    missing = set(flow.parameters.required or []) - set(parameters)
    if missing:
        # An event-triggered deployment: each trigger must supply what has no default.
        assert deployment.get("triggers"), f"{name}: no default for {sorted(missing)}"
        for trigger in deployment["triggers"]:
            assert missing <= set(trigger.get("parameters", {})), trigger
    else:
        # Against the flow's signature (what Prefect does when a run is created) ...
        flow.validate_parameters(parameters)
    # ... and the config object against the typed config itself, so a typo'd key fails.
    if "config" in parameters:
        PipelineConfig.model_validate(parameters["config"])


# --- GPU check ---------------------------------------------------------------------------

GPU_CHECK = INFRA / "gpu-check.sh"


def test_gpu_check_script_parses() -> None:
    assert GPU_CHECK.stat().st_mode & 0o111, "gpu-check.sh must be executable"
    subprocess.run(["bash", "-n", str(GPU_CHECK)], check=True)


@pytest.mark.slow
def test_gpu_check_tiny_cpu_budget_prints_throughput_and_accuracy(tmp_path: Path) -> None:
    out = tmp_path / "gpu-check.json"
    run = subprocess.run(
        ["bash", str(GPU_CHECK), "--profile", "smoke", "--epochs", "2", "--train-images", "256",
         "--test-images", "100", "--allow-cpu", "--out", str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHON": sys.executable},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert json.loads(run.stdout.strip().splitlines()[-1]) == figures
    assert figures["profile"] == "smoke" and figures["epochs"] == 2
    assert figures["train_images"] == 256
    assert figures["images_per_second"] > 0 and figures["steady_images_per_second"] > 0
    assert 0.0 <= figures["test_accuracy"] <= 1.0
    assert "images_per_second:" in run.stdout and "test_accuracy:" in run.stdout


def test_gpu_check_refuses_to_run_without_a_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --allow-cpu a worker that lost its GPU fails loudly (exit 3), not slowly."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    if gpu_check.visible_gpus():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main(["--epochs", "1"])
    assert exit_info.value.code == gpu_check.EXIT_NO_GPU == 3
    assert "sees no GPU" in capsys.readouterr().err


@pytest.mark.slow
def test_heldout_copy_moves_the_pipelines_validation_images_to_a_labelled_test_folder(
        tmp_path: Path) -> None:
    """benchmarks/heldout_copy.py: the images a run would hold out become the test folder
    (same split), the rest keep their labels, and ingestion accepts the copy."""
    import numpy as np

    from relabel.tasks.demodata import generate_demo_data
    from relabel.tasks.ingest import ingest, load_dataset
    from relabel.tasks.split import validation_split

    data = generate_demo_data(tmp_path / "data", num_train=120, num_clean=60, num_test=5)
    shutil.rmtree(data / "images_test")
    (data / "test_labels.csv").unlink()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import heldout_copy
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    out = tmp_path / "copy"
    counts = heldout_copy.make_heldout_copy(data, out, fraction=0.2, seed=3)
    assert counts == {"train_images": 108, "clean_labels": 48, "test_images": 12}
    original = load_dataset(ingest(data, tmp_path / "cache").dataset_dir)
    copy = load_dataset(ingest(out, tmp_path / "cache").dataset_dir)
    train_clean, held_out = validation_split(original.clean_labels, 0.2, seed=3)
    np.testing.assert_array_equal(copy.test_images, original.images[held_out])
    np.testing.assert_array_equal(copy.test_labels, original.clean_labels[held_out])
    kept = np.concatenate([train_clean, np.arange(60, 120)])
    np.testing.assert_array_equal(copy.images, original.images[kept])
    np.testing.assert_array_equal(copy.noisy_labels, original.noisy_labels[kept])
    np.testing.assert_array_equal(copy.clean_labels[:48], original.clean_labels[train_clean])
    assert (copy.clean_labels[48:] == -1).all()
    with pytest.raises(FileExistsError, match="already exists"):
        heldout_copy.make_heldout_copy(data, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "copy", "data"]
