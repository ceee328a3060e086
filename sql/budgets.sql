--
-- The grammar of dbpool_guard.budgets and dbpool_guard.exempt_roles, as a
-- user meets it: ALTER SYSTEM runs the same check hook as a reload.
--
-- accepted values
ALTER SYSTEM SET dbpool_guard.budgets = '';
ALTER SYSTEM SET dbpool_guard.budgets = '   ';
ALTER SYSTEM SET dbpool_guard.budgets = 'auth-service=12, user-service=12, feed-service=8@0.9, *=10';
ALTER SYSTEM SET dbpool_guard.budgets = ' a = 1 @ 1 ,b=0,  *=2@.5 ';
ALTER SYSTEM SET dbpool_guard.budgets = '"with space"=3, "comma,name"=1, "q""uote"=2, "a=b@c"=1';
ALTER SYSTEM SET dbpool_guard.budgets = 'Feed=1, feed=1';
ALTER SYSTEM SET dbpool_guard.budgets = 'x=100';
ALTER SYSTEM SET dbpool_guard.budgets = 'x=1@0.000001, y=1@1.000000';
ALTER SYSTEM SET dbpool_guard.budgets = '123456789012345678901234567890123456789012345678901234567890123=1';
-- a burst after the budget: name=budget+burst[@threshold]; 0+N borrows only
ALTER SYSTEM SET dbpool_guard.budgets = 'a=10+5';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=10 + 5 @ 0.9';
ALTER SYSTEM SET dbpool_guard.budgets = '*=2+3';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=0+4';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=10+0, b=0+0, c=1+100@1, "d+e"=2+1, *=0+7@.5';
-- rejected values: the detail quotes the offending entry
ALTER SYSTEM SET dbpool_guard.budgets = 'a=1, a=2';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=1, *=2, *=3';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=1,,b=2';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=1,';
ALTER SYSTEM SET dbpool_guard.budgets = '=5';
ALTER SYSTEM SET dbpool_guard.budgets = '""=5';
ALTER SYSTEM SET dbpool_guard.budgets = '"*"=5';
ALTER SYSTEM SET dbpool_guard.budgets = 'a';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=-1';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=1.5';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=101';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=99999999999999999999';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=10@0';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=10@1.01';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=10@2';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=10@';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=10@0.1234567';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=10@1e-1';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=10@nan';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=10 x';
ALTER SYSTEM SET dbpool_guard.budgets = 'a b=10';
ALTER SYSTEM SET dbpool_guard.budgets = '"open=10';
ALTER SYSTEM SET dbpool_guard.budgets = 'naïve=10';
ALTER SYSTEM SET dbpool_guard.budgets = '1234567890123456789012345678901234567890123456789012345678901234=1';
-- rejected bursts
ALTER SYSTEM SET dbpool_guard.budgets = 'a=10+';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=10+x';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=10+-1';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=10+5.5';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=10+101';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=10+99999';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=10+5+1';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=10+5@0.9+1';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=10@0.9+5';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=10+5 x';
ALTER SYSTEM SET dbpool_guard.budgets = 'a=+5';
ALTER SYSTEM SET dbpool_guard.budgets = 'b=1, *=2+3, *=1';
-- more named services than max_services (128) allows; "*" does not count
SELECT 'ALTER SYSTEM SET dbpool_guard.budgets = '
       || quote_literal(string_agg('s' || i || '=1', ',') || ', *=1')
  FROM generate_series(1, 128) i \gexec
SELECT 'ALTER SYSTEM SET dbpool_guard.budgets = '
       || quote_literal(string_agg('s' || i || '=0', ','))
  FROM generate_series(1, 129) i \gexec
-- thresholds
ALTER SYSTEM SET dbpool_guard.threshold = 0;
ALTER SYSTEM SET dbpool_guard.threshold = 1.5;
ALTER SYSTEM SET dbpool_guard.threshold = 0.9;
ALTER SYSTEM SET dbpool_guard.warning_threshold = 0;
ALTER SYSTEM SET dbpool_guard.warning_threshold = 0.6;
ALTER SYSTEM SET dbpool_guard.mode = 'on';
ALTER SYSTEM SET dbpool_guard.mode = 'monitor';
-- out of range (the message's wording of the range differs from 17 on)
\set VERBOSITY sqlstate
ALTER SYSTEM SET dbpool_guard.sample_interval = 5;
\set VERBOSITY default
ALTER SYSTEM SET dbpool_guard.sample_interval = '2s';
-- exempt_roles
ALTER SYSTEM SET dbpool_guard.exempt_roles = 'monitoring, "Ops Team", no_such_role';
ALTER SYSTEM SET dbpool_guard.exempt_roles = 'a, a';
ALTER SYSTEM SET dbpool_guard.exempt_roles = 'a,,b';
ALTER SYSTEM SET dbpool_guard.exempt_roles = 'a b';
ALTER SYSTEM SET dbpool_guard.exempt_roles = '*';
-- leave the instance as test/regress.conf set it
ALTER SYSTEM RESET ALL;
