--
-- dbpool_guard 1.2: terminate_sessions() and status.terminated_total.
-- Upgrades to 1.2 from 1.0 and from 1.1, the shapes and rights they
-- leave, and argument errors.  Runs in a database of its own, so the
-- extension version the other tests use is left alone.
--
SELECT current_database() AS regress_db \gset
CREATE DATABASE dbpg_terminate;
\c dbpg_terminate
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
-- Argument errors
--
-- an unknown service is an error naming it
SELECT * FROM dbpool_guard.terminate_sessions('no-such-service');
SELECT * FROM dbpool_guard.terminate_sessions('');
SELECT * FROM dbpool_guard.terminate_sessions(repeat('x', 100));
-- a listed service with no sessions, and "*": nothing to list
SELECT * FROM dbpool_guard.terminate_sessions('auth-service');
SELECT * FROM dbpool_guard.terminate_sessions('*', '0', '{idle,"idle in transaction","idle in transaction (aborted)"}');
SELECT * FROM dbpool_guard.terminate_sessions('*', min_idle => '0', dry_run => false);
-- names are exact, as in dbpool_guard.budgets
SELECT * FROM dbpool_guard.terminate_sessions('Auth-Service');
-- running work is never selectable
SELECT * FROM dbpool_guard.terminate_sessions('*', states => '{active}');
SELECT * FROM dbpool_guard.terminate_sessions('*', states => '{"idle in transaction",waiting}');
SELECT * FROM dbpool_guard.terminate_sessions('*', states => '{"fastpath function call"}');
SELECT * FROM dbpool_guard.terminate_sessions('*', states => '{starting}');
SELECT * FROM dbpool_guard.terminate_sessions('*', states => '{disabled}');
-- states are spelled as pg_stat_activity shows them
SELECT * FROM dbpool_guard.terminate_sessions('*', states => '{idle_in_transaction}');
SELECT * FROM dbpool_guard.terminate_sessions('*', states => '{Idle}');
SELECT * FROM dbpool_guard.terminate_sessions('*', states => '{}');
SELECT * FROM dbpool_guard.terminate_sessions('*', states => '{idle,NULL}');
-- min_idle
SELECT * FROM dbpool_guard.terminate_sessions('*', '-1 second');
SELECT * FROM dbpool_guard.terminate_sessions('*', '1 day');
SELECT * FROM dbpool_guard.terminate_sessions('*', '1 month -40 days');
-- null arguments
SELECT * FROM dbpool_guard.terminate_sessions(NULL);
SELECT * FROM dbpool_guard.terminate_sessions('*', NULL);
SELECT * FROM dbpool_guard.terminate_sessions('*', states => NULL);
SELECT * FROM dbpool_guard.terminate_sessions('*', dry_run => NULL);
-- not for PUBLIC, nor for pg_monitor or pg_signal_backend, until granted
SET ROLE dbpg_t_plain;
SELECT * FROM dbpool_guard.terminate_sessions('*');
RESET ROLE;
SET ROLE dbpg_t_signal;
SELECT * FROM dbpool_guard.terminate_sessions('*');
RESET ROLE;
GRANT EXECUTE ON FUNCTION dbpool_guard.terminate_sessions(text, interval, text[], bool) TO dbpg_t_signal;
SET ROLE dbpg_t_signal;
SELECT * FROM dbpool_guard.terminate_sessions('*', '0');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION dbpool_guard.terminate_sessions(text, interval, text[], bool) FROM dbpg_t_signal;

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

\c :regress_db
DROP DATABASE dbpg_terminate;
DROP ROLE dbpg_t_plain;
DROP ROLE dbpg_t_monitor;
DROP ROLE dbpg_t_signal;
