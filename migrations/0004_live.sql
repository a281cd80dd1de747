-- Live compliance (PROTOCOL.md): livecheck nodes, live sessions and what happened in them, checkpoints.
-- Written by livecheck nodes (livecheck/store.py); read by staff routes (registry/api/sessions.py).

-- Every livecheck process that ever ran: its advertised URL and a heartbeat. A node whose heartbeat is
-- older than a few seconds is dead; its sessions are resumable elsewhere from their last checkpoint.
CREATE TABLE livecheck_nodes (
    id           text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 100),
    url          text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    draining     boolean NOT NULL DEFAULT false,
    stopped_at   timestamptz
);
CREATE INDEX livecheck_nodes_alive ON livecheck_nodes (heartbeat_at) WHERE stopped_at IS NULL;

-- One row per admitted session. The client's id is unique per ingest key forever (`session_exists`).
-- state: active (a node serves it; `holder` is that tenure's fencing token, so a node that lost the
-- session to another cannot overwrite it), detached (connection gone, resumable until `live_until`),
-- ended (summary stored). A session keeps its avatar and operator busy and stays resumable while it is
-- active on a live node, or until `live_until` (set when it is admitted, resumed or detached), or for a
-- resume window after its last checkpoint (a node that died mid-session). Checkpoints do not touch this
-- row: thousands of sessions checkpoint every few seconds, and an indexed column updated at that rate
-- would cost more than the checkpoints themselves.
CREATE TABLE live_sessions (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Listing order and cursor (uuids are random).
    seq                   bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    ingest_key_id         uuid NOT NULL REFERENCES api_keys (id),
    session               text NOT NULL CHECK (session ~ '^[A-Za-z0-9._:-]{1,128}$'),
    avatar_id             uuid NOT NULL REFERENCES avatars (id),
    operator_id           uuid NOT NULL REFERENCES operators (id),
    stream_id             text,
    state                 text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'detached', 'ended')),
    node_id               text REFERENCES livecheck_nodes (id),
    holder                uuid,
    opened_at             timestamptz NOT NULL DEFAULT now(),
    live_until            timestamptz NOT NULL,
    detached_at           timestamptz,
    ended_at              timestamptz,
    end_reason            text,
    last_seq              integer NOT NULL DEFAULT 0,
    verdict_state         text NOT NULL DEFAULT 'pending'
                          CHECK (verdict_state IN ('pending', 'human', 'at_risk', 'violation')),
    verdict_action        text NOT NULL DEFAULT 'none'
                          CHECK (verdict_action IN ('none', 'warn', 'require_label', 'terminate')),
    worst_state           text NOT NULL DEFAULT 'pending'
                          CHECK (worst_state IN ('pending', 'human', 'at_risk', 'violation')),
    score                 double precision,
    summary               jsonb,
    -- Staff asked for the end (POST /v1/sessions/{id}/terminate); the holding node ends it.
    terminate_requested_at timestamptz,
    terminate_reason      text,
    CONSTRAINT live_sessions_key_session UNIQUE (ingest_key_id, session),
    CHECK ((state = 'active') = (holder IS NOT NULL)),
    CHECK ((state = 'ended') = (ended_at IS NOT NULL))
);
-- Busy checks (global across nodes) and the reaper look only at sessions that are not over.
CREATE INDEX live_sessions_avatar_live ON live_sessions (avatar_id) WHERE state <> 'ended';
CREATE INDEX live_sessions_operator_live ON live_sessions (operator_id) WHERE state <> 'ended';
CREATE INDEX live_sessions_until ON live_sessions (live_until) WHERE state <> 'ended';
CREATE INDEX live_sessions_node ON live_sessions (node_id) WHERE state = 'active';
CREATE INDEX live_sessions_state_seq ON live_sessions (state, seq);
CREATE INDEX live_sessions_avatar_seq ON live_sessions (avatar_id, seq);
CREATE INDEX live_sessions_operator_seq ON live_sessions (operator_id, seq);

-- Every admission decision, accepted or not (the rejection reason as PROTOCOL.md names it). Ids are kept
-- as text: a rejected open may name an avatar or operator that does not exist.
CREATE TABLE live_admissions (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    ingest_key_id uuid NOT NULL REFERENCES api_keys (id),
    node_id       text,
    session       text NOT NULL,
    -- NULL when the protocol core refused the request before it reached the database (its kind unknown).
    kind          text CHECK (kind IN ('open', 'resume')),
    avatar_id     text,
    operator_id   text,
    accepted      boolean NOT NULL,
    reason        text,
    detail        text,
    session_pk    uuid REFERENCES live_sessions (id)
);
CREATE INDEX live_admissions_session ON live_admissions (session_pk, id);
CREATE INDEX live_admissions_key_at ON live_admissions (ingest_key_id, at);

-- The session's lifecycle: opened, resumed (on which node), detached, terminate requested, ended.
CREATE TABLE session_events (
    id         bigserial PRIMARY KEY,
    session_pk uuid NOT NULL REFERENCES live_sessions (id),
    at         timestamptz NOT NULL DEFAULT now(),
    kind       text NOT NULL,
    node_id    text,
    details    jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX session_events_session ON session_events (session_pk, id);

-- Each change of verdict state or action (the first `pending` one included): the verdict timeline.
CREATE TABLE session_verdicts (
    id         bigserial PRIMARY KEY,
    session_pk uuid NOT NULL REFERENCES live_sessions (id),
    at         timestamptz NOT NULL DEFAULT now(),
    state      text NOT NULL CHECK (state IN ('pending', 'human', 'at_risk', 'violation')),
    action     text NOT NULL CHECK (action IN ('none', 'warn', 'require_label', 'terminate')),
    score      double precision NOT NULL,
    reasons    jsonb NOT NULL,
    at_seq     integer NOT NULL
);
CREATE INDEX session_verdicts_session ON session_verdicts (session_pk, id);

-- Challenges as issued, and how each ended (reaction time on the sender's clock, what counted against).
CREATE TABLE session_challenges (
    session_pk   uuid NOT NULL REFERENCES live_sessions (id),
    challenge_id text NOT NULL,
    action       text NOT NULL,
    deadline_s   double precision NOT NULL,
    issued_at    timestamptz NOT NULL,
    result       text CHECK (result IN ('passed', 'failed', 'missed')),
    reaction_ms  double precision,
    flags        text[] NOT NULL DEFAULT '{}',
    resolved_at  timestamptz,
    PRIMARY KEY (session_pk, challenge_id)
);

-- The latest checkpoint of each session (livecheck/protocol.py snapshot, engine state included, as
-- compact JSON bytes): `session.resume` on any node continues from it. Opaque to SQL on purpose (bytea,
-- stored out of line uncompressed): a thousand of them a second are written and almost never read, and
-- jsonb parsing or pglz compression of each would be the database's largest cost. `taken_at_s` is the
-- snapshot's clock (node monotonic time aligned to the database clock, seconds since the epoch).
CREATE TABLE session_checkpoints (
    session_pk uuid PRIMARY KEY REFERENCES live_sessions (id),
    taken_at   timestamptz NOT NULL,
    taken_at_s double precision NOT NULL,
    last_seq   integer NOT NULL,
    node_id    text,
    snapshot   bytea NOT NULL
);
ALTER TABLE session_checkpoints ALTER COLUMN snapshot SET STORAGE EXTERNAL;
