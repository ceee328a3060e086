--
-- Read interface for pg_monitor, nothing for PUBLIC, reset for superusers.
--
CREATE ROLE dbpg_plain;
CREATE ROLE dbpg_monitor IN ROLE pg_monitor;

SET ROLE dbpg_plain;
SELECT count(*) FROM dbpool_guard.status;
SELECT count(*) FROM dbpool_guard.rejections;
SELECT count(*) FROM dbpool_guard.sessions;
SELECT count(*) FROM dbpool_guard.status_rows();
SELECT total_budget FROM dbpool_guard.budget_check();
SELECT dbpool_guard.reset_counters();
RESET ROLE;

SET ROLE dbpg_monitor;
SELECT count(*) AS status_rows FROM dbpool_guard.status;
SELECT count(*) AS rejections FROM dbpool_guard.rejections;
SELECT count(*) AS sessions FROM dbpool_guard.sessions;
SELECT total_budget FROM dbpool_guard.budget_check();
SELECT dbpool_guard.reset_counters();
RESET ROLE;

-- a grant is all it takes to let a role reset
GRANT EXECUTE ON FUNCTION dbpool_guard.reset_counters() TO dbpg_monitor;
SET ROLE dbpg_monitor;
SELECT dbpool_guard.reset_counters();
RESET ROLE;

REVOKE EXECUTE ON FUNCTION dbpool_guard.reset_counters() FROM dbpg_monitor;
DROP ROLE dbpg_plain;
DROP ROLE dbpg_monitor;
