"""The inventory: an organisation's AI infrastructure, as the assessment reads it.

An inventory is JSON or YAML (see ``data/examples/`` and ``data/inventory.schema.json``);
:func:`load_inventory` parses and validates it and raises :class:`InventoryError` with every
problem named by its path (``compute.instances[3].gpu.count``). Unknown keys are refused, numbers
must be finite, and cross-references (instance → workloads and services, workload → datasets,
endpoint → service or workload) must resolve. A GPU model missing from the pack's GPU table is
not an error: :func:`unknown_gpus` lists them and the analyzers flag them.

The MLOps questionnaire (:data:`MLOPS_QUESTIONS`) is data here: the ``mlops`` analyzer scores
the answers, whose allowed values are ordered from least to most mature.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from conveyor.packs.assess.errors import InventoryError, Issue

__all__ = [
    "MAX_INVENTORY_BYTES",
    "MLOPS_QUESTIONS",
    "Budget",
    "Compliance",
    "Controls",
    "Dataset",
    "Endpoint",
    "Gpu",
    "Growth",
    "Instance",
    "Inventory",
    "MlopsQuestion",
    "ModelSpec",
    "Service",
    "Workload",
    "inventory_schema",
    "inventory_schema_text",
    "load_inventory",
    "path_of",
    "unknown_gpus",
]

MAX_INVENTORY_BYTES = 16 * 1024 * 1024  # the enterprise example is ~1 MB
MAX_DEPTH = 32  # the format nests 4 levels; anything deeper is not an inventory

Precision = Literal["fp32", "bf16", "fp16", "fp8", "int8", "int4"]
WorkloadType = Literal["training", "inference"]
WorkloadKind = Literal["chat", "completion", "embedding", "batch", "fine_tuning", "pretraining"]
Pricing = Literal["on_demand", "spot", "reserved"]
Provider = Literal["aws", "gcp", "azure", "on_prem", "other"]
StorageClass = Literal["hot", "warm", "cold", "archive"]
Framework = Literal["GDPR", "HIPAA", "SOC2", "EU_AI_ACT"]
AiActRisk = Literal["minimal", "limited", "high", "unacceptable"]

Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Percent = Annotated[float, Field(ge=0, le=100)]
NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=0, le=1_000_000)]


class _Model(BaseModel):
    # strict: "8" is not a GPU count, "yes" is not a boolean; extra keys are typos, refused.
    model_config = ConfigDict(
        strict=True, extra="forbid", frozen=True, allow_inf_nan=False, str_strip_whitespace=True
    )


class Organisation(_Model):
    name: Name
    industry: Name | None = None
    employees: Count | None = None


class Architecture(_Model):
    """Transformer shape, when the model-size table's assumption should not be used."""

    layers: Annotated[int, Field(ge=1, le=1000)]
    kv_heads: Annotated[int, Field(ge=1, le=1000)]
    head_dim: Annotated[int, Field(ge=1, le=4096)]


class ModelSpec(_Model):
    name: Name
    parameters_b: Annotated[float, Field(gt=0, le=100_000)]  # billions of parameters
    precision: Precision
    context_length: Annotated[int, Field(ge=1, le=10_000_000)] = 4096
    architecture: Architecture | None = None
    distilled_from: Name | None = None


class LatencySlo(_Model):
    p50_ms: Positive | None = None
    p95_ms: Positive | None = None
    ttft_ms: Positive | None = None  # time to first token (chat)


class Tokens(_Model):
    input: Annotated[int, Field(ge=0, le=10_000_000)]  # tokens per request
    output: Annotated[int, Field(ge=0, le=10_000_000)]


