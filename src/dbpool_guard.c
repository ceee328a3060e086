/*-------------------------------------------------------------------------
 * dbpool_guard.c
 *		Module entry point: GUCs and their check hooks, what derives from
 *		them (an entry's threshold and cap), hook installation.
 *
 * Every GUC is PGC_SIGHUP (max_services: PGC_POSTMASTER).  The check
 * hooks only parse and validate, since they also run in the postmaster;
 * a value they reject leaves the previous one in force.  Whether the
 * configuration files hold a budgets value that is rejected is read from
 * the files when asked (dbpg_configured_budgets_invalid()), not kept from
 * the last check: no check hook runs when a line is removed, and some
 * runs of it (ALTER SYSTEM, pg_file_settings) apply nothing.
 *
 * IDENTIFICATION
 *		src/dbpool_guard.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "compat.h"
#include "dbpool_guard.h"

DBPG_MODULE_MAGIC;

int			dbpg_mode = DBPG_MODE_ENFORCE;
int			dbpg_max_services = 128;
int			dbpg_sample_interval = 1000;
double		dbpg_threshold = 0.85;
double		dbpg_warning_threshold = 0.75;
char	   *dbpg_budgets_string = NULL;
char	   *dbpg_exempt_string = NULL;
const DbpgBudgets *dbpg_budgets = NULL;
const DbpgNameList *dbpg_exempt = NULL;
int32		dbpg_threshold_ppm = 850000;
int			dbpg_service_key = DBPG_KEY_APPLICATION_NAME;
char	   *dbpg_service_roles_string = NULL;
const DbpgBindings *dbpg_bindings = NULL;
int			dbpg_burst_pool = 0;
int			dbpg_max_wait = 0;
int			dbpg_max_waiters = 4;
int			dbpg_max_waiters_total = 10;

static const struct config_enum_entry mode_options[] = {
	{"enforce", DBPG_MODE_ENFORCE, false},
	{"monitor", DBPG_MODE_MONITOR, false},
	{"off", DBPG_MODE_OFF, false},
	{NULL, 0, false}
};

static const struct config_enum_entry service_key_options[] = {
	{"application_name", DBPG_KEY_APPLICATION_NAME, false},
	{"role", DBPG_KEY_ROLE, false},
	{NULL, 0, false}
};

/*
 * The list settings (budgets, exempt_roles, service_roles) are checked
 * alike: parse into a scratch block with room for the largest value
 * allowed, then keep only the part used, in a block that the GUC
 * machinery owns and frees.  A value that does not parse is rejected
 * with the parser's reason as DETAIL and its suggestion as HINT.  A
 * ListParser returns the size of the block it filled, 0 for a rejected
 * value.
 */
typedef size_t (*ListParser) (const char *value, void *out, DbpgParseError *err);

static bool
check_list(const char *value, size_t room, ListParser parse, void **extra)
{
	DbpgParseError err;
	void	   *tmp = malloc(room);
	void	   *result = NULL;
	size_t		used;

	if (tmp == NULL)
		goto oom;
	used = parse(value, tmp, &err);
	if (used == 0)
	{
		GUC_check_errdetail("%s", err.detail);
		if (err.hint[0] != '\0')
			GUC_check_errhint("%s", err.hint);
		free(tmp);
		return false;
	}
	result = dbpg_guc_malloc(used);
	if (result != NULL)
		memcpy(result, tmp, used);
	free(tmp);
	if (result == NULL)
		goto oom;
	*extra = result;
	return true;

oom:
	GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
	GUC_check_errmsg("out of memory");
	return false;
}

static size_t
parse_budgets(const char *value, void *out, DbpgParseError *err)
{
	return dbpg_budgets_parse(value, dbpg_max_services, MaxConnections, out, err) ?
		DbpgBudgetsSize(((DbpgBudgets *) out)->nentries) : 0;
}

static size_t
parse_exempt(const char *value, void *out, DbpgParseError *err)
{
	return dbpg_namelist_parse(value, DBPG_MAX_EXEMPT, out, err) ?
		DbpgNameListSize(((DbpgNameList *) out)->nnames) : 0;
}

static size_t
parse_service_roles(const char *value, void *out, DbpgParseError *err)
{
	DbpgBindings *b = out;

	if (!dbpg_bindings_parse(value, dbpg_max_services, DBPG_MAX_BOUND_ROLES, b, err))
		return 0;
	return DbpgBindingsSize(b->nbindings, b->nroles);
}

