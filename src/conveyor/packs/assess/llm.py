"""An LLM-backed analyzer, off by default: any OpenAI-compatible chat-completions endpoint.

Configured by ``CONVEYOR_ASSESS_LLM_URL`` (the API's base, e.g. ``https://api.openai.com`` or
``http://vllm.internal:8000``; unset: off), ``CONVEYOR_ASSESS_LLM_KEY`` and
``CONVEYOR_ASSESS_LLM_MODEL`` (see :class:`LLMSettings`). :data:`ANALYZER` is the
:class:`~conveyor.packs.assess.analyzers.Analyzer` named ``llm`` that reads them when it runs:
list ``conveyor.packs.assess.llm:ANALYZER`` in ``CONVEYOR_ASSESS_EXTRA_ANALYZERS`` to run it
beside the ten built-in ones; :func:`llm_analyzer` builds one from given settings.

One request per assessment: ``POST {base}/v1/chat/completions`` with ``model``, ``messages``
(a system prompt stating the answer's JSON shape, and the inventory as JSON, trimmed to
``max_prompt_chars``), ``response_format: {"type": "json_object"}`` and ``temperature: 0``,
sent through Conveyor's guarded client (:class:`~conveyor.packs.kit.EgressClient`: the address
guard, timeouts, bounded answers), so a private endpoint must be listed in
``CONVEYOR_EGRESS_ALLOW``. The answer's ``choices[0].message.content`` must be a JSON object
``{"summary": str, "findings": [...]}``; each finding is validated, its code prefixed with
``llm.``, and its evidence kept only where the path exists in the inventory (a finding left
without evidence is dropped and counted). An LLM's findings are suggestions: they carry no
saving unless the model gave one, and the report shows them under the ``llm`` analyzer.

Failures (never the answer's body in a message, only its status line and error code)::

    AssessError
    └── LLMError            the LLM analyzer could not produce findings
        ├── LLMRefused      401/403: the key was refused, or the egress guard refused the URL
        ├── LLMRateLimited  429 on every attempt (each waited out per Retry-After, capped)
        ├── LLMUnavailable  5xx, timeouts or connection errors on every attempt
        └── LLMAnswerInvalid the answer is not the JSON object asked for

429 and 5xx are retried up to ``max_attempts`` in all; waits go through ``sleep``, which the
analyzer splits into short naps with a progress call between, so a cancel stops it waiting.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from conveyor.errors import ConfigurationError
from conveyor.packs.assess.analyzers import ANALYZERS, HARD_LIMIT_MARGIN, Analyzer, Progress
from conveyor.packs.assess.errors import AssessError
from conveyor.packs.assess.findings import AnalyzerOutput, Finding, Severity
from conveyor.packs.assess.inventory import Inventory
from conveyor.packs.kit import EgressClient, EgressFailed, EgressPolicy, EgressRefused

__all__ = [
    "ANALYZER",
    "ChatClient",
    "LLMAnswerInvalid",
    "LLMError",
    "LLMRateLimited",
    "LLMRefused",
    "LLMSettings",
    "LLMUnavailable",
    "analyze_with",
    "llm_analyzer",
    "path_exists",
]

NAME = "llm"
SOFT_LIMIT = 180
MAX_ANSWER_BYTES = 512 * 1024
_CODE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")


class LLMSettings(BaseSettings):
    """``CONVEYOR_ASSESS_LLM_*``; the analyzer is off while ``url`` is unset."""

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_ASSESS_LLM_", extra="ignore")

    url: str | None = None  # the API's base URL, without /v1/chat/completions
    key: SecretStr | None = None  # sent as "Authorization: Bearer <key>"
    model: str = "gpt-4o-mini"
    timeout: float = Field(default=60.0, gt=0)  # per request: a long answer takes a while
    max_attempts: int = Field(default=3, ge=1, le=10)
    max_retry_after: float = Field(default=30.0, ge=0)  # the longest Retry-After honoured
    max_prompt_chars: int = Field(default=60_000, ge=1_000)

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    @property
    def endpoint(self) -> str:
        """The chat-completions URL of ``url`` (a base ending in ``/v1`` is accepted too)."""
        if not self.url:
            raise ConfigurationError("CONVEYOR_ASSESS_LLM_URL is not set: the LLM analyzer is off")
        base = self.url.rstrip("/")
        return f"{base}/chat/completions" if base.endswith("/v1") else f"{base}/v1/chat/completions"

    def check(self, env: str) -> None:
        """Refuse a configuration that cannot work: a URL that is not http(s), or, in
        production, no key or a key sent over plain http."""
        if not self.url:
            return
        if not self.url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"CONVEYOR_ASSESS_LLM_URL must be an http:// or https:// URL, not {self.url!r}"
            )
        if env == "production" and self.key is None:
            raise ConfigurationError("CONVEYOR_ASSESS_LLM_KEY must be set in production")
        if env == "production" and self.url.startswith("http://"):
            raise ConfigurationError(
                "CONVEYOR_ASSESS_LLM_URL must use https:// in production (the key is sent)"
            )


class LLMError(AssessError):
    """The LLM analyzer could not produce findings."""


class LLMRefused(LLMError):
    pass


class LLMRateLimited(LLMError):
    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LLMUnavailable(LLMError):
    pass


class LLMAnswerInvalid(LLMError):
    pass


class ChatClient:
    """Sends chat-completion requests to one OpenAI-compatible endpoint, with retries."""

    def __init__(
        self,
        settings: LLMSettings,
        egress: EgressPolicy,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.url = settings.endpoint
        self.policy = dataclasses.replace(
            egress,
            timeout=settings.timeout,
            max_response_bytes=min(egress.max_response_bytes or MAX_ANSWER_BYTES, MAX_ANSWER_BYTES),
        )
        self.sleep = sleep

    def complete(self, messages: list[dict[str, str]]) -> str:
        """The assistant's message content for ``messages`` (JSON mode); or :class:`LLMError`."""
        body = {
            "model": self.settings.model,
            "messages": messages,
            "response_format": {"type": "json_object"},
            "temperature": 0,
        }
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.settings.key is not None:
            headers["Authorization"] = f"Bearer {self.settings.key.get_secret_value()}"
        attempts = self.settings.max_attempts
        with EgressClient(self.policy, user_agent="conveyor-assess") as client:
            for attempt in range(1, attempts + 1):
                last = attempt == attempts
                try:
                    answer = client.post(self.url, json=body, headers=headers)
                except EgressRefused as exc:
                    raise LLMRefused(
                        f"the LLM URL is refused: {exc} (CONVEYOR_EGRESS_ALLOW may list it)"
                    ) from exc
                except EgressFailed as exc:
                    if last:
                        raise LLMUnavailable(f"no answer after {attempts} attempts: {exc}") from exc
                    self.sleep(_backoff(attempt))
                    continue
                status = answer.status_code
                if answer.is_success:
                    return _content(_json(answer.content))
                code = _error_code(answer.content)
                shown = f"{answer.status_line}{f' ({code})' if code else ''}"
                if status in (401, 403):
                    raise LLMRefused(
                        f"the LLM endpoint refused the key: {shown}; check CONVEYOR_ASSESS_LLM_KEY"
                    )
                if status == 429:
                    wait = _retry_after(answer.headers.get("Retry-After"))
                    if last:
                        raise LLMRateLimited(
                            f"rate limited on all {attempts} attempts: {shown}", wait
                        )
                    capped = min(wait if wait is not None else _backoff(attempt),
                                 self.settings.max_retry_after)  # fmt: skip
                    self.sleep(capped)
                    continue
                if status >= 500:
                    if last:
                        raise LLMUnavailable(f"the LLM endpoint failed {attempts} times: {shown}")
                    self.sleep(_backoff(attempt))
                    continue
                raise LLMError(f"the LLM endpoint did not accept the request: {shown}")
        raise AssertionError("unreachable: the last attempt returns or raises")


