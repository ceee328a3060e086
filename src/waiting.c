/*-------------------------------------------------------------------------
 * waiting.c
 *		A short, fair wait at login: the queue of logins waiting for a slot.
 *
 * A login that finds no slot it may take, with dbpool_guard.max_wait set,
 * joins one queue, in the order logins reach it (a ticket), and sleeps on
 * its latch until a slot is handed to it, its wait runs out, an operator
 * cancels it, its client goes away, or the backend is told to die.  Slots
 * are handed over explicitly: whoever may have freed a slot (a release,
 * and every login joining) runs a grant pass under the wait lock, which
 * walks the queue oldest first and takes, on each waiter's behalf and
 * within that waiter's own limits, a slot it may take; the waiter finds it
 * granted when it wakes.  So a freed slot goes to its service's oldest
 * waiter, and a freed pool slot to the oldest waiter that may borrow,
 * never to a newcomer: a newcomer goes through the queue whenever its
 * service has waiters, or, to borrow, whenever any waiter may borrow
 * (admission.c).
 *
 * Releases: one that a waiter may use (its bucket has waiters, or it
 * repays the pool while a waiter may borrow) is made under the wait lock,
 * followed by a grant pass, so that no pass sees a slot come free in its
 * middle.  Any other is made without the lock, and then the counts of
 * waiters are read again; a login joining adds itself to those counts,
 * then (in its grant pass) tries the bucket's word and the pool.  Both
 * steps are full barriers, so one of the two sees the other: no lost
 * wake-up.  The same holds for a pool slot reserved and given back
 * unused by a login outside the lock (dbpg_queue_take).
 *
 * Left open, and documented: a slot can still come free in the middle
 * of a grant pass, from a release made without the lock because it read
 * the counts just before a login joined or predicted no repayment (the
 * borrowed count it read changed before its exchange), or from a pool
 * slot reserved for an instant by a login outside the lock.  The pass
 * then serves no younger waiter that could take nothing by what it had
 * seen (grant_pass), and no wake-up is lost, but a waiter with larger
 * limits (another service, or settings of a later reload) may take it.
 *
 * Exit: a waiter's entry is in use from its join until it takes up a
 * grant, gives up, or leaves; the before_shmem_exit callback of admission.c
 * calls dbpg_queue_forget() first, which unlinks a queued entry and hands
 * back a slot granted but not yet taken up, whatever way the backend ends
 * (pg_terminate_backend, the authentication timer, postmaster death).
 *
 * IDENTIFICATION
 *		src/waiting.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "compat.h"
#include "dbpool_guard.h"

PG_FUNCTION_INFO_V1(dbpool_guard_waiting_logins_1_5);
PG_FUNCTION_INFO_V1(dbpool_guard_cancel_waiting_login_1_5);

#define WAITING_LOGINS_COLS	8

static void after_release(DbpgBucket *b, bool repaid);

/* This backend's entry, or NULL (an index out of range: never waits). */
static DbpgWaiter *
my_waiter(void)
{
	int			idx = dbpg_my_index();

	if (dbpg_waiters == NULL || idx < 0 || idx >= dbpg_nholdings)
		return NULL;
	return &dbpg_waiters[idx];
}

/* Add entry i at the tail of the queue.  Under the wait lock. */
static void
link_waiter(int i)
{
	DbpgWaiter *w = &dbpg_waiters[i];

	w->ticket = dbpg_shared->next_ticket++;
	w->next = -1;
	w->prev = dbpg_shared->wait_tail;
	if (w->prev >= 0)
		dbpg_waiters[w->prev].next = i;
	else
		dbpg_shared->wait_head = i;
	dbpg_shared->wait_tail = i;
	w->state = DBPG_WAIT_QUEUED;
	/* full barriers: before this login's grant pass reads any slot word */
	pg_atomic_fetch_add_u32(&w->bucket->waiters, 1);
	pg_atomic_fetch_add_u32(&dbpg_shared->waiters, 1);
	if (w->limits.burst > 0)
		pg_atomic_fetch_add_u32(&dbpg_shared->pool_waiters, 1);
}

