/*-------------------------------------------------------------------------
 * views.c
 *		SQL functions behind the dbpool_guard views.
 *
 * The C symbols carry the extension version that introduced their
 * result shape, so that an older SQL script keeps working with a newer
 * library.
 *
 * IDENTIFICATION
 *		src/views.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "compat.h"
#include "dbpool_guard.h"

PG_FUNCTION_INFO_V1(dbpool_guard_status_1_0);
PG_FUNCTION_INFO_V1(dbpool_guard_status_1_2);
PG_FUNCTION_INFO_V1(dbpool_guard_status_1_3);
PG_FUNCTION_INFO_V1(dbpool_guard_status_1_5);
PG_FUNCTION_INFO_V1(dbpool_guard_rejections_1_0);
PG_FUNCTION_INFO_V1(dbpool_guard_rejections_1_3);
PG_FUNCTION_INFO_V1(dbpool_guard_sessions_1_0);
PG_FUNCTION_INFO_V1(dbpool_guard_budget_check_1_0);
PG_FUNCTION_INFO_V1(dbpool_guard_budget_check_1_5);
PG_FUNCTION_INFO_V1(dbpool_guard_pool_1_5);
PG_FUNCTION_INFO_V1(dbpool_guard_reset_counters_1_0);
PG_FUNCTION_INFO_V1(dbpool_guard_enforcement_1_4);

/*
 * dbpool_guard.status grows by appending columns; the function fills as
 * many as the calling SQL definition declares, so every released shape
 * keeps working.  1.0 has 18; later versions append columns in
 * StatusExtra order.
 */
#define STATUS_COLS_1_0		18
#define STATUS_COLS_MAX		(STATUS_COLS_1_0 + STATUS_NEXTRA)
#define REJECTIONS_COLS_1_0	8	/* 1.3 appends reason */
#define REJECTIONS_COLS_MAX	9
#define SESSIONS_COLS		5
#define BUDGET_CHECK_COLS_1_0	5
#define BUDGET_CHECK_COLS	8	/* 1.5 appends burst_pool, waiters_bound, total */
#define POOL_COLS			5
#define ENFORCEMENT_COLS	4

/*
 * Columns appended to dbpool_guard.status by later versions, in order:
 * int8 counters but for the three int4 of 1.5 (STATUS_IS_INT4).
 */
typedef enum StatusExtra
{
	STATUS_TERMINATED,			/* 1.2: terminated_total */
	STATUS_MISATTRIBUTED,		/* 1.3: misattributed_total */
	STATUS_BURST,				/* 1.5: burst (int4) */
	STATUS_BORROWED,			/* 1.5: borrowed (int4) */
	STATUS_WAITING_LOGINS,		/* 1.5: waiting_logins (int4) */
	STATUS_WAITED,				/* 1.5: waited_total */
	STATUS_WAIT_TIMEOUTS,		/* 1.5: wait_timeouts_total */
	STATUS_NEXTRA
} StatusExtra;

#define STATUS_IS_INT4(k) \
	((k) == STATUS_BURST || (k) == STATUS_BORROWED || (k) == STATUS_WAITING_LOGINS)

/* A consistent copy of one bucket's figures. */
typedef struct BucketCopy
{
	char		name[NAMEDATALEN];
	uint32		in_use;
	uint32		borrowed;
	uint32		waiters;
	uint32		peak;
	uint64		admitted;
	uint64		rejected;
	uint64		would_reject;
	uint64		extra[STATUS_NEXTRA];
	TimestampTz last_rejected_at;
	DbpgSample	sample;
} BucketCopy;

