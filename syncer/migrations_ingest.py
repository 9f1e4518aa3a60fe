"""Statements of the migrations that serve the ingest core's write path (``syncer.ingest``).

Kept apart from ``syncer.migrations``, which lists every migration in order."""

from __future__ import annotations

# Migration 16, kept as it was applied: a write numbered its changes under one global lock
# held until its commit. Migration 18 replaced it (below).
TAKE_CHANGE_NUMBERS: tuple[str, ...] = (
    """CREATE OR REPLACE FUNCTION change_log_take(lock_key bigint, how_many integer, channel text)
        RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
        first bigint;
    BEGIN
        PERFORM pg_advisory_xact_lock(lock_key);
        first := nextval('change_seq');
        IF how_many > 1 THEN
            PERFORM setval('change_seq', first + how_many - 1);
        END IF;
        PERFORM pg_notify(channel, (first + how_many - 1)::text);
        RETURN first;
    END $$""",
)

# Migration 18: writers draw numbers freely; readers stop at the horizon (docs/design.md,
# "Sequence numbers and the horizon"). Before drawing, a write marks itself in flight with
# a transaction-level SHARED advisory lock that names k, the newest number drawn so far
# (all of its numbers will be larger); the lock is visible in pg_locks to every session at
# once and goes with the transaction. The markers use the two-int4 key form (objsubid = 2
# in pg_locks), which no other lock of kubepedia uses (they are bigint keys, objsubid = 1),
# with a first key whose top byte is 0x6B (107): k's bits 32..55 below it, bits 0..31 in
# the second key. The sequence must hand numbers out one at a time (CACHE 1, its default):
# a session's cached numbers would be smaller than a k read after they were cached.
IN_FLIGHT_MARKERS: tuple[str, ...] = (
    "ALTER SEQUENCE change_seq CACHE 1",
    # Old writers (the global lock) must not run beside readers that trust the horizon.
    "DROP FUNCTION change_log_take(bigint, integer, text)",
    # The newest number handed out (0 before the first): sequences are not transactional,
    # so this sees every session's nextval at once, committed or not.
    """CREATE OR REPLACE FUNCTION change_log_drawn() RETURNS bigint LANGUAGE sql VOLATILE AS $$
        SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM change_seq $$""",
    """CREATE OR REPLACE FUNCTION change_log_mark() RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
        k bigint := change_log_drawn();
    BEGIN
        IF k >= (1::bigint << 56) THEN
            RAISE EXCEPTION 'change_seq is past 2^56: in-flight markers cannot name %', k;
        END IF;
        PERFORM pg_advisory_xact_lock_shared((107 << 24) | (k >> 32)::integer, k::bit(32)::integer);
        RETURN k;
    END $$""",
    # A write's numbers, in increasing order (its entries take them in the batch's order),
    # drawn after its marker; the newest is notified at commit.
    """CREATE OR REPLACE FUNCTION change_log_numbers(how_many integer, channel text) RETURNS bigint[]
        LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
        numbers bigint[];
    BEGIN
        PERFORM change_log_mark();
        numbers := ARRAY(SELECT nextval('change_seq') FROM generate_series(1, how_many) ORDER BY 1);
        PERFORM pg_notify(channel, numbers[how_many]::text);
        RETURN numbers;
    END $$""",
    # The highest number at or below which every transaction has ended: the newest number
    # drawn, read FIRST, or else below the oldest marker in flight. A writer whose marker is
    # not seen took it after pg_locks was read, so it draws numbers after the sequence was
    # read: all above it. A writer whose marker is seen draws numbers above its k. Readers
    # take their snapshot in a later statement than this one (a statement's snapshot is
    # older than what this function reads).
    """CREATE OR REPLACE FUNCTION change_log_horizon() RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
        drawn bigint := change_log_drawn();
        oldest bigint;
    BEGIN
        SELECT min(((classid::bigint & 16777215) << 32) | objid::bigint) INTO oldest FROM pg_locks
        WHERE locktype = 'advisory' AND objsubid = 2 AND mode = 'ShareLock' AND classid::bigint >> 24 = 107
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database());
        RETURN least(drawn, oldest);
    END $$""",
)

# Migration 20: the horizon published for hot standbys (docs/replicas.md). A standby cannot
# compute the horizon: its pg_locks does not show the primary's in-flight markers, and its
# sequence runs up to 32 numbers ahead (sequences are WAL-logged ahead of use). So the
# primary writes its horizon into a one-row table (``syncer.published``), and every reader
# asks ``change_log_read_horizon()``, which answers the live horizon on the primary and the
# published one on a standby. Decided per statement by ``pg_is_in_recovery()`` (a function
# call, nothing read from disk): a promoted standby switches to the live horizon at once.
PUBLISHED_HORIZON: tuple[str, ...] = (
    """CREATE TABLE change_log_published (
        only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
        horizon bigint NOT NULL,
        at timestamptz NOT NULL DEFAULT now())""",
    "INSERT INTO change_log_published (horizon) VALUES (change_log_horizon())",
    """CREATE OR REPLACE FUNCTION change_log_read_horizon() RETURNS bigint LANGUAGE sql VOLATILE AS $$
        SELECT CASE WHEN pg_is_in_recovery() THEN (SELECT horizon FROM change_log_published)
                    ELSE change_log_horizon() END $$""",
)