class Workload(_Model):
    id: Id
    name: Name | None = None
    type: WorkloadType
    kind: WorkloadKind
    model: ModelSpec
    requests_per_s: NonNegative | None = None  # inference: mean load
    peak_requests_per_s: NonNegative | None = None
    slo: LatencySlo | None = None
    tokens: Tokens | None = None  # per request
    turns_per_conversation: Annotated[int, Field(ge=1, le=10_000)] | None = None  # chat
    gpu_hours_per_month: NonNegative | None = None  # training
    batching: bool = False  # inference: continuous / dynamic batching on
    caching: bool = False  # inference: prompt / response cache on
    datasets: list[Id] = []
    ai_act_risk: AiActRisk | None = None  # the EU AI Act class of this use, if known
    critical: bool = False


class Gpu(_Model):
    model: Name  # e.g. "H100-SXM"; see data/gpus.json
    count: Annotated[int, Field(ge=1, le=64)]


class Utilisation(_Model):
    cpu_p50: Percent | None = None
    cpu_p95: Percent | None = None
    gpu_p50: Percent | None = None
    gpu_p95: Percent | None = None
    memory_p95: Percent | None = None


class Instance(_Model):
    id: Id
    type: Name  # provider instance type, e.g. "p5.48xlarge"
    provider: Provider = "aws"
    vcpu: Annotated[int, Field(ge=1, le=4096)]
    memory_gib: Positive
    gpu: Gpu | None = None
    region: Name
    zone: Name
    pricing: Pricing = "on_demand"
    hourly_usd: NonNegative | None = None  # else from the price table
    hours_per_month: Annotated[float, Field(ge=0, le=744)] = 730
    utilisation: Utilisation = Utilisation()
    workloads: list[Id] = []
    services: list[Id] = []


class Compute(_Model):
    instances: list[Instance]


class Encryption(_Model):
    at_rest: bool
    in_transit: bool


class Backup(_Model):
    enabled: bool
    retention_days: Annotated[int, Field(ge=0, le=36_500)] | None = None
    cross_region: bool = False


class Dataset(_Model):
    id: Id
    name: Name | None = None
    size_gb: NonNegative
    storage_class: StorageClass = "hot"
    region: Name  # where it is stored
    residency: Name | None = None  # where it must stay, e.g. "EU", "US"
    encryption: Encryption
    pii: bool = False
    phi: bool = False
    backup: Backup = Backup(enabled=False)
    retention_days: Annotated[int, Field(ge=0, le=36_500)] | None = None


class Storage(_Model):
    datasets: list[Dataset] = []


class Endpoint(_Model):
    id: Id
    target: Id  # a service or workload id
    public: bool
    tls: bool
    tls_min_version: Literal["1.0", "1.1", "1.2", "1.3"] | None = None
    authentication: bool = True
    rate_limited: bool = False
    waf: bool = False


class Networking(_Model):
    endpoints: list[Endpoint] = []
    private_links: bool = False  # provider services reached over private links / VPC endpoints
    egress_restricted: bool = False


class Service(_Model):
    id: Id
    name: Name | None = None
    critical: bool = False
    datasets: list[Id] = []


class Budget(_Model):
    monthly_usd: NonNegative
    currency: Literal["USD"] = "USD"


class Growth(_Model):
    """Monthly growth assumptions of the simulation, in percent per month."""

    load_mean_pct: Annotated[float, Field(ge=-50, le=100)] = 4.0
    load_sd_pct: Annotated[float, Field(ge=0, le=100)] = 3.0
    price_mean_pct: Annotated[float, Field(ge=-50, le=100)] = -0.5
    price_sd_pct: Annotated[float, Field(ge=0, le=100)] = 1.0


class Controls(_Model):
    """Organisation-wide controls the compliance rules look for (None: not answered)."""

    audit_logging: bool | None = None
    mfa: bool | None = None
    access_reviews: bool | None = None
    incident_response_plan: bool | None = None
    dpa_signed: bool | None = None  # data processing agreements with processors
    baa_signed: bool | None = None  # HIPAA business associate agreements
    data_retention_policy: bool | None = None
    human_oversight: bool | None = None  # EU AI Act Art. 14
    model_documentation: bool | None = None  # EU AI Act Art. 11 technical documentation
    risk_management: bool | None = None  # EU AI Act Art. 9
    vendor_management: bool | None = None


