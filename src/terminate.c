/*-------------------------------------------------------------------------
 * terminate.c
 *		dbpool_guard.terminate_sessions(): free a service's leaked sessions,
 *		with a dry run.
 *
 * The sessions of a service are its holdings (the backends admitted into
 * its bucket), joined by pid to a fresh snapshot of the backend status
 * array for their state and how long they have been in it.  Only idle
 * states can be selected: this function never ends running work.
 *
 * A caller sees exactly the sessions pg_terminate_backend() would let it
 * terminate, with the columns pg_stat_activity would show it.  A real run
 * needs EXECUTE on pg_terminate_backend() as well, so that a DBA who
 * revoked it has not left a second way in.  It acts only on what it
 * checked: a second snapshot, taken just before the signals, must show
 * each session with the same backend start time, in the same state since
 * the same moment; then, for each session in turn, the caller's right to
 * signal its role is checked again, and under ProcArrayLock (so that the
 * backend cannot leave the proc array and its pid cannot be reused) the
 * pid must still be that backend's, still holding a slot of the same
 * service, before SIGTERM is sent as pg_terminate_backend() sends it.  A
 * session that fails a check is reported with terminated = false and the
 * call goes on: nothing already ended, logged and counted is rolled back
 * by an error.  The slot is released by the backend's normal exit path.
 *
 * What cannot be closed: a session that leaves its idle state between
 * the second snapshot and its signal (microseconds) is still ended, as
 * with pg_terminate_backend() on a pid read from pg_stat_activity.
 *
 * IDENTIFICATION
 *		src/terminate.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>
#include <sys/socket.h>

#include "catalog/pg_authid.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "common/ip.h"
#include "fmgr.h"
#include "funcapi.h"
#include "libpq/pqcomm.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/spin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/fmgroids.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "compat.h"
#include "dbpool_guard.h"

PG_FUNCTION_INFO_V1(dbpool_guard_terminate_sessions_1_2);

#define TERMINATE_COLS		7

/* The states that may be selected, as a bit mask. */
#define SEL_IDLE			0x01
#define SEL_IDLE_IN_XACT	0x02
#define SEL_IDLE_IN_XACT_ABORTED 0x04

/* One admitted session of the service, and what is known of it. */
typedef struct Candidate
{
	int			pid;
	int			holding;		/* index in dbpg_holdings */
	TimestampTz proc_start;		/* the backend's start, from its holding */
	NameData	user_name;		/* as admitted */
	bool		keep;			/* still selected */
	BackendState state;
	TimestampTz state_start;
	Oid			dbid;
	Oid			userid;			/* st_userid, for what the caller may see */
	SockAddr	clientaddr;
	int64		idle_usecs;
	bool		visible;		/* the caller may see its state */
	bool		unchanged;		/* as selected in the second snapshot */
	bool		terminated;
} Candidate;

static int
candidate_cmp(const void *a, const void *b)
{
	int			pa = ((const Candidate *) a)->pid;
	int			pb = ((const Candidate *) b)->pid;

	return (pa > pb) - (pa < pb);
}

static Candidate *
candidate_find(Candidate *c, int n, int pid)
{
	Candidate	key;

	key.pid = pid;
	return bsearch(&key, c, n, sizeof(Candidate), candidate_cmp);
}

/* The name pg_stat_activity shows for a selectable state, else NULL. */
static const char *
selectable_state_name(BackendState st)
{
	switch (st)
	{
		case STATE_IDLE:
			return "idle";
		case STATE_IDLEINTRANSACTION:
			return "idle in transaction";
		case STATE_IDLEINTRANSACTION_ABORTED:
			return "idle in transaction (aborted)";
		default:
			/* running, fastpath, disabled, undefined; starting on 18 */
			return NULL;
	}
}

static int
state_bit(BackendState st)
{
	switch (st)
	{
		case STATE_IDLE:
			return SEL_IDLE;
		case STATE_IDLEINTRANSACTION:
			return SEL_IDLE_IN_XACT;
		case STATE_IDLEINTRANSACTION_ABORTED:
			return SEL_IDLE_IN_XACT_ABORTED;
		default:
			return 0;
	}
}

