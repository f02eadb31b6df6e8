"""The LLM-backed analyzer against a real local peer of the chat-completions API (a loopback
HTTP server, allowlisted in the egress policy as an operator would): the request's shape, the
answer's validation, 401/429/500 handling and the egress guard."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import conveyor.packs.assess as assess_pkg
from conveyor.egress import EgressPolicy, parse_allowlist
from conveyor.errors import ConfigurationError
from conveyor.packs.assess.analyzers import no_progress
from conveyor.packs.assess.inventory import Inventory, load_inventory
from conveyor.packs.assess.llm import (
    ChatClient,
    LLMAnswerInvalid,
    LLMError,
    LLMRateLimited,
    LLMRefused,
    LLMSettings,
    LLMUnavailable,
    analyze_with,
    inventory_prompt,
    llm_analyzer,
    path_exists,
)
from conveyor.packs.assess.testing import ChatPeer

EXAMPLE = Path(assess_pkg.__file__).parent / "data" / "examples" / "startup.yaml"


@pytest.fixture()
def peer() -> Iterator[ChatPeer]:
    p = ChatPeer().start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return load_inventory(EXAMPLE.read_bytes(), EXAMPLE.name)


def settings_for(peer: ChatPeer, **changes: Any) -> LLMSettings:
    values: dict[str, Any] = {"url": peer.url, "key": peer.key, "model": "peer-model"}
    return LLMSettings(**(values | changes))


def allowing(peer: ChatPeer) -> EgressPolicy:
    return EgressPolicy(allow=parse_allowlist([peer.allow_entry]), timeout=5.0)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client_for(peer: ChatPeer, sleeps: Sleeps | None = None, **changes: Any) -> ChatClient:
    return ChatClient(
        settings_for(peer, **changes),
        allowing(peer),
        sleep=sleeps if sleeps is not None else Sleeps(),
    )


def test_the_reviewer_round_trip(peer: ChatPeer, inventory: Inventory) -> None:
    analyzer = llm_analyzer(settings_for(peer), allowing(peer))
    assert (analyzer.name, analyzer.soft_limit, analyzer.hard_limit) == ("llm", 180, 210)
    output = analyzer.run(inventory, no_progress)
    [request] = peer.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {peer.key}"
    body = request.body
    assert body["model"] == "peer-model"
    assert body["response_format"] == {"type": "json_object"}
    assert body["temperature"] == 0
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    sent = json.loads(body["messages"][1]["content"].removeprefix("Inventory:\n"))
    assert sent["organisation"]["name"] == "Lumen Labs"
    # the startup's chat-direct endpoint has no TLS; gpu-dev-1 idles at 4 % p95
    found = {f.code: f for f in output.findings}
    assert set(found) == {"llm.plaintext-endpoint", "llm.idle-gpu"}
    assert found["llm.plaintext-endpoint"].evidence == ["networking.endpoints[1].tls"]
    assert found["llm.plaintext-endpoint"].rule == "SOC 2 CC6.7"
    assert found["llm.idle-gpu"].evidence == ["compute.instances[3].utilisation.gpu_p95"]
    assert all(f.analyzer == "llm" for f in output.findings)
    assert output.summary == "The peer reviewer found 2 issues."
    assert output.metrics["findings_returned"] == 2
    assert output.metrics["prompt_trimmed"] is False


def test_a_base_url_ending_in_v1_is_accepted(peer: ChatPeer, inventory: Inventory) -> None:
    client = client_for(peer, url=peer.url + "/v1/")
    analyze_with(client, inventory, no_progress)
    assert [r.path for r in peer.requests] == ["/v1/chat/completions"]


def test_off_by_default() -> None:
    settings = LLMSettings()
    assert not settings.enabled
    with pytest.raises(ConfigurationError, match="CONVEYOR_ASSESS_LLM_URL"):
        llm_analyzer(settings, EgressPolicy())


def test_the_egress_guard_refuses_an_unlisted_peer(peer: ChatPeer, inventory: Inventory) -> None:
    client = ChatClient(settings_for(peer), EgressPolicy(), sleep=Sleeps())
    with pytest.raises(LLMRefused, match="CONVEYOR_EGRESS_ALLOW"):
        analyze_with(client, inventory, no_progress)
    assert peer.requests == []


def test_a_wrong_key_is_not_retried(peer: ChatPeer, inventory: Inventory) -> None:
    sleeps = Sleeps()
    with pytest.raises(LLMRefused, match=r"HTTP 401 \(invalid_api_key\)") as caught:
        analyze_with(client_for(peer, sleeps, key="wrong"), inventory, no_progress)
    assert len(peer.requests) == 1 and sleeps == []
    assert "Incorrect API key" not in str(caught.value)  # the body is never echoed


def test_429_waits_retry_after_then_succeeds(peer: ChatPeer, inventory: Inventory) -> None:
    peer.retry_after = 7
    peer.script("rate_limit")
    sleeps = Sleeps()
    output = analyze_with(client_for(peer, sleeps), inventory, no_progress)
    assert sleeps == [7.0]
    assert len(peer.requests) == 2
    assert output.findings


def test_retry_after_is_capped(peer: ChatPeer, inventory: Inventory) -> None:
    peer.retry_after = 3600
    peer.script("rate_limit")
    sleeps = Sleeps()
    analyze_with(client_for(peer, sleeps, max_retry_after=5), inventory, no_progress)
    assert sleeps == [5.0]


def test_429_on_every_attempt(peer: ChatPeer, inventory: Inventory) -> None:
    peer.script("rate_limit", "rate_limit", "rate_limit")
    sleeps = Sleeps()
    with pytest.raises(LLMRateLimited, match="rate_limit_exceeded") as caught:
        analyze_with(client_for(peer, sleeps), inventory, no_progress)
    assert caught.value.retry_after == 1.0
    assert len(peer.requests) == 3 and sleeps == [1.0, 1.0]


def test_500_is_retried_with_backoff(peer: ChatPeer, inventory: Inventory) -> None:
    peer.script("server_error")
    sleeps = Sleeps()
    assert analyze_with(client_for(peer, sleeps), inventory, no_progress).findings
    assert sleeps == [1.0]
    peer.script("server_error", "server_error", "server_error")
    sleeps = Sleeps()
    with pytest.raises(LLMUnavailable, match="HTTP 500"):
        analyze_with(client_for(peer, sleeps), inventory, no_progress)
    assert sleeps == [1.0, 2.0]


def test_a_peer_that_is_gone(inventory: Inventory) -> None:
    gone = ChatPeer().start()
    settings, policy = settings_for(gone, max_attempts=2), allowing(gone)
    gone.stop()
    sleeps = Sleeps()
    with pytest.raises(LLMUnavailable, match="2 attempts"):
        analyze_with(ChatClient(settings, policy, sleep=sleeps), inventory, no_progress)
    assert sleeps == [1.0]


@pytest.mark.parametrize(
    "content",
    [
        "this is not JSON",
        "[]",
        json.dumps({"findings": [{"code": "x", "title": "t", "severity": "urgent",
                                  "evidence": [], "recommendation": "r"}]}),
        json.dumps({"summary": "no findings key"}),
        json.dumps({"findings": [{"code": "x", "title": "t", "severity": "low", "evidence": [],
                                  "recommendation": "r", "monthly_saving_usd": -5}]}),
    ],
)  # fmt: skip
def test_answers_that_are_not_the_schema(
    peer: ChatPeer, inventory: Inventory, content: str
) -> None:
    peer.script(content)
    with pytest.raises(LLMAnswerInvalid) as caught:
        analyze_with(client_for(peer), inventory, no_progress)
    assert "urgent" not in str(caught.value)


def test_findings_keep_only_evidence_that_exists(peer: ChatPeer, inventory: Inventory) -> None:
    answer = {
        "summary": "s",
        "findings": [
            {"code": "Mixed Evidence!", "title": "t", "severity": "low", "recommendation": "r",
             "evidence": ["compute.instances[0].type", "compute.instances[999].type",
                          "nowhere.at_all"]},
            {"code": "made-up", "title": "t", "severity": "high", "recommendation": "r",
             "evidence": ["compute.instances[0].gpu.colour"]},
        ],
    }  # fmt: skip
    peer.script(json.dumps(answer))
    output = analyze_with(client_for(peer), inventory, no_progress)
    [finding] = output.findings
    assert finding.code == "llm.mixed-evidence"
    assert finding.evidence == ["compute.instances[0].type"]
    assert output.metrics["findings_dropped"] == 1
    assert output.metrics["evidence_paths_dropped"] == 3


def test_a_cancel_stops_a_retry_wait(peer: ChatPeer, inventory: Inventory) -> None:
    peer.retry_after = 30
    peer.script("rate_limit")

    class Cancelled(Exception):
        pass

    notes: list[str] = []

    def progress(fraction: float, note: str = "") -> None:
        notes.append(note)
        if note.startswith("waiting"):
            raise Cancelled

    analyzer = llm_analyzer(settings_for(peer), allowing(peer))
    with pytest.raises(Cancelled):
        analyzer.run(inventory, progress)
    assert len(peer.requests) == 1


def test_a_large_inventory_is_trimmed_for_the_prompt(inventory: Inventory) -> None:
    text, trimmed = inventory_prompt(inventory, 2_000)
    assert trimmed and len(text) <= 2_000
    full, trimmed = inventory_prompt(inventory, 1_000_000)
    assert not trimmed and json.loads(full)["organisation"]["name"] == "Lumen Labs"


@pytest.mark.parametrize(
    ("path", "exists"),
    [("compute.instances[0].gpu.count", True), ("mlops.data_versioning", True),
     ("compute.instances[7]", False), ("compute.instances[-1]", False), ("compute..x", False),
     ("compute.instances[0]gpu", False), ("", False), ("budget.monthly_usd.x", False)],
)  # fmt: skip
def test_path_exists(inventory: Inventory, path: str, exists: bool) -> None:
    assert path_exists(inventory.model_dump(mode="json"), path) is exists


def test_settings_refuse_what_cannot_work() -> None:
    LLMSettings(url="http://localhost:8000").check("development")
    with pytest.raises(ConfigurationError, match="http:// or https://"):
        LLMSettings(url="ftp://x").check("development")
    with pytest.raises(ConfigurationError, match="KEY"):
        LLMSettings(url="https://llm.example").check("production")
    with pytest.raises(ConfigurationError, match="https://"):
        LLMSettings(url="http://llm.example", key="k").check("production")


def test_other_4xx_is_an_error_naming_the_status(peer: ChatPeer, inventory: Inventory) -> None:
    client = client_for(peer, url=peer.url + "/elsewhere")
    with pytest.raises(LLMError, match=r"HTTP 404 \(unknown_url\)"):
        analyze_with(client, inventory, no_progress)


def test_the_configured_analyzer_reads_the_environment_when_it_runs(
    peer: ChatPeer, inventory: Inventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor.packs.assess.llm import ANALYZER

    for name in ("URL", "KEY", "MODEL"):
        monkeypatch.delenv(f"CONVEYOR_ASSESS_LLM_{name}", raising=False)
    with pytest.raises(LLMError, match="off: set CONVEYOR_ASSESS_LLM_URL"):
        ANALYZER.run(inventory, no_progress)
    monkeypatch.setenv("CONVEYOR_ASSESS_LLM_URL", peer.url)
    monkeypatch.setenv("CONVEYOR_ASSESS_LLM_KEY", peer.key)
    monkeypatch.setenv("CONVEYOR_ASSESS_LLM_MODEL", "from-env")
    monkeypatch.delenv("CONVEYOR_EGRESS_ALLOW", raising=False)
    with pytest.raises(LLMRefused, match="CONVEYOR_EGRESS_ALLOW"):
        ANALYZER.run(inventory, no_progress)
    assert peer.requests == []
    monkeypatch.setenv("CONVEYOR_EGRESS_ALLOW", peer.allow_entry)
    output = ANALYZER.run(inventory, no_progress)
    assert output.metrics["model"] == "from-env"
    assert [r.body["model"] for r in peer.requests] == ["from-env"]
    assert (ANALYZER.name, ANALYZER.soft_limit, ANALYZER.hard_limit) == ("llm", 180, 210)
