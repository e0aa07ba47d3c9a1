package store

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"zombiezen.com/go/sqlite"

	"github.com/nats-persist/persist/subjects"
)

// Options tell [Open] how to open a stream. The zero value opens an existing
// file stream with the documented defaults.
type Options struct {
	// Memory opens an in-memory stream that never touches disk; the path is
	// then only a name. A Config with storage "memory" means the same.
	Memory bool
	// Create creates the stream if it does not exist; without it Open
	// returns ErrNotFound and creates nothing.
	Create bool
	// Name is the stream's name ("acme.docs"), recorded in its file by
	// the first write, so that a file (or a -wal) that belongs to another
	// stream is found at open: such a file is damage (ErrCorrupt). ""
	// checks nothing and records nothing, for tools that open files by
	// path. Memory streams have no file and ignore it.
	Name string
	// Config is the configuration of a newly created stream (nil:
	// [subjects.DefaultConfig]). It is ignored for an existing stream. When it
	// differs from the defaults, its creation commits an subjects.OpConfig event
	// (revision 1), as a config request that creates a stream changes
	// something.
	Config *Config
	// Quota is the byte budget memory streams share (nil: unlimited).
	Quota *Quota
	// Notify is called after every commit with that commit's events in
	// revision order. It runs with the stream's lock held, so that events
	// of one stream are delivered in order; it must not call back into the
	// stream.
	Notify func(evs []Event)
	// ArchivePath is where the archive copy of this stream's file lives
	// ("" for none).
	ArchivePath string
	// ArchiveInterval is the least time between two archive snapshots
	// while the stream changes (0: 30s).
	ArchiveInterval time.Duration
	// Fence (nil: none) keeps a fence file beside the archive copy
	// (ArchivePath + ".fence"), so that the stream can move between
	// workers that share only the archive: see [Fence]. Requires
	// ArchivePath; ignored for memory streams.
	Fence *Fence
	// BackupPath is where a backup copy is written on Close ("" for none).
	BackupPath string
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// NoSweep turns off the background expiry timer; [Stream.Sweep] still
	// works, and writes still remove what has expired before they check
	// limits.
	NoSweep bool
	// Logger receives what cannot be returned to a caller (nil:
	// slog.Default()).
	Logger *slog.Logger
	// ChangesWindow is the least number of delete and config changes the
	// stream keeps for [Stream.Changes] (0:
	// [subjects.DefaultChangesWindow]). It may differ from one open to the
	// next: the next change trims to it.
	ChangesWindow int

	blockShift uint // tests only: see blockShift (0: blockShift)
}

// Stream is one open stream. Its methods are safe for concurrent use; one
// lock guards the SQLite connection.
type Stream struct {
	mu         sync.Mutex
	conn       *sqlite.Conn
	lockf      *os.File                // holds the stream's lock on its file (nil: memory)
	stmts      map[string]*sqlite.Stmt // see exec
	blockBuf   []blockDelta            // see txn.countBlock
	blockShift uint
	path       string
	opts       Options
	memory     bool
	closed     bool

	m   meta
	cfg Config
	// cfgExtra is what the stored config holds that this code does not
	// know, kept for the next write of the config (see storedConfig).
	cfgExtra map[string]json.RawMessage
	// name is the stream name recorded in the file ("": none yet, see
	// Options.Name).
	name    string
	syncOn  bool // the synchronous mode set on the connection
	syncSet bool
	rate    rateWindow
	held    int64 // bytes reserved from opts.Quota
	archive archiveState
	chg     changeLog // see changes.go
	// fence is the stream's fence (nil: none); a commit past fenceRev
	// writes a new reservation first (math.MaxUint64 without a fence).
	fence    *fenceState
	fenceRev uint64

	// deadline is the Unix ms at which the next expiry is due (0: none). It
	// may be early, never late: writes only lower it, sweeps recompute it.
	deadline int64
	timer    *time.Timer
	timerAt  time.Time
	timers   sync.WaitGroup // one count per scheduled timer call

	// walFrames is the frames the WAL held after the last commit, as the
	// WAL hook reports it; ckptDue asks the timer for a checkpoint.
	walFrames   int32
	ckptDue     bool
	walLimitSet bool // walLimitPragma was set on the connection
	newWAL      bool // the -wal did not exist before this open
}

// meta mirrors the meta row: the counters that make inventory O(1).
type meta struct {
	lastSeq  uint64
	lastTime int64
	revision uint64
	count    int64
	bytes    int64
}

type archiveState struct {
	dirty    bool
	last     time.Time
	interval time.Duration
}

