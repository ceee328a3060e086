/* dbpool_guard--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION dbpool_guard" to load this file. \quit

-- The objects are protected one by one; the schema itself is open to all.
GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;

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
    OUT sampled_at timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'dbpool_guard_status_1_0'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

CREATE VIEW @extschema@.status AS
    SELECT * FROM @extschema@.status_rows();

COMMENT ON VIEW @extschema@.status IS
    'Budget, slots in use, sessions by state and counters of each listed service and of "*".';

CREATE FUNCTION @extschema@.rejections_rows(
    OUT rejected_at timestamptz,
    OUT service text,
    OUT user_name text,
    OUT database_name text,
    OUT client_addr inet,
    OUT connections int4,
    OUT budget int4,
    OUT enforced bool)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'dbpool_guard_rejections_1_0'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

CREATE VIEW @extschema@.rejections AS
    SELECT * FROM @extschema@.rejections_rows();

COMMENT ON VIEW @extschema@.rejections IS
    'The last 1000 refusals (and would-be refusals in monitor mode), newest first.';

CREATE FUNCTION @extschema@.sessions_rows(
    OUT pid int4,
    OUT service text,
    OUT user_name text,
    OUT admitted_at timestamptz,
    OUT state text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'dbpool_guard_sessions_1_0'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

CREATE VIEW @extschema@.sessions AS
    SELECT * FROM @extschema@.sessions_rows();

COMMENT ON VIEW @extschema@.sessions IS
    'One row per admitted backend: who holds each service''s slots.';

CREATE FUNCTION @extschema@.budget_check(
    OUT total_budget int4,
    OUT max_connections int4,
    OUT reserved int4,
    OUT available int4,
    OUT oversubscribed bool)
RETURNS record
AS 'MODULE_PATHNAME', 'dbpool_guard_budget_check_1_0'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.budget_check() IS
    'Sum of the budgets against the connections the server has for them.';

CREATE FUNCTION @extschema@.reset_counters()
RETURNS void
AS 'MODULE_PATHNAME', 'dbpool_guard_reset_counters_1_0'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION @extschema@.reset_counters() IS
    'Zero the totals and the rejection log; peaks restart from the current count.';

-- Read interface: pg_monitor, not PUBLIC.  Views run their functions
-- with the reader's rights, hence EXECUTE as well as SELECT.
REVOKE ALL ON FUNCTION @extschema@.status_rows() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.rejections_rows() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.sessions_rows() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.budget_check() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.reset_counters() FROM PUBLIC;
REVOKE ALL ON @extschema@.status FROM PUBLIC;
REVOKE ALL ON @extschema@.rejections FROM PUBLIC;
REVOKE ALL ON @extschema@.sessions FROM PUBLIC;

GRANT EXECUTE ON FUNCTION @extschema@.status_rows() TO pg_monitor;
GRANT EXECUTE ON FUNCTION @extschema@.rejections_rows() TO pg_monitor;
GRANT EXECUTE ON FUNCTION @extschema@.sessions_rows() TO pg_monitor;
GRANT EXECUTE ON FUNCTION @extschema@.budget_check() TO pg_monitor;
GRANT SELECT ON @extschema@.status TO pg_monitor;
GRANT SELECT ON @extschema@.rejections TO pg_monitor;
GRANT SELECT ON @extschema@.sessions TO pg_monitor;
