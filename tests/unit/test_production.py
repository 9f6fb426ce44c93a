"""The `prod` stage (chalice_app/.chalice/config.json): the collector on AWS as docs/production.md describes it.

Its settings parse, it names every setting a deployment next to MSK needs, its IAM policy grants what the code
calls, and `chalice package --stage prod` turns it into a SAM template that carries them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Config, variables
from pipeline.contract import REGION
from stack.deploy import staged_app
from tests.conftest import APP_DIR, REPO

CONFIG = json.loads((APP_DIR / ".chalice" / "config.json").read_text())
PROD = CONFIG["stages"]["prod"]
ENVIRONMENT = PROD["environment_variables"]
#: What the collector needs beside MSK over SASL/SCRAM, with the spool and write keys on.
REQUIRED = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_SECRET_ARN",
    "COLLECTOR_SPOOL",
    "SPOOL_QUEUE",
    "SPOOL_BUCKET",
    "REQUIRE_WRITE_KEY",
    "WRITE_KEYS_PARAMETER",
    "CORS_ALLOWED_ORIGINS",
)


def test_the_prod_stage_names_every_required_setting_and_they_parse() -> None:
    assert set(REQUIRED) <= set(ENVIRONMENT), set(REQUIRED) - set(ENVIRONMENT)
    known = {variable.name for _, variable in variables()}
    assert set(ENVIRONMENT) <= known, set(ENVIRONMENT) - known  # no setting the code ignores
    settings = Config.from_env(ENVIRONMENT)
    assert settings.kafka.security_protocol == "SASL_SSL" and settings.kafka.sasl_mechanism == "SCRAM-SHA-512"
    assert all(s.endswith(":9096") and "127.0.0.1" not in s for s in settings.kafka.servers)  # MSK's SASL/SCRAM port
    assert settings.kafka.sasl_secret_arn.startswith("arn:aws:secretsmanager:")
    assert ":secret:AmazonMSK_" in settings.kafka.sasl_secret_arn  # MSK takes only secrets named so
    assert settings.collector.spool == "sqs" and settings.collector.require_write_key
    assert settings.collector.cors_allowed_origins and all(
        o.startswith("https://") for o in settings.collector.cors_allowed_origins
    )
    assert PROD["subnet_ids"] and PROD["security_group_ids"]  # in the VPC, next to the brokers


def test_the_prod_policy_grants_what_the_collector_calls() -> None:
    assert PROD["autogen_policy"] is False
    policy = json.loads((APP_DIR / ".chalice" / PROD["iam_policy_file"]).read_text())
    grants: dict[str, list[str]] = {}
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        for action in statement["Action"]:
            grants.setdefault(action, []).append(statement["Resource"])
    settings = Config.from_env(ENVIRONMENT)

    def granted(action: str, resource_part: str) -> bool:
        return any(resource_part in resource or resource == "*" for resource in grants.get(action, []))

    assert granted("ssm:GetParameter", f"parameter{settings.collector.write_keys_parameter}")
    assert granted("secretsmanager:GetSecretValue", settings.kafka.sasl_secret_arn.rsplit(":", 1)[-1])
    for action in ("sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueUrl"):
        assert granted(action, settings.collector.spool_queue), action
    for action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject"):
        assert granted(action, settings.collector.spool_bucket), action
    assert granted("ec2:CreateNetworkInterface", "*") and granted("logs:PutLogEvents", "arn:aws:logs:")


def test_the_production_page_names_every_setting_of_the_stage() -> None:
    page = (REPO / "docs" / "production.md").read_text()
    missing = [name for name in (*REQUIRED, "subnet_ids", "security_group_ids") if name not in page]
    assert not missing, missing


@pytest.mark.slow
def test_chalice_packages_the_prod_stage_into_a_sam_template(tmp_path: Path) -> None:
    app = staged_app(tmp_path / "chalice_app")  # as `make deploy` stages it: the ground floor in its vendor/
    out = tmp_path / "out"
    chalice = Path(sys.executable).parent / "chalice"
    env = {**os.environ, "AWS_DEFAULT_REGION": REGION}
    command = [str(chalice), "package", "--stage", "prod", str(out)]
    subprocess.run(command, cwd=app, env=env, check=True, capture_output=True)
    template: dict[str, Any] = json.loads((out / "sam.json").read_text())
    functions = {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    handler = functions["APIHandler"]
    assert handler["Environment"]["Variables"] == {**ENVIRONMENT}
    assert handler["VpcConfig"] == {"SubnetIds": PROD["subnet_ids"], "SecurityGroupIds": PROD["security_group_ids"]}
    assert handler["ReservedConcurrentExecutions"] == PROD["reserved_concurrency"]
    assert handler["Timeout"] == PROD["lambda_timeout"] and handler["MemorySize"] == PROD["lambda_memory_size"]
    assert "DrainSpool" in functions or any("drain" in name.lower() for name in functions)
    # The package carries the ground floor at its root, beside chalicelib/.
    with zipfile.ZipFile(out / "deployment.zip") as package:
        names = set(package.namelist())
    assert {"pipeline/config.py", "pipeline/contract.py", "chalicelib/collector.py", "app.py"} <= names
