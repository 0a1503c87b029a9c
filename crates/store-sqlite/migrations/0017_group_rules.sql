-- Issue 10, point 2: groups joined by rules on host facts. A group's rules (spec as
-- JSON: release, hostname, labels), numbered per tenant and never reused; whether a
-- membership was made by a rule (rules never remove manual ones); and the facts rules
-- match besides the hostname (os-release and labels from the last check-in).
CREATE TABLE group_rules (
    tenant_id TEXT NOT NULL,
    id INTEGER NOT NULL,
    group_id TEXT NOT NULL,
    spec TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES groups(tenant_id, id) ON DELETE CASCADE
);
ALTER TABLE tenants ADD COLUMN last_group_rule INTEGER NOT NULL DEFAULT 0;
ALTER TABLE host_groups ADD COLUMN by_rule INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN membership_facts TEXT;