static void
copy_bucket(DbpgBucket *b, BucketCopy *c)
{
	uint64		slots = pg_atomic_read_u64(&b->slots);

	strlcpy(c->name, b->name, NAMEDATALEN);
	c->in_use = DBPG_SLOTS_IN_USE(slots);
	c->borrowed = DBPG_SLOTS_BORROWED(slots);
	c->waiters = pg_atomic_read_u32(&b->waiters);
	c->peak = pg_atomic_read_u32(&b->peak);
	c->admitted = pg_atomic_read_u64(&b->admitted);
	c->rejected = pg_atomic_read_u64(&b->rejected);
	c->would_reject = pg_atomic_read_u64(&b->would_reject);
	c->extra[STATUS_TERMINATED] = pg_atomic_read_u64(&b->terminated);
	c->extra[STATUS_MISATTRIBUTED] = pg_atomic_read_u64(&b->misattributed);
	c->extra[STATUS_BORROWED] = c->borrowed;
	c->extra[STATUS_WAITING_LOGINS] = c->waiters;
	c->extra[STATUS_WAITED] = pg_atomic_read_u64(&b->waited);
	c->extra[STATUS_WAIT_TIMEOUTS] = pg_atomic_read_u64(&b->wait_timeouts);
	c->last_rejected_at = (TimestampTz) pg_atomic_read_u64(&b->last_rejected_at);
	SpinLockAcquire(&b->mutex);
	c->sample = b->sample;
	SpinLockRelease(&b->mutex);
}

