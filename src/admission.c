/*-------------------------------------------------------------------------
 * admission.c
 *		Login-time admission: one lookup, one atomic step, no scans.
 *
 * The ClientAuthentication_hook runs after authentication, inside the
 * startup transaction, before PostgreSQL's own checks of role and
 * database connection limits.  For a session that counts, it goes
 * through named steps (dbpg_client_auth): which service the session
 * belongs to, which bucket counts it, take a slot, record the holding.
 * A slot, own or borrowed from the burst pool, is taken with atomics
 * (slots.c), so that no limit is exceeded however many logins race.  A
 * login that finds none waits for one, when dbpool_guard.max_wait allows
 * (waiting.c), or is refused with FATAL 53300.  Without waiters, the
 * path is one hash probe and a compare-and-exchange or two; a login goes
 * through the waiters' queue only when its service has waiters, or, to
 * borrow, when any waiter may borrow.  The slot (or a place in the
 * queue) is given back by a before_shmem_exit callback, whatever way the
 * backend ends.
 *
 * Server log lines about logins go through one rate limiter
 * (log_limit_pass()): refusals, would-be refusals and refused claims at
 * most once a second per service, each line saying how many were left
 * out since the last; the "table full" WARNING at most once a minute.
 * A refusal always reaches its client: for one whose log line is left
 * out, the emit_log_hook (dbpg_emit_log) keeps the FATAL from the server
 * log only.  The same hook silences the messages
 * of a configuration file read for dbpg_configured_budgets_invalid().
 *
 * IDENTIFICATION
 *		src/admission.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "common/ip.h"
#include "libpq/auth.h"
#include "libpq/libpq-be.h"
#include "miscadmin.h"
#include "replication/walsender.h"
#include "storage/ipc.h"
#include "storage/spin.h"
#include "utils/timeout.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "dbpool_guard.h"

/* What the steps of one login find out. */
typedef struct Login
{
	Oid			roleid;
	char		service[NAMEDATALEN];	/* as the session names it */
	const DbpgBudgetEntry *entry;	/* the governing entry; NULL: no limit */
	bool		misattributed;	/* claimed a service it is not bound to */
	DbpgBucket *bucket;
	int32		cap;			/* -1: counted, never limited */
	uint64		seen;			/* the bucket's slot word before this login */
	bool		over_cap;		/* monitor mode: admitted without a slot it
								 * may take */
	DbpgReason	reason;			/* why refused */
	DbpgJoin	full;			/* for DBPG_REASON_QUEUE_FULL: which bound */
	long		waited_ms;		/* time spent waiting, if it waited */
} Login;

/* A margin left before the authentication timer fires (milliseconds). */
#define AUTH_TIMEOUT_MARGIN_MS	500

static ClientAuthentication_hook_type prev_client_auth_hook = NULL;
static emit_log_hook_type prev_emit_log_hook = NULL;

/* The slot this backend holds, if any; cleared exactly once on exit. */
static DbpgBucket *held_bucket = NULL;
static DbpgHolding *held_holding = NULL;
static bool release_registered = false;

/* Set just before a refusal whose server log line is to be suppressed. */
static bool suppress_refusal_log = false;

/* While set, messages below WARNING go nowhere (dbpool_guard.c). */
bool		dbpg_quiet_messages = false;

/*
 * The exit callback: leave the waiters' queue, then give back the slot
 * this backend holds, or one that was handed to it while it waited and
 * not yet taken up, and hand over what came free to the next waiter.
 */
static void
release_slot(int code, Datum arg)
{
	DbpgBucket *b = held_bucket;
	DbpgHolding *h = held_holding;
	DbpgBucket *granted = dbpg_queue_forget();

	if (granted != NULL)
		dbpg_queue_release(granted);
	if (b == NULL)
		return;
	held_bucket = NULL;
	held_holding = NULL;

	/* forget the holding first, so that no slot is seen without its holding */
	if (h != NULL)
	{
		SpinLockAcquire(&h->mutex);
		h->pid = 0;
		h->bucket = NULL;
		h->proc = NULL;
		h->proc_start = 0;
		h->state = DBPG_STATE_UNKNOWN;
		SpinLockRelease(&h->mutex);
	}
	dbpg_queue_release(b);
}

