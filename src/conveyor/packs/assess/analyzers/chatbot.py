"""Chatbot: the conversational workloads (inference of kind ``chat``), turn by turn.

A conversation of ``T`` turns (``turns_per_conversation``, :data:`DEFAULT_TURNS` when unset)
resends its history: turn ``t`` prefills ``input * t + output * (t - 1)`` tokens (each turn's
new input plus every earlier exchange) and generates ``output``, so its KV cache holds
``input * t + output * t`` tokens, at most the model's ``context_length`` (beyond it the
history is truncated). The arithmetic of one request at a given prompt length is
:mod:`conveyor.packs.assess.capacity`'s (:func:`~conveyor.packs.assess.capacity.serving`):
time to first token from prefill FLOPs, per-token latency from memory bandwidth, KV cache
from the model's shape. This module evaluates it at the first and at the last turn, on the
GPUs of the instances that run the workload (the largest group of one GPU model and count).

- cost per 1,000 conversations = the workload's monthly cost (its instances, each split among
  what it runs, see :mod:`conveyor.packs.assess.costs`) / conversations per month * 1,000, with
  conversations per month = requests/s * 3,600 * 730 / T;
- prefix caching saves the re-prefill of the history: the share of a replica's time spent
  prefilling history, ``(P - input) / prefill rate`` over ``P / prefill rate + output / decode
  rate`` with ``P`` the mean prompt over the turns (each at most the context), times the
  monthly cost (an upper bound: it assumes cost follows GPU time).

Findings (``chat.*``): time to first token or request latency over the SLO, context overflow,
KV-cache pressure, the model not fitting, batching or prefix caching off, unknown GPUs or token
counts. Metrics: ``workloads``, a list with one entry per chat workload of the figures above.
"""

from __future__ import annotations

from typing import Any

from conveyor.packs.assess.analyzers import Progress
from conveyor.packs.assess.capacity import Serving, placements, replica_groups, serving
from conveyor.packs.assess.costs import instance_costs, workload_costs
from conveyor.packs.assess.findings import AnalyzerOutput, Finding, Severity
from conveyor.packs.assess.inventory import Inventory, Tokens, Workload
from conveyor.packs.assess.reference import gpu_specs

__all__ = ["DEFAULT_TURNS", "analyze", "conversation_tokens"]

NAME = "chatbot"
DEFAULT_TURNS = 4
HOURS_PER_MONTH = 730
KV_PRESSURE = 0.7  # weights + KV over usable memory above this: pressure


def conversation_tokens(input_tokens: int, output_tokens: int, turns: int) -> list[int]:
    """The prompt (prefill) length of each turn 1..turns, history included, uncapped."""
    return [input_tokens * t + output_tokens * (t - 1) for t in range(1, turns + 1)]


def analyze(inventory: Inventory, progress: Progress) -> AnalyzerOutput:
    """Latency, context and KV cache of every chat workload, and its cost per conversation."""
    chats = [(i, w) for i, w in enumerate(inventory.workloads) if w.kind == "chat"]
    if not chats:
        progress(1.0, "no chat workloads")
        return AnalyzerOutput(
            findings=[],
            metrics={"workloads": []},
            summary="No conversational (chat) workloads in the inventory: nothing to analyse.",
        )
    where = placements(inventory)
    costs = workload_costs(instance_costs(inventory))
    findings: list[Finding] = []
    figures: list[dict[str, Any]] = []
    for n, (i, w) in enumerate(chats):
        progress(n / len(chats), w.id)
        found, metrics = _workload(inventory, i, w, where.get(w.id, []), costs.get(w.id, 0.0))
        findings.extend(found)
        figures.append(metrics)
    progress(1.0, "done")
    over = [m["workload"] for m in figures if m.get("slo_met") is False]
    priced = [m for m in figures if m.get("cost_per_1k_conversations_usd") is not None]
    summary = f"{len(chats)} chat workload{'s' if len(chats) != 1 else ''} analysed"
    if priced:
        summary += "; cost per 1,000 conversations: " + ", ".join(
            f"{m['workload']} ${m['cost_per_1k_conversations_usd']:,.2f}" for m in priced
        )
    summary += "." + (f" Over their latency SLO: {', '.join(over)}." if over else "")
    return AnalyzerOutput(findings=findings, metrics={"workloads": figures}, summary=summary)


