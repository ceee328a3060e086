--
-- Every upgrade path: ALTER EXTENSION dbpool_guard UPDATE from each earlier
-- version, and what it leaves.  In a database of its own, so that the
-- extension the other tests use is left alone.
--
--   1.0 -> 1.1: health() appears, with its rights (its behaviour on the
--               default version: sql/health.sql, test/t/110_monitoring_health.pl)
--   1.0 -> 1.2 and 1.1 -> 1.2: terminate_sessions() and
--               status.terminated_total, the shapes and rights they leave
--               (its arguments: sql/terminate.sql)
--   1.4 on the 1.5 library, before its update: the 1.4 objects answer
--   1.0, 1.1, 1.2, 1.3, 1.4 -> the default version: exactly what CREATE
--               EXTENSION makes (objects, definitions, columns, rights,
--               comments); the 1.5 objects' rights
--
SELECT current_database() AS regress_db \gset
CREATE DATABASE dbpg_upgrade;
\c dbpg_upgrade

--
-- 1.0 -> 1.1
--
-- The extension's members, by name
CREATE FUNCTION pg_temp.members() RETURNS SETOF text
LANGUAGE sql AS $$
  SELECT pg_describe_object(classid, objid, objsubid)
    FROM pg_depend
   WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
     AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'dbpool_guard')
     AND classid <> 'pg_type'::regclass   -- 17+ also lists the views' row types
   ORDER BY 1
$$;
CREATE EXTENSION dbpool_guard VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'dbpool_guard';
SELECT to_regprocedure('dbpool_guard.health()') AS health_in_1_0;
ALTER EXTENSION dbpool_guard UPDATE TO '1.1';
SELECT extversion FROM pg_extension WHERE extname = 'dbpool_guard';
SELECT * FROM pg_temp.members() AS member;
SELECT p.prorettype::regtype, p.provolatile, p.proconfig,
       has_function_privilege('pg_monitor', p.oid, 'EXECUTE') AS pg_monitor_may,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_may,
       obj_description(p.oid, 'pg_proc') IS NOT NULL AS has_comment
  FROM pg_proc p WHERE p.oid = 'dbpool_guard.health()'::regprocedure;
SELECT jsonb_pretty(dbpool_guard.health() - 'sampled_at' - 'sample_age_seconds');
-- 1.1 installed directly: the same members
DROP EXTENSION dbpool_guard;
CREATE EXTENSION dbpool_guard VERSION '1.1';
SELECT * FROM pg_temp.members() AS member;
DROP EXTENSION dbpool_guard;

--
-- 1.0 -> 1.2 and 1.1 -> 1.2
--
CREATE ROLE dbpg_t_plain;
CREATE ROLE dbpg_t_monitor IN ROLE pg_monitor;
CREATE ROLE dbpg_t_signal IN ROLE pg_signal_backend;

-- Helpers name the objects as text, so they outlive each DROP EXTENSION.
-- Rights on the objects 1.2 makes or remakes, the owner's own left out.
CREATE FUNCTION pg_temp.rights() RETURNS TABLE (object text, grantee text, privilege text)
LANGUAGE sql AS $$
  SELECT c.relname::text, coalesce(nullif(a.grantee, 0)::regrole::text, 'PUBLIC'), a.privilege_type
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
         aclexplode(c.relacl) a
   WHERE n.nspname = 'dbpool_guard' AND c.relname = 'status'
     AND a.grantee <> c.relowner
  UNION ALL
  SELECT p.proname::text, coalesce(nullif(a.grantee, 0)::regrole::text, 'PUBLIC'), a.privilege_type
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,
         aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
   WHERE n.nspname = 'dbpool_guard'
     AND p.proname IN ('status_rows', 'terminate_sessions')
     AND a.grantee <> p.proowner
  ORDER BY 1, 2, 3
$$;

-- Who may use them, for roles of each kind (superusers aside).
CREATE FUNCTION pg_temp.may() RETURNS TABLE (role text, read_status bool, run_status_rows bool, run_terminate bool)
LANGUAGE sql AS $$
  SELECT r, has_table_privilege(r, 'dbpool_guard.status', 'SELECT'),
         has_function_privilege(r, 'dbpool_guard.status_rows()', 'EXECUTE'),
         CASE WHEN to_regprocedure('dbpool_guard.terminate_sessions(text,interval,text[],bool)') IS NULL
              THEN NULL
              ELSE has_function_privilege(r, 'dbpool_guard.terminate_sessions(text,interval,text[],bool)', 'EXECUTE')
         END
    FROM unnest(ARRAY['dbpg_t_plain', 'dbpg_t_monitor', 'dbpg_t_signal']) AS r
   ORDER BY r
