--
-- 1.4: dbpool_guard.enforcement() says whether budgets are enforced and
-- why not; health() carries it.  The modes and a rejected value at start
-- are covered by test/t/110_monitoring_health.pl (they need reloads and
-- restarts); here, the server of test/regress.conf: enforce, budgets set.
--
SELECT enforced, reason, detail, unguarded_total FROM dbpool_guard.enforcement();
SELECT (dbpool_guard.health() -> 'enforced')::bool AS enforced,
       dbpool_guard.health() ->> 'enforcement' AS enforcement;
-- read by pg_monitor, not by PUBLIC
SELECT has_function_privilege('pg_monitor', 'dbpool_guard.enforcement()', 'EXECUTE') AS pg_monitor,
       has_function_privilege('public', 'dbpool_guard.enforcement()', 'EXECUTE') AS public;
CREATE ROLE dbpg_enf_nobody;
SET ROLE dbpg_enf_nobody;
SELECT * FROM dbpool_guard.enforcement();
RESET ROLE;
DROP ROLE dbpg_enf_nobody;
