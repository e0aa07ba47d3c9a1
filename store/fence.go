package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"unicode"
	"unicode/utf8"
)

// DefaultFenceAhead is how many revisions one fence write reserves when
// [Fence.Ahead] is 0; MaxFenceAhead is the most it may be.
const (
	DefaultFenceAhead = 1024
	MaxFenceAhead     = 1 << 32
)

// Fence makes a stream safe to move between workers that share its
// archive copy ([Options.ArchivePath]) and nothing else. Such a move loses
// what was acknowledged after the last archive snapshot when the old
// owner died; the fence makes sure that the seqs and revisions it handed
// out are never handed out again, with other content, by the next owner,
// and that copies written by different owners never mix.
//
// The fence is a small file beside the archive copy (ArchivePath +
// ".fence") that names the owner writing the stream and how far that
// owner may go: a revision and a seq it has reserved. A commit that
// would take the stream past its reservation first writes a new one,
// Ahead revisions further, and only then commits, so nothing is ever
// acknowledged beyond what the fence reserves. A new owner that opens the
// stream from the archive and finds a reservation beyond it jumps past
// it: its next seq follows the reserved one, its revision is one more
// than the reserved one, and [Stream.Changes] after any earlier revision
// is [ErrRevisionGone], so that a mirror reads the stream again. A
// stream closed cleanly ([Stream.Close] after its snapshot) leaves the
// fence marked clean, at exactly the archive's revision, and the next
// owner continues without a jump. The package doc (section "Moving
// streams") says what each open does.
type Fence struct {
	// Owner names the copy of the stream this process writes: the id of
	// its data directory. Non-empty, at most 128 bytes of printable
	// UTF-8.
	Owner string
	// Ahead is how many revisions one fence write reserves (0:
	// DefaultFenceAhead; at most MaxFenceAhead). A busy stream writes its
	// fence once per Ahead+1 revisions; a move that lost writes makes the
	// next owner's seqs and revisions jump by up to Ahead more than were
	// lost.
	Ahead uint64
}

// maxFenceOwner bounds Fence.Owner; maxFenceFile bounds the fence file
// read (another machine wrote it); maxFenceValue bounds a revision or seq
// read from it, far beyond any stream's, so that adding to one never
// overflows the int64 SQLite stores it as.
const (
	maxFenceOwner = 128
	maxFenceFile  = 4096
	maxFenceValue = math.MaxInt64 / 4
)

// validFence checks the fence of a stream opened with opts.
func validFence(f *Fence, archive string) error {
	if archive == "" {
		return fmt.Errorf("%w: a fence needs an archive path", ErrInvalid)
	}
	if f.Ahead > MaxFenceAhead {
		return fmt.Errorf("%w: fence ahead %d is more than %d", ErrInvalid, f.Ahead, MaxFenceAhead)
	}
	return validOwner(f.Owner)
}

// validOwner checks a fence owner.
func validOwner(owner string) error {
	if owner == "" || len(owner) > maxFenceOwner || !utf8.ValidString(owner) {
		return fmt.Errorf("%w: fence owner must be 1 to %d bytes of UTF-8", ErrInvalid, maxFenceOwner)
	}
	for _, r := range owner {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: fence owner %q is not printable", ErrInvalid, owner)
		}
	}
	return nil
}

// fenceRecord is the content of a fence file: a JSON object. Fields it
// does not know are ignored, so that a later version may add some.
type fenceRecord struct {
	Owner    string `json:"owner"`
	Revision uint64 `json:"revision"` // the highest revision Owner may commit
	Seq      uint64 `json:"seq"`      // the highest seq Owner may assign
	// Clean tells that Owner closed the stream after its archive
	// snapshot: Revision and Seq are the archive's.
	Clean bool `json:"clean"`
}

// beyond reports whether r reserves more than a stream at m holds: then
// something acknowledged may have been lost.
func (r *fenceRecord) beyond(m meta) bool {
	return r.Revision > m.revision || r.Seq > m.lastSeq
}

