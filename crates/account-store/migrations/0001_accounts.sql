-- Accounts: one row per account, with the fields of a token file.
-- `fields` keeps every other key of the token file (token_type, resource_url, expired,
-- last_refresh, cliproxy_status, cliproxy_disabled and any unknown key) as JSON text,
-- in its order (`json`, not `jsonb`, which would reorder keys).
-- access_token and refresh_token are plain, or sealed with store.encryption-key
-- ("cliproxy-aes256gcm:v1:...").
CREATE TABLE cliproxy_accounts (
    key           text PRIMARY KEY,
    provider      text NOT NULL,
    email         text,
    access_token  text NOT NULL,
    refresh_token text,
    fields        json NOT NULL,
    -- When the access token expires, for queries and operators; `fields` is the truth.
    expires_at    timestamptz,
    -- Bumped by every write.
    version       bigint NOT NULL DEFAULT 1,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- API keys of [[openai-compat]] upstreams taken out of rotation (`cliproxy accounts disable`).
CREATE TABLE cliproxy_disabled_credentials (
    label text PRIMARY KEY,
    since timestamptz NOT NULL DEFAULT now()
);
