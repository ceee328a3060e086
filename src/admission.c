/*-------------------------------------------------------------------------
 * admission.c
 *		Login-time admission: one lookup, one atomic step, no scans.
 *
 * The ClientAuthentication_hook runs after authentication, inside the
 * startup transaction, before PostgreSQL's own checks of role and
 * database connection limits.  For a session that counts, it finds the
 * service's bucket and takes a slot with one compare-and-exchange, so
 * that a bucket never exceeds its cap however many logins race; or it
 * refuses the session with FATAL 53300.  The slot is given back by a
 * before_shmem_exit callback, whatever way the backend ends.
 *
 * IDENTIFICATION
 *		src/admission.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_authid.h"
#include "common/ip.h"
#include "libpq/auth.h"
#include "libpq/libpq-be.h"
#include "miscadmin.h"
#include "replication/walsender.h"
#include "storage/ipc.h"
#include "storage/spin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "dbpool_guard.h"

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

int32
dbpg_entry_threshold(const DbpgBudgetEntry *e)
{
	return e->threshold_ppm == DBPG_THRESHOLD_DEFAULT ?
		dbpg_threshold_ppm : e->threshold_ppm;
}

int32
dbpg_entry_cap(const DbpgBudgetEntry *e)
{
	return dbpg_cap(e->budget, dbpg_entry_threshold(e));
}

static void
release_slot(int code, Datum arg)
{
	DbpgBucket *b = held_bucket;
	DbpgHolding *h = held_holding;

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
	pg_atomic_fetch_sub_u32(&b->in_use, 1);
}

/* Take a slot unless the bucket is at cap; exact under concurrent logins. */
static bool
bucket_try_take(DbpgBucket *b, uint32 cap, uint32 *before)
{
	uint32		cur = pg_atomic_read_u32(&b->in_use);

	while (cur < cap)
	{
		if (pg_atomic_compare_exchange_u32(&b->in_use, &cur, cur + 1))
		{
			*before = cur;
			return true;
		}
		/* a failed exchange refreshed cur */
	}
	*before = cur;
	return false;
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
 * Claim the wall-clock second of now in *slot: true for exactly one caller
 * per second.  The slot only moves forward, so a backend whose now is
 * older (it waited, or was descheduled) cannot open a second again; only
 * a clock stepped back by more than a minute moves it back.
 */
static bool
claim_log_second(pg_atomic_uint64 *slot, TimestampTz now)
{
	uint64		second = (uint64) (now / USECS_PER_SEC);
	uint64		last = pg_atomic_read_u64(slot);

	/* forward; or back by more than a minute: the clock was stepped back */
	while (second > last || second + 60 < last)
	{
		if (pg_atomic_compare_exchange_u64(slot, &last, second))
			return true;
		/* a failed exchange refreshed last */
	}
	return false;
}

/*
 * May this refusal be written to the server log?  One line per service
 * per second; the others are counted and reported with the next line.
 */
static bool
refusal_log_allowed(DbpgBucket *b, TimestampTz now, uint32 *suppressed)
{
	if (claim_log_second(&b->log_second, now))
	{
		*suppressed = pg_atomic_exchange_u32(&b->log_suppressed, 0);
		return true;
	}
	pg_atomic_fetch_add_u32(&b->log_suppressed, 1);
	return false;
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

/*
 * addr: from client_addr_text(), formatted before the lock is taken.  The
 * time is read under the lock, so that the ring is in time order; an
 * enforced refusal sets the bucket's last_rejected_at there too, so that
 * it is always the newest refusal's time in the ring.
 */
static void
record_rejection(Port *port, const char *addr, DbpgBucket *b,
				 uint32 connections, int32 budget, bool enforced,
				 bool misattributed)
{
	DbpgRejection *r;
	TimestampTz at;

	LWLockAcquire(dbpg_shared->ring_lock, LW_EXCLUSIVE);
	r = &dbpg_shared->ring[dbpg_shared->ring_next % DBPG_RING_SIZE];
	dbpg_shared->ring_next++;
	at = GetCurrentTimestamp();
	if (enforced)
		pg_atomic_write_u64(&b->last_rejected_at, (uint64) at);
	r->at = at;
	strlcpy(r->service, b->name, NAMEDATALEN);
	namestrcpy(&r->user_name, port->user_name ? port->user_name : "");
	namestrcpy(&r->database_name,
			   port->database_name ? port->database_name : "");
	strlcpy(r->client_addr, addr, sizeof(r->client_addr));
	r->connections = (int32) connections;
	r->budget = budget;
	r->enforced = enforced;
	r->misattributed = misattributed;
	LWLockRelease(dbpg_shared->ring_lock);
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

static bool
role_is_exempt(Oid roleid)
{
	const DbpgNameList *ex = dbpg_exempt;

	if (ex == NULL)
		return false;
	for (int i = 0; i < ex->nnames; i++)
	{
		Oid			exempt = get_role_oid(ex->names[i], true);

		/* as pg_hba.conf's +role: membership without superuser bypass */
		if (OidIsValid(exempt) && is_member_of_role_nosuper(roleid, exempt))
			return true;
	}
	return false;
}

static void
refuse(Port *port, DbpgBucket *b, const char *service,
	   const DbpgBudgetEntry *e, int32 cap, uint32 connections,
	   bool misattributed)
{
	TimestampTz now = GetCurrentTimestamp();
	char		addr[64];
	uint32		suppressed = 0;
	double		threshold_pct = dbpg_entry_threshold(e) / (double) (DBPG_PPM / 100);
	double		used_pct = e->budget > 0 ? 100.0 * connections / e->budget : 100.0;

	client_addr_text(port, addr, sizeof(addr));
	pg_atomic_fetch_add_u64(&b->rejected, 1);
	record_rejection(port, addr, b, connections, e->budget, true,
					 misattributed);

	suppress_refusal_log = !refusal_log_allowed(b, now, &suppressed);

	if (e->budget == 0)
		ereport(FATAL,
				errcode(ERRCODE_TOO_MANY_CONNECTIONS),
				errmsg("too many connections for service \"%s\"", service),
				errdetail("Service \"%s\" has a budget of 0 connections: it may not connect.",
						  service),
				errdetail_log("Refused role \"%s\" on database \"%s\" from %s; service \"%s\" (bucket \"%s\") has a budget of 0.%s",
							  port->user_name, port->database_name,
							  addr[0] ? addr : "local socket",
							  service, b->name,
							  suppressed > 0 ? psprintf(" %u similar refusals were not logged in the last second.", suppressed) : ""),
				errhint("Raise the service's budget in \"dbpool_guard.budgets\" to let it connect."));

	ereport(FATAL,
			errcode(ERRCODE_TOO_MANY_CONNECTIONS),
			errmsg("too many connections for service \"%s\"", service),
			errdetail("%s holds %u of its budget of %d connections (%.0f%%); new sessions are refused from %d connections (threshold %.0f%%).",
					  b == &dbpg_shared->deflt ?
					  psprintf("Service \"%s\" is counted in the shared budget \"*\", which", service) :
					  psprintf("Service \"%s\"", service),
					  connections, e->budget, used_pct, cap, threshold_pct),
			errdetail_log("Refused role \"%s\" on database \"%s\" from %s; bucket \"%s\" holds %u of %d connections (cap %d).%s",
						  port->user_name, port->database_name,
						  addr[0] ? addr : "local socket",
						  b->name, connections, e->budget, cap,
						  suppressed > 0 ? psprintf(" %u similar refusals were not logged in the last second.", suppressed) : ""),
			errhint("Retry with backoff. Size the service's pool below its cap, or raise its budget in \"dbpool_guard.budgets\"."));
}

static void
note_would_refuse(Port *port, DbpgBucket *b, const char *service,
				  const DbpgBudgetEntry *e, int32 cap, uint32 connections,
				  bool misattributed)
{
	TimestampTz now = GetCurrentTimestamp();
	uint32		suppressed = 0;
	char		addr[64];

	client_addr_text(port, addr, sizeof(addr));
	pg_atomic_fetch_add_u64(&b->would_reject, 1);
	record_rejection(port, addr, b, connections, e->budget, false,
					 misattributed);

	if (refusal_log_allowed(b, now, &suppressed))
	{
		ereport(LOG,
				errmsg("dbpool_guard: would refuse connection for service \"%s\" (monitor mode)",
					   service),
				errdetail("Bucket \"%s\" held %u of its budget of %d connections (cap %d); role \"%s\" on database \"%s\" from %s was admitted.%s",
						  b->name, connections, e->budget, cap,
						  port->user_name, port->database_name,
						  addr[0] ? addr : "local socket",
						  suppressed > 0 ? psprintf(" %u similar events were not logged in the last second.", suppressed) : ""));
	}
}

static void
note_overflow(const char *service)
{
	TimestampTz now = GetCurrentTimestamp();
	uint64		second = (uint64) (now / USECS_PER_SEC);
	uint64		last = pg_atomic_read_u64(&dbpg_shared->last_overflow_log);

	pg_atomic_fetch_add_u64(&dbpg_shared->overflow, 1);
	if (second >= last + 60 &&
		pg_atomic_compare_exchange_u64(&dbpg_shared->last_overflow_log, &last, second))
		ereport(WARNING,
				errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				errmsg("dbpool_guard: service table is full; admitting service \"%s\" without a budget",
					   service),
				errdetail("All %d entries are taken by services listed in \"dbpool_guard.budgets\" since the server started.",
						  dbpg_max_services),
				errhint("Raise \"dbpool_guard.max_services\" (needs a restart); a restart also forgets services that are no longer listed."));
}

/*
 * Find a named bucket, inserting it when a reload added the service.
 * Returns with dbpg_shared->lock held (shared, or exclusive after an
 * insert), or NULL with the lock released when the table is full.
 */
static DbpgBucket *
bucket_lookup_locked(const char *name)
{
	DbpgBucket *b;

	LWLockAcquire(dbpg_shared->lock, LW_SHARED);
	b = hash_search(dbpg_hash, name, HASH_FIND, NULL);
	if (b != NULL)
		return b;
	LWLockRelease(dbpg_shared->lock);
	LWLockAcquire(dbpg_shared->lock, LW_EXCLUSIVE);
	b = dbpg_bucket_insert(name);
	if (b == NULL)
		LWLockRelease(dbpg_shared->lock);
	return b;
}

/* Is the role one of the bound roles, or a member of one? */
static bool
role_is_bound(Oid roleid, const DbpgBinding *bnd)
{
	const DbpgBindings *all = dbpg_bindings;
	char		(*roles)[DBPG_NAME_MAX + 1] = DbpgBindingsRoles(all);

	if (!OidIsValid(roleid))
		return false;
	for (int i = bnd->first; i < bnd->first + bnd->count; i++)
	{
		Oid			bound = get_role_oid(roles[i], true);

		if (OidIsValid(bound) && is_member_of_role_nosuper(roleid, bound))
			return true;
	}
	return false;
}

/*
 * A role claimed a bound service it is not bound to: count the claim on
 * the claimed service's row (if it has one) and log it, at most once a
 * second per service.
 */
static void
note_claim(Port *port, const char *service, const DbpgBudgetEntry *claimed)
{
	DbpgBucket *limiter = &dbpg_shared->deflt;
	TimestampTz now = GetCurrentTimestamp();

	if (claimed != NULL)
	{
		DbpgBucket *cb = bucket_lookup_locked(claimed->name);

		if (cb != NULL)
		{
			pg_atomic_fetch_add_u64(&cb->misattributed, 1);
			limiter = cb;
			LWLockRelease(dbpg_shared->lock);
		}
	}

	if (claim_log_second(&limiter->claim_log_second, now))
	{
		uint32		suppressed = pg_atomic_exchange_u32(&limiter->claim_log_suppressed, 0);
		char		addr[64];

		client_addr_text(port, addr, sizeof(addr));
		ereport(LOG,
				errmsg("dbpool_guard: role \"%s\" claimed service \"%s\" without being bound to it",
					   port->user_name, service),
				errdetail("The session from %s is counted in the shared budget \"*\", as \"dbpool_guard.service_roles\" binds \"%s\" to other roles.%s",
						  addr[0] ? addr : "local socket", service,
						  suppressed > 0 ? psprintf(" %u similar claims were not logged in the last second.", suppressed) : ""));
	}
	else
		pg_atomic_fetch_add_u32(&limiter->claim_log_suppressed, 1);
}

static void
dbpg_client_auth(Port *port, int status)
{
	char		service[NAMEDATALEN];
	const DbpgBudgets *cfg = dbpg_budgets;
	const DbpgBudgetEntry *e;
	DbpgBucket *b;
	DbpgHolding *h;
	Oid			roleid;
	int			idx;
	int32		cap;
	uint32		before = 0;
	bool		take;
	bool		misattributed = false;

	if (prev_client_auth_hook)
		prev_client_auth_hook(port, status);

	/* act only for a session that authenticated and that counts */
	if (status != STATUS_OK || dbpg_mode == DBPG_MODE_OFF ||
		dbpg_shared == NULL || am_walsender)
		return;

	roleid = get_role_oid(port->user_name, true);
	if (OidIsValid(roleid) && (superuser_arg(roleid) || role_is_exempt(roleid)))
		return;

	if (dbpg_service_key == DBPG_KEY_ROLE)
		strlcpy(service, port->user_name ? port->user_name : "", NAMEDATALEN);
	else
	{
		/* already cleaned to ASCII by the startup packet code; clip as pgstat does */
		strlcpy(service, port->application_name ? port->application_name : "",
				NAMEDATALEN);
	}

	e = service[0] != '\0' ? dbpg_budgets_find(cfg, service) : NULL;

	/* a claim of a bound service by another role counts in "*" */
	if (dbpg_service_key == DBPG_KEY_APPLICATION_NAME && service[0] != '\0' &&
		dbpg_bindings != NULL && dbpg_bindings->nbindings > 0)
	{
		const DbpgBinding *bnd = dbpg_bindings_find(dbpg_bindings, service);

		if (bnd != NULL && !role_is_bound(roleid, bnd))
		{
			misattributed = true;
			note_claim(port, service, e);
			e = NULL;
		}
	}

	/* register the release first: registering can fail, a taken slot must not leak */
	if (!release_registered)
	{
		before_shmem_exit(release_slot, (Datum) 0);
		release_registered = true;
	}

	idx = dbpg_my_index();
	h = (idx >= 0 && idx < dbpg_nholdings) ? &dbpg_holdings[idx] : NULL;

	if (e != NULL)
	{
		cap = dbpg_entry_cap(e);

		/* a service added by a reload is inserted here, by its first login */
		b = bucket_lookup_locked(e->name);
		if (b == NULL)
		{
			note_overflow(service);
			return;				/* fail open: never refuse for our own table */
		}
		if (dbpg_mode == DBPG_MODE_ENFORCE)
			take = bucket_try_take(b, (uint32) cap, &before);
		else
		{
			before = pg_atomic_fetch_add_u32(&b->in_use, 1);
			take = true;
		}
		LWLockRelease(dbpg_shared->lock);
	}
	else
	{
		b = &dbpg_shared->deflt;
		if (cfg != NULL && cfg->has_default)
		{
			e = &cfg->deflt;
			cap = dbpg_entry_cap(e);
			if (dbpg_mode == DBPG_MODE_ENFORCE)
				take = bucket_try_take(b, (uint32) cap, &before);
			else
			{
				before = pg_atomic_fetch_add_u32(&b->in_use, 1);
				take = true;
			}
		}
		else
		{
			/* no "*" entry: counted, never limited */
			cap = -1;
			before = pg_atomic_fetch_add_u32(&b->in_use, 1);
			take = true;
		}
	}

	if (!take)
		refuse(port, b, service, e, cap, before, misattributed);	/* no return */

	held_bucket = b;
	pg_atomic_fetch_add_u64(&b->admitted, 1);
	note_peak(b, before + 1);
	if (h != NULL)
	{
		TimestampTz now = GetCurrentTimestamp();
		NameData	user;

		namestrcpy(&user, port->user_name);
		SpinLockAcquire(&h->mutex);
		h->pid = MyProcPid;
		h->bucket = b;
		h->proc = MyProc;
		h->proc_start = MyStartTimestamp;
		h->admitted_at = now;
		h->user_name = user;
		h->state = DBPG_STATE_UNKNOWN;
		SpinLockRelease(&h->mutex);
		held_holding = h;
	}

	if (cap >= 0 && before >= (uint32) cap)
		note_would_refuse(port, b, service, e, cap, before, misattributed);
}

void
dbpg_admission_init(void)
{
	prev_client_auth_hook = ClientAuthentication_hook;
	ClientAuthentication_hook = dbpg_client_auth;
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = dbpg_emit_log;
}
