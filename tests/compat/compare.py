"""Compare two runs of Celery's integration suite (JUnit XML): plain, and with
``conveyor.install(app)``. The sets of passed tests must be equal, except tests listed in
``exclusions.txt`` with their reason.

    python tests/compat/compare.py plain.xml install.xml [--broker redis]
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

EXCLUSIONS = Path(__file__).with_name("exclusions.txt")


def outcomes(junit: Path) -> dict[str, str]:
    """Test id (``classname::name``) -> passed / failed / error / skipped."""
    result: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        test = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        if "error" in kinds:
            result[test] = "error"
        elif "failure" in kinds:
            result[test] = "failed"
        elif "skipped" in kinds:
            result[test] = "skipped"
        else:
            result[test] = "passed"
    return result


def exclusions(path: Path = EXCLUSIONS, broker: str | None = None) -> dict[str, str]:
    """``test id  [broker]  -- reason`` lines; ``#`` starts a comment line. A test with a
    broker in brackets is excluded on that broker only."""
    found: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        head, sep, reason = line.partition(" -- ")
        if not sep or not reason.strip():
            raise SystemExit(f"{path}: every exclusion needs ' -- <reason>': {line!r}")
        test, _, scope = head.strip().partition(" ")
        scope = scope.strip().strip("[]")
        if scope and broker and scope != broker:
            continue
        found[test] = reason.strip()
    return found


@dataclass
class Comparison:
    plain: dict[str, str]
    installed: dict[str, str]
    excluded: dict[str, str]

    @property
    def differences(self) -> list[tuple[str, str, str]]:
        """Tests passed in one run and not the other, not excluded: (id, plain, installed)."""
        passed_plain = {t for t, o in self.plain.items() if o == "passed"}
        passed_installed = {t for t, o in self.installed.items() if o == "passed"}
        return [
            (t, self.plain.get(t, "absent"), self.installed.get(t, "absent"))
            for t in sorted(passed_plain ^ passed_installed)
            if t not in self.excluded
        ]


def counts(results: dict[str, str]) -> str:
    kinds = ("passed", "failed", "error", "skipped")
    return ", ".join(f"{sum(1 for o in results.values() if o == k)} {k}" for k in kinds)


def report(comparison: Comparison, label: str) -> bool:
    """Print the counts and the differences; True if the passed sets agree."""
    print(f"[{label}] plain:   {counts(comparison.plain)}")
    print(f"[{label}] install: {counts(comparison.installed)}")
    for test, reason in sorted(comparison.excluded.items()):
        plain = comparison.plain.get(test, "absent")
        installed = comparison.installed.get(test, "absent")
        if plain != installed:
            print(f"[{label}] excluded {test}: plain {plain}, install {installed} ({reason})")
    diffs = comparison.differences
    for test, plain, installed in diffs:
        print(f"[{label}] DIFFERS {test}: plain {plain}, install {installed}")
    print(f"[{label}] {'same passed tests' if not diffs else f'{len(diffs)} tests differ'}")
    return not diffs


def comparison(plain: Path, installed: Path, broker: str | None = None) -> Comparison:
    return Comparison(outcomes(plain), outcomes(installed), exclusions(broker=broker))


def compare(plain: Path, installed: Path, broker: str | None = None) -> bool:
    return report(comparison(plain, installed, broker), broker or "compat")


def node_id(test: str, root: Path) -> str:
    """JUnit's ``t.integration.test_canvas.test_chain::test_x[p]`` -> pytest's
    ``t/integration/test_canvas.py::test_chain::test_x[p]`` (the classname holds the module,
    then a class if the test is a method)."""
    classname, _, name = test.partition("::")
    parts = classname.split(".")
    for cut in range(len(parts), 0, -1):
        module = Path(*parts[:cut]).with_suffix(".py")
        if (root / module).exists():
            return "::".join([module.as_posix(), *parts[cut:], name])
    raise ValueError(f"no module of {test!r} under {root}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plain", type=Path)
    parser.add_argument("installed", type=Path)
    parser.add_argument("--broker", default=None)
    args = parser.parse_args()
    sys.exit(0 if compare(args.plain, args.installed, args.broker) else 1)


if __name__ == "__main__":
    main()
