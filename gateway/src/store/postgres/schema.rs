//! The PostgreSQL schema and its versioned migrations.
//!
//! Applied versions are rows of `hookgate_schema`. Migrations run at start,
//! each in its own transaction with its version row, under an advisory lock:
//! gateways started together migrate once, the others wait and then find
//! nothing left to do. A database migrated by a newer hookgate is refused
//! rather than guessed at. Same shape as the SQLite runner
//! (`sqlite/schema.rs`); see ARCHITECTURE.md for why there is no migration
//! crate.

use deadpool_postgres::Object;

use super::db_err;
use crate::store::StoreError;

/// Migrations in order; migration `i` takes the schema to version `i + 1`.
/// Only append: a released migration never changes.
const MIGRATIONS: &[&str] = &[
    // 1: the schema of store contract v2 and the console, at once (the
    // SQLite engine reached it in four steps). Ids sort bytewise (`C`), as
    // the console's cursors and prefix searches expect. Times are ms since
    // the epoch; those the store decides (due times, leases, dedup
    // expiry, health) come from the database's clock, `hookgate_now_ms()`.
    r#"
CREATE FUNCTION hookgate_now_ms() RETURNS bigint LANGUAGE sql STABLE
    AS $$ SELECT (extract(epoch FROM now()) * 1000)::bigint $$;

CREATE TABLE events (
    id          text COLLATE "C" PRIMARY KEY,
    route       text NOT NULL,
    source_id   text,
    received_at bigint NOT NULL,
    status      text NOT NULL,
    event_type  text
);
CREATE INDEX events_status ON events(status, id);
CREATE INDEX events_received ON events(received_at);
CREATE INDEX events_source_id ON events(source_id) WHERE source_id IS NOT NULL;
CREATE INDEX events_route_status ON events(route, status);
CREATE INDEX events_type_status ON events(event_type, status);

CREATE TABLE messages (
    id           bigserial PRIMARY KEY,
    event_id     text COLLATE "C" NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    idx          integer NOT NULL,
    message_id   text,
    event_type   text,
    content_type text NOT NULL,
    headers      text NOT NULL,
    body         bytea NOT NULL
);
CREATE INDEX messages_event ON messages(event_id);
CREATE INDEX messages_message_id ON messages(message_id) WHERE message_id IS NOT NULL;

CREATE TABLE deliveries (
    id              bigserial PRIMARY KEY,
    event_id        text COLLATE "C" NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    message_id      bigint NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    destination     text NOT NULL,
    state           text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    retries         integer NOT NULL DEFAULT 0,
    next_attempt_at bigint NOT NULL,
    lease_token     bigint,
    last_error      text
);
CREATE INDEX deliveries_due ON deliveries(next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX deliveries_event ON deliveries(event_id);
CREATE INDEX deliveries_message ON deliveries(message_id);
CREATE INDEX deliveries_destination ON deliveries(destination, state);

CREATE TABLE attempts (
    id           bigserial PRIMARY KEY,
    delivery_id  bigint NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    attempted_at bigint NOT NULL,
    status       integer,
    latency_ms   bigint NOT NULL,
    error        text,
    response     text
);
CREATE INDEX attempts_delivery ON attempts(delivery_id);
CREATE INDEX attempts_time ON attempts(attempted_at, delivery_id);

CREATE TABLE dedup (
    route      text NOT NULL,
    source_id  text NOT NULL,
    event_id   text NOT NULL,
    expires_at bigint NOT NULL,
    PRIMARY KEY (route, source_id)
);
CREATE INDEX dedup_expiry ON dedup(expires_at);

CREATE TABLE event_requests (
    event_id text COLLATE "C" PRIMARY KEY REFERENCES events(id) ON DELETE CASCADE,
    method   text NOT NULL,
    path     text NOT NULL,
    headers  text NOT NULL
);

CREATE TABLE subscriptions (
    id                      text COLLATE "C" PRIMARY KEY,
    tenant                  text NOT NULL,
    object_id               text NOT NULL,
    object_type             text NOT NULL,
    event_types             text[] NOT NULL,
    callback_url            text NOT NULL,
    callback_token          text,
    context                 text,
    validity                bigint NOT NULL,
    active                  boolean NOT NULL,
    secret                  text NOT NULL,
    created_at              bigint NOT NULL,
    failing_since           bigint,
    disabled_reason         text,
    headers                 text,
    properties              text,
    signature_scheme        text,
    previous_secret         text,
    previous_secret_expires bigint
);
CREATE INDEX subscriptions_object ON subscriptions(object_type, object_id);
CREATE INDEX subscriptions_tenant ON subscriptions(tenant);

-- An event's status is that of its least-finished delivery. Several
-- gateways may finish deliveries of one event at once: the event row is
-- locked first, and the status is computed by a later statement (a fresh
-- snapshot under READ COMMITTED), so the last of them sees every other's
-- committed change and no event is left `pending` with nothing to send.
CREATE FUNCTION hookgate_refresh_status(ev text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM events WHERE id = ev FOR UPDATE;
    UPDATE events SET status = CASE
        WHEN EXISTS (SELECT 1 FROM deliveries WHERE event_id = ev AND state IN ('pending', 'parked')) THEN 'pending'
        WHEN EXISTS (SELECT 1 FROM deliveries WHERE event_id = ev AND state = 'dead') THEN 'dead'
        ELSE 'delivered' END
    WHERE id = ev;
END $$;

-- An attempt's outcome, in one round trip: the delivery changes only under
-- its lease token (NULL back when the token is stale: nothing written),
-- the attempt row is written only if it did, and the event's status is
-- refreshed when the delivery finished. Each statement of a plpgsql
-- function takes a fresh snapshot, so the refresh sees the other
-- gateways' committed work once it holds the event's lock.
CREATE FUNCTION hookgate_record(
    p_id bigint, p_token bigint, p_state text, p_delay bigint, p_attempted integer,
    p_retried integer, p_last_error text, p_at bigint, p_status integer, p_latency bigint,
    p_error text, p_response text
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    ev text;
BEGIN
    UPDATE deliveries SET state = p_state, next_attempt_at = hookgate_now_ms() + p_delay,
        lease_token = NULL, attempts = attempts + p_attempted, retries = retries + p_retried,
        last_error = p_last_error
    WHERE id = p_id AND lease_token = p_token AND state = 'pending'
    RETURNING event_id INTO ev;
    IF ev IS NULL THEN
        RETURN FALSE;
    END IF;
    IF p_attempted > 0 THEN
        INSERT INTO attempts (delivery_id, attempted_at, status, latency_ms, error, response)
        VALUES (p_id, p_at, p_status, p_latency, p_error, p_response);
    END IF;
    IF p_state NOT IN ('pending', 'parked') THEN
        PERFORM hookgate_refresh_status(ev);
    END IF;
    RETURN TRUE;
END $$;
"#,
    // 2: a park is settled against the subscription as it is when it is
    // written. The attempt decided to park on an earlier read; under a
    // share lock on the subscription's row, a re-enable (which requeues
    // what is parked) or a delete (which dead-letters it) either committed
    // before and is seen here, or waits for this transaction and then finds
    // the delivery parked. Locks are taken subscription first, then the
    // delivery, as the re-enable and the delete take them.
    r#"
CREATE OR REPLACE FUNCTION hookgate_record(
    p_id bigint, p_token bigint, p_state text, p_delay bigint, p_attempted integer,
    p_retried integer, p_last_error text, p_at bigint, p_status integer, p_latency bigint,
    p_error text, p_response text
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    ev text;
    dest text;
    sub_active boolean;
    fresh_budget boolean := FALSE;
BEGIN
    IF p_state = 'parked' THEN
        SELECT destination INTO dest FROM deliveries WHERE id = p_id;
        IF dest LIKE 'sub:%' THEN
            SELECT active INTO sub_active FROM subscriptions
                WHERE id = substr(dest, 5) FOR SHARE;
            IF NOT FOUND THEN
                p_state := 'dead';
                p_last_error := 'the subscription was deleted';
            ELSIF sub_active THEN
                p_state := 'pending';
                p_delay := 0;
                p_last_error := NULL;
                fresh_budget := TRUE;
            END IF;
        END IF;
    END IF;
    UPDATE deliveries SET state = p_state, next_attempt_at = hookgate_now_ms() + p_delay,
        lease_token = NULL, attempts = attempts + p_attempted,
        retries = CASE WHEN fresh_budget THEN 0 ELSE retries + p_retried END,
        last_error = p_last_error
    WHERE id = p_id AND lease_token = p_token AND state = 'pending'
    RETURNING event_id INTO ev;
    IF ev IS NULL THEN
        RETURN FALSE;
    END IF;
    IF p_attempted > 0 THEN
        INSERT INTO attempts (delivery_id, attempted_at, status, latency_ms, error, response)
        VALUES (p_id, p_at, p_status, p_latency, p_error, p_response);
    END IF;
    IF p_state NOT IN ('pending', 'parked') THEN
        PERFORM hookgate_refresh_status(ev);
    END IF;
    RETURN TRUE;
END $$;
"#,
    // 3: the database's clock is read per statement, not per transaction.
    // `now()` is the transaction's start: an insert that waited on a lock
    // (a subscription's row being re-enabled, a dedup key being taken)
    // timed its claims' leases from before the wait, and one that waited
    // longer than the lease committed claims already run out, which
    // another gateway's poller then took while this one sent them too.
    r#"
CREATE OR REPLACE FUNCTION hookgate_now_ms() RETURNS bigint LANGUAGE sql STABLE
    AS $$ SELECT (extract(epoch FROM statement_timestamp()) * 1000)::bigint $$;
"#,
    // 4: subscriptions whose waiting deliveries are still being settled
    // after a re-enable or a delete (in batches, each its own transaction;
    // see `settle_batch`), so that a crash between two batches leaves a
    // note that any gateway's prune finishes from.
    r#"
CREATE TABLE subscription_settlements (
    subscription_id text COLLATE "C" PRIMARY KEY
);
"#,
    // 5: a lane's due deliveries in due order, for a claim that passes over
    // a full lane's long backlog destination by destination (see
    // `claim_due`). Extends `(destination, state)`, which it replaces.
    r#"
CREATE INDEX deliveries_lane ON deliveries(destination, state, next_attempt_at, id);
DROP INDEX IF EXISTS deliveries_destination;
"#,
    // 6: the next free request slot of each paced receiver (a Teams
    // webhook allows four requests a second, whichever gateway sends
    // them), keyed by a hash of its URL: the URL itself carries the
    // webhook's credential. See `reserve_slot`.
    r#"
CREATE TABLE pacing (
    key     TEXT PRIMARY KEY,
    next_at BIGINT NOT NULL
);
"#,
    // 7: attempts' outcomes in batches (`store/postgres/records.rs`): one
    // statement and one commit for every record that arrived together,
    // each written exactly as `hookgate_record` (version 2) writes it.
    // Locks are taken in the order every writer takes them: the
    // subscriptions of parks first (share), then the deliveries, in the
    // order given (the caller sorts them by id); events last, sorted, once
    // every delivery has changed. `hookgate_record` stays for gateways of
    // the previous release during a rolling upgrade. Messages' rows stay
    // whole up to a page (`toast_tuple_target`): a webhook's body is
    // usually a few KB, and compressing it on every insert was a large
    // part of what storing a webhook cost the database.
    r#"
CREATE FUNCTION hookgate_record_many(
    p_id bigint[], p_token bigint[], p_state text[], p_delay bigint[], p_attempted integer[],
    p_retried integer[], p_last_error text[], p_at bigint[], p_status integer[], p_latency bigint[],
    p_error text[], p_response text[]
) RETURNS boolean[] LANGUAGE plpgsql AS $$
DECLARE
    written boolean[] := '{}';
    finished text[] := '{}';
    ev text;
    dest text;
    st text;
    delay bigint;
    last_err text;
    sub_active boolean;
    fresh_budget boolean;
BEGIN
    PERFORM 1 FROM subscriptions WHERE id IN (
        SELECT substr(d.destination, 5) FROM deliveries d
        JOIN unnest(p_id, p_state) AS u(id, state) ON d.id = u.id
        WHERE u.state = 'parked' AND d.destination LIKE 'sub:%')
    ORDER BY id FOR SHARE;
    FOR i IN 1 .. coalesce(array_length(p_id, 1), 0) LOOP
        st := p_state[i];
        delay := p_delay[i];
        last_err := p_last_error[i];
        fresh_budget := FALSE;
        IF st = 'parked' THEN
            SELECT destination INTO dest FROM deliveries WHERE id = p_id[i];
            IF dest LIKE 'sub:%' THEN
                SELECT active INTO sub_active FROM subscriptions
                    WHERE id = substr(dest, 5) FOR SHARE;
                IF NOT FOUND THEN
                    st := 'dead';
                    last_err := 'the subscription was deleted';
                ELSIF sub_active THEN
                    st := 'pending';
                    delay := 0;
                    last_err := NULL;
                    fresh_budget := TRUE;
                END IF;
            END IF;
        END IF;
        UPDATE deliveries SET state = st, next_attempt_at = hookgate_now_ms() + delay,
            lease_token = NULL, attempts = attempts + p_attempted[i],
            retries = CASE WHEN fresh_budget THEN 0 ELSE retries + p_retried[i] END,
            last_error = last_err
        WHERE id = p_id[i] AND lease_token = p_token[i] AND state = 'pending'
        RETURNING event_id INTO ev;
        IF NOT FOUND THEN
            written := written || FALSE;
            CONTINUE;
        END IF;
        IF p_attempted[i] > 0 THEN
            INSERT INTO attempts (delivery_id, attempted_at, status, latency_ms, error, response)
            VALUES (p_id[i], p_at[i], p_status[i], p_latency[i], p_error[i], p_response[i]);
        END IF;
        IF st NOT IN ('pending', 'parked') THEN
            finished := finished || ev;
        END IF;
        written := written || TRUE;
    END LOOP;
    PERFORM hookgate_refresh_status(e)
        FROM (SELECT DISTINCT e COLLATE "C" AS e FROM unnest(finished) AS e ORDER BY 1) AS s;
    RETURN written;
END $$;

ALTER TABLE messages SET (toast_tuple_target = 8160);
"#,
    // 8: no foreign keys. Every row a webhook stores is written with its
    // parent, in the same transaction and often the same statement, and
    // only prune deletes (children with their events, see
    // `PostgresStore::prune`), so the keys guarded nothing our writes could
    // break, while each inserted child ran a referential check (a query
    // and a share lock on its parent row, which dirties the parent's
    // page): about five per webhook. Measured with `hookgate-bench`, four
    // alternated rounds each (means, with a wide spread): row 7 4,535 ->
    // 4,878 req/s (+8 %), row 8 3,639 -> 3,807 (+5 %), row 11 2,525 ->
    // 2,832 events/s (+12 %). `deliveries(message_id)` served only the
    // cascade. The SQLite engine has always run with foreign keys off.
    r#"
ALTER TABLE messages DROP CONSTRAINT messages_event_id_fkey;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_event_id_fkey,
    DROP CONSTRAINT deliveries_message_id_fkey;
ALTER TABLE attempts DROP CONSTRAINT attempts_delivery_id_fkey;
ALTER TABLE event_requests DROP CONSTRAINT event_requests_event_id_fkey;
DROP INDEX deliveries_message;
"#,
];

/// The schema version this build writes.
pub const VERSION: i32 = MIGRATIONS.len() as i32;

/// Brings the schema (in the connection's `search_path`) to [`VERSION`].
pub async fn migrate(conn: &mut Object) -> Result<(), StoreError> {
    // A session lock on this connection, held across the migrations and
    // given back at the end (or when the connection closes).
    conn.batch_execute(
        "SELECT pg_advisory_lock(hashtext(current_schema() || ':hookgate-migrate'))",
    )
    .await
    .map_err(db_err)?;
    let result = migrate_locked(conn).await;
    let unlock = conn
        .batch_execute(
            "SELECT pg_advisory_unlock(hashtext(current_schema() || ':hookgate-migrate'))",
        )
        .await
        .map_err(db_err);
    result.and(unlock)
}

async fn migrate_locked(conn: &mut Object) -> Result<(), StoreError> {
    conn.batch_execute(
        "CREATE TABLE IF NOT EXISTS hookgate_schema (\
           version integer PRIMARY KEY, \
           applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(db_err)?;
    let current: i32 = conn
        .query_one("SELECT COALESCE(MAX(version), 0) FROM hookgate_schema", &[])
        .await
        .map_err(db_err)?
        .get(0);
    if current > VERSION {
        return Err(StoreError::Open {
            path: "schema".into(),
            message: format!(
                "the database has schema version {current}, newer than this hookgate's {VERSION}; \
                 run the newer hookgate or restore a backup"
            ),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let version = i as i32 + 1;
        let tx = conn.transaction().await.map_err(db_err)?;
        tx.batch_execute(sql).await.map_err(db_err)?;
        tx.execute(
            "INSERT INTO hookgate_schema (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        tracing::info!(version, "postgres store schema migrated");
    }
    Ok(())
}
