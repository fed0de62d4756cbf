-- One round trip per transaction for the write path.
--
-- A group-committed transaction used to cost about ten round trips (BEGIN, lock timeout, LOCK,
-- NOTIFY, reserve, COPY, COPY, COMMIT...); on a busy 2-core machine each one waits for the
-- server process to be scheduled, and the waits, not the work, capped throughput. This function
-- does the same steps inside the one statement an autocommit call runs as its own transaction:
--   * LOCK the events table in EXCLUSIVE mode first, as the library does, so that positions
--     (notification_id) are handed out in commit order and a reader never skips a gap that a
--     slower transaction fills later;
--   * NOTIFY the projectors' channel (delivered on commit);
--   * insert the events and return their positions in input order;
--   * claim each interaction's eventId; a claimed one violates the primary key and rolls the
--     whole statement back, events included.
CREATE OR REPLACE FUNCTION public.profiles_append_events(
    ids uuid[],
    versions bigint[],
    topics text[],
    states bytea[],
    claim_event_ids text[],
    claim_ids uuid[],
    claim_versions bigint[],
    lock_timeout text DEFAULT '2s'
) RETURNS SETOF bigint
LANGUAGE plpgsql AS
$BODY$
BEGIN
    -- A stuck lock holder must fail the write (UNAVAILABLE, retried by the client), not stall
    -- every queued command behind it.
    PERFORM set_config('lock_timeout', lock_timeout, true);
    LOCK TABLE public.profiles_events IN EXCLUSIVE MODE;
    NOTIFY profiles_events;
    -- Data-modifying CTEs always run to completion, read or not; any error aborts them all.
    RETURN QUERY
    WITH inserted AS (
        INSERT INTO public.profiles_events (originator_id, originator_version, topic, state)
        SELECT u.id, u.v, u.t, u.s
        FROM unnest(ids, versions, topics, states) WITH ORDINALITY AS u(id, v, t, s, ord)
        ORDER BY u.ord
        RETURNING originator_id, originator_version, notification_id
    ), claimed AS (
        INSERT INTO public.profiles_interaction_ids
            (event_id, notification_id, originator_id, originator_version)
        SELECT c.e, i.notification_id, c.id, c.v
        FROM unnest(claim_event_ids, claim_ids, claim_versions) AS c(e, id, v)
        JOIN inserted i ON i.originator_id = c.id AND i.originator_version = c.v
        RETURNING 1
    )
    SELECT i.notification_id
    FROM inserted i
    JOIN unnest(ids, versions) WITH ORDINALITY AS u(id, v, ord)
      ON u.id = i.originator_id AND u.v = i.originator_version
    ORDER BY u.ord;
END;
$BODY$;
