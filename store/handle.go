package store

import (
	"fmt"
	"sync"
	"unsafe"

	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"
	"zombiezen.com/go/sqlite"
)

// The three SQLite calls of this file have no counterpart in the driver's
// API (zombiezen.com/go/sqlite v1.4.2, pinned in go.mod): the per-file
// control SQLITE_FCNTL_PERSIST_WAL, the connection option
// SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE and the WAL commit hook. They are made
// directly on the C library (modernc.org/sqlite/lib), which needs the two
// handles the driver keeps in the first two fields of its Conn: the
// connection's *libc.TLS and its sqlite3*. TestRawConn checks that the
// handles read here are the connection's own; a driver upgrade that moves
// them fails that test, not production.

// connHandles mirrors the head of zombiezen's Conn:
//
//	type Conn struct {
//		tls  *libc.TLS
//		conn uintptr
//		...
type connHandles struct {
	tls *libc.TLS
	db  uintptr
}

// rawConn returns conn's TLS and sqlite3 handle.
func rawConn(conn *sqlite.Conn) (*libc.TLS, uintptr) {
	h := (*connHandles)(unsafe.Pointer(conn))
	return h.tls, h.db
}

// persistWAL keeps the -wal file of conn's database when the connection
// closes or checkpoints, instead of deleting it and creating it again on
// the next write: that costs an inode allocation and a directory sync on
// every open/write/close cycle.
func persistWAL(conn *sqlite.Conn) error {
	tls, db := rawConn(conn)
	main, err := libc.CString("main")
	if err != nil {
		return err
	}
	defer libc.Xfree(tls, main)
	if rc := lib.Xsqlite3_file_control(tls, db, main, lib.SQLITE_FCNTL_PERSIST_WAL, uintptr(unsafe.Pointer(&persistOn))); rc != lib.SQLITE_OK {
		return fmt.Errorf("store: persist WAL: %w", sqlite.ResultCode(rc).ToError())
	}
	return nil
}

// persistOn is the argument of SQLITE_FCNTL_PERSIST_WAL: a positive value
// sets the flag and is only read. A global, because the C code is handed
// its address and a Go variable on a stack could move.
var persistOn int32 = 1

// noCheckpointOnClose makes closing conn leave its WAL for the next open
// instead of checkpointing it into the database (SQLite's default).
func noCheckpointOnClose(conn *sqlite.Conn) error {
	tls, db := rawConn(conn)
	va := libc.NewVaList(int32(1), uintptr(0))
	if va == 0 {
		return fmt.Errorf("store: checkpoint on close: out of memory")
	}
	defer libc.Xfree(tls, va)
	if rc := lib.Xsqlite3_db_config(tls, db, lib.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, va); rc != lib.SQLITE_OK {
		return fmt.Errorf("store: checkpoint on close: %w", sqlite.ResultCode(rc).ToError())
	}
	return nil
}

// walFrames holds, per sqlite3 handle with a hook from watchWAL, the frames
// its WAL held after the last commit.
var walFrames sync.Map // uintptr -> *int32

// watchWAL makes every commit on conn record in *frames how many frames its
// WAL holds, and turns off SQLite's own checkpoint after commits (which the
// hook replaces): the stream checkpoints by size, off the request path.
// unwatchWAL must be called before conn is closed.
func watchWAL(conn *sqlite.Conn, frames *int32) {
	tls, db := rawConn(conn)
	walFrames.Store(db, frames)
	lib.Xsqlite3_wal_hook(tls, db, walHookPointer, 0)
}

func unwatchWAL(conn *sqlite.Conn) {
	_, db := rawConn(conn)
	walFrames.Delete(db)
}

// walHook runs inside COMMIT, on the goroutine that commits, which holds
// the stream's lock; so the counter needs no synchronisation of its own.
func walHook(_ *libc.TLS, _ uintptr, db uintptr, _ uintptr, frames int32) int32 {
	if p, ok := walFrames.Load(db); ok {
		*p.(*int32) = frames
	}
	return lib.SQLITE_OK
}

// walHookPointer is walHook as the C library calls it: a pointer to the
// function value, as the driver converts its own callbacks.
var walHookPointer = *(*uintptr)(unsafe.Pointer(&struct {
	f func(*libc.TLS, uintptr, uintptr, uintptr, int32) int32
}{walHook}))