/* A hook is not told which setting it serves: one check hook each. */
static bool
check_budgets(char **newval, void **extra, GucSource source)
{
	return check_list(*newval, DbpgBudgetsSize(dbpg_max_services),
					  parse_budgets, extra);
}

static bool
check_exempt(char **newval, void **extra, GucSource source)
{
	return check_list(*newval, DbpgNameListSize(DBPG_MAX_EXEMPT),
					  parse_exempt, extra);
}

static bool
check_service_roles(char **newval, void **extra, GucSource source)
{
	return check_list(*newval,
					  DbpgBindingsSize(dbpg_max_services, DBPG_MAX_BOUND_ROLES),
					  parse_service_roles, extra);
}

/* ... and one assign hook each, to keep the parsed block in force. */
static void
assign_budgets(const char *newval, void *extra)
{
	dbpg_budgets = extra;
}

static void
assign_exempt(const char *newval, void *extra)
{
	dbpg_exempt = extra;
}

static void
assign_service_roles(const char *newval, void *extra)
{
	dbpg_bindings = extra;
}

static bool configured_budgets_invalid(void);

/*
 * Do the configuration files (postgresql.conf with its includes, then
 * postgresql.auto.conf, the last setting winning, as at a reload) set
 * dbpool_guard.budgets to a value that the check hook rejects?  Read
 * afresh at each call, as pg_file_settings does.  false when the files
 * do not set it or cannot be parsed (the server then keeps every value).
 *
 * The parser leaves memory behind (the names of an include_dir), so it
 * runs in a context of its own, deleted after; and it may say things
 * (a missing include_if_exists file, at LOG; a syntax error), which a
 * monitoring call must neither log at each call nor show its caller.
 */
bool
dbpg_configured_budgets_invalid(void)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "dbpool_guard configuration files",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	bool		invalid = false;

	dbpg_quiet_messages = true;
	PG_TRY();
	{
		invalid = configured_budgets_invalid();
	}
	PG_FINALLY();
	{
		dbpg_quiet_messages = false;
		MemoryContextSwitchTo(old);
		MemoryContextDelete(cxt);
	}
	PG_END_TRY();
	return invalid;
}

static bool
configured_budgets_invalid(void)
{
	ConfigVariable *head = NULL;
	ConfigVariable *tail = NULL;
	const char *value = NULL;
	bool		invalid = false;

	if (ConfigFileName != NULL &&
		ParseConfigFile(ConfigFileName, true, NULL, 0, 0, DEBUG1,
						&head, &tail) &&
		(DataDir == NULL ||
		 ParseConfigFile(PG_AUTOCONF_FILENAME, false, NULL, 0, 0, DEBUG1,
						 &head, &tail)))
	{
		for (ConfigVariable *item = head; item != NULL; item = item->next)
		{
			if (pg_strcasecmp(item->name, "dbpool_guard.budgets") == 0)
				value = item->value;
		}
		if (value != NULL)
		{
			DbpgParseError err;

			invalid = parse_budgets(value,
									palloc(DbpgBudgetsSize(dbpg_max_services)),
									&err) == 0;
		}
	}
	return invalid;
}

/* A threshold must be in (0, 1]; 0 is allowed by the range but not here. */
static bool
check_threshold(double *newval, void **extra, GucSource source)
{
	if (dbpg_ppm_from_double(*newval) <= 0)
	{
		GUC_check_errdetail("The threshold must be greater than 0 (at least 0.000001).");
		return false;
	}
	return true;
}

static void
assign_threshold(double newval, void *extra)
{
	dbpg_threshold_ppm = dbpg_ppm_from_double(newval);
}

/* The threshold of an entry: its own, or dbpool_guard.threshold. */
int32
dbpg_entry_threshold(const DbpgBudgetEntry *e)
{
	return e->threshold_ppm == DBPG_THRESHOLD_DEFAULT ?
		dbpg_threshold_ppm : e->threshold_ppm;
}

/*
 * How many logins may wait at once, server-wide, as this backend's
 * settings say: 0 when logins do not wait.  Each holds a connection slot,
 * so budget_check() and the configuration's log line count it.
 */
int
dbpg_waiters_bound(void)
{
	if (dbpg_max_wait <= 0 || dbpg_max_waiters <= 0)
		return 0;
	return dbpg_max_waiters_total;
}

