"""The assess pack's inventory format: the examples load, every kind of error is named by its
path, garbage never crashes the loader, and the shipped schema and enterprise example equal
what the code generates."""

from __future__ import annotations

import contextlib
import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.errors import ConveyorError, InputRejected
from conveyor.packs.assess.errors import InventoryError
from conveyor.packs.assess.examples import EXAMPLES, enterprise_text, example_text
from conveyor.packs.assess.inventory import (
    MAX_INVENTORY_BYTES,
    MLOPS_QUESTIONS,
    Inventory,
    inventory_schema,
    inventory_schema_text,
    load_inventory,
    path_of,
    unknown_gpus,
)
from conveyor.packs.assess.reference import data_text, gpu_specs

MINIMAL = {
    "organisation": {"name": "Acme"},
    "compute": {
        "instances": [
            {
                "id": "gpu-1",
                "type": "p5.48xlarge",
                "vcpu": 192,
                "memory_gib": 2048,
                "gpu": {"model": "H100-SXM", "count": 8},
                "region": "us-east-1",
                "zone": "us-east-1a",
                "workloads": ["chat"],
            }
        ]
    },
    "workloads": [
        {
            "id": "chat",
            "type": "inference",
            "kind": "chat",
            "model": {"name": "m", "parameters_b": 70, "precision": "fp16"},
        }
    ],
    "budget": {"monthly_usd": 1000},
}


def issues_of(data: str | bytes, filename: str | None = None) -> list[dict[str, str]]:
    with pytest.raises(InventoryError) as caught:
        load_inventory(data, filename)
    assert caught.value.issues, "an InventoryError always names at least one issue"
    return [dict(i) for i in caught.value.issues]


def with_change(path: list[str | int], value: object) -> str:
    doc = json.loads(json.dumps(MINIMAL))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return json.dumps(doc)


def test_minimal_inventory_loads_from_json_and_yaml() -> None:
    from_json = load_inventory(json.dumps(MINIMAL), "inv.json")
    from_yaml = load_inventory(yaml.safe_dump(MINIMAL), "inv.yaml")
    assert from_json == from_yaml
    assert from_json.compute.instances[0].gpu is not None
    assert from_json.compute.instances[0].hours_per_month == 730  # default
    assert from_json.budget.currency == "USD"


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_examples_load(name: str) -> None:
    inventory = load_inventory(example_text(name), EXAMPLES[name])
    assert inventory.workloads and inventory.compute.instances
    kinds = {w.kind for w in inventory.workloads}
    assert "chat" in kinds  # the chatbot analyzer has something to look at in every example
    assert any(d.pii and not (d.encryption.at_rest and d.encryption.in_transit)
               for d in inventory.storage.datasets)  # fmt: skip
    assert inventory.mlops, "the MLOps questionnaire is answered"


def test_enterprise_example_is_about_a_thousand_instances_and_equals_its_generator() -> None:
    assert example_text("enterprise") == enterprise_text()
    inventory = load_inventory(example_text("enterprise"), "enterprise.json")
    assert len(inventory.compute.instances) == 1000
    assert {"HIPAA", "GDPR", "SOC2", "EU_AI_ACT"} <= set(inventory.compliance.frameworks)


def test_shipped_schema_equals_the_model_schema() -> None:
    assert data_text("inventory.schema.json") == inventory_schema_text()
    assert json.loads(data_text("inventory.schema.json")) == inventory_schema()


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_examples_validate_against_the_shipped_schema(name: str) -> None:
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    schema = json.loads(data_text("inventory.schema.json"))
    document = yaml.safe_load(example_text(name))
    jsonschema_rs.validator_for(schema).validate(document)


def test_schema_lists_the_mlops_questions() -> None:
    names = inventory_schema()["properties"]["mlops"]["propertyNames"]["enum"]
    assert names == [q.id for q in MLOPS_QUESTIONS]


def test_path_of() -> None:
    assert path_of(("compute", "instances", 3, "gpu", "count")) == "compute.instances[3].gpu.count"
    assert path_of(()) == ""


@pytest.mark.parametrize(
    ("path", "value", "where", "says"),
    [
        (["compute", "instances", 0, "gpu", "count"], "8", "compute.instances[0].gpu.count",
         "integer"),
        (["compute", "instances", 0, "gpu", "count"], 0, "compute.instances[0].gpu.count",
         "greater than or equal to 1"),
        (["compute", "instances", 0, "vcpu"], 2.5, "compute.instances[0].vcpu", "integer"),
        (["compute", "instances", 0, "pricing"], "cheap", "compute.instances[0].pricing",
         "on_demand"),
        (["workloads", 0, "model", "precision"], "fp64", "workloads[0].model.precision", "fp16"),
        (["workloads", 0, "model", "parameters_b"], -1, "workloads[0].model.parameters_b",
         "greater than 0"),
        (["compute", "instances", 0, "utilisation"], {"gpu_p95": 140},
         "compute.instances[0].utilisation.gpu_p95", "less than or equal to 100"),
        (["budget", "monthly_usd"], "lots", "budget.monthly_usd", "number"),
        (["budget", "currency"], "EUR", "budget.currency", "USD"),
        (["compute", "instances", 0, "colour"], "red", "compute.instances[0].colour",
         "unknown field"),
        (["compute", "instances", 0, "id"], "has space", "compute.instances[0].id", "pattern"),
        (["compute", "instances", 0, "gpu"], {"count": 8}, "compute.instances[0].gpu.model",
         "required field is missing"),
    ],
)  # fmt: skip
def test_field_errors_name_their_path(
    path: list[str | int], value: object, where: str, says: str
) -> None:
    issues = issues_of(with_change(path, value))
    assert any(i["path"] == where and says in i["message"] for i in issues), issues


