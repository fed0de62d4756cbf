-- Two changes to the append function.
--
-- Every command may carry an eventId now (traits and consent as well as interactions), and a
-- command that changes nothing (traits already as sent) writes no event: its claim points at
-- the customer's latest event, already stored, instead of one inserted by this statement. So
-- a retry of it much later, after other changes, is still answered duplicate: true.
--
-- A write carries the instant after which its client no longer waits for it (`not_after`,
-- in the server's clock): a statement that runs later than that (its bytes reached a server
-- that froze, and thawed after the client had answered UNAVAILABLE) fails with PK408 instead
-- of committing a write its client was told did not happen.
DROP FUNCTION public.profiles_append_events(
    uuid[], bigint[], text[], bytea[], text[], uuid[], bigint[], uuid[], text, text[],
    integer[], bigint[], bigint[], text
);

CREATE FUNCTION public.profiles_append_events(
    ids uuid[],
    versions bigint[],
    topics text[],
    states bytea[],
    claim_event_ids text[],
    claim_ids uuid[],
    claim_versions bigint[],
    shred_ids uuid[],
    offset_group text,
    offset_topics text[],
    offset_partitions integer[],
    offset_firsts bigint[],
    offset_nexts bigint[],
    lock_timeout text DEFAULT '2s',
    not_after timestamptz DEFAULT NULL
) RETURNS SETOF bigint
LANGUAGE plpgsql AS
$BODY$
DECLARE
    moved integer;
    added integer;
BEGIN
    IF not_after IS NOT NULL AND clock_timestamp() > not_after THEN
        RAISE EXCEPTION 'this write reached the server after its client stopped waiting'
            USING ERRCODE = 'PK408';
    END IF;
    PERFORM set_config('lock_timeout', lock_timeout, true);
    IF cardinality(offset_topics) > 0 THEN
        -- As in 0004: the consumer's offsets move only if no other consumer got past them.
        UPDATE public.profiles_consumer_offsets o
        SET next_offset = w.next_offset, updated_at = now()
        FROM unnest(offset_topics, offset_partitions, offset_firsts, offset_nexts)
            AS w(topic, part, first_offset, next_offset)
        WHERE o.group_id = offset_group AND o.topic = w.topic AND o.partition = w.part
          AND o.next_offset <= w.first_offset;
        GET DIAGNOSTICS moved = ROW_COUNT;
        INSERT INTO public.profiles_consumer_offsets (group_id, topic, partition, next_offset)
        SELECT offset_group, w.topic, w.part, w.next_offset
        FROM unnest(offset_topics, offset_partitions, offset_nexts) AS w(topic, part, next_offset)
        WHERE NOT EXISTS (
            SELECT 1 FROM public.profiles_consumer_offsets o
            WHERE o.group_id = offset_group AND o.topic = w.topic AND o.partition = w.part
        )
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS added = ROW_COUNT;
        IF moved + added <> cardinality(offset_topics) THEN
            RAISE EXCEPTION 'offsets of group % moved past this batch: another consumer '
                'committed part of it', offset_group
                USING ERRCODE = 'PK409';
        END IF;
    END IF;
    IF cardinality(ids) = 0 AND cardinality(claim_event_ids) = 0 THEN
        RETURN;
    END IF;
    IF cardinality(ids) > 0 THEN
        -- As in 0003: positions in commit order, and the projectors woken.
        LOCK TABLE public.profiles_events IN EXCLUSIVE MODE;
        NOTIFY profiles_events;
    END IF;
    IF cardinality(shred_ids) > 0 THEN
        UPDATE public.profiles_data_keys
        SET key = NULL, shredded_at = now()
        WHERE customer_id = ANY(shred_ids) AND key IS NOT NULL;
        INSERT INTO public.profiles_data_keys (customer_id, version, key, shredded_at)
        SELECT DISTINCT s.id, 1, NULL::bytea, now() FROM unnest(shred_ids) AS s(id)
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN QUERY
    WITH inserted AS (
        INSERT INTO public.profiles_events (originator_id, originator_version, topic, state)
        SELECT u.id, u.v, u.t, u.s
        FROM unnest(ids, versions, topics, states) WITH ORDINALITY AS u(id, v, t, s, ord)
        ORDER BY u.ord
        RETURNING originator_id, originator_version, notification_id
    ), claimed AS (
        -- A claim's event is one inserted here or, for a command that changed nothing, one
        -- stored before (the statement's snapshot sees those, not the rows inserted above).
        INSERT INTO public.profiles_interaction_ids
            (event_id, notification_id, originator_id, originator_version)
        SELECT c.e, COALESCE(i.notification_id, e.notification_id), c.id, c.v
        FROM unnest(claim_event_ids, claim_ids, claim_versions) AS c(e, id, v)
        LEFT JOIN inserted i ON i.originator_id = c.id AND i.originator_version = c.v
        LEFT JOIN public.profiles_events e ON e.originator_id = c.id AND e.originator_version = c.v
        RETURNING 1
    )
    SELECT i.notification_id
    FROM inserted i
    JOIN unnest(ids, versions) WITH ORDINALITY AS u(id, v, ord)
      ON u.id = i.originator_id AND u.v = i.originator_version
    ORDER BY u.ord;
    -- Checked again last: the lock wait may have taken it past the instant.
    IF not_after IS NOT NULL AND clock_timestamp() > not_after THEN
        RAISE EXCEPTION 'this write finished after its client stopped waiting'
            USING ERRCODE = 'PK408';
    END IF;
END;
$BODY$;