static void
note_peak(DbpgBucket *b, uint32 now_in_use)
{
	uint32		peak = pg_atomic_read_u32(&b->peak);

	while (now_in_use > peak)
	{
		if (pg_atomic_compare_exchange_u32(&b->peak, &peak, now_in_use))
			break;
	}
}

/*
 * The one rate limiter: may a line be logged now, at most one per period
 * of period_secs?  True for exactly one caller per period, which gets in
 * *suppressed how many lines were left out since the last one; the
 * others count themselves.  The period only moves forward, so a backend
 * whose clock reading is older (it waited, or was descheduled) cannot
 * open a period again; only a clock stepped back by more than a minute
 * moves it back.
 */
static bool
log_limit_pass(DbpgLogLimit *l, int period_secs, uint32 *suppressed)
{
	uint64		second = (uint64) (GetCurrentTimestamp() / USECS_PER_SEC);
	uint64		last = pg_atomic_read_u64(&l->second);

	while (second >= last + period_secs || second + 60 < last)
	{
		if (pg_atomic_compare_exchange_u64(&l->second, &last, second))
		{
			*suppressed = pg_atomic_exchange_u32(&l->suppressed, 0);
			return true;
		}
		/* a failed exchange refreshed last */
	}
	pg_atomic_fetch_add_u32(&l->suppressed, 1);
	return false;
}

/*
 * The sentence a logged line adds about the lines left out since the last
 * one logged (with a one-second period, in the last second unless the
 * service was quiet).
 */
static const char *
not_logged(uint32 suppressed, const char *what)
{
	if (suppressed == 0)
		return "";
	return psprintf(" %u similar %s were not logged in the last second.",
					suppressed, what);
}

/*
 * The client's address as pg_stat_activity shows it: numeric, without an
 * IPv6 zone ("fe80::1%eth0" becomes "fe80::1"), so that it is valid
 * input for inet; "" for a Unix socket.
 */
static void
client_addr_text(Port *port, char *buf, size_t buflen)
{
	buf[0] = '\0';
	if (port->raddr.addr.ss_family == AF_INET ||
		port->raddr.addr.ss_family == AF_INET6)
	{
		if (pg_getnameinfo_all(&port->raddr.addr, port->raddr.salen,
							   buf, buflen, NULL, 0,
							   NI_NUMERICHOST | NI_NUMERICSERV) != 0)
			buf[0] = '\0';
		else
			clean_ipv6_addr(port->raddr.addr.ss_family, buf);
	}
}

/* Where a log line says the client came from. */
static const char *
client_origin(const char *addr)
{
	return addr[0] ? addr : "local socket";
}

/* Count a refusal (or would-be refusal) and add it to the ring. */
static void
record_rejection(Port *port, const char *addr, const Login *l, bool enforced)
{
	DbpgRejection r;

	memset(&r, 0, sizeof(r));
	strlcpy(r.service, l->bucket->name, NAMEDATALEN);
	namestrcpy(&r.user_name, port->user_name ? port->user_name : "");
	namestrcpy(&r.database_name, port->database_name ? port->database_name : "");
	strlcpy(r.client_addr, addr, sizeof(r.client_addr));
	r.connections = (int32) DBPG_SLOTS_IN_USE(l->seen);
	r.budget = l->entry->budget;
	r.enforced = enforced;
	r.misattributed = l->misattributed;
	r.reason = (uint8) (enforced ? l->reason : DBPG_REASON_OVER_CAP);
	pg_atomic_fetch_add_u64(enforced ? &l->bucket->rejected : &l->bucket->would_reject, 1);
	dbpg_ring_record(&r, l->bucket);
}

