"""A local peer of an OpenAI-compatible chat-completions API, for tests of the LLM analyzer.

:class:`ChatPeer` is a real HTTP server on 127.0.0.1 speaking the documented shapes:
``POST /v1/chat/completions`` with a bearer key, a JSON body with ``model`` and ``messages``;
a ``chat.completion`` object on success; OpenAI's error object
``{"error": {"message", "type", "code"}}`` with 400 (a malformed request), 401 (a wrong key),
404 (another path), 429 (with ``Retry-After``) and 500.

What it answers is scripted per request (:meth:`ChatPeer.script`): ``"rate_limit"``,
``"server_error"``, ``"unauthorized"``, or a content string; with nothing scripted it runs its
own small reviewer (:func:`review`), which reads the inventory from the prompt and reports
public endpoints without TLS and idle GPUs, so a test sees real findings come back. The
egress guard refuses loopback unless allowed: tests allow :attr:`ChatPeer.allow_entry`.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["ChatPeer", "PeerRequest", "review"]

Scripted = str  # "rate_limit" | "server_error" | "unauthorized" | content


@dataclass
class PeerRequest:
    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON, or the raw bytes when it was not JSON


@dataclass
class ChatPeer:
    key: str = "peer-test-key"
    retry_after: int = 1
    requests: list[PeerRequest] = field(default_factory=list)
    queue: list[Scripted] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def script(self, *answers: Scripted) -> ChatPeer:
        """Answer the next requests with these, in turn; then the reviewer again."""
        self.queue.extend(answers)
        return self

    def start(self) -> ChatPeer:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw
                peer.requests.append(PeerRequest(self.path, dict(self.headers), body))
                status, headers, answer = peer.answer(self.path, self.headers, body)
                content = json.dumps(answer).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def do_GET(self) -> None:
                peer.requests.append(PeerRequest(self.path, dict(self.headers), None))
                content = json.dumps(_error("Unknown request URL", "invalid_request_error",
                                            "unknown_url")).encode()  # fmt: skip
                self.send_response(404)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server = self.server
        # a short poll interval: stop() returns at once rather than after half a second
        threading.Thread(target=lambda: server.serve_forever(0.05), daemon=True).start()
        return self

    def answer(self, path: str, headers: Any, body: Any) -> tuple[int, dict[str, str], Any]:
        """Status, headers and JSON body for one request (the API's rules, then the script)."""
        if path != "/v1/chat/completions":
            return 404, {}, _error("Unknown request URL", "invalid_request_error", "unknown_url")
        scripted = self.queue.pop(0) if self.queue else None
        if headers.get("Authorization") != f"Bearer {self.key}" or scripted == "unauthorized":
            return 401, {}, _error("Incorrect API key provided", "invalid_request_error",
                                   "invalid_api_key")  # fmt: skip
        problem = _request_problem(body)
        if problem:
            return 400, {}, _error(problem, "invalid_request_error", None)
        if scripted == "rate_limit":
            return (429, {"Retry-After": str(self.retry_after)},
                    _error("Rate limit reached", "requests", "rate_limit_exceeded"))  # fmt: skip
        if scripted == "server_error":
            return 500, {}, _error("The server had an error", "server_error", None)
        content = scripted if scripted is not None else review(body["messages"][-1]["content"])
        return 200, {}, _completion(body["model"], body["messages"], content)

    @property
    def port(self) -> int:
        assert self.server is not None, "start the peer first"
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def allow_entry(self) -> str:
        """This peer as a ``CONVEYOR_EGRESS_ALLOW`` entry (this address and port only)."""
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def _error(message: str, kind: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _request_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    for m in messages:
        if not (isinstance(m, dict) and m.get("role") in ("system", "user", "assistant")
                and isinstance(m.get("content"), str)):  # fmt: skip
            return "each message needs a role (system, user, assistant) and text content"
    return None


def _completion(model: str, messages: list[dict[str, str]], content: str) -> dict[str, Any]:
    prompt = sum(len(m["content"]) for m in messages) // 4
    completion = len(content) // 4
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content},
             "finish_reason": "stop", "logprobs": None}
        ],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion},
    }  # fmt: skip


def review(prompt: str) -> str:
    """The peer's own reviewer: JSON findings for public endpoints without TLS and GPUs idle
    at p95 under 10 %, read from the inventory JSON after ``Inventory:`` in the prompt."""
    try:
        inventory = json.loads(prompt.split("Inventory:", 1)[1])
    except (IndexError, ValueError):
        return json.dumps({"summary": "No inventory found in the prompt.", "findings": []})
    findings: list[dict[str, Any]] = []
    for i, e in enumerate(inventory.get("networking", {}).get("endpoints", [])):
        if e.get("public") and not e.get("tls"):
            findings.append(
                {"code": "plaintext-endpoint", "title": f"Endpoint {e.get('id')} has no TLS",
                 "severity": "high", "evidence": [f"networking.endpoints[{i}].tls"],
                 "recommendation": "Terminate TLS on this endpoint.", "rule": "SOC 2 CC6.7"}
            )  # fmt: skip
    for i, inst in enumerate(inventory.get("compute", {}).get("instances", [])):
        gpu_p95 = inst.get("utilisation", {}).get("gpu_p95")
        if inst.get("gpu") and gpu_p95 is not None and gpu_p95 < 10:
            findings.append(
                {"code": "idle-gpu", "title": f"GPU instance {inst.get('id')} is idle",
                 "severity": "medium", "evidence": [f"compute.instances[{i}].utilisation.gpu_p95"],
                 "recommendation": "Stop or share it.", "monthly_saving_usd": None}
            )  # fmt: skip
    summary = f"The peer reviewer found {len(findings)} issues."
    return json.dumps({"summary": summary, "findings": findings})
