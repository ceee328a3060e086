/*-------------------------------------------------------------------------
 * worker.c
 *		The sampling worker: sessions by state, leak signals, warnings.
 *
 * Every sample_interval the worker reads a fresh snapshot of the backend
 * status array (what pg_stat_activity shows), joins it by pid to the
 * holdings array, and publishes per bucket the admitted sessions by
 * state and the oldest idle-in-transaction start.  A sample is linear in
 * the number of backends: the pid join goes through a local hash table,
 * and "waiting" is read from the PGPROC each holding recorded, under the
 * holding's spinlock: a holding is cleared before its backend gives up
 * its PGPROC, so while the pid matches the PGPROC is that backend's.
 *
 * It does not grow with the number of services: a sample visits only the
 * buckets that hold sessions now, or did at the last sample (their zeros
 * must be published once), or are in the warning state or disagree with
 * their holdings.  Every other bucket already shows zeros.  A full pass
 * over the bucket table runs once a minute (FULL_PASS_USECS), to find
 * buckets whose slot count disagrees with the holdings.  Buckets are
 * never removed (src/shmem.c), so the list never points at a freed entry.
 *
 * Admission never depends on the worker: it only observes, logs, and
 * publishes figures.  It never changes an admission counter.
 *
 * IDENTIFICATION
 *		src/worker.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/backend_status.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "dbpool_guard.h"

PGDLLEXPORT void dbpg_worker_main(Datum main_arg);

/* A holding not among live backends after this long is a mismatch. */
#define MISSING_GRACE_USECS		(10 * USECS_PER_SEC)
/* At most one mismatch report this often. */
#define MISMATCH_LOG_USECS		(60 * USECS_PER_SEC)
/* A service leaves "warning" this far below warning_threshold. */
#define WARNING_HYSTERESIS		0.05
/* Visit every bucket at least this often. */
#define FULL_PASS_USECS			(60 * USECS_PER_SEC)

/* Local pid -> backend state map, rebuilt each sample (open addressing). */
typedef struct PidEntry
{
	int			pid;			/* 0 = empty */
	BackendState state;
	TimestampTz state_start;
} PidEntry;

typedef struct LogEvent
{
	char		name[NAMEDATALEN];
	bool		up;				/* crossed up (WARNING) or back down (LOG) */
	uint32		in_use;
	int32		budget;
	int32		warn_pct;
} LogEvent;

static PidEntry *pidmap = NULL;
static int	pidmap_size = 0;	/* power of two */
static MemoryContext pass_cxt = NULL;
static TimestampTz last_mismatch_log = 0;

/* The buckets the current (and last) sample visits; see the top comment. */
static DbpgBucket **visit = NULL;
static int	nvisit = 0;
static int	visit_size = 0;		/* max_services + 1: every bucket, and "*" */
static uint64 pass_no = 0;		/* continues the last worker's count */
static TimestampTz last_full_pass = 0;

void
dbpg_register_worker(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* consistent state, so that it runs on hot standbys too */
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, "dbpool_guard", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "dbpg_worker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, DBPG_WORKER_TYPE, BGW_MAXLEN);
	strlcpy(worker.bgw_type, DBPG_WORKER_TYPE, BGW_MAXLEN);
	worker.bgw_main_arg = (Datum) 0;
	worker.bgw_notify_pid = 0;
	RegisterBackgroundWorker(&worker);
}

static uint32
pid_hash(int pid)
{
	return ((uint32) pid) * 2654435761U;
}

static void
pidmap_put(int pid, BackendState state, TimestampTz start)
{
	uint32		mask = (uint32) pidmap_size - 1;
	uint32		i = pid_hash(pid) & mask;

	while (pidmap[i].pid != 0 && pidmap[i].pid != pid)
		i = (i + 1) & mask;
	pidmap[i].pid = pid;
	pidmap[i].state = state;
	pidmap[i].state_start = start;
}

static PidEntry *
pidmap_get(int pid)
{
	uint32		mask = (uint32) pidmap_size - 1;
	uint32		i = pid_hash(pid) & mask;

	while (pidmap[i].pid != 0)
	{
		if (pidmap[i].pid == pid)
			return &pidmap[i];
		i = (i + 1) & mask;
	}
	return NULL;
}