def _backoff(attempt: int) -> float:
    return float(min(8, 2 ** (attempt - 1)))


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _error_code(content: bytes) -> str | None:
    """The OpenAI-style ``error.code`` (or ``type``) if it is a short identifier; never text."""
    try:
        error = json.loads(content).get("error", {})
        for key in ("code", "type"):
            value = error.get(key)
            if isinstance(value, str) and re.fullmatch(r"[a-z_]{1,40}", value):
                return value
    except (ValueError, AttributeError):
        pass
    return None


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:  # includes UnicodeDecodeError
        raise LLMAnswerInvalid("the answer is not JSON") from None


def _content(data: Any) -> str:
    try:
        content = data["choices"][0]["message"]["content"]
    except (TypeError, KeyError, IndexError) as exc:
        raise LLMAnswerInvalid(
            "the answer is not a chat completion (no choices[0].message.content)"
        ) from exc
    if not isinstance(content, str):
        raise LLMAnswerInvalid("choices[0].message.content is not text")
    return content


# --- the analyzer ------------------------------------------------------------------------------

SYSTEM_PROMPT = """\
You review an organisation's AI infrastructure, given as a JSON inventory (workloads, compute
instances with GPUs and utilisation, storage datasets, networking endpoints, budget, compliance
frameworks and controls, MLOps questionnaire answers). Find the most important cost, capacity,
reliability, security and compliance problems that the inventory itself shows.

Answer with ONE JSON object and nothing else:
{"summary": "1-3 sentences",
 "findings": [{"code": "short-kebab-id", "title": "...",
               "severity": "info|low|medium|high|critical",
               "evidence": ["inventory paths such as compute.instances[3].gpu.count"],
               "recommendation": "...", "monthly_saving_usd": number or null,
               "risk": "what goes wrong if ignored" or null,
               "rule": "a cited rule such as GDPR Art. 32(1)(a)" or null}]}
Evidence paths use dots and [index] exactly as in the inventory. At most 20 findings.
"""


