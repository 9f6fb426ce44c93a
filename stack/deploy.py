"""`make deploy`: the collector to Lambda + API Gateway on LocalStack, and the shop to an S3 website.

Runs `chalice deploy --stage localstack` (or --stage bench) against LocalStack (AWS_ENDPOINT_URL), from a copy of
chalice_app/ that carries the ground floor (pipeline/, in Chalice's vendor/ folder), then:
  - applies the collector's settings (the kafka and collector sections of the tree) that differ from their
    defaults, e.g. KAFKA_BOOTSTRAP_SERVERS, on top of the stage's environment, as `chalice local` would see them;
  - uploads frontend/ to the website bucket with the API's URL written into config.js;
  - writes what it deployed to <runtime>/deployment.json for the other stages and prints the URLs.
Before that it creates what the stage needs and Chalice does not make: the spool's queue and bucket, the
write keys of the shop and the generator in SSM (kept across redeploys, recorded in the deployment), the
embedded broker's SCRAM user in Secrets Manager, and
the REST API under a fixed id (LocalStack's `_custom_id_` tag), so the API's URL survives a LocalStack
restart and a redeploy: the shop, the generator and `make run` keep working with the URL they have.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from generator.synthetic import PACKAGE_ID as GENERATOR_PACKAGE
from pipeline.config import Config
from pipeline.deployment import MAIN_STAGE, deployment_file, read_deployment
from pipeline.schema_registry import value_subject
from stack import kafka_security, localstack, registry
from stack.cluster import current
from stack.paths import REPO, runtime_dir

APP_DIR = REPO / "chalice_app"
FRONTEND_DIR = REPO / "frontend"
STAGE = MAIN_STAGE
API_STAGE = "api"
APP_NAME = "clickstream-collector"
# Longer than the drainer Lambda's timeout, so a batch is never handed out twice at once; SQS's longest
# retention, so a spooled batch outlives any broker outage worth having.
SPOOL_VISIBILITY_TIMEOUT_S = 20
SPOOL_RETENTION_S = 14 * 24 * 3600

#: The shop's package_id (frontend/shop.js sends it), and the one the bench marks its lake events with.
SHOP_PACKAGE = "acme.shop.web"
BENCH_PACKAGE = "acme.bench"
#: The package_ids each source's write key may write.
SOURCE_PACKAGES = {"shop": (SHOP_PACKAGE,), "generator": (GENERATOR_PACKAGE, BENCH_PACKAGE)}


def stage_environment(stage: str) -> dict[str, str]:
    """The environment variables chalice_app/.chalice/config.json gives the stage's functions."""
    config = json.loads((APP_DIR / ".chalice" / "config.json").read_text())
    return {k: str(v) for k, v in config["stages"][stage].get("environment_variables", {}).items()}


def rest_api_id(stage: str) -> str:
    """The stage's fixed API id: ten characters, as AWS's, derived from the app and the stage."""
    return hashlib.sha256(f"{APP_NAME}-{stage}".encode()).hexdigest()[:10]


def api_url(rest_api_id: str, config: Config | None = None) -> str:
    """The API's base URL as LocalStack serves it; no DNS needed (chalice prints AWS's form)."""
    return f"{localstack.endpoint_url(config)}/restapis/{rest_api_id}/{API_STAGE}/_user_request_"


#: The shop's demo link carries a campaign's parameters, which the lake's enrichment files as utm_* columns.
DEMO_CAMPAIGN = "utm_source=make-deploy&utm_medium=demo&utm_campaign=launch"


def shop_link(deployment: dict[str, str]) -> str:
    return f"{deployment['website_url']}/index.html?{DEMO_CAMPAIGN}"


def website_url(bucket: str, config: Config | None = None) -> str:
    """The S3 website's URL for a browser: *.localhost.localstack.cloud resolves to 127.0.0.1 by public DNS."""
    _, port = localstack.listen(config)
    return f"http://{bucket}.s3-website.localhost.localstack.cloud:{port}"


