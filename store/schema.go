package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"
	"zombiezen.com/go/sqlite"

	"github.com/nats-persist/persist/subjects"
)

// applicationID marks a SQLite file as a stream file (PRAGMA application_id,
// bytes 68-71 of the header). Files without it are never written to, so a
// foreign database that happens to sit in the data directory stays intact.
const applicationID = 0x50727374 // "Prst"

// migrations are applied in order; PRAGMA user_version counts the ones a
// file has. Never edit a released entry: append a new one.
var migrations = []string{
	// 1: messages, per-stream counters and the message-id window.
	`CREATE TABLE meta (
		id        INTEGER PRIMARY KEY CHECK (id = 1),
		last_seq  INTEGER NOT NULL,
		last_time INTEGER NOT NULL,
		revision  INTEGER NOT NULL,
		count     INTEGER NOT NULL,
		bytes     INTEGER NOT NULL,
		config    TEXT NOT NULL
	);
	CREATE TABLE msgs (
		seq     INTEGER PRIMARY KEY,
		time    INTEGER NOT NULL,
		key     TEXT,
		expires INTEGER,
		size    INTEGER NOT NULL,
		flags   INTEGER NOT NULL,
		header  BLOB,
		data    BLOB NOT NULL
	);
	CREATE UNIQUE INDEX msgs_key ON msgs (key) WHERE key IS NOT NULL;
	CREATE INDEX msgs_expires ON msgs (expires) WHERE expires IS NOT NULL;
	CREATE TABLE msg_ids (
		id   TEXT PRIMARY KEY,
		seq  INTEGER NOT NULL,
		time INTEGER NOT NULL
	) WITHOUT ROWID;
	CREATE INDEX msg_ids_time ON msg_ids (time);`,

	// 2: message counts per block of 1024 seqs, kept by triggers on every
	// insert and delete whatever the path, so that counting the messages
	// of a seq range (getall's Num-Pending) visits at most two partial
	// blocks instead of every row.
	`CREATE TABLE blocks (
		block INTEGER PRIMARY KEY,
		n     INTEGER NOT NULL
	);
	INSERT INTO blocks (block, n) SELECT seq >> 10, count(*) FROM msgs GROUP BY seq >> 10;
	CREATE TRIGGER msgs_insert_block AFTER INSERT ON msgs BEGIN
		INSERT INTO blocks (block, n) VALUES (new.seq >> 10, 1)
			ON CONFLICT (block) DO UPDATE SET n = n + 1;
	END;
	CREATE TRIGGER msgs_delete_block AFTER DELETE ON msgs BEGIN
		UPDATE blocks SET n = n - 1 WHERE block = old.seq >> 10;
	END;`,

	// 3: the block counts are kept by the store in the same transaction
	// (one upsert per block a commit touched, see txn.countBlock): a
	// trigger per row made every insert and delete a statement of its own,
	// with its own statement journal. The counts are unchanged.
	`DROP TRIGGER msgs_insert_block;
	DROP TRIGGER msgs_delete_block;`,

	// 4: the name of the stream the file belongs to (NULL until the
	// file's first write: see Stream.load and Options.Name). It is
	// in the meta row, which every commit rewrites, so that a -wal of
	// another stream brings that stream's name with it. Adding the column
	// rewrites no row and keeps the meta table on the page it has in
	// every stream file.
	`ALTER TABLE meta ADD COLUMN name TEXT;`,

	// 5: the delete and config changes kept for the changes operation
	// (see changes.go), one row per change, keyed by its revision; a
	// set's change is its message. n numbers the rows 1, 2, 3, … so that
	// the rows kept are counted without a count(*); last_seq is the
	// stream's last seq when the change was made. gone_rev and gone_seq
	// are the revision and last seq of the newest change no longer kept:
	// a file made before this version kept none, so the changes of its
	// past are gone up to its revision now. Adding the columns rewrites
	// only the meta row.
	`CREATE TABLE changes (
		rev      INTEGER PRIMARY KEY,
		n        INTEGER NOT NULL,
		last_seq INTEGER NOT NULL,
		op       TEXT NOT NULL,
		reason   TEXT,
		body     BLOB NOT NULL
	);
	ALTER TABLE meta ADD COLUMN gone_rev INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE meta ADD COLUMN gone_seq INTEGER NOT NULL DEFAULT 0;
	UPDATE meta SET gone_rev = revision, gone_seq = last_seq;`,
}

