-- The event store, exactly as eventsourcing 9.5.6 (eventsourcing.postgres) creates it for an
-- Application named "profiles" with snapshotting on: same names, columns, storage options, index
-- and insert function. Matching it exactly means the library's own CREATE_TABLE pass is a no-op
-- and a database it created earlier is adopted as is. Compared with pg_dump --schema-only.
--
-- IF NOT EXISTS / OR REPLACE mirror the library's statements, so this file also succeeds on a
-- database where the library created the tables first. The runner wraps it in one transaction.

-- The row type the library unnests when inserting a batch of events in one statement.
-- CREATE TYPE has no IF NOT EXISTS.
DO $$
BEGIN
    CREATE TYPE public.stored_event_uuid AS (
        originator_id uuid,
        originator_version bigint,
        topic text,
        state bytea
    );
EXCEPTION WHEN duplicate_object THEN
    NULL;
END
$$;

-- Autovacuum settings are the library's: the table is append-only, so vacuum rarely has work.
CREATE TABLE IF NOT EXISTS public.profiles_events (
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    topic text,
    state bytea,
    notification_id bigserial,
    PRIMARY KEY (originator_id, originator_version)
) WITH (
    autovacuum_enabled = true,
    autovacuum_vacuum_threshold = 100000000,
    autovacuum_vacuum_scale_factor = 0.5,
    autovacuum_analyze_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.01
);

-- Projections read the events in notification order.
CREATE UNIQUE INDEX IF NOT EXISTS profiles_events_notification_id_idx
    ON public.profiles_events (notification_id ASC);

-- Snapshots are an aggregate recorder table: no notification_id, nothing follows them.
CREATE TABLE IF NOT EXISTS public.profiles_snapshots (
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    topic text,
    state bytea,
    PRIMARY KEY (originator_id, originator_version)
) WITH (
    autovacuum_enabled = true,
    autovacuum_vacuum_threshold = 100000000,
    autovacuum_vacuum_scale_factor = 0.5,
    autovacuum_analyze_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.01
);

-- The library always creates this (used only with POSTGRES_ENABLE_DB_FUNCTIONS=y). The body is
-- the library's text byte for byte, so its CREATE OR REPLACE leaves it unchanged.
CREATE OR REPLACE FUNCTION public.es_insert_events_uuid(events public.stored_event_uuid[])
RETURNS SETOF bigint LANGUAGE plpgsql AS
$BODY$BEGIN    SET LOCAL lock_timeout = '0s';    NOTIFY "profiles_events";    RETURN QUERY    INSERT INTO "public"."profiles_events" AS t (    originator_id, originator_version, topic, state)    SELECT originator_id, originator_version, topic, state    FROM unnest(events)    RETURNING notification_id;END;$BODY$;

-- Ours, not the library's: an interaction's eventId is unique forever, not just per stream.
-- Written in the same transaction as the events, so a replayed interaction is refused at once.
CREATE TABLE IF NOT EXISTS public.profiles_interaction_ids (
    event_id text PRIMARY KEY,
    notification_id bigint NOT NULL,
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL
);