static void
put_status_row(ReturnSetInfo *rsinfo, int ncols, const char *name,
			   const DbpgBudgetEntry *e, const BucketCopy *c,
			   TimestampTz sampled_at)
{
	Datum		values[STATUS_COLS_MAX];
	bool		nulls[STATUS_COLS_MAX];
	int32		cap = -1;
	uint32		in_use = c ? c->in_use : 0;
	const char *state = "ok";
	int			i = 0;

	memset(nulls, 0, sizeof(nulls));
	if (e != NULL)
	{
		uint32		borrowed = c ? c->borrowed : 0;
		uint32		own = in_use - borrowed;
		bool		may_borrow = borrowed < (uint32) e->burst &&
			pg_atomic_read_u32(&dbpg_shared->pool_lent) < (uint32) dbpg_burst_pool;

		cap = dbpg_entry_cap(e);
		/* would a new login wait or be refused? */
		if ((own >= (uint32) cap && !may_borrow) || (c && c->waiters > 0))
			state = "rejecting";
		else if (borrowed > 0 ||
				 (e->budget > 0 && (double) own / e->budget >= dbpg_warning_threshold))
			state = "warning";
	}

	values[i++] = CStringGetTextDatum(name);
	/* budget, threshold, cap */
	if (e != NULL)
	{
		values[i++] = Int32GetDatum(e->budget);
		values[i++] = Float8GetDatum(dbpg_entry_threshold(e) / (double) DBPG_PPM);
		values[i++] = Int32GetDatum(cap);
	}
	else
	{
		nulls[i++] = true;
		nulls[i++] = true;
		nulls[i++] = true;
	}
	values[i++] = Int32GetDatum((int32) in_use);
	/* active, idle, idle_in_transaction, waiting: NULL before a sample */
	if (sampled_at != 0)
	{
		values[i++] = Int32GetDatum(c ? c->sample.active : 0);
		values[i++] = Int32GetDatum(c ? c->sample.idle : 0);
		values[i++] = Int32GetDatum(c ? c->sample.idle_in_xact : 0);
		values[i++] = Int32GetDatum(c ? c->sample.waiting : 0);
	}
	else
	{
		nulls[i++] = true;
		nulls[i++] = true;
		nulls[i++] = true;
		nulls[i++] = true;
	}
	/* utilization */
	if (e != NULL && e->budget > 0)
		values[i++] = Float8GetDatum((double) in_use / e->budget);
	else
		nulls[i++] = true;
	values[i++] = CStringGetTextDatum(state);
	values[i++] = Int64GetDatum(c ? (int64) c->admitted : 0);
	values[i++] = Int64GetDatum(c ? (int64) c->rejected : 0);
	values[i++] = Int64GetDatum(c ? (int64) c->would_reject : 0);
	values[i++] = Int32GetDatum(c ? (int32) c->peak : 0);
	/* last_rejected_at */
	if (c && c->last_rejected_at != 0)
		values[i++] = TimestampTzGetDatum(c->last_rejected_at);
	else
		nulls[i++] = true;
	/* longest_idle_in_transaction, as of the sample */
	if (sampled_at != 0)
	{
		TimestampTz oldest = c ? c->sample.oldest_iit_start : 0;

		values[i++] = IntervalPGetDatum(dbpg_interval_usecs(oldest != 0 && sampled_at > oldest ?
														 sampled_at - oldest : 0));
		values[i++] = TimestampTzGetDatum(sampled_at);
	}
	else
	{
		nulls[i++] = true;
		nulls[i++] = true;
	}
	Assert(i == STATUS_COLS_1_0);
	for (int k = 0; i < ncols; k++)
	{
		uint64		v = c ? c->extra[k] : 0;

		if (k == STATUS_BURST)
			values[i++] = Int32GetDatum(e != NULL ? e->burst : 0);	/* never NULL */
		else if (STATUS_IS_INT4(k))
			values[i++] = Int32GetDatum((int32) v);
		else
			values[i++] = Int64GetDatum((int64) v);
	}

	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* The copies of the named buckets that status takes. */
typedef struct Copies
{
	BucketCopy *items;			/* room for max_services */
	int			n;
} Copies;

static void
copy_bucket_cb(DbpgBucket *b, void *arg)
{
	Copies	   *copies = arg;

	if (copies->n < dbpg_max_services)
		copy_bucket(b, &copies->items[copies->n++]);
}

static int
bucket_copy_cmp(const void *a, const void *b)
{
	return strcmp(((const BucketCopy *) a)->name, ((const BucketCopy *) b)->name);
}

/* status for a definition with ncols columns */
static void
status_internal(FunctionCallInfo fcinfo, int ncols)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const DbpgBudgets *cfg = dbpg_budgets;
	TimestampTz sampled_at;
	Copies		copies;
	BucketCopy	deflt;

	dbpg_require_shared();
	dbpg_init_srf(fcinfo);
	if (rsinfo->setDesc->natts != ncols)
		elog(ERROR, "dbpool_guard: status function called with %d result columns, expected %d",
			 rsinfo->setDesc->natts, ncols);

	sampled_at = (TimestampTz) pg_atomic_read_u64(&dbpg_shared->sampled_at);

	/* copy the named buckets, emit rows after */
	copies.items = palloc(sizeof(BucketCopy) * dbpg_max_services);
	copies.n = 0;
	dbpg_buckets_foreach(copy_bucket_cb, &copies);
	copy_bucket(&dbpg_shared->deflt, &deflt);

	/*
	 * Both lists sorted by strcmp (the parser sorts the entries), then
	 * merged: linear in services after the sort, however many are listed.
	 */
	qsort(copies.items, copies.n, sizeof(BucketCopy), bucket_copy_cmp);

	/* every listed service, in name order, with or without a bucket yet */
	for (int i = 0, j = 0; cfg != NULL && i < cfg->nentries; i++)
	{
		const DbpgBudgetEntry *e = &cfg->entries[i];
		BucketCopy *c = NULL;

		while (j < copies.n && strcmp(copies.items[j].name, e->name) < 0)
			j++;
		if (j < copies.n && strcmp(copies.items[j].name, e->name) == 0)
			c = &copies.items[j];
		put_status_row(rsinfo, ncols, e->name, e, c, sampled_at);
	}

	/* services no longer listed keep a row while they hold slots */
	for (int j = 0; j < copies.n; j++)
	{
		BucketCopy *c = &copies.items[j];

		if ((c->in_use > 0 || c->waiters > 0) && dbpg_budgets_find(cfg, c->name) == NULL)
			put_status_row(rsinfo, ncols, c->name, NULL, c, sampled_at);
	}

	put_status_row(rsinfo, ncols, "*",
				   (cfg != NULL && cfg->has_default) ? &cfg->deflt : NULL,
				   &deflt, sampled_at);
}

Datum
dbpool_guard_status_1_0(PG_FUNCTION_ARGS)
{
	status_internal(fcinfo, STATUS_COLS_1_0);
	return (Datum) 0;
}

/* 1.2: terminated_total appended */
Datum
dbpool_guard_status_1_2(PG_FUNCTION_ARGS)
{
	status_internal(fcinfo, STATUS_COLS_1_0 + 1);
	return (Datum) 0;
}

