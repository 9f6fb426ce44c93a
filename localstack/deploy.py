"""`make deploy`: the collector to Lambda + API Gateway on LocalStack, and the shop to an S3 website.

Runs `chalice deploy --stage localstack` (or --stage bench) against LocalStack (AWS_ENDPOINT_URL), then:
  - applies the collector settings set in this shell (any variable of chalicelib/settings.py's DEFAULTS,
    e.g. KAFKA_BOOTSTRAP_SERVERS) on top of the stage's environment, as `chalice local` would see them;
  - uploads frontend/ to the website bucket with the API's URL written into config.js;
  - writes what it deployed to <runtime>/deployment.json for the other stages and prints the URLs.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from chalicelib.settings import DEFAULTS, setting
from stack import localstack
from stack.paths import REPO, runtime_dir

APP_DIR = REPO / "chalice_app"
FRONTEND_DIR = REPO / "frontend"
STAGE = "localstack"
API_STAGE = "api"


def deployment_file(stage: str = STAGE) -> Path:
    """What a stage's deploy recorded: <runtime>/deployment.json for the main stage, deployment-<stage>.json else."""
    return runtime_dir() / ("deployment.json" if stage == STAGE else f"deployment-{stage}.json")


def api_url(rest_api_id: str) -> str:
    """The API's base URL as LocalStack serves it; no DNS needed (chalice prints AWS's form)."""
    return f"{localstack.endpoint_url()}/restapis/{rest_api_id}/{API_STAGE}/_user_request_"


def website_url(bucket: str) -> str:
    """The S3 website's URL for a browser: *.localhost.localstack.cloud resolves to 127.0.0.1 by public DNS."""
    _, port = localstack.listen()
    return f"http://{bucket}.s3-website.localhost.localstack.cloud:{port}"


def staged_app() -> Path:
    """A copy of chalice_app/ in the runtime folder, deployed from there.

    Chalice records what it deployed under .chalice/deployed/: that state belongs to this LocalStack
    (which forgets everything when it restarts), not to the source tree, and two stacks (a developer's
    and the test suite's) must not share it.
    """
    staging = runtime_dir() / "chalice_app"
    for entry in staging.iterdir() if staging.exists() else ():
        if entry.name == ".chalice":
            continue  # its deployed/ state is what lets chalice update instead of create
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    ignore = shutil.ignore_patterns("__pycache__", "deployed", "deployments")
    shutil.copytree(APP_DIR, staging, dirs_exist_ok=True, ignore=ignore)
    return staging


def deploy_collector(stage: str) -> dict[str, str]:
    env = {**os.environ, **localstack.aws_environment()}
    chalice = Path(sys.executable).parent / "chalice"
    app_dir = staged_app()
    subprocess.run([str(chalice), "deploy", "--stage", stage], cwd=app_dir, env=env, check=True)
    deployed = json.loads((app_dir / ".chalice" / "deployed" / f"{stage}.json").read_text())
    resources = {r["name"]: r for r in deployed["resources"]}
    function = resources["api_handler"]["lambda_arn"].rsplit(":", 1)[-1]
    rest_api_id = resources["rest_api"]["rest_api_id"]

    overrides = {name: os.environ[name] for name in DEFAULTS if os.environ.get(name)}
    if overrides:
        lambda_client = localstack.client("lambda")
        current = lambda_client.get_function_configuration(FunctionName=function)
        variables = {**current.get("Environment", {}).get("Variables", {}), **overrides}
        lambda_client.update_function_configuration(FunctionName=function, Environment={"Variables": variables})
        lambda_client.get_waiter("function_updated_v2").wait(FunctionName=function)
    return {"function_name": function, "rest_api_id": rest_api_id, "api_url": api_url(rest_api_id)}


def deploy_website(collector_url: str) -> dict[str, str]:
    bucket = setting("WEBSITE_BUCKET")
    s3 = localstack.ensure_bucket(bucket)
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
            body = website_config(collector_url).encode()
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        if content_type.startswith("text/") or key.endswith(".js"):
            content_type = ("text/javascript" if key.endswith(".js") else content_type) + "; charset=utf-8"
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    return {"website_bucket": bucket, "website_url": website_url(bucket)}


def website_config(collector_url: str) -> str:
    """The shop's config.js as deployed: the same shape as frontend/config.js, with the API's URL."""
    return (
        "// Written by `make deploy` (localstack/deploy.py): the collector's API Gateway URL on LocalStack.\n"
        f"export default {json.dumps({'collectorUrl': collector_url})};\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", default=STAGE, help=f"a stage of chalice_app/.chalice/config.json ({STAGE})")
    args = parser.parse_args(argv)
    if not localstack.healthy():
        sys.exit(f"deploy: LocalStack does not answer at {localstack.endpoint_url()}; run `make up` first")
    started = time.monotonic()
    deployment = deploy_collector(args.stage)
    if args.stage == STAGE:  # one shop, talking to the main stage
        deployment |= deploy_website(deployment["api_url"])
    deployment["deploy_seconds"] = f"{time.monotonic() - started:.1f}"
    deployment_file(args.stage).parent.mkdir(parents=True, exist_ok=True)
    deployment_file(args.stage).write_text(json.dumps(deployment, indent=2) + "\n")
    print(
        f"deploy: collector {deployment['function_name']} behind API Gateway {deployment['rest_api_id']} "
        f"in {deployment['deploy_seconds']}s"
    )
    print(f"  API      {deployment['api_url']}  (try: curl {deployment['api_url']}/ping)")
    if "website_url" in deployment:
        print(f"  website  {deployment['website_url']}/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