def _workload(
    inv: Inventory, i: int, w: Workload, indexes: list[int], monthly_usd: float
) -> tuple[list[Finding], dict[str, Any]]:
    path = f"workloads[{i}]"
    turns = w.turns_per_conversation or DEFAULT_TURNS
    metrics: dict[str, Any] = {
        "workload": w.id,
        "turns": turns,
        "turns_assumed": w.turns_per_conversation is None,
        "monthly_cost_usd": round(monthly_usd, 2),
    }
    findings: list[Finding] = []
    rps = w.requests_per_s or w.peak_requests_per_s or 0.0
    if rps > 0 and monthly_usd > 0:
        conversations = rps * 3600 * HOURS_PER_MONTH / turns
        metrics["conversations_per_month"] = round(conversations)
        metrics["cost_per_1k_conversations_usd"] = round(monthly_usd / conversations * 1000, 4)
    if w.tokens is None:
        findings.append(
            _finding("chat.tokens-unknown", f"{_name(w)}: tokens per request not given", "info",
                     [f"{path}.tokens"], "Give input and output tokens per request so latency,"
                     " context growth and KV cache can be estimated.")
        )  # fmt: skip
        return findings, metrics
    groups = replica_groups(inv, indexes)
    if not groups:
        findings.append(
            _finding("chat.no-gpus", f"{_name(w)}: no GPU instance runs it", "info", [path],
                     "List the GPU instances that serve this workload (their `workloads`).")
        )  # fmt: skip
        return findings, metrics
    (model, count), members = max(groups.items(), key=lambda kv: (len(kv[1]), kv[0][1]))
    gpu = gpu_specs().get(model)
    gpu_path = f"compute.instances[{members[0]}].gpu.model"
    if gpu is None:
        findings.append(
            _finding("chat.unknown-gpu", f"{_name(w)}: GPU model {model!r} unknown", "info",
                     [gpu_path], "Use a GPU model of the pack's GPU table (data/gpus.json).")
        )  # fmt: skip
        return findings, metrics
    prompts = conversation_tokens(w.tokens.input, w.tokens.output, turns)
    limit = w.model.context_length
    last_prompt = max(1, min(prompts[-1], limit - w.tokens.output))
    first = serving(w, gpu, count, len(members))
    last = serving(_with_prompt(w, last_prompt), gpu, count, len(members))
    metrics |= {
        "gpu": model,
        "gpus_per_replica": count,
        "replicas": len(members),
        "context_first": prompts[0] + w.tokens.output,
        "context_last": prompts[-1] + w.tokens.output,
        "context_length": limit,
        "ttft_ms_first": round(first.ttft_ms, 1),
        "ttft_ms_last": round(last.ttft_ms, 1),
        "per_token_ms": round(last.decode_step_ms, 2),
        "latency_ms_last": round(last.latency_ms, 1),
        "weights_gb": round(last.weights_gb, 1),
        "kv_gb_last": round(last.kv_gb, 1),
        "usable_gb": round(last.usable_gb, 1),
        "concurrent": last.concurrent,
    }
    evidence_slo = f"{path}.slo"
    slo = w.slo
    met = True
    if slo and slo.ttft_ms and last.ttft_ms > slo.ttft_ms:
        met = False
        early = first.ttft_ms > slo.ttft_ms
        findings.append(
            _finding(
                "chat.ttft-over-slo",
                f"{_name(w)}: time to first token {last.ttft_ms:,.0f} ms at turn {turns}"
                f" against an SLO of {slo.ttft_ms:,.0f} ms",
                "high" if early else "medium",
                [f"{evidence_slo}.ttft_ms", f"{path}.tokens.input", gpu_path],
                "Turn on prefix caching so the history is not prefilled again, bound the"
                " history (summarise past turns), or add prefill capacity.",
                risk="Users wait for the first word; conversations are abandoned.",
            )
        )
    if slo and slo.p95_ms and last.latency_ms > slo.p95_ms:
        met = False
        findings.append(
            _finding(
                "chat.latency-over-slo",
                f"{_name(w)}: a full answer takes {last.latency_ms:,.0f} ms at turn {turns}"
                f" against a p95 SLO of {slo.p95_ms:,.0f} ms",
                "high",
                [f"{evidence_slo}.p95_ms", f"{path}.tokens.output", gpu_path],
                f"Per-token latency is {last.decode_step_ms:.1f} ms: quantise (fp8/int8),"
                " use speculative decoding, or spread the model over more GPUs.",
                risk="Answers miss the latency target at the end of long conversations.",
            )
        )
    if slo and (slo.ttft_ms or slo.p95_ms):
        metrics["slo_met"] = met
    if prompts[-1] + w.tokens.output > limit:
        cut = next(t for t, p in enumerate(prompts, 1) if p + w.tokens.output > limit)
        findings.append(
            _finding(
                "chat.context-overflow",
                f"{_name(w)}: the history outgrows the {limit:,}-token context at turn {cut}"
                f" of {turns}",
                "medium",
                [f"{path}.model.context_length", f"{path}.turns_per_conversation"],
                "Summarise or drop early turns past a token budget; the model otherwise loses"
                " the start of the conversation silently.",
                risk="Late turns answer without the conversation's beginning.",
            )
        )
    findings.extend(_memory(w, path, gpu_path, last))
    findings.extend(_serving_options(w, path, first, prompts, monthly_usd))
    return findings, metrics


