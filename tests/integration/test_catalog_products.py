"""Products through the API: create, duplicate SKUs in any case, filters, sorting, keyset
pages, edit, delete, and delete-all behind its confirmation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from conveyor.packs import psycopg_url
from conveyor.testing.services import truncate

API = "/api/v1/catalog/products"


@pytest.fixture()
def catalog(settings: Any, client: Any) -> Iterator[Any]:
    with psycopg.connect(psycopg_url(settings), autocommit=True) as conn:
        truncate(conn, "catalog_products", "catalog_webhooks")
        with conn.cursor().copy(
            "COPY catalog_products (sku, name, description, active) FROM STDIN"
        ) as copy:
            for i in range(1, 251):
                copy.write_row(
                    (f"SKU-{i:04d}", f"{'Lamp' if i % 2 else 'Chair'} {i}",
                     f"{'oak' if i % 5 == 0 else 'steel'} finish", i % 3 != 0)
                )  # fmt: skip
    yield client


def test_create_and_duplicate_sku_in_any_case_is_409(catalog: Any) -> None:
    resp = catalog.post(API, json={"sku": "  New-1 ", "name": "Kettle", "description": "d"})
    assert resp.status_code == 201, resp.text
    made = resp.json()
    assert made["sku"] == "New-1" and made["active"] is True
    assert resp.headers["location"] == f"{API}/{made['id']}"
    dup = catalog.post(API, json={"sku": "NEW-1", "name": "Other"})
    assert dup.status_code == 409
    assert "a product with SKU 'NEW-1' already exists" in dup.json()["detail"]
    bad = catalog.post(API, json={"sku": "", "name": "x"})
    assert bad.status_code == 422
    assert catalog.post(API, json={"sku": "A" * 65, "name": "x"}).status_code == 422


def test_filters_and_sorting(catalog: Any) -> None:
    def skus(**params: Any) -> list[str]:
        body = catalog.get(API, params={"limit": 500, **params}).json()
        assert body["total"] == len(body["items"]) and body["total_exact"]
        return [p["sku"] for p in body["items"]]

    assert skus(sku="sku-001") == [f"SKU-{i:04d}" for i in range(10, 20)]
    assert len(skus(name="LAMP")) == 125
    assert len(skus(description="oak")) == 50
    assert len(skus(active="false")) == 83
    assert skus(name="lamp", description="oak", active="true")[:3] == [
        "SKU-0005",
        "SKU-0025",
        "SKU-0035",
    ]
    assert skus(sku="%") == [] and skus(name="_") == []  # wildcards are literal
    assert skus(sort="sku", order="desc")[:2] == ["SKU-0250", "SKU-0249"]
    names = catalog.get(API, params={"sort": "name", "limit": 3}).json()["items"]
    assert [p["name"] for p in names] == ["Chair 10", "Chair 100", "Chair 102"]


@pytest.mark.parametrize(("sort", "order"), [("id", "asc"), ("sku", "desc"), ("name", "asc"),
                                             ("updated_at", "desc")])  # fmt: skip
def test_keyset_pages_visit_every_product_once(catalog: Any, sort: str, order: str) -> None:
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 40, "sort": sort, "order": order, "active": "true"}
        if cursor:
            params["cursor"] = cursor
        body = catalog.get(API, params=params).json()
        seen += [p["id"] for p in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 167
    assert catalog.get(API, params={"cursor": "garbage"}).status_code == 422
    other = catalog.get(API, params={"limit": 1, "sort": "sku"}).json()["next_cursor"]
    assert catalog.get(API, params={"cursor": other, "sort": "name"}).status_code == 422


def test_edit_and_delete_one(catalog: Any) -> None:
    first = catalog.get(API, params={"sku": "SKU-0001"}).json()["items"][0]
    url = f"{API}/{first['id']}"
    changed = catalog.patch(url, json={"name": "Renamed", "active": False}).json()
    assert (changed["name"], changed["active"], changed["sku"]) == ("Renamed", False, "SKU-0001")
    assert changed["updated_at"] > first["updated_at"]
    taken = catalog.patch(url, json={"sku": "sku-0002"})
    assert taken.status_code == 409 and "already exists" in taken.json()["detail"]
    assert catalog.patch(url, json={"name": None}).status_code == 422
    assert catalog.patch(url, json={"colour": "red"}).status_code == 422
    assert catalog.delete(url).status_code == 204
    assert catalog.get(url).status_code == 404
    assert catalog.delete(url).status_code == 404
    assert catalog.patch(f"{API}/999999999", json={"name": "x"}).status_code == 404


def test_delete_all_needs_its_confirmation(catalog: Any) -> None:
    refused = catalog.delete(API)
    assert refused.status_code == 422
    assert "this deletes 250 products and cannot be undone" in refused.json()["detail"]
    assert catalog.get(API).json()["total"] == 250
    done = catalog.delete(API, params={"confirm": "all"})
    assert done.json() == {"deleted": 250}
    assert catalog.get(API).json() == {
        "items": [],
        "next_cursor": None,
        "total": 0,
        "total_exact": True,
    }


def test_list_counts_up_to_the_cap(catalog: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from conveyor.packs.catalog import products

    monkeypatch.setattr(products, "COUNT_CAP", 100)
    body = catalog.get(API, params={"limit": 10}).json()
    assert (body["total"], body["total_exact"]) == (100, False)
    assert catalog.get(API, params={"description": "oak"}).json()["total_exact"] is True
    assert "100+" in catalog.get("/catalog/products").text
