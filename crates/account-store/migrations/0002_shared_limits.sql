-- Limits shared by the servers of one database.

-- Parcels of rate-cap slots granted to servers (`requests-per-minute` of a credential or a
-- client key, `key` names which: "credential:<key>" or "client:<name>"). A parcel's slots
-- count against the cap from `granted_at` until a minute after `expires_at` (a slot may be
-- spent at any moment of the parcel's life); a server hands back what it did not use by
-- lowering `slots`. Rows past that minute are deleted by the next grant of the same key.
CREATE TABLE cliproxy_rate_grants (
    id         bigserial PRIMARY KEY,
    key        text NOT NULL,
    slots      integer NOT NULL CHECK (slots >= 0),
    granted_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX cliproxy_rate_grants_by_key ON cliproxy_rate_grants (key, expires_at);

-- States that take a credential out of rotation on every server: `cooling` (for `model`,
-- until `until`), `refused` (with HTTP `status`, until a probe works) and `exhausted` (until
-- `until`). A state that ends is deleted. Every change is announced on the channel
-- `cliproxy_limits`.
CREATE TABLE cliproxy_credential_states (
    key        text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('cooling', 'refused', 'exhausted')),
    model      text NOT NULL DEFAULT '',
    until      timestamptz,
    status     integer,
    failures   integer NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key, kind, model)
);

-- Requests and tokens of a day, counted by each server (`server` names the process) and
-- summed when read: `scope` is "credential" (a credential with a requests-per-day or
-- tokens-per-day) or "client" (a client key's tokens-per-day); `day_ends` is when the day
-- ends (the quota reset). Rows of days that ended over a day ago are deleted by the next write.
CREATE TABLE cliproxy_day_counts (
    scope    text NOT NULL,
    key      text NOT NULL,
    day_ends timestamptz NOT NULL,
    server   text NOT NULL,
    requests bigint NOT NULL DEFAULT 0,
    tokens   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, key, day_ends, server)
);
