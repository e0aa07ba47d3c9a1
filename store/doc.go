// Package store keeps one durable message stream in one SQLite file (or in
// memory), with every stream semantic of the Persist protocol: sequence
// numbers, keys, optimistic concurrency, message-id deduplication, TTL,
// limits, compression, revisions and change events, and tiered storage. It
// knows SQLite and zstd and nothing of NATS: the broker parses requests,
// calls a [Stream] and maps the store's errors ([ErrNotFound],
// [ErrWrongLastSequence], …) to wire codes.
//
// # Streams
//
// A [Stream] is opened with [Open] and closed with [Stream.Close];
// [Stream.Destroy] removes it and [Remove] removes the files of a closed
// one. All methods are safe for concurrent use: one lock per stream owns its
// SQLite connection, and every method holds it for its whole run.
//
// Writes go through [Stream.Append]: a batch of [Write] values applied in
// order in one transaction, each item either written completely or refused
// with its own error in its [WriteResult]. Reads are [Stream.Get],
// [Stream.GetKey], [Stream.Read] (a page of a range, streamed row by row)
// and [Stream.Keys]. [Stream.Inventory] is O(1): the message count, bytes,
// last seq and revision are kept in a meta row updated in the same
// transaction as the messages. The messages left in a range after a page
// (getall's Num-Pending) are counted from a table of counts per block of
// 1024 seqs, so paging through a large stream is linear. A write
// transaction counts its inserts and deletes per block as it makes them
// and applies them with one upsert per block it touched before it commits
// (no trigger per row). The block of the last seq is never read (it is
// counted row by row), so it is not kept: an append to it writes nothing
// to the table, and a block is counted from its rows once, when the
// stream moves past it.
//
// # Events
//
// Each committed change produces [Event] values, handed to [Options.Notify]
// in revision order right after the commit, with the stream's lock held. A
// new stream has revision 0 and every event adds exactly one. Append
// publishes one subjects.OpSet per written item, then, when keeping max_msgs or
// max_bytes removed older messages, one subjects.OpDelete per reason covering every
// removal of the call (so a subscriber that applies events in order ends
// where the stream is). A keyed write that replaces a message publishes only
// its subjects.OpSet. Deletes publish one subjects.OpDelete with the removed seqs as ascending
// ranges of consecutive seqs. A config change publishes subjects.OpConfig, followed
// by the deletes its lowered limits caused. Whatever had expired is removed
// (subjects.OpDelete reason ttl or max_age) at the start of the next write, before
// that write's events. A subjects.OpSet carries the write's message id
// ([Event.MsgID]), so that a writer can recognise its own writes.
//
// # Changes
//
// [Stream.Changes] answers what changed after a revision, paged like
// [Stream.Read], so that a copy of the stream exact at that revision is
// brought up to date without reading the stream again. A set's change is
// its message: the messages whose set came after the revision, with the
// revision their set had, which follows from their seq (changes.go says
// how), so a write stores nothing for it. Deletes and config changes are
// kept in a table of their own, at least [Options.ChangesWindow] of them
// (a count, kept in the file); a delete keeps its ranges, its reason and
// the keys of the keyed messages it removed, a config change the config.
// Changes after a revision whose changes were dropped, or after a
// revision the stream has not reached, are [ErrRevisionGone]. Files of
// schema version 4 and older kept no changes: their migration marks the
// changes up to their revision as dropped.
//
// # Files
//
// A stream file is a SQLite database in WAL mode with exclusive locking (no
// -shm file, no shared memory), marked by PRAGMA application_id and
// versioned by PRAGMA user_version with an ordered list of migrations. New
// streams are copies of a template file built once per process, which is
// several times faster than creating the schema through SQLite. Before
// SQLite opens a file read-write, its header is checked without SQLite: a
// file that is not a stream file, has a newer schema, is truncated, or has
// header fields SQLite would refuse (versions, schema format, a text
// encoding other than UTF-8) is reported as [ErrCorrupt] and left byte for
// byte as it is. So is a file
// that is there but cannot be opened (no permission, a directory in its
// place, or in place of its -wal): unreadable is damage, unlike a missing
// file (ErrNotFound, or created with Options.Create), running out of
// descriptors ([ErrTooManyOpen]) and a file another program holds
// ([ErrLocked]). Damage found later (SQLITE_CORRUPT, SQLITE_NOTADB, or one
// of the package's statements failing to prepare because the schema is not
// what the header claims) is reported as ErrCorrupt too. An open that fails leaves no file behind that
// was not there: it removes the -wal it made, and never checkpoints.
//
// A -wal that is not the database's own: the WAL header holds a page size,
// a checkpoint sequence and two salts, and each frame a checksum chained
// from them; SQLite replays every frame up to the last valid commit, and
// nothing in a WAL names the database it belongs to (SQLite even takes the
// page size from the WAL). A -wal of another SQLite database has its
// tables, not a stream's, so the open fails as ErrCorrupt before anything
// is written, and both files stay as they were. A -wal copied from another
// stream has the same page size and schema and would be replayed as if it
// were the stream's own, so the file records whose it is: the stream's
// name ([Options.Name]) is in the meta row, which every commit rewrites,
// so every commit in a -wal carries the name of the stream that wrote it.
// Open reads it with the meta row (in the query that loads the stream, no
// statement of its own) and refuses a name other than the one it was
// given as ErrCorrupt ("file belongs to stream …"), before anything is
// written: both files stay as they were. (A file whose header is older
// than its -wal, migrated since its last checkpoint, is migrated in a
// transaction that checks the name before it commits.) The name is
// written by a stream's first write, as part of that write's transaction;
// files of schema version 3 and older have none until then and are not
// checked, nor are streams opened without a name (tools that open files
// by path). Archive and backup copies are copies of the stream's pages
// and keep its name. One case is not found: a meta row longer than a page
// (a config with a desc of about 900 bytes or more) keeps the name on an
// overflow page, which a commit that leaves it unchanged does not write,
// so a -wal of another such stream whose name has the same length may
// replay on this file's overflow page and read as this stream's name. A
// closed stream's database and -wal are copied and moved together.
//
// The stream's config is stored as a JSON object in the meta row, in a
// format versioned apart from the schema and read tolerantly (see
// storedConfigVersion in storedconfig.go): fields this version does not
// know are ignored, logged once per process and written back unchanged by
// the next config change; a known field with a value it cannot use reads as
// its default. Only a config that is not a JSON object is damage. A newer
// schema (tables this code does not know) is damage; a newer config field
// is not.
//
// The -wal file is persistent: a stream keeps it when it closes, so that
// opening, writing once and closing a stream creates and deletes no file
// and, with sync off, makes no fsync. Checkpoints go by the WAL's size, not
// by commits or closes: a hook counts the WAL's frames, the stream's timer
// checkpoints once a commit left 1000 or more (about 1 MiB), and Close and
// [Stream.Trim] checkpoint (truncating the -wal) only a WAL of 64 frames
// or more; a smaller one is read back by the next open. (Reading it back
// costs about half a microsecond of CPU per frame, one read each; a
// checkpoint costs a few fsyncs, which at 64 frames, some 28 one-message
// writes, come to about one fsync per five open/write/close cycles.) A
// closed stream is therefore its database and its -wal: copy both. The
// tier code restores from such a pair as well as from a snapshot.
//
// The stream's connection uses SQLite's "unix-none" file layer, which
// takes no locks and keeps no process-wide list of open files (the default
// one walks that list on every open, so opens got slower the more streams
// were open). The stream locks its file itself, on a descriptor of its
// own ([FilesPerStream] counts it): an OFD write lock on the bytes SQLite
// locks, which conflicts with every other SQLite program's locks, so a
// file another worker or a sqlite3 shell holds fails Open with ErrLocked
// after a second, and such a program cannot open a stream's file while it
// is open. (On systems other than Linux, SQLite's own locking is kept.)
// The driver has no API for the persistent WAL, the checkpoint on close or
// the WAL hook; handle.go makes those calls on the C library directly,
// guarded by a test that the handles it uses are the connection's.
//
// A full disk (or quota) is [ErrStorageFull]: SQLITE_FULL, which SQLite
// reports when a write of a page fails with ENOSPC or EDQUOT, an
// SQLITE_IOERR whose errno is one of those (a failed fsync, truncate or
// growth of the -wal), and ENOSPC or EDQUOT while creating a stream's file.
// The failed transaction is rolled back and the stream's counters, config,
// rate window and expiry deadline are only taken from a transaction that
// committed, so the stream is as before the call: the next write after
// space returns gets the next seq, and reads keep working (Inventory too:
// when its sweep cannot commit it reports the counts as stored). A new
// stream that cannot be made ready is removed again.
//
// Every error about a stream's file names its path, so a caller can log
// it once without adding it.
//
// With sync off, commits use synchronous=NORMAL: an acknowledged write
// survives a crash of the process, whether it is in the -wal or already
// checkpointed. With sync on, synchronous=FULL: it also survives losing
// power.
//
// # Moving streams
//
// With [Options.Fence] a stream can move between workers that share only
// its archive copy (each with a data directory of its own). The fence is
// a JSON file beside the archive copy, ArchivePath + ".fence", written
// atomically and durably (a temporary file, fsync, rename, directory
// fsync) and read with a size bound: {"owner", "revision", "seq",
// "clean"}. It names the owner that writes the stream and the revision
// and seq up to which that owner may commit.
//
// A commit that would take the revision past the reservation first
// writes the next one, [Fence.Ahead] revisions past the commit's (its
// seq likewise: a set adds one to both, anything else only to the
// revision), inside the transaction and before its COMMIT; if that
// fails, the transaction is rolled back. The commit path costs one
// comparison with a fence or without; a busy stream writes its fence
// once per Ahead+1 revisions. Such a write first reads the fence: one
// that another owner has taken over since fails the write with
// [ErrFenced] (an [ErrLocked]), so a worker that lost the stream stops at
// the end of its reservation at the latest. (Reading and replacing the
// file is not atomic across machines: the fence narrows the window, the
// broker's leases exclude the overlap.)
//
// Open reads the fence before it looks at the files. Missing, or naming
// this owner: the local file is restored as without a fence (the archive
// copy replaces it only when it is missing or older). Naming another
// owner: the archive copy is the truth, so a local file at another
// revision, higher or lower, or a damaged one, is replaced by it, and
// without an archive copy the local file is removed (its history was
// superseded) and the stream is missing (ErrNotFound without Create); a
// damaged archive copy is then an error even with a local file. A local
// file at the archive's revision is kept: an owner commits only within
// its reservation and the next owner jumps past it, so two owners'
// copies never share a revision unless one is a copy of the other. Then,
// unless this owner's own file was kept, a fence that reserves more than
// the opened stream holds (a higher revision or seq) means that
// acknowledged writes may be lost, this owner's own included when its
// file was lost or older than the archive copy: the stream jumps, in one
// transaction before anything else commits, to the reserved seq and one
// past the reserved revision, and its changes before that revision are
// gone, as if dropped from the changes table (the meta row's gone_rev and
// gone_seq, see Changes), so [Stream.Changes] after an earlier revision
// is ErrRevisionGone and a mirror reads the stream again. A jump
// publishes no event: the next event's revision tells watchers they
// missed some. A stream created afresh starts past a fence left behind
// too. A fence that names another owner, or none on a stream with
// events, is taken over at once with this owner's reservation, so the old
// owner's late snapshots are refused; this owner's own fence is renewed
// by the first write past it.
//
// The archive snapshots, the timer's and Close's, read the fence first
// and are not written while it names another owner (logged at Warn once
// per stream, with both owners). [Stream.Close] marks the fence clean
// once the archive copy is at the stream's revision (its snapshot
// succeeded, or there was nothing new): revision and seq then are the
// archive's, and the next owner continues without a jump. A snapshot
// that fails leaves no clean mark, and Close returns its error.
// [Stream.Abandon] closes without snapshot, backup or clean mark, for a
// worker whose right to the archive has run out. [Stream.Destroy] removes
// the fence after the archive copy, so the stream starts at seq 1 again.
// Trim and checkpoints write no snapshot and never look at the fence.
//
// A fence file that cannot be read as one (not JSON, longer than 4 KiB,
// an owner that is not 1 to 128 bytes of printable UTF-8, a revision or
// seq of 2^61 or more, a directory in its place) is damage: Open fails with
// ErrCorrupt and leaves it as it is, so does a commit that needs a
// reservation, Close returns it without writing the snapshot, and the
// timer logs it and writes none. An operator repairs it: removing the
// file makes the next open trust the files as without a fence; writing
// the archive's revision and seq with clean true makes it continue
// without a jump. Fields it does not know are ignored.
//
// Every open with an archive path (fenced or not) reads the archive
// copy's revision; a stream whose archive copy is not at its revision
// (the local file is newer, after a crash) gets a snapshot at Close even
// if nothing changed since the open.
//
// # Time
//
// Message times are assigned from [Options.Now] and never decrease within a
// stream, so messages too old for max_age are always a prefix of the stream.
// Expired messages (past their TTL, or older than max_age: time < now -
// max_age) are never returned by any read, whether a sweep has removed them
// yet or not: [Stream.Get], [Stream.GetKey], [Stream.Read] and [Stream.Keys]
// filter them in their queries, and [Stream.Inventory] sweeps first and
// reports the first seq a reader would see (so its count and first seq
// agree with reads). Only streams with max_age add its condition to their
// queries; the others run the same queries as without it. They are removed by one
// timer per stream (no goroutine per stream), armed for the earliest
// deadline and re-armed after commits, or by [Stream.Sweep]. The same timer
// writes archive snapshots for tiered storage at most once per
// [Options.ArchiveInterval], and runs the WAL checkpoint a commit asked for
// (see Files), so that neither runs inside a request.
//
// # Memory
//
// With thousands of streams open, each connection's fixed costs matter: the
// package turns off SQLite's lookaside allocator and page-cache
// preallocation process-wide, uses 1 KiB pages and a 64 KiB page cache, and
// keeps only frequently used statements prepared, in a cache of its own
// and only once they are used. [Stream.Trim] finalizes all of them, gives
// the page cache back and frees the connection's emulated C stack (about
// 24 KB that the C library would otherwise keep until the connection
// closes); [OpenStreamBytes] is what an open stream holds after it.
//
// # The cost of an open
//
// Opening a closed stream is, in order: one open(2), the OFD lock and a
// read of the header (see Files); sqlite3_open_v2 (which also registers
// the FTS5 and R*Tree modules the C library is built with); two PRAGMAs
// (locking_mode, cache_size), the second of which makes SQLite read and
// parse the schema and, in its first read transaction, read back the
// -wal a close left (at most 64 frames); the query that loads the meta
// row and the expiry deadline (two with max_age); and PRAGMA
// synchronous. In BenchmarkOpenGet's profile nearly half of it is SQLite
// opening the connection and reading its schema (the query on
// sqlite_schema, parsing its eight CREATE statements, opening the -wal),
// a fifth the load query (mostly preparing it: its subqueries find the
// expiry deadline); in BenchmarkOpenCloseCycle's, reading the -wal back
// is about a tenth. The schema itself is a small part: a file with the
// same tables and no indexes opens no faster, one with no schema at all
// about a fifth faster. Close finalizes the statements and closes the
// connection and the lock's descriptor: under a tenth of an
// open/write/close cycle.
package store