def _memory(w: Workload, path: str, gpu_path: str, last: Serving) -> list[Finding]:
    if not last.weights_fit:
        return [
            _finding(
                "chat.model-does-not-fit",
                f"{_name(w)}: {last.weights_gb:,.0f} GB of weights exceed the"
                f" {last.usable_gb:,.0f} GB usable on {last.gpus} x {last.gpu}",
                "critical",
                [f"{path}.model.parameters_b", f"{path}.model.precision", gpu_path],
                "Quantise the weights (fp8/int8/int4) or serve on more or larger GPUs.",
                risk="The model cannot be served as described.",
            )
        ]
    used = (last.weights_gb + last.kv_gb) / last.usable_gb
    if used <= KV_PRESSURE:
        return []
    return [
        _finding(
            "chat.kv-cache-pressure",
            f"{_name(w)}: {last.concurrent} concurrent conversations at full context need"
            f" {last.kv_gb:,.1f} GB of KV cache; with {last.weights_gb:,.0f} GB of weights that"
            f" is {used:.0%} of the usable {last.usable_gb:,.0f} GB",
            "high" if not last.fits else "medium",
            [f"{path}.model.context_length", f"{path}.peak_requests_per_s", gpu_path],
            "Use a paged KV cache, fp8 KV cache, bound the history, or add replicas.",
            risk="Requests queue or are rejected when conversations grow long.",
        )
    ]


def _serving_options(
    w: Workload, path: str, first: Serving, prompts: list[int], monthly_usd: float
) -> list[Finding]:
    out: list[Finding] = []
    tokens = w.tokens
    assert tokens is not None
    if not w.batching:
        out.append(
            _finding(
                "chat.no-batching",
                f"{_name(w)}: continuous batching is off",
                "medium",
                [f"{path}.batching"],
                "Serve with continuous (in-flight) batching (vLLM, TGI, TensorRT-LLM): decode"
                " steps are shared by every conversation in flight.",
                risk="One conversation per decode step leaves most of the GPU idle.",
            )
        )
    if not w.caching and len(prompts) > 1:
        cap = max(1, w.model.context_length - tokens.output)  # a truncated history
        mean_prompt = sum(min(p, cap) for p in prompts) / len(prompts)
        prefill, decode = first.prefill_tokens_s, first.decode_tokens_s / first.concurrent
        total = mean_prompt / prefill + tokens.output / decode
        share = (mean_prompt - tokens.input) / prefill / total if total else 0.0
        saving = round(monthly_usd * share, 2) if monthly_usd and share > 0 else None
        out.append(
            _finding(
                "chat.no-prefix-caching",
                f"{_name(w)}: prefix caching is off; {share:.0%} of GPU time re-reads history",
                "low" if share < 0.1 else "medium",
                [f"{path}.caching", f"{path}.turns_per_conversation"],
                "Reuse the KV cache of the conversation's prefix between turns (prefix or"
                " session caching): each turn then prefills only its new tokens.",
                saving=saving,
            )
        )
    return out


def _with_prompt(w: Workload, prompt: int) -> Workload:
    assert w.tokens is not None
    return w.model_copy(update={"tokens": Tokens(input=prompt, output=w.tokens.output)})


def _name(w: Workload) -> str:
    return w.name or w.id


def _finding(
    code: str,
    title: str,
    severity: Severity,
    evidence: list[str],
    recommendation: str,
    *,
    risk: str | None = None,
    saving: float | None = None,
) -> Finding:
    return Finding(
        analyzer=NAME,
        code=code,
        title=title,
        severity=severity,
        evidence=evidence,
        recommendation=recommendation,
        risk=risk,
        monthly_saving_usd=saving,
    )