/* The budget entry that governs a bucket under the current settings. */
static const DbpgBudgetEntry *
bucket_entry(DbpgBucket *b)
{
	const DbpgBudgets *cfg = dbpg_budgets;

	if (b == &dbpg_shared->deflt)
		return (cfg != NULL && cfg->has_default) ? &cfg->deflt : NULL;
	return dbpg_budgets_find(cfg, b->name);
}

/* wait_event_info: as read from the session's PGPROC, or 0 */
static DbpgState
classify(BackendState st, uint32 wait_event_info)
{
	switch (st)
	{
		case STATE_RUNNING:
			if ((wait_event_info & 0xFF000000U) == PG_WAIT_LOCK)
				return DBPG_STATE_WAITING;
			return DBPG_STATE_ACTIVE;
		case STATE_IDLE:
			return DBPG_STATE_IDLE;
		case STATE_IDLEINTRANSACTION:
			return DBPG_STATE_IDLE_IN_XACT;
		case STATE_IDLEINTRANSACTION_ABORTED:
			return DBPG_STATE_IDLE_IN_XACT_ABORTED;
		default:
			/* undefined, fastpath, disabled, and starting (18) */
			return DBPG_STATE_OTHER;
	}
}

static void
check_bucket(DbpgBucket *b, List **events, uint32 *mismatched)
{
	const DbpgBudgetEntry *e = bucket_entry(b);
	uint32		in_use = dbpg_bucket_in_use(b);

	SpinLockAcquire(&b->mutex);
	b->sample = b->worker.scratch;
	SpinLockRelease(&b->mutex);

	/* holdings and slots disagree two samples running: report, never fix */
	if ((uint32) b->worker.scratch.held != in_use)
	{
		if (++b->worker.mismatches == 2)
			(*mismatched)++;
	}
	else
		b->worker.mismatches = 0;

	if (e != NULL && e->budget > 0)
	{
		double		u = (double) in_use / e->budget;
		bool		up = !b->worker.warned && u >= dbpg_warning_threshold;
		bool		down = b->worker.warned && u < dbpg_warning_threshold - WARNING_HYSTERESIS;

		if (up || down)
		{
			LogEvent   *ev = palloc(sizeof(LogEvent));

			strlcpy(ev->name, b->name, NAMEDATALEN);
			ev->up = up;
			ev->in_use = in_use;
			ev->budget = e->budget;
			ev->warn_pct = (int32) (dbpg_warning_threshold * 100 + 0.5);
			*events = lappend(*events, ev);
			b->worker.warned = up;
		}
	}
	else if (b->worker.warned)
		b->worker.warned = false;		/* unlisted or unlimited now: no level */
}

/* Put a bucket on this sample's list, with its scratch figures cleared. */
static inline void
visit_bucket(DbpgBucket *b)
{
	if (b->worker.pass == pass_no)
		return;
	Assert(nvisit < visit_size);
	b->worker.pass = pass_no;
	memset(&b->worker.scratch, 0, sizeof(DbpgSample));
	visit[nvisit++] = b;
}

static void
visit_bucket_cb(DbpgBucket *b, void *arg)
{
	visit_bucket(b);
}

/* Start this sample's list. */
static void
start_visits(TimestampTz now)
{
	int			last = nvisit;

	/* numbered across worker restarts, so that no bucket seems visited */
	pass_no = ++dbpg_shared->passes;
	nvisit = 0;
	visit_bucket(&dbpg_shared->deflt);
	if (now - last_full_pass >= FULL_PASS_USECS)
	{
		last_full_pass = now;
		dbpg_buckets_foreach(visit_bucket_cb, NULL);
		return;
	}

	/* the last list, less the buckets that are quiet and published zeros */
	for (int i = 0; i < last; i++)
	{
		DbpgBucket *b = visit[i];

		if (b->sample.held > 0 || b->worker.warned || b->worker.mismatches > 0)
			visit_bucket(b);
	}
}

