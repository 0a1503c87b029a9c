-- Issue 10, point 7 (cleanup): payloads the cleanup task evicted from the content store
-- because no host can need them any more. Pushes, scrub and intake do not ask for or
-- complain about them; a request for one answers 410 Gone.
CREATE TABLE payload_evictions (
    sha256 TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    length INTEGER NOT NULL,
    evicted_at TEXT NOT NULL,
    reason TEXT NOT NULL
);
