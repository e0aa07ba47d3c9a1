package broker

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-persist/persist/store"
	"github.com/nats-persist/persist/subjects"
)

// open makes sure e's stream is open; the caller owns e. With create, a
// stream that does not exist is created (with cfg, nil for defaults),
// counted against its namespace's quota; created reports that. Without
// create, a missing stream is store.ErrNotFound and nothing is created. A
// file stream takes an open slot first (see acquireSlot).
func (b *Broker) open(e *entry, create bool, cfg *store.Config) (created bool, err error) {
	if e.st != nil {
		if b.stale(e) {
			// Opened before its partition left (and perhaps came back):
			// another worker may have written the stream since. Closed
			// when its owner lets it go.
			return false, errNotServed
		}
		b.stats.cacheHits.Add(1)
		return false, nil
	}
	b.stats.cacheMisses.Add(1)
	if b.log.Enabled(context.Background(), slog.LevelDebug) {
		defer b.logOpen(e, time.Now(), &created, &err)
	}
	if h := b.hooks.mayServe; h != nil {
		if err := h(e.name); err != nil {
			return false, err
		}
	}
	memory := create && cfg != nil && cfg.Storage == subjects.StorageMemory
	var st *store.Stream
	err = store.ErrNotFound
	// Only a new file stream needs a slot whether or not its file exists:
	// looking for a stream that is not there, or creating a memory stream,
	// takes no slot and evicts nothing unless a file of that name may exist.
	if (create && !memory) || b.mayExist(e) {
		if err := b.acquireSlot(); err != nil {
			return false, err
		}
		// Opening may restore the file from the archive, into a directory
		// that pruneDirs must not remove meanwhile.
		b.dirMu.RLock()
		st, err = store.Open(e.path, b.storeOptions(e, false))
		b.dirMu.RUnlock()
		if err == nil {
			b.opened(e, st, false)
			return false, nil
		}
		if memory || !create || !errors.Is(err, store.ErrNotFound) {
			b.releaseSlot()
		}
	}
	if !create || !errors.Is(err, store.ErrNotFound) {
		return false, err
	}
	ns := subjects.Namespace(e.name)
	if err := b.reserveStream(ns); err != nil {
		if !memory {
			b.releaseSlot()
		}
		return false, err
	}
	opts := b.storeOptions(e, true)
	opts.Config = cfg
	opts.Memory = memory
	// The store makes the stream's directory (a full disk is
	// store.ErrStorageFull there, whether for the directory or the file).
	b.dirMu.RLock()
	st, err = store.Open(e.path, opts)
	b.dirMu.RUnlock()
	if err != nil {
		if !opts.Memory {
			b.releaseSlot()
			// The directories made for it go too: a creation that
			// failed (on a full disk, say) leaves nothing behind.
			b.pruneDirs(e.path)
		}
		b.releaseStream(ns)
		return false, err
	}
	b.opened(e, st, opts.Memory)
	b.streamCreated(e)
	return true, nil
}

// mayExist reports whether e's stream may have a file, here or in the
// archive.
func (b *Broker) mayExist(e *entry) bool {
	if _, err := os.Stat(e.path); !errors.Is(err, fs.ErrNotExist) {
		return true
	}
	if b.opts.ArchiveDir == "" {
		return false
	}
	_, err := os.Stat(filepath.Join(b.opts.ArchiveDir, subjects.Path(e.name)))
	return !errors.Is(err, fs.ErrNotExist)
}

func (b *Broker) storeOptions(e *entry, create bool) store.Options {
	name := e.name
	o := store.Options{
		Create:          create,
		Name:            name,
		Quota:           b.quota,
		Notify:          func(evs []store.Event) { b.publishEvents(name, evs) },
		ArchiveInterval: b.opts.ArchiveInterval,
		ChangesWindow:   b.opts.ChangesWindow,
		Logger:          b.log.With("stream", name),
	}
	if b.opts.ArchiveDir != "" {
		o.ArchivePath = filepath.Join(b.opts.ArchiveDir, subjects.Path(name))
		if b.parts != nil {
			// The archive copy is the truth for a stream another data
			// directory wrote last (its partition moved here), and
			// revisions jump past what a lost owner may have handed out.
			o.Fence = &store.Fence{Owner: b.dataID}
		}
	}
	if b.opts.BackupDir != "" {
		o.BackupPath = filepath.Join(b.opts.BackupDir, subjects.Path(name))
	}
	return o
}