// Open opens the stream at path (see [Options]). A file that is not a stream
// file, or is damaged, is an error wrapping ErrCorrupt and is left exactly
// as it is.
func Open(path string, opts Options) (*Stream, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ArchiveInterval <= 0 {
		opts.ArchiveInterval = 30 * time.Second
	}
	cfg := subjects.DefaultConfig()
	if opts.Config != nil {
		cfg = *opts.Config
		cfg.Desc = subjects.CompactJSON(cfg.Desc)
	}
	s := &Stream{path: path, opts: opts, memory: opts.Memory || cfg.Storage == subjects.StorageMemory, blockShift: blockShift, fenceRev: math.MaxUint64}
	if opts.blockShift != 0 {
		s.blockShift = opts.blockShift
	}
	s.archive.interval = opts.ArchiveInterval
	s.archive.last = time.Now()
	if s.memory {
		cfg.Storage = subjects.StorageMemory
		s.opts.ArchivePath, s.opts.BackupPath, s.opts.Fence = "", "", nil
	}
	if f := s.opts.Fence; f != nil {
		if err := validFence(f, s.opts.ArchivePath); err != nil {
			return nil, err
		}
		s.fence = &fenceState{path: fencePath(s.opts.ArchivePath), owner: f.Owner, ahead: cmp.Or(f.Ahead, DefaultFenceAhead)}
		s.fenceRev = 0
	}
	var created bool
	var tier restored
	var err error
	if s.memory {
		if !opts.Create {
			return nil, ErrNotFound
		}
		if err := validConfig(cfg); err != nil {
			return nil, err
		}
		s.conn, err = openMemory()
		created = true
	} else {
		s.conn, s.lockf, s.newWAL, created, err = openFile(path, &cfg, opts, s.fence, &tier)
	}
	if err != nil {
		return nil, err
	}
	if !s.memory {
		watchWAL(s.conn, &s.walFrames)
	}
	// The stream is not shared yet, but a commit below may start its timer,
	// whose calls take the lock: hold it until the stream is ready.
	s.mu.Lock()
	fail := func(err error) (*Stream, error) {
		s.closed = true
		if s.timer != nil && s.timer.Stop() {
			s.timers.Done()
		}
		s.closeConn()
		s.mu.Unlock()
		s.timers.Wait()
		if created && !s.memory {
			// A file this call created and could not make ready is
			// removed, as if the call had not been made.
			if rerr := Remove(path); rerr != nil {
				s.opts.Logger.Error("store: remove unfinished stream", "stream", path, "err", rerr)
			}
		} else if s.newWAL {
			// A file found damaged is left as it was: without the -wal
			// this open made.
			os.Remove(path + "-wal")
		}
		return nil, err
	}
	if err := s.load(); err != nil {
		return fail(err)
	}
	if s.opts.ArchivePath != "" {
		// A stream whose archive copy is not at its revision (there is
		// none, or the local file is newer) gets one on close at the
		// latest; unless it never had an event: then it holds nothing and
		// was created by a request that wrote nothing, which removes it
		// again, and a copy would bring it back from the archive.
		s.archive.dirty = s.m.revision > 0 && !(tier.haveArch && tier.archRev == s.m.revision)
	}
	if s.fence != nil {
		// Before anything else commits: a jump comes first.
		if err := s.openFence(tier.kept && !created); err != nil {
			return fail(err)
		}
	}
	if created && !cfg.Equal(subjects.DefaultConfig()) {
		if err := s.update(func(tx *txn) error { return tx.setConfig(cfg) }); err != nil {
			return fail(err)
		}
	}
	if err := s.applySync(); err != nil {
		return fail(s.dbErr(err))
	}
	s.arm()
	s.mu.Unlock()
	return s, nil
}

// lockTimeout is how long opening a stream waits for another program's
// lock on its file before it fails with ErrLocked.
const lockTimeout = time.Second

func openMemory() (*sqlite.Conn, error) {
	conn, err := sqlite.OpenConn(":memory:", sqlite.OpenReadWrite|sqlite.OpenCreate|sqlite.OpenMemory)
	if err != nil {
		return nil, fmt.Errorf("store: open memory stream: %w", err)
	}
	for _, p := range connPragmas[1:] { // locking does not matter in memory
		if err := execScript(conn, p); err != nil {
			conn.Close()
			return nil, fmt.Errorf("store: open memory stream: %w", err)
		}
	}
	if err := initSchema(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("store: open memory stream: %w", err)
	}
	return conn, nil
}

