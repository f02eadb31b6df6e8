"""The compatibility run's comparison (tests/compat/compare.py): which differences count, and
how a JUnit test id maps back to a pytest node id for the confirmation reruns."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "compat"))

from compare import Comparison, exclusions, node_id


def test_only_unexcluded_differences_in_passed_count() -> None:
    found = Comparison(
        plain={"m::a": "passed", "m::b": "passed", "m::c": "failed", "m::d": "skipped"},
        installed={"m::a": "passed", "m::b": "failed", "m::c": "failed", "m::e": "passed"},
        excluded={"m::e": "reason"},
    )
    assert found.differences == [("m::b", "passed", "failed")]


def test_exclusions_scope_to_a_broker(tmp_path: Path) -> None:
    path = tmp_path / "exclusions.txt"
    path.write_text("# comment\nm::a  -- everywhere\nm::b [rabbitmq]  -- only there\n")
    assert set(exclusions(path, broker="redis")) == {"m::a"}
    assert set(exclusions(path, broker="rabbitmq")) == {"m::a", "m::b"}
    path.write_text("m::c\n")
    with pytest.raises(SystemExit, match="reason"):
        exclusions(path)


def test_node_id_finds_the_module_and_keeps_the_class(tmp_path: Path) -> None:
    (tmp_path / "t" / "integration").mkdir(parents=True)
    (tmp_path / "t" / "integration" / "test_canvas.py").write_text("")
    assert (
        node_id("t.integration.test_canvas.test_chain::test_x[redis-ids]", tmp_path)
        == "t/integration/test_canvas.py::test_chain::test_x[redis-ids]"
    )
    assert node_id("t.integration.test_canvas::test_y", tmp_path) == (
        "t/integration/test_canvas.py::test_y"
    )
    with pytest.raises(ValueError):
        node_id("t.integration.test_missing::test_z", tmp_path)
