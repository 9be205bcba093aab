"""The container and scheduler examples are real: the Kubernetes manifests parse, every command in them and in the
Airflow DAG is a command line the CLI's own parser accepts (values converted and checked as a run would), the
shell around a CronJob's command counts exit 75 as success and keeps every other code, each tenant's config is
runnable and finds its secrets in the Secret, and the Dockerfile builds the image they name as README installs it."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
import types
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from mlconnector import tenants
from mlconnector.cli.main import build_app
from mlconnector.config import parse_config
from mlconnector.secrets import env_var_names
from mlconnector.systems import required_secrets
from tests.test_examples import assert_runnable

ROOT = Path(__file__).parents[1]
KUBERNETES = ROOT / "examples" / "kubernetes"
DAG_FILE = ROOT / "examples" / "airflow" / "mlconnector_dag.py"


def manifests() -> list[dict[str, Any]]:
    return [doc for path in sorted(KUBERNETES.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in manifests() if doc["kind"] == kind]


def parse_command_line(argv: list[str]) -> tuple[Any, Any]:
    """``mlconnector ...`` parsed as the CLI would, level by level (each group's options, then its subcommand's),
    every value converted and checked; a usage error raises. Returns the command reached and its context."""
    assert argv[0] == "mlconnector", argv
    command: Any = typer.main.get_command(build_app())
    name, args, ctx = "mlconnector", argv[1:], None
    while True:
        ctx = command.make_context(name, list(args), parent=ctx)
        if ctx.parent is None and ctx.params.get("tenant"):
            tenants.check(ctx.params["tenant"])  # what the root's callback checks first
        if not hasattr(command, "get_command"):
            return command, ctx
        rest = ctx.args  # what follows the subcommand's name
        name = args[len(args) - len(rest) - 1]
        command = command.get_command(ctx, name)
        assert command is not None, f"no command {name!r} in {argv}"
        args = rest


def cron_script(job: dict[str, Any]) -> str:
    [container] = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["/bin/sh", "-c"]
    [script] = container["args"]
    return script


def test_the_manifests_parse_and_name_one_image_run_as_the_dockerfiles_user():
    kinds = sorted(doc["kind"] for doc in manifests())
    assert kinds == ["ConfigMap", "ConfigMap", "CronJob", "CronJob", "CronJob", "Deployment", "Secret", "Service"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    uid = re.search(r"useradd .*--uid (\d+)", dockerfile).group(1)
    assert re.search(rf"^USER {uid}$", dockerfile, re.M) and uid != "0"
    pods = [of_kind("Deployment")[0]["spec"]["template"]["spec"]] + [
        job["spec"]["jobTemplate"]["spec"]["template"]["spec"] for job in of_kind("CronJob")]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True and str(pod["securityContext"]["runAsUser"]) == uid
        [container] = pod["containers"]
        assert container["image"] == "registry.example.com/mlconnector:0.1.0"
        assert container["envFrom"] == [{"secretRef": {"name": of_kind("Secret")[0]["metadata"]["name"]}}]


def test_the_dockerfile_installs_the_project_as_readme_says():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim", dockerfile, re.M)
    assert "pip install ." in (ROOT / "README.md").read_text()
    assert re.search(r"pip install --no-cache-dir \.$", dockerfile, re.M)
    assert 'ENTRYPOINT ["mlconnector"]' in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.M):
        for name in copied.split():
            assert (ROOT / name).exists() and f"!{name.rstrip('/')}" in {line.rstrip("/") for line in ignored}


def test_every_cronjob_runs_a_real_command_once_at_a_time():
    names = []
    for job in of_kind("CronJob"):
        assert job["spec"]["concurrencyPolicy"] == "Forbid"
        assert job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] == "Never"
        argv = shlex.split(cron_script(job).split(";")[0])
        command, ctx = parse_command_line(argv)
        tenant = argv[argv.index("--tenant") + 1]
        assert job["metadata"]["labels"]["mlconnector/tenant"] == tenant
        mount = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]
        assert mount["mountPath"] == f"/etc/mlconnector/tenants/{tenant}"  # where --tenant looks for its config
        names.append((tenant, command.name, ctx.params.get("all_")))
    assert ("acme", "nav-zoho", None) in names and ("globex", "nav-zoho", None) in names
    assert ("acme", "replay", True) in names


@pytest.mark.parametrize("exit_code, job_exit", [(0, 0), (75, 0), (3, 3), (5, 5)])
def test_the_cronjob_shell_counts_75_as_success_and_keeps_other_codes(tmp_path, exit_code, job_exit):
    fake = tmp_path / "mlconnector"
    fake.write_text(f"#!/bin/sh\nexit {exit_code}\n")
    fake.chmod(0o755)
    for job in of_kind("CronJob"):
        ran = subprocess.run(["/bin/sh", "-c", cron_script(job)], env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
        assert ran.returncode == job_exit


def test_the_listen_deployment_runs_a_real_command_probed_on_health():
    [deployment] = of_kind("Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    command, ctx = parse_command_line(["mlconnector", *container["args"]])
    assert command.name == "listen" and ctx.params["host"] == "0.0.0.0" and not ctx.params["process"]
    port = ctx.params["port"]
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert deployment["spec"]["replicas"] >= 2


def test_each_tenants_config_is_runnable_and_its_secrets_are_in_the_secret(tmp_path, monkeypatch):
    [secret] = of_kind("Secret")
    variables = secret["stringData"]
    assert "MLCONNECTOR_STATE_URL" in variables
    for config_map in of_kind("ConfigMap"):
        tenant = config_map["metadata"]["labels"]["mlconnector/tenant"]
        monkeypatch.setenv("MLCONNECTOR_TENANT", tenant)
        config = parse_config(tomllib.loads(config_map["data"]["connections.toml"]))
        assert config.state_path is None and config.state_url is None  # the Secret's MLCONNECTOR_STATE_URL
        for pair in config.pairs:
            assert_runnable(config, pair, tmp_path / tenant)
        for name, system in config.systems.items():
            for field in required_secrets(system):
                tenant_variable = env_var_names(name, field, f"{tenant.upper()}_")[0]
                assert tenant_variable in variables, f"{tenant}: {tenant_variable} missing from the Secret"


def test_the_airflow_dag_compiles_and_runs_each_tenants_pairs_skipping_on_75(monkeypatch):
    source = DAG_FILE.read_text()
    code = compile(source, str(DAG_FILE), "exec")
    tasks: list[dict[str, Any]] = []

    class DAG:  # Airflow is not installed here: its two names, recording what the file builds
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs

        def __enter__(self) -> "DAG":
            return self

        def __exit__(self, *exc: Any) -> None:
            pass

    airflow = types.ModuleType("airflow")
    airflow.DAG = DAG  # type: ignore[attr-defined]
    bash = types.ModuleType("airflow.operators.bash")
    bash.BashOperator = lambda **kwargs: tasks.append(kwargs)  # type: ignore[attr-defined]
    for name, module in (("airflow", airflow), ("airflow.operators", types.ModuleType("airflow.operators")),
                         ("airflow.operators.bash", bash)):
        monkeypatch.setitem(sys.modules, name, module)
    namespace: dict[str, Any] = {"__name__": "mlconnector_dag"}
    exec(code, namespace)

    assert namespace["dag"].kwargs["max_active_runs"] == 1
    expected = {(t, p) for t, pairs in namespace["TENANT_PAIRS"].items() for p in pairs}
    assert len(tasks) == len(expected) >= 3
    seen = set()
    for task in tasks:
        assert task["skip_on_exit_code"] == 75
        argv = shlex.split(task["bash_command"])
        command, ctx = parse_command_line(argv)
        seen.add((argv[argv.index("--tenant") + 1], command.name))
    assert seen == expected
