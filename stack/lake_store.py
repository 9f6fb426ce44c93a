"""Where the lake lives: LocalStack's S3 (LAKE_STORE=localstack, the default), S3Proxy (LAKE_STORE=s3proxy), or an S3
of the user's (LAKE_S3_ENDPOINT: MinIO, AWS). `make up` readies it, with a clear error for an unreachable store, keys
it refuses or a bucket it lacks, and records the choice: later commands (`make down` and `make up` too) keep it.
`make status` says which it is and what the raw and invalid topics keep because of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.config import LAKE_STORE_RECORD, LAKE_STORE_VARIABLES, Config
from pipeline.deployment import runtime_dir
from stack import s3proxy
from stack.process import ServiceError


def marker(config: Config) -> Path:
    return runtime_dir(config) / LAKE_STORE_RECORD


def record(config: Config) -> None:
    """Remember the store (pipeline.config.load follows it), or forget it for the default."""
    if config.lake_on_localstack:
        marker(config).unlink(missing_ok=True)
        return
    values = config.environment(("lake",))
    marker(config).parent.mkdir(parents=True, exist_ok=True)
    marker(config).write_text(json.dumps({name: values[name] for name in LAKE_STORE_VARIABLES}) + "\n")


def client(config: Config) -> Any:
    """boto3's S3 client of the lake's store: path-style (bucket names with dots), checksums only where S3 requires
    them (S3Proxy does not implement the default CRC headers), quick to give up (the stack's checks and clean-ups)."""
    import boto3
    from botocore.config import Config as BotoConfig

    aws = config.aws
    options = BotoConfig(
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=5,
        read_timeout=30,
        retries={"max_attempts": 2, "mode": "standard"},
    )
    return boto3.client(
        "s3",
        endpoint_url=config.lake.s3_endpoint,
        region_name=aws.region,
        aws_access_key_id=aws.access_key_id,
        aws_secret_access_key=aws.secret_access_key,
        config=options,
    )


def prepare(config: Config) -> None:
    """The lake's store running (S3Proxy started if it is the choice) and holding the lake's bucket: made on a store
    of the stack's own, required on another. A ServiceError says what is wrong and what to do."""
    if config.lake.store == "s3proxy":
        s3proxy.start(config)
    check_bucket(config, create=config.lake.store == "s3proxy" or config.lake_on_localstack)
    record(config)


def check_bucket(config: Config, create: bool) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, endpoint = config.lake.bucket, config.lake.s3_endpoint
    s3 = client(config)
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code not in ("404", "NoSuchBucket"):
            raise ServiceError(
                f"the lake's store at {endpoint} refuses bucket {bucket} to these keys ({code}: {exc}); set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to keys it takes"
            ) from exc
    except BotoCoreError as exc:
        raise ServiceError(
            f"the lake's store at {endpoint} does not answer ({exc}); start it, or set LAKE_S3_ENDPOINT to one that "
            "does (LAKE_STORE=s3proxy runs one with the stack)"
        ) from exc
    if not create:
        raise ServiceError(
            f"the lake's store at {endpoint} has no bucket {bucket}; create it there, or set LAKE_BUCKET to one it has"
        )
    # LocalStack, as AWS, wants the region named outside us-east-1; S3Proxy takes no location.
    where = (
        {"CreateBucketConfiguration": {"LocationConstraint": config.aws.region}} if config.lake_on_localstack else {}
    )
    s3.create_bucket(Bucket=bucket, **where)


def status(config: Config) -> list[str]:
    """`make status`'s lines: S3Proxy's (when it is the store) and where the lake is, with the topics' rule."""
    retention = config.kafka.retention_ms
    kept = "everything" if retention == "-1" else f"{int(retention) / 86_400_000:g} days"
    if config.lake_on_localstack:
        where = (
            f"on LocalStack's S3 ({config.lake.s3_endpoint}), which a LocalStack restart empties: rebuilt from Kafka"
        )
    else:
        where = (
            f"on {config.lake.store if config.lake.store == 's3proxy' else 'S3'} at {config.lake.s3_endpoint}: durable"
        )
    lines = [s3proxy.status(config)] if config.lake.store == "s3proxy" else []
    return [*lines, f"lake: bucket {config.lake.bucket} {where}; the raw and invalid topics keep {kept}"]
