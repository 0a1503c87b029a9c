-- Issue 11 (fleet views at 10,000 hosts): see the SQLite migration 0033. The tenant's
-- decisions (approvals, declines) and rings are marked by a number the database moves
-- itself, so no write path can change them without the mark moving.
ALTER TABLE tenants ADD COLUMN decisions_rev BIGINT NOT NULL DEFAULT 0;

CREATE FUNCTION patchday_decisions_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE tenants SET decisions_rev = decisions_rev + 1 WHERE id = OLD.tenant_id;
    ELSE
        UPDATE tenants SET decisions_rev = decisions_rev + 1 WHERE id = NEW.tenant_id;
        IF TG_OP = 'UPDATE' AND OLD.tenant_id IS DISTINCT FROM NEW.tenant_id THEN
            UPDATE tenants SET decisions_rev = decisions_rev + 1 WHERE id = OLD.tenant_id;
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER approvals_mark AFTER INSERT OR UPDATE OR DELETE ON approvals
    FOR EACH ROW EXECUTE FUNCTION patchday_decisions_moved();
CREATE TRIGGER rings_mark AFTER INSERT OR UPDATE OR DELETE ON rings
    FOR EACH ROW EXECUTE FUNCTION patchday_decisions_moved();

-- Every kept evaluation was fingerprinted the old way: made again once.
DELETE FROM host_verdicts;
