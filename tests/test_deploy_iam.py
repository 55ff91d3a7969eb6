"""The task roles as Terraform writes them, enforced: a moto server of this module's own checks
every call against IAM (moto enforces IAM once `/moto-api/reset-auth` sets the number of
unauthenticated calls it still lets through), and the real commands run with the credentials of
an IAM user holding exactly one role's policy, its ARNs replaced by moto's.

The release task runs `catalog load`; the ops task runs `seats rebuild`, `dlq list`, `dlq
redrive`. Each passes with its role's policy; with a needed right taken out it fails, which
shows the enforcement is real and the policy has nothing to spare.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from sqlalchemy import text

import models
from models import seats
from tests.support.processes import BIN, ROOT, free_port, wait_for_port
from tests.test_terraform import config

REGION = "us-east-1"


@dataclass
class EnforcingMoto:
    """A moto server enforcing IAM, with the platform's topic and queues."""

    url: str
    messaging: dict[str, str]  # TICKET_* environment
    arns: dict[str, str]  # Terraform variable => moto ARN
    admin: dict[str, str]  # credentials allowed everything (test set-up only)

    def client(self, service: str, credentials: dict[str, str] | None = None) -> Any:
        credentials = credentials or self.admin
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        )

    def user_with(self, policy: dict[str, Any] | None) -> dict[str, str]:
        """A new IAM user holding exactly `policy` (None: no policy at all)."""
        iam = self.client("iam")
        name = f"u{uuid.uuid4().hex[:10]}"
        iam.create_user(UserName=name)
        if policy is not None:
            iam.put_user_policy(UserName=name, PolicyName="role", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        }