def test_missing_sections_are_named() -> None:
    paths = {i["path"] for i in issues_of("{}")}
    assert paths == {"organisation", "compute", "budget"}


def test_duplicate_ids_are_refused_at_each_place() -> None:
    doc = json.loads(json.dumps(MINIMAL))
    doc["compute"]["instances"].append(dict(doc["compute"]["instances"][0]))
    issues = issues_of(json.dumps(doc))
    paths = {i["path"] for i in issues if "duplicate id 'gpu-1'" in i["message"]}
    assert paths == {"compute.instances[0].id", "compute.instances[1].id"}


def test_references_must_resolve() -> None:
    doc = json.loads(json.dumps(MINIMAL))
    doc["compute"]["instances"][0]["workloads"] = ["chat", "nope"]
    doc["compute"]["instances"][0]["services"] = ["ghost"]
    doc["workloads"][0]["datasets"] = ["missing"]
    doc["networking"] = {"endpoints": [{"id": "e", "target": "x", "public": True, "tls": True}]}
    issues = {i["path"]: i["message"] for i in issues_of(json.dumps(doc))}
    assert issues["compute.instances[0].workloads[1]"] == "no workload with id 'nope'"
    assert issues["compute.instances[0].services[0]"] == "no service with id 'ghost'"
    assert issues["workloads[0].datasets[0]"] == "no dataset with id 'missing'"
    assert issues["networking.endpoints[0].target"] == "no service or workload with id 'x'"


def test_keys_that_are_not_text_are_named() -> None:
    issues = issues_of(with_change(["mlops"], {}).replace('"mlops": {}', '"mlops": {"1": "x"}'))
    assert issues[0]["path"] == "mlops.1"
    yaml_issues = issues_of(yaml.safe_dump(MINIMAL) + "mlops: {1: none}\n", "inv.yaml")
    assert yaml_issues == [
        {"path": "mlops.1", "message": "the key must be text: Input should be a valid string"}
    ]


def test_workload_kind_must_match_its_type() -> None:
    issues = issues_of(with_change(["workloads", 0, "kind"], "pretraining"))
    assert issues == [{"path": "workloads[0].kind", "message": "'pretraining' is a training kind"}]


def test_mlops_answers_are_checked_against_the_questionnaire() -> None:
    issues = issues_of(with_change(["mlops"], {"rollback": "sometimes", "vibes": "good"}))
    by_path = {i["path"]: i["message"] for i in issues}
    assert "not one of: cannot, hours, minutes_manual, automatic" in by_path["mlops.rollback"]
    assert by_path["mlops.vibes"].startswith("unknown question")


def test_unknown_gpu_models_are_flagged_not_refused() -> None:
    inventory = load_inventory(with_change(["compute", "instances", 0, "gpu", "model"], "Z9"))
    assert unknown_gpus(inventory, gpu_specs()) == [("compute.instances[0].gpu.model", "Z9")]
    enterprise = load_inventory(example_text("enterprise"), "enterprise.json")
    assert [m for _, m in unknown_gpus(enterprise, gpu_specs())] == ["Gaudi2"]


@pytest.mark.parametrize(
    ("data", "filename", "says"),
    [
        (b"", None, "empty"),
        (b"   \n", None, "empty"),
        (b"\xff\xfe\x00\x01", None, "not UTF-8"),
        (b"abc\x00def", None, "binary"),
        (b"[1, 2, 3]", None, "expected a mapping"),
        (b"just a string", None, "expected a mapping"),
        (b"{not json", "x.json", "not valid JSON"),
        (b"a: [1, 2", "x.yaml", "not valid YAML"),
        (b'{"budget": {"monthly_usd": NaN}}', "x.json", "not a number"),
        (b'{"budget": {"monthly_usd": Infinity}}', None, "not a number"),
        (b"budget: {monthly_usd: .nan}", "x.yaml", "NaN"),
        (b"budget: {monthly_usd: -.inf}", "x.yml", "NaN"),
        (b"a: &x [1, 2]\nb: *x\n", None, "aliases"),
        (b"[" * 50 + b"]" * 50, "x.json", "nested deeper"),
        (b"[" * 100_000, "x.json", "nested deeper"),
        (b"a:\n" + b"".join(b"  " * i + b"- \n" for i in range(1, 60)), None, "nested deeper"),
        (b"- " * 5000 + b"x", None, "nested deeper"),
        (b"!!python/object:os.system {}", None, "not valid YAML"),
        (b"x: !!timestamp 2001-13-99", None, "not valid YAML"),
        (b'{"a": ' + b"1" * 5000 + b"}", None, "not valid JSON"),
        (b"a: " + b"1" * 5000, None, "not valid YAML"),
        (b'{"budget": {"monthly_usd": 1e999}}', None, "finite number"),
    ],
)
def test_garbage_is_refused_with_a_message(data: bytes, filename: str | None, says: str) -> None:
    issues = issues_of(data, filename)
    assert any(says in i["message"] for i in issues), issues


def test_oversized_input_is_refused_before_parsing() -> None:
    data = b"{" + b" " * MAX_INVENTORY_BYTES + b"}"
    issues = issues_of(data)
    assert "at most" in issues[0]["message"]


def test_inventory_error_is_a_conveyor_input_rejection() -> None:
    with pytest.raises(InventoryError) as caught:
        load_inventory("{}")
    assert isinstance(caught.value, InputRejected)
    assert isinstance(caught.value, ConveyorError)
    assert "organisation: required field is missing" in str(caught.value)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(InventoryError):
        load_inventory(data)


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=30,
    )
)
def test_random_documents_never_crash(document: object) -> None:
    try:
        inventory = load_inventory(json.dumps(document))
    except InventoryError:
        return
    assert isinstance(inventory, Inventory)