$$;

-- status columns, in order, as one line
CREATE FUNCTION pg_temp.status_columns() RETURNS text
LANGUAGE sql AS $$
  SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'dbpool_guard' AND c.relname = 'status' AND a.attnum > 0
$$;

--
-- 1.0 -> 1.2
--
CREATE EXTENSION dbpool_guard VERSION '1.0';
SELECT * FROM pg_temp.rights();
SELECT * FROM pg_temp.may();
ALTER EXTENSION dbpool_guard UPDATE TO '1.2';
SELECT extversion FROM pg_extension WHERE extname = 'dbpool_guard';

-- status: the 1.0 columns in their order, then terminated_total
SELECT a.attnum, a.attname, format_type(a.atttypid, a.atttypmod)
  FROM pg_attribute a
 WHERE a.attrelid = 'dbpool_guard.status'::regclass AND a.attnum > 0
 ORDER BY a.attnum;
SELECT service, budget, cap, connections, terminated_total FROM dbpool_guard.status;

SELECT pg_get_function_arguments(p.oid) AS arguments,
       pg_get_function_result(p.oid) AS result,
       p.provolatile, p.proisstrict, p.proparallel, p.proretset
  FROM pg_proc p
 WHERE p.oid = 'dbpool_guard.terminate_sessions'::regproc;
SELECT obj_description('dbpool_guard.terminate_sessions'::regproc, 'pg_proc') IS NOT NULL AS has_comment,
       obj_description('dbpool_guard.status'::regclass, 'pg_class') AS status_comment;

-- the same rights as 1.0; terminate_sessions for nobody but superusers
SELECT * FROM pg_temp.rights();
SELECT * FROM pg_temp.may();
SELECT pg_temp.status_columns() AS from_1_0 \gset

--
-- 1.1 -> 1.2
--
DROP EXTENSION dbpool_guard;
CREATE EXTENSION dbpool_guard VERSION '1.1';
ALTER EXTENSION dbpool_guard UPDATE TO '1.2';
SELECT extversion FROM pg_extension WHERE extname = 'dbpool_guard';
SELECT pg_temp.status_columns() = :'from_1_0' AS same_columns_as_from_1_0;
SELECT * FROM pg_temp.rights();
SELECT * FROM pg_temp.may();
SELECT count(*) AS rows, sum(terminated_total) AS terminated FROM dbpool_guard.status;
-- 1.1's health() reads the remade view
SELECT dbpool_guard.health() ->> 'status' AS health;

-- the old symbol still serves a 1.0 definition, with its 18 columns
CREATE FUNCTION pg_temp.status_1_0(
    OUT service text, OUT budget int4, OUT threshold float8, OUT cap int4,
    OUT connections int4, OUT active int4, OUT idle int4,
    OUT idle_in_transaction int4, OUT waiting int4, OUT utilization float8,
    OUT state text, OUT admitted_total int8, OUT rejected_total int8,
    OUT would_reject_total int8, OUT peak_connections int4,
    OUT last_rejected_at timestamptz,
    OUT longest_idle_in_transaction interval, OUT sampled_at timestamptz)
RETURNS SETOF record
AS '$libdir/dbpool_guard', 'dbpool_guard_status_1_0' LANGUAGE C STRICT;
SELECT service, connections FROM pg_temp.status_1_0();

DROP EXTENSION dbpool_guard;

--
-- ALTER EXTENSION ... UPDATE to the default version from every earlier
-- version leaves exactly what CREATE EXTENSION makes: the same objects,
-- definitions, columns, rights and comments.
--
CREATE FUNCTION pg_temp.shape() RETURNS SETOF text
LANGUAGE sql AS $$
  SELECT format('function %s(%s) returns %s; %s %s; acl %s; comment %s',
                p.proname, pg_get_function_arguments(p.oid),
                pg_get_function_result(p.oid), l.lanname,
                CASE WHEN l.lanname = 'c' THEN p.prosrc ELSE md5(p.prosrc) END,
                p.proacl, obj_description(p.oid, 'pg_proc'))
    FROM pg_proc p
    JOIN pg_language l ON l.oid = p.prolang
    JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE n.nspname = 'dbpool_guard'
  UNION ALL
  SELECT format('%s %s (%s); acl %s; comment %s',
                c.relkind, c.relname,
                (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod),
                                   ', ' ORDER BY a.attnum)
                   FROM pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
                c.relacl, obj_description(c.oid, 'pg_class'))
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'dbpool_guard'
  ORDER BY 1
