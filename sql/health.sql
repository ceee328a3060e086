--
-- dbpool_guard.health() (1.1; the keys enforced and enforcement in 1.4)
-- on the default version.  In a database of its own, so that the
-- extension the other tests use is left alone.  The update from 1.0 is
-- tested by sql/upgrade.sql; its behaviour under load (warning,
-- critical) and when budgets are not enforced by
-- test/t/110_monitoring_health.pl.
--
SELECT current_database() AS orig_db \gset
CREATE DATABASE regression_dbpg_health;
\c regression_dbpg_health
-- the default version has health()
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
DROP DATABASE regression_dbpg_health WITH (FORCE);
