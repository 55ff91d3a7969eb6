"""ops/scripts against stand-ins for aws, terraform, docker and curl: the order of the calls, the
checks' verdicts and the error messages, without AWS or Docker."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ROOT

SCRIPTS = ROOT / "ops" / "scripts"
SERVICES = ["purchase", "query", "events", "worker", "flower"]

OUTPUTS = {
    "aws_region": "eu-west-1",
    "ecr_repository_url": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/ticketing",
    "image_tag": "live",
    "ecs_cluster_name": "ticketing",
    "ecs_services": SERVICES,
    "release_task_definition": "ticketing-release",
    "release_log_group": "/ticketing/ecs/release",
    "ops_task_definition": "ticketing-ops",
    "ops_log_group": "/ticketing/ecs/ops",
    "private_subnet_ids": ["subnet-a", "subnet-b"],
    "ops_security_group_id": "sg-ops",
    "base_url": "http://alb.example",
    "ticket_queue_url": "https://sqs.eu-west-1.amazonaws.com/123456789012/ticket-sql",
    "ticket_dlq_url": "https://sqs.eu-west-1.amazonaws.com/123456789012/ticket-sql-dlq",
    "target_group_arns": {name: f"arn:tg/{name}" for name in ("purchase", "query", "events")},
}

# One stand-in for every tool: logs its argv, answers from the FAKE_* environment.
FAKE = r"""
import json, os, sys
tool = sys.argv[1]
args = sys.argv[2:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps([tool, *args]) + "\n")
def out(value):
    print(value if isinstance(value, str) else json.dumps(value))
if tool == "terraform":
    out({k: {"value": v} for k, v in json.loads(os.environ["FAKE_OUTPUTS"]).items()})
elif tool in ("docker", "git"):
    if "--password-stdin" in args:
        sys.stdin.read()
    if args[:1] == ["rev-parse"]:
        out("0123456789abcdef0123456789abcdef01234567")
elif tool == "curl":
    target = args[args.index("--output") + 1]
    open(target, "w").write('{"status":"UP"}')
    sys.stdout.write(os.environ.get("FAKE_HTTP", "200"))
elif tool == "aws":
    cmd = " ".join(args[:2])
    if cmd == "sts get-caller-identity":
        out("arn:aws:iam::123456789012:user/ops")
    elif cmd == "ecr get-login-password":
        out("token")
    elif cmd == "ecr batch-get-image":
        out(["{\"schemaVersion\": 2}", "application/vnd.docker.distribution.manifest.v2+json"])
    elif cmd == "ecs run-task":
        out({"tasks": [{"taskArn": "arn:task/ticketing/abc"}], "failures": []})
    elif cmd == "ecs describe-tasks":
        out({"tasks": [{"containers": [{"exitCode": int(os.environ.get("FAKE_EXIT", "0"))}],
                        "stoppedReason": "Essential container in task exited"}]})
    elif cmd == "ecs describe-services":
        names = args[args.index("--services") + 1:]
        names = [n for n in names if not n.startswith("--")][:5]
        out({"failures": [], "services": [
            {"serviceName": n, "status": "ACTIVE", "desiredCount": 1, "runningCount": 1,
             "pendingCount": 0, "deployments": [{"status": "PRIMARY", "rolloutState": "COMPLETED"}]}
            for n in names]})
    elif cmd == "logs get-log-events":
        out("3 messages\tmore")
    elif cmd == "elbv2 describe-target-health":
        out({"TargetHealthDescriptions": [{"TargetHealth": {"State": "healthy"}}]})
    elif cmd == "sqs get-queue-attributes":
        url = args[args.index("--queue-url") + 1]
        out(os.environ.get("FAKE_DLQ", "0\t0") if url.endswith("-dlq") else "3\t1")
    else:
        out("{}")
