--
-- Service identity (1.3): the grammar of dbpool_guard.service_roles and
-- dbpool_guard.service_key, and the appended columns.
--
SHOW dbpool_guard.service_key;
SHOW dbpool_guard.service_roles;
-- accepted values
ALTER SYSTEM SET dbpool_guard.service_roles = '';
ALTER SYSTEM SET dbpool_guard.service_roles = 'auth-service=auth_svc';
ALTER SYSTEM SET dbpool_guard.service_roles = ' auth-service = auth_svc | "Ops Team" , feed-service=feed ';
ALTER SYSTEM SET dbpool_guard.service_roles = '"odd, name"="role|with|pipes"|plain, x=not_yet_created';
-- rejected values: the detail quotes the offending entry
ALTER SYSTEM SET dbpool_guard.service_roles = 'auth-service';
ALTER SYSTEM SET dbpool_guard.service_roles = 'auth-service=';
ALTER SYSTEM SET dbpool_guard.service_roles = 'auth-service=a||b';
ALTER SYSTEM SET dbpool_guard.service_roles = 'auth-service=a|';
ALTER SYSTEM SET dbpool_guard.service_roles = 'auth-service=a|a';
ALTER SYSTEM SET dbpool_guard.service_roles = 'a=x, a=y';
ALTER SYSTEM SET dbpool_guard.service_roles = '*=x';
ALTER SYSTEM SET dbpool_guard.service_roles = 'a=*';
ALTER SYSTEM SET dbpool_guard.service_roles = 'a=x y';
ALTER SYSTEM SET dbpool_guard.service_roles = 'a=x,,b=y';
ALTER SYSTEM SET dbpool_guard.service_roles = '"unterminated=x';
ALTER SYSTEM SET dbpool_guard.service_roles = 'a=1234567890123456789012345678901234567890123456789012345678901234';
ALTER SYSTEM SET dbpool_guard.service_key = 'role';
ALTER SYSTEM SET dbpool_guard.service_key = 'user';
ALTER SYSTEM RESET ALL;

-- 1.3 appends misattributed_total to status and reason to rejections
SELECT extversion FROM pg_extension WHERE extname = 'dbpool_guard';
SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod)
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = 'dbpool_guard'::regnamespace AND c.relkind = 'v'
   AND c.relname IN ('status', 'rejections') AND a.attnum > 17
 ORDER BY c.relname, a.attnum;
SELECT service, misattributed_total FROM dbpool_guard.status;
SELECT count(*) FROM dbpool_guard.rejections WHERE reason IS NULL;