def staged_app(staging: Path | None = None) -> Path:
    """A copy of chalice_app/ (in the runtime folder unless told), with the ground floor in its vendor/ folder (which
    Chalice puts at the root of the Lambda's package), deployed or packaged from there.

    Chalice records what it deployed under .chalice/deployed/: that state belongs to this LocalStack
    (which forgets everything when it restarts), not to the source tree, and two stacks (a developer's
    and the test suite's) must not share it.
    """
    staging = staging or runtime_dir() / "chalice_app"
    for entry in staging.iterdir() if staging.exists() else ():
        if entry.name == ".chalice":
            continue  # its deployed/ state is what lets chalice update instead of create
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    ignore = shutil.ignore_patterns("__pycache__", "deployed", "deployments")
    shutil.copytree(APP_DIR, staging, dirs_exist_ok=True, ignore=ignore)
    shutil.copytree(REPO / "pipeline", staging / "vendor" / "pipeline", ignore=ignore)
    return staging


def ensure_spool(stage: Config) -> None:
    """The spool's queue and bucket (chalicelib/sinks/spool.py) of a stage's configuration, unless they exist."""
    sqs = localstack.client("sqs", stage)
    sqs.create_queue(
        QueueName=stage.collector.spool_queue,
        Attributes={
            "VisibilityTimeout": str(SPOOL_VISIBILITY_TIMEOUT_S),
            "MessageRetentionPeriod": str(SPOOL_RETENTION_S),
        },
    )
    localstack.ensure_bucket(stage.collector.spool_bucket, stage)


def change_write_keys(name: str, change: Callable[[dict[str, Any]], None], config: Config | None = None) -> None:
    """Read the write keys' parameter `name` (none yet: no keys), let `change` edit its keys, write it back."""
    ssm = localstack.client("ssm", config)
    try:
        document = json.loads(ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])
    except ssm.exceptions.ParameterNotFound:
        document = {"keys": {}}
    change(document["keys"])
    ssm.put_parameter(Name=name, Value=json.dumps(document), Type="SecureString", Overwrite=True)


def ensure_write_keys(stage: str, stage_config: Config) -> dict[str, str]:
    """A write key per source in the stage's SSM parameter (chalicelib/write_keys.py), and the keys.

    A source keeps the key its last deploy recorded, so a redeploy (or LocalStack restarted empty) does not
    change the key the shop and the generator hold; keys others added to the parameter stay.
    """
    recorded = (read_deployment(stage, stage_config) or {}).get("write_keys") or {}
    keys = {source: recorded.get(source) or f"{source}-{secrets.token_urlsafe(18)}" for source in SOURCE_PACKAGES}

    def add_sources(entries: dict[str, Any]) -> None:
        for source, packages in SOURCE_PACKAGES.items():
            entries[keys[source]] = {"packages": list(packages), "source": source}

    change_write_keys(stage_config.collector.write_keys_parameter, add_sources, stage_config)
    return keys


def spool_depth(config: Config | None = None) -> tuple[int, int] | None:
    """Batches waiting in the spool for Kafka, and batches a drainer holds right now; None without a queue."""
    config = config or current()
    sqs = localstack.client("sqs", config)
    try:
        url = sqs.get_queue_url(QueueName=config.collector.spool_queue)["QueueUrl"]
    except sqs.exceptions.QueueDoesNotExist:
        return None
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    waiting, draining = (int(attributes.get(n, 0)) for n in names)
    return waiting, draining


def spool_status(config: Config | None = None) -> str:
    config = config or current()
    queue = config.collector.spool_queue
    depth = spool_depth(config)
    if depth is None:
        return f"spool: no queue {queue} (make deploy creates it)"
    return f"spool: {queue} holds {depth[0]} batch(es) waiting for Kafka, {depth[1]} being drained"