/* Take queued entry i out of the queue.  Under the wait lock. */
static void
unlink_waiter(int i)
{
	DbpgWaiter *w = &dbpg_waiters[i];

	Assert(w->state == DBPG_WAIT_QUEUED);
	if (w->prev >= 0)
		dbpg_waiters[w->prev].next = w->next;
	else
		dbpg_shared->wait_head = w->next;
	if (w->next >= 0)
		dbpg_waiters[w->next].prev = w->prev;
	else
		dbpg_shared->wait_tail = w->prev;
	w->prev = w->next = -1;
	w->state = DBPG_WAIT_NONE;
	pg_atomic_fetch_sub_u32(&w->bucket->waiters, 1);
	pg_atomic_fetch_sub_u32(&dbpg_shared->waiters, 1);
	if (w->limits.burst > 0)
		pg_atomic_fetch_sub_u32(&dbpg_shared->pool_waiters, 1);
}

/*
 * Hand every slot that a waiter may take to the oldest such waiter, and
 * wake it.  Under the wait lock, held exclusively.  Each waiter is tried
 * with its own limits (those of its backend's settings).  Releases that a
 * waiter could use are made under the lock (dbpg_queue_release), but a
 * slot may still come free in the middle of a pass (see the header), so a
 * pass serves no younger waiter that what it has already seen says could
 * take nothing: one whose cap is no larger than that of a waiter of its
 * bucket that found nothing, and that may not borrow (its burst is no
 * larger than that of a waiter of its bucket found at its burst, or its
 * pool limit no larger than one found full).  The release's own pass
 * then serves the oldest.
 */
static void
grant_pass(void)
{
	uint64		pass = ++dbpg_shared->grant_passes;
	int64		pool_bar = -1;	/* the largest pool limit found full */
	int			i = dbpg_shared->wait_head;

	while (i >= 0)
	{
		DbpgWaiter *w = &dbpg_waiters[i];
		DbpgBucket *b = w->bucket;
		bool		may_borrow = w->limits.burst > 0 && (int64) w->limits.pool > pool_bar;
		uint64		seen;
		bool		gave_back;

		i = w->next;
		if (b->wait_pass == pass && w->limits.cap <= b->wait_fail_cap &&
			(!may_borrow || (int64) w->limits.burst <= b->wait_fail_burst))
			continue;			/* an older waiter of b found nothing */
		/* a pool slot given back here needs no wake-up: the pass goes on */
		if (!dbpg_slot_take(b, &w->limits, may_borrow, &seen, &gave_back))
		{
			/* own >= cap: a larger cap would have taken an own slot */
			if (b->wait_pass != pass)
			{
				b->wait_pass = pass;
				b->wait_fail_cap = w->limits.cap;
				b->wait_fail_burst = -1;
			}
			else
				b->wait_fail_cap = Max(b->wait_fail_cap, w->limits.cap);
			if (DBPG_SLOTS_BORROWED(seen) >= w->limits.burst)
				b->wait_fail_burst = Max(b->wait_fail_burst, (int64) w->limits.burst);
			else if (may_borrow)
				pool_bar = Max(pool_bar, (int64) w->limits.pool);	/* pool full */
			continue;
		}
		unlink_waiter((int) (w - dbpg_waiters));
		w->state = DBPG_WAIT_GRANTED;
		w->seen = seen;
		SetLatch(&w->proc->procLatch);
	}
}

/* Take up a grant: the slot is the caller's from here.  Under the lock. */
static void
take_up(DbpgWaiter *me, uint64 *seen)
{
	Assert(me->state == DBPG_WAIT_GRANTED);
	*seen = me->seen;
	me->state = DBPG_WAIT_NONE;
	me->pid = 0;
}

/*
 * Leave the queue without a slot, and say what the bucket holds now
 * (seen may be NULL).  Under the lock.
 */
static void
give_up(DbpgWaiter *me, uint64 *seen)
{
	if (seen != NULL)
		*seen = pg_atomic_read_u64(&me->bucket->slots);
	if (me->state == DBPG_WAIT_QUEUED)
		unlink_waiter((int) (me - dbpg_waiters));
	me->state = DBPG_WAIT_NONE;
	me->pid = 0;
}