$$;
CREATE EXTENSION dbpool_guard;
CREATE TEMP TABLE fresh AS SELECT * FROM pg_temp.shape() AS s;
SELECT count(*) AS objects FROM fresh;
-- what differs from a fresh install, either way: no rows when identical
CREATE FUNCTION pg_temp.shape_diff() RETURNS SETOF text
LANGUAGE sql AS $$
  (SELECT * FROM fresh EXCEPT SELECT * FROM pg_temp.shape())
  UNION ALL
  (SELECT * FROM pg_temp.shape() EXCEPT SELECT * FROM fresh)
$$;
-- One earlier version installed and updated to the default one: the
-- version it reached, and what differs from the fresh install (an empty
-- list when identical).  The last call leaves the one updated from 1.4.
CREATE FUNCTION pg_temp.update_from(v text, OUT extversion text, OUT differences text[])
LANGUAGE plpgsql AS $$
BEGIN
  DROP EXTENSION dbpool_guard;
  EXECUTE format('CREATE EXTENSION dbpool_guard VERSION %L', v);
  ALTER EXTENSION dbpool_guard UPDATE;
  SELECT e.extversion INTO extversion FROM pg_extension e WHERE e.extname = 'dbpool_guard';
  SELECT coalesce(array_agg(d ORDER BY d), '{}') INTO differences FROM pg_temp.shape_diff() AS d;
END
$$;
SELECT * FROM pg_temp.update_from('1.0');
SELECT * FROM pg_temp.update_from('1.1');
SELECT * FROM pg_temp.update_from('1.2');
SELECT * FROM pg_temp.update_from('1.3');
-- 1.4 as installed, on the 1.5 library: the 1.4 shapes still answer
DROP EXTENSION dbpool_guard;
CREATE EXTENSION dbpool_guard VERSION '1.4';
SELECT count(*) AS status_columns FROM pg_attribute
 WHERE attrelid = 'dbpool_guard.status'::regclass AND attnum > 0;
SELECT count(*) > 0 AS status_answers FROM dbpool_guard.status;
SELECT total_budget >= 0 AS budget_check_answers FROM dbpool_guard.budget_check();
SELECT * FROM pg_temp.update_from('1.4');
-- the 1.5 objects: read by pg_monitor, cancel_waiting_login() by no one but
-- superusers unless granted
SELECT o.object,
       has_table_privilege('dbpg_t_monitor', o.object, 'SELECT') AS monitor_reads,
       has_table_privilege('dbpg_t_plain', o.object, 'SELECT') AS plain_reads
  FROM (VALUES ('dbpool_guard.pool'), ('dbpool_guard.waiting_logins')) AS o(object);
SELECT has_function_privilege('dbpg_t_monitor', 'dbpool_guard.cancel_waiting_login(int4)', 'EXECUTE') AS monitor_may_cancel,
       has_function_privilege('dbpg_t_signal', 'dbpool_guard.cancel_waiting_login(int4)', 'EXECUTE') AS signal_may_cancel;
SELECT size, borrowed, free, waiting_logins FROM dbpool_guard.pool;
SELECT count(*) AS waiting FROM dbpool_guard.waiting_logins;
SELECT dbpool_guard.cancel_waiting_login(pg_backend_pid()) AS cancelled_self;
SELECT burst_pool, waiters_bound, total = total_budget AS total_is_budgets
  FROM dbpool_guard.budget_check();
SELECT service, burst, borrowed, waiting_logins, waited_total, wait_timeouts_total
  FROM dbpool_guard.status ORDER BY service COLLATE "C";
-- the upgraded views answer, with the new columns
SELECT count(*) > 0 AS has_rows, sum(misattributed_total) AS misattributed
  FROM dbpool_guard.status;
SELECT count(*) AS rows FROM dbpool_guard.rejections WHERE reason IS NULL;
SELECT dbpool_guard.health() ->> 'status' AS health;
SELECT enforced, reason FROM dbpool_guard.enforcement();
\c :regress_db
DROP DATABASE dbpg_upgrade;
DROP ROLE dbpg_t_plain;
DROP ROLE dbpg_t_monitor;
DROP ROLE dbpg_t_signal;