/* 1.3: misattributed_total appended after terminated_total (1.2) */
Datum
dbpool_guard_status_1_3(PG_FUNCTION_ARGS)
{
	status_internal(fcinfo, STATUS_COLS_1_0 + 2);
	return (Datum) 0;
}

/* 1.5: burst, borrowed, waiting_logins, waited_total, wait_timeouts_total */
Datum
dbpool_guard_status_1_5(PG_FUNCTION_ARGS)
{
	status_internal(fcinfo, STATUS_COLS_1_0 + 7);
	return (Datum) 0;
}

/* An interval of usecs microseconds, in days and time as age() shows it. */
Interval *
dbpg_interval_usecs(int64 usecs)
{
	Interval   *iv = palloc0(sizeof(Interval));

	iv->day = (int32) (usecs / USECS_PER_DAY);
	iv->time = usecs % USECS_PER_DAY;
	return iv;
}

/*
 * A stored client address as inet, or NULL.  The address was cleaned as
 * pg_stat_activity's is before it was stored; anything that is still not
 * a plain IPv4 or IPv6 address is shown as NULL rather than passed to
 * inet_in(), so that no stored value can ever make the view fail.
 */
Datum
dbpg_client_addr_datum(const char *addr, bool *isnull)
{
	unsigned char buf[sizeof(struct in6_addr)];
	int			family = strchr(addr, ':') != NULL ? AF_INET6 : AF_INET;

	*isnull = true;
	if (addr[0] == '\0' || inet_pton(family, addr, buf) != 1)
		return (Datum) 0;
	*isnull = false;
	return DirectFunctionCall1(inet_in, CStringGetDatum(addr));
}

/* dbpool_guard.rejections.reason */
static const char *
reason_name(const DbpgRejection *r)
{
	switch ((DbpgReason) r->reason)
	{
		case DBPG_REASON_WAIT_TIMEOUT:
			return "wait_timeout";
		case DBPG_REASON_QUEUE_FULL:
			return "queue_full";
		case DBPG_REASON_WAIT_CANCELLED:
			return "wait_cancelled";
		case DBPG_REASON_OVER_CAP:
			break;
	}
	return r->misattributed ? "misattributed_over_cap" : "over_cap";
}

