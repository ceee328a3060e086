/* dbpool_guard--1.3--1.4.sql: enforcement(); health() says whether budgets are enforced */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION dbpool_guard UPDATE TO '1.4'" to load this file. \quit

-- Whether this server enforces budgets, and why not: reason is one of
-- enforced, mode_monitor, mode_off, no_budgets, budgets_rejected (the
-- configured value is rejected, so none are in force), table_full (a
-- listed service has no entry in the full service table, so its logins
-- are admitted without a budget).  Parallel restricted: it reads the
-- configuration files and the leader's settings.  unguarded_total
-- counts logins of listed services admitted without a budget because the
-- service table was full (more than max_services names listed since the
-- server started).
CREATE FUNCTION @extschema@.enforcement(
    OUT enforced bool,
    OUT reason text,
    OUT detail text,
    OUT unguarded_total int8)
RETURNS record
AS 'MODULE_PATHNAME', 'dbpool_guard_enforcement_1_4'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION @extschema@.enforcement() IS
    'Whether budgets are enforced at login and, if not, why (reason: enforced, mode_monitor, mode_off, no_budgets, budgets_rejected, table_full); logins admitted without a budget because the service table was full.';

REVOKE ALL ON FUNCTION @extschema@.enforcement() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.enforcement() TO pg_monitor;

-- health() gains "enforced" and "enforcement"; a server whose budgets are
-- not enforced is at least "warning", never "ok".  Not "critical": the
-- server itself works, and readiness probes must not take it out of
-- rotation; the alert DbpoolGuardNotEnforced is what notifies.
CREATE OR REPLACE FUNCTION @extschema@.health()
RETURNS jsonb
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT jsonb_build_object(
    'status',
        CASE
            WHEN bool_or(s.state = 'rejecting' AND s.budget IS DISTINCT FROM 0)
                THEN 'critical'
            WHEN bool_or(s.state = 'warning') OR NOT e.enforced THEN 'warning'
            ELSE 'ok'
        END,
    'mode', current_setting('dbpool_guard.mode'),
    'enforced', e.enforced,
    'enforcement', e.reason,
    'sampled_at', max(s.sampled_at),
    'sample_age_seconds',
        round(greatest(0, extract(epoch FROM clock_timestamp() - max(s.sampled_at))), 3),
    'services',
        coalesce(jsonb_agg(jsonb_build_object(
                     'name', s.service,
                     'connections', s.connections,
                     'cap', s.cap,
                     'budget', s.budget,
                     'utilization', s.utilization,
                     'state', s.state)
                 ORDER BY s.service = '*', s.service COLLATE "C"),
                 '[]'::jsonb))
  FROM @extschema@.status AS s,
       @extschema@.enforcement() AS e
 GROUP BY e.enforced, e.reason
$$;

COMMENT ON FUNCTION @extschema@.health() IS
    'Readiness summary as jsonb: status (ok, warning, critical), mode, whether budgets are enforced and why not, the worker''s sample age, and each service''s connections, cap, budget, utilization and state.';