static void
take_sample(void)
{
	TimestampTz now = GetCurrentTimestamp();
	List	   *events = NIL;
	ListCell   *lc;
	uint32		missing = 0;
	uint32		mismatched = 0;
	int			n;

	MemoryContextReset(pass_cxt);
	MemoryContextSwitchTo(pass_cxt);

	/* a fresh snapshot: no transaction end clears it for us */
	pgstat_clear_backend_activity_snapshot();
	n = pgstat_fetch_stat_numbackends();
	memset(pidmap, 0, sizeof(PidEntry) * pidmap_size);
	for (int i = 1; i <= n; i++)
	{
		LocalPgBackendStatus *l = dbpg_local_beentry(i);

		if (l == NULL || l->backendStatus.st_procpid <= 0)
			continue;
		pidmap_put(l->backendStatus.st_procpid, l->backendStatus.st_state,
				   l->backendStatus.st_state_start_timestamp);
	}

	start_visits(now);

	for (int i = 0; i < dbpg_nholdings; i++)
	{
		DbpgHolding *h = &dbpg_holdings[i];
		int			pid;
		DbpgBucket *hb;
		uint32		wait_event_info = 0;
		TimestampTz admitted_at;
		PidEntry   *pe;
		DbpgState	st;
		DbpgSample *sc;

		SpinLockAcquire(&h->mutex);
		pid = h->pid;
		hb = h->bucket;
		/* still this backend's PGPROC: the holding is set */
		if (pid != 0 && h->proc != NULL)
			wait_event_info = *(volatile uint32 *) &h->proc->wait_event_info;
		admitted_at = h->admitted_at;
		SpinLockRelease(&h->mutex);
		if (pid == 0 || hb == NULL)
			continue;

		visit_bucket(hb);
		sc = &hb->worker.scratch;
		sc->held++;
		pe = pidmap_get(pid);
		if (pe == NULL)
		{
			/* admitted a moment ago and not reported yet, or lost */
			if (now - admitted_at > MISSING_GRACE_USECS)
				missing++;
			continue;
		}
		st = classify(pe->state, wait_event_info);
		switch (st)
		{
			case DBPG_STATE_ACTIVE:
				sc->active++;
				break;
			case DBPG_STATE_WAITING:
				sc->waiting++;
				break;
			case DBPG_STATE_IDLE:
				sc->idle++;
				break;
			case DBPG_STATE_IDLE_IN_XACT:
			case DBPG_STATE_IDLE_IN_XACT_ABORTED:
				sc->idle_in_xact++;
				if (pe->state_start != 0 &&
					(sc->oldest_iit_start == 0 || pe->state_start < sc->oldest_iit_start))
					sc->oldest_iit_start = pe->state_start;
				break;
			default:
				break;
		}

		SpinLockAcquire(&h->mutex);
		if (h->pid == pid)
			h->state = (uint8) st;
		SpinLockRelease(&h->mutex);
	}

	for (int i = 0; i < nvisit; i++)
		check_bucket(visit[i], &events, &mismatched);

	pg_atomic_write_u64(&dbpg_shared->sampled_at, (uint64) now);
	pgstat_clear_backend_activity_snapshot();

	foreach(lc, events)
	{
		LogEvent   *ev = lfirst(lc);

		if (ev->up)
			ereport(WARNING,
					errcode(ERRCODE_WARNING),
					errmsg("dbpool_guard: service \"%s\" is at %.0f%% of its budget (%u of %d connections), at or above the warning level of %d%%",
						   ev->name, 100.0 * ev->in_use / ev->budget,
						   ev->in_use, ev->budget, ev->warn_pct));
		else
			ereport(LOG,
					errmsg("dbpool_guard: service \"%s\" is back below its warning level (%u of %d connections)",
						   ev->name, ev->in_use, ev->budget));
	}

	if ((missing > 0 || mismatched > 0) &&
		now - last_mismatch_log >= MISMATCH_LOG_USECS)
	{
		last_mismatch_log = now;
		ereport(WARNING,
				errcode(ERRCODE_INTERNAL_ERROR),
				errmsg("dbpool_guard: holdings disagree with live backends"),
				errdetail("%u admitted sessions were not found among live backends; %u services hold a different number of slots than of recorded sessions.",
						  missing, mismatched),
				errhint("The admission counters are left as they are; please report this."));
	}

	MemoryContextSwitchTo(TopMemoryContext);
}

