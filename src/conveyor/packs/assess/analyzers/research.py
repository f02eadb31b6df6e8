"""Research: the practices of a bundled knowledge base that fit this inventory, ranked by BM25.

The knowledge base (``data/knowledge/practices.toml``, ~40 entries written for this pack) holds
short practices with tags and ``applies_when`` profile tokens. The inventory's profile
(:func:`profile`) is a set of tokens with the paths that raised them: ``workload:chat``,
``precision:fp16``, ``framework:hipaa``, ``problem:idle-gpu``, ``scale:large``... An entry is a
candidate when one of its ``applies_when`` tokens is in the profile (or it lists none). The
candidates are ranked by BM25 against a query made of the profile's words, entries that answer
a problem of the inventory (a ``problem:`` token) before general practices, and the best
:data:`TOP_K` become findings citing the entry (``rule = "KB:<id>"``).

BM25 (Robertson and Zaragoza's Okapi form), over the entries' title, body and tags::

    score(D, Q) = sum over q in Q of IDF(q) * f(q, D) * (k1 + 1) / (f(q, D) + k1 * L(D))
    L(D)        = 1 - b + b * |D| / avgdl
    IDF(q)      = ln(1 + (N - n(q) + 0.5) / (n(q) + 0.5))

with ``f(q, D)`` the count of term ``q`` in entry ``D``, ``|D|`` its length in terms, ``avgdl``
the mean length, ``N`` the number of entries and ``n(q)`` those containing ``q``;
``k1 = 1.2`` (term-frequency saturation) and ``b = 0.75`` (length normalisation). The IDF form
with ``1 +`` inside the log never goes negative. A query term repeated counts once per repeat.

Metrics: ``profile`` (tokens), ``query`` (terms), ``ranking`` (every candidate: id, title,
score, answers_problem), ``k1``, ``b``, ``corpus_size``.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

from conveyor.packs.assess.analyzers import Progress
from conveyor.packs.assess.analyzers.compliance import residency_breaches
from conveyor.packs.assess.analyzers.mlops import area_levels
from conveyor.packs.assess.analyzers.web_research import OLD, gpu_generation
from conveyor.packs.assess.costs import instance_costs, storage_cost
from conveyor.packs.assess.findings import AnalyzerOutput, Finding
from conveyor.packs.assess.inventory import Inventory

__all__ = ["BM25", "Entry", "analyze", "knowledge_base", "profile", "tokenize"]

NAME = "research"
TOP_K = 8
K1 = 1.2
B = 0.75
_STOP = frozenset(
    ("a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "is", "it", "of",
     "on", "or", "that", "the", "their", "this", "to", "with", "without", "not", "no", "do",
     "does", "its", "than", "then", "they", "them", "more", "most", "per", "into", "can",
     "every", "each")
)  # fmt: skip


def tokenize(text: str) -> list[str]:
    """Lower-case terms of letters and digits (``fp16``, ``kv``), stop words dropped."""
    return [t for t in re.findall(r"[a-z0-9]+", text.lower()) if t not in _STOP]


class BM25:
    """Okapi BM25 over a fixed corpus of token lists (see the module docstring)."""

    def __init__(self, documents: Sequence[Sequence[str]], k1: float = K1, b: float = B) -> None:
        self.k1, self.b = k1, b
        self.tf = [Counter(doc) for doc in documents]
        self.lengths = [len(doc) for doc in documents]
        self.avgdl = sum(self.lengths) / len(documents) if documents else 0.0
        df = Counter(term for doc in documents for term in set(doc))
        n = len(documents)
        self.idf = {t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}

    def score(self, query: Sequence[str], index: int) -> float:
        tf, norm = self.tf[index], self.lengths[index] / self.avgdl if self.avgdl else 0.0
        total = 0.0
        for term in query:
            f = tf.get(term, 0)
            if f:
                total += (
                    self.idf[term]
                    * f
                    * (self.k1 + 1)
                    / (f + self.k1 * (1 - self.b + self.b * norm))
                )
        return total


@dataclass(frozen=True)
class Entry:
    id: str
    title: str
    body: str
    tags: tuple[str, ...]
    applies_when: tuple[str, ...]

    @property
    def terms(self) -> list[str]:
        return tokenize(" ".join((self.title, self.body, *self.tags)))


@cache
def knowledge_base() -> tuple[Entry, ...]:
    """The bundled practices (read once per process)."""
    text = resources.files("conveyor.packs.assess").joinpath("data/knowledge/practices.toml")
    data = tomllib.loads(text.read_text(encoding="utf-8"))
    return tuple(
        Entry(e["id"], e["title"], e["body"], tuple(e["tags"]), tuple(e["applies_when"]))
        for e in data["entry"]
    )


@cache
def _index() -> BM25:
    return BM25([entry.terms for entry in knowledge_base()])


# Profile tokens → the words they add to the query (default: the token's value, split).
_QUERY_WORDS = {
    "problem:idle-gpu": "idle gpu utilisation",
    "problem:low-utilisation": "right-sizing utilisation",
    "problem:high-utilisation": "headroom capacity autoscaling",
    "problem:on-demand-only": "reserved spot commitment on-demand",
    "problem:single-zone": "availability zone single zone",
    "problem:spof": "single point of failure redundancy replicas",
    "problem:no-backup": "backup restore",
    "problem:unencrypted": "encryption at rest",
    "problem:public-no-tls": "tls public endpoint",
    "problem:no-access-log": "access logging audit",
    "problem:residency": "residency region",
    "problem:large-model": "large model quantisation distillation",
    "problem:old-gpu": "gpu generation migration deprecation",
    "problem:kv-pressure": "kv cache memory context",
    "problem:latency-slo": "latency slo",
    "problem:mlops-gaps": "mlops pipeline monitoring versioning",
    "problem:over-budget": "budget cost forecast",
    "problem:concentration": "vendor concentration region",
    "problem:multi-region": "region data transfer egress",
    "scale:large": "cost tagging finops",
    "framework:eu-ai-act": "eu ai act high risk",
    "framework:soc2": "soc2",
    "workload:chat": "chat llm inference",
}


def profile(inv: Inventory) -> dict[str, list[str]]:
    """The inventory's profile: token → the paths that raised it (first few of each)."""
    found: dict[str, list[str]] = {}

    def add(token: str, path: str) -> None:
        paths = found.setdefault(token, [])
        if len(paths) < 20:
            paths.append(path)

    for i, w in enumerate(inv.workloads):
        add(f"workload:{w.type}", f"workloads[{i}].type")
        if w.kind == "chat":
            add("workload:chat", f"workloads[{i}].kind")
            context = w.model.context_length
            if context >= 32_768:
                add("problem:kv-pressure", f"workloads[{i}].model.context_length")
        add(f"precision:{w.model.precision}", f"workloads[{i}].model.precision")
        if w.model.parameters_b > 30:
            add("problem:large-model", f"workloads[{i}].model.parameters_b")
        slo = w.slo
        if slo and ((slo.p95_ms and slo.p95_ms <= 1000) or (slo.ttft_ms and slo.ttft_ms <= 500)):
            add("problem:latency-slo", f"workloads[{i}].slo")
    for fw in inv.compliance.frameworks:
        add(f"framework:{fw.lower().replace('_', '-')}", "compliance.frameworks")
    instances = inv.compute.instances
    if len(instances) > 100:
        add("scale:large", "compute.instances")
    for i, inst in enumerate(instances):
        u, path = inst.utilisation, f"compute.instances[{i}]"
        if inst.gpu is not None:
            if u.gpu_p95 is not None and u.gpu_p95 < 10:
                add("problem:idle-gpu", f"{path}.utilisation.gpu_p95")
            gen = gpu_generation(inst.gpu.model)
            if gen is not None and gen.status in OLD and gen.status != "previous":
                add("problem:old-gpu", f"{path}.gpu.model")
        busiest = max((v for v in (u.cpu_p95, u.gpu_p95) if v is not None), default=None)
        if busiest is not None and busiest > 85:
            add("problem:high-utilisation", f"{path}.utilisation")
        elif busiest is not None and 10 <= busiest < 40:
            add("problem:low-utilisation", f"{path}.utilisation")
    if instances and not any(i.pricing != "on_demand" for i in instances):
        add("problem:on-demand-only", "compute.instances[0].pricing")
    _placement(inv, add)
    for i, d in enumerate(inv.storage.datasets):
        if not d.backup.enabled:
            add("problem:no-backup", f"storage.datasets[{i}].backup.enabled")
        if not d.encryption.at_rest:
            add("problem:unencrypted", f"storage.datasets[{i}].encryption.at_rest")
    for path in residency_breaches(inv):
        add("problem:residency", path)
    for i, e in enumerate(inv.networking.endpoints):
        if e.public and not e.tls:
            add("problem:public-no-tls", f"networking.endpoints[{i}].tls")
    if inv.compliance.controls.audit_logging is False:
        add("problem:no-access-log", "compliance.controls.audit_logging")
    weak = [area for area, v in area_levels(inv).items() if int(v["level"]) < 2]
    if weak:
        add("problem:mlops-gaps", "mlops")
    spend = sum(c.monthly_usd for c in instance_costs(inv)) + storage_cost(inv)
    if spend > inv.budget.monthly_usd:
        add("problem:over-budget", "budget.monthly_usd")
    return found