// opened records e's newly opened stream; the caller owns e. A memory
// stream joins the index that list reads.
func (b *Broker) opened(e *entry, st *store.Stream, memory bool) {
	e.st = st
	if p := b.parts; p != nil {
		e.gen = p.gen[subjects.Partition(e.name, p.count)].Load()
	}
	b.damaged.Delete(e.name) // repaired: log it again if it is damaged again
	e.sh.mu.Lock()
	e.memory, e.state = memory, stateOpen
	e.sh.mu.Unlock()
	b.openStreams.Add(1)
	if memory {
		b.mu.Lock()
		b.streams[e.name] = e
		b.mu.Unlock()
	}
}

// streamCreated is called once a request created e's stream.
func (b *Broker) streamCreated(e *entry) {
	if !e.memory {
		b.names.add(e.name)
	}
}

// streamGone is called once e's stream was removed: destroyed, dropped, or
// a memory stream that was closed.
func (b *Broker) streamGone(e *entry) {
	if !e.memory {
		b.names.remove(e.name)
	}
}

// closeStream closes e's stream; the caller owns e. A memory stream that
// is closed is gone: it is destroyed, with its destroy event, so that
// mirrors learn of it. A file stream of a partition no longer held (or
// opened before it was lost) is abandoned: closed without an archive
// snapshot, which another worker's copy may have replaced (see
// partitions). No lock is held while a file closes.
func (b *Broker) closeStream(e *entry) (err error) {
	if b.log.Enabled(context.Background(), slog.LevelDebug) {
		reason, idle := b.closeReason(e)
		defer b.logClose(e, reason, idle, time.Now(), &err)
	}
	if e.memory {
		// Its destroy removes no file: dirMu is not needed for it.
		return b.retire(e, e.st.Destroy, nil)
	}
	err = b.closeFile(e)
	b.forget(e)
	return err
}

// closeFile closes e's file stream: with its archive snapshot while its
// partition is this worker's (always, unpartitioned), abandoned otherwise.
func (b *Broker) closeFile(e *entry) error {
	if b.mayArchive(e) {
		return e.st.Close()
	}
	return e.st.Abandon()
}

// logOpen writes the debug line of a stream open opened, once it is
// open; nothing when it failed (the request's failure has its own line).
func (b *Broker) logOpen(e *entry, began time.Time, created *bool, err *error) {
	if *err != nil {
		return
	}
	b.log.LogAttrs(context.Background(), slog.LevelDebug, "stream opened", slog.String("stream", e.name),
		slog.Bool("memory", e.memory), slog.Bool("created", *created), slog.Duration("duration", time.Since(began)))
}

// closeReason says why e's stream is being closed: the worker stops, the
// stream was idle past its timeout, or it is closed before that (evicted)
// to free a slot for another stream; and how long it was idle. The caller
// owns e.
func (b *Broker) closeReason(e *entry) (reason string, idle time.Duration) {
	e.sh.mu.Lock()
	idle = b.hooks.now().Sub(e.lastUsed)
	e.sh.mu.Unlock()
	switch {
	case b.closed.Load():
		return "shutdown", idle
	case !e.memory && idle < b.opts.IdleTimeout:
		return "evicted", idle
	}
	return "idle", idle
}

// logClose writes the debug line of a stream closeStream closed (a memory
// stream: dropped), once it is closed.
func (b *Broker) logClose(e *entry, reason string, idle time.Duration, began time.Time, err *error) {
	attrs := []slog.Attr{slog.String("stream", e.name), slog.Bool("memory", e.memory),
		slog.String("reason", reason), slog.Duration("idle", idle), slog.Duration("duration", time.Since(began))}
	if *err != nil {
		attrs = append(attrs, slog.Any("err", *err))
	}
	b.log.LogAttrs(context.Background(), slog.LevelDebug, "stream closed", attrs...)
}