"""


@pytest.fixture
def fake_path(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "fake.py").write_text(FAKE)
    for tool in ("aws", "terraform", "docker", "curl", "git"):
        script = bin_dir / tool
        script.write_text(
            f'#!/bin/sh\nexec "{sys.executable}" "{tmp_path / "fake.py"}" {tool} "$@"\n'
        )
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    # the real jq and coreutils, nothing else from the outside
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed (apt-get install jq): the scripts need it")
    for tool in ("jq", "bash", "sed", "paste", "mktemp", "head", "rm", "cat", "dirname", "tr"):
        found = shutil.which(tool)
        assert found, f"{tool} is needed by the scripts"
        (bin_dir / tool).symlink_to(found)
    return {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path),
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "FAKE_OUTPUTS": json.dumps(OUTPUTS),
    }


def run(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPTS / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def calls(env: dict[str, str]) -> list[list[str]]:
    log = Path(env["FAKE_LOG"])
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_build_and_push_builds_migrates_then_rolls_every_service(fake_path):
    result = run("build-and-push.sh", fake_path, "--allow-dirty")
    assert result.returncode == 0, result.stderr
    steps = [" ".join(c[:3]) for c in calls(fake_path) if c[0] in ("aws", "docker")]
    sha = "0123456789abcdef0123456789abcdef01234567"
    image = f"{OUTPUTS['ecr_repository_url']}:{sha}"
    order = [
        "docker info",
        "aws ecr get-login-password",
        "docker login --username",
        "docker build --platform",
        f"docker push {image}",
        "aws ecr batch-get-image",
        "aws ecr put-image",
        "aws ecs run-task",
        "aws ecs wait",
        "aws ecs describe-tasks",
        *["aws ecs update-service"] * len(SERVICES),
        "aws ecs wait",
    ]
    steps = [s for s in steps if not s.startswith("aws sts")]
    # `aws ecr get-login-password | docker login` run side by side: either may log first
    steps[1:3] = sorted(steps[1:3])
    assert steps == order
    put = next(c for c in calls(fake_path) if c[1:3] == ["ecr", "put-image"])
    assert put[put.index("--image-tag") + 1] == "live"
    build = next(c for c in calls(fake_path) if c[1] == "build")
    assert build[build.index("--tag") + 1] == image
    run_task = next(c for c in calls(fake_path) if c[1:3] == ["ecs", "run-task"])
    assert run_task[run_task.index("--task-definition") + 1] == "ticketing-release"
    assert "subnets=[subnet-a,subnet-b]" in run_task[run_task.index("--network-configuration") + 1]
    updated = [
        c[c.index("--service") + 1] for c in calls(fake_path) if c[1:3] == ["ecs", "update-service"]
    ]
    assert updated == SERVICES
    assert all(
        "--force-new-deployment" in c
        for c in calls(fake_path)
        if c[1:3] == ["ecs", "update-service"]
    )


def test_a_failed_release_deploys_nothing(fake_path):
    result = run("build-and-push.sh", {**fake_path, "FAKE_EXIT": "1"}, "--allow-dirty")
    assert result.returncode == 1
    assert "the release task failed (exit code 1" in result.stderr
    assert not [c for c in calls(fake_path) if c[1:3] == ["ecs", "update-service"]]


def test_promote_deploys_an_existing_image_without_docker(fake_path):
    os.remove(Path(fake_path["PATH"]) / "docker")
    result = run("build-and-push.sh", fake_path, "--promote", "feedface", "--skip-release")
    assert result.returncode == 0, result.stderr
    tools = {c[0] for c in calls(fake_path)}
    assert "docker" not in tools
    get = next(c for c in calls(fake_path) if c[1:3] == ["ecr", "batch-get-image"])
    assert "imageTag=feedface" in get


@pytest.mark.parametrize("tool", ["aws", "docker", "jq", "terraform"])
def test_a_missing_tool_is_named(fake_path, tool):
    os.remove(Path(fake_path["PATH"]) / tool)
    result = run("build-and-push.sh", fake_path, "--allow-dirty")
    assert result.returncode == 1
    assert f"'{tool}' is not installed" in result.stderr


def test_missing_credentials_are_reported(fake_path):
    aws = Path(fake_path["PATH"]) / "aws"
    aws.write_text("#!/bin/sh\necho 'Unable to locate credentials' >&2\nexit 255\n")
    result = run("check-infrastructure.sh", fake_path)
    assert result.returncode == 1
    assert "no usable AWS credentials" in result.stderr
    assert "Unable to locate credentials" in result.stderr


def test_check_infrastructure_passes_on_a_healthy_stack(fake_path):
    result = run("check-infrastructure.sh", fake_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for service in SERVICES:
        assert f"ok    {service}: ACTIVE, 1/1 running" in result.stdout
    for path in ("/purchase/health", "/query/health", "/events/health"):
        assert f"ok    {path}: 200" in result.stdout
    assert "ticket-sql: 3 waiting, 1 in flight" in result.stdout
    assert "all checks passed" in result.stdout


def test_check_infrastructure_fails_on_dead_letters_and_a_failing_endpoint(fake_path):
    env = {**fake_path, "FAKE_DLQ": "2\t0", "FAKE_HTTP": "503"}
    result = run("check-infrastructure.sh", env)
    assert result.returncode == 1
    assert "FAIL  ticket-sql-dlq: 2 dead letters" in result.stdout
    assert "FAIL  /purchase/health: 503" in result.stdout
    assert "4 check(s) failed" in result.stdout


def test_usage_text():
    for script in ("build-and-push.sh", "check-infrastructure.sh"):
        result = subprocess.run(
            ["bash", str(SCRIPTS / script), "-h"], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0
        assert result.stdout.startswith(f"Usage: ops/scripts/{script}")
        text = (SCRIPTS / script).read_text()
        assert "set -euo pipefail" in text


def test_ops_task_runs_the_command_in_the_vpc_and_prints_its_log(fake_path):
    result = run(
        "ops-task.sh",
        fake_path,
        "--",
        "flask",
        "--app",
        "web",
        "seats",
        "rebuild",
        "--event",
        "Event 1",
    )
    assert result.returncode == 0, result.stderr
    (run_task,) = [c for c in calls(fake_path) if c[1:3] == ["ecs", "run-task"]]
    assert run_task[run_task.index("--task-definition") + 1] == "ticketing-ops"
    network = run_task[run_task.index("--network-configuration") + 1]
    assert "subnets=[subnet-a,subnet-b]" in network and "assignPublicIp=DISABLED" in network
    overrides = json.loads(run_task[run_task.index("--overrides") + 1])
    (container,) = overrides["containerOverrides"]
    assert container["name"] == "ops"
    bash, dash_c, command = container["command"]
    assert (bash, dash_c) == ("bash", "-c")
    # the shell in the container sees exactly the words given, spaces included
    words = subprocess.run(
        ["bash", "-c", f"printf '%s\\n' {command.removeprefix('flask ')}"],
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert words == ["--app", "web", "seats", "rebuild", "--event", "Event 1"]
    (logs,) = [c for c in calls(fake_path) if c[1:3] == ["logs", "get-log-events"]]
    assert logs[logs.index("--log-group-name") + 1] == "/ticketing/ecs/ops"
    assert logs[logs.index("--log-stream-name") + 1] == "ops/ops/abc"
    assert result.stdout.splitlines() == ["3 messages", "more"]


def test_ops_task_exits_with_the_commands_status(fake_path):
    result = run(
        "ops-task.sh",
        {**fake_path, "FAKE_EXIT": "3"},
        "--task",
        "release",
        "--",
        "flask",
        "--app",
        "web",
        "catalog",
        "load",
    )
    assert result.returncode == 3
    assert "failed (exit code 3" in result.stderr
    (run_task,) = [c for c in calls(fake_path) if c[1:3] == ["ecs", "run-task"]]
    assert run_task[run_task.index("--task-definition") + 1] == "ticketing-release"
    assert run("ops-task.sh", fake_path).returncode != 0  # no command
    assert "no command given" in run("ops-task.sh", fake_path).stderr
