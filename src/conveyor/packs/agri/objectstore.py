"""Where the agri pack keeps files: NDVI Cloud-Optimised GeoTIFFs, proof documents, archived
assessments. :class:`ObjectStore` is the interface; :class:`FileStore` (a directory, the
default) and :class:`S3Store` (the S3 API through boto3: AWS, MinIO, any S3-compatible
server) implement it.

Keys are relative paths of letters, digits and ``. _ - /``: no leading ``/``, no ``..`` or
empty segment, at most 1,024 characters — refused with ValueError otherwise, so a key can never
reach outside the store. A missing object raises :class:`ObjectNotFound`; an unreachable or
refusing S3 endpoint raises :class:`ProviderError` naming the operation and the S3 error code.

boto3 sends its own requests (signed S3 calls cannot go through the kit's ``EgressClient``), so
an :class:`S3Store` with an ``endpoint_url`` first checks that URL against the egress policy:
an internal endpoint (MinIO on the private network, moto on loopback in tests) must be listed in
``CONVEYOR_EGRESS_ALLOW`` like any other internal destination.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import boto3
import botocore.config
import botocore.exceptions

from conveyor.packs.agri.errors import ObjectNotFound, ProviderError
from conveyor.packs.kit import EgressError, EgressPolicy

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["FileStore", "ObjectStore", "S3Store", "check_key"]

_KEY = re.compile(r"[A-Za-z0-9._\-/]{1,1024}")


def check_key(key: str) -> str:
    """``key`` if it is a safe relative key (see the module), else ValueError naming why."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError(
            "an object key is 1-1024 letters, digits and . _ - / characters"
            f" (got {str(key)[:60]!r})"
        )
    if key.startswith("/") or any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"an object key has no empty, '.' or '..' segment (got {key[:60]!r})")
    return key


class ObjectStore(Protocol):
    name: str

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Store ``data`` under ``key``, replacing what was there (all or nothing)."""
        ...

    def get(self, key: str) -> bytes:
        """The object's bytes; :class:`ObjectNotFound` when there is none."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""
        ...

    def keys(self, prefix: str = "") -> list[str]:
        """Keys under ``prefix``, sorted."""
        ...


class FileStore:
    """Objects as files under ``root``; writes go to a temporary file renamed into place."""

    name = "filesystem"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".put-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise ObjectNotFound(f"no object {key!r} in the {self.name} store") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self, prefix: str = "") -> list[str]:
        if prefix:
            check_key(prefix.rstrip("/") or "x")
        found = [
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.is_file() and not p.name.startswith(".put-")
        ] if self.root.exists() else []  # fmt: skip
        return sorted(k for k in found if k.startswith(prefix))


class S3Store:
    """Objects in an S3 bucket (see the module). ``endpoint_url`` for MinIO or another
    S3-compatible server; credentials from the arguments or boto3's usual chain."""

    name = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
        prefix: str = "",
        policy: EgressPolicy | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket):
            raise ValueError(f"{bucket[:70]!r} is not an S3 bucket name")
        if endpoint_url:
            try:
                (policy or EgressPolicy()).check_url(endpoint_url)
            except EgressError as exc:
                raise ProviderError(f"S3 endpoint refused: {exc}") from exc
        self.bucket = bucket
        self.prefix = check_key(prefix.rstrip("/")) + "/" if prefix else ""
        config = botocore.config.Config(
            connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 3},
            s3={"addressing_style": "path"},
        )  # fmt: skip
        self.client: S3Client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=config,
        )

    def _call(self, what: str, key: str, call: Any) -> Any:
        try:
            return call()
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ObjectNotFound(f"no object {key!r} in bucket {self.bucket}") from None
            raise ProviderError(f"S3 {what} {key!r} failed: {code or 'error'}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise ProviderError(f"S3 {what} {key!r} failed: {type(exc).__name__}") from exc

    def create_bucket(self) -> None:
        """Create the bucket if it does not exist (for ``make run`` and tests)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError:
            self._call("create bucket", self.bucket,
                       lambda: self.client.create_bucket(Bucket=self.bucket))  # fmt: skip
        except botocore.exceptions.BotoCoreError as exc:
            raise ProviderError(f"S3 bucket {self.bucket}: {type(exc).__name__}") from exc

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        full = self.prefix + check_key(key)
        self._call("put", key, lambda: self.client.put_object(
            Bucket=self.bucket, Key=full, Body=data, ContentType=content_type))  # fmt: skip

    def get(self, key: str) -> bytes:
        full = self.prefix + check_key(key)
        answer = self._call(
            "get", key, lambda: self.client.get_object(Bucket=self.bucket, Key=full)
        )
        body: bytes = self._call("get", key, lambda: answer["Body"].read())
        return body

    def exists(self, key: str) -> bool:
        full = self.prefix + check_key(key)
        try:
            self._call("head", key, lambda: self.client.head_object(Bucket=self.bucket, Key=full))
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        full = self.prefix + check_key(key)
        self._call("delete", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=full))

    def keys(self, prefix: str = "") -> list[str]:
        found: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call("list", prefix, lambda: list(paginator.paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix)))  # fmt: skip
        for page in pages:
            found.extend(item["Key"][len(self.prefix) :] for item in page.get("Contents", []))
        return sorted(found)
