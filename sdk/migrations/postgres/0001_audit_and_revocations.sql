-- rmcp-authz, PostgreSQL schema version 1: the shared audit trail and revocation list.
--
-- Applied by `rmcp_authz::postgres::migrate` (configuration: `migrate = true`), or by hand
-- with psql. Every statement is idempotent: running the file again changes nothing.

-- Each replica writes its own hash chain, named by its chain id. A row holds one audit
-- record exactly as a JSON Lines file holds it: `record` is the line (its `prev_hash`
-- included), and the chain links each record to the SHA-256 of the one before it. The
-- other columns are copies of fields of the record, for queries; verification reads
-- only `seq` and `record`.
CREATE TABLE IF NOT EXISTS rmcp_authz_audit (
    chain_id    text        NOT NULL,
    seq         bigint      NOT NULL CHECK (seq > 0),
    recorded_at timestamptz NOT NULL,
    record      text        NOT NULL,
    PRIMARY KEY (chain_id, seq)
);
-- Time ranges: a BRIN index, a few pages for the whole table, and next to nothing to
-- maintain per row (records arrive in time order), where a B-tree would cost every insert.
CREATE INDEX IF NOT EXISTS rmcp_authz_audit_recorded_at ON rmcp_authz_audit USING brin (recorded_at);

-- The head of each chain: its last sequence number and the hash of its last record,
-- moved in the same statement that appends records. A writer appends only where the head
-- says its chain ends, so two processes writing one chain cannot interleave, and
-- `audit verify --postgres` finds newest records that were deleted.
CREATE TABLE IF NOT EXISTS rmcp_authz_audit_chains (
    chain_id   text        PRIMARY KEY,
    last_seq   bigint      NOT NULL CHECK (last_seq >= 0),
    last_hash  text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Revoked token ids (`kind = 'jti'`) and subjects (`kind = 'sub'`), refused by every
-- replica until `expires_at`.
CREATE TABLE IF NOT EXISTS rmcp_authz_revocations (
    kind       text        NOT NULL CHECK (kind IN ('jti', 'sub')),
    value      text        NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    reason     text,
    PRIMARY KEY (kind, value)
);

-- Every change to the list is announced on channel `rmcp_authz_revocations`, however it
-- was made (the CLI, the API, or psql): replicas listening apply it at once. Each payload
-- carries the time of the change, so PostgreSQL never folds two changes of one
-- transaction into one notification.
CREATE OR REPLACE FUNCTION rmcp_authz_revocations_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    payload text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        payload := json_build_object('op', 'delete', 'kind', OLD.kind, 'value', OLD.value,
            'at', clock_timestamp())::text;
    ELSE
        payload := json_build_object('op', 'upsert', 'kind', NEW.kind, 'value', NEW.value,
            'expires_at', floor(extract(epoch FROM NEW.expires_at))::bigint,
            'at', clock_timestamp())::text;
    END IF;
    -- A notification carries at most 8000 bytes: for a longer value, replicas reload.
    IF octet_length(payload) > 7900 THEN
        payload := '{"op":"reload"}';
    END IF;
    PERFORM pg_notify('rmcp_authz_revocations', payload);
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS rmcp_authz_revocations_notify ON rmcp_authz_revocations;
CREATE TRIGGER rmcp_authz_revocations_notify
    AFTER INSERT OR UPDATE OR DELETE ON rmcp_authz_revocations
    FOR EACH ROW EXECUTE FUNCTION rmcp_authz_revocations_notify();

-- The schema versions applied.
CREATE TABLE IF NOT EXISTS rmcp_authz_schema (
    version    integer     PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO rmcp_authz_schema (version) VALUES (1) ON CONFLICT (version) DO NOTHING;