// logTrim writes the debug line of an idle stream handed to be trimmed:
// reason "idle" after the trim delay, "warm_cap" earlier, when more idle
// streams are untrimmed than the memory budget allows.
func (b *Broker) logTrim(e *entry, reason string) {
	ctx := context.Background()
	if b.log.Enabled(ctx, slog.LevelDebug) {
		b.log.LogAttrs(ctx, slog.LevelDebug, "stream trimming", slog.String("stream", e.name), slog.String("reason", reason))
	}
}

// forget clears e's ended stream and gives its slot back; the caller owns
// e.
func (b *Broker) forget(e *entry) {
	if e.st == nil {
		return
	}
	b.forgetPrefetch(e.name)
	if e.memory {
		b.mu.Lock()
		if b.streams[e.name] == e {
			delete(b.streams, e.name)
		}
		b.mu.Unlock()
	}
	e.st = nil
	e.setState(stateClosed)
	b.openStreams.Add(-1)
	if !e.memory {
		b.releaseSlot()
	}
}

// drop removes a stream that must not remain (it was created by a request
// that changed nothing) without an event.
func (b *Broker) drop(e *entry) {
	memory := e.memory
	err := b.retire(e, e.st.Close, func() (bool, error) {
		if memory {
			return true, nil
		}
		return true, store.Remove(e.path)
	})
	if err != nil {
		b.log.Error("remove unused stream", "stream", e.name, "err", err)
	}
	if !memory {
		b.pruneDirs(e.path)
	}
}

// retire ends e's stream for good, or tries to: end, if not nil, runs
// first with no lock held (a close); then remove, if not nil, runs with
// dirMu held (read) because it removes the stream's files, and reports
// whether the stream is gone (nil remove: it is). Then, still under dirMu,
// e's stream is forgotten and a gone stream's count in the stream quotas
// given back: a count of the streams in reserveStream cannot run between
// the removal and the release, where it would miss a stream whose count is
// then given back. The caller owns e.
func (b *Broker) retire(e *entry, end func() error, remove func() (gone bool, err error)) error {
	var err error
	if end != nil {
		err = end()
	}
	b.dirMu.RLock()
	defer b.dirMu.RUnlock()
	gone := true
	if remove != nil {
		var rerr error
		gone, rerr = remove()
		err = errors.Join(err, rerr)
	}
	if h := b.hooks.retired; h != nil {
		h(e.name)
	}
	b.forget(e)
	if gone {
		b.releaseStream(subjects.Namespace(e.name))
		b.streamGone(e)
	}
	return err
}

// janitor trims and closes idle streams; one goroutine for all streams.
func (b *Broker) janitor() {
	defer close(b.janitorDone)
	every := min(b.opts.IdleTimeout, b.opts.TrimDelay)
	if m := b.opts.MemoryIdleTimeout; m > 0 && m < every {
		every = m
	}
	every = min(max(every/4, 10*time.Millisecond), time.Second)
	tick := b.hooks.tick
	if tick == nil {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-b.janitorStop:
			return
		case <-tick:
			b.closeIdle()
		}
	}
}

// closeIdle trims the file streams idle longer than TrimDelay, closes those
// idle longer than IdleTimeout and the memory streams idle longer than
// MemoryIdleTimeout, and returns when that is done. The work is the closer
// pool's; the idle lists are walked from their least recently used end,
// so each call costs what it does, not the number of open streams.
func (b *Broker) closeIdle() {
	now := b.hooks.now()
	var done sync.WaitGroup
	older := func(l *idleList, d time.Duration) func() *entry {
		return func() *entry {
			if e := l.tail; e != nil && now.Sub(e.lastUsed) >= d {
				return e
			}
			return nil
		}
	}
	hand := func(t closeTask) {
		done.Add(1)
		t.done = &done
		if t.frees {
			b.closing.Add(1)
		}
		b.closeq.push(t)
	}
	for _, l := range []*idleList{&b.reg.trimmed, &b.reg.fresh} {
		for e := b.takeIdle(older(l, b.opts.IdleTimeout), stateClosing); e != nil; e = b.takeIdle(older(l, b.opts.IdleTimeout), stateClosing) {
			hand(closeTask{e: e, frees: true})
		}
	}
	for e := b.takeIdle(older(&b.reg.fresh, b.opts.TrimDelay), stateOpen); e != nil; e = b.takeIdle(older(&b.reg.fresh, b.opts.TrimDelay), stateOpen) {
		b.logTrim(e, "idle")
		hand(closeTask{e: e, trim: true})
	}
	if d := b.opts.MemoryIdleTimeout; d > 0 {
		b.mu.Lock()
		mem := make([]*entry, 0, len(b.streams))
		for _, e := range b.streams {
			mem = append(mem, e)
		}
		b.mu.Unlock()
		for _, e := range mem {
			e.sh.mu.Lock()
			ok := !e.busy && e.state == stateOpen && len(e.queue) == 0 && now.Sub(e.lastUsed) >= d
			if ok {
				e.busy, e.state = true, stateClosing
				b.held.Add(1)
			}
			e.sh.mu.Unlock()
			if ok {
				hand(closeTask{e: e})
			}
		}
	}
	done.Wait()
}

