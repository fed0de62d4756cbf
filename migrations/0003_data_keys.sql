-- Per-customer data keys, for erasure by crypto-shredding.
--
-- Every customer's personal fields are stored encrypted (AES-256-GCM) with that customer's own
-- key. Erasing the customer nulls its keys: its events stay in the append-only store, but their
-- personal data can never be decrypted again. The row itself stays as a tombstone (the stream id
-- only, no personal data), so a writer that raced the erasure cannot create a fresh key for the
-- erased customer. Losing this table is total erasure of everyone.
--
-- `version` lets a customer's key be rotated: new events use the highest version, older events
-- name the version that encrypted them.
CREATE TABLE public.profiles_data_keys (
    customer_id uuid NOT NULL,
    version integer NOT NULL,
    key bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    shredded_at timestamptz,
    PRIMARY KEY (customer_id, version),
    CHECK ((key IS NULL) = (shredded_at IS NOT NULL))
);

-- The append function gains `shred_ids`: an erasure's event and the shredding of the
-- customer's keys commit together or not at all.
DROP FUNCTION public.profiles_append_events(
    uuid[], bigint[], text[], bytea[], text[], uuid[], bigint[], text
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
    lock_timeout text DEFAULT '2s'
) RETURNS SETOF bigint
LANGUAGE plpgsql AS
$BODY$
BEGIN
    -- As in 0002: fail fast behind a stuck lock holder, hand out positions in commit order,
    -- wake the projectors, insert and claim in one statement.
    PERFORM set_config('lock_timeout', lock_timeout, true);
    LOCK TABLE public.profiles_events IN EXCLUSIVE MODE;
    NOTIFY profiles_events;
    IF cardinality(shred_ids) > 0 THEN
        UPDATE public.profiles_data_keys
        SET key = NULL, shredded_at = now()
        WHERE customer_id = ANY(shred_ids) AND key IS NOT NULL;
        -- A customer whose events predate encryption has no key yet: leave the tombstone.
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