// fencePath is the fence file of the archive copy at archive.
func fencePath(archive string) string { return archive + ".fence" }

// readFence reads the fence file at path: nil when there is none. Anything
// else that cannot be read as a fence is damage (ErrCorrupt), which an
// operator repairs: the fence decides which copy is the truth.
func readFence(path string) (*fenceRecord, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fenceDamage(path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFenceFile+1))
	if err != nil {
		return nil, fenceDamage(path, err)
	}
	return parseFence(path, b)
}

// fenceDamage reports a fence file that is there but cannot be read: a
// directory in its place, no permission, an I/O error.
func fenceDamage(path string, err error) error {
	if errors.Is(fileErr(err), ErrStorageFull) {
		return fmt.Errorf("store: fence %s: %w", path, fileErr(err))
	}
	return fmt.Errorf("%w: fence %s: %v", ErrCorrupt, path, err)
}

// parseFence decodes and checks the content b of the fence file at path.
func parseFence(path string, b []byte) (*fenceRecord, error) {
	if len(b) > maxFenceFile {
		return nil, fmt.Errorf("%w: fence %s: longer than %d bytes", ErrCorrupt, path, maxFenceFile)
	}
	var r fenceRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: fence %s: %v", ErrCorrupt, path, err)
	}
	if err := validOwner(r.Owner); err != nil {
		return nil, fmt.Errorf("%w: fence %s: %v", ErrCorrupt, path, err)
	}
	if r.Revision > maxFenceValue || r.Seq > maxFenceValue {
		return nil, fmt.Errorf("%w: fence %s: revision %d, seq %d", ErrCorrupt, path, r.Revision, r.Seq)
	}
	return &r, nil
}

// writeFence replaces the fence file at path with r, atomically and
// durably: a temporary file beside it, synced, renamed over it, and the
// directory synced.
func writeFence(path string, r fenceRecord) (err error) {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("store: fence %s: %w", path, fileErr(err))
	}
	f, err := os.CreateTemp(dir, filepath.Base(path)+".new-*")
	if err != nil {
		return fmt.Errorf("store: fence %s: %w", path, fileErr(err))
	}
	defer func() {
		if err != nil {
			os.Remove(f.Name()) // a temporary file: errors do not matter
		}
	}()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("store: fence %s: %w", path, fileErr(err))
	}
	return nil
}

// fenceState is what an open stream knows of its fence.
type fenceState struct {
	path  string
	owner string
	ahead uint64
	// seen is the fence found at open (nil: none); mine tells that this
	// stream wrote the fence since, or found it naming its owner. Until
	// then a reservation may replace only the fence it saw.
	seen *fenceRecord
	mine bool
	// read is the fence as archiveFenced last read it (nil: none).
	read *fenceRecord
	// warned tells that a snapshot refused for another owner was logged.
	warned bool
}

// addCapped is a + b, at most maxFenceValue.
func addCapped(a, b uint64) uint64 {
	if a >= maxFenceValue || b >= maxFenceValue-a {
		return maxFenceValue
	}
	return a + b
}

// reserve writes the fence that lets this owner commit up to Ahead
// revisions past m, the counters of the transaction about to commit. It
// first reads the fence: one that names another owner (and is not the
// one this stream saw at open, which it takes over) means another worker
// writes the stream now, and nothing is reserved: ErrFenced. Called with
// the lock held, inside the transaction, which fails with any error.
func (s *Stream) reserve(m meta) error {
	f := s.fence
	cur, err := readFence(f.path)
	if err != nil {
		return err
	}
	if cur != nil && cur.Owner != f.owner && (f.mine || f.seen == nil || *cur != *f.seen) {
		return fmt.Errorf("%w: %s: the fence names %q, not %q", ErrFenced, s.path, cur.Owner, f.owner)
	}
	r := fenceRecord{Owner: f.owner, Revision: addCapped(m.revision, f.ahead), Seq: addCapped(m.lastSeq, f.ahead)}
	if err := writeFence(f.path, r); err != nil {
		return err
	}
	f.mine = true
	// Every set adds one to both the revision and the seq, anything
	// else only to the revision: the seq stays within the reservation
	// as long as the revision does.
	s.fenceRev = r.Revision
	return nil
}

