"""Statements of the migrations that serve the ingest core's write path (``syncer.ingest``).

Kept apart from ``syncer.migrations``, which lists every migration in order."""

from __future__ import annotations

# A write numbers its changes under the change-log lock, held until its commit (docs/design.md,
# "Sequence numbers commit in order"); every round trip made while it is held makes every
# other writer wait. Taking the lock, drawing the write's numbers (gapless: nobody else draws
# under the lock) and queueing the notice of the newest are one call, one round trip.
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
