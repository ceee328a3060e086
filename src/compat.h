/*-------------------------------------------------------------------------
 * compat.h
 *		Every difference between PostgreSQL 15, 16, 17 and 18 that
 *		dbpool_guard meets, in one place.
 *
 * IDENTIFICATION
 *		src/compat.h
 *-------------------------------------------------------------------------
 */
#ifndef DBPG_COMPAT_H
#define DBPG_COMPAT_H

#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/postmaster.h"
#include "storage/proc.h"
#include "utils/backend_status.h"
#include "utils/guc.h"
#include "utils/wait_event.h"

#if PG_VERSION_NUM < 150000 || PG_VERSION_NUM >= 190000
#error "dbpool_guard supports PostgreSQL 15 to 18"
#endif

/* 16: fmgr.h declares _PG_init itself. */
#if PG_VERSION_NUM < 160000
extern void _PG_init(void);
#endif

/* 16: GUC "extra" blocks come from guc_malloc() instead of malloc(). */
#if PG_VERSION_NUM < 160000
#define dbpg_guc_malloc(sz)		malloc(sz)
#define dbpg_guc_free(p)		free(p)
#else
#define dbpg_guc_malloc(sz)		guc_malloc(LOG, (sz))
#define dbpg_guc_free(p)		guc_free(p)
#endif

/*
 * 17: MyBackendId (1-based) became MyProcNumber (0-based).  Either way a
 * regular backend's index is below MaxBackends and set before
 * authentication.
 */
#if PG_VERSION_NUM < 170000
#include "storage/backendid.h"
#define dbpg_my_index()			((int) MyBackendId - 1)
#else
#include "storage/procnumber.h"
#define dbpg_my_index()			((int) MyProcNumber)
#endif

/* 16: the local status snapshot is read by index with a new name (1-based). */
#if PG_VERSION_NUM < 160000
#define dbpg_local_beentry(i)	pgstat_fetch_stat_local_beentry(i)
#else
#define dbpg_local_beentry(i)	pgstat_get_local_beentry_by_index(i)
#endif

/* 16: superuser_reserved_connections was joined by reserved_connections. */
#if PG_VERSION_NUM < 160000
#define dbpg_reserved_connections()	(ReservedBackends)
#else
#define dbpg_reserved_connections() \
	(SuperuserReservedConnections + ReservedConnections)
#endif

/* 16: HaveNFreeProcs() also says how many it found. */
#if PG_VERSION_NUM < 160000
#define dbpg_have_free_procs(n)		HaveNFreeProcs(n)
#else
static inline bool
dbpg_have_free_procs(int n)
{
	int			nfree;

	return HaveNFreeProcs(n, &nfree);
}
#endif

/* 15.1: SetSingleFuncCall() was renamed InitMaterializedSRF(); 15 keeps both. */
#if PG_VERSION_NUM < 160000
#define dbpg_init_srf(fcinfo)	SetSingleFuncCall((fcinfo), 0)
#else
#define dbpg_init_srf(fcinfo)	InitMaterializedSRF((fcinfo), 0)
#endif

/* 16: the per-kind ACL checks became object_aclcheck(). */
#if PG_VERSION_NUM < 160000
#define dbpg_function_aclcheck(fn, role) \
	pg_proc_aclcheck((fn), (role), ACL_EXECUTE)
#else
#define dbpg_function_aclcheck(fn, role) \
	object_aclcheck(ProcedureRelationId, (fn), (role), ACL_EXECUTE)
#endif

/* 17: extensions can name their wait events. */
#if PG_VERSION_NUM < 170000
#define dbpg_wait_event_main()	((uint32) PG_WAIT_EXTENSION)
#define dbpg_wait_event_login()	((uint32) PG_WAIT_EXTENSION)
#else
#define dbpg_wait_event_main()	WaitEventExtensionNew("DbpoolGuardMain")
#define dbpg_wait_event_login()	WaitEventExtensionNew("DbpoolGuardLoginWait")
#endif

/*
 * 18: the module magic block can carry a name and a version.  The version
 * is the control file's default_version, passed in by the Makefile.
 */
#if PG_VERSION_NUM < 180000
#define DBPG_MODULE_MAGIC		PG_MODULE_MAGIC
#else
#ifndef DBPG_VERSION
#error "DBPG_VERSION is not set: build with the Makefile, which reads it from dbpool_guard.control"
#endif
#define DBPG_MODULE_MAGIC \
	PG_MODULE_MAGIC_EXT(.name = "dbpool_guard", .version = DBPG_VERSION)
#endif

/*
 * Checked against 15-18 and needing no guard:
 * - shmem_request_hook exists from 15, the oldest major supported.
 * - The login wait (waiting.c) uses WL_SOCKET_CLOSED, WaitEventSetCanReportClosed(),
 *   get_timeout_active() and get_timeout_finish_time(), all in 15-18 (18
 *   moved the WL_* flags to storage/waiteventset.h, which latch.h
 *   includes); in each, ClientAuthentication() runs with the
 *   authentication timer armed as STATEMENT_TIMEOUT, inside the startup
 *   transaction.
 * - 16 hides symbols by default: dbpg_worker_main is declared PGDLLEXPORT
 *   (src/worker.c), which every major accepts.
 * - 18 adds STATE_STARTING and shows backends in pg_stat_activity before
 *   authentication (pgstat_bestart() split in three steps); the worker
 *   only classifies sessions it admitted, and any unknown state falls
 *   into none of the per-state columns.
 * - The local status accessors (15 and 16+ above) index the snapshot, not
 *   the proc array: sessions are matched on st_procpid, never on an index.
 */

#endif							/* DBPG_COMPAT_H */
