"""Sample product CSV files: for the demo, the tests and the benchmark.

A clean file is what a sales team exports from a spreadsheet; a dirty one adds everything a
real export eventually contains — a byte-order mark, CRLF line ends, quoted commas, quotes and
newlines, SKUs that differ only in case, and a sprinkling of rows the importer must skip
(missing SKU, wrong column count, an over-long name, invalid UTF-8).
"""

from __future__ import annotations

import random
from pathlib import Path

WORDS = [
    "steel",
    "copper",
    "walnut",
    "oak",
    "linen",
    "wool",
    "cotton",
    "brass",
    "matte",
    "glossy",
    "compact",
    "deluxe",
    "portable",
    "ergonomic",
    "wireless",
    "modular",
    "rugged",
    "classic",
    "slim",
    "heavy",
    "light",
    "premium",
    "eco",
    "smart",
    "foldable",
    "insulated",
    "waterproof",
    "magnetic",
    "adjustable",
    "vintage",
]
NOUNS = [
    "lamp",
    "chair",
    "desk",
    "shelf",
    "kettle",
    "mug",
    "blender",
    "drill",
    "hammer",
    "wrench",
    "backpack",
    "jacket",
    "boot",
    "bottle",
    "speaker",
    "charger",
    "cable",
    "monitor",
    "stand",
    "tray",
    "basket",
    "rack",
    "cabinet",
    "stool",
    "bench",
]

BAD_KINDS = ("missing_sku", "column_count", "too_long", "invalid_utf8")


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def write_sample(
    path: Path,
    rows: int,
    *,
    seed: int = 1,
    dirty: bool = False,
    bad_every: int = 997,
    duplicate_every: int = 50,
    columns: tuple[str, ...] = ("sku", "name", "description"),
    name_suffix: str = "",
) -> Path:
    """Write ``rows`` data rows (plus a header) to ``path``; returns ``path``.

    Descriptions are long enough that 500,000 rows come to roughly 90 MB. With ``dirty``,
    every ``bad_every``-th row is one the importer must skip (cycling through
    :data:`BAD_KINDS`), every ``duplicate_every``-th row repeats an earlier SKU in another
    case, and the file starts with a BOM and ends its lines with CRLF. ``columns`` sets the
    header's order (extra names become extra, ignored columns). ``name_suffix`` changes every
    name and nothing else (the same seed gives the same SKUs): a re-import that updates all.
    """
    rng = random.Random(seed)
    newline = b"\r\n" if dirty else b"\n"
    out: list[bytes] = []
    if dirty:
        out.append(b"\xef\xbb\xbf")
    out.append(",".join(columns).encode() + newline)
    bad = 0
    skus: list[str] = []
    for i in range(1, rows + 1):
        sku = f"SKU-{i:07d}-{rng.choice(NOUNS)[:3].upper()}"
        if dirty and i % duplicate_every == 0 and skus:
            # the same SKU as an earlier row, in another case: the later row must win
            sku = rng.choice(skus).swapcase()
        skus.append(sku)
        name = f"{_text(rng, 2).title()} {rng.choice(NOUNS).title()} {i}{name_suffix}"
        description = _text(rng, 18)
        if dirty and i % 7 == 0:
            description = f'{description}, "quoted", and\na second line'
        values = {"sku": sku, "name": name, "description": description}
        kind = None
        if dirty and i % bad_every == 0:
            kind = BAD_KINDS[bad % len(BAD_KINDS)]
            bad += 1
            if kind == "missing_sku":
                values["sku"] = ""
            elif kind == "too_long":
                values["name"] = "N" * 300
        fields = [values.get(c, f"extra {i}") for c in columns]
        if kind == "column_count":
            fields.append("one too many")
        line = ",".join(_quote(f) for f in fields).encode()
        if kind == "invalid_utf8":
            line = line.replace(b"SKU-", b"SKU-\xff", 1) if b"SKU-" in line else line + b"\xff"
        out.append(line + newline)
    path.write_bytes(b"".join(out))
    return path


def _quote(value: str) -> str:
    if any(c in value for c in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value
