"""The factory pack: product batches with HMAC tokens, RFC 9162 Merkle roots and anchoring
(see README.md beside this file)."""