// openFile opens (and with opts.Create, creates) a stream file. Every check
// that can be made without SQLite is made before SQLite opens the file
// read-write, and the stream's lock is taken before it does.
//
// With an archive path, the local file is first brought in line with the
// archive copy (see restore), as fence (nil: none) decides; what was found
// and done is left in tier, and the fence found in fence.seen.
func openFile(path string, cfg *Config, opts Options, fence *fenceState, tier *restored) (_ *sqlite.Conn, _ *os.File, newWAL, created bool, err error) {
	if opts.ArchivePath != "" {
		foreign := false
		if fence != nil {
			if fence.seen, err = readFence(fence.path); err != nil {
				return nil, nil, false, false, fmt.Errorf("store: open %s: %w", path, err)
			}
			foreign = fence.seen != nil && fence.seen.Owner != fence.owner
		}
		if *tier, err = restore(path, opts.ArchivePath, foreign); err != nil {
			return nil, nil, false, false, err
		}
	}
	// The header is read through the descriptor that holds the lock:
	// closing another descriptor of the file would drop the POSIX locks
	// other connections of this process hold on it.
	lockf, err := lockFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if !opts.Create {
			return nil, nil, false, false, ErrNotFound
		}
		if err := validConfig(*cfg); err != nil {
			return nil, nil, false, false, err
		}
		if err := createFile(path, cfg.Sync); err != nil {
			return nil, nil, false, false, err
		}
		defer func() {
			if err != nil { // not made ready: as if never created
				Remove(path)
			}
		}()
		created = true
		lockf, err = lockFile(path)
	}
	if err != nil {
		return nil, nil, false, false, err
	}
	defer func() {
		if err != nil && lockf != nil {
			lockf.Close()
		}
	}()
	version, wal, hasWAL, err := len(migrations), true, false, error(nil) // the template's
	if !created {
		version, wal, hasWAL, err = inspectOpen(lockf, path)
	}
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			err = fmt.Errorf("store: open %s: %w", path, err)
		}
		return nil, nil, false, false, err
	}
	newWAL = !hasWAL
	// The returns below zero newWAL before the deferred cleanup reads it.
	madeWAL := newWAL && !created
	conn, err := sqlite.OpenConn(streamURI(path), sqlite.OpenReadWrite|sqlite.OpenURI)
	if err != nil {
		return nil, nil, false, false, fmt.Errorf("store: open %s: %w", path, dbErr(err))
	}
	// Another program can only make the connection wait where SQLite's own
	// locks are used (see lockFile); waiting forever, as the driver would,
	// would hang the stream's requests.
	conn.SetBusyTimeout(lockTimeout)
	defer func() {
		if err != nil {
			conn.Close()
			if madeWAL {
				os.Remove(path + "-wal") // see Open's fail
			}
		}
	}()
	// From here on, closing never checkpoints nor removes the -wal: a file
	// found damaged below keeps its -wal and its bytes as they were.
	if err = persistWAL(conn); err == nil {
		err = noCheckpointOnClose(conn)
	}
	if err != nil {
		return nil, nil, false, false, fmt.Errorf("store: open %s: %w", path, err)
	}
	for _, p := range connPragmas {
		if err := execScript(conn, p); err != nil {
			return nil, nil, false, false, fmt.Errorf("store: open %s: %w", path, connErr(conn, err))
		}
	}
	// The header was checked already (application id, schema version).
	// A file that needs a write before it is used has its schema checked
	// first, as SQLite sees it: the header is the last checkpoint's, and
	// the -wal may hold a migration made since (an older file's first
	// open migrates it, and a close checkpoints only a long -wal). A
	// current one has its tables checked by the query that loads it (see
	// load), before anything writes to it.
	if version != len(migrations) || !wal {
		v, err := checkSchema(conn)
		if err != nil {
			return nil, nil, false, false, fmt.Errorf("store: open %s: %w", path, err)
		}
		version = v
	}
	if !wal { // e.g. a copy restored from the archive
		if err := execScript(conn, "PRAGMA journal_mode=WAL"); err != nil {
			return nil, nil, false, false, fmt.Errorf("store: open %s: %w", path, connErr(conn, err))
		}
	}
	if err := migrate(conn, version, path, opts.Name); err != nil {
		return nil, nil, false, false, fmt.Errorf("store: open %s: migrate: %w", path, connErr(conn, err))
	}
	return conn, lockf, newWAL, created, nil
}

var uriEscaper = strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")

// streamURI is the SQLite URI that opens path with the stream's file layer
// (see lockFile). Stream file names contain %-escapes, which a URI would
// decode, so '%' is escaped, as are '?' and '#'.
func streamURI(path string) string {
	path = uriEscaper.Replace(path)
	if strings.HasPrefix(path, "//") { // would read as file://authority
		path = "/" + strings.TrimLeft(path, "/")
	}
	return "file:" + path + "?vfs=" + streamVFS
}