/*
 * Hide suppressed refusals from the server log (the client still gets
 * them), and the messages of a configuration file read for
 * dbpg_configured_budgets_invalid() from both.
 */
static void
dbpg_emit_log(ErrorData *edata)
{
	if (dbpg_quiet_messages && edata->elevel < WARNING)
	{
		edata->output_to_server = false;
		edata->output_to_client = false;
	}
	if (suppress_refusal_log && edata->elevel == FATAL &&
		edata->sqlerrcode == ERRCODE_TOO_MANY_CONNECTIONS)
	{
		edata->output_to_server = false;
		suppress_refusal_log = false;
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/* Is the role a member of one of the roles, as pg_hba.conf's +role? */
static bool
role_in(Oid roleid, const char (*names)[DBPG_NAME_MAX + 1], int n)
{
	if (!OidIsValid(roleid))
		return false;
	for (int i = 0; i < n; i++)
	{
		Oid			r = get_role_oid(names[i], true);

		/* membership without superuser bypass */
		if (OidIsValid(r) && is_member_of_role_nosuper(roleid, r))
			return true;
	}
	return false;
}

/*
 * What a refusal's DETAIL adds to the service's count: why there was no
 * slot to borrow, and how the wait ended.  Only what the refused client's
 * own service shows, and whether the pool had a slot free.
 */
static const char *
refusal_more(const Login *l)
{
	const DbpgBudgetEntry *e = l->entry;
	uint32		borrowed = DBPG_SLOTS_BORROWED(l->seen);
	const char *lend = "";

	if (e->burst > 0)
		lend = borrowed >= (uint32) e->burst ?
			psprintf(" It also holds %u connections borrowed from the burst pool, all of its burst of %d.",
					 borrowed, e->burst) :
			psprintf(" It also holds %u connections borrowed from the burst pool, of its burst of %d, and the pool has none free.",
					 borrowed, e->burst);

	switch (l->reason)
	{
		case DBPG_REASON_WAIT_TIMEOUT:
			return psprintf("%s This login waited %ld ms for a slot.", lend, l->waited_ms);
		case DBPG_REASON_WAIT_CANCELLED:
			return psprintf("%s An administrator cancelled the wait after %ld ms.", lend, l->waited_ms);
		case DBPG_REASON_QUEUE_FULL:
			if (l->full == DBPG_JOIN_FULL_SERVICE)
				return psprintf("%s %d logins are already waiting for the service, the most \"dbpool_guard.max_waiters\" allows.",
								lend, dbpg_max_waiters);
			if (l->full == DBPG_JOIN_FULL_SERVER)
				return psprintf("%s %d logins are already waiting in the server, the most \"dbpool_guard.max_waiters_total\" allows.",
								lend, dbpg_max_waiters_total);
			return psprintf("%s The server has no free connection slots to wait in beyond the reserved ones.", lend);
		case DBPG_REASON_OVER_CAP:
			break;
	}
	return lend;
}

/* Refuse the login: FATAL 53300 to the client, the reason in the log. */
static void
refuse(Port *port, const Login *l)
{
	const DbpgBudgetEntry *e = l->entry;
	char		addr[64];
	uint32		suppressed = 0;
	uint32		own = DBPG_SLOTS_IN_USE(l->seen) - DBPG_SLOTS_BORROWED(l->seen);
	double		threshold_pct = dbpg_entry_threshold(e) / (double) (DBPG_PPM / 100);
	double		used_pct = e->budget > 0 ? 100.0 * own / e->budget : 100.0;
	const char *more = refusal_more(l);

	client_addr_text(port, addr, sizeof(addr));
	record_rejection(port, addr, l, true);
	suppress_refusal_log = !log_limit_pass(&l->bucket->refusal_log, 1, &suppressed);

	if (e->budget == 0 && e->burst == 0)
		ereport(FATAL,
				errcode(ERRCODE_TOO_MANY_CONNECTIONS),
				errmsg("too many connections for service \"%s\"", l->service),
				errdetail("Service \"%s\" has a budget of 0 connections: it may not connect.",
						  l->service),
				errdetail_log("Refused role \"%s\" on database \"%s\" from %s; service \"%s\" (bucket \"%s\") has a budget of 0.%s",
							  port->user_name, port->database_name,
							  client_origin(addr), l->service, l->bucket->name,
							  not_logged(suppressed, "refusals")),
				errhint("Raise the service's budget in \"dbpool_guard.budgets\" to let it connect."));

	ereport(FATAL,
			errcode(ERRCODE_TOO_MANY_CONNECTIONS),
			errmsg("too many connections for service \"%s\"", l->service),
			l->bucket == &dbpg_shared->deflt ?
			errdetail("Service \"%s\" is counted in the shared budget \"*\", which holds %u of its budget of %d connections (%.0f%%); new sessions are refused from %d connections (threshold %.0f%%).%s",
					  l->service, own, e->budget, used_pct, l->cap, threshold_pct, more) :
			errdetail("Service \"%s\" holds %u of its budget of %d connections (%.0f%%); new sessions are refused from %d connections (threshold %.0f%%).%s",
					  l->service, own, e->budget, used_pct, l->cap, threshold_pct, more),
			errdetail_log("Refused role \"%s\" on database \"%s\" from %s; bucket \"%s\" holds %u of its %d connections (cap %d) and %u borrowed (burst %d); the pool lends %u of %d.%s%s",
						  port->user_name, port->database_name,
						  client_origin(addr), l->bucket->name, own,
						  e->budget, l->cap, DBPG_SLOTS_BORROWED(l->seen), e->burst,
						  pg_atomic_read_u32(&dbpg_shared->pool_lent), dbpg_burst_pool,
						  l->reason == DBPG_REASON_OVER_CAP ? "" : more,
						  not_logged(suppressed, "refusals")),
			l->reason == DBPG_REASON_OVER_CAP ?
			errhint("Retry with backoff. Size the service's pool below its cap, or raise its budget in \"dbpool_guard.budgets\".") :
			errhint("Retry with backoff. Size the service's pool below its cap, or raise its budget in \"dbpool_guard.budgets\" or the wait allowed by \"dbpool_guard.max_wait\"."));
}

/* Monitor mode: the login was admitted over its cap; count it and say so. */
static void
note_would_refuse(Port *port, const Login *l)
{
	uint32		suppressed = 0;
	char		addr[64];

	client_addr_text(port, addr, sizeof(addr));
	record_rejection(port, addr, l, false);
	if (log_limit_pass(&l->bucket->refusal_log, 1, &suppressed))
		ereport(LOG,
				errmsg("dbpool_guard: would refuse connection for service \"%s\" (monitor mode)",
					   l->service),
				errdetail("Bucket \"%s\" held %u of its budget of %d connections (cap %d) and %u borrowed (burst %d); role \"%s\" on database \"%s\" from %s was admitted.%s",
						  l->bucket->name,
						  DBPG_SLOTS_IN_USE(l->seen) - DBPG_SLOTS_BORROWED(l->seen),
						  l->entry->budget, l->cap,
						  DBPG_SLOTS_BORROWED(l->seen), l->entry->burst,
						  port->user_name, port->database_name,
						  client_origin(addr), not_logged(suppressed, "events")));
}

/*
 * The service table is full: the login is admitted without a budget.
 * Every such login is counted (enforcement().unguarded_total); the
 * WARNING is logged at most once a minute, server-wide.
 */
static void
note_overflow(const char *service)
{
	uint32		suppressed;		/* not reported: the counter has them all */

	pg_atomic_fetch_add_u64(&dbpg_shared->overflow, 1);
	if (log_limit_pass(&dbpg_shared->overflow_log, 60, &suppressed))
		ereport(WARNING,
				errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				errmsg("dbpool_guard: service table is full; admitting service \"%s\" without a budget",
					   service),
				errdetail("All %d entries are taken by services listed in \"dbpool_guard.budgets\" since the server started.",
						  dbpg_max_services),
				errhint("Raise \"dbpool_guard.max_services\" (needs a restart); a restart also forgets services that are no longer listed."));
}

/*
 * A role claimed a bound service it is not bound to: count the claim on
 * the claimed service's row (if it has one) and log it, at most once a
 * second per service.
 */
static void
note_claim(Port *port, const Login *l)
{
	DbpgBucket *limiter = &dbpg_shared->deflt;
	uint32		suppressed;
	char		addr[64];

	if (l->entry != NULL)
	{
		DbpgBucket *cb = dbpg_bucket_get(l->entry->name);

		if (cb != NULL)
		{
			pg_atomic_fetch_add_u64(&cb->misattributed, 1);
			limiter = cb;
		}
	}
	if (!log_limit_pass(&limiter->claim_log, 1, &suppressed))
		return;
	client_addr_text(port, addr, sizeof(addr));
	ereport(LOG,
			errmsg("dbpool_guard: role \"%s\" claimed service \"%s\" without being bound to it",
				   port->user_name, l->service),
			errdetail("The session from %s is counted in the shared budget \"*\", as \"dbpool_guard.service_roles\" binds \"%s\" to other roles.%s",
					  client_origin(addr), l->service,
					  not_logged(suppressed, "claims")));
}

/*
 * Step 0: does the session count?  Not when it failed authentication,
 * when the guard is off, for walsenders, superusers and exempt roles.
 */
static bool
session_counts(Port *port, int status, Login *l)
{
	const DbpgNameList *ex = dbpg_exempt;

	if (status != STATUS_OK || dbpg_mode == DBPG_MODE_OFF ||
		dbpg_shared == NULL || am_walsender)
		return false;
	l->roleid = get_role_oid(port->user_name, true);
	if (OidIsValid(l->roleid) &&
		(superuser_arg(l->roleid) ||
		 (ex != NULL && role_in(l->roleid, ex->names, ex->nnames))))
		return false;
	return true;
}

/*
 * Step 1: which service, and which entry of dbpool_guard.budgets governs
 * it.  A claim (by application_name) of a service bound to other roles
 * counts in "*".
 */
static void
which_service(Port *port, Login *l)
{
	const char *name = dbpg_service_key == DBPG_KEY_ROLE ?
		port->user_name : port->application_name;
	const DbpgBindings *bindings = dbpg_bindings;

	/* application_name is cleaned to ASCII by the startup packet code; clip as pgstat does */
	strlcpy(l->service, name ? name : "", NAMEDATALEN);
	l->entry = l->service[0] != '\0' ? dbpg_budgets_find(dbpg_budgets, l->service) : NULL;
	l->misattributed = false;

	if (dbpg_service_key == DBPG_KEY_APPLICATION_NAME && l->service[0] != '\0' &&
		bindings != NULL && bindings->nbindings > 0)
	{
		const DbpgBinding *bnd = dbpg_bindings_find(bindings, l->service);

		if (bnd != NULL &&
			!role_in(l->roleid, &DbpgBindingsRoles(bindings)[bnd->first], bnd->count))
		{
			l->misattributed = true;
			note_claim(port, l);
			l->entry = NULL;
		}
	}
}

/*
 * Step 2: the bucket that counts the session, and its cap.  A service
 * listed by a reload since its last login gets its bucket here.  false
 * when the service table is full: the login is admitted without a budget
 * (fail open: never refuse for our own table).
 */
static bool
which_bucket(Login *l)
{
	const DbpgBudgets *cfg = dbpg_budgets;

	if (l->entry != NULL)
	{
		l->bucket = dbpg_bucket_get(l->entry->name);
		if (l->bucket == NULL)
		{
			note_overflow(l->service);
			return false;
		}
	}
	else
	{
		l->bucket = &dbpg_shared->deflt;
		if (cfg != NULL && cfg->has_default)
			l->entry = &cfg->deflt;
	}
	/* no "*" entry: counted, never limited */
	l->cap = l->entry != NULL ? dbpg_entry_cap(l->entry) : -1;
	return true;
}

/*
 * How long a login may wait, if at all: until max_wait from now, and
 * never past AUTH_TIMEOUT_MARGIN_MS before the authentication timer fires
 * (its end would only drop the connection).  false when it may not wait.
 */
static bool
wait_deadline(TimestampTz now, TimestampTz *deadline)
{
	if (dbpg_waiters_bound() == 0)
		return false;
	*deadline = TimestampTzPlusMilliseconds(now, dbpg_max_wait);
	if (get_timeout_active(STATEMENT_TIMEOUT))
	{
		TimestampTz timer = TimestampTzPlusMilliseconds(get_timeout_finish_time(STATEMENT_TIMEOUT),
														-AUTH_TIMEOUT_MARGIN_MS);

		if (timer < *deadline)
			*deadline = timer;
	}
	return *deadline > now;
}

/*
 * Through the queue: older waiters are served first, then this login if a
 * slot is left for it; otherwise it waits, if it may, or is refused.
 */
static bool
queue_for_slot(Port *port, Login *l, const DbpgLimits *lim)
{
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz deadline = 0;
	DbpgJoinRequest req;
	char		addr[64];
	uint64		ticket;
	DbpgWaitEnd end;

	client_addr_text(port, addr, sizeof(addr));
	req.bucket = l->bucket;
	req.limits = *lim;
	req.may_wait = wait_deadline(start, &deadline);
	req.user_name = port->user_name;
	req.database_name = port->database_name;
	req.client_addr = addr;

	l->full = dbpg_queue_join(&req, &l->seen, &ticket);
	switch (l->full)
	{
		case DBPG_JOIN_GRANTED:
			return true;
		case DBPG_JOIN_REFUSED:
			l->reason = DBPG_REASON_OVER_CAP;
			return false;
		case DBPG_JOIN_FULL_SERVICE:
		case DBPG_JOIN_FULL_SERVER:
		case DBPG_JOIN_NO_PROCS:
			l->reason = DBPG_REASON_QUEUE_FULL;
			return false;
		case DBPG_JOIN_WAITING:
			break;
	}

	ereport(DEBUG1,
			errmsg_internal("dbpool_guard: login of service \"%s\" waits, ticket " UINT64_FORMAT,
							l->bucket->name, ticket));
	end = dbpg_queue_wait(deadline, port->sock, &l->seen);
	if (end == DBPG_WAIT_END_GRANTED)
		held_bucket = l->bucket;	/* before anything that can fail */
	l->waited_ms = (long) ((GetCurrentTimestamp() - start) / 1000);
	if (end == DBPG_WAIT_END_GRANTED)
	{
		pg_atomic_fetch_add_u64(&l->bucket->waited, 1);
		ereport(DEBUG1,
				errmsg_internal("dbpool_guard: login of service \"%s\" admitted after waiting %ld ms, ticket " UINT64_FORMAT,
								l->bucket->name, l->waited_ms, ticket));
		return true;
	}
	if (end == DBPG_WAIT_END_TIMEOUT)
	{
		pg_atomic_fetch_add_u64(&l->bucket->wait_timeouts, 1);
		l->reason = DBPG_REASON_WAIT_TIMEOUT;
	}
	else
		l->reason = DBPG_REASON_WAIT_CANCELLED;
	return false;
}

/*
 * Step 3: take a slot, own or borrowed, within this backend's settings.
 * Where there is no cap, always.  In monitor mode by the same rules,
 * never waiting: a login with no slot it may take is admitted over the
 * cap and noted.  In enforce mode, without waiters, one atomic step or
 * two; through the queue when the service has waiters, or, to borrow,
 * when any waiter may borrow (they come first), or to wait.
 */
static bool
take_slot(Port *port, Login *l)
{
	DbpgLimits	lim;
	bool		borrow_now;

	if (l->cap < 0)
	{
		l->seen = dbpg_slot_add(l->bucket);
		return true;
	}
	lim.cap = (uint32) l->cap;
	lim.burst = (uint32) l->entry->burst;
	lim.pool = (uint32) dbpg_burst_pool;

	if (dbpg_mode != DBPG_MODE_ENFORCE)
	{
		if (!dbpg_queue_take(l->bucket, &lim, lim.burst > 0, &l->seen))
		{
			l->seen = dbpg_slot_add(l->bucket);
			l->over_cap = true;
		}
		return true;
	}

	/* no slot it could ever take (name=0, or 0+N without a pool): no wait */
	if (lim.cap == 0 && (lim.burst == 0 || lim.pool == 0))
	{
		l->seen = pg_atomic_read_u64(&l->bucket->slots);
		l->reason = DBPG_REASON_OVER_CAP;
		return false;
	}

	borrow_now = lim.burst > 0 && pg_atomic_read_u32(&dbpg_shared->pool_waiters) == 0;
	if (pg_atomic_read_u32(&l->bucket->waiters) == 0)
	{
		if (dbpg_queue_take(l->bucket, &lim, borrow_now, &l->seen))
			return true;
		/* nobody ahead, and not to wait: refused at once, without a lock */
		if ((lim.burst == 0 || borrow_now) && dbpg_waiters_bound() == 0)
		{
			l->reason = DBPG_REASON_OVER_CAP;
			return false;
		}
	}
	return queue_for_slot(port, l, &lim);
}

/* Step 4: the slot is this backend's; record it for the views and the worker. */
static void
record_holding(Port *port, const Login *l)
{
	int			idx = dbpg_my_index();
	DbpgHolding *h = (idx >= 0 && idx < dbpg_nholdings) ? &dbpg_holdings[idx] : NULL;

	held_bucket = l->bucket;
	pg_atomic_fetch_add_u64(&l->bucket->admitted, 1);
	note_peak(l->bucket, DBPG_SLOTS_IN_USE(l->seen) + 1);
	if (h != NULL)
	{
		TimestampTz now = GetCurrentTimestamp();
		NameData	user;

		namestrcpy(&user, port->user_name);
		SpinLockAcquire(&h->mutex);
		h->pid = MyProcPid;
		h->bucket = l->bucket;
		h->proc = MyProc;
		h->proc_start = MyStartTimestamp;
		h->admitted_at = now;
		h->user_name = user;
		h->state = DBPG_STATE_UNKNOWN;
		SpinLockRelease(&h->mutex);
		held_holding = h;
	}
}

static void
dbpg_client_auth(Port *port, int status)
{
	Login		l;

	if (prev_client_auth_hook)
		prev_client_auth_hook(port, status);

	memset(&l, 0, sizeof(l));
	if (!session_counts(port, status, &l))
		return;
	which_service(port, &l);

	/* register the release first: registering can fail, a taken slot must not leak */
	if (!release_registered)
	{
		before_shmem_exit(release_slot, (Datum) 0);
		release_registered = true;
	}

	if (!which_bucket(&l))
		return;
	if (!take_slot(port, &l))
		refuse(port, &l);		/* no return */
	record_holding(port, &l);

	/* monitor mode: admitted without a slot it may take */
	if (l.over_cap)
		note_would_refuse(port, &l);
}

void
dbpg_admission_init(void)
{
	prev_client_auth_hook = ClientAuthentication_hook;
	ClientAuthentication_hook = dbpg_client_auth;
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = dbpg_emit_log;
}