/*
 * Take a slot outside the wait lock (the path without waiters).  A pool
 * slot reserved and given back unused meanwhile may have been found
 * missing by a login that joined the queue: wake the queue then.
 */
bool
dbpg_queue_take(DbpgBucket *b, const DbpgLimits *lim, bool may_borrow,
				uint64 *seen)
{
	bool		gave_back;
	bool		took = dbpg_slot_take(b, lim, may_borrow, seen, &gave_back);

	if (gave_back)
		after_release(NULL, true);
	return took;
}

/*
 * Join the queue.  The entry goes in at the tail, then a grant pass serves
 * every older waiter first and this login if a slot is left for it:
 * DBPG_JOIN_GRANTED.  Otherwise a login that may wait stays queued
 * (DBPG_JOIN_WAITING) unless a bound is reached, and one that may not
 * leaves again.  The bounds are the settings of the joining backend, and
 * waiting needs, besides the waiter's own, at least as many free process
 * slots as are reserved (PostgreSQL's own test after authentication), so
 * that superusers are never locked out by waiters.
 */
DbpgJoin
dbpg_queue_join(const DbpgJoinRequest *req, uint64 *seen, uint64 *ticket)
{
	DbpgWaiter *me = my_waiter();
	DbpgJoin	full = DBPG_JOIN_WAITING;
	int			reserved = dbpg_reserved_connections();

	*ticket = 0;
	if (me == NULL)
	{
		/* no entry to queue with: as without waiters */
		return dbpg_queue_take(req->bucket, &req->limits, req->limits.burst > 0, seen) ?
			DBPG_JOIN_GRANTED : DBPG_JOIN_REFUSED;
	}
	if (req->may_wait && !dbpg_have_free_procs(Max(reserved, 1)))
		full = DBPG_JOIN_NO_PROCS;

	LWLockAcquire(dbpg_shared->wait_lock, LW_EXCLUSIVE);
	if (req->may_wait && full == DBPG_JOIN_WAITING)
	{
		if (pg_atomic_read_u32(&req->bucket->waiters) >= (uint32) dbpg_max_waiters)
			full = DBPG_JOIN_FULL_SERVICE;
		else if (pg_atomic_read_u32(&dbpg_shared->waiters) >= (uint32) dbpg_max_waiters_total)
			full = DBPG_JOIN_FULL_SERVER;
	}
	me->pid = MyProcPid;
	me->proc = MyProc;
	me->bucket = req->bucket;
	me->limits = req->limits;
	me->since = GetCurrentTimestamp();
	me->seen = 0;
	namestrcpy(&me->user_name, req->user_name ? req->user_name : "");
	namestrcpy(&me->database_name, req->database_name ? req->database_name : "");
	strlcpy(me->client_addr, req->client_addr, sizeof(me->client_addr));
	link_waiter((int) (me - dbpg_waiters));
	*ticket = me->ticket;
	grant_pass();

	if (me->state == DBPG_WAIT_GRANTED)
	{
		take_up(me, seen);
		full = DBPG_JOIN_GRANTED;
	}
	else if (!req->may_wait || full != DBPG_JOIN_WAITING)
	{
		give_up(me, seen);
		if (!req->may_wait)
			full = DBPG_JOIN_REFUSED;
	}
	LWLockRelease(dbpg_shared->wait_lock);
	return full;
}

/*
 * Sleep in the queue until a slot is handed over, the deadline passes, or
 * an operator cancels the wait.  A client that closes its connection ends
 * the backend here, quietly, as PostgreSQL does for a client that leaves
 * during authentication.  Interrupts are served while sleeping, so
 * pg_terminate_backend and the authentication timer work as everywhere;
 * the exit callback then cleans up (dbpg_queue_forget).  No catalog
 * snapshot is held while sleeping.
 */