/* The states argument as a mask; an error for any state that cannot be selected. */
static int
parse_states(ArrayType *arr)
{
	Datum	   *elems;
	bool	   *elnulls;
	int			nelems;
	int			mask = 0;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &elnulls, &nelems);
	if (nelems == 0)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("\"states\" must name at least one state"),
				errhint("Selectable states are \"idle\", \"idle in transaction\" and \"idle in transaction (aborted)\"."));

	for (int i = 0; i < nelems; i++)
	{
		char	   *s;

		if (elnulls[i])
			ereport(ERROR,
					errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					errmsg("\"states\" must not contain null"));
		s = TextDatumGetCString(elems[i]);
		if (strcmp(s, "idle") == 0)
			mask |= SEL_IDLE;
		else if (strcmp(s, "idle in transaction") == 0)
			mask |= SEL_IDLE_IN_XACT;
		else if (strcmp(s, "idle in transaction (aborted)") == 0)
			mask |= SEL_IDLE_IN_XACT_ABORTED;
		else if (strcmp(s, "active") == 0 ||
				 strcmp(s, "waiting") == 0 ||
				 strcmp(s, "fastpath function call") == 0 ||
				 strcmp(s, "starting") == 0 ||
				 strcmp(s, "disabled") == 0)
			ereport(ERROR,
					errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					errmsg("sessions in state \"%s\" cannot be terminated", s),
					errdetail("Only idle sessions are ended, never running work: \"idle\", \"idle in transaction\" and \"idle in transaction (aborted)\"."),
					errhint("To stop a running query, use pg_cancel_backend() or pg_terminate_backend() on its pid."));
		else
			ereport(ERROR,
					errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					errmsg("unknown session state \"%s\"", s),
					errdetail("Selectable states are \"idle\", \"idle in transaction\" and \"idle in transaction (aborted)\", spelled as pg_stat_activity shows them."));
	}
	return mask;
}

/*
 * Who may terminate a session of this role: the rule of
 * pg_terminate_backend() (signalfuncs.c) for client backends.  A session
 * with no role, or a superuser's, only a superuser; otherwise a role with
 * the privileges of the session's role or of pg_signal_backend.  (18's
 * exception for autovacuum workers does not apply: they are never
 * admitted.)
 */
static bool
may_terminate(Oid roleid)
{
	Oid			me = GetUserId();

	if (!OidIsValid(roleid) || superuser_arg(roleid))
		return superuser();
	return has_privs_of_role(me, roleid) ||
		has_privs_of_role(me, ROLE_PG_SIGNAL_BACKEND);
}

/* What pg_stat_activity shows: state, state_change, client_addr. */
static bool
may_see(Oid userid)
{
	Oid			me = GetUserId();

	return has_privs_of_role(me, ROLE_PG_READ_ALL_STATS) ||
		has_privs_of_role(me, userid);
}

/*
 * Copy the holdings of the service's bucket into out[], and set *bucket
 * to it (NULL for a listed service that has no bucket yet: no login, no
 * sessions).  An unknown service (not listed, not "*", holding no slot)
 * is an error naming it.  Buckets are never removed, so *bucket stays
 * valid after the lock is released.
 */
static int
collect_holdings(const char *service, Candidate *out, DbpgBucket **bucket)
{
	DbpgBucket *target;
	int			n = 0;

	if (strcmp(service, "*") == 0)
		target = &dbpg_shared->deflt;
	else
	{
		bool		known;

		target = dbpg_bucket_find(service);
		known = dbpg_budgets_find(dbpg_budgets, service) != NULL ||
			(target != NULL && dbpg_bucket_in_use(target) > 0);
		if (!known)
			ereport(ERROR,
					errcode(ERRCODE_UNDEFINED_OBJECT),
					errmsg("unknown service \"%s\"", service),
					errdetail("Service \"%s\" is not listed in \"dbpool_guard.budgets\" and holds no connections.",
							  service),
					errhint("Name a service as dbpool_guard.status shows it; unlisted services are counted in the shared budget \"*\"."));
	}

	/* a listed service with no bucket yet has had no login: no sessions */
	for (int i = 0; target != NULL && i < dbpg_nholdings; i++)
	{
		DbpgHolding *h = &dbpg_holdings[i];
		int			pid;
		NameData	user;
		TimestampTz proc_start;

		SpinLockAcquire(&h->mutex);
		pid = h->bucket == target ? h->pid : 0;
		proc_start = h->proc_start;
		user = h->user_name;
		SpinLockRelease(&h->mutex);
		if (pid == 0 || pid == MyProcPid)
			continue;

		memset(&out[n], 0, sizeof(Candidate));
		out[n].pid = pid;
		out[n].holding = i;
		out[n].proc_start = proc_start;
		out[n].user_name = user;
		n++;
	}
	*bucket = target;
	return n;
}

/* A fresh copy of the backend status array, whatever the transaction has read. */
static int
fresh_status_snapshot(void)
{
	pgstat_clear_backend_activity_snapshot();
	return pgstat_fetch_stat_numbackends();
}