/*
 * What the burst pool and the waiters' bound add to the budgets' total,
 * as a sentence ("" when nothing): budget_check() counts the same.
 */
static const char *
elastic_sentence(int64 budgets)
{
	int			waiters = dbpg_waiters_bound();

	if (dbpg_burst_pool == 0 && waiters == 0)
		return "";
	return psprintf(" With the burst pool of %d and at most %d waiting logins, the total is %lld.",
					dbpg_burst_pool, waiters,
					(long long) (budgets + dbpg_burst_pool + waiters));
}

/* One line on what is in force, at start and after each reload. */
static void
log_configuration(void)
{
	const DbpgBudgets *cfg = dbpg_budgets;
	const DbpgNameList *ex = dbpg_exempt;
	int			nbudgets = cfg ? cfg->nentries + (cfg->has_default ? 1 : 0) : 0;
	int64		total = 0;
	int64		elastic;
	int			available = MaxConnections - dbpg_reserved_connections();
	const DbpgBindings *bindings = dbpg_bindings;
	int			nbound = bindings ? bindings->nbindings : 0;
	StringInfoData roles;
	StringInfoData missing;
	StringInfoData unbound;
	const char *mode = dbpg_mode == DBPG_MODE_ENFORCE ? "enforce" :
		dbpg_mode == DBPG_MODE_MONITOR ? "monitor" : "off";

	for (int i = 0; cfg && i < cfg->nentries; i++)
		total += cfg->entries[i].budget;
	if (cfg && cfg->has_default)
		total += cfg->deflt.budget;
	/* budget_check() counts the same */
	elastic = dbpg_burst_pool + dbpg_waiters_bound();

	initStringInfo(&roles);
	initStringInfo(&missing);
	initStringInfo(&unbound);
	if (ex == NULL || ex->nnames == 0)
		appendStringInfoString(&roles, "none");
	if ((ex != NULL && ex->nnames > 0) || nbound > 0)
	{
		/* role names are checked against the catalog, which needs a transaction */
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		for (int i = 0; ex != NULL && i < ex->nnames; i++)
		{
			appendStringInfo(&roles, "%s\"%s\"", i ? ", " : "", ex->names[i]);
			if (!OidIsValid(get_role_oid(ex->names[i], true)))
				appendStringInfo(&missing, "%s\"%s\"", missing.len ? ", " : "",
								 ex->names[i]);
		}
		for (int i = 0; i < nbound; i++)
		{
			const DbpgBinding *bnd = &bindings->bindings[i];

			for (int j = bnd->first; j < bnd->first + bnd->count; j++)
			{
				if (!OidIsValid(get_role_oid(DbpgBindingsRoles(bindings)[j], true)))
					appendStringInfo(&unbound, "%s\"%s\" (service \"%s\")",
									 unbound.len ? ", " : "",
									 DbpgBindingsRoles(bindings)[j], bnd->service);
			}
		}
		CommitTransactionCommand();
	}

	ereport(LOG,
			errmsg_plural("dbpool_guard: mode \"%s\", %d budget in force",
						  "dbpool_guard: mode \"%s\", %d budgets in force",
						  nbudgets, mode, nbudgets),
			errdetail("The service key is \"%s\". The budgets total %lld of %d available connections.%s The default threshold is %g, the warning threshold %g. Services bound to roles: %d. Exempt roles: %s.",
					  dbpg_service_key == DBPG_KEY_ROLE ? "role" : "application_name",
					  (long long) total, available,
					  elastic_sentence(total),
					  dbpg_threshold, dbpg_warning_threshold, nbound, roles.data));

	if (missing.len > 0)
		ereport(WARNING,
				errcode(ERRCODE_UNDEFINED_OBJECT),
				errmsg("dbpool_guard: exempt roles that do not exist: %s", missing.data),
				errdetail("They exempt nobody until they are created."));
	if (unbound.len > 0)
		ereport(WARNING,
				errcode(ERRCODE_UNDEFINED_OBJECT),
				errmsg("dbpool_guard: roles in \"dbpool_guard.service_roles\" that do not exist: %s",
					   unbound.data),
				errdetail("They can claim nothing until they are created."));
	if (nbound > 0 && dbpg_service_key == DBPG_KEY_ROLE)
		ereport(LOG,
				errmsg("dbpool_guard: \"dbpool_guard.service_roles\" has no effect while \"dbpool_guard.service_key\" is \"role\""));

	if (nbudgets == 0 && dbpg_configured_budgets_invalid())
		ereport(WARNING,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("dbpool_guard: no budgets are in force"),
				errdetail("The value of \"dbpool_guard.budgets\" in the configuration was rejected: sessions are counted but never refused."),
				errhint("An earlier log line says why. Correct the value and reload the configuration."));
	else if (nbudgets == 0)
		ereport(WARNING,
				errcode(ERRCODE_WARNING),
				errmsg("dbpool_guard: no budgets are in force"),
				errdetail("\"dbpool_guard.budgets\" is empty: sessions are counted but never refused."));
	if (dbpg_mode != DBPG_MODE_ENFORCE)
		ereport(WARNING,
				errcode(ERRCODE_WARNING),
				errmsg("dbpool_guard: budgets are not enforced: \"dbpool_guard.mode\" is \"%s\"", mode),
				errdetail("%s",
						  dbpg_mode == DBPG_MODE_MONITOR ?
						  "Sessions over a cap are admitted, counted and logged, never refused." :
						  "Sessions are neither counted nor refused."));
	if (nbudgets > 0 && total + elastic > available)
		ereport(WARNING,
				errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				errmsg("dbpool_guard: budgets are oversubscribed: total %lld exceeds the %d available connections",
					   (long long) (total + elastic), available),
				errdetail("max_connections is %d, of which %d are reserved.%s",
						  MaxConnections, dbpg_reserved_connections(),
						  elastic_sentence(total)),
				errhint("Lower some budgets, \"dbpool_guard.burst_pool\" or \"dbpool_guard.max_waiters_total\", or raise max_connections, or the services can exhaust the server together."));

	pfree(roles.data);
	pfree(missing.data);
	pfree(unbound.data);
}

