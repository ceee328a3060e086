/* dbpool_guard--1.1--1.2.sql: terminate_sessions(), status.terminated_total */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION dbpool_guard UPDATE TO '1.2'" to load this file. \quit

-- status gains terminated_total; existing columns keep their order.  A
-- view's function cannot change its result type in place, so both are
-- made again over a new C symbol (the 1.0 symbol stays for 1.0 and 1.1).
DROP VIEW @extschema@.status;
DROP FUNCTION @extschema@.status_rows();

CREATE FUNCTION @extschema@.status_rows(
    OUT service text,
    OUT budget int4,
    OUT threshold float8,
    OUT cap int4,
    OUT connections int4,
    OUT active int4,
    OUT idle int4,
    OUT idle_in_transaction int4,
    OUT waiting int4,
    OUT utilization float8,
    OUT state text,
    OUT admitted_total int8,
    OUT rejected_total int8,
    OUT would_reject_total int8,
    OUT peak_connections int4,
    OUT last_rejected_at timestamptz,
    OUT longest_idle_in_transaction interval,
    OUT sampled_at timestamptz,
    OUT terminated_total int8)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'dbpool_guard_status_1_2'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

CREATE VIEW @extschema@.status AS
    SELECT * FROM @extschema@.status_rows();

COMMENT ON VIEW @extschema@.status IS
    'Budget, slots in use, sessions by state and counters of each listed service and of "*".';

-- The same rights as 1.0: read by pg_monitor, nothing for PUBLIC.
REVOKE ALL ON FUNCTION @extschema@.status_rows() FROM PUBLIC;
REVOKE ALL ON @extschema@.status FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.status_rows() TO pg_monitor;
GRANT SELECT ON @extschema@.status TO pg_monitor;

-- Free a service's leaked sessions; lists them only, unless dry_run is false.
CREATE FUNCTION @extschema@.terminate_sessions(
    service text,
    min_idle interval DEFAULT '5 minutes',
    states text[] DEFAULT '{"idle in transaction","idle in transaction (aborted)"}',
    dry_run bool DEFAULT true,
    OUT pid int4,
    OUT user_name text,
    OUT database_name text,
    OUT client_addr inet,
    OUT state text,
    OUT idle_for interval,
    OUT terminated bool)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'dbpool_guard_terminate_sessions_1_2'
LANGUAGE C CALLED ON NULL INPUT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.terminate_sessions(text, interval, text[], bool) IS
    'Sessions of a service idle in the given states for at least min_idle that the caller may terminate; terminated unless dry_run.';

-- An operator action: nobody but superusers until granted.
REVOKE ALL ON FUNCTION @extschema@.terminate_sessions(text, interval, text[], bool) FROM PUBLIC;
