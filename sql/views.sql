--
-- Shapes of the SQL interface, and what it shows for test/regress.conf's
-- budgets: auth-service=12, user-service=12, feed-service=8@0.9, *=10.
--
SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod)
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = 'dbpool_guard'::regnamespace AND c.relkind = 'v'
   AND a.attnum > 0
 ORDER BY c.relname, a.attnum;

SELECT p.proname, pg_get_function_result(p.oid) AS result
  FROM pg_proc p
 WHERE p.pronamespace = 'dbpool_guard'::regnamespace
 ORDER BY p.proname;

-- the regression session is a superuser: it holds no slot
SELECT service, budget, threshold, cap, connections, utilization, state,
       admitted_total, rejected_total, would_reject_total, peak_connections,
       last_rejected_at
  FROM dbpool_guard.status;

SELECT count(*) AS sessions FROM dbpool_guard.sessions;
SELECT count(*) AS rejections FROM dbpool_guard.rejections;

-- 12 + 12 + 8 + 10 of 100 - 3 superuser-reserved
SELECT * FROM dbpool_guard.budget_check();

SELECT dbpool_guard.reset_counters();
SELECT sum(admitted_total) AS admitted, sum(rejected_total) AS rejected
  FROM dbpool_guard.status;