class Compliance(_Model):
    frameworks: list[Framework] = []
    eu_ai_act_risk: AiActRisk | None = None
    controls: Controls = Controls()


class Team(_Model):
    size: Count = 0
    ml_engineers: Count = 0
    sre_oncall: bool = False


class Inventory(_Model):
    """An organisation's AI infrastructure (format version 1)."""

    version: Literal[1] = 1
    organisation: Organisation
    workloads: list[Workload] = []
    compute: Compute
    storage: Storage = Storage()
    networking: Networking = Networking()
    services: list[Service] = []
    budget: Budget
    growth: Growth = Growth()
    compliance: Compliance = Compliance()
    team: Team = Team()
    mlops: dict[str, str] = {}  # question id → answer, see MLOPS_QUESTIONS


@dataclass(frozen=True)
class MlopsQuestion:
    """A questionnaire item; ``answers`` run from least to most mature (score 0..len-1)."""

    id: str
    area: str
    text: str
    answers: tuple[str, ...]


MLOPS_QUESTIONS: tuple[MlopsQuestion, ...] = (
    MlopsQuestion(
        "model_versioning",
        "versioning",
        "How are trained models versioned?",
        ("none", "manual_naming", "registry", "registry_with_lineage"),
    ),
    MlopsQuestion(
        "data_versioning",
        "versioning",
        "How are training datasets versioned?",
        ("none", "snapshots", "versioned", "versioned_with_lineage"),
    ),
    MlopsQuestion(
        "model_testing",
        "ci_cd",
        "How are models tested before release?",
        ("none", "manual", "automated_tests", "automated_with_quality_gates"),
    ),
    MlopsQuestion(
        "deployment",
        "ci_cd",
        "How are models deployed?",
        ("manual", "scripted", "pipeline", "pipeline_with_canary"),
    ),
    MlopsQuestion(
        "performance_monitoring",
        "monitoring",
        "Is the production models' quality monitored?",
        ("none", "infrastructure_only", "model_metrics", "model_metrics_with_alerts"),
    ),
    MlopsQuestion(
        "drift_detection",
        "monitoring",
        "Is data or prediction drift detected?",
        ("none", "manual_review", "scheduled_reports", "automated_alerts"),
    ),
    MlopsQuestion(
        "feature_management",
        "feature_store",
        "How are features shared between training and serving?",
        ("none", "shared_code", "offline_store", "online_and_offline_store"),
    ),
    MlopsQuestion(
        "reproducibility",
        "reproducibility",
        "Can a past training run be reproduced?",
        ("no", "partially", "with_effort", "fully_pinned"),
    ),
    MlopsQuestion(
        "experiment_tracking",
        "reproducibility",
        "How are experiments tracked?",
        ("none", "spreadsheets", "tracking_tool", "tracking_tool_linked_to_registry"),
    ),
    MlopsQuestion(
        "incident_response",
        "incident_response",
        "Is there an incident process for model failures?",
        ("none", "informal", "runbooks", "runbooks_oncall_postmortems"),
    ),
    MlopsQuestion(
        "rollback",
        "incident_response",
        "How fast can a bad model be rolled back?",
        ("cannot", "hours", "minutes_manual", "automatic"),
    ),
)
_QUESTIONS = {q.id: q for q in MLOPS_QUESTIONS}


