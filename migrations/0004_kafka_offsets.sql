-- Kafka in and out: consumed offsets stored with the events they produced, and the relay's cursor.
--
-- The ingest worker's offsets live here, not (only) in Kafka: a batch's events, its eventId
-- claims and the offsets it consumed commit in one statement, so a crash or a rebalance at any
-- instant leaves either all of them or none. On assignment the worker reads them back and seeks.
CREATE TABLE public.profiles_consumer_offsets (
    group_id text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    -- The offset of the next message to consume: everything below it is stored or dead-lettered.
    next_offset bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

-- Where each relay stands: the last event position (profile-events) or Redis stream entry id
-- (segment-changes) that the broker acknowledged. Moved only after the producer's flush.
CREATE TABLE public.profiles_relay_cursors (
    name text PRIMARY KEY,
    position text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The append function gains the consumer's offsets. Each (topic, partition) moves from the
-- stored next offset to the batch's next offset only if the batch starts at or after the stored
-- one; otherwise another consumer (after a rebalance, a zombie that lost its partition) has
-- committed part of this batch already, and the whole statement fails with SQLSTATE PK409,
-- events included. That fence, not Kafka's group membership, is what makes ingestion
-- exactly-once.
DROP FUNCTION public.profiles_append_events(
    uuid[], bigint[], text[], bytea[], text[], uuid[], bigint[], uuid[], text
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
    lock_timeout text DEFAULT '2s'
) RETURNS SETOF bigint
LANGUAGE plpgsql AS
$BODY$
DECLARE
    moved integer;
    added integer;
BEGIN
    PERFORM set_config('lock_timeout', lock_timeout, true);
    IF cardinality(offset_topics) > 0 THEN
        -- Under READ COMMITTED a concurrent mover's UPDATE makes this one wait, then re-check
        -- the condition against the committed row; two first inserts collide on the key.
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
    IF cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    -- As in 0003: hand out positions in commit order, wake the projectors, shred the keys of
    -- customers erased here, insert and claim, all in this one statement.
    LOCK TABLE public.profiles_events IN EXCLUSIVE MODE;
    NOTIFY profiles_events;
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
