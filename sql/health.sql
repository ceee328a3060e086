--
-- dbpool_guard.health() (1.1; the keys enforced and enforcement in 1.4),
-- and ALTER EXTENSION dbpool_guard UPDATE from 1.0.  In databases of its
-- own, so that the extension the other tests use is left alone.  Its
-- behaviour under load (warning, critical) and when budgets are not
-- enforced is tested by test/t/110_monitoring_health.pl.
--
SELECT current_database() AS orig_db \gset
CREATE DATABASE regression_dbpg_upgrade;
CREATE DATABASE regression_dbpg_fresh;
-- 1.0, then the update
\c regression_dbpg_upgrade
CREATE EXTENSION dbpool_guard VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'dbpool_guard';
SELECT to_regprocedure('dbpool_guard.health()') AS health_in_1_0;
ALTER EXTENSION dbpool_guard UPDATE TO '1.1';
SELECT extversion FROM pg_extension WHERE extname = 'dbpool_guard';
SELECT pg_describe_object(classid, objid, objsubid) AS member
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'dbpool_guard')
   AND classid <> 'pg_type'::regclass   -- 17+ also lists the views' row types
 ORDER BY 1;
SELECT p.prorettype::regtype, p.provolatile, p.proconfig,
       has_function_privilege('pg_monitor', p.oid, 'EXECUTE') AS pg_monitor_may,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_may,
       obj_description(p.oid, 'pg_proc') IS NOT NULL AS has_comment
  FROM pg_proc p WHERE p.oid = 'dbpool_guard.health()'::regprocedure;
SELECT jsonb_pretty(dbpool_guard.health() - 'sampled_at' - 'sample_age_seconds');
-- 1.1 installed directly: the same members
\c regression_dbpg_fresh
CREATE EXTENSION dbpool_guard VERSION '1.1';
SELECT pg_describe_object(classid, objid, objsubid) AS member
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'dbpool_guard')
   AND classid <> 'pg_type'::regclass   -- 17+ also lists the views' row types
 ORDER BY 1;
-- the default version has health() too
DROP EXTENSION dbpool_guard;
CREATE EXTENSION dbpool_guard;
SELECT to_regprocedure('dbpool_guard.health()') IS NOT NULL AS default_has_health;
-- the shape: keys, types, one object per row of status
SELECT array_agg(k ORDER BY k) AS keys FROM jsonb_object_keys(dbpool_guard.health()) AS k;
SELECT dbpool_guard.health()->>'status' IN ('ok', 'warning', 'critical') AS status_valid,
       dbpool_guard.health()->>'mode' = current_setting('dbpool_guard.mode') AS mode_is_the_setting,
       jsonb_typeof(dbpool_guard.health()->'sample_age_seconds') IN ('number', 'null') AS age_is_a_number,
       jsonb_array_length(dbpool_guard.health()->'services')
         = (SELECT count(*) FROM dbpool_guard.status) AS one_object_per_service;
-- 1.4: enforced and enforcement are dbpool_guard.enforcement()'s enforced
-- and reason (test/regress.conf: mode enforce with budgets, so enforced)
SELECT dbpool_guard.health()->'enforced' AS enforced,
       dbpool_guard.health()->>'enforcement' AS enforcement,
       dbpool_guard.health()->>'status' AS status,
       dbpool_guard.health()->'enforced' = to_jsonb(e.enforced)
         AND dbpool_guard.health()->>'enforcement' = e.reason AS agrees_with_enforcement
  FROM dbpool_guard.enforcement() AS e;
SELECT DISTINCT array_agg(k ORDER BY k) AS service_keys
  FROM jsonb_array_elements(dbpool_guard.health()->'services') AS e,
       jsonb_object_keys(e) AS k
 GROUP BY e;
-- pg_monitor only
CREATE ROLE regress_dbpg_health_nobody;
SET ROLE regress_dbpg_health_nobody;
SELECT dbpool_guard.health();
RESET ROLE;
CREATE ROLE regress_dbpg_health_probe IN ROLE pg_monitor;
SET ROLE regress_dbpg_health_probe;
SELECT dbpool_guard.health()->>'mode' AS probe_reads_mode,
       dbpool_guard.health()->>'enforcement' AS probe_reads_enforcement;
RESET ROLE;
DROP ROLE regress_dbpg_health_nobody;
DROP ROLE regress_dbpg_health_probe;
\c :orig_db
DROP DATABASE regression_dbpg_upgrade WITH (FORCE);
DROP DATABASE regression_dbpg_fresh WITH (FORCE);