// blockShift is the log2 of the seqs per row of the blocks table. It is
// part of the file format: a stream's blocks are always this size, except
// in tests of fresh streams, which may set Options.blockShift to get many
// small blocks from few messages.
const blockShift = 10

// The package's init turns off SQLite's per-connection lookaside allocator
// (48 KB per connection by default), its memory statistics (a global lock on
// every allocation) and the page cache's up-front bulk allocation. With
// thousands of mostly idle streams open, each with its own connection, these
// are a large part of the cost per stream. sqlite3_config works only before
// SQLite is initialised, hence init; should another package have initialised
// SQLite first, the calls fail and only memory is lost.
func init() {
	tls := libc.NewTLS()
	defer tls.Close()
	for _, c := range []struct {
		op   int32
		args []any
	}{
		{lib.SQLITE_CONFIG_LOOKASIDE, []any{int32(0), int32(0)}},
		{lib.SQLITE_CONFIG_MEMSTATUS, []any{int32(0)}},
		{lib.SQLITE_CONFIG_PAGECACHE, []any{uintptr(0), int32(0), int32(0)}},
	} {
		va := libc.NewVaList(c.args...)
		if va == 0 {
			continue
		}
		lib.Xsqlite3_config(tls, c.op, va)
		libc.Xfree(tls, va)
	}
}

// connPragmas are set on every stream connection. Exclusive locking keeps the
// WAL index in private memory (no -shm file and no shared mmap), and is what
// lets the stream's file layer take no locks (see lockFile); the small page
// cache bounds memory per open stream. (mmap_size is 0 by default in this
// build, so database pages are never mapped either.) walLimitPragma is not
// among them: see checkpoint.
var connPragmas = []string{
	"PRAGMA locking_mode=EXCLUSIVE",
	"PRAGMA cache_size=-64",
}

// walLimitPragma makes the first commit after a checkpoint that leaves
// the WAL longer than this truncate it to that.
const walLimitPragma = "PRAGMA journal_size_limit=2097152"

// template is an empty stream file, built once per process and copied to
// create new streams: writing a few pages and renaming is much faster than
// running the schema through SQLite for each stream.
var template struct {
	once  sync.Once
	bytes []byte
	err   error
}

func templateBytes() ([]byte, error) {
	template.once.Do(func() {
		template.bytes, template.err = buildTemplate()
	})
	return template.bytes, template.err
}

