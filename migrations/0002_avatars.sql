-- Avatars and likeness protection: avatars, their reference images (original bytes, PDQ and the 8 dihedral
-- variant hashes), delegates, transfers, review items, owner allow-lists, per-avatar match disable, flood
-- counters, and the change feed that every registry process's in-memory match index follows.

CREATE TABLE avatars (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Registration order; the cursor of listings (uuids are random, so they cannot order a page).
    seq                   bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    owner_operator_id     uuid NOT NULL REFERENCES operators (id),
    name                  text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    -- pg_trgm-style trigrams of the normalised name, computed in Python (this PostgreSQL has no pg_trgm);
    -- an array GIN index answers `&&` (shares a trigram) and the similarity is ranked in SQL.
    name_trigrams         text[] NOT NULL,
    status                text NOT NULL
                          CHECK (status IN ('active', 'held_for_review', 'suspended', 'revoked')),
    status_reason         text,
    registered_at         timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    -- The optional model file: only its digest, kind, size and parsed meta are kept.
    model_kind            text CHECK (model_kind IN ('vrm', 'live2d')),
    model_sha256          bytea CHECK (length(model_sha256) = 32),
    model_size            bigint,
    model_meta            jsonb,
    -- Index of the registration leaf in the transparency log.
    log_index             bigint,
    -- Staff may switch matching off for an avatar until a time (false-positive storms).
    match_disabled_until  timestamptz,
    match_disabled_reason text,
    CHECK ((model_kind IS NULL) = (model_sha256 IS NULL))
);
CREATE INDEX avatars_name_trigrams ON avatars USING gin (name_trigrams);
CREATE INDEX avatars_owner_seq ON avatars (owner_operator_id, seq);
CREATE INDEX avatars_status_seq ON avatars (status, seq);

CREATE TABLE avatar_images (
    -- Also the match index's key: fingerprint id = id * 16 + slot (0-7 dihedral variants, 8- augmentations).
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    avatar_id      uuid NOT NULL REFERENCES avatars (id),
    sha256         bytea NOT NULL CHECK (length(sha256) = 32),
    -- PDQ of the image as uploaded (Meta's hex bit order) ...
    pdq            bytea NOT NULL CHECK (length(pdq) = 32),
    -- ... and of its 8 dihedral variants, 8 x 32 bytes in DIHEDRAL_NAMES order (the original first).
    variants       bytea NOT NULL CHECK (length(variants) = 256),
    -- ... and of copies an infringer would make that PDQ does not see through (centred crops, small
    -- rotations; AUGMENTATION_NAMES order), up to 8 x 32 bytes.
    augments       bytea NOT NULL CHECK (length(augments) % 32 = 0 AND length(augments) <= 256),
    quality        smallint NOT NULL CHECK (quality BETWEEN 0 AND 100),
    width          integer NOT NULL CHECK (width > 0),
    height         integer NOT NULL CHECK (height > 0),
    format         text NOT NULL CHECK (format IN ('PNG', 'JPEG', 'WEBP')),
    size           integer NOT NULL CHECK (size > 0),
    -- The original upload, byte for byte (see docs/avatars.md for why it lives here).
    content        bytea NOT NULL,
    added_at       timestamptz NOT NULL DEFAULT now(),
    -- A removed image stops protecting the avatar; the row stays for the record.
    removed_at     timestamptz,
    -- Flood quarantine: this reference matched too many distinct uploads; its matches go to review.
    quarantined_at timestamptz
);
-- Image files are already compressed: store them out of line without a pointless compression attempt.
ALTER TABLE avatar_images ALTER COLUMN content SET STORAGE EXTERNAL;
CREATE UNIQUE INDEX avatar_images_live_sha ON avatar_images (avatar_id, sha256) WHERE removed_at IS NULL;

CREATE TABLE avatar_delegates (
    avatar_id   uuid NOT NULL REFERENCES avatars (id),
    operator_id uuid NOT NULL REFERENCES operators (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (avatar_id, operator_id)
);
CREATE INDEX avatar_delegates_operator ON avatar_delegates (operator_id);

CREATE TABLE avatar_transfers (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    avatar_id        uuid NOT NULL REFERENCES avatars (id),
    from_operator_id uuid NOT NULL REFERENCES operators (id),
    to_operator_id   uuid NOT NULL REFERENCES operators (id),
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    requested_at     timestamptz NOT NULL DEFAULT now(),
    decided_at       timestamptz,
    decided_by       uuid,
    decision_reason  text,
    CHECK (from_operator_id <> to_operator_id)
);
-- At most one open request per avatar.
CREATE UNIQUE INDEX avatar_transfers_one_pending ON avatar_transfers (avatar_id) WHERE status = 'pending';
CREATE INDEX avatar_transfers_status ON avatar_transfers (status, requested_at);

CREATE TABLE review_items (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- likeness_hold: registered held_for_review after a conflict; quarantined_match: matched only
    -- quarantined references; flood_quarantine: a reference image was quarantined.
    kind              text NOT NULL CHECK (kind IN ('likeness_hold', 'quarantined_match', 'flood_quarantine')),
    avatar_id         uuid NOT NULL REFERENCES avatars (id),
    image_id          bigint REFERENCES avatar_images (id),
    details           jsonb NOT NULL DEFAULT '{}'::jsonb,
    status            text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'approved', 'rejected')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    resolved_at       timestamptz,
    resolved_by       uuid,
    resolution_reason text
);
CREATE INDEX review_items_status ON review_items (status, created_at);
CREATE INDEX review_items_avatar ON review_items (avatar_id, status);

-- Images or hashes an owner licenses (fan art): a match against the avatar and its allow-list is `allowed`.
CREATE TABLE avatar_allowlist (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    avatar_id  uuid NOT NULL REFERENCES avatars (id),
    pdq        bytea NOT NULL CHECK (length(pdq) = 32),
    sha256     bytea CHECK (length(sha256) = 32),
    note       text NOT NULL DEFAULT '' CHECK (length(note) <= 500),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (avatar_id, pdq)
);

-- Flood counters: which distinct uploads matched a reference image recently.
CREATE TABLE match_hits (
    image_id      bigint NOT NULL REFERENCES avatar_images (id),
    upload_sha256 bytea NOT NULL CHECK (length(upload_sha256) = 32),
    at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (image_id, upload_sha256)
);
CREATE INDEX match_hits_image_at ON match_hits (image_id, at);

-- The change feed of everything the match index holds (images, status, owner, allow-list, disable,
-- quarantine). Rows are written only under the likeness advisory lock, which is held until commit, so
-- sequence numbers become visible in order and a reader that has applied up to N has missed nothing below
-- N. Each row says "avatar X changed"; readers reload X's state, so applying a row twice is harmless.
CREATE TABLE avatar_changes (
    seq       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    avatar_id uuid NOT NULL REFERENCES avatars (id),
    kind      text NOT NULL,
    at        timestamptz NOT NULL DEFAULT now()
);
