/*-------------------------------------------------------------------------
 * slots.c
 *		Taking and giving back a bucket's slots, and the burst pool.
 *
 * A bucket's slot word holds its slots in use and, of those, how many are
 * borrowed from the burst pool (dbpool_guard.h).  A login of a service
 * takes an own slot while the service's own slots in use (in use minus
 * borrowed) are below its cap; otherwise a borrowed one while the service
 * borrows fewer than its burst and the pool has a free slot.  The pool is
 * one counter of slots lent, server-wide.
 *
 * Everything here is atomics, without a lock:
 *	- to borrow, a pool slot is reserved first, then the bucket's word
 *	  moved; if the bucket's step fails (the service reached its burst
 *	  meanwhile) the pool slot goes back, and if an own slot came free
 *	  meanwhile the login takes that and gives the pool slot back;
 *	- a release repays first: when the bucket holds borrowed slots, the
 *	  bucket's borrowed count and the pool's lent count go down by one
 *	  with the slot, whichever slot the leaving session had taken.  So no
 *	  session needs to remember what it took, and (until a reload raises
 *	  its cap) a service that holds borrowed slots holds no own slot free.
 * Hence, at every instant: a service's own slots never exceed its cap and
 * its borrowed slots never exceed its burst, as the admitting backend's
 * settings say, and the slots lent never exceed the pool.  A reload that
 * lowers a cap, a burst or the pool takes nothing back: new logins find
 * the limit reached until releases bring the counts under it.
 *
 * IDENTIFICATION
 *		src/slots.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "compat.h"
#include "dbpool_guard.h"

/* Reserve a slot of the pool, of size limit as the caller's settings say. */
static bool
pool_reserve(uint32 limit)
{
	uint32		lent = pg_atomic_read_u32(&dbpg_shared->pool_lent);

	while (lent < limit)
	{
		if (pg_atomic_compare_exchange_u32(&dbpg_shared->pool_lent, &lent, lent + 1))
			return true;
		/* a failed exchange refreshed lent */
	}
	return false;
}

static void
pool_return(void)
{
	pg_atomic_fetch_sub_u32(&dbpg_shared->pool_lent, 1);
}

/*
 * Take a slot of bucket b within lim: an own slot if one is free, else a
 * borrowed one if may_borrow; false when neither.  *seen is the bucket's
 * slot word before the step (or now, when nothing was taken).  A borrower is refused only
 * if the bucket's word read after finding the pool full is the one read
 * before (a change and its undoing in between go unseen): the bucket was
 * at its limits when the pool had no free slot.
 *
 * *gave_back is set when a pool slot was reserved and given back unused
 * (an own slot came free meanwhile).  A waiter that joined while it was
 * reserved may have found the pool full: a caller outside the wait lock
 * uses dbpg_queue_take(), which wakes the queue then.
 */
bool
dbpg_slot_take(DbpgBucket *b, const DbpgLimits *lim, bool may_borrow,
			   uint64 *seen, bool *gave_back)
{
	uint64		cur = pg_atomic_read_u64(&b->slots);
	bool		reserved = false;
	bool		took = false;

	for (;;)
	{
		uint32		in_use = DBPG_SLOTS_IN_USE(cur);
		uint32		borrowed = DBPG_SLOTS_BORROWED(cur);

		if (in_use - borrowed < lim->cap)
		{
			if (pg_atomic_compare_exchange_u64(&b->slots, &cur, cur + DBPG_SLOT_ONE))
			{
				took = true;
				break;
			}
			continue;
		}
		if (!may_borrow || borrowed >= lim->burst)
			break;
		if (!reserved)
		{
			uint64		again;

			if (pool_reserve(lim->pool))
			{
				reserved = true;
				continue;		/* cur may be stale by now: look again */
			}
			again = pg_atomic_read_u64(&b->slots);
			if (again == cur)
				break;
			cur = again;
			continue;
		}
		if (pg_atomic_compare_exchange_u64(&b->slots, &cur,
										   cur + DBPG_SLOT_ONE + DBPG_SLOT_BORROWED_ONE))
		{
			reserved = false;
			took = true;
			break;
		}
	}
	if (reserved)
		pool_return();
	*gave_back = reserved;
	*seen = cur;
	return took;
}

/*
 * Count a slot without a limit (no cap for the service, or monitor mode
 * admitting over the cap); returns the slot word before.
 */
uint64
dbpg_slot_add(DbpgBucket *b)
{
	return pg_atomic_fetch_add_u64(&b->slots, DBPG_SLOT_ONE);
}

/*
 * Give back one slot of b, repaying the pool first; true when a pool slot
 * was repaid.
 */
bool
dbpg_slot_release(DbpgBucket *b)
{
	uint64		cur = pg_atomic_read_u64(&b->slots);

	for (;;)
	{
		bool		repay = DBPG_SLOTS_BORROWED(cur) > 0;
		uint64		next = cur - DBPG_SLOT_ONE - (repay ? DBPG_SLOT_BORROWED_ONE : 0);

		Assert(DBPG_SLOTS_IN_USE(cur) > 0);
		if (pg_atomic_compare_exchange_u64(&b->slots, &cur, next))
		{
			if (repay)
				pool_return();
			return repay;
		}
	}
}