static void
rejections_internal(FunctionCallInfo fcinfo, int ncols)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	DbpgRejection *ring;
	int			count;

	dbpg_require_shared();
	dbpg_init_srf(fcinfo);
	if (rsinfo->setDesc->natts != ncols)
		elog(ERROR, "dbpool_guard: rejections function called with %d result columns, expected %d",
			 rsinfo->setDesc->natts, ncols);

	ring = palloc(sizeof(DbpgRejection) * DBPG_RING_SIZE);
	count = dbpg_ring_copy(ring);	/* newest first */

	for (int k = 0; k < count; k++)
	{
		DbpgRejection *r = &ring[k];
		Datum		values[REJECTIONS_COLS_MAX];
		bool		nulls[REJECTIONS_COLS_MAX];

		memset(nulls, 0, sizeof(nulls));
		values[0] = TimestampTzGetDatum(r->at);
		values[1] = CStringGetTextDatum(r->service);
		values[2] = CStringGetTextDatum(NameStr(r->user_name));
		values[3] = CStringGetTextDatum(NameStr(r->database_name));
		values[4] = dbpg_client_addr_datum(r->client_addr, &nulls[4]);
		values[5] = Int32GetDatum(r->connections);
		values[6] = Int32GetDatum(r->budget);
		values[7] = BoolGetDatum(r->enforced);
		if (ncols > REJECTIONS_COLS_1_0)
			values[8] = CStringGetTextDatum(reason_name(r));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

Datum
dbpool_guard_rejections_1_0(PG_FUNCTION_ARGS)
{
	rejections_internal(fcinfo, REJECTIONS_COLS_1_0);
	return (Datum) 0;
}

Datum
dbpool_guard_rejections_1_3(PG_FUNCTION_ARGS)
{
	rejections_internal(fcinfo, REJECTIONS_COLS_1_0 + 1);
	return (Datum) 0;
}

Datum
dbpool_guard_sessions_1_0(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	dbpg_require_shared();
	dbpg_init_srf(fcinfo);

	for (int i = 0; i < dbpg_nholdings; i++)
	{
		DbpgHolding *h = &dbpg_holdings[i];
		Datum		values[SESSIONS_COLS];
		bool		nulls[SESSIONS_COLS];
		int			pid;
		char		service[NAMEDATALEN];
		NameData	user;
		TimestampTz admitted_at;
		uint8		state;
		const char *sname;

		/* the bucket name is read under the holding's lock: it cannot go away */
		SpinLockAcquire(&h->mutex);
		pid = h->pid;
		if (pid != 0 && h->bucket != NULL)
			memcpy(service, h->bucket->name, NAMEDATALEN);
		user = h->user_name;
		admitted_at = h->admitted_at;
		state = h->state;
		SpinLockRelease(&h->mutex);
		if (pid == 0)
			continue;

		memset(nulls, 0, sizeof(nulls));
		values[0] = Int32GetDatum(pid);
		values[1] = CStringGetTextDatum(service);
		values[2] = CStringGetTextDatum(NameStr(user));
		values[3] = TimestampTzGetDatum(admitted_at);
		sname = dbpg_state_name((DbpgState) state);
		if (sname != NULL)
			values[4] = CStringGetTextDatum(sname);
		else
			nulls[4] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * budget_check(): the budgets against the connections the server has for
 * them.  1.5 counts the burst pool, and the waiters' bound when logins may
 * wait (a waiting login holds a connection slot): oversubscribed when
 * budgets + pool + waiters exceed what is available.
 */
static Datum
budget_check_internal(FunctionCallInfo fcinfo, int ncols)
{
	const DbpgBudgets *cfg = dbpg_budgets;
	TupleDesc	tupdesc;
	Datum		values[BUDGET_CHECK_COLS];
	bool		nulls[BUDGET_CHECK_COLS];
	int64		budgets = 0;
	int64		waiters = dbpg_waiters_bound();
	int64		total;
	int			reserved = dbpg_reserved_connections();
	int			available = MaxConnections - reserved;

	dbpg_require_shared();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts != ncols)
		elog(ERROR, "dbpool_guard: budget_check function called with %d result columns, expected %d",
			 tupdesc->natts, ncols);

	for (int i = 0; cfg != NULL && i < cfg->nentries; i++)
		budgets += cfg->entries[i].budget;
	if (cfg != NULL && cfg->has_default)
		budgets += cfg->deflt.budget;
	total = budgets;
	if (ncols > BUDGET_CHECK_COLS_1_0)
		total += dbpg_burst_pool + waiters;

	memset(nulls, 0, sizeof(nulls));
	values[0] = Int32GetDatum((int32) Min(budgets, PG_INT32_MAX));
	values[1] = Int32GetDatum(MaxConnections);
	values[2] = Int32GetDatum(reserved);
	values[3] = Int32GetDatum(available);
	values[4] = BoolGetDatum(total > available);
	if (ncols > BUDGET_CHECK_COLS_1_0)
	{
		values[5] = Int32GetDatum(dbpg_burst_pool);
		values[6] = Int32GetDatum((int32) waiters);
		values[7] = Int32GetDatum((int32) Min(total, PG_INT32_MAX));
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}

Datum
dbpool_guard_budget_check_1_0(PG_FUNCTION_ARGS)
{
	return budget_check_internal(fcinfo, BUDGET_CHECK_COLS_1_0);
}

Datum
dbpool_guard_budget_check_1_5(PG_FUNCTION_ARGS)
{
	return budget_check_internal(fcinfo, BUDGET_CHECK_COLS);
}

/*
 * dbpool_guard.pool: the burst pool's size (this backend's setting), the
 * slots lent now, and the logins waiting now, server-wide.
 */
Datum
dbpool_guard_pool_1_5(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[POOL_COLS];
	bool		nulls[POOL_COLS];
	uint32		lent;

	dbpg_require_shared();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	lent = pg_atomic_read_u32(&dbpg_shared->pool_lent);

	memset(nulls, 0, sizeof(nulls));
	values[0] = Int32GetDatum(dbpg_burst_pool);
	values[1] = Int32GetDatum((int32) lent);
	values[2] = Int32GetDatum(lent < (uint32) dbpg_burst_pool ?
							  dbpg_burst_pool - (int32) lent : 0);
	values[3] = Int32GetDatum((int32) pg_atomic_read_u32(&dbpg_shared->waiters));
	values[4] = Int32GetDatum(dbpg_max_waiters_total);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}

static void
reset_bucket(DbpgBucket *b, void *arg)
{
	pg_atomic_write_u64(&b->admitted, 0);
	pg_atomic_write_u64(&b->rejected, 0);
	pg_atomic_write_u64(&b->would_reject, 0);
	pg_atomic_write_u64(&b->terminated, 0);
	pg_atomic_write_u64(&b->misattributed, 0);
	pg_atomic_write_u64(&b->last_rejected_at, 0);
	pg_atomic_write_u64(&b->waited, 0);
	pg_atomic_write_u64(&b->wait_timeouts, 0);
	/* a peak restarts from what is held now */
	pg_atomic_write_u32(&b->peak, dbpg_bucket_in_use(b));
}

Datum
dbpool_guard_reset_counters_1_0(PG_FUNCTION_ARGS)
{
	dbpg_require_shared();

	reset_bucket(&dbpg_shared->deflt, NULL);
	dbpg_buckets_foreach(reset_bucket, NULL);
	pg_atomic_write_u64(&dbpg_shared->overflow, 0);
	dbpg_ring_reset();

	PG_RETURN_VOID();
}

/*
 * dbpool_guard.enforcement(): are budgets enforced in this backend, and
 * if not, why; and how many logins of listed services were admitted
 * without a budget because the service table was full (since the last
 * reset_counters()).  The mode is checked first: with budgets fixed, a mode
 * other than enforce still refuses nobody.  "budgets_rejected" is read
 * from the configuration files now, "table_full" from the table now (a
 * listed service with no entry in a full table is not guarded).  Every
 * process holds its own copy of the settings; a backend sees a reload
 * when it processes it, as for any setting.
 */
Datum
dbpool_guard_enforcement_1_4(PG_FUNCTION_ARGS)
{
	const DbpgBudgets *cfg = dbpg_budgets;
	TupleDesc	tupdesc;
	Datum		values[ENFORCEMENT_COLS];
	bool		nulls[ENFORCEMENT_COLS];
	bool		have_budgets = cfg != NULL && (cfg->nentries > 0 || cfg->has_default);
	int			unguarded;
	const char *reason;
	const char *detail;

	dbpg_require_shared();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	if (dbpg_mode == DBPG_MODE_MONITOR)
	{
		reason = "mode_monitor";
		detail = "\"dbpool_guard.mode\" is \"monitor\": sessions over a cap are admitted, counted and logged, never refused.";
	}
	else if (dbpg_mode == DBPG_MODE_OFF)
	{
		reason = "mode_off";
		detail = "\"dbpool_guard.mode\" is \"off\": sessions are neither counted nor refused.";
	}
	else if (!have_budgets && dbpg_configured_budgets_invalid())
	{
		reason = "budgets_rejected";
		detail = "The configuration files set \"dbpool_guard.budgets\" to a value that is rejected, and no budgets are in force; the server log of the last start or reload says why.";
	}
	else if (!have_budgets)
	{
		reason = "no_budgets";
		detail = "\"dbpool_guard.budgets\" is empty: sessions are counted but never refused.";
	}
	else if ((unguarded = dbpg_unguarded_services(cfg)) > 0)
	{
		reason = "table_full";
		detail = psprintf("%d listed services have no entry in the full service table (\"dbpool_guard.max_services\" is %d): their logins are admitted without a budget until a restart.",
						  unguarded, dbpg_max_services);
	}
	else
	{
		reason = "enforced";
		detail = "Budgets are enforced at login.";
	}

	memset(nulls, 0, sizeof(nulls));
	values[0] = BoolGetDatum(strcmp(reason, "enforced") == 0);
	values[1] = CStringGetTextDatum(reason);
	values[2] = CStringGetTextDatum(detail);
	/* logins of listed services admitted without a budget: table full */
	values[3] = Int64GetDatum((int64) pg_atomic_read_u64(&dbpg_shared->overflow));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}