class _LLMFinding(BaseModel):
    model_config = ConfigDict(extra="ignore")

    code: Annotated[str, Field(min_length=1, max_length=80)]
    title: Annotated[str, Field(min_length=1, max_length=300)]
    severity: Severity
    evidence: Annotated[list[Annotated[str, Field(max_length=300)]], Field(max_length=50)]
    recommendation: Annotated[str, Field(min_length=1, max_length=3000)]
    monthly_saving_usd: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    risk: Annotated[str, Field(max_length=1000)] | None = None
    rule: Annotated[str, Field(max_length=200)] | None = None


class _LLMAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    summary: Annotated[str, Field(max_length=2000)] = ""
    findings: Annotated[list[_LLMFinding], Field(max_length=100)]


def inventory_prompt(inventory: Inventory, max_chars: int) -> tuple[str, bool]:
    """The inventory as compact JSON for the prompt, and whether it was trimmed to fit: the
    instance list is cut first (a note says how many are shown), then the text itself."""
    data = inventory.model_dump(mode="json", exclude_defaults=True)
    text = json.dumps(data, separators=(",", ":"))
    if len(text) <= max_chars:
        return text, False
    instances = data.get("compute", {}).get("instances", [])
    total, keep = len(instances), len(instances)
    while keep > 0 and len(text) > max_chars:
        keep //= 2
        data["compute"]["instances"] = instances[:keep]
        data["compute"]["note"] = f"first {keep} of {total} instances shown"
        text = json.dumps(data, separators=(",", ":"))
    return text[:max_chars], True


_KEY = r"[A-Za-z_][A-Za-z0-9_]*"
_PATH = re.compile(rf"{_KEY}(?:\.{_KEY}|\[\d+\])*")
_STEP = re.compile(rf"({_KEY})|\[(\d+)\]")


def path_exists(document: Any, path: str) -> bool:
    """Whether ``path`` (``compute.instances[3].gpu.count``) names something in ``document``
    (the inventory as plain data)."""
    if not _PATH.fullmatch(path):
        return False
    node = document
    for match in _STEP.finditer(path):
        key, index = match.group(1), match.group(2)
        if key is not None:
            if not isinstance(node, dict) or key not in node:
                return False
            node = node[key]
        elif not isinstance(node, list) or int(index) >= len(node):
            return False
        else:
            node = node[int(index)]
    return True


