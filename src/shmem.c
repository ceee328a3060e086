/*-------------------------------------------------------------------------
 * shmem.c
 *		Shared state: the service buckets, the holdings array and the
 *		rejection ring.
 *
 * Bucket lifetime: a named bucket is created by the first counted login
 * (or refused claim) of a service listed in dbpool_guard.budgets, and is
 * never removed or reused while the server runs.  So a bucket pointer,
 * once found, names the same service until shared memory is reset (a
 * restart or a crash restart): counters can be updated, and refusals
 * recorded, after the lock is released, and no backend's copy of
 * dbpool_guard.budgets (which may be older or newer than others' around
 * a reload) ever decides the fate of another service's bucket.  Only
 * listed names get buckets, so clients cannot fill the table; it fills
 * only when more than max_services distinct names were listed since the
 * server started.  Then a listed service that has no bucket yet is
 * admitted without a budget and counted in "overflow" (fail open, with
 * a WARNING at most once a minute); a restart, or a larger max_services,
 * clears the names that are no longer listed.
 *
 * Locking:
 *	- a bucket's counters are atomics, taken and released without a lock;
 *	- the hash of named buckets is under the first lock of our tranche:
 *	  logins look up in LW_SHARED and take their slot before letting go,
 *	  and only a miss (a service added by a reload) inserts under
 *	  LW_EXCLUSIVE, after looking again for the name;
 *	- a holding and a bucket's sample are under their own spinlocks;
 *	- the rejection ring is under the second lock.
 *
 * Everything is set up again by a crash restart, so every counter starts
 * from zero after any restart.
 *
 * IDENTIFICATION
 *		src/shmem.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/hsearch.h"

#include "compat.h"
#include "dbpool_guard.h"

DbpgShared *dbpg_shared = NULL;
HTAB	   *dbpg_hash = NULL;
DbpgHolding *dbpg_holdings = NULL;
int			dbpg_nholdings = 0;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
holdings_size(void)
{
	return mul_size(MaxBackends, sizeof(DbpgHolding));
}

static void
dbpg_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(MAXALIGN(sizeof(DbpgShared)));
	RequestAddinShmemSpace(hash_estimate_size(dbpg_max_services,
											  sizeof(DbpgBucket)));
	RequestAddinShmemSpace(MAXALIGN(holdings_size()));
	RequestNamedLWLockTranche(DBPG_TRANCHE, 2);
}

void
dbpg_bucket_init(DbpgBucket *b)
{
	/* the name (hash key) is already set */
	pg_atomic_init_u32(&b->in_use, 0);
	pg_atomic_init_u32(&b->peak, 0);
	pg_atomic_init_u64(&b->admitted, 0);
	pg_atomic_init_u64(&b->rejected, 0);
	pg_atomic_init_u64(&b->would_reject, 0);
	pg_atomic_init_u64(&b->terminated, 0);
	pg_atomic_init_u64(&b->misattributed, 0);
	pg_atomic_init_u64(&b->last_rejected_at, 0);
	pg_atomic_init_u64(&b->log_second, 0);
	pg_atomic_init_u32(&b->log_suppressed, 0);
	pg_atomic_init_u64(&b->claim_log_second, 0);
	pg_atomic_init_u32(&b->claim_log_suppressed, 0);
	SpinLockInit(&b->mutex);
	memset(&b->sample, 0, sizeof(b->sample));
	memset(&b->scratch, 0, sizeof(b->scratch));
	b->pass = 0;
	b->warned = false;
	b->mismatches = 0;
}

static void
dbpg_shmem_startup(void)
{
	bool		found;
	HASHCTL		info;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);

	dbpg_shared = ShmemInitStruct("dbpool_guard", sizeof(DbpgShared), &found);
	if (!found)
	{
		LWLockPadded *locks = GetNamedLWLockTranche(DBPG_TRANCHE);

		memset(dbpg_shared, 0, sizeof(DbpgShared));
		dbpg_shared->lock = &locks[0].lock;
		dbpg_shared->ring_lock = &locks[1].lock;
		dbpg_shared->nbuckets = 0;
		dbpg_shared->passes = 0;
		pg_atomic_init_u64(&dbpg_shared->overflow, 0);
		pg_atomic_init_u64(&dbpg_shared->last_overflow_log, 0);
		pg_atomic_init_u64(&dbpg_shared->sampled_at, 0);
		strlcpy(dbpg_shared->deflt.name, "*", NAMEDATALEN);
		dbpg_bucket_init(&dbpg_shared->deflt);
		dbpg_shared->ring_next = 0;
	}

	dbpg_nholdings = MaxBackends;
	dbpg_holdings = ShmemInitStruct("dbpool_guard holdings", holdings_size(),
									&found);
	if (!found)
	{
		for (int i = 0; i < dbpg_nholdings; i++)
		{
			memset(&dbpg_holdings[i], 0, sizeof(DbpgHolding));
			SpinLockInit(&dbpg_holdings[i].mutex);
		}
	}

	memset(&info, 0, sizeof(info));
	info.keysize = NAMEDATALEN;
	info.entrysize = sizeof(DbpgBucket);
	dbpg_hash = ShmemInitHash("dbpool_guard services",
							  dbpg_max_services, dbpg_max_services,
							  &info, HASH_ELEM | HASH_STRINGS);

	LWLockRelease(AddinShmemInitLock);
}

void
dbpg_shmem_init_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = dbpg_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = dbpg_shmem_startup;
}

/* For SQL functions: a clear error when the library was not preloaded. */
void
dbpg_require_shared(void)
{
	if (dbpg_shared == NULL || dbpg_hash == NULL)
		ereport(ERROR,
				errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				errmsg("dbpool_guard must be loaded via \"shared_preload_libraries\""),
				errhint("Add dbpool_guard to \"shared_preload_libraries\" in postgresql.conf and restart the server."));
}

/*
 * Find or insert a named bucket.  The caller holds dbpg_shared->lock
 * exclusively.  An existing entry is always found, however full the
 * table is (a concurrent first login may have inserted it since the
 * caller's shared-lock miss); NULL only when the name is new and the
 * table is full.  Buckets are never removed: see the top comment.
 */
DbpgBucket *
dbpg_bucket_insert(const char *name)
{
	DbpgBucket *b;
	bool		found;

	b = hash_search(dbpg_hash, name, HASH_FIND, NULL);
	if (b != NULL)
		return b;
	if (dbpg_shared->nbuckets >= dbpg_max_services)
		return NULL;

	b = hash_search(dbpg_hash, name, HASH_ENTER_NULL, &found);
	if (b == NULL)
		return NULL;
	if (!found)
	{
		dbpg_bucket_init(b);
		dbpg_shared->nbuckets++;
	}
	return b;
}

/*
 * How many services listed in cfg would be admitted without a budget now:
 * those with no bucket while the table is full.  0 while there is room.
 */
int
dbpg_unguarded_services(const DbpgBudgets *cfg)
{
	int			n = 0;

	if (cfg == NULL)
		return 0;
	LWLockAcquire(dbpg_shared->lock, LW_SHARED);
	if (dbpg_shared->nbuckets >= dbpg_max_services)
	{
		for (int i = 0; i < cfg->nentries; i++)
		{
			if (hash_search(dbpg_hash, cfg->entries[i].name, HASH_FIND, NULL) == NULL)
				n++;
		}
	}
	LWLockRelease(dbpg_shared->lock);
	return n;
}
