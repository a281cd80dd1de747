-- Foundation: operators, API keys, identity verification, audit log.

CREATE TABLE operators (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    display_name      text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 100),
    identity_status   text NOT NULL DEFAULT 'unverified'
                      CHECK (identity_status IN ('unverified', 'verified', 'revoked')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    verified_at       timestamptz,
    -- The provider's pseudonymous person id: unique per issuer, never PII on its own.
    issuer            text,
    subject           text,
    assurance         text,
    attestation_sha256 bytea,
    -- PII only ever encrypted (AES-GCM, key id inside the blob); the blind index finds a reused ID number.
    legal_name_enc    bytea,
    id_number_enc     bytea,
    id_number_index   bytea,
    revoked_at        timestamptz,
    revoke_reason     text,
    CONSTRAINT operators_person_unique UNIQUE (issuer, subject),
    CONSTRAINT operators_id_number_unique UNIQUE (id_number_index)
);

CREATE TABLE api_keys (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- SHA-256 of the key: keys are 256-bit random, so a slow hash adds nothing.
    key_sha256  bytea NOT NULL UNIQUE,
    prefix      text NOT NULL,
    role        text NOT NULL CHECK (role IN ('admin', 'platform', 'operator', 'ingest', 'staff')),
    operator_id uuid REFERENCES operators (id),
    label       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  uuid REFERENCES api_keys (id),
    revoked_at  timestamptz,
    CHECK ((role = 'operator') = (operator_id IS NOT NULL))
);

CREATE TABLE identity_nonces (
    nonce       text PRIMARY KEY,
    operator_id uuid NOT NULL REFERENCES operators (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX identity_nonces_operator ON identity_nonces (operator_id);

CREATE TABLE identity_jtis (
    issuer  text NOT NULL,
    jti     text NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer, jti)
);

CREATE TABLE audit_log (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    actor_key_id  uuid,
    actor_role    text NOT NULL,
    action        text NOT NULL,
    target_type   text NOT NULL,
    target_id     text NOT NULL,
    reason        text,
    details       jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_actor_at ON audit_log (actor_key_id, at);
CREATE INDEX audit_log_at ON audit_log (at);
