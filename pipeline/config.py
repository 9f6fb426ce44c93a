"""The pipeline's reference configuration: every setting of every stage, its environment variable, its default and
what it means, in one typed tree (in the spirit of Snowplow's reference.conf).

A process reads the tree once (`load()`): from CLICKSTREAM_CONFIG, the whole tree as one JSON document, when its
parent handed it one, else from its environment, where an unset or empty variable takes its default. A parent hands
the tree to a child whole, as that document (`Config.to_json()`), or as the environment made from it
(`Config.environment()`: for a Lambda or a container). No stage defaults a setting of its own. README's settings
table is made from this module (`python -m pipeline readme`); a test fails when the two differ.

Standard library only, and Python 3.10 (the compose image's): the Lambda, the lake writer and every stage import it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import contract
from pipeline.config_sections import (
    CollectorConfig,
    KafkaConfig,
    LakeConfig,
    MaintenanceConfig,
    SessionsConfig,
    SparkConfig,
    Variable,
)
from pipeline.config_stack import (
    AwsConfig,
    BenchConfig,
    GeneratorConfig,
    KafkaUiConfig,
    RegistryConfig,
    StackConfig,
    TestsConfig,
)

#: Where a parent puts the whole tree for a child.
CONFIG_VARIABLE = "CLICKSTREAM_CONFIG"
REPO = Path(__file__).resolve().parents[1]


class ConfigError(ValueError):
    """A setting's value cannot be read (not a number, not one of its choices)."""


@dataclass(frozen=True)
class Config:
    kafka: KafkaConfig
    collector: CollectorConfig
    lake: LakeConfig
    sessions: SessionsConfig
    maintenance: MaintenanceConfig
    spark: SparkConfig
    aws: AwsConfig
    stack: StackConfig
    registry: RegistryConfig
    kafka_ui: KafkaUiConfig
    generator: GeneratorConfig
    bench: BenchConfig
    tests: TestsConfig

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """The tree from environment variables (os.environ by default); unset or empty ones take their default."""
        env = os.environ if environ is None else environ
        sections = {f.name: _read_section(_section_type(f), env) for f in dataclasses.fields(cls)}
        return _derived(cls(**sections))

    @classmethod
    def defaults(cls) -> Config:
        return cls.from_env({})

    @classmethod
    def from_json(cls, document: str) -> Config:
        """The tree a parent serialised with to_json()."""
        data = json.loads(document)
        sections = {}
        for item in dataclasses.fields(cls):
            values = data[item.name]
            # JSON has lists where the tree has tuples.
            sections[item.name] = _section_type(item)(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
            )
        return cls(**sections)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @property
    def lake_on_localstack(self) -> bool:
        """Whether the lake is on LocalStack's S3, which a LocalStack restart empties (the lake is rebuilt from Kafka),
        rather than on a durable store (S3Proxy, or one LAKE_S3_ENDPOINT names)."""
        return self.lake.store == "localstack" and self.lake.s3_endpoint == self.aws.endpoint_url

    @property
    def keeps_sessions(self) -> bool:
        """Whether the lake writer keeps the sessions table up: LAKE_SESSIONS on, and the enrichment whose columns the
        sessions are made of."""
        return self.sessions.enabled and self.lake.enrichment

    def environment(self, sections: tuple[str, ...] | None = None, changed_only: bool = False) -> dict[str, str]:
        """The environment variables that give this tree (of `sections` only, if named); with `changed_only`, only
        those whose value is not the default (what a deploy applies on top of a stage's own variables)."""
        defaults = Config.defaults().environment(sections) if changed_only else {}
        env: dict[str, str] = {}
        for name in sections or tuple(f.name for f in dataclasses.fields(self)):
            section = getattr(self, name)
            for item in dataclasses.fields(section):
                variable: Variable = item.metadata["variable"]
                env[variable.name] = _text(getattr(section, item.name))
        return {k: v for k, v in env.items() if not changed_only or defaults.get(k) != v}

    def replace(self, **sections: dict[str, Any]) -> Config:
        """A copy with some settings changed: replace(lake={"bucket": "b"}) (derived values are not recomputed)."""
        changed = {name: dataclasses.replace(getattr(self, name), **values) for name, values in sections.items()}
        return dataclasses.replace(self, **changed)

    def child_environment(self, base: Mapping[str, str] | None = None, as_variables: bool = False) -> dict[str, str]:
        """The environment of a child process: `base` (os.environ) with this tree in CLICKSTREAM_CONFIG, or, for a
        child that lays variables of its own over it (`chalice local`'s stage), as variables."""
        env = {k: v for k, v in (os.environ if base is None else base).items() if k != CONFIG_VARIABLE}
        return {**env, **self.environment()} if as_variables else {**env, CONFIG_VARIABLE: self.to_json()}


def load(environ: Mapping[str, str] | None = None) -> Config:
    """The tree this process runs with: the document its parent handed it, else its environment, with the lake store
    `make up` recorded in the runtime folder where the environment names none."""
    env = os.environ if environ is None else environ
    document = env.get(CONFIG_VARIABLE)
    if document:
        return Config.from_json(document)
    config = Config.from_env(env)
    if any(env.get(name) for name in LAKE_STORE_VARIABLES):
        return config  # the store named here, not the recorded one: both variables go together
    recorded = recorded_lake_store(config)
    return Config.from_env({**env, **recorded}) if recorded else config


