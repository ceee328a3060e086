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
 * Locking: this file owns the shared block, and is the only one that
 * names the bucket hash; of the two locks of our tranche it takes the
 * first, and waiting.c the second (the waiters' queue).
 *	- a bucket's counters are atomics, taken and released without a lock
 *	  (slots.c);
 *	- the hash of named buckets is under the first lock: a lookup
 *	  (dbpg_bucket_find, dbpg_bucket_get) holds it in LW_SHARED for one
 *	  hash probe, and only a miss of dbpg_bucket_get (a service added by
 *	  a reload) inserts under LW_EXCLUSIVE, after looking again for the
 *	  name; dbpg_buckets_foreach holds it shared for the whole walk, so
 *	  its callback must be short and must not take it again;
 *	- the rejection ring takes no lock: a refusal claims an entry with an
 *	  atomic increment and marks it whole when written (dbpg_ring_record);
 *	- a holding and a bucket's sample are under their own spinlocks.
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
#include "utils/timestamp.h"

#include "compat.h"
#include "dbpool_guard.h"

DbpgShared *dbpg_shared = NULL;
DbpgHolding *dbpg_holdings = NULL;
DbpgWaiter *dbpg_waiters = NULL;
int			dbpg_nholdings = 0;

/* The named buckets: a shared hash keyed by name (this file only). */
static HTAB *dbpg_hash = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
holdings_size(void)
{
	return mul_size(MaxBackends, sizeof(DbpgHolding));
}

static Size
waiters_size(void)
{
	return mul_size(MaxBackends, sizeof(DbpgWaiter));
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
	RequestAddinShmemSpace(MAXALIGN(waiters_size()));
	RequestNamedLWLockTranche(DBPG_TRANCHE, 2);
}

static void
log_limit_init(DbpgLogLimit *l)
{
	pg_atomic_init_u64(&l->second, 0);
	pg_atomic_init_u32(&l->suppressed, 0);
}

static void
bucket_init(DbpgBucket *b)
{
	/* the name (hash key) is already set */
	pg_atomic_init_u64(&b->slots, 0);
	pg_atomic_init_u32(&b->peak, 0);
	pg_atomic_init_u64(&b->admitted, 0);
	pg_atomic_init_u64(&b->rejected, 0);
	pg_atomic_init_u64(&b->would_reject, 0);
	pg_atomic_init_u64(&b->terminated, 0);
	pg_atomic_init_u64(&b->misattributed, 0);
	pg_atomic_init_u64(&b->last_rejected_at, 0);
	pg_atomic_init_u32(&b->waiters, 0);
	b->wait_pass = 0;
	b->wait_fail_cap = 0;
	b->wait_fail_burst = -1;
	pg_atomic_init_u64(&b->waited, 0);
	pg_atomic_init_u64(&b->wait_timeouts, 0);
	log_limit_init(&b->refusal_log);
	log_limit_init(&b->claim_log);
	SpinLockInit(&b->mutex);
	memset(&b->sample, 0, sizeof(b->sample));
	memset(&b->worker, 0, sizeof(b->worker));
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
		dbpg_shared->wait_lock = &locks[1].lock;
		dbpg_shared->nbuckets = 0;
		dbpg_shared->passes = 0;
		pg_atomic_init_u64(&dbpg_shared->overflow, 0);
		log_limit_init(&dbpg_shared->overflow_log);
		pg_atomic_init_u64(&dbpg_shared->sampled_at, 0);
		strlcpy(dbpg_shared->deflt.name, "*", NAMEDATALEN);
		bucket_init(&dbpg_shared->deflt);
		pg_atomic_init_u32(&dbpg_shared->pool_lent, 0);
		pg_atomic_init_u32(&dbpg_shared->waiters, 0);
		pg_atomic_init_u32(&dbpg_shared->pool_waiters, 0);
		dbpg_shared->wait_head = -1;
		dbpg_shared->wait_tail = -1;
		dbpg_shared->next_ticket = 1;
		pg_atomic_init_u64(&dbpg_shared->ring_next, 0);
		pg_atomic_init_u64(&dbpg_shared->ring_base, 0);
		for (int i = 0; i < DBPG_RING_SIZE; i++)
			pg_atomic_init_u64(&dbpg_shared->ring[i].seq, 0);
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

	dbpg_waiters = ShmemInitStruct("dbpool_guard waiters", waiters_size(),
								   &found);
	if (!found)
	{
		for (int i = 0; i < dbpg_nholdings; i++)
		{
			memset(&dbpg_waiters[i], 0, sizeof(DbpgWaiter));
			dbpg_waiters[i].prev = -1;
			dbpg_waiters[i].next = -1;
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
 * A named bucket, or NULL when the service has none (no counted login
 * since the start).  Buckets are never removed: the pointer stays valid
 * after the lock is released.
 */
DbpgBucket *
dbpg_bucket_find(const char *name)
{
	DbpgBucket *b;

	if (strlen(name) >= NAMEDATALEN)
		return NULL;
	LWLockAcquire(dbpg_shared->lock, LW_SHARED);
	b = hash_search(dbpg_hash, name, HASH_FIND, NULL);
	LWLockRelease(dbpg_shared->lock);
	return b;
}

/*
 * A named bucket, inserted when a reload listed the service since its
 * last login.  An existing bucket is always found, however full the
 * table is (a concurrent first login may have inserted it since our
 * shared-lock miss); NULL only when the name is new and the table is
 * full.  name is shorter than NAMEDATALEN.
 */
DbpgBucket *
dbpg_bucket_get(const char *name)
{
	DbpgBucket *b;
	bool		found;

	LWLockAcquire(dbpg_shared->lock, LW_SHARED);
	b = hash_search(dbpg_hash, name, HASH_FIND, NULL);
	LWLockRelease(dbpg_shared->lock);
	if (b != NULL)
		return b;

	LWLockAcquire(dbpg_shared->lock, LW_EXCLUSIVE);
	b = hash_search(dbpg_hash, name, HASH_FIND, NULL);
	if (b == NULL && dbpg_shared->nbuckets < dbpg_max_services)
	{
		b = hash_search(dbpg_hash, name, HASH_ENTER_NULL, &found);
		if (b != NULL && !found)
		{
			bucket_init(b);
			dbpg_shared->nbuckets++;
		}
	}
	LWLockRelease(dbpg_shared->lock);
	return b;
}

/*
 * Call fn for every named bucket (not "*"), in no particular order, with
 * the hash lock held shared: fn must be short and must not look up
 * buckets.  Logins of known services go on meanwhile; only an insert
 * waits.
 */
void
dbpg_buckets_foreach(void (*fn) (DbpgBucket *b, void *arg), void *arg)
{
	HASH_SEQ_STATUS status;
	DbpgBucket *b;

	LWLockAcquire(dbpg_shared->lock, LW_SHARED);
	hash_seq_init(&status, dbpg_hash);
	while ((b = hash_seq_search(&status)) != NULL)
		fn(b, arg);
	LWLockRelease(dbpg_shared->lock);
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

/*
 * Add a refusal to the ring, overwriting the oldest, without a lock: the
 * entry is claimed with an atomic increment, then its slot is taken by
 * moving its seq from even (whole) to odd (being written), filled, and
 * marked whole again with seq = 2 * (number + 1).  A slot still being
 * written by another writer is left to it, and a slot that already holds
 * a newer entry (this writer was lapped) is left as it is: the refusal is
 * then counted but not shown.  Entries are numbered in the order they were claimed; the time
 * is read just before, so two refusals in the same microseconds may show
 * in either order.  An enforced refusal moves b's last_rejected_at
 * forward to its time.
 */
void
dbpg_ring_record(DbpgRejection *r, DbpgBucket *b)
{
	uint64		n;
	uint64		seq;
	DbpgRingEntry *slot;

	r->at = GetCurrentTimestamp();
	if (r->enforced)
	{
		uint64		last = pg_atomic_read_u64(&b->last_rejected_at);

		while ((uint64) r->at > last &&
			   !pg_atomic_compare_exchange_u64(&b->last_rejected_at, &last,
											   (uint64) r->at))
			;
	}
	n = pg_atomic_fetch_add_u64(&dbpg_shared->ring_next, 1);
	slot = &dbpg_shared->ring[n % DBPG_RING_SIZE];
	seq = pg_atomic_read_u64(&slot->seq);
	/* odd: a writer holds it; above 2n: a newer entry is there already */
	if ((seq & 1) != 0 || seq > 2 * n ||
		!pg_atomic_compare_exchange_u64(&slot->seq, &seq, 2 * n + 1))
		return;
	/* the exchange is a full barrier: seq is odd before the entry changes */
	memcpy(&slot->r, r, sizeof(DbpgRejection));
	pg_write_barrier();
	pg_atomic_write_u64(&slot->seq, 2 * (n + 1));
}

/*
 * Copy the entries recorded since the last reset, newest first, into
 * out[DBPG_RING_SIZE]; returns how many.  An entry being written, or
 * overwritten while copied, is left out.
 */
int
dbpg_ring_copy(DbpgRejection *out)
{
	uint64		next = pg_atomic_read_u64(&dbpg_shared->ring_next);
	uint64		base = pg_atomic_read_u64(&dbpg_shared->ring_base);
	uint64		first = next > DBPG_RING_SIZE ? next - DBPG_RING_SIZE : 0;
	int			count = 0;

	pg_read_barrier();
	if (base > first)
		first = base;
	for (uint64 n = next; n > first; n--)
	{
		/* entry n - 1, whole */
		DbpgRingEntry *slot = &dbpg_shared->ring[(n - 1) % DBPG_RING_SIZE];

		if (pg_atomic_read_u64(&slot->seq) != 2 * n)
			continue;
		pg_read_barrier();
		memcpy(&out[count], &slot->r, sizeof(DbpgRejection));
		pg_read_barrier();
		if (pg_atomic_read_u64(&slot->seq) == 2 * n)
			count++;
	}
	return count;
}

/* Forget the entries recorded so far (reset_counters()). */
void
dbpg_ring_reset(void)
{
	pg_atomic_write_u64(&dbpg_shared->ring_base,
						pg_atomic_read_u64(&dbpg_shared->ring_next));
}
