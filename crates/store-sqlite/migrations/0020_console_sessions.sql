-- Issue 11, point 1 (console): operator console sessions, server-side so that every
-- replica behind one database knows them. The cookie holds a random id; only its hash is
-- stored, with the hash of the operator token it was opened with (checked again on every
-- request, so revoking or expiring the token ends the session) and the CSRF token.
CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_unix INTEGER NOT NULL
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_unix);
