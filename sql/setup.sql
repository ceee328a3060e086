-- The library is preloaded by test/regress.conf; install the SQL objects.
CREATE EXTENSION dbpool_guard;
SELECT extversion FROM pg_extension WHERE extname = 'dbpool_guard';
SELECT nspname FROM pg_namespace n JOIN pg_extension e ON e.extnamespace = n.oid
 WHERE e.extname = 'dbpool_guard';
-- not relocatable
ALTER EXTENSION dbpool_guard SET SCHEMA public;
SHOW dbpool_guard.budgets;
SHOW dbpool_guard.threshold;
SHOW dbpool_guard.warning_threshold;
SHOW dbpool_guard.mode;
SHOW dbpool_guard.exempt_roles;
SHOW dbpool_guard.sample_interval;
SHOW dbpool_guard.max_services;
-- reserved prefix: a typo is an error, not a silent placeholder
SET dbpool_guard.budget = 'x=1';
-- server-wide settings cannot be changed in a session
SET dbpool_guard.budgets = 'x=1';
SET dbpool_guard.mode = 'off';