func buildTemplate() (_ []byte, err error) {
	dir, err := os.MkdirTemp("", "persist-template-")
	if err != nil {
		return nil, fmt.Errorf("store: build template: %w", err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "template.db")
	conn, err := sqlite.OpenConn(path, sqlite.OpenReadWrite|sqlite.OpenCreate)
	if err != nil {
		return nil, fmt.Errorf("store: build template: %w", err)
	}
	// Small pages keep the page cache of an open stream small; larger
	// payloads spill into overflow pages, which SQLite reads sequentially.
	err = execScript(conn, "PRAGMA page_size=1024")
	if err == nil {
		err = initSchema(conn)
	}
	if err == nil {
		// The WAL mode is recorded in the file header, so copies open in
		// WAL mode without a write.
		err = execScript(conn, "PRAGMA journal_mode=WAL")
	}
	if cerr := conn.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("store: build template: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("store: build template: %w", err)
	}
	return b, nil
}

// initSchema creates the schema of a new, empty database.
func initSchema(conn *sqlite.Conn) error {
	cfg, err := json.Marshal(subjects.DefaultConfig())
	if err != nil {
		return err
	}
	if err := migrate(conn, 0, "", ""); err != nil {
		return err
	}
	return execOnce(conn, "INSERT INTO meta (id, last_seq, last_time, revision, count, bytes, config) VALUES (1, 0, 0, 0, 0, 0, ?)", nil, string(cfg))
}

// migrate applies migrations[from:] in one transaction and records the new
// user_version and the application id. With name, the file at path must
// not belong to another stream (see nameErr), or nothing is committed: a
// file whose header is older than its -wal (one migrated since its last
// checkpoint) is seen by SQLite as its -wal has it, which may be another
// stream's.
func migrate(conn *sqlite.Conn, from int, path, name string) (err error) {
	if from == len(migrations) {
		return nil
	}
	if err := execScript(conn, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	defer func() {
		if err != nil && !conn.AutocommitEnabled() {
			execScript(conn, "ROLLBACK")
		}
	}()
	for _, m := range migrations[from:] {
		if err := execScript(conn, m); err != nil {
			return err
		}
	}
	if err := execScript(conn, fmt.Sprintf("PRAGMA application_id=%d; PRAGMA user_version=%d", applicationID, len(migrations))); err != nil {
		return err
	}
	if name != "" {
		var stored string
		if err := execOnce(conn, "SELECT name FROM meta WHERE id = 1", func(st *sqlite.Stmt) error {
			stored = st.ColumnText(0)
			return nil
		}); err != nil {
			return err
		}
		if err := nameErr(path, stored, name); err != nil {
			return err
		}
	}
	return execScript(conn, "COMMIT")
}

// nameErr reports a stream file at path that records the name stored
// ("": none) as damage when the stream opening it is named want ("": any
// stream).
func nameErr(path, stored, want string) error {
	if stored == "" || want == "" || stored == want {
		return nil
	}
	return fmt.Errorf("%w: %s: file belongs to stream %q, not %q", ErrCorrupt, path, stored, want)
}

// createFile creates a new stream file at path from the template. It never
// replaces an existing file: if another process or goroutine created the
// stream first, that one is kept.
func createFile(path string, durable bool) error {
	b, err := templateBytes()
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("store: create %s: %w", path, fileErr(err))
	}
	f, err := os.CreateTemp(dir, filepath.Base(path)+".new-*")
	if err != nil {
		return fmt.Errorf("store: create %s: %w", path, fileErr(err))
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.Write(b)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// A hard link, unlike rename, fails when path exists.
		err = os.Link(tmp, path)
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
	}
	if err == nil && durable {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("store: create %s: %w", path, fileErr(err))
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// checkFile inspects the header of the file at path without opening it with
// SQLite, so that a file that is not a stream file is never written to
// (SQLite may write to a file merely by opening it read-write: WAL recovery,
// checkpoints, journal mode changes).
func checkFile(path string) error {
	_, _, err := inspectFile(path)
	return err
}

// inspectFile is [checkFile] that also reports the schema version and
// whether the file is in WAL mode.
func inspectFile(path string) (version int, wal bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false, openErr(err)
	}
	defer f.Close()
	version, wal, _, err = inspectOpen(f, path)
	return version, wal, err
}

// openErr marks an error of opening a stream's file (or its -wal): for
// want of descriptors it is ErrTooManyOpen, which a budget can act on; a
// file that is there but cannot be opened (no permission, a directory in
// its place) is unreadable, which is damage: ErrCorrupt. Other errors,
// fs.ErrNotExist among them, are returned as they are.
func openErr(err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err
	}
	switch errno {
	case syscall.EMFILE, syscall.ENFILE:
		return fmt.Errorf("%w: %w", ErrTooManyOpen, err)
	case syscall.EACCES, syscall.EPERM, syscall.EISDIR:
		return fmt.Errorf("%w: unreadable: %w", ErrCorrupt, err)
	}
	return err
}

// inspectOpen is [inspectFile] on f, the file at path, already open; it
// also reports whether the file has a -wal beside it.
func inspectOpen(f *os.File, path string) (version int, wal, hasWAL bool, err error) {
	st, err := f.Stat()
	if err != nil {
		return 0, false, false, err
	}
	var h [100]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		return 0, false, false, fmt.Errorf("%w: %s: short header", ErrCorrupt, path)
	}
	version, wal = int(binary.BigEndian.Uint32(h[60:])), h[18] == 2 && h[19] == 2
	walSize := int64(-1)
	ws, werr := os.Stat(path + "-wal")
	if werr == nil {
		walSize = ws.Size()
	}
	if err := checkHeader(path, h, st.Size(), walSize); err != nil {
		return 0, false, false, err
	}
	return version, wal, !errors.Is(werr, fs.ErrNotExist), nil
}