def deployed_record(app_dir: Path, stage: str) -> Path:
    """Chalice's record of what it deployed for `stage`."""
    return app_dir / ".chalice" / "deployed" / f"{stage}.json"


def pin_rest_api(stage: str, app_dir: Path, config: Config) -> str:
    """Make Chalice update the API with the stage's fixed id instead of creating one with a random id.

    The API is created under that id (LocalStack honours a `_custom_id_` tag) when LocalStack lacks it, and
    Chalice's record of what it deployed is pointed at it: Chalice then updates that API in place.
    """
    api_id = rest_api_id(stage)
    apigateway = localstack.client("apigateway", config)
    try:
        apigateway.get_rest_api(restApiId=api_id)
    except apigateway.exceptions.NotFoundException:
        apigateway.create_rest_api(name=APP_NAME, tags={"_custom_id_": api_id})
    record = deployed_record(app_dir, stage)
    deployed = json.loads(record.read_text()) if record.exists() else {"schema_version": "2.0", "backend": "api"}
    resources = [r for r in deployed.get("resources", []) if r.get("name") != "rest_api"]
    resources.append({"name": "rest_api", "resource_type": "rest_api", "rest_api_id": api_id, "rest_api_url": ""})
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({**deployed, "resources": resources}, indent=2))
    return api_id


#: The sections the collector reads: a deploy applies their changed settings to the stage's functions.
COLLECTOR_SECTIONS = ("kafka", "collector", "registry")


def stage_config(stage: str, config: Config) -> tuple[Config, dict[str, str]]:
    """What a stage's functions run with: the stage's own variables (config.json) with the deploying configuration's
    changed collector settings on top; and those changes."""
    overrides = config.environment(COLLECTOR_SECTIONS, changed_only=True)
    return Config.from_env({**config.environment(), **stage_environment(stage), **overrides}), overrides


def deploy_collector(stage: str, config: Config) -> dict[str, Any]:
    functions_config, overrides = stage_config(stage, config)
    # The registry's ids first (under the stage's topics): an incompatible change to schemas/ fails the deploy with
    # the registry's reason, and the functions learn the raw topic's id here, so a registry outage never fails a
    # request.
    schema_ids = registry.register_schemas(functions_config)
    raw_id = schema_ids[value_subject(functions_config.kafka.raw_topic)]
    functions_config = functions_config.replace(registry={"raw_schema_id": raw_id})
    overrides |= functions_config.environment(("registry",), changed_only=True)
    ensure_spool(functions_config)
    write_keys = ensure_write_keys(stage, functions_config)
    kafka_secret = kafka_security.ensure_secret(config)
    chalice = Path(sys.executable).parent / "chalice"
    app_dir = staged_app()
    api_id = pin_rest_api(stage, app_dir, config)
    # Chalice reads app.py here, at deploy time: it sees the stage's settings (the spool queue's name).
    env = functions_config.child_environment(as_variables=True) | localstack.quick_function_waiters()
    subprocess.run([str(chalice), "deploy", "--stage", stage], cwd=app_dir, env=env, check=True)
    resources = {r["name"]: r for r in json.loads(deployed_record(app_dir, stage).read_text())["resources"]}
    if resources["rest_api"]["rest_api_id"] != api_id:
        raise DeployError(f"chalice deployed API {resources['rest_api']['rest_api_id']}, not the pinned {api_id}")
    functions = {
        name: r["lambda_arn"].rsplit(":", 1)[-1]
        for name, r in resources.items()
        if r["resource_type"] == "lambda_function"
    }
    if overrides:
        lambda_client = localstack.client("lambda", config)
        for name in functions.values():
            current = lambda_client.get_function_configuration(FunctionName=name)
            variables = {**current.get("Environment", {}).get("Variables", {}), **overrides}
            lambda_client.update_function_configuration(FunctionName=name, Environment={"Variables": variables})
            localstack.wait_for_function(lambda_client, name)
    return {
        "function_name": functions["api_handler"],
        "rest_api_id": api_id,
        "api_url": api_url(api_id, config),
        "write_keys": write_keys,
        # The embedded broker's SASL_SSL user, for a client that takes KAFKA_SASL_SECRET_ARN.
        "kafka_sasl_secret_arn": kafka_secret,
        "schema_ids": schema_ids,
    }


