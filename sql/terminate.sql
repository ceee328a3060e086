--
-- dbpool_guard 1.2: terminate_sessions(), its argument errors and who may
-- call it, on the default version.  Runs in a database of its own, so the
-- extension the other tests use is left alone.  The upgrades to 1.2 from
-- 1.0 and from 1.1, the shapes and rights they leave: sql/upgrade.sql.
--
SELECT current_database() AS regress_db \gset
CREATE DATABASE dbpg_terminate;
\c dbpg_terminate
CREATE ROLE dbpg_t_plain;
CREATE ROLE dbpg_t_signal IN ROLE pg_signal_backend;

CREATE EXTENSION dbpool_guard;

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

\c :regress_db
DROP DATABASE dbpg_terminate;
DROP ROLE dbpg_t_plain;
DROP ROLE dbpg_t_signal;
