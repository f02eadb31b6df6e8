"""Compliance: rules per framework (GDPR, HIPAA, SOC 2, the EU AI Act) and security basics.

The rules are data: :data:`RULES` lists each one with its id, framework, the citation a finding
carries (``GDPR Art. 32(1)(a)``, ``HIPAA §164.312(b)``, ``SOC 2 CC6.1``, ``EU AI Act Art. 14``),
the inventory paths it looks at and a check that returns the paths that break it. The
``baseline`` rules (CIS Controls v8 and the OWASP API Top 10) apply to every inventory; the
others to the frameworks ``compliance.frameworks`` names (and the EU AI Act's to an inventory
that states an AI Act risk class, for the organisation or a workload). A rule broken anywhere
gives one finding citing the rule, with every offending path as evidence.

An organisation-wide control left unanswered (``None`` in ``compliance.controls``) counts as not
in place, one severity lower than a control answered ``false``: the finding asks to confirm it.

Metrics (for the report): ``frameworks``, ``rules_checked``, ``rules_failed``, ``by_framework``
(``{framework: {"checked": n, "failed": n}}``) and ``score_pct`` (rules passed over checked).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from conveyor.packs.assess.analyzers import Progress
from conveyor.packs.assess.findings import SEVERITIES, AnalyzerOutput, Finding, Severity
from conveyor.packs.assess.inventory import Controls, Dataset, Inventory

__all__ = [
    "RULES",
    "Rule",
    "analyze",
    "applicable",
    "frameworks_of",
    "jurisdiction",
    "residency_breaches",
]

NAME = "compliance"
MAX_EVIDENCE = 100  # paths per finding; the title gives the full count

Check = Callable[[Inventory], list[str]]
"""An inventory → the paths that break the rule (empty: the rule holds)."""


@dataclass(frozen=True)
class Rule:
    id: str  # stable, part of the finding's code: compliance.<id>
    framework: str  # "baseline", "GDPR", "HIPAA", "SOC2", "EU_AI_ACT"
    citation: str
    title: str
    severity: Severity
    looks_at: tuple[str, ...]  # the inventory paths the check reads, [*] for every item
    check: Check
    recommendation: str
    risk: str


# --- the inventory facts the checks are written in -------------------------------------------

_EU = ("eu-", "europe-", "westeurope", "northeurope", "francecentral", "germanywestcentral",
       "swedencentral", "italynorth", "polandcentral", "spaincentral", "norwayeast",
       "switzerlandnorth", "uksouth", "ukwest", "eu")  # fmt: skip
_US = ("us-", "eastus", "westus", "centralus", "northcentralus", "southcentralus",
       "westcentralus", "us")  # fmt: skip


def jurisdiction(region: str) -> str | None:
    """``"EU"`` or ``"US"`` for a provider region name (``eu-west-1``, ``europe-west4``,
    ``westeurope``, ``us-east-1``, ``eastus2``), else None (unknown: never called a breach).
    The UK and EEA/Swiss regions count as ``EU`` (adequacy decisions)."""
    name = region.strip().lower()
    if any(name.startswith(prefix) for prefix in _EU):
        return "EU"
    if any(name.startswith(prefix) for prefix in _US):
        return "US"
    return None


def residency_breaches(inv: Inventory, *, pii_only: bool = False) -> list[str]:
    """Paths where data with a residency leaves it: the dataset's own region, and the region
    of every instance running a workload that reads it. Unknown regions are not breaches."""
    paths: list[str] = []
    readers = _readers(inv)
    for i, ds in enumerate(inv.storage.datasets):
        if ds.residency is None or (pii_only and not (ds.pii or ds.phi)):
            continue
        wanted = ds.residency.strip().upper()
        if _outside(ds.region, wanted):
            paths.append(f"storage.datasets[{i}].region")
        for j in readers.get(ds.id, ()):
            if _outside(inv.compute.instances[j].region, wanted):
                paths.append(f"compute.instances[{j}].region")
    return sorted(set(paths), key=paths.index)


def _outside(region: str, wanted: str) -> bool:
    where = jurisdiction(region)
    return where is not None and where != wanted and region.strip().upper() != wanted


def _readers(inv: Inventory) -> dict[str, list[int]]:
    """Dataset id → indexes of the instances running a workload or service that reads it."""
    uses: dict[str, set[str]] = {}
    for w in inv.workloads:
        for d in w.datasets:
            uses.setdefault(d, set()).add(w.id)
    for s in inv.services:
        for d in s.datasets:
            uses.setdefault(d, set()).add(s.id)
    out: dict[str, list[int]] = {}
    for j, inst in enumerate(inv.compute.instances):
        users = set(inst.workloads) | set(inst.services)
        for d, readers in uses.items():
            if users & readers:
                out.setdefault(d, []).append(j)
    return out


def _datasets(inv: Inventory, keep: Callable[[Dataset], bool]) -> Iterator[tuple[int, Dataset]]:
    return ((i, d) for i, d in enumerate(inv.storage.datasets) if keep(d))


def _sensitive(d: Dataset) -> bool:
    return d.pii or d.phi


def _unencrypted_at_rest(keep: Callable[[Dataset], bool]) -> Check:
    return lambda inv: [
        f"storage.datasets[{i}].encryption.at_rest"
        for i, d in _datasets(inv, keep)
        if not d.encryption.at_rest
    ]


def _unencrypted_in_transit(keep: Callable[[Dataset], bool]) -> Check:
    return lambda inv: [
        f"storage.datasets[{i}].encryption.in_transit"
        for i, d in _datasets(inv, keep)
        if not d.encryption.in_transit
    ]


def _no_backup(keep: Callable[[Dataset], bool]) -> Check:
    return lambda inv: [
        f"storage.datasets[{i}].backup.enabled"
        for i, d in _datasets(inv, keep)
        if not d.backup.enabled
    ]


def _no_retention(keep: Callable[[Dataset], bool]) -> Check:
    def check(inv: Inventory) -> list[str]:
        if inv.compliance.controls.data_retention_policy:
            return []
        return [
            f"storage.datasets[{i}].retention_days"
            for i, d in _datasets(inv, keep)
            if d.retention_days is None
        ]

    return check


def _critical_data(inv: Inventory) -> set[str]:
    ids = {d for s in inv.services if s.critical for d in s.datasets}
    return ids | {d for w in inv.workloads if w.critical for d in w.datasets}


def _critical_no_backup(inv: Inventory) -> list[str]:
    critical = _critical_data(inv)
    return _no_backup(lambda d: d.id in critical)(inv)


def _public_endpoints(attribute: str, bad: Callable[[object], bool]) -> Check:
    return lambda inv: [
        f"networking.endpoints[{i}].{attribute}"
        for i, e in enumerate(inv.networking.endpoints)
        if e.public and bad(getattr(e, attribute))
    ]


_public_without_tls = _public_endpoints("tls", lambda tls: not tls)
_public_without_auth = _public_endpoints("authentication", lambda auth: not auth)


def _old_tls(inv: Inventory) -> list[str]:
    return [
        f"networking.endpoints[{i}].tls_min_version"
        for i, e in enumerate(inv.networking.endpoints)
        if e.public and e.tls and e.tls_min_version in ("1.0", "1.1")
    ]


def _endpoints_touching(inv: Inventory, keep: Callable[[Dataset], bool]) -> list[int]:
    """Indexes of endpoints whose target (workload or service) reads a dataset ``keep`` selects."""
    ids = {d.id for d in inv.storage.datasets if keep(d)}
    targets = {w.id for w in inv.workloads if ids & set(w.datasets)}
    targets |= {s.id for s in inv.services if ids & set(s.datasets)}
    return [i for i, e in enumerate(inv.networking.endpoints) if e.target in targets]


def _phi_endpoints_without(attribute: str) -> Check:
    return lambda inv: [
        f"networking.endpoints[{i}].{attribute}"
        for i in _endpoints_touching(inv, lambda d: d.phi)
        if not getattr(inv.networking.endpoints[i], attribute)
    ]


def _control(name: str, *, when: Callable[[Inventory], bool] = lambda inv: True) -> Check:
    """The control is not answered true (when ``when`` holds)."""
    assert name in Controls.model_fields, name
    return lambda inv: (
        [f"compliance.controls.{name}"]
        if when(inv) and getattr(inv.compliance.controls, name) is not True
        else []
    )


def _uses_cloud(inv: Inventory) -> bool:
    return any(i.provider not in ("on_prem",) for i in inv.compute.instances)


def _has(keep: Callable[[Dataset], bool]) -> Callable[[Inventory], bool]:
    return lambda inv: any(keep(d) for d in inv.storage.datasets)


def _high_risk_workloads(inv: Inventory) -> list[int]:
    return [i for i, w in enumerate(inv.workloads) if _risk_of(inv, w.ai_act_risk) == "high"]


def _risk_of(inv: Inventory, own: str | None) -> str | None:
    return own or inv.compliance.eu_ai_act_risk


def _is_high_risk(inv: Inventory) -> bool:
    return inv.compliance.eu_ai_act_risk == "high" or bool(_high_risk_workloads(inv))


def _high_risk_control(name: str) -> Check:
    return _control(name, when=_is_high_risk)


def _ai_act_evidence(inv: Inventory) -> list[str]:
    """Where the high-risk class is stated: the organisation's, or each high-risk workload's."""
    if inv.compliance.eu_ai_act_risk == "high":
        return ["compliance.eu_ai_act_risk"]
    return [f"workloads[{i}].ai_act_risk" for i in _high_risk_workloads(inv)]


def _mlops_below(question: str, answers: tuple[str, ...]) -> Check:
    """High-risk, and the MLOps answer to ``question`` is missing or one of ``answers``."""

    def check(inv: Inventory) -> list[str]:
        if not _is_high_risk(inv) or inv.mlops.get(question, answers[0]) not in answers:
            return []
        # unanswered counts as the lowest answer; the path then is the questionnaire's
        where = f"mlops.{question}" if question in inv.mlops else "mlops"
        return [where, *_ai_act_evidence(inv)]

    return check


def _high_risk_public_gaps(inv: Inventory) -> list[str]:
    if not _is_high_risk(inv):
        return []
    org_high = inv.compliance.eu_ai_act_risk == "high"
    risky = {w.id for w in inv.workloads if org_high or w.ai_act_risk == "high"}
    return [
        f"networking.endpoints[{i}]." + ("tls" if not e.tls else "authentication")
        for i, e in enumerate(inv.networking.endpoints)
        if e.public and e.target in risky and not (e.tls and e.authentication)
    ]


def _unacceptable(inv: Inventory) -> list[str]:
    paths = ["compliance.eu_ai_act_risk"] if inv.compliance.eu_ai_act_risk == "unacceptable" else []
    return paths + [
        f"workloads[{i}].ai_act_risk"
        for i, w in enumerate(inv.workloads)
        if w.ai_act_risk == "unacceptable"
    ]


def _limited_risk_chat(inv: Inventory) -> list[str]:
    return [
        f"workloads[{i}].kind"
        for i, w in enumerate(inv.workloads)
        if w.kind == "chat" and _risk_of(inv, w.ai_act_risk) in ("limited", "high")
    ]


def _pii(d: Dataset) -> bool:
    return d.pii


def _phi(d: Dataset) -> bool:
    return d.phi


def _all(d: Dataset) -> bool:
    return True


_DATA = "storage.datasets[*]"
_ENDPOINTS = "networking.endpoints[*]"

RULES: tuple[Rule, ...] = (
    # --- security basics, every inventory -----------------------------------------------------
    Rule("baseline.public-endpoint-tls", "baseline", "CIS Controls v8 3.10",
         "Public endpoints without TLS", "high", (f"{_ENDPOINTS}.public", f"{_ENDPOINTS}.tls"),
         _public_without_tls,
         "Terminate TLS 1.2 or newer on every public endpoint and refuse plain HTTP.",
         "Prompts, answers and credentials cross the internet in clear text."),
    Rule("baseline.public-endpoint-old-tls", "baseline", "CIS Controls v8 3.10",
         "Public endpoints accept TLS 1.0/1.1", "medium", (f"{_ENDPOINTS}.tls_min_version",),
         _old_tls, "Set the minimum TLS version to 1.2 (1.3 where clients allow).",
         "Deprecated protocol versions with known weaknesses stay reachable."),
    Rule("baseline.public-endpoint-auth", "baseline", "OWASP API Security Top 10 API2:2023",
         "Public endpoints without authentication", "high",
         (f"{_ENDPOINTS}.public", f"{_ENDPOINTS}.authentication"), _public_without_auth,
         "Require an API key, OAuth token or mTLS on every public endpoint.",
         "Anyone can call the model: cost abuse, data extraction, prompt injection at scale."),
    Rule("baseline.sensitive-unencrypted", "baseline", "CIS Controls v8 3.11",
         "Personal or health data not encrypted at rest", "high",
         (f"{_DATA}.pii", f"{_DATA}.phi", f"{_DATA}.encryption.at_rest"),
         _unencrypted_at_rest(_sensitive),
         "Turn on encryption at rest with provider-managed or KMS keys for these datasets.",
         "A leaked disk, snapshot or bucket exposes personal data in clear."),
    Rule("baseline.sensitive-no-backup", "baseline", "CIS Controls v8 11.2",
         "Regulated data without backups", "medium",
         (f"{_DATA}.pii", f"{_DATA}.phi", f"{_DATA}.backup.enabled"), _no_backup(_sensitive),
         "Back these datasets up automatically, to another region, and test a restore.",
         "Deletion, corruption or ransomware loses data the organisation must keep."),
    Rule("baseline.critical-no-backup", "baseline", "CIS Controls v8 11.2",
         "Data of critical services without backups", "medium",
         ("services[*].critical", "workloads[*].critical", f"{_DATA}.backup.enabled"),
         _critical_no_backup, "Back up every dataset a critical service or workload reads.",
         "A critical service cannot be restored after data loss."),
    Rule("baseline.access-logging", "baseline", "CIS Controls v8 8.2",
         "No audit or access logging", "medium", ("compliance.controls.audit_logging",),
         _control("audit_logging"),
         "Collect access logs of storage, model endpoints and consoles centrally; keep a year.",
         "Incidents cannot be investigated: who read what, when, is unknown."),
    # --- GDPR ---------------------------------------------------------------------------------
    Rule("gdpr.encryption-at-rest", "GDPR", "GDPR Art. 32(1)(a)",
         "Personal data not encrypted at rest", "high",
         (f"{_DATA}.pii", f"{_DATA}.encryption.at_rest"),
         _unencrypted_at_rest(_pii),
         "Encrypt the datasets holding personal data at rest (Art. 32 names encryption).",
         "A breach of unencrypted personal data must be told to the data subjects (Art. 34)."),
    Rule("gdpr.encryption-in-transit", "GDPR", "GDPR Art. 32(1)(a)",
         "Personal data sent unencrypted", "high",
         (f"{_DATA}.pii", f"{_DATA}.encryption.in_transit"),
         _unencrypted_in_transit(_pii), "Require TLS for every connection to these datasets.",
         "Personal data can be read on the network path."),
    Rule("gdpr.residency", "GDPR", "GDPR Art. 44",
         "Personal data stored or processed outside its residency", "critical",
         (f"{_DATA}.residency", f"{_DATA}.region", "compute.instances[*].region"),
         lambda inv: residency_breaches(inv, pii_only=True),
         "Keep the data and the instances that process it in the allowed regions, or put a"
         " transfer mechanism (adequacy decision, SCCs) in place and record it.",
         "An unlawful transfer of personal data outside the EU, fined up to 4 % of turnover."),
    Rule("gdpr.storage-limitation", "GDPR", "GDPR Art. 5(1)(e)",
         "Personal data without a retention period", "medium",
         (f"{_DATA}.retention_days", "compliance.controls.data_retention_policy"),
         _no_retention(_pii),
         "Set a retention period per dataset (or a written retention policy) and delete after it.",
         "Personal data kept longer than needed breaks storage limitation."),
    Rule("gdpr.availability", "GDPR", "GDPR Art. 32(1)(c)",
         "Personal data that cannot be restored", "medium", (f"{_DATA}.backup.enabled",),
         _no_backup(_pii),
         "Back up personal data so access can be restored in a timely manner after an incident.",
         "Loss of availability of personal data is a personal data breach."),
    Rule("gdpr.processor-agreements", "GDPR", "GDPR Art. 28(3)",
         "No data processing agreements with cloud processors", "medium",
         ("compliance.controls.dpa_signed", "compute.instances[*].provider"),
         _control("dpa_signed", when=lambda inv: _uses_cloud(inv) and _has(_pii)(inv)),
         "Sign a data processing agreement with every provider that processes personal data.",
         "Processing by a provider without an Art. 28 contract is unlawful."),
    Rule("gdpr.access-logging", "GDPR", "GDPR Art. 32(1)(b)",
         "No audit logging of access to personal data", "medium",
         ("compliance.controls.audit_logging",), _control("audit_logging", when=_has(_pii)),
         "Log access to personal data to keep its confidentiality and integrity checkable.",
         "Unauthorised access goes unnoticed; breach notification within 72 h is impossible."),
    # --- HIPAA --------------------------------------------------------------------------------
    Rule("hipaa.encryption-at-rest", "HIPAA", "HIPAA §164.312(a)(2)(iv)",
         "PHI not encrypted at rest", "critical", (f"{_DATA}.phi", f"{_DATA}.encryption.at_rest"),
         _unencrypted_at_rest(_phi), "Encrypt every dataset holding PHI at rest.",
         "Unencrypted PHI that leaks is a reportable breach (no safe harbour)."),
    Rule("hipaa.transmission-security", "HIPAA", "HIPAA §164.312(e)(1)",
         "PHI transmitted without encryption", "high",
         (f"{_DATA}.phi", f"{_DATA}.encryption.in_transit", f"{_ENDPOINTS}.tls"),
         lambda inv: _unencrypted_in_transit(_phi)(inv) + _phi_endpoints_without("tls")(inv),
         "Encrypt PHI in transit: TLS on every endpoint and connection that carries it.",
         "PHI can be intercepted on the network."),
    Rule("hipaa.authentication", "HIPAA", "HIPAA §164.312(d)",
         "Endpoints serving PHI without authentication", "critical",
         (f"{_ENDPOINTS}.authentication",), _phi_endpoints_without("authentication"),
         "Authenticate every person or system calling an endpoint that reads PHI.",
         "Anyone reaching the endpoint can read PHI."),
    Rule("hipaa.audit-controls", "HIPAA", "HIPAA §164.312(b)",
         "No audit controls on systems holding PHI", "high", ("compliance.controls.audit_logging",),
         _control("audit_logging", when=_has(_phi)),
         "Record and examine activity on every system that holds or uses PHI.",
         "Inappropriate access to PHI cannot be detected or proven absent."),
    Rule("hipaa.backup-plan", "HIPAA", "HIPAA §164.308(a)(7)(ii)(A)",
         "PHI without a data backup plan", "high", (f"{_DATA}.phi", f"{_DATA}.backup.enabled"),
         _no_backup(_phi), "Keep retrievable exact copies of PHI (backups) and test restores.",
         "PHI lost to an incident cannot be recovered."),
    Rule("hipaa.business-associates", "HIPAA", "HIPAA §164.308(b)(1)",
         "No business associate agreements with cloud providers", "high",
         ("compliance.controls.baa_signed", "compute.instances[*].provider"),
         _control("baa_signed", when=lambda inv: _uses_cloud(inv) and _has(_phi)(inv)),
         "Sign a BAA with every provider that creates, receives, keeps or sends PHI.",
         "Disclosing PHI to a provider without a BAA is a HIPAA violation."),
    # --- SOC 2 --------------------------------------------------------------------------------
    Rule("soc2.mfa", "SOC2", "SOC 2 CC6.1", "Multi-factor authentication not enforced", "medium",
         ("compliance.controls.mfa",), _control("mfa"),
         "Enforce MFA for consoles, SSO and privileged access.",
         "A phished password is enough to reach production."),
    Rule("soc2.access-reviews", "SOC2", "SOC 2 CC6.2", "No periodic access reviews", "medium",
         ("compliance.controls.access_reviews",), _control("access_reviews"),
         "Review who has access to production and data every quarter; remove what is unused.",
         "Leavers and old roles keep access."),
    Rule("soc2.transmission", "SOC2", "SOC 2 CC6.7", "Public endpoints without TLS", "high",
         (f"{_ENDPOINTS}.tls",), _public_without_tls,
         "Protect data in transmission: TLS on every public endpoint.",
         "Data in transit can be read or altered."),
    Rule("soc2.monitoring", "SOC2", "SOC 2 CC7.2", "No security event logging or monitoring",
         "medium", ("compliance.controls.audit_logging",), _control("audit_logging"),
         "Log security events centrally and alert on anomalies.",
         "Attacks and misuse go undetected."),
    Rule("soc2.incident-response", "SOC2", "SOC 2 CC7.4", "No incident response plan", "medium",
         ("compliance.controls.incident_response_plan",), _control("incident_response_plan"),
         "Write, assign and rehearse an incident response plan.",
         "Incidents are handled ad hoc, slowly and without evidence for the auditor."),
    Rule("soc2.availability-backup", "SOC2", "SOC 2 A1.2",
         "Critical services' data without backups", "medium", (f"{_DATA}.backup.enabled",),
         _critical_no_backup, "Back up and test recovery of the data critical services need.",
         "Commitments on availability cannot be met after data loss."),
    Rule("soc2.vendor-management", "SOC2", "SOC 2 CC9.2", "No vendor risk management", "low",
         ("compliance.controls.vendor_management",), _control("vendor_management"),
         "Assess and review the risk of vendors, GPU clouds and model providers included.",
         "A vendor's failure or breach becomes yours without warning."),
    # --- EU AI Act ----------------------------------------------------------------------------
    Rule("euaiact.prohibited", "EU_AI_ACT", "EU AI Act Art. 5", "A prohibited AI practice",
         "critical", ("compliance.eu_ai_act_risk", "workloads[*].ai_act_risk"), _unacceptable,
         "Stop the use: practices of unacceptable risk are banned in the EU.",
         "Fines up to 7 % of worldwide turnover."),
    Rule("euaiact.risk-management", "EU_AI_ACT", "EU AI Act Art. 9",
         "High-risk AI without a risk management system", "high",
         ("compliance.controls.risk_management",), _high_risk_control("risk_management"),
         "Run a documented risk management process over the system's whole life cycle.",
         "A high-risk system placed on the market without Art. 9 is non-compliant."),
    Rule("euaiact.data-governance", "EU_AI_ACT", "EU AI Act Art. 10",
         "High-risk AI without versioned, governed training data", "high",
         ("mlops.data_versioning",), _mlops_below("data_versioning", ("none", "snapshots")),
         "Version training, validation and test data with their lineage and document its"
         " relevance, representativeness and known biases.",
         "Data quality and bias cannot be shown to the market surveillance authority."),
    Rule("euaiact.record-keeping", "EU_AI_ACT", "EU AI Act Art. 12",
         "High-risk AI without automatic event logging", "high",
         ("compliance.controls.audit_logging",), _high_risk_control("audit_logging"),
         "Log the system's events automatically over its lifetime (inputs, decisions, operators).",
         "The system's operation cannot be traced or audited."),
    Rule("euaiact.transparency", "EU_AI_ACT", "EU AI Act Art. 11, 13",
         "High-risk AI without technical documentation and instructions for use", "medium",
         ("compliance.controls.model_documentation",), _high_risk_control("model_documentation"),
         "Write the technical documentation (Annex IV) and instructions for use for deployers.",
         "Deployers cannot use the system correctly; conformity cannot be assessed."),
    Rule("euaiact.human-oversight", "EU_AI_ACT", "EU AI Act Art. 14",
         "High-risk AI without human oversight", "high", ("compliance.controls.human_oversight",),
         _high_risk_control("human_oversight"),
         "Design in human oversight: people who can understand, override and stop the system.",
         "Harmful automated decisions go unchecked."),
    Rule("euaiact.accuracy-robustness", "EU_AI_ACT", "EU AI Act Art. 15",
         "High-risk AI without tested accuracy, robustness and security", "high",
         ("mlops.model_testing", f"{_ENDPOINTS}.tls", f"{_ENDPOINTS}.authentication"),
         lambda inv: _mlops_below("model_testing", ("none", "manual"))(inv)
         + _high_risk_public_gaps(inv),
         "Test accuracy and robustness automatically before each release and secure the"
         " system's endpoints (TLS, authentication).",
         "Accuracy regressions and attacks on the model reach users."),
    Rule("euaiact.disclosure", "EU_AI_ACT", "EU AI Act Art. 50(1)",
         "Conversational AI must tell people they talk to a machine", "low",
         ("workloads[*].kind", "workloads[*].ai_act_risk"), _limited_risk_chat,
         "Tell users clearly that they are interacting with an AI system.",
         "Users are misled; transparency obligations are breached."),
)  # fmt: skip


def frameworks_of(inv: Inventory) -> list[str]:
    """The frameworks the inventory names, and the EU AI Act when it states a risk class
    (for the organisation or a workload) without naming the Act."""
    named: list[str] = list(inv.compliance.frameworks)
    stated = inv.compliance.eu_ai_act_risk or any(w.ai_act_risk for w in inv.workloads)
    if stated and "EU_AI_ACT" not in named:
        named.append("EU_AI_ACT")
    return named


def applicable(inv: Inventory) -> list[Rule]:
    """The rules that apply: the baseline, and those of the inventory's frameworks."""
    frameworks = {"baseline", *frameworks_of(inv)}
    return [rule for rule in RULES if rule.framework in frameworks]