def deploy_website(collector_url: str, write_key: str, config: Config) -> dict[str, str]:
    bucket = config.stack.website_bucket
    s3 = localstack.ensure_bucket(bucket, config)
    s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration={"IndexDocument": {"Suffix": "index.html"}})
    public_read = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(public_read))
    for path in sorted(p for p in FRONTEND_DIR.rglob("*") if p.is_file()):
        key = path.relative_to(FRONTEND_DIR).as_posix()
        body = path.read_bytes()
        if key == "config.js":
            body = website_config(collector_url, write_key).encode()
        elif key.endswith(".html"):
            body = with_security_policy(body.decode(), collector_url).encode()
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        if content_type.startswith("text/") or key.endswith(".js"):
            content_type = ("text/javascript" if key.endswith(".js") else content_type) + "; charset=utf-8"
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    return {"website_bucket": bucket, "website_url": website_url(bucket, config)}


def website_config(collector_url: str, write_key: str) -> str:
    """The shop's config.js as deployed: the same shape as frontend/config.js, with the API's URL and the shop's
    write key (public, like any tracker's key: it names the source, and lets it be revoked)."""
    return (
        "// Written by `make deploy` (stack/deploy.py): the collector's API Gateway URL on LocalStack.\n"
        f"export default {json.dumps({'collectorUrl': collector_url, 'writeKey': write_key})};\n"
    )


def content_security_policy(collector_url: str) -> str:
    """The shop's policy: its own scripts and styles only, and requests (fetch, sendBeacon) to the collector only."""
    scheme, _, rest = collector_url.partition("://")
    collector_origin = f"{scheme}://{rest.split('/', 1)[0]}"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src {collector_origin}; base-uri 'none'; form-action 'self'"
    )


#: Where the policy goes in a page: right after its charset, which must come first.
_CHARSET = '<meta charset="utf-8">'


def with_security_policy(html: str, collector_url: str) -> str:
    """A page with its Content-Security-Policy and Referrer-Policy as <meta> elements.

    An S3 website sends no headers but an object's Content-Type and a few of its metadata (Cache-Control and the
    like), so the policies travel in the page; a browser applies both as it would the headers. On AWS, CloudFront's
    response headers policy sends them as headers, with X-Content-Type-Options (docs/production.md).
    """
    if _CHARSET not in html:
        raise DeployError(f"a page without {_CHARSET}: nowhere to put its security policy")
    policies = (
        f'\n  <meta http-equiv="Content-Security-Policy" content="{content_security_policy(collector_url)}">'
        '\n  <meta name="referrer" content="strict-origin-when-cross-origin">'
    )
    return html.replace(_CHARSET, _CHARSET + policies, 1)


def deploy(stage: str = STAGE, config: Config | None = None) -> dict[str, Any]:
    """Deploy `stage` (and, for the main stage, the shop), record it, and return the record."""
    config = config or current()
    if not localstack.healthy(config):
        raise DeployError(f"LocalStack does not answer at {localstack.endpoint_url(config)}; run `make up` first")
    started = time.monotonic()
    deployment = deploy_collector(stage, config)
    if stage == STAGE:  # one shop, talking to the main stage
        deployment |= deploy_website(deployment["api_url"], deployment["write_keys"]["shop"], config)
    deployment["deploy_seconds"] = f"{time.monotonic() - started:.1f}"
    record = deployment_file(stage, config)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(deployment, indent=2) + "\n")
    return deployment


class DeployError(RuntimeError):
    """A deploy could not run (LocalStack is not there)."""