/*
 * Send SIGTERM to a candidate if, at this moment, it is still the backend
 * that was selected and the caller may still end it.  The role is checked
 * first (catalog lookups, no lock held); then, under ProcArrayLock, the
 * pid must belong to a backend in the proc array whose holding still
 * names the same backend start and bucket.  A backend leaves the proc
 * array only with ProcArrayLock held exclusively, after its holding was
 * cleared: while we hold the lock shared, the pid cannot be reused.
 */
static bool
signal_if_unchanged(Candidate *c, DbpgBucket *target)
{
	PGPROC	   *proc;
	Oid			roleid;
	DbpgHolding *h = &dbpg_holdings[c->holding];
	bool		same;
	bool		sent = false;

	proc = BackendPidGetProc(c->pid);
	if (proc == NULL)
		return false;			/* it ended */
	roleid = proc->roleId;
	if (!may_terminate(roleid))
		return false;			/* e.g. its role became a superuser */

	LWLockAcquire(ProcArrayLock, LW_SHARED);
	proc = BackendPidGetProcWithLock(c->pid);
	if (proc != NULL && proc->roleId == roleid)
	{
		SpinLockAcquire(&h->mutex);
		same = h->pid == c->pid && h->proc == proc &&
			h->proc_start == c->proc_start && h->bucket == target;
		SpinLockRelease(&h->mutex);
		/* as pg_signal_backend(): the backend's whole process group */
#ifdef HAVE_SETSID
		if (same && kill(-c->pid, SIGTERM) == 0)
#else
		if (same && kill(c->pid, SIGTERM) == 0)
#endif
			sent = true;
	}
	LWLockRelease(ProcArrayLock);
	return sent;
}

static Interval *
usecs_interval(int64 usecs)
{
	Interval   *iv = palloc0(sizeof(Interval));

	/* the shape of now() - state_change */
	iv->day = (int32) (usecs / USECS_PER_DAY);
	iv->time = usecs % USECS_PER_DAY;
	return iv;
}