// checkHeader checks the header h of the file at path, of size bytes,
// beside a -wal of walSize bytes (-1: none).
func checkHeader(path string, h [100]byte, size, walSize int64) error {
	if string(h[:16]) != "SQLite format 3\x00" {
		return fmt.Errorf("%w: %s: not a SQLite file", ErrCorrupt, path)
	}
	pageSize := int64(binary.BigEndian.Uint16(h[16:]))
	if pageSize == 1 {
		pageSize = 65536
	}
	if pageSize < 512 || pageSize&(pageSize-1) != 0 {
		return fmt.Errorf("%w: %s: bad page size", ErrCorrupt, path)
	}
	// Fields SQLite refuses with a generic SQL error ("unsupported file
	// format") at the first statement rather than at the open: the read
	// and write versions, the schema format number, and the text
	// encoding, which is UTF-8 in every stream file.
	if h[18] < 1 || h[18] > 2 || h[19] < 1 || h[19] > 2 {
		return fmt.Errorf("%w: %s: unknown file format version", ErrCorrupt, path)
	}
	if f := binary.BigEndian.Uint32(h[44:]); f < 1 || f > 4 {
		return fmt.Errorf("%w: %s: unknown schema format %d", ErrCorrupt, path, f)
	}
	if enc := binary.BigEndian.Uint32(h[56:]); enc != 1 {
		return fmt.Errorf("%w: %s: text encoding %d is not UTF-8", ErrCorrupt, path, enc)
	}
	if id := binary.BigEndian.Uint32(h[68:]); id != applicationID {
		return fmt.Errorf("%w: %s: not a stream file (application id %#x)", ErrCorrupt, path, id)
	}
	if v := binary.BigEndian.Uint32(h[60:]); v == 0 || v > uint32(len(migrations)) {
		return fmt.Errorf("%w: %s: unknown schema version %d", ErrCorrupt, path, v)
	}
	// The page count in the header is trustworthy when its validity counter
	// matches; while a WAL is pending the file may legitimately be shorter
	// than the last checkpoint claims, so only judge a checkpointed file.
	if walSize > 0 {
		return nil
	}
	pages := int64(binary.BigEndian.Uint32(h[28:]))
	if binary.BigEndian.Uint32(h[24:]) == binary.BigEndian.Uint32(h[92:]) && size < pages*pageSize {
		return fmt.Errorf("%w: %s: truncated", ErrCorrupt, path)
	}
	if size%pageSize != 0 {
		return fmt.Errorf("%w: %s: truncated", ErrCorrupt, path)
	}
	return nil
}

// columnInt64 is column i of the row, or nil when it is NULL.
func columnInt64(st *sqlite.Stmt, i int) *int64 {
	if st.ColumnIsNull(i) {
		return nil
	}
	v := st.ColumnInt64(i)
	return &v
}

// checkSchema verifies, through an open connection, that the database is a
// stream file this code understands.
func checkSchema(conn *sqlite.Conn) (version int, err error) {
	var appID int64 = -1
	if err := execOnce(conn, "PRAGMA application_id", func(st *sqlite.Stmt) error {
		appID = st.ColumnInt64(0)
		return nil
	}); err != nil {
		return 0, dbErr(err)
	}
	if appID != applicationID {
		return 0, fmt.Errorf("%w: not a stream file", ErrCorrupt)
	}
	if err := execOnce(conn, "PRAGMA user_version", func(st *sqlite.Stmt) error {
		version = st.ColumnInt(0)
		return nil
	}); err != nil {
		return 0, dbErr(err)
	}
	if version < 1 || version > len(migrations) {
		return 0, fmt.Errorf("%w: unknown schema version %d", ErrCorrupt, version)
	}
	return version, checkTables(conn, version)
}