// loadQuery is everything an open needs from the file, in one statement
// (preparing is most of what a query costs here): the meta row and two of
// the three candidates of the expiry deadline (see recomputeDeadline); the
// third, the time of the first message, only matters with max_age, which
// few streams have, and is read by firstTimeQuery only for them (a fourth
// subquery would cost every open a fifth more to prepare). The query names
// every table of the current schema, so that a missing one fails the
// prepare; the blocks and changes tables, which it does not read, are
// named by joins on a row that never exists, which cost less to prepare
// than a count of sqlite_schema or a subquery. (The changes table is read
// by the first change made after the open: see loadChangeLog.)
const loadQuery = `SELECT meta.last_seq, last_time, revision, count, bytes, config,
	(SELECT min(expires) FROM msgs WHERE expires IS NOT NULL),
	(SELECT min(time) FROM msg_ids), meta.name, gone_rev, gone_seq
	FROM meta LEFT JOIN blocks ON blocks.block = -1
	LEFT JOIN changes ON changes.rev = -1 WHERE meta.id = 1`

const firstTimeQuery = "SELECT time FROM msgs ORDER BY seq LIMIT 1"

// load reads the meta row, the config and the expiry deadline into
// memory, checking that the file has the tables of the current schema and
// belongs to the stream Options.Name names. It runs once per open, so its
// statements are not kept prepared.
//
// The name is read from the meta row, which every commit rewrites: a -wal
// of another stream replays that stream's meta row with everything else,
// so its name is read here and the file is refused before anything writes
// to it. A file without a name (a new one, or one of schema version 3 or
// older, until its first write) is not checked.
func (s *Stream) load() error {
	var found bool
	var cfgJSON string
	var expires, first, firstID *int64
	err := execOnce(s.conn, loadQuery, func(st *sqlite.Stmt) error {
		found = true
		s.m = meta{
			lastSeq:  uint64(st.ColumnInt64(0)),
			lastTime: st.ColumnInt64(1),
			revision: uint64(st.ColumnInt64(2)),
			count:    st.ColumnInt64(3),
			bytes:    st.ColumnInt64(4),
		}
		cfgJSON = st.ColumnText(5)
		expires, firstID = columnInt64(st, 6), columnInt64(st, 7)
		s.name = st.ColumnText(8)
		s.chg = changeLog{goneRev: uint64(st.ColumnInt64(9)), goneSeq: uint64(st.ColumnInt64(10))}
		return nil
	})
	if errors.Is(err, ErrCorrupt) && sqlite.ErrCode(err) == sqlite.ResultError {
		// Only a missing table or column makes this query fail to
		// prepare on a file whose header was found sound (see prepErr).
		return fmt.Errorf("%w: %s: missing tables: %v", ErrCorrupt, s.path, err)
	}
	if err != nil {
		return fmt.Errorf("store: open %s: %w", s.path, s.dbErr(err))
	}
	if !found {
		return fmt.Errorf("%w: %s: no meta row", ErrCorrupt, s.path)
	}
	if err := nameErr(s.path, s.name, s.opts.Name); err != nil {
		return err
	}
	sc, err := parseStoredConfig(cfgJSON)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, s.path, err)
	}
	if (len(sc.unknown) > 0 || len(sc.bad) > 0) && onceFor(&configWarned, s.path) {
		s.opts.Logger.Warn("store: stored config has fields this version ignores", "stream", s.path, "version", sc.version, "unknown", sc.unknown, "defaulted", sc.bad)
	}
	cfg := sc.cfg
	s.cfgExtra = sc.extra
	if cfg.MaxAge > 0 {
		err := execOnce(s.conn, firstTimeQuery, func(st *sqlite.Stmt) error {
			first = columnInt64(st, 0)
			return nil
		})
		if err != nil {
			return fmt.Errorf("store: open %s: %w", s.path, s.dbErr(err))
		}
	}
	if s.memory {
		cfg.Storage = subjects.StorageMemory
	}
	s.cfg = cfg
	s.deadline = deadlineOf(cfg, expires, first, firstID)
	return nil
}

// applySync sets the durability of the following commits from the config.
// synchronous=NORMAL in WAL mode survives a crash of the process; FULL also
// survives losing power.
func (s *Stream) applySync() error {
	if s.memory || s.syncSet && s.syncOn == s.cfg.Sync {
		return nil
	}
	mode := "NORMAL"
	if s.cfg.Sync {
		mode = "FULL"
	}
	if err := execScript(s.conn, "PRAGMA synchronous="+mode); err != nil {
		return err
	}
	s.syncOn, s.syncSet = s.cfg.Sync, true
	return nil
}

