-- Issue 11 (fleet views at 10,000 hosts): a check-in keeps its host's evaluation for the
-- fleet views, fingerprinted with marks it can read in one query. The tenant's decisions
-- (approvals, declines) and rings are marked by a number the database moves itself, so
-- no write path, present or future, can change them without the mark moving.
ALTER TABLE tenants ADD COLUMN decisions_rev INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER approvals_mark_insert AFTER INSERT ON approvals BEGIN
    UPDATE tenants SET decisions_rev = decisions_rev + 1 WHERE id = NEW.tenant_id;
END;
CREATE TRIGGER approvals_mark_update AFTER UPDATE ON approvals BEGIN
    UPDATE tenants SET decisions_rev = decisions_rev + 1 WHERE id IN (OLD.tenant_id, NEW.tenant_id);
END;
CREATE TRIGGER approvals_mark_delete AFTER DELETE ON approvals BEGIN
    UPDATE tenants SET decisions_rev = decisions_rev + 1 WHERE id = OLD.tenant_id;
END;
CREATE TRIGGER rings_mark_insert AFTER INSERT ON rings BEGIN
    UPDATE tenants SET decisions_rev = decisions_rev + 1 WHERE id = NEW.tenant_id;
END;
CREATE TRIGGER rings_mark_update AFTER UPDATE ON rings BEGIN
    UPDATE tenants SET decisions_rev = decisions_rev + 1 WHERE id IN (OLD.tenant_id, NEW.tenant_id);
END;
CREATE TRIGGER rings_mark_delete AFTER DELETE ON rings BEGIN
    UPDATE tenants SET decisions_rev = decisions_rev + 1 WHERE id = OLD.tenant_id;
END;

-- Every kept evaluation was fingerprinted the old way: made again once.
DELETE FROM host_verdicts;