// tablesByVersion lists the tables a file of each schema version has.
var tablesByVersion = [][]string{
	1: {"meta", "msgs", "msg_ids"},
	2: {"meta", "msgs", "msg_ids", "blocks"},
	3: {"meta", "msgs", "msg_ids", "blocks"},
	4: {"meta", "msgs", "msg_ids", "blocks"},
	5: {"meta", "msgs", "msg_ids", "blocks", "changes"},
}

// checkTables verifies that the tables of schema version exist.
func checkTables(conn *sqlite.Conn, version int) error {
	want := tablesByVersion[version]
	tables := 0
	if err := execOnce(conn, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN ('meta', 'msgs', 'msg_ids', 'blocks', 'changes')", func(st *sqlite.Stmt) error {
		tables = st.ColumnInt(0)
		return nil
	}); err != nil {
		return dbErr(err)
	}
	if tables != len(want) {
		return fmt.Errorf("%w: missing tables", ErrCorrupt)
	}
	return nil
}

// readRevision reads the revision stored in a stream file. It only reads, so
// it works on a read-only connection.
func readRevision(conn *sqlite.Conn) (uint64, error) {
	if _, err := checkSchema(conn); err != nil {
		return 0, err
	}
	var rev int64 = -1
	if err := execOnce(conn, "SELECT revision FROM meta WHERE id = 1", func(st *sqlite.Stmt) error {
		rev = st.ColumnInt64(0)
		return nil
	}); err != nil {
		return 0, dbErr(err)
	}
	if rev < 0 {
		return 0, fmt.Errorf("%w: no revision", ErrCorrupt)
	}
	return uint64(rev), nil
}

// dbErr marks SQLite's "this file is damaged" results as ErrCorrupt and
// its "disk full" result as ErrStorageFull. ([Stream.dbErr] also finds a
// full disk behind an I/O error.)
func dbErr(err error) error {
	if err == nil || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrStorageFull) || errors.Is(err, ErrLocked) {
		return err
	}
	switch sqlite.ErrCode(err).ToPrimary() {
	case sqlite.ResultCorrupt, sqlite.ResultNotADB:
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	case sqlite.ResultBusy, sqlite.ResultLocked:
		return fmt.Errorf("%w: %v", ErrLocked, err)
	case sqlite.ResultFull:
		// SQLite's write of a page failed with ENOSPC or EDQUOT.
		return fmt.Errorf("%w: %v", ErrStorageFull, err)
	}
	return fmt.Errorf("store: %w", err)
}

// noSpace reports whether errno means the disk (or the quota) is full.
func noSpace(errno syscall.Errno) bool { return errno == syscall.ENOSPC || errno == syscall.EDQUOT }

// fileErr marks an error of the os package for lack of space as
// ErrStorageFull.
func fileErr(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) && noSpace(errno) {
		return fmt.Errorf("%w: %v", ErrStorageFull, err)
	}
	return err
}

// connErr is dbErr for an error of conn, which also finds a full disk
// behind SQLite's I/O errors (a failed fsync, truncate or growth of the
// -wal reports SQLITE_IOERR, and the errno only through the connection).
// A -wal that cannot be opened is marked as openErr marks a file. Call it
// before anything else runs on conn.
func connErr(conn *sqlite.Conn, err error) error {
	if err == nil || conn == nil {
		return dbErr(err)
	}
	switch sqlite.ErrCode(err).ToPrimary() {
	case sqlite.ResultIOErr:
		tls, db := rawConn(conn)
		if noSpace(syscall.Errno(lib.Xsqlite3_system_errno(tls, db))) {
			return fmt.Errorf("%w: %v", ErrStorageFull, err)
		}
	case sqlite.ResultCantOpen:
		// The -wal, opened at the first read.
		tls, db := rawConn(conn)
		errno := syscall.Errno(lib.Xsqlite3_system_errno(tls, db))
		if e := openErr(errno); e != error(errno) {
			return fmt.Errorf("%w (%v)", e, err)
		}
	}
	return dbErr(err)
}

// dbErr is connErr on the stream's connection, naming the stream's path.
func (s *Stream) dbErr(err error) error {
	if err == nil {
		return nil
	}
	err = connErr(s.conn, err)
	if !strings.Contains(err.Error(), s.path) {
		err = fmt.Errorf("%w: %s", err, s.path)
	}
	return err
}

