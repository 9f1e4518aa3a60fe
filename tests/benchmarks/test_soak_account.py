"""The soak benchmark's accounting: what a watcher owes, which errors are excused, and
how a store's divergence from a cluster is counted."""

from __future__ import annotations

from benchmarks._convergence import divergence
from benchmarks._soak_account import check_watch, classify_reads, percentile


def test_a_watcher_owes_every_change_of_its_spans() -> None:
    check = check_watch(changes=[11, 12, 15, 20], spans=[(10, 20)], seen=[11, 15, 20])
    assert (check.expected, check.missed, check.duplicated, check.unexpected) == (4, 1, 0, 0)


def test_changes_between_a_410_and_the_relist_are_not_owed() -> None:
    # Watched from 10 up to 13, got 410, relisted at 18: 14..18 are in the relist.
    check = check_watch(changes=[11, 13, 14, 16, 18, 19, 22], spans=[(10, 13), (18, 25)],
                        seen=[11, 13, 19, 22])
    assert (check.expected, check.missed) == (4, 0)


def test_the_start_of_a_span_is_not_owed_and_its_end_is() -> None:
    check = check_watch(changes=[10, 20], spans=[(10, 20)], seen=[])
    assert (check.expected, check.missed) == (1, 1)


def test_repeats_and_strays_are_counted() -> None:
    check = check_watch(changes=[11, 12], spans=[(10, 12)], seen=[11, 11, 12, 30])
    assert (check.missed, check.duplicated, check.unexpected) == (0, 1, 1)


def test_5xx_are_excused_only_near_postgres_downtime() -> None:
    reads = [(0.0, 0.1, 200), (10.0, 10.2, 503), (14.5, 14.6, 500), (20.0, 20.1, 500), (30.0, 30.1, 0),
             (41.0, 41.5, 0), (50.0, 50.1, 404)]
    figures = classify_reads(reads, pg_down=[(9.0, 12.0)], server_down=[(40.0, 42.0)], grace=3.0)
    assert figures.served == 1
    assert (figures.errors_5xx_pg_down, figures.errors_5xx) == (2, 1)  # 14.5 is within the grace
    assert (figures.no_answer_server_down, figures.no_answer) == (1, 1)
    assert figures.errors_4xx == 1


def test_a_request_spanning_the_window_is_excused() -> None:
    figures = classify_reads([(5.0, 13.0, 500)], pg_down=[(9.0, 10.0)], server_down=[], grace=0.0)
    assert (figures.errors_5xx_pg_down, figures.errors_5xx) == (1, 0)


def test_divergence_tells_stale_from_missing_and_extra() -> None:
    want = {("", "pods", "a", "p1", "u1", "5"), ("", "pods", "a", "p2", "u2", "7"),
            ("", "pods", "a", "p3", "u3", "1")}
    have = {("", "pods", "a", "p1", "u1", "5"), ("", "pods", "a", "p2", "u2", "6"),
            ("", "pods", "a", "p4", "u4", "2")}
    found = divergence(want, have)
    assert found.missing == {("", "pods", "a", "p3", "u3", "1")}
    assert found.extra == {("", "pods", "a", "p4", "u4", "2")}
    assert found.stale == {(("", "pods", "a", "p2", "u2", "7"), ("", "pods", "a", "p2", "u2", "6"))}
    assert found.count == 3
    assert divergence(want, set(want)).count == 0


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.99) == 0.0
    assert percentile([float(n) for n in range(1, 101)], 0.99) == 99.0