// Remove removes the files of a closed stream at path. Missing files are not
// an error.
func Remove(path string) error {
	err := os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	if serr := removeSidecars(path); err == nil {
		err = serr
	}
	return err
}

// removeSidecars removes the files SQLite keeps beside the database at path
// (-wal, -shm, -journal); missing ones are not an error.
func removeSidecars(path string) error {
	var first error
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if err := os.Remove(path + suffix); err != nil && !errors.Is(err, fs.ErrNotExist) && first == nil {
			first = err
		}
	}
	return first
}

// closeConn closes the connection and then lets go of the file's lock.
func (s *Stream) closeConn() error {
	if !s.memory {
		unwatchWAL(s.conn)
	}
	err := s.finalizeStmts()
	if cerr := s.conn.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("store: close %s: %w", s.path, cerr)
	}
	if s.lockf != nil {
		s.lockf.Close()
		s.lockf = nil
	}
	return err
}

// nowMs is the stream clock in Unix milliseconds.
func (s *Stream) nowMs() int64 { return s.opts.Now().UnixMilli() }

// lock takes the stream's lock, or reports that the stream is closed.
func (s *Stream) lock() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	return nil
}

// msgColumns are the columns scanMsg reads, in order.
const msgColumns = "seq, time, key, expires, flags, header, data"

// notExpired is the condition every read applies: a message whose expiry
// has passed is gone for readers even before a sweep removes it.
const notExpired = "(expires IS NULL OR expires > ?)"

// notTooOld is the condition reads add on a stream with max_age, with
// the bound of [Stream.ageCutoff]: a message older than max_age is gone
// for readers even before a sweep removes it (after a reopen, the sweep
// runs only at the next write or timer call). Streams without max_age do
// not pay for it: their reads use queries without it.
const notTooOld = " AND time >= ?"

// ageCutoff is the time of the oldest message max_age keeps at now, the
// bound the sweep removes below (math.MinInt64 without max_age).
func (s *Stream) ageCutoff(now int64) int64 {
	if s.cfg.MaxAge <= 0 {
		return math.MinInt64
	}
	return now - s.cfg.MaxAge
}

func scanMsg(st *sqlite.Stmt) (*Message, error) {
	m := &Message{Seq: uint64(st.ColumnInt64(0)), Time: st.ColumnInt64(1)}
	if !st.ColumnIsNull(2) {
		m.Key = st.ColumnText(2)
	}
	m.Expires = st.ColumnInt64(3)
	h, err := decodeHeader(columnBytes(st, 5))
	if err != nil {
		return nil, err
	}
	m.Header = h
	if m.Data, err = decodeData(columnBytes(st, 6), st.ColumnInt64(4)); err != nil {
		return nil, err
	}
	return m, nil
}

func columnBytes(st *sqlite.Stmt, col int) []byte {
	b := make([]byte, st.ColumnLen(col))
	st.ColumnBytes(col, b)
	return b
}

// Get returns the message with seq, or ErrNotFound.
func (s *Stream) Get(seq uint64) (*Message, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	const q = "SELECT " + msgColumns + " FROM msgs WHERE seq = ? AND " + notExpired
	now := s.nowMs()
	if s.cfg.MaxAge > 0 {
		return s.getOne(q+notTooOld, int64(min(seq, math.MaxInt64)), now, s.ageCutoff(now))
	}
	return s.getOne(q, int64(min(seq, math.MaxInt64)), now)
}

// GetKey returns the message with key, or ErrNotFound.
func (s *Stream) GetKey(key string) (*Message, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	const q = "SELECT " + msgColumns + " FROM msgs WHERE key = ? AND " + notExpired
	now := s.nowMs()
	if s.cfg.MaxAge > 0 {
		return s.getOne(q+notTooOld, key, now, s.ageCutoff(now))
	}
	return s.getOne(q, key, now)
}

func (s *Stream) getOne(query string, args ...any) (*Message, error) {
	var m *Message
	err := s.exec(query, func(st *sqlite.Stmt) (err error) {
		m, err = scanMsg(st)
		return err
	}, args...)
	if err != nil {
		return nil, s.dbErr(err)
	}
	if m == nil {
		return nil, ErrNotFound
	}
	return m, nil
}

// errPageFull stops the row loop of Read; it never leaves Read.
var errPageFull = errors.New("page full")