// exec runs one statement, calling fn per row. The statement stays
// prepared in the stream's own cache (not the driver's), so that Trim can
// finalize every one of them: an idle stream then holds none, and the next
// use prepares again. Unlike conn.Prep it returns preparation errors
// instead of panicking: a damaged file can fail there.
func (s *Stream) exec(query string, fn func(*sqlite.Stmt) error, args ...any) error {
	st, err := s.prep(query)
	if err != nil {
		return err
	}
	bind(st, args)
	return step(st, fn)
}

// prep returns the statement of query from the stream's cache, preparing
// it on first use. The hottest statements bind their arguments themselves
// instead of through exec: an int64 passed as an interface value costs an
// allocation.
func (s *Stream) prep(query string) (*sqlite.Stmt, error) {
	if st := s.stmts[query]; st != nil {
		return st, nil
	}
	st, _, err := s.conn.PrepareTransient(query)
	if err != nil {
		return nil, prepErr(err)
	}
	if s.stmts == nil {
		s.stmts = make(map[string]*sqlite.Stmt)
	}
	s.stmts[query] = st
	return st, nil
}

// finalizeStmts finalizes every statement in the stream's cache.
func (s *Stream) finalizeStmts() error {
	var first error
	for q, st := range s.stmts {
		if err := st.Finalize(); err != nil && first == nil {
			first = err
		}
		delete(s.stmts, q)
	}
	return first
}

// prepErr marks a failure to prepare one of the package's statements for
// an error in the SQL (SQLITE_ERROR: "no such table", "no such column")
// as ErrCorrupt: the statements are fixed and correct for the schema the
// file's header claims, so only a file whose schema is not that one fails
// them. It keeps SQLite's error code.
func prepErr(err error) error {
	if sqlite.ErrCode(err) == sqlite.ResultError {
		return fmt.Errorf("%w: the schema is not a stream's: %w", ErrCorrupt, err)
	}
	return err
}

// execOnce is [Stream.exec] for statements that run rarely: they are not kept
// prepared, since every cached statement costs memory on every open stream.
func execOnce(conn *sqlite.Conn, query string, fn func(*sqlite.Stmt) error, args ...any) error {
	st, _, err := conn.PrepareTransient(query)
	if err != nil {
		return prepErr(err)
	}
	defer st.Finalize()
	bind(st, args)
	return step(st, fn)
}

func bind(st *sqlite.Stmt, args []any) {
	for i, a := range args {
		switch v := a.(type) {
		case nil:
			st.BindNull(i + 1)
		case int64:
			st.BindInt64(i+1, v)
		case uint64:
			st.BindInt64(i+1, int64(v))
		case int:
			st.BindInt64(i+1, int64(v))
		case string:
			st.BindText(i+1, v)
		case []byte:
			bindBytes(st, i+1, v)
		default:
			panic(fmt.Sprintf("store: cannot bind %T", a))
		}
	}
}

// bindBytes binds b to parameter i, nil as NULL.
func bindBytes(st *sqlite.Stmt, i int, b []byte) {
	if b == nil {
		st.BindNull(i)
	} else {
		st.BindBytes(i, b)
	}
}

func step(st *sqlite.Stmt, fn func(*sqlite.Stmt) error) error {
	for {
		row, err := st.Step()
		if err != nil {
			st.Reset()
			return err
		}
		if !row {
			return st.Reset()
		}
		if fn != nil {
			if err := fn(st); err != nil {
				st.Reset()
				return err
			}
		}
	}
}

// execScript runs statements separated by semicolons, without caching.
func execScript(conn *sqlite.Conn, script string) error {
	for {
		script = strings.TrimLeft(script, " \t\r\n;")
		if script == "" {
			return nil
		}
		st, trailing, err := conn.PrepareTransient(script)
		if err != nil {
			return prepErr(err)
		}
		if st != nil {
			err = step(st, nil)
			st.Finalize()
			if err != nil {
				return err
			}
		}
		if trailing <= 0 {
			return nil
		}
		script = script[len(script)-trailing:]
	}
}