// reserveStream counts one more stream in namespace ns and in the worker,
// or fails with too_many_streams when either is at its quota. A count is
// taken from disk the first time a stream is created under its quota, so
// that starting the worker never scans. The worker's count is kept under
// the key "", which no namespace has.
func (b *Broker) reserveStream(ns string) error {
	quotas := [...]struct {
		key   string
		limit int
	}{{ns, b.opts.MaxStreamsPerNamespace}, {"", b.opts.MaxStreams}}
	for _, q := range quotas {
		if q.limit > 0 {
			if err := b.countOnce(q.key); err != nil {
				return err
			}
		}
	}
	b.nsMu.Lock()
	defer b.nsMu.Unlock()
	for i, q := range quotas {
		if q.limit <= 0 {
			continue
		}
		if b.nsCount[q.key] >= q.limit {
			for _, taken := range quotas[:i] {
				if taken.limit > 0 {
					b.nsCount[taken.key]--
				}
			}
			return subjects.ErrTooManyStreams
		}
		b.nsCount[q.key]++
	}
	return nil
}

// countOnce counts the streams of namespace ns ("": all streams) from disk
// unless they were counted already. It holds dirMu exclusively, so that no
// stream file is created or retired while it walks.
func (b *Broker) countOnce(ns string) error {
	b.nsMu.Lock()
	_, ok := b.nsCount[ns]
	b.nsMu.Unlock()
	if ok {
		return nil
	}
	b.dirMu.Lock()
	defer b.dirMu.Unlock()
	n, err := b.countStreams(ns)
	if err != nil {
		return err
	}
	b.nsMu.Lock()
	if _, ok := b.nsCount[ns]; !ok {
		b.nsCount[ns] = n
	}
	b.nsMu.Unlock()
	return nil
}

// forgetCounts forgets the stream counts of partition n's namespaces,
// when this worker begins to serve n: other workers created and removed
// its streams meanwhile, so the next creation under a quota counts them
// from the disk again (the archive holds them all). The worker-wide count
// is kept: it is this worker's.
func (b *Broker) forgetCounts(n int) {
	b.nsMu.Lock()
	defer b.nsMu.Unlock()
	for ns := range b.nsCount {
		if ns != "" && subjects.Partition(ns, b.parts.count) == n {
			delete(b.nsCount, ns)
		}
	}
}

// releaseStream counts one stream fewer in namespace ns and in the worker.
func (b *Broker) releaseStream(ns string) {
	b.nsMu.Lock()
	for _, key := range [...]string{ns, ""} {
		if n, ok := b.nsCount[key]; ok && n > 0 {
			b.nsCount[key] = n - 1
		}
	}
	b.nsMu.Unlock()
}

// pruneDirs removes the directories above a removed stream file that are
// now empty, up to the data directory, so that a write that failed on a
// new stream leaves nothing behind. A directory that still holds anything
// stops it (os.Remove refuses a non-empty directory).
func (b *Broker) pruneDirs(path string) {
	b.dirMu.Lock()
	defer b.dirMu.Unlock()
	for dir := filepath.Dir(path); dir != b.opts.DataDir && len(dir) > len(b.opts.DataDir); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			return
		}
	}
}