DbpgWaitEnd
dbpg_queue_wait(TimestampTz deadline, pgsocket sock, uint64 *seen)
{
	DbpgWaiter *me = my_waiter();
	int			events = WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH;
	uint32		wait_event = dbpg_wait_event_login();	/* may fail: the exit
															 * callback leaves the
															 * queue */

	if (sock != PGINVALID_SOCKET && WaitEventSetCanReportClosed())
		events |= WL_SOCKET_CLOSED;
	else
		sock = PGINVALID_SOCKET;

	InvalidateCatalogSnapshot();
	for (;;)
	{
		TimestampTz now;
		long		timeout_ms;
		int			rc;

		ResetLatch(MyLatch);
		LWLockAcquire(dbpg_shared->wait_lock, LW_EXCLUSIVE);
		now = GetCurrentTimestamp();
		/* at the deadline, never refuse while a slot it may take is free */
		if (now >= deadline && me->state == DBPG_WAIT_QUEUED)
			grant_pass();
		if (me->state == DBPG_WAIT_GRANTED)
		{
			take_up(me, seen);
			LWLockRelease(dbpg_shared->wait_lock);
			return DBPG_WAIT_END_GRANTED;
		}
		if (me->state == DBPG_WAIT_CANCELLED || now >= deadline)
		{
			DbpgWaitEnd end = me->state == DBPG_WAIT_CANCELLED ?
				DBPG_WAIT_END_CANCELLED : DBPG_WAIT_END_TIMEOUT;

			give_up(me, seen);
			LWLockRelease(dbpg_shared->wait_lock);
			return end;
		}
		LWLockRelease(dbpg_shared->wait_lock);

		timeout_ms = (long) ((deadline - now + 999) / 1000);
		rc = WaitLatchOrSocket(MyLatch, events, sock, timeout_ms, wait_event);
		if (rc & WL_SOCKET_CLOSED)
		{
			ereport(DEBUG1,
					errmsg_internal("dbpool_guard: client closed the connection while its login waited"));
			proc_exit(0);		/* the exit callback leaves the queue */
		}
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * The exit callback's part: leave the queue, and return the bucket of a
 * slot that was handed over but not taken up (the caller gives it back,
 * which passes it on), or NULL.  Only this backend sets its entry's pid,
 * so it is read without the lock first.
 */
DbpgBucket *
dbpg_queue_forget(void)
{
	DbpgWaiter *me = my_waiter();
	DbpgBucket *granted = NULL;

	if (me == NULL || me->pid != MyProcPid || dbpg_shared == NULL)
		return NULL;
	LWLockAcquire(dbpg_shared->wait_lock, LW_EXCLUSIVE);
	if (me->state == DBPG_WAIT_GRANTED)
		granted = me->bucket;
	give_up(me, NULL);
	LWLockRelease(dbpg_shared->wait_lock);
	return granted;
}

/*
 * Might a waiter use what a release of b frees (with a pool slot when
 * repaid), or a pool slot given back (b NULL)?  An own slot of b serves
 * only b's waiters; a pool slot, those that may borrow.
 */
static bool
release_matters(DbpgBucket *b, bool repaid)
{
	if (pg_atomic_read_u32(&dbpg_shared->waiters) == 0)
		return false;
	if (b != NULL && pg_atomic_read_u32(&b->waiters) > 0)
		return true;
	return repaid && pg_atomic_read_u32(&dbpg_shared->pool_waiters) > 0;
}

/*
 * After a release without the lock, or a pool slot reserved and given
 * back unused outside it (b NULL): a login that joined meanwhile may have
 * found the slot taken.
 */
static void
after_release(DbpgBucket *b, bool repaid)
{
	if (!release_matters(b, repaid))
		return;
	LWLockAcquire(dbpg_shared->wait_lock, LW_EXCLUSIVE);
	grant_pass();
	LWLockRelease(dbpg_shared->wait_lock);
}

/*
 * Give back a slot of b, repaying the pool first, and hand over what came
 * free.  While a waiter may use it, the release itself is made under the
 * wait lock, so that no grant pass sees it happen in its middle.
 * Otherwise it is made without the lock and the counts of waiters are
 * read again after it: a login that joined meanwhile added itself to
 * them before its pass read the slot word, and both steps are full
 * barriers, so either its pass saw the slot free or this sees it.
 */
void
dbpg_queue_release(DbpgBucket *b)
{
	bool		may_repay = DBPG_SLOTS_BORROWED(pg_atomic_read_u64(&b->slots)) > 0;

	if (release_matters(b, may_repay))
	{
		LWLockAcquire(dbpg_shared->wait_lock, LW_EXCLUSIVE);
		dbpg_slot_release(b);
		grant_pass();
		LWLockRelease(dbpg_shared->wait_lock);
		return;
	}
	after_release(b, dbpg_slot_release(b));
}

/* One row of dbpool_guard.waiting_logins, copied under the lock. */
typedef struct WaiterCopy
{
	int			pid;
	char		service[NAMEDATALEN];
	NameData	user_name;
	NameData	database_name;
	char		client_addr[64];
	TimestampTz since;
	int			position;
} WaiterCopy;

/*
 * dbpool_guard.waiting_logins: the logins waiting now, oldest first, with
 * their place among their service's waiters.
 */
Datum
dbpool_guard_waiting_logins_1_5(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	WaiterCopy *rows;
	int			n = 0;
	TimestampTz now = GetCurrentTimestamp();

	dbpg_require_shared();
	dbpg_init_srf(fcinfo);
	rows = palloc(sizeof(WaiterCopy) * dbpg_nholdings);

	LWLockAcquire(dbpg_shared->wait_lock, LW_SHARED);
	for (int i = dbpg_shared->wait_head; i >= 0 && n < dbpg_nholdings;
		 i = dbpg_waiters[i].next)
	{
		DbpgWaiter *w = &dbpg_waiters[i];
		WaiterCopy *c = &rows[n++];

		c->pid = w->pid;
		memcpy(c->service, w->bucket->name, NAMEDATALEN);
		c->user_name = w->user_name;
		c->database_name = w->database_name;
		memcpy(c->client_addr, w->client_addr, sizeof(c->client_addr));
		c->since = w->since;
		c->position = 1;
		for (int k = 0; k < n - 1; k++)
		{
			if (strcmp(rows[k].service, c->service) == 0)
				c->position++;
		}
	}
	LWLockRelease(dbpg_shared->wait_lock);

	for (int k = 0; k < n; k++)
	{
		WaiterCopy *c = &rows[k];
		Datum		values[WAITING_LOGINS_COLS];
		bool		nulls[WAITING_LOGINS_COLS];

		memset(nulls, 0, sizeof(nulls));
		values[0] = Int32GetDatum(c->pid);
		values[1] = CStringGetTextDatum(c->service);
		values[2] = CStringGetTextDatum(NameStr(c->user_name));
		values[3] = CStringGetTextDatum(NameStr(c->database_name));
		values[4] = dbpg_client_addr_datum(c->client_addr, &nulls[4]);
		values[5] = TimestampTzGetDatum(c->since);
		values[6] = IntervalPGetDatum(dbpg_interval_usecs(now > c->since ? now - c->since : 0));
		values[7] = Int32GetDatum(c->position);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * dbpool_guard.cancel_waiting_login(pid): make a waiting login give up at
 * once with a refusal.  true when it was waiting.
 */
Datum
dbpool_guard_cancel_waiting_login_1_5(PG_FUNCTION_ARGS)
{
	int			pid = PG_GETARG_INT32(0);
	bool		found = false;

	dbpg_require_shared();
	if (pid <= 0)
		PG_RETURN_BOOL(false);
	LWLockAcquire(dbpg_shared->wait_lock, LW_EXCLUSIVE);
	for (int i = dbpg_shared->wait_head; i >= 0; i = dbpg_waiters[i].next)
	{
		DbpgWaiter *w = &dbpg_waiters[i];

		if (w->pid != pid)
			continue;
		unlink_waiter(i);
		w->state = DBPG_WAIT_CANCELLED;
		SetLatch(&w->proc->procLatch);
		found = true;
		break;
	}
	LWLockRelease(dbpg_shared->wait_lock);
	PG_RETURN_BOOL(found);
}