#: Where `make up` records the lake store it readied (stack/lake_store.py), in the runtime folder, so every later
#: command (`make lake`, `make down`, `make up` again) follows the lake there without the variables.
LAKE_STORE_RECORD = "lake-store.json"
LAKE_STORE_VARIABLES = ("LAKE_STORE", "LAKE_S3_ENDPOINT")


def recorded_lake_store(config: Config) -> dict[str, str]:
    """The variables the runtime's lake store was chosen with; none for the default (LocalStack's S3)."""
    try:
        recorded = json.loads((Path(config.stack.runtime) / LAKE_STORE_RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return {k: str(v) for k, v in recorded.items() if k in LAKE_STORE_VARIABLES and v}


def variables() -> list[tuple[str, Variable]]:
    """Every setting as (section, its variable), in the tree's order."""
    return [
        (section.name, item.metadata["variable"])
        for section in dataclasses.fields(Config)
        for item in dataclasses.fields(_section_type(section))
    ]


# --- reading --------------------------------------------------------------------------------------------------

_SECTIONS = {
    cls.__name__: cls
    for cls in (
        KafkaConfig,
        CollectorConfig,
        LakeConfig,
        SessionsConfig,
        MaintenanceConfig,
        SparkConfig,
        AwsConfig,
        StackConfig,
        RegistryConfig,
        KafkaUiConfig,
        GeneratorConfig,
        BenchConfig,
        TestsConfig,
    )
}


def _section_type(item: dataclasses.Field[Any]) -> type:
    return _SECTIONS[item.type] if isinstance(item.type, str) else item.type


def _read_section(cls: type, env: Mapping[str, str]) -> Any:
    values = {}
    for item in dataclasses.fields(cls):
        variable: Variable = item.metadata["variable"]
        text = env.get(variable.name) or variable.default
        values[item.name] = _parse(variable, str(item.type), text)
    return cls(**values)


TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _parse(variable: Variable, kind: str, text: str) -> Any:
    text = text.strip()
    if variable.choices:
        chosen = [c for c in variable.choices if c.lower() == text.lower()]
        if not chosen:
            raise ConfigError(f"{variable.name}={text!r}: expected one of {', '.join(variable.choices)}")
        text = chosen[0]
    try:
        if kind == "bool":
            if text.lower() not in TRUE + FALSE:
                raise ValueError("expected on/off, true/false, yes/no or 1/0")
            return text.lower() in TRUE
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"{variable.name}={text!r}: {exc}") from None
    return text


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _derived(config: Config) -> Config:
    """Settings whose default follows another's (empty when unset), made concrete."""
    lake, aws, stack = config.lake, config.aws, config.stack
    host, port = contract.host_port(stack.gateway_listen.split(",")[0])
    endpoint = aws.endpoint_url or f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    runtime = stack.runtime or str(REPO / ".runtime")
    tables = {t: getattr(lake, f) or f"s3a://{lake.bucket}/{t}" for t, f in contract.LAKE_TABLE_FIELDS.items()}
    s3proxy = lake.store == "s3proxy"
    derived = config.replace(
        aws={"endpoint_url": endpoint},
        lake={
            "s3_endpoint": lake.s3_endpoint or (contract.S3PROXY_ENDPOINT if s3proxy else endpoint),
            "event_schema": lake.event_schema or str(REPO / contract.EVENT_SCHEMA_FILE),
            **{contract.LAKE_TABLE_FIELDS[t]: url.rstrip("/") for t, url in tables.items()},
        },
        spark={"checkpoint": config.spark.checkpoint or f"s3a://{lake.bucket}/_checkpoints/lake-writer"},
        stack={"runtime": runtime, "home": stack.home or os.path.expanduser("~/.cache/clickstream")},
        registry={"url": config.registry.url or f"http://127.0.0.1:{config.registry.port}"},
    )
    # LocalStack's S3 comes back empty after a restart, and the lake is rebuilt from the topics: they keep everything.
    durable = contract.DURABLE_RETENTION_MS
    return derived.replace(
        kafka={"retention_ms": config.kafka.retention_ms or ("-1" if derived.lake_on_localstack else durable)}
    )


# --- README's table ---------------------------------------------------------------------------------------------

README = REPO / "README.md"
TABLE_BEGIN = (
    "<!-- settings table: made by `make docs` (python -m pipeline readme); edit pipeline/config_sections.py -->"
)
TABLE_END = "<!-- end of the settings table -->"


def readme_table() -> str:
    """The settings as README shows them: a table per section."""
    lines: list[str] = []
    for section in dataclasses.fields(Config):
        cls = _section_type(section)
        lines += ["", f"**`{section.name}`**: {(cls.__doc__ or '').strip()}", ""]
        lines += ["| variable | default | meaning |", "|---|---|---|"]
        for item in dataclasses.fields(cls):
            v: Variable = item.metadata["variable"]
            shown = v.shown or (f"`{v.default}`" if v.default else "(empty)")
            lines.append(f"| `{v.name}` | {shown} | {v.doc} |")
    return "\n".join([TABLE_BEGIN, *lines, "", TABLE_END])


def readme_with_table(readme: str) -> str:
    """README's text with its settings table made anew."""
    head, found, rest = readme.partition(TABLE_BEGIN)
    if not found or TABLE_END not in rest:
        raise ConfigError(f"README.md has no settings table between {TABLE_BEGIN!r} and {TABLE_END!r}")
    return head + readme_table() + rest.split(TABLE_END, 1)[1]
