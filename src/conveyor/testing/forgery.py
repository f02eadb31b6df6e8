"""Altered signed values for tests: always different bytes, never a no-op.

Replacing a token's last characters with fixed ones (``token[:-2] + "AA"``) changes nothing
when they already were those characters (about 1 token in 1,024), and a base64 text's last
character carries padding bits a decoder ignores, so two texts can hold the same bytes. These
helpers decode, flip one bit of the MAC and encode again.
"""

from __future__ import annotations

import base64


def altered_token(token: str) -> str:
    """A factory product token (``kid.base64url(batch || serial || mac)``) with one bit of its
    MAC flipped: well-formed, and never authentic."""
    kid, dot, body = token.partition(".")
    if not dot:
        raise ValueError(f"not a product token: {token!r}")
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[-1] ^= 0x01
    return f"{kid}." + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
