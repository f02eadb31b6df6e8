"""Pinning proof documents on IPFS: the :class:`Pinner` interface and two clients.

- :class:`IpfsRpc` speaks the IPFS HTTP RPC of a Kubo node (or a service exposing it):
  ``POST /api/v0/add?cid-version=1&raw-leaves=true&pin=true`` with the document as a multipart
  ``file``; the answer is ``{"Name", "Hash", "Size"}``.
- :class:`Pinata` speaks Pinata's ``POST /pinning/pinFileToIPFS`` (a bearer JWT, multipart
  ``file``, ``pinataOptions`` ``{"cidVersion": 1}``, ``pinataMetadata`` with a name and the
  expected CID as a key-value); the answer is ``{"IpfsHash", "PinSize", "Timestamp"}``.

A proof document is smaller than one IPFS block (256 KiB), so with CIDv1 and raw leaves its CID
is the raw-codec CID of its bytes — :func:`conveyor.packs.agri.proofs.cid_of`. Each client
computes it first and refuses an answer naming another CID (:class:`ProviderError`), so a
pinning service cannot substitute a document. Documents of a block or more are refused
(ValueError): their CID would be a DAG's, not the raw one.

Requests go through the kit's guarded :class:`~conveyor.packs.kit.EgressClient`.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Protocol

from conveyor.packs.agri.errors import ProviderError
from conveyor.packs.agri.proofs import cid_of
from conveyor.packs.kit import Answer, EgressClient, EgressError, EgressPolicy

__all__ = ["MAX_DOCUMENT_BYTES", "IpfsRpc", "Pinata", "Pinner", "multipart"]

MAX_DOCUMENT_BYTES = 256 * 1024


class Pinner(Protocol):
    name: str

    def pin(self, document: bytes, name: str) -> str:
        """Pin ``document``; its CIDv1 (raw, sha2-256, base32), checked against the answer."""
        ...


def multipart(parts: list[tuple[str, str | None, str, bytes]]) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body of (field, filename or None, content type, bytes) and
    its Content-Type header value."""
    boundary = f"conveyor-{uuid.uuid4().hex}"
    chunks: list[bytes] = []
    for field, filename, content_type, data in parts:
        disposition = f'form-data; name="{field}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        chunks.append(
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
            f"Content-Type: {content_type}\r\n\r\n".encode()
        )
        chunks.extend((data, b"\r\n"))
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def _check_document(document: bytes, name: str) -> str:
    if not isinstance(document, bytes) or not document:
        raise ValueError("a document to pin is non-empty bytes")
    if len(document) >= MAX_DOCUMENT_BYTES:
        raise ValueError(
            f"a proof document is under {MAX_DOCUMENT_BYTES} bytes (one raw IPFS block);"
            f" this one has {len(document)}"
        )
    if not name or len(name) > 200 or any(c in name for c in '"\r\n\\/'):
        raise ValueError("a pin name is 1-200 characters without quotes, slashes or newlines")
    return cid_of(document)


def _json_answer(who: str, answer: Answer) -> dict[str, Any]:
    if not answer.is_success:
        raise ProviderError(f"{who} answered {answer.status_line}")
    try:
        # Kubo may stream one JSON object per line (progress, then the result): the last counts
        body = json.loads(answer.content.strip().splitlines()[-1])
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise ProviderError(f"{who}'s answer is not JSON") from exc
    if not isinstance(body, dict):
        raise ProviderError(f"{who}'s answer is not a JSON object")
    return body


class _Client:
    who = ""

    def __init__(self, url: str, policy: EgressPolicy | None) -> None:
        self.url = url.rstrip("/")
        self.client = EgressClient(policy, user_agent="conveyor-agri")

    def close(self) -> None:
        self.client.close()

    def _post(self, url: str, body: bytes, content_type: str, headers: dict[str, str]) -> Answer:
        try:
            return self.client.request(
                "POST", url, content=body, headers={"Content-Type": content_type, **headers}
            )
        except EgressError as exc:
            raise ProviderError(f"{self.who}: {exc}") from exc

    def _checked(self, expected: str, got: Any) -> str:
        if not isinstance(got, str) or not got:
            raise ProviderError(f"{self.who}'s answer names no CID")
        if got != expected:
            raise ProviderError(
                f"{self.who} pinned the document as {got[:80]}, but its CID is {expected}: refused"
            )
        return expected


class IpfsRpc(_Client):
    """A Kubo node's HTTP RPC (see the module); ``headers`` for a gateway that wants a key."""

    name = who = "IPFS RPC"

    def __init__(
        self, url: str, policy: EgressPolicy | None = None, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(url, policy)
        self.headers = headers or {}

    def pin(self, document: bytes, name: str) -> str:
        cid = _check_document(document, name)
        body, content_type = multipart([("file", name, "application/json", document)])
        url = f"{self.url}/api/v0/add?cid-version=1&raw-leaves=true&pin=true&hash=sha2-256"
        answer = self._post(url, body, content_type, self.headers)
        return self._checked(cid, _json_answer(self.who, answer).get("Hash"))


class Pinata(_Client):
    """Pinata's pinning API, or a service compatible with it (see the module)."""

    name = who = "Pinata"

    def __init__(
        self, jwt: str, url: str = "https://api.pinata.cloud", policy: EgressPolicy | None = None
    ) -> None:
        if not jwt or any(c.isspace() for c in jwt):
            raise ValueError("a Pinata JWT is a non-empty token without spaces")
        super().__init__(url, policy)
        self.jwt = jwt

    def pin(self, document: bytes, name: str) -> str:
        cid = _check_document(document, name)
        metadata = json.dumps({"name": name, "keyvalues": {"cid": cid}}).encode()
        options = json.dumps({"cidVersion": 1}).encode()
        body, content_type = multipart([
            ("file", name, "application/json", document),
            ("pinataOptions", None, "application/json", options),
            ("pinataMetadata", None, "application/json", metadata),
        ])  # fmt: skip
        answer = self._post(f"{self.url}/pinning/pinFileToIPFS", body, content_type,
                            {"Authorization": f"Bearer {self.jwt}"})  # fmt: skip
        if answer.status_code in (401, 403):
            raise ProviderError(f"Pinata refused the credentials ({answer.status_line})")
        return self._checked(cid, _json_answer(self.who, answer).get("IpfsHash"))