def _placement(inv: Inventory, add: Callable[[str, str], None]) -> None:
    """Single zones, single instances, one-region/one-provider fleets."""
    members: dict[str, list[int]] = {}
    for i, inst in enumerate(inv.compute.instances):
        for owner in (*inst.workloads, *inst.services):
            members.setdefault(owner, []).append(i)
    for indexes in members.values():
        zones = {inv.compute.instances[i].zone for i in indexes}
        if len(indexes) == 1:
            add("problem:spof", f"compute.instances[{indexes[0]}].id")
        elif len(zones) == 1:
            add("problem:single-zone", f"compute.instances[{indexes[0]}].zone")
    regions = {(i.provider, i.region) for i in inv.compute.instances}
    if len(regions) == 1 and len(inv.compute.instances) > 1:
        add("problem:concentration", "compute.instances[0].region")
    elif len({r for _, r in regions}) > 1 and any(w.type == "training" for w in inv.workloads):
        add("problem:multi-region", "compute.instances")


def query_terms(tokens: Sequence[str]) -> list[str]:
    """The BM25 query for a profile: each token's words."""
    terms: list[str] = []
    for token in tokens:
        words = _QUERY_WORDS.get(token) or token.split(":", 1)[1].replace("-", " ")
        terms.extend(tokenize(words))
    return terms