// openFence brings a stream just loaded from its file (or created) in line
// with the fence found before the file was restored (see restore): kept
// tells that the local file was kept as it was. A reservation beyond the
// stream, other than this owner's own on its own file, makes it jump past
// it; a fence that does not name this owner is taken over at once, so that
// the old owner's late snapshots are refused.
func (s *Stream) openFence(kept bool) error {
	f := s.fence
	rec := f.seen
	own := rec != nil && rec.Owner == f.owner
	f.mine = own
	if own && kept {
		// This owner's reservation still stands for its own file, as far
		// as both its revision and its seq reach.
		if rec.Revision >= s.m.revision && rec.Seq >= s.m.lastSeq {
			s.fenceRev = min(rec.Revision, s.m.revision+(rec.Seq-s.m.lastSeq))
		}
		return nil
	}
	if rec != nil && rec.beyond(s.m) {
		// The jump's transaction writes the reservation (fenceRev is 0).
		return s.jump(rec)
	}
	if !own && (rec != nil || s.m.revision > 0) {
		return s.reserve(s.m)
	}
	return nil
}

// jump moves the stream past the fence rec in one transaction: the next
// seq follows rec's, the revision is one more than rec's, and the changes
// before it are gone (ErrRevisionGone), as if dropped from the changes
// table: the meta row's (gone_rev, gone_seq) stands for all of them. No
// event is published; the next one's revision tells watchers that they
// missed some.
func (s *Stream) jump(rec *fenceRecord) error {
	return s.update(func(tx *txn) error {
		tx.m.lastSeq = max(tx.m.lastSeq, rec.Seq)
		tx.m.revision = max(tx.m.revision, rec.Revision) + 1
		tx.chg = changeLog{goneRev: tx.m.revision, goneSeq: tx.m.lastSeq} // reloaded by the next change
		if err := tx.s.exec("DELETE FROM changes", nil); err != nil {
			return err
		}
		return tx.s.exec("UPDATE meta SET gone_rev = ?, gone_seq = ? WHERE id = 1", nil, tx.m.revision, tx.m.lastSeq)
	})
}

// archiveFenced reports whether the fence forbids this stream to write
// the archive copy: it names another owner, which writes the stream now
// (logged once per stream), or it cannot be read (the error). Called with
// the lock held.
func (s *Stream) archiveFenced() (bool, error) {
	f := s.fence
	if f == nil {
		return false, nil
	}
	cur, err := readFence(f.path)
	f.read = cur
	if err != nil {
		return true, fmt.Errorf("store: archive snapshot of %s not written: %w", s.path, err)
	}
	if cur == nil || cur.Owner == f.owner {
		return false, nil
	}
	if !f.warned {
		f.warned = true
		s.opts.Logger.Warn("store: archive snapshot not written: another owner writes the stream", "stream", s.path, "owner", f.owner, "fence_owner", cur.Owner)
	}
	return true, nil
}

// markClean writes the fence of a stream closed with its archive copy at
// its current revision, so that the next owner continues without a jump,
// unless archiveFenced just read that very fence (a stream opened and
// closed without a write). A stream that never had a fence nor an event
// leaves none.
func (s *Stream) markClean() error {
	f := s.fence
	if !f.mine && s.m.revision == 0 {
		return nil
	}
	r := fenceRecord{Owner: f.owner, Revision: s.m.revision, Seq: s.m.lastSeq, Clean: true}
	if f.read != nil && *f.read == r {
		return nil
	}
	return writeFence(f.path, r)
}