def analyze_with(client: ChatClient, inventory: Inventory, progress: Progress) -> AnalyzerOutput:
    """Ask the endpoint about ``inventory``; its answer validated into findings."""
    progress(0.05, "prompt")
    text, trimmed = inventory_prompt(inventory, client.settings.max_prompt_chars)
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Inventory:\n{text}"},
    ]
    content = client.complete(messages)
    progress(0.9, "validating the answer")
    try:
        answer = _LLMAnswer.model_validate_json(content)
    except ValidationError as exc:
        where = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(answer)'}: {e['type']}"
            for e in exc.errors(include_url=False)[:5]
        )
        raise LLMAnswerInvalid(f"the answer is not the JSON object asked for: {where}") from None
    document = inventory.model_dump(mode="json")
    findings: list[Finding] = []
    dropped = dropped_paths = 0
    for item in answer.findings:
        evidence = [p for p in dict.fromkeys(item.evidence) if path_exists(document, p)]
        dropped_paths += len(set(item.evidence)) - len(evidence)
        if not evidence:
            dropped += 1
            continue
        code = item.code.strip().lower()
        code = code if _CODE.match(code) else re.sub(r"[^a-z0-9._-]+", "-", code)[:80].strip("-")
        findings.append(
            Finding(
                analyzer=NAME,
                code=f"llm.{code or 'finding'}",
                title=item.title.strip(),
                severity=item.severity,
                evidence=evidence,
                recommendation=item.recommendation.strip(),
                monthly_saving_usd=item.monthly_saving_usd,
                risk=item.risk,
                rule=item.rule,
            )
        )
    progress(1.0, "done")
    summary = answer.summary.strip() or f"The LLM reviewer returned {len(findings)} findings."
    return AnalyzerOutput(
        findings=findings,
        metrics={
            "model": client.settings.model,
            "findings_returned": len(answer.findings),
            "findings_dropped": dropped,
            "evidence_paths_dropped": dropped_paths,
            "prompt_chars": len(text),
            "prompt_trimmed": trimmed,
        },
        summary=summary[:1000],
    )


def cooperative_sleep(progress: Progress, nap: float = 0.25) -> Callable[[float], None]:
    """A ``sleep`` that naps in short slices and reports progress between them, so a cancel
    (raised by ``progress``) interrupts a Retry-After wait."""

    def sleep(seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            progress(0.1, f"waiting {left:.0f} s before retrying the LLM endpoint")
            time.sleep(min(nap, left))

    return sleep


def _run_configured(inventory: Inventory, progress: Progress) -> AnalyzerOutput:
    """:data:`ANALYZER`'s run: the settings and egress policy of the worker's environment,
    read when it runs (never at import)."""
    from conveyor.config import Settings

    settings = LLMSettings()
    if not settings.enabled:
        raise LLMError("the LLM analyzer is off: set CONVEYOR_ASSESS_LLM_URL (and _KEY, _MODEL)")
    policy = EgressPolicy.from_settings(Settings())
    client = ChatClient(settings, policy, sleep=cooperative_sleep(progress))
    return analyze_with(client, inventory, progress)


def _weight() -> float:
    return SOFT_LIMIT / (sum(a.soft_limit for a in ANALYZERS.values()) + SOFT_LIMIT)


ANALYZER = Analyzer(
    name=NAME,
    role="LLM reviewer",
    soft_limit=SOFT_LIMIT,
    hard_limit=SOFT_LIMIT + HARD_LIMIT_MARGIN,
    weight=_weight(),
    run=_run_configured,
)
"""The LLM analyzer as configured by the environment (``CONVEYOR_ASSESS_LLM_*`` and
``CONVEYOR_EGRESS_*``), for ``CONVEYOR_ASSESS_EXTRA_ANALYZERS``
(``'["conveyor.packs.assess.llm:ANALYZER"]'``); while ``CONVEYOR_ASSESS_LLM_URL`` is unset it
fails with :class:`LLMError` saying so."""


def llm_analyzer(settings: LLMSettings, egress: EgressPolicy) -> Analyzer:
    """The ``llm`` analyzer for these settings; :class:`ConfigurationError` while it is off.

    Its weight is its soft limit's share of every analyzer's with it added, as the registry's
    are; the workflow that adds it renormalises the weights of what it runs."""
    if not settings.enabled:
        raise ConfigurationError(
            "the LLM analyzer is off: set CONVEYOR_ASSESS_LLM_URL (and _KEY, _MODEL)"
        )
    settings.check("development")  # refuses a URL that cannot work now, not at run time

    def run(inventory: Inventory, progress: Progress) -> AnalyzerOutput:
        client = ChatClient(settings, egress, sleep=cooperative_sleep(progress))
        return analyze_with(client, inventory, progress)

    return dataclasses.replace(ANALYZER, run=run)