// Read calls fn for the messages selected by q, in seq order, within one
// read transaction. Rows are decoded one at a time, so a page costs memory
// for one message at a time. The page ends at q.MaxMsgs messages or before
// the message that would take it over q.MaxBytes, but holds at least one
// message when the range is not empty. An error from fn ends the read and
// is returned. fn runs with the stream's lock held, so it must not call the
// stream.
func (s *Stream) Read(q ReadQuery, fn func(*Message) error) (res ReadResult, err error) {
	if err := s.lock(); err != nil {
		return ReadResult{}, err
	}
	defer s.mu.Unlock()
	res = ReadResult{LastSeq: s.m.lastSeq, Revision: s.m.revision}
	start, end := int64(min(max(q.StartSeq, 1), math.MaxInt64)), int64(math.MaxInt64)
	if q.EndSeq != 0 {
		end = int64(min(q.EndSeq, math.MaxInt64))
	}
	now := s.nowMs()
	if err := s.exec("BEGIN", nil); err != nil {
		return res, s.dbErr(err)
	}
	defer func() {
		if cerr := s.exec("COMMIT", nil); err == nil && cerr != nil {
			err = s.dbErr(cerr)
		}
	}()
	var sent int
	var bytes int64
	var next uint64
	var fnErr error
	err = s.exec("SELECT "+msgColumns+", size FROM msgs WHERE seq >= ? AND seq <= ? AND time >= ? AND "+notExpired+" ORDER BY seq", func(st *sqlite.Stmt) error {
		size := st.ColumnInt64(7)
		if sent > 0 && (q.MaxMsgs > 0 && sent >= q.MaxMsgs || q.MaxBytes > 0 && bytes+size > q.MaxBytes) {
			next = uint64(st.ColumnInt64(0))
			return errPageFull
		}
		m, err := scanMsg(st)
		if err != nil {
			return err
		}
		if err := fn(m); err != nil {
			fnErr = err
			return err
		}
		sent++
		bytes += size
		return nil
	}, start, end, max(q.StartTime, s.ageCutoff(now)), now)
	if fnErr != nil {
		return res, fnErr
	}
	if err != nil && err != errPageFull {
		return res, s.dbErr(err)
	}
	if next == 0 {
		return res, nil
	}
	res.NextSeq = next
	// Times never go backwards, so every message from next on also has
	// time >= q.StartTime and is young enough for max_age: the pending
	// ones are the live messages of the seq range [next, end].
	res.NumPending, err = s.countRange(int64(next), min(end, int64(s.m.lastSeq)), now)
	return res, s.dbErr(err)
}

// countRange counts the messages with seq in [first, last] that have not
// expired at now. Whole blocks of 1024 seqs are counted from the blocks
// table and only the two partial ones row by row; expired messages that the
// sweep has not removed yet are few and found through the expires index.
func (s *Stream) countRange(first, last, now int64) (int64, error) {
	if first > last {
		return 0, nil
	}
	var n int64
	add := func(st *sqlite.Stmt) error { n += st.ColumnInt64(0); return nil }
	const rows = "SELECT count(*) FROM msgs WHERE seq >= ? AND seq <= ?"
	shift := s.blockShift
	fb, lb := first>>shift, last>>shift
	if fb == lb {
		if err := s.exec(rows, add, first, last); err != nil {
			return 0, err
		}
	} else {
		if err := s.exec(rows, add, first, (fb+1)<<shift-1); err != nil {
			return 0, err
		}
		if err := s.exec("SELECT coalesce(sum(n), 0) FROM blocks WHERE block > ? AND block < ?", add, fb, lb); err != nil {
			return 0, err
		}
		if err := s.exec(rows, add, lb<<shift, last); err != nil {
			return 0, err
		}
	}
	err := s.exec("SELECT count(*) FROM msgs INDEXED BY msgs_expires WHERE expires <= ? AND +seq >= ? AND +seq <= ?", func(st *sqlite.Stmt) error {
		n -= st.ColumnInt64(0)
		return nil
	}, now, first, last)
	return n, err
}

// Keys returns the keys greater than after in byte order, at most limit of
// them (limit <= 0: 1000; at most 10000), and whether there are more.
func (s *Stream) Keys(after string, limit int) ([]string, bool, error) {
	if limit <= 0 {
		limit = 1000
	}
	limit = min(limit, 10000)
	if err := s.lock(); err != nil {
		return nil, false, err
	}
	defer s.mu.Unlock()
	keys := []string{}
	more := false
	add := func(st *sqlite.Stmt) error {
		if len(keys) == limit {
			more = true
			return nil
		}
		keys = append(keys, st.ColumnText(0))
		return nil
	}
	const q = "SELECT key FROM msgs WHERE key > ? AND " + notExpired
	var err error
	if now := s.nowMs(); s.cfg.MaxAge > 0 {
		err = s.exec(q+notTooOld+" ORDER BY key LIMIT ?", add, after, now, s.ageCutoff(now), limit+1)
	} else {
		err = s.exec(q+" ORDER BY key LIMIT ?", add, after, now, limit+1)
	}
	if err != nil {
		return nil, false, s.dbErr(err)
	}
	return keys, more, nil
}