def analyze(inventory: Inventory, progress: Progress) -> AnalyzerOutput:
    """Check every applicable rule; one finding per broken rule, citing it."""
    rules = applicable(inventory)
    findings: list[Finding] = []
    by_framework: dict[str, dict[str, int]] = {}
    for n, rule in enumerate(rules):
        progress(n / len(rules), rule.id)
        paths = list(dict.fromkeys(rule.check(inventory)))
        tally = by_framework.setdefault(rule.framework, {"checked": 0, "failed": 0})
        tally["checked"] += 1
        if paths:
            tally["failed"] += 1
            findings.append(_finding(inventory, rule, paths))
    progress(1.0, "done")
    failed = len(findings)
    score = round(100.0 * (len(rules) - failed) / len(rules), 1) if rules else 100.0
    frameworks = frameworks_of(inventory)
    named = ", ".join(frameworks) if frameworks else "no framework named"
    summary = (
        f"{len(rules)} rules checked (security baseline; {named}): {failed} broken,"
        f" {score:g} % passed."
    )
    worst = max((f.severity for f in findings), key=SEVERITIES.index, default=None)
    if worst in ("high", "critical"):
        summary += f" The most severe is {worst}: fix those before an audit."
    return AnalyzerOutput(
        findings=findings,
        metrics={
            "frameworks": frameworks,
            "rules_checked": len(rules),
            "rules_failed": failed,
            "by_framework": by_framework,
            "score_pct": score,
        },
        summary=summary,
    )


def _finding(inv: Inventory, rule: Rule, paths: list[str]) -> Finding:
    severity = rule.severity
    recommendation = rule.recommendation
    unanswered = [p for p in paths if p.startswith("compliance.controls.") and _unanswered(inv, p)]
    if unanswered and len(unanswered) == len([p for p in paths if "controls." in p]):
        # not answered rather than answered "no": one step lower, and ask to confirm
        severity = SEVERITIES[max(1, SEVERITIES.index(severity) - 1)]
        recommendation = (
            f"Confirm whether it is in place (the inventory does not say). {recommendation}"
        )
    count = f" ({len(paths)} places)" if len(paths) > 1 else ""
    return Finding(
        analyzer=NAME,
        code=f"compliance.{rule.id}",
        title=f"{rule.title}{count}",
        severity=severity,
        evidence=paths[:MAX_EVIDENCE],
        recommendation=recommendation,
        risk=rule.risk,
        rule=rule.citation,
    )


def _unanswered(inv: Inventory, path: str) -> bool:
    name = path.removeprefix("compliance.controls.")
    return getattr(inv.compliance.controls, name, None) is None
