-- Transparency log: leaves, stored Merkle hashes (Go tlog layout), and signed checkpoints.

-- One row: the number of leaves committed. Appenders update it under a row lock in their own transaction,
-- so a committed size N always means leaves 0..N-1 and their hashes are committed too (no gaps).
CREATE TABLE log_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    size      bigint NOT NULL DEFAULT 0 CHECK (size >= 0)
);
INSERT INTO log_head DEFAULT VALUES;

CREATE TABLE log_entries (
    idx        bigint PRIMARY KEY CHECK (idx >= 0),
    -- The exact leaf bytes that were hashed (RFC 8785 JSON); entry bundles hold at most 65535 bytes each.
    leaf       bytea NOT NULL CHECK (length(leaf) BETWEEN 1 AND 65535),
    kind       text NOT NULL,
    -- The avatar (or, for operator leaves, the operator) the leaf is about: finds a certificate's leaf.
    subject    uuid,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX log_entries_subject ON log_entries (subject, kind, idx) WHERE subject IS NOT NULL;

-- Every complete subtree's hash, at its storage index (golang.org/x/mod/sumdb/tlog StoredHashIndex).
CREATE TABLE log_hashes (
    idx  bigint PRIMARY KEY CHECK (idx >= 0),
    hash bytea NOT NULL CHECK (length(hash) = 32)
);

-- Signed checkpoints (C2SP tlog-checkpoint notes), in the order they were signed.
CREATE TABLE log_checkpoints (
    id        bigserial PRIMARY KEY,
    tree_size bigint NOT NULL CHECK (tree_size >= 0),
    root_hash bytea NOT NULL CHECK (length(root_hash) = 32),
    -- The signing key's signed-note key id, as 8 hex digits.
    key_id    text NOT NULL CHECK (key_id ~ '^[0-9a-f]{8}$'),
    note      bytea NOT NULL,
    signed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT log_checkpoints_size_key UNIQUE (tree_size, key_id)
);
CREATE INDEX log_checkpoints_size ON log_checkpoints (tree_size DESC, id DESC);