def analyze(inventory: Inventory, progress: Progress) -> AnalyzerOutput:
    """Rank the knowledge base for this inventory's profile; the top entries as findings."""
    progress(0.0, "profile")
    found = profile(inventory)
    tokens = sorted(found)
    query = query_terms(tokens)
    progress(0.5, "ranking")
    entries, index = knowledge_base(), _index()
    ranked: list[tuple[bool, float, int]] = []
    for n, entry in enumerate(entries):
        matched = set(entry.applies_when) & found.keys()
        if entry.applies_when and not matched:
            continue
        fixes = any(t.startswith("problem:") for t in matched)
        ranked.append((fixes, index.score(query, n), n))
    ranked.sort(key=lambda r: (not r[0], -r[1], entries[r[2]].id))
    findings: list[Finding] = []
    for _, score, n in ranked[:TOP_K]:
        if score <= 0:
            break
        findings.append(_finding(entries[n], found, score))
    progress(1.0, "done")
    cited = ", ".join(f.rule or "" for f in findings)
    summary = (
        f"Profile of {len(tokens)} traits matched {len(ranked)} of {len(entries)} practices in"
        f" the knowledge base; the {len(findings)} best ranked (BM25) are recommended"
        + (f": {cited}." if findings else ".")
    )
    return AnalyzerOutput(
        findings=findings,
        metrics={
            "profile": tokens,
            "query": query,
            "ranking": [
                {
                    "id": entries[n].id,
                    "title": entries[n].title,
                    "score": round(s, 4),
                    "answers_problem": fixes,
                }
                for fixes, s, n in ranked
            ],
            "k1": K1,
            "b": B,
            "corpus_size": len(entries),
        },
        summary=summary,
    )


def _finding(entry: Entry, found: dict[str, list[str]], score: float) -> Finding:
    matched = [t for t in entry.applies_when if t in found]
    evidence = list(dict.fromkeys(p for t in matched for p in found[t]))[:20]
    problem = any(t.startswith("problem:") for t in matched)
    why = ", ".join(t.split(":", 1)[1].replace("-", " ") for t in matched) or "every inventory"
    return Finding(
        analyzer=NAME,
        code=f"research.{entry.id}",
        title=entry.title,
        severity="low" if problem else "info",
        evidence=evidence,
        recommendation=f"{entry.body} (Knowledge base {entry.id}, relevance {score:.2f};"
        f" matched: {why}.)",
        rule=f"KB:{entry.id}",
    )