static Datum
client_addr_datum(const SockAddr *a, bool *isnull)
{
	char		host[NI_MAXHOST];

	*isnull = true;
	if (a->addr.ss_family != AF_INET && a->addr.ss_family != AF_INET6)
		return (Datum) 0;		/* unix socket, or not known */
	host[0] = '\0';
	if (pg_getnameinfo_all(&a->addr, a->salen, host, sizeof(host), NULL, 0,
						   NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		return (Datum) 0;
	clean_ipv6_addr(a->addr.ss_family, host);
	*isnull = false;
	return DirectFunctionCall1(inet_in, CStringGetDatum(host));
}

Datum
dbpool_guard_terminate_sessions_1_2(PG_FUNCTION_ARGS)
{
	static const char *const argnames[] = {"service", "min_idle", "states", "dry_run"};
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *service;
	Interval   *min_idle;
	Interval   *zero;
	int			mask;
	bool		dry_run;
	Candidate  *cands;
	int			ncands;
	int			nback;
	TimestampTz now;
	const char *caller = NULL;
	DbpgBucket *target;

	dbpg_require_shared();
	for (int i = 0; i < 4; i++)
	{
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					errmsg("argument \"%s\" must not be null",
						   argnames[i]));
	}
	service = text_to_cstring(PG_GETARG_TEXT_PP(0));
	min_idle = PG_GETARG_INTERVAL_P(1);
	mask = parse_states(PG_GETARG_ARRAYTYPE_P(2));
	dry_run = PG_GETARG_BOOL(3);

	zero = palloc0(sizeof(Interval));
	if (DatumGetBool(DirectFunctionCall2(interval_lt, IntervalPGetDatum(min_idle),
										 IntervalPGetDatum(zero))))
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("\"min_idle\" must not be negative"));

	dbpg_init_srf(fcinfo);
	if (rsinfo->setDesc->natts != TERMINATE_COLS)
		elog(ERROR, "dbpool_guard: terminate_sessions called with %d result columns, expected %d",
			 rsinfo->setDesc->natts, TERMINATE_COLS);

	/* a real run also needs what pg_terminate_backend() needs */
	if (!dry_run)
	{
		AclResult	aclresult = dbpg_function_aclcheck(F_PG_TERMINATE_BACKEND,
													   GetUserId());

		if (aclresult != ACLCHECK_OK)
			aclcheck_error(aclresult, OBJECT_FUNCTION, "pg_terminate_backend");
	}

	cands = palloc(sizeof(Candidate) * Max(dbpg_nholdings, 1));
	ncands = collect_holdings(service, cands, &target);
	qsort(cands, ncands, sizeof(Candidate), candidate_cmp);

	/* state and idle time from a fresh snapshot, never from a stale one */
	nback = fresh_status_snapshot();
	now = GetCurrentTimestamp();
	for (int i = 1; i <= nback; i++)
	{
		LocalPgBackendStatus *l = dbpg_local_beentry(i);
		PgBackendStatus *be;
		Candidate  *c;

		if (l == NULL)
			continue;
		be = &l->backendStatus;
		c = candidate_find(cands, ncands, be->st_procpid);
		if (c == NULL || !(state_bit(be->st_state) & mask) ||
			be->st_state_start_timestamp == 0 ||
			be->st_proc_start_timestamp != c->proc_start)
			continue;
		c->state = be->st_state;
		c->state_start = be->st_state_start_timestamp;
		c->dbid = be->st_databaseid;
		c->userid = be->st_userid;
		c->clientaddr = be->st_clientaddr;
		c->idle_usecs = Max(now - c->state_start, 0);
		c->keep = DatumGetBool(DirectFunctionCall2(interval_ge,
												   IntervalPGetDatum(usecs_interval(c->idle_usecs)),
												   IntervalPGetDatum(min_idle)));
	}

	/* sessions the caller may not terminate are not listed at all */
	for (int i = 0; i < ncands; i++)
	{
		Candidate  *c = &cands[i];
		PGPROC	   *proc;

		if (!c->keep)
			continue;
		proc = BackendPidGetProc(c->pid);
		if (proc == NULL || !may_terminate(proc->roleId))
		{
			c->keep = false;
			continue;
		}
		c->visible = may_see(c->userid);
	}

	if (!dry_run)
	{
		/* looked up before any signal: nothing after one may fail for it */
		caller = GetUserNameFromId(GetUserId(), true);
		if (caller == NULL)
			caller = "?";

		/* a session that changed state since the first look is left alone */
		nback = fresh_status_snapshot();
		for (int i = 1; i <= nback; i++)
		{
			LocalPgBackendStatus *l = dbpg_local_beentry(i);
			Candidate  *c;

			if (l == NULL)
				continue;
			c = candidate_find(cands, ncands, l->backendStatus.st_procpid);
			if (c != NULL && c->keep &&
				l->backendStatus.st_proc_start_timestamp == c->proc_start &&
				l->backendStatus.st_state == c->state &&
				l->backendStatus.st_state_start_timestamp == c->state_start)
				c->unchanged = true;
		}
		for (int i = 0; i < ncands; i++)
		{
			Candidate  *c = &cands[i];

			if (!c->keep || !c->unchanged)
			{
				c->keep = false;
				continue;
			}
			/* checked again just before the signal; reported either way */
			c->terminated = signal_if_unchanged(c, target);
			if (c->terminated)
			{
				char	   *dbname = get_database_name(c->dbid);

				pg_atomic_fetch_add_u64(&target->terminated, 1);
				ereport(LOG,
						errmsg("dbpool_guard: terminated session %d of service \"%s\": role \"%s\", state \"%s\" for %s",
							   c->pid, service, NameStr(c->user_name),
							   selectable_state_name(c->state),
							   DatumGetCString(DirectFunctionCall1(interval_out,
																   IntervalPGetDatum(usecs_interval(c->idle_usecs))))),
						errdetail("The session was connected to database \"%s\"; role \"%s\" ended it with dbpool_guard.terminate_sessions().",
								  dbname ? dbname : "?", caller));
			}
		}
	}

	for (int i = 0; i < ncands; i++)
	{
		Candidate  *c = &cands[i];
		Datum		values[TERMINATE_COLS];
		bool		nulls[TERMINATE_COLS];
		char	   *dbname;

		if (!c->keep)
			continue;
		memset(nulls, 0, sizeof(nulls));
		values[0] = Int32GetDatum(c->pid);
		values[1] = CStringGetTextDatum(NameStr(c->user_name));
		dbname = get_database_name(c->dbid);
		if (dbname != NULL)
			values[2] = CStringGetTextDatum(dbname);
		else
			nulls[2] = true;
		if (c->visible)
		{
			values[3] = client_addr_datum(&c->clientaddr, &nulls[3]);
			values[4] = CStringGetTextDatum(selectable_state_name(c->state));
			values[5] = IntervalPGetDatum(usecs_interval(c->idle_usecs));
		}
		else
		{
			nulls[3] = true;
			nulls[4] = true;
			nulls[5] = true;
		}
		values[6] = BoolGetDatum(c->terminated);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