@pytest.fixture(scope="module")
def moto_iam() -> Iterator[EnforcingMoto]:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "ops" / "local" / "moto_server.py"),
            "-H",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}"
        from aws_resources import create_messaging

        saved = os.environ.get("AWS_ENDPOINT_URL")
        os.environ["AWS_ENDPOINT_URL"] = url
        try:
            messaging = create_messaging("iam")
            sqs = boto3.client("sqs", region_name=REGION)

            def arn(queue_url: str) -> str:
                attributes = sqs.get_queue_attributes(
                    QueueUrl=queue_url, AttributeNames=["QueueArn"]
                )
                return attributes["Attributes"]["QueueArn"]

            arns = {
                "var.topic_arn": messaging.topic_arn,
                "var.queue_arn": arn(messaging.queue_url),
                "var.dlq_arn": arn(messaging.dead_letter_queue_url),
            }
            iam = boto3.client("iam", region_name=REGION)
            iam.create_user(UserName="admin")
            iam.put_user_policy(
                UserName="admin",
                PolicyName="all",
                PolicyDocument=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                    }
                ),
            )
            key = iam.create_access_key(UserName="admin")["AccessKey"]
        finally:
            if saved is None:
                os.environ.pop("AWS_ENDPOINT_URL")
            else:
                os.environ["AWS_ENDPOINT_URL"] = saved
        # from now on every call is authenticated and authorised
        requests.post(f"{url}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
        yield EnforcingMoto(
            url=url,
            messaging=messaging.env(),
            arns=arns,
            admin={
                "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            },
        )
    finally:
        server.terminate()
        server.wait()


def role_policy(
    role: str, arns: dict[str, str], without: str | None = None
) -> dict[str, Any] | None:
    """The role's policy as modules/iam writes it, with moto's ARNs; None for a role with none
    (or with nothing left once `without` is taken out)."""
    statements = config("iam").locals["policies"].get(role)
    if statements is None:
        return None
    written = []
    for statement in statements:
        actions = [a for a in statement["actions"] if a != without]
        resources = [arns[r.removeprefix("${").removesuffix("}")] for r in statement["resources"]]
        if actions:
            written.append({"Effect": "Allow", "Action": actions, "Resource": resources})
    return {"Version": "2012-10-17", "Statement": written} if written else None


def task_command(
    moto: EnforcingMoto, credentials: dict[str, str], *args: str
) -> subprocess.CompletedProcess:
    """`flask --app web …` with the task's AWS identity (the database and Redis are the tests')."""
    env = {
        **os.environ,
        **moto.messaging,
        **credentials,
        "AWS_ENDPOINT_URL": moto.url,
        "AWS_DEFAULT_REGION": REGION,
        "BROKER_CONNECT_TIMEOUT": "2",
        "BROKER_READ_TIMEOUT": "2",
    }
    return subprocess.run(
        [str(BIN / "flask"), "--app", "web", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture
def first_deploy(database, clean_tickets, redis_client) -> None:
    """MySQL has the catalog, Redis nothing, no event ever had seat state."""
    with models.writer().begin() as conn:
        conn.execute(text("UPDATE event SET seat_state_created_on = NULL"))


def test_enforcement_is_on(moto_iam):
    nobody = moto_iam.user_with(None)
    with pytest.raises(Exception, match="AccessDenied"):
        moto_iam.client("sqs", nobody).get_queue_attributes(
            QueueUrl=moto_iam.messaging["TICKET_QUEUE_URL"], AttributeNames=["All"]
        )


def test_release_role_runs_catalog_load(moto_iam, first_deploy, redis_client):
    """The release task's command on a first deploy, with exactly the release role's rights."""
    release = moto_iam.user_with(role_policy("release", moto_iam.arns))
    done = task_command(moto_iam, release, "catalog", "load")
    assert done.returncode == 0, done.stderr
    assert seats.event_loaded(redis_client, "Event1")


def test_release_role_cannot_rebuild_and_catalog_load_sends_it_to_the_ops_task(
    moto_iam, first_deploy, redis_client
):
    release = moto_iam.user_with(role_policy("release", moto_iam.arns))
    assert task_command(moto_iam, release, "catalog", "load").returncode == 0
    redis_client.flushdb()  # Redis lost the seat state
    refused = task_command(moto_iam, release, "catalog", "load")
    assert refused.returncode == 3, refused.stderr
    assert "seats rebuild" in refused.stderr and "ops task" in refused.stderr
    denied = task_command(moto_iam, release, "seats", "rebuild", "--event", "Event1")
    assert denied.returncode != 0
    assert "AccessDenied" in denied.stderr

    ops = moto_iam.user_with(role_policy("ops", moto_iam.arns))
    rebuilt = task_command(moto_iam, ops, "seats", "rebuild", "--event", "Event1")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert seats.event_loaded(redis_client, "Event1")


def dead_letter(moto: EnforcingMoto) -> None:
    moto.client("sqs").send_message(QueueUrl=moto.messaging["TICKET_DLQ_URL"], MessageBody="poison")


@pytest.mark.parametrize(
    ("command", "needed"),
    [
        (
            ("seats", "rebuild", "--event", "Event2", "--drain-timeout", "5"),
            "sqs:GetQueueAttributes",
        ),
        (("dlq", "list"), "sqs:ReceiveMessage"),
        (("dlq", "redrive"), "sqs:SendMessage"),
    ],
)
def test_ops_role_runs_the_operators_commands_and_needs_each_right(
    moto_iam, first_deploy, command, needed
):
    dead_letter(moto_iam)
    ops = moto_iam.user_with(role_policy("ops", moto_iam.arns))
    done = task_command(moto_iam, ops, *command)
    assert done.returncode == 0, done.stderr
    dead_letter(moto_iam)
    short = moto_iam.user_with(role_policy("ops", moto_iam.arns, without=needed))
    failed = task_command(moto_iam, short, *command)
    assert failed.returncode != 0, failed.stdout
    assert "AccessDenied" in failed.stderr


# --- the two modes: least privilege (default) and an existing role (Learner Lab)


def _gates() -> dict[tuple[str, str, str], str]:
    """(module, type, name) => the count/for_each of every resource an account without IAM
    rights refuses: IAM roles and policies, the flow log, the customer-managed key."""
    refused = ("aws_iam_role", "aws_iam_role_policy", "aws_iam_role_policy_attachment")
    found = {}
    for directory in ("iam", "ecs_service", "network", "aurora", "kms"):
        for (type_, name), body in config(directory).resources.items():
            if type_ in refused or type_ in ("aws_flow_log", "aws_kms_key", "aws_kms_alias"):
                found[(directory, type_, name)] = str(body.get("count", body.get("for_each")))
    return found


def test_every_role_flow_log_and_key_has_a_switch():
    gates = _gates()
    assert len(gates) >= 12
    allowed = {
        "iam": {"${local.create_iam ? toset(local.services) : toset([])}", "${local.policy_docs}"},
        "ecs_service": {
            "${local.create_role ? 1 : 0}",
            "${local.create_role && length(var.secrets) > 0 ? 1 : 0}",
        },
        "network": {"${var.flow_logs_enabled ? 1 : 0}"},
        "aurora": {"${var.enhanced_monitoring ? 1 : 0}"},
        "kms": {"${var.create_key ? 1 : 0}"},
    }
    for (directory, type_, name), gate in gates.items():
        assert gate in allowed[directory], (directory, type_, name, gate)
    iam = config("iam").locals
    assert iam["create_iam"] == '${var.existing_role_arn == ""}'
    assert iam["policy_docs"] == "${local.create_iam ? local.policies : {}}"
    assert config("ecs_service").locals["create_role"] == "${var.execution_role_arn == null}"


def test_default_mode_creates_least_privilege_roles_and_lab_mode_none():
    root = config()
    assert root.variables["existing_role_arn"]["default"] == ""
    assert root.locals["restricted_account"] == '${var.existing_role_arn != ""}'
    assert root.locals["execution_role_arn"] == (
        "${local.restricted_account ? var.existing_role_arn : null}"
    )
    modules = root.modules
    assert modules["iam"]["existing_role_arn"] == "${var.existing_role_arn}"
    assert modules["kms"]["create_key"] == "${!local.restricted_account}"
    assert modules["network"]["flow_logs_enabled"] == "${!local.restricted_account}"
    assert modules["aurora"]["enhanced_monitoring"] == "${!local.restricted_account}"
    for name, body in modules.items():
        if body["source"] == "./modules/ecs_service":
            assert body["execution_role_arn"] == "${local.execution_role_arn}", name
            assert body["task_role_arn"] == f'${{module.iam.task_role_arns["{name}"]}}', name
    # every task gets a role in both modes
    outputs = config("iam").outputs["task_role_arns"]["value"]
    assert "for k, role in aws_iam_role.task : k => role.arn" in outputs
    assert "for k in local.services : k => var.existing_role_arn" in outputs
    assert set(config("iam").locals["services"]) == {
        name for name, b in modules.items() if b["source"] == "./modules/ecs_service"
    }
    # without a key, each resource falls back to its AWS managed key, never to no encryption
    assert config("kms").outputs["key_arn"]["value"] == (
        "${var.create_key ? aws_kms_key.this[0].arn : null}"
    )
    ecr = one_block(
        config("ecr").resource("aws_ecr_repository", "this")["encryption_configuration"]
    )
    assert ecr["encryption_type"] == '${var.kms_key_arn == null ? "AES256" : "KMS"}'
    assert config("aurora").resource("aws_rds_cluster", "this")["storage_encrypted"] is True
    redis = config("redis").resource("aws_elasticache_replication_group", "this")
    assert redis["at_rest_encryption_enabled"] is True
    instance = config("aurora").resource("aws_rds_cluster_instance", "this")
    assert instance["monitoring_interval"] == "${var.enhanced_monitoring ? 60 : 0}"


def one_block(block: Any) -> Any:
    return block[0] if isinstance(block, list) else block


def test_the_switch_is_documented_in_the_tfvars_template():
    template = (ROOT / "ops" / "terraform" / "terraform.tfvars.template").read_text()
    assert "existing_role_arn" in template and "LabRole" in template


# --- the relay: the only publisher


def test_relay_role_publishes_batches_to_the_topic_and_nothing_else(moto_iam):
    """sns:PublishBatch with exactly the relay role's policy (sns:Publish on the topic, which
    AWS checks for PublishBatch too); another topic, the queue, or the policy without
    sns:Publish: denied."""
    topic = moto_iam.arns["var.topic_arn"]
    entries = [{"Id": str(i), "Message": f"outbox entry {i}"} for i in range(10)]
    admin_sqs = moto_iam.client("sqs")
    try:
        relay = moto_iam.user_with(role_policy("relay", moto_iam.arns))
        sns = moto_iam.client("sns", relay)
        published = sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=entries)
        assert len(published["Successful"]) == 10 and not published["Failed"], published

        other = moto_iam.client("sns").create_topic(Name=f"other{uuid.uuid4().hex[:8]}")
        with pytest.raises(ClientError, match="AccessDenied"):
            sns.publish_batch(TopicArn=other["TopicArn"], PublishBatchRequestEntries=entries)
        with pytest.raises(ClientError, match="AccessDenied"):
            moto_iam.client("sqs", relay).send_message(
                QueueUrl=moto_iam.messaging["TICKET_QUEUE_URL"], MessageBody="straight in"
            )

        short = moto_iam.user_with(role_policy("relay", moto_iam.arns, without="sns:Publish"))
        with pytest.raises(ClientError, match="AccessDenied"):
            moto_iam.client("sns", short).publish_batch(
                TopicArn=topic, PublishBatchRequestEntries=entries
            )
    finally:  # the other tests here drain this queue
        admin_sqs.purge_queue(QueueUrl=moto_iam.messaging["TICKET_QUEUE_URL"])


def test_the_purchase_role_may_not_publish(moto_iam):
    """A purchase writes its outbox entry in Redis; its role has no AWS right at all."""
    assert role_policy("purchase", moto_iam.arns) is None
    purchase = moto_iam.user_with(role_policy("purchase", moto_iam.arns))
    with pytest.raises(ClientError, match="AccessDenied"):
        moto_iam.client("sns", purchase).publish(
            TopicArn=moto_iam.arns["var.topic_arn"], Message="a ticket"
        )
