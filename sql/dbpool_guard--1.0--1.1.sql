/* dbpool_guard--1.0--1.1.sql: health() for readiness probes */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION dbpool_guard UPDATE TO '1.1'" to load this file. \quit

-- Plain SQL over the status view: no new C symbol.  The body is a string,
-- not BEGIN ATOMIC, so it records no dependency on the view and a later
-- version may drop and recreate dbpool_guard.status; it only needs the
-- columns named here.
--
-- status: "critical" when a service is at its cap (state "rejecting"),
-- else "warning" when one is at or above dbpool_guard.warning_threshold,
-- else "ok".  A service whose budget is 0 is refused by design and always
-- shows "rejecting": it is listed but does not make the server critical.
-- sample_age_seconds is null until the worker's first sample.
CREATE FUNCTION @extschema@.health()
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
            WHEN bool_or(s.state = 'warning') THEN 'warning'
            ELSE 'ok'
        END,
    'mode', current_setting('dbpool_guard.mode'),
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
  FROM @extschema@.status AS s
$$;

COMMENT ON FUNCTION @extschema@.health() IS
    'Readiness summary as jsonb: status (ok, warning, critical), mode, the worker''s sample age, and each service''s connections, cap, budget, utilization and state.';

REVOKE ALL ON FUNCTION @extschema@.health() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.health() TO pg_monitor;