// Inventory summarises the stream. Whatever has expired is removed first,
// so that the counts agree with what readers see.
func (s *Stream) Inventory() (Inventory, error) {
	if err := s.lock(); err != nil {
		return Inventory{}, err
	}
	defer s.mu.Unlock()
	// On a full disk the sweep cannot commit; the inventory is a read and
	// still answers, with the counts as stored.
	if err := s.sweepIfDue(); err != nil && !errors.Is(err, ErrStorageFull) {
		return Inventory{}, err
	}
	inv := Inventory{
		Count:    s.m.count,
		Bytes:    s.m.bytes,
		LastSeq:  s.m.lastSeq,
		Revision: s.m.revision,
		Limits:   s.cfg.NonDefault(),
	}
	// The sweep above removed what had expired, unless the clock moved
	// past a deadline since; the first seq is the first one readers see
	// either way.
	now := s.nowMs()
	err := s.exec("SELECT seq FROM msgs WHERE "+notExpired+notTooOld+" ORDER BY seq LIMIT 1", func(st *sqlite.Stmt) error {
		inv.FirstSeq = uint64(st.ColumnInt64(0))
		return nil
	}, now, s.ageCutoff(now))
	if err != nil {
		return Inventory{}, s.dbErr(err)
	}
	return inv, nil
}

// Config returns the stream's configuration.
func (s *Stream) Config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cfg
	c.Desc = append(json.RawMessage(nil), c.Desc...)
	if len(c.Desc) == 0 {
		c.Desc = nil
	}
	return c
}

// Trim gives back the memory an idle stream does not need: its prepared
// statements, SQLite's page cache, the C stack of its connection and
// whatever else SQLite can free. A WAL of 64 frames or more is
// checkpointed, as Close would. The next request rebuilds what it uses. It
// is safe to call at any time.
func (s *Stream) Trim() error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if !s.memory && s.walFrames >= closeCheckpointFrames {
		if err := s.checkpoint(true); err != nil {
			return err
		}
	}
	if err := s.finalizeStmts(); err != nil {
		return s.dbErr(err)
	}
	if err := execScript(s.conn, "PRAGMA shrink_memory"); err != nil {
		return s.dbErr(err)
	}
	releaseCStack(s.conn)
	return nil
}

// Revision returns the stream's revision: the number of events so far.
func (s *Stream) Revision() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m.revision
}

// LastSeq returns the highest seq ever assigned.
func (s *Stream) LastSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m.lastSeq
}

// SetConfig changes the configuration. Storage cannot change. A config
// equal to the current one changes nothing and publishes nothing. Lowered
// limits apply at once, in the same transaction: the config event comes
// first, then the delete events of what no longer fits.
func (s *Stream) SetConfig(c Config) (Config, error) {
	c.Desc = subjects.CompactJSON(c.Desc)
	if err := validConfig(c); err != nil {
		return Config{}, err
	}
	if err := s.lock(); err != nil {
		return Config{}, err
	}
	cur := s.cfg
	if c.Storage != cur.Storage {
		s.mu.Unlock()
		return Config{}, fmt.Errorf("%w: storage cannot change", ErrInvalid)
	}
	if c.Equal(cur) {
		s.mu.Unlock()
		return s.Config(), nil
	}
	err := s.update(func(tx *txn) error {
		if err := tx.sweepIfDue(); err != nil {
			return err
		}
		return tx.setConfig(c)
	})
	if err == nil {
		err = s.dbErr(s.applySync())
	}
	s.mu.Unlock()
	if err != nil {
		return Config{}, err
	}
	return s.Config(), nil
}

// DeleteSeqs deletes the messages with the given seqs and returns how many
// there were.
func (s *Stream) DeleteSeqs(seqs ...uint64) (int64, error) {
	return s.remove(func(tx *txn, rs *rangeSet) error { return tx.deleteSeqs(seqs, rs) })
}