def path_of(loc: Iterable[str | int]) -> str:
    """``("compute", "instances", 3, "gpu")`` → ``compute.instances[3].gpu``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def load_inventory(data: bytes | str, filename: str | None = None) -> Inventory:
    """Parse JSON or YAML and validate it into an :class:`Inventory`.

    The format is taken from ``filename``'s extension (``.json``, ``.yaml``/``.yml``), else
    sniffed (a document starting with ``{`` is JSON). Raises :class:`InventoryError` naming
    every problem by its path; never anything else, whatever the bytes.
    """
    document = _parse(data, filename)
    try:
        inventory = Inventory.model_validate(document)
    except ValidationError as exc:
        raise InventoryError(_issues(exc)) from None
    issues = _cross_check(inventory)
    if issues:
        raise InventoryError(issues)
    return inventory


def inventory_schema() -> dict[str, Any]:
    """The JSON Schema of the inventory format (shipped as ``data/inventory.schema.json``)."""
    schema = Inventory.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Conveyor assess inventory (version 1)"
    properties = schema["properties"]
    properties["mlops"]["propertyNames"] = {"enum": [q.id for q in MLOPS_QUESTIONS]}
    return schema


def inventory_schema_text() -> str:
    """The schema as shipped in ``data/inventory.schema.json`` (regenerate it with
    ``python -m conveyor.packs.assess.inventory > src/conveyor/packs/assess/data/\
inventory.schema.json``)."""
    return json.dumps(inventory_schema(), indent=2, sort_keys=True) + "\n"


def unknown_gpus(inventory: Inventory, known: Iterable[str]) -> list[tuple[str, str]]:
    """(path, model) of every instance whose GPU model is not in ``known``."""
    names = set(known)
    return [
        (f"compute.instances[{i}].gpu.model", inst.gpu.model)
        for i, inst in enumerate(inventory.compute.instances)
        if inst.gpu is not None and inst.gpu.model not in names
    ]


def _parse(data: bytes | str, filename: str | None) -> Any:
    size = len(data.encode() if isinstance(data, str) else data)
    if size > MAX_INVENTORY_BYTES:
        raise InventoryError(
            [_issue("", f"the file is {size} bytes; at most {MAX_INVENTORY_BYTES} are accepted")]
        )
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            msg = f"not UTF-8 text (byte {exc.start}); send a JSON or YAML inventory"
            raise InventoryError([_issue("", msg)]) from None
    else:
        text = data
    if "\x00" in text:
        raise InventoryError([_issue("", "binary content (NUL bytes); send JSON or YAML")])
    if not text.strip():
        raise InventoryError([_issue("", "the inventory is empty")])
    suffix = (filename or "").lower().rsplit(".", 1)[-1] if filename and "." in filename else ""
    as_json = suffix == "json" or (suffix not in ("yaml", "yml") and text.lstrip()[:1] == "{")
    try:
        document = _parse_json(text) if as_json else _parse_yaml(text)
    except RecursionError:
        raise InventoryError([_issue("", f"nested deeper than {MAX_DEPTH} levels")]) from None
    if _depth(document) > MAX_DEPTH:
        raise InventoryError([_issue("", f"nested deeper than {MAX_DEPTH} levels")])
    if not isinstance(document, dict):
        kind = type(document).__name__ if document is not None else "nothing"
        raise InventoryError([_issue("", f"expected a mapping at the top, got {kind}")])
    return document


def _parse_json(text: str) -> Any:
    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a number an inventory may hold")

    try:
        return json.loads(text, parse_constant=refuse_constant)
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise InventoryError([_issue("", f"not valid JSON: {exc}")]) from None


class _Loader(yaml.SafeLoader):
    """Safe YAML without aliases: an alias can expand a small file into gigabytes."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.YAMLError(f"aliases are not accepted (line {event.start_mark.line + 1})")
        return super().compose_node(parent, index)


def _parse_yaml(text: str) -> Any:
    try:
        document = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        raise InventoryError([_issue("", f"not valid YAML: {exc}")]) from None
    except ValueError as exc:  # e.g. an out-of-range timestamp
        raise InventoryError([_issue("", f"not valid YAML: {exc}")]) from None
    _refuse_non_finite(document)
    return document


def _refuse_non_finite(node: Any, loc: tuple[str | int, ...] = ()) -> None:
    if isinstance(node, float) and not math.isfinite(node):
        raise InventoryError([_issue(path_of(loc), "NaN and infinity are not accepted")])
    if isinstance(node, dict):
        for key, value in node.items():
            _refuse_non_finite(value, (*loc, str(key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _refuse_non_finite(value, (*loc, i))


def _depth(node: Any) -> int:
    depth, level = 0, [node]
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            return depth
        nxt: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                nxt.extend(item.values())
            elif isinstance(item, list):
                nxt.extend(item)
        level = nxt
    return depth - 1


def _issue(path: str, message: str) -> Issue:
    return {"path": path, "message": message}


def _issues(exc: ValidationError) -> list[Issue]:
    issues: list[Issue] = []
    for error in exc.errors(include_url=False, include_context=False):
        loc = error["loc"]
        message = error["msg"]
        if loc and loc[-1] == "[key]":  # a mapping key of the wrong type, e.g. `1:` in YAML
            loc = (*loc[:-2], str(loc[-2]))
            message = f"the key must be text: {message}"
        if error["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; see the inventory schema)"
        elif error["type"] == "missing":
            message = "required field is missing"
        issues.append(_issue(path_of(p for p in loc), message))
        if len(issues) >= 200:
            break
    return issues


def _cross_check(inv: Inventory) -> list[Issue]:
    issues: list[Issue] = []

    def unique(section: str, ids: list[str]) -> None:
        seen = Counter(ids)
        for i, item_id in enumerate(ids):
            if seen[item_id] > 1:
                issues.append(_issue(f"{section}[{i}].id", f"duplicate id {item_id!r}"))

    unique("compute.instances", [x.id for x in inv.compute.instances])
    unique("workloads", [x.id for x in inv.workloads])
    unique("storage.datasets", [x.id for x in inv.storage.datasets])
    unique("services", [x.id for x in inv.services])
    unique("networking.endpoints", [x.id for x in inv.networking.endpoints])
    workloads = {w.id for w in inv.workloads}
    services = {s.id for s in inv.services}
    datasets = {d.id for d in inv.storage.datasets}

    def refs(path: str, values: list[str], known: set[str], what: str) -> None:
        for j, value in enumerate(values):
            if value not in known:
                issues.append(_issue(f"{path}[{j}]", f"no {what} with id {value!r}"))

    for i, inst in enumerate(inv.compute.instances):
        refs(f"compute.instances[{i}].workloads", inst.workloads, workloads, "workload")
        refs(f"compute.instances[{i}].services", inst.services, services, "service")
    for i, w in enumerate(inv.workloads):
        refs(f"workloads[{i}].datasets", w.datasets, datasets, "dataset")
        if w.type == "inference" and w.kind in ("fine_tuning", "pretraining"):
            issues.append(_issue(f"workloads[{i}].kind", f"{w.kind!r} is a training kind"))
        if w.type == "training" and w.kind in ("chat", "completion", "embedding"):
            issues.append(_issue(f"workloads[{i}].kind", f"{w.kind!r} is an inference kind"))
    for i, s in enumerate(inv.services):
        refs(f"services[{i}].datasets", s.datasets, datasets, "dataset")
    for i, e in enumerate(inv.networking.endpoints):
        if e.target not in services and e.target not in workloads:
            msg = f"no service or workload with id {e.target!r}"
            issues.append(_issue(f"networking.endpoints[{i}].target", msg))
    for qid, answer in inv.mlops.items():
        question = _QUESTIONS.get(qid)
        if question is None:
            known = ", ".join(_QUESTIONS)
            issues.append(_issue(f"mlops.{qid}", f"unknown question; known: {known}"))
        elif answer not in question.answers:
            allowed = ", ".join(question.answers)
            issues.append(_issue(f"mlops.{qid}", f"answer {answer!r} not one of: {allowed}"))
    return issues


if __name__ == "__main__":
    print(inventory_schema_text(), end="")
