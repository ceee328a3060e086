/* dbpool_guard--1.2--1.3.sql: service identity (service_roles, service_key) */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION dbpool_guard UPDATE TO '1.3'" to load this file. \quit

-- status gains misattributed_total, rejections gains reason; existing
-- columns keep their order.  A view's columns cannot change type or
-- order in place, so the views and their functions are made again.
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
    OUT terminated_total int8,
    OUT misattributed_total int8)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'dbpool_guard_status_1_3'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

CREATE VIEW @extschema@.status AS
    SELECT * FROM @extschema@.status_rows();

COMMENT ON VIEW @extschema@.status IS
    'Budget, slots in use, sessions by state and counters of each listed service and of "*".';

DROP VIEW @extschema@.rejections;
DROP FUNCTION @extschema@.rejections_rows();

CREATE FUNCTION @extschema@.rejections_rows(
    OUT rejected_at timestamptz,
    OUT service text,
    OUT user_name text,
    OUT database_name text,
    OUT client_addr inet,
    OUT connections int4,
    OUT budget int4,
    OUT enforced bool,
    OUT reason text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'dbpool_guard_rejections_1_3'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

CREATE VIEW @extschema@.rejections AS
    SELECT * FROM @extschema@.rejections_rows();

COMMENT ON VIEW @extschema@.rejections IS
    'The last 1000 refusals (and would-be refusals in monitor mode), newest first.';

REVOKE ALL ON FUNCTION @extschema@.status_rows() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.rejections_rows() FROM PUBLIC;
REVOKE ALL ON @extschema@.status FROM PUBLIC;
REVOKE ALL ON @extschema@.rejections FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.status_rows() TO pg_monitor;
GRANT EXECUTE ON FUNCTION @extschema@.rejections_rows() TO pg_monitor;
GRANT SELECT ON @extschema@.status TO pg_monitor;
GRANT SELECT ON @extschema@.rejections TO pg_monitor;