// DeleteThrough deletes every message with a seq up to and including seq.
func (s *Stream) DeleteThrough(seq uint64) (int64, error) {
	return s.remove(func(tx *txn, rs *rangeSet) error {
		return tx.removeFront(func(m rowInfo) *rangeSet {
			if m.seq > seq {
				return nil
			}
			return rs
		})
	})
}

// DeleteKey deletes the message with key.
func (s *Stream) DeleteKey(key string) (int64, error) {
	return s.remove(func(tx *txn, rs *rangeSet) error { return tx.deleteKey(key, rs) })
}

// DeleteAll deletes every message. Seqs continue where they were.
func (s *Stream) DeleteAll() (int64, error) {
	return s.remove(func(tx *txn, rs *rangeSet) error {
		return tx.removeFront(func(rowInfo) *rangeSet { return rs })
	})
}

// remove runs a requested deletion and publishes it as one event.
func (s *Stream) remove(fn func(*txn, *rangeSet) error) (int64, error) {
	if err := s.lock(); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	var n int64
	err := s.update(func(tx *txn) error {
		if err := tx.sweepIfDue(); err != nil {
			return err
		}
		var rs rangeSet
		if err := fn(tx, &rs); err != nil {
			return err
		}
		n = rs.n
		tx.emitDelete(subjects.ReasonRequest, &rs)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Close closes the stream: it stops the timer and waits for it, writes the
// archive snapshot (if the stream changed since the last one) and the
// backup copy, and releases the memory quota. With a fence, the snapshot
// is written only while the fence does not name another owner, and once
// the archive copy is at the stream's revision the fence is marked clean
// (see [Fence]). It is idempotent and always finishes its cleanup,
// returning the first error.
func (s *Stream) Close() error {
	s.mu.Lock()
	err := s.closeLocked(true, true)
	s.mu.Unlock()
	s.timers.Wait()
	return err
}

// Abandon closes the stream without the archive snapshot, the backup copy
// or the fence's clean mark: for a worker that lost the right to write the
// archive (its partition's lease ran out). The local file stays. It is
// otherwise Close.
func (s *Stream) Abandon() error {
	s.mu.Lock()
	err := s.closeLocked(false, false)
	s.mu.Unlock()
	s.timers.Wait()
	return err
}

// Destroy removes the stream: it closes it (writing the backup copy, if
// any), removes its file, its archive copy and then its fence (so that a
// stream of that name starts again at seq 1), and publishes an
// subjects.OpDestroy event.
func (s *Stream) Destroy() error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.timers.Wait()
	defer s.mu.Unlock()
	// The stream goes away whatever happens to its backup copy; a failed
	// backup is the operator's to notice in the log.
	if err := s.closeLocked(false, true); err != nil {
		s.opts.Logger.Error("store: destroy: close", "stream", s.path, "err", err)
	}
	if !s.memory {
		for _, p := range []string{s.path, s.opts.ArchivePath} {
			if p == "" {
				continue
			}
			if err := Remove(p); err != nil {
				return fmt.Errorf("store: destroy %s: %w", s.path, err)
			}
		}
		if s.fence != nil {
			if err := os.Remove(s.fence.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("store: destroy %s: %w", s.path, err)
			}
		}
	}
	if s.opts.Notify != nil {
		s.opts.Notify([]Event{{Op: subjects.OpDestroy, Revision: s.m.revision + 1}})
	}
	return nil
}

// closeLocked closes the stream, with archive writing the archive
// snapshot (and the fence's clean mark) and with backup the backup copy.
func (s *Stream) closeLocked(archive, backup bool) error {
	if s.closed {
		return nil
	}
	s.closed = true
	if s.timer != nil && s.timer.Stop() {
		s.timers.Done()
	}
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	if archive && s.opts.ArchivePath != "" {
		fenced, err := s.archiveFenced()
		keep(err)
		archive = !fenced
	}
	if archive && s.opts.ArchivePath != "" {
		if s.archive.dirty {
			err := snapshot(s.conn, s.opts.ArchivePath)
			keep(err)
			s.archive.dirty = err != nil
		}
		// Only once the archive copy is at the stream's revision: a
		// clean mark tells the next owner that nothing was lost.
		if s.fence != nil && !s.archive.dirty {
			keep(s.markClean())
		}
	}
	// A stream without a single event holds nothing (see Open); a copy
	// would overwrite the backup kept of a destroyed stream of that name.
	if backup && s.opts.BackupPath != "" && s.m.revision > 0 {
		keep(snapshot(s.conn, s.opts.BackupPath))
	}
	if s.walFrames >= closeCheckpointFrames {
		keep(s.checkpoint(true))
	}
	keep(s.closeConn())
	s.opts.Quota.Release(s.held)
	s.held = 0
	return first
}
