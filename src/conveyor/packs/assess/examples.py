"""The example inventories shipped with the pack (``data/examples/``): listed and loaded by
their file's stem, e.g. ``startup``."""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable
from typing import Any

from conveyor.errors import ResourceNotFound
from conveyor.packs.assess.inventory import Inventory, load_inventory

SUFFIXES = (".json", ".yaml", ".yml")


def _files() -> dict[str, Traversable]:
    root = resources.files("conveyor.packs.assess") / "data" / "examples"
    if not root.is_dir():
        return {}
    found: dict[str, Traversable] = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        stem, dot, suffix = entry.name.rpartition(".")
        if dot and f".{suffix}" in SUFFIXES and entry.is_file():
            found.setdefault(stem, entry)
    return found


def names() -> list[str]:
    return list(_files())


def load(name: str) -> Inventory:
    """The example called ``name``; ResourceNotFound naming the ones there are."""
    entry = _files().get(name)
    if entry is None:
        raise ResourceNotFound(f"no example {name!r}; examples: {', '.join(names()) or 'none'}")
    return load_inventory(entry.read_bytes(), entry.name)


def listing() -> list[dict[str, Any]]:
    """Each example with its organisation and size."""
    out = []
    for name, entry in _files().items():
        inventory = load_inventory(entry.read_bytes(), entry.name)
        out.append(
            {
                "name": name,
                "file": entry.name,
                "organisation": inventory.organisation.name,
                "instances": len(inventory.compute.instances),
                "workloads": len(inventory.workloads),
            }
        )
    return out