/* The number of connections at which an entry's service is refused. */
int32
dbpg_entry_cap(const DbpgBudgetEntry *e)
{
	return dbpg_cap(e->budget, dbpg_entry_threshold(e));
}

static void
define_gucs(void)
{
	/* first: the budgets check hook validates against it */
	DefineCustomIntVariable("dbpool_guard.max_services",
							"Size of the shared table of services.",
							"A budgets list may name at most this many services (the \"*\" entry not counted).",
							&dbpg_max_services,
							128, 1, 100000,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("dbpool_guard.budgets",
							   "Connection budget of each service.",
							   "Comma-separated entries name=budget, name=budget@threshold, name=budget+burst or name=budget+burst@threshold, each name a service as dbpool_guard.service_key names it; \"*\" is one shared budget for all unlisted services.",
							   &dbpg_budgets_string,
							   "",
							   PGC_SIGHUP,
							   0,
							   check_budgets, assign_budgets, NULL);

	DefineCustomRealVariable("dbpool_guard.threshold",
							 "Default share of a budget at which new sessions are refused.",
							 NULL,
							 &dbpg_threshold,
							 0.85, 0.0, 1.0,
							 PGC_SIGHUP,
							 0,
							 check_threshold, assign_threshold, NULL);

	DefineCustomRealVariable("dbpool_guard.warning_threshold",
							 "Share of a budget at which a service is reported as \"warning\".",
							 NULL,
							 &dbpg_warning_threshold,
							 0.75, 0.0, 1.0,
							 PGC_SIGHUP,
							 0,
							 check_threshold, NULL, NULL);

	DefineCustomEnumVariable("dbpool_guard.mode",
							 "What dbpool_guard does at login: enforce, monitor or off.",
							 "monitor counts and logs would-be refusals but admits every session.",
							 &dbpg_mode,
							 DBPG_MODE_ENFORCE,
							 mode_options,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("dbpool_guard.exempt_roles",
							   "Roles whose sessions (and their members' sessions) are never refused and use no budget.",
							   "Comma-separated role names, written as in pg_hba.conf.",
							   &dbpg_exempt_string,
							   "",
							   PGC_SIGHUP,
							   0,
							   check_exempt, assign_exempt, NULL);

	DefineCustomEnumVariable("dbpool_guard.service_key",
							 "What names a session's service: its application_name or its role.",
							 "Takes effect for new logins; a slot is always released where it was taken.",
							 &dbpg_service_key,
							 DBPG_KEY_APPLICATION_NAME,
							 service_key_options,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("dbpool_guard.service_roles",
							   "Roles allowed to claim each service through application_name.",
							   "Comma-separated entries service=role1|role2; a login of another role that claims a bound service is counted in \"*\".",
							   &dbpg_service_roles_string,
							   "",
							   PGC_SIGHUP,
							   0,
							   check_service_roles, assign_service_roles, NULL);

	DefineCustomIntVariable("dbpool_guard.burst_pool",
							"Connection slots that services may borrow beyond their budgets, server-wide.",
							"A service borrows only up to the burst of its budgets entry (name=budget+burst), only when its own slots are at its cap, and repays first when a session ends.",
							&dbpg_burst_pool,
							0, 0, MAX_BACKENDS,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("dbpool_guard.max_wait",
							"Longest a login waits for a slot of its service before it is refused.",
							"0 refuses at once. A wait ends 500 ms before authentication_timeout would end the connection.",
							&dbpg_max_wait,
							0, 0, 600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("dbpool_guard.max_waiters",
							"Most logins of one service waiting for a slot at once.",
							"A login that finds this many of its service waiting is refused at once.",
							&dbpg_max_waiters,
							4, 0, MAX_BACKENDS,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("dbpool_guard.max_waiters_total",
							"Most logins waiting for a slot at once, server-wide.",
							"Each waiting login holds a connection slot: budget_check() counts this bound when max_wait is set.",
							&dbpg_max_waiters_total,
							10, 0, MAX_BACKENDS,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("dbpool_guard.sample_interval",
							"Period of the worker's samples of the backend status array.",
							NULL,
							&dbpg_sample_interval,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("dbpool_guard");
}

void
_PG_init(void)
{
	/*
	 * Without preloading there is no shared memory and no hook: stay quiet
	 * and let the SQL functions say what is missing.
	 */
	if (!process_shared_preload_libraries_in_progress)
		return;

	define_gucs();
	dbpg_shmem_init_hooks();
	dbpg_admission_init();
	dbpg_register_worker();
}
