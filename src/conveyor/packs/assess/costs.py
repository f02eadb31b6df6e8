"""What the inventory costs per month: instances, storage, and their split by workload/service.

An instance's hourly price is its own ``hourly_usd`` when given, else the price table's price
for its type and pricing model times the region's factor; monthly = hourly * hours_per_month.
An instance's cost is split evenly among the workloads and services it runs (an instance that
runs nothing named is "unassigned"). Storage: size_gb * the class's USD per GB-month.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from conveyor.packs.assess.inventory import Instance, Inventory
from conveyor.packs.assess.reference import price_table

__all__ = ["InstanceCost", "instance_cost", "instance_costs", "storage_cost", "workload_costs"]

UNASSIGNED = "(unassigned)"


@dataclass(frozen=True)
class InstanceCost:
    index: int
    instance: Instance
    hourly_usd: float | None  # None: not given and not in the price table
    monthly_usd: float  # 0 when the price is unknown
    priced_from: str  # "inventory", "table" or "unknown"

    @property
    def path(self) -> str:
        return f"compute.instances[{self.index}]"


def instance_cost(index: int, inst: Instance) -> InstanceCost:
    """The monthly cost of one instance (see the module docstring)."""
    if inst.hourly_usd is not None:
        hourly: float | None = inst.hourly_usd
        source = "inventory"
    else:
        table = price_table()
        price = table.instances.get(inst.type)
        if price is None:
            hourly, source = None, "unknown"
        else:
            hourly = price.hourly(inst.pricing) * table.region_factor(inst.region)
            source = "table"
    monthly = (hourly or 0.0) * inst.hours_per_month
    return InstanceCost(index, inst, hourly, monthly, source)


def instance_costs(inventory: Inventory) -> list[InstanceCost]:
    return [instance_cost(i, inst) for i, inst in enumerate(inventory.compute.instances)]


def storage_cost(inventory: Inventory) -> float:
    """USD per month of every dataset at its storage class's price."""
    prices = price_table().storage_gb_month
    return sum(d.size_gb * prices[d.storage_class] for d in inventory.storage.datasets)


def workload_costs(costs: list[InstanceCost]) -> dict[str, float]:
    """Monthly cost by workload or service id, each instance split evenly among what it runs."""
    out: dict[str, float] = defaultdict(float)
    for cost in costs:
        names = [*cost.instance.workloads, *cost.instance.services] or [UNASSIGNED]
        for name in names:
            out[name] += cost.monthly_usd / len(names)
    return dict(out)
