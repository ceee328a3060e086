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

--
-- ALTER EXTENSION ... UPDATE to the default version from every earlier
-- version leaves exactly what CREATE EXTENSION makes: the same objects,
-- definitions, columns, rights and comments.  In a database of its own.
--
SELECT current_database() AS regress_db \gset
CREATE DATABASE dbpg_identity;
\c dbpg_identity
CREATE FUNCTION pg_temp.shape() RETURNS SETOF text
LANGUAGE sql AS $$
  SELECT format('function %s(%s) returns %s; %s %s; acl %s; comment %s',
                p.proname, pg_get_function_arguments(p.oid),
                pg_get_function_result(p.oid), l.lanname,
                CASE WHEN l.lanname = 'c' THEN p.prosrc ELSE md5(p.prosrc) END,
                p.proacl, obj_description(p.oid, 'pg_proc'))
    FROM pg_proc p
    JOIN pg_language l ON l.oid = p.prolang
    JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE n.nspname = 'dbpool_guard'
  UNION ALL
  SELECT format('%s %s (%s); acl %s; comment %s',
                c.relkind, c.relname,
                (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod),
                                   ', ' ORDER BY a.attnum)
                   FROM pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
                c.relacl, obj_description(c.oid, 'pg_class'))
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'dbpool_guard'
  ORDER BY 1
$$;
CREATE EXTENSION dbpool_guard;
CREATE TEMP TABLE fresh AS SELECT * FROM pg_temp.shape() AS s;
SELECT count(*) AS objects FROM fresh;
-- what differs from a fresh install, either way: no rows when identical
CREATE FUNCTION pg_temp.shape_diff() RETURNS SETOF text
LANGUAGE sql AS $$
  (SELECT * FROM fresh EXCEPT SELECT * FROM pg_temp.shape())
  UNION ALL
  (SELECT * FROM pg_temp.shape() EXCEPT SELECT * FROM fresh)
$$;
DROP EXTENSION dbpool_guard;
CREATE EXTENSION dbpool_guard VERSION '1.0';
ALTER EXTENSION dbpool_guard UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'dbpool_guard';
SELECT * FROM pg_temp.shape_diff();
DROP EXTENSION dbpool_guard;
CREATE EXTENSION dbpool_guard VERSION '1.1';
ALTER EXTENSION dbpool_guard UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'dbpool_guard';
SELECT * FROM pg_temp.shape_diff();
DROP EXTENSION dbpool_guard;
CREATE EXTENSION dbpool_guard VERSION '1.2';
ALTER EXTENSION dbpool_guard UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'dbpool_guard';
SELECT * FROM pg_temp.shape_diff();
DROP EXTENSION dbpool_guard;
CREATE EXTENSION dbpool_guard VERSION '1.3';
ALTER EXTENSION dbpool_guard UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'dbpool_guard';
SELECT * FROM pg_temp.shape_diff();
-- the upgraded views answer, with the new columns
SELECT count(*) > 0 AS has_rows, sum(misattributed_total) AS misattributed
  FROM dbpool_guard.status;
SELECT count(*) AS rows FROM dbpool_guard.rejections WHERE reason IS NULL;
SELECT dbpool_guard.health() ->> 'status' AS health;
SELECT enforced, reason FROM dbpool_guard.enforcement();
\c :regress_db
DROP DATABASE dbpg_identity;
