/* dbpool_guard--1.4--1.5.sql: elastic budgets (burst pool, waiting at login) */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION dbpool_guard UPDATE TO '1.5'" to load this file. \quit

-- status gains, appended: burst (the entry's burst allowance), borrowed
-- (slots borrowed from the burst pool now), waiting_logins (logins
-- waiting for a slot now), waited_total (admitted after waiting) and
-- wait_timeouts_total (refused when the wait ran out).
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
    OUT misattributed_total int8,
    OUT burst int4,
    OUT borrowed int4,
    OUT waiting_logins int4,
    OUT waited_total int8,
    OUT wait_timeouts_total int8)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'dbpool_guard_status_1_5'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

CREATE VIEW @extschema@.status AS
    SELECT * FROM @extschema@.status_rows();

COMMENT ON VIEW @extschema@.status IS
    'Budget, slots in use (own and borrowed), sessions by state, waiting logins and counters of each listed service and of "*".';

REVOKE ALL ON FUNCTION @extschema@.status_rows() FROM PUBLIC;
REVOKE ALL ON @extschema@.status FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.status_rows() TO pg_monitor;
GRANT SELECT ON @extschema@.status TO pg_monitor;

-- budget_check() counts the burst pool and, when logins may wait, the
-- waiters' bound: oversubscribed when total exceeds available.
DROP FUNCTION @extschema@.budget_check();

CREATE FUNCTION @extschema@.budget_check(
    OUT total_budget int4,
    OUT max_connections int4,
    OUT reserved int4,
    OUT available int4,
    OUT oversubscribed bool,
    OUT burst_pool int4,
    OUT waiters_bound int4,
    OUT total int4)
RETURNS record
AS 'MODULE_PATHNAME', 'dbpool_guard_budget_check_1_5'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.budget_check() IS
    'The budgets, the burst pool and the waiters'' bound against the connections the server has for them.';

REVOKE ALL ON FUNCTION @extschema@.budget_check() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.budget_check() TO pg_monitor;

-- The burst pool: its size, the slots lent now, and the logins waiting.
CREATE FUNCTION @extschema@.pool_row(
    OUT size int4,
    OUT borrowed int4,
    OUT free int4,
    OUT waiting_logins int4,
    OUT max_waiters_total int4)
RETURNS record
AS 'MODULE_PATHNAME', 'dbpool_guard_pool_1_5'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

CREATE VIEW @extschema@.pool AS
    SELECT * FROM @extschema@.pool_row();

COMMENT ON VIEW @extschema@.pool IS
    'The burst pool: its size, the slots lent now and free, and the logins waiting for a slot, server-wide.';

REVOKE ALL ON FUNCTION @extschema@.pool_row() FROM PUBLIC;
REVOKE ALL ON @extschema@.pool FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pool_row() TO pg_monitor;
GRANT SELECT ON @extschema@.pool TO pg_monitor;

-- The logins waiting for a slot, oldest first.  On 15-17 they are not in
-- pg_stat_activity, and only a superuser can pg_terminate_backend them.
CREATE FUNCTION @extschema@.waiting_logins_rows(
    OUT pid int4,
    OUT service text,
    OUT user_name text,
    OUT database_name text,
    OUT client_addr inet,
    OUT waiting_since timestamptz,
    OUT waited interval,
    OUT "position" int4)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'dbpool_guard_waiting_logins_1_5'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

CREATE VIEW @extschema@.waiting_logins AS
    SELECT * FROM @extschema@.waiting_logins_rows();

COMMENT ON VIEW @extschema@.waiting_logins IS
    'Logins waiting for a slot now, oldest first, with their place among their service''s waiters.';

REVOKE ALL ON FUNCTION @extschema@.waiting_logins_rows() FROM PUBLIC;
REVOKE ALL ON @extschema@.waiting_logins FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.waiting_logins_rows() TO pg_monitor;
GRANT SELECT ON @extschema@.waiting_logins TO pg_monitor;

-- Make a waiting login give up at once with a refusal (SQLSTATE 53300,
-- reason wait_cancelled).  Superuser only unless granted.
CREATE FUNCTION @extschema@.cancel_waiting_login(pid int4)
RETURNS bool
AS 'MODULE_PATHNAME', 'dbpool_guard_cancel_waiting_login_1_5'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.cancel_waiting_login(int4) IS
    'Make the login of this backend, if it is waiting for a slot, give up with a refusal; true when it was waiting.';

REVOKE ALL ON FUNCTION @extschema@.cancel_waiting_login(int4) FROM PUBLIC;

-- health() shows each service's burst, borrowed slots and waiting logins,
-- and the pool.  A service is "rejecting" when a new login would wait or
-- be refused; critical as before, now also for a borrowing-only service
-- (budget 0 with a burst).
CREATE OR REPLACE FUNCTION @extschema@.health()
RETURNS jsonb
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT jsonb_build_object(
    'status',
        CASE
            WHEN bool_or(s.state = 'rejecting'
                         AND (s.budget IS DISTINCT FROM 0 OR s.burst > 0))
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
    'pool', jsonb_build_object(
        'size', p.size,
        'borrowed', p.borrowed,
        'waiting_logins', p.waiting_logins),
    'services',
        coalesce(jsonb_agg(jsonb_build_object(
                     'name', s.service,
                     'connections', s.connections,
                     'cap', s.cap,
                     'budget', s.budget,
                     'burst', s.burst,
                     'borrowed', s.borrowed,
                     'waiting_logins', s.waiting_logins,
                     'utilization', s.utilization,
                     'state', s.state)
                 ORDER BY s.service = '*', s.service COLLATE "C"),
                 '[]'::jsonb))
  FROM @extschema@.status AS s,
       @extschema@.enforcement() AS e,
       @extschema@.pool AS p
 GROUP BY e.enforced, e.reason, p.size, p.borrowed, p.waiting_logins
$$;

COMMENT ON FUNCTION @extschema@.health() IS
    'Readiness summary as jsonb: status (ok, warning, critical), mode, whether budgets are enforced and why not, the worker''s sample age, the burst pool, and each service''s connections, cap, budget, burst, borrowed slots, waiting logins, utilization and state.';