void
dbpg_worker_main(Datum main_arg)
{
	uint32		wait_event;
	TimestampTz next;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* shared catalogs only: for role names, and a pg_stat_activity row */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	if (dbpg_shared == NULL)
		proc_exit(0);			/* cannot happen when preloaded; do not restart */

	wait_event = dbpg_wait_event_main();
	pass_cxt = AllocSetContextCreate(TopMemoryContext, "dbpool_guard sample",
									 ALLOCSET_DEFAULT_SIZES);
	pidmap_size = 64;
	while (pidmap_size < 2 * (MaxBackends + NUM_AUXILIARY_PROCS))
		pidmap_size <<= 1;
	pidmap = MemoryContextAllocZero(TopMemoryContext,
									sizeof(PidEntry) * pidmap_size);
	visit_size = dbpg_max_services + 1;
	visit = MemoryContextAlloc(TopMemoryContext,
							   sizeof(DbpgBucket *) * visit_size);

	log_configuration();

	next = GetCurrentTimestamp();
	for (;;)
	{
		TimestampTz now;
		long		timeout;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			log_configuration();
		}

		now = GetCurrentTimestamp();
		if (now >= next)
		{
			take_sample();
			/* keep a fixed schedule; after a stall, start again from now */
			next += (TimestampTz) dbpg_sample_interval * 1000;
			if (next <= now)
				next = now + (TimestampTz) dbpg_sample_interval * 1000;
			now = GetCurrentTimestamp();
		}

		timeout = (long) ((next - now + 999) / 1000);
		if (timeout < 0)
			timeout = 0;
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, wait_event);
		ResetLatch(MyLatch);
	}
}
