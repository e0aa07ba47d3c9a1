package broker

import (
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-persist/persist/store"
	"github.com/nats-persist/persist/subjects"
)

// open makes sure e's stream is open. With create, a stream that does not
// exist is created (with cfg, nil for defaults), counted against its
// namespace's quota; created reports that. Without create, a missing stream
// is store.ErrNotFound and nothing is created.
func (b *Broker) open(e *entry, create bool, cfg *store.Config) (created bool, err error) {
	if e.st != nil {
		b.stats.cacheHits.Add(1)
		return false, nil
	}
	b.stats.cacheMisses.Add(1)
	// Opening may restore the file from the archive, into a directory that
	// pruneDirs must not remove meanwhile.
	b.dirMu.RLock()
	st, err := store.Open(e.path, b.storeOptions(e, false))
	b.dirMu.RUnlock()
	if err == nil {
		b.opened(e, st, false)
		return false, nil
	}
	if !create || !errors.Is(err, store.ErrNotFound) {
		return false, err
	}
	ns := subjects.Namespace(e.name)
	if err := b.reserveStream(ns); err != nil {
		return false, err
	}
	opts := b.storeOptions(e, true)
	opts.Config = cfg
	opts.Memory = cfg != nil && cfg.Storage == store.StorageMemory
	err = nil
	b.dirMu.RLock()
	if !opts.Memory {
		err = os.MkdirAll(filepath.Dir(e.path), 0o755)
	}
	if err == nil {
		st, err = store.Open(e.path, opts)
	}
	b.dirMu.RUnlock()
	if err != nil {
		b.releaseStream(ns)
		return false, err
	}
	b.opened(e, st, opts.Memory)
	if !opts.Memory {
		b.names.add(e.name)
	}
	return true, nil
}

func (b *Broker) storeOptions(e *entry, create bool) store.Options {
	name := e.name
	o := store.Options{
		Create:          create,
		Quota:           b.quota,
		Notify:          func(evs []store.Event) { b.publishEvents(name, evs) },
		ArchiveInterval: b.opts.ArchiveInterval,
		Logger:          b.log.With("stream", name),
	}
	if b.opts.ArchiveDir != "" {
		o.ArchivePath = filepath.Join(b.opts.ArchiveDir, subjects.Path(name))
	}
	if b.opts.BackupDir != "" {
		o.BackupPath = filepath.Join(b.opts.BackupDir, subjects.Path(name))
	}
	return o
}

// opened records e's newly opened stream and, past MaxOpen, closes the
// least recently used idle files.
func (b *Broker) opened(e *entry, st *store.Stream, memory bool) {
	b.mu.Lock()
	e.st, e.memory = st, memory
	if !memory {
		b.openFiles++
	}
	var victims []*entry
	if excess := b.openFiles - b.opts.MaxOpen; excess > 0 {
		victims = b.pickIdle(excess, func(c *entry) bool { return !c.memory })
	}
	b.mu.Unlock()
	b.closeEntries(victims)
}

// pickIdle reserves up to n idle entries that match, least recently used
// first, by marking them running so that no job starts on them while they
// close. b.mu is held.
func (b *Broker) pickIdle(n int, match func(*entry) bool) []*entry {
	var idle []*entry
	for _, c := range b.streams {
		if !c.running && len(c.queue) == 0 && c.st != nil && match(c) {
			idle = append(idle, c)
		}
	}
	if len(idle) > n {
		// Partial selection is enough; n is usually 1.
		for i := 0; i < n; i++ {
			m := i
			for k := i + 1; k < len(idle); k++ {
				if idle[k].lastUsed.Before(idle[m].lastUsed) {
					m = k
				}
			}
			idle[i], idle[m] = idle[m], idle[i]
		}
		idle = idle[:n]
	}
	for _, c := range idle {
		c.running = true
	}
	return idle
}

// closeEntries closes entries reserved by pickIdle and hands each back:
// requests that arrived meanwhile get a goroutine that reopens the stream.
func (b *Broker) closeEntries(es []*entry) {
	for _, e := range es {
		// A memory stream that is closed is gone; a file stream stays.
		if err := b.retire(e, func(e *entry) (bool, error) { return e.memory, b.closeStream(e) }); err != nil {
			b.log.Error("close stream", "stream", e.name, "err", err)
		}
		// Spawning here is safe during Shutdown: it waits for the janitor
		// before waiting for the stream goroutines, and LRU closes run on a
		// stream goroutine that is itself waited for.
		b.mu.Lock()
		if len(e.queue) > 0 {
			b.wg.Add(1)
			go b.run(e)
		} else {
			b.release(e)
		}
		b.mu.Unlock()
	}
}

// closeStream closes e's stream. A memory stream that is closed is gone:
// it is destroyed, with its destroy event, so that mirrors learn of it.
func (b *Broker) closeStream(e *entry) error {
	if e.memory {
		return e.st.Destroy()
	}
	return e.st.Close()
}

// forget clears e's closed stream.
func (b *Broker) forget(e *entry) {
	b.mu.Lock()
	if e.st != nil && !e.memory {
		b.openFiles--
	}
	e.st = nil
	b.mu.Unlock()
}

// drop removes a stream that must not remain (it was created by a request
// that changed nothing) without an event.
func (b *Broker) drop(e *entry) {
	err := b.retire(e, func(e *entry) (bool, error) {
		err := e.st.Close()
		if !e.memory {
			err = errors.Join(err, store.Remove(e.path))
		}
		return true, err
	})
	if err != nil {
		b.log.Error("remove unused stream", "stream", e.name, "err", err)
	}
	if !e.memory {
		b.pruneDirs(e.path)
	}
}

// retire ends e's stream with end, which reports whether the stream is
// gone (destroyed or removed, not only closed); then it forgets e's stream
// and gives a gone stream's count in the stream quotas back. A count of the
// streams in reserveStream cannot run in between: it would miss a stream
// whose count is then given back.
func (b *Broker) retire(e *entry, end func(*entry) (gone bool, err error)) error {
	b.dirMu.RLock()
	defer b.dirMu.RUnlock()
	gone, err := end(e)
	if h := b.hooks.retired; h != nil {
		h(e.name)
	}
	b.forget(e)
	if gone {
		b.releaseStream(subjects.Namespace(e.name))
		if !e.memory {
			b.names.remove(e.name)
		}
	}
	return err
}

// janitor closes idle streams; one goroutine for all streams.
func (b *Broker) janitor() {
	defer close(b.janitorDone)
	every := b.opts.IdleTimeout
	if m := b.opts.MemoryIdleTimeout; m > 0 && m < every {
		every = m
	}
	every = min(max(every/4, 10*time.Millisecond), 5*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-b.janitorStop:
			return
		case <-t.C:
			b.closeIdle()
		}
	}
}

// closeIdle closes the file streams idle longer than IdleTimeout and the
// memory streams idle longer than MemoryIdleTimeout.
func (b *Broker) closeIdle() {
	now := b.hooks.now()
	b.mu.Lock()
	victims := b.pickIdle(len(b.streams), func(c *entry) bool {
		if c.memory {
			return b.opts.MemoryIdleTimeout > 0 && now.Sub(c.lastUsed) >= b.opts.MemoryIdleTimeout
		}
		return now.Sub(c.lastUsed) >= b.opts.IdleTimeout
	})
	b.mu.Unlock()
	b.closeEntries(victims)
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
