"""`conveyor up`'s restart policy: the delay doubles with each quick death, up to a cap."""

from __future__ import annotations

import signal

from conveyor.cli.supervisor import BACKOFF_CAP, backoff, exit_text


def test_backoff_doubles_from_one_second_up_to_the_cap() -> None:
    assert [backoff(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert backoff(6) == backoff(60) == BACKOFF_CAP == 30.0


def test_exit_status_reads_as_a_signal_or_a_code() -> None:
    assert exit_text(-signal.SIGKILL) == "SIGKILL"
    assert exit_text(0) == "exit 0"
    assert exit_text(3) == "exit 3"
