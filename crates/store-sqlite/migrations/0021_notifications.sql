-- Issue 11, point 5 (notifications): the outbox and its delivery log. An event is
-- enqueued once (its key is unique: the same halt, expiry or broken host is never
-- announced twice), with one delivery per notification target; each attempt at a
-- delivery is logged. A background task delivers what is due and retries with back-off.
CREATE TABLE notification_outbox (
    id INTEGER PRIMARY KEY,
    event_key TEXT NOT NULL UNIQUE,
    tenant_id TEXT,
    event TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE notification_deliveries (
    id INTEGER PRIMARY KEY,
    outbox_id INTEGER NOT NULL REFERENCES notification_outbox(id) ON DELETE CASCADE,
    target TEXT NOT NULL,
    -- pending, delivered or failed (given up after the last try)
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at TEXT NOT NULL,
    UNIQUE (outbox_id, target)
);
CREATE INDEX notification_deliveries_due ON notification_deliveries (status, next_at);

CREATE TABLE notification_attempts (
    id INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL REFERENCES notification_deliveries(id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    at TEXT NOT NULL,
    ok INTEGER NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX notification_attempts_delivery ON notification_attempts (delivery_id);
