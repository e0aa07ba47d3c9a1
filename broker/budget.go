package broker

import (
	"fmt"
	"syscall"
	"time"

	"github.com/nats-persist/persist/store"
)

// slotWait bounds how long opening a stream waits for the slot an eviction
// frees before it is answered 429 overloaded. A close checkpoints with two
// fsyncs, which a busy disk can make take a second or more.
const slotWait = 5 * time.Second

// errAllBusy is the answer when every open slot is held by a busy stream.
var errAllBusy = fmt.Errorf("%w: every open stream is busy", store.ErrTooManyOpen)

// Budget is how many stream files a worker keeps open at once, and what
// decided it.
type Budget struct {
	MaxOpen       int    // the effective cap: the least of the three below
	BoundBy       string // "memory", "descriptors" or "max-open"
	MemoryCap     int    // three quarters of Options.MemoryBudget / store.OpenStreamBytes
	WarmCap       int    // idle streams not trimmed yet: a quarter of the budget / what Trim frees
	DescriptorCap int    // (NoFile - reserve) / store.FilesPerStream
	NoFile        uint64 // the soft RLIMIT_NOFILE when the broker started
}

// descriptorReserve is the descriptors kept for everything but open stream
// files: NATS connections, logs, archive and backup copies, a file being
// restored.
func descriptorReserve(nofile uint64) uint64 { return max(256, nofile/10) }

// newBudget computes the open-stream cap from opts and the descriptor
// limit nofile (0: read RLIMIT_NOFILE).
func newBudget(opts Options, nofile uint64) Budget {
	if nofile == 0 {
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
			nofile = lim.Cur
		} else {
			nofile = 1024
		}
	}
	bg := Budget{NoFile: nofile}
	// A stream in use holds more than a trimmed one. Three quarters of the
	// budget pay for the open streams at their trimmed size, a quarter for
	// what the idle ones not trimmed yet hold above it; past WarmCap of
	// those the least recently used is trimmed at once. The streams being
	// worked on are warm too, at most a worker's or a closer's worth each.
	warm := opts.MemoryBudget / 4
	bg.MemoryCap = int(max(1, (opts.MemoryBudget-warm)/store.OpenStreamBytes))
	bg.WarmCap = int(max(1, warm/(store.ActiveStreamBytes-store.OpenStreamBytes)))
	if r := descriptorReserve(nofile); nofile > r {
		bg.DescriptorCap = int(min((nofile-r)/store.FilesPerStream, 1<<30))
	}
	bg.DescriptorCap = max(1, bg.DescriptorCap)
	bg.MaxOpen, bg.BoundBy = bg.MemoryCap, "memory"
	if bg.DescriptorCap < bg.MaxOpen {
		bg.MaxOpen, bg.BoundBy = bg.DescriptorCap, "descriptors"
	}
	if opts.MaxOpen > 0 && opts.MaxOpen < bg.MaxOpen {
		bg.MaxOpen, bg.BoundBy = opts.MaxOpen, "max-open"
	}
	return bg
}

// Budget returns the open-stream budget the broker runs with.
func (b *Broker) Budget() Budget { return b.budget }

// maxSlotWaiters bounds the workers waiting for an open slot at once when
// no idle stream could be evicted for them, so that the others stay free to
// finish the streams that hold the slots.
const maxSlotWaiters = runWorkers / 2

// acquireSlot takes an open slot for a file stream. With every slot taken
// it hands the least recently used idle stream to the closer pool and
// waits, a bounded time, for a slot to be freed; while more wait than
// closes are under way, a stream that goes idle is closed at once (see
// release). When the wait times out, or none was idle and too many workers
// wait already, every open stream is busy: it fails with
// store.ErrTooManyOpen (429 overloaded).
func (b *Broker) acquireSlot() error {
	select {
	case b.slots <- struct{}{}:
		return nil
	default:
	}
	waiters := b.slotWaiters.Add(1)
	defer b.slotWaiters.Add(-1)
	if b.closing.Load() < waiters && !b.evict() && waiters > maxSlotWaiters {
		return errAllBusy
	}
	t := time.NewTimer(slotWait)
	defer t.Stop()
	select {
	case b.slots <- struct{}{}:
		return nil
	case <-t.C:
		b.log.Warn("no open slot freed in time", "wait", slotWait, "closing", b.closing.Load(), "waiting", b.slotWaiters.Load(), "idle", b.reg.idleCount())
		return errAllBusy
	}
}

// releaseSlot gives back the slot of a file stream that closed.
func (b *Broker) releaseSlot() { <-b.slots }
