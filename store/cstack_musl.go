//go:build linux && (amd64 || arm64 || loong64 || ppc64le || s390x || riscv64 || 386 || arm)

package store

import (
	"os"
	"unsafe"

	"modernc.org/libc"
	"zombiezen.com/go/sqlite"
)

// The C library emulates a C stack per connection (its *libc.TLS): each
// frame of a C function that needs stack memory is a heap block, kept for
// reuse until the connection closes, about 24 KB per connection once it
// ran a few statements. Nothing in libc's API lets it go; releaseCStack
// frees those blocks between calls, when no C frame uses them, and the
// next call allocates them again.
//
// tlsHead mirrors the head of libc's TLS in modernc.org/libc v1.80.1
// (libc_musl.go, pinned through go.mod), up to its exported ID field.
// releaseCStack only touches the stack when the ID read through the mirror
// is the TLS's own, so a libc that moves its fields makes it do nothing
// (and TestReleaseCStack fail), never write to the wrong place.
type tlsHead struct {
	allocaStack         []int
	allocas             []uintptr
	jumpBuffers         []uintptr
	pendingSignals      chan os.Signal
	pthread             uintptr
	pthreadCleanupItems []struct{}
	pthreadKeyValues    map[uint32]uintptr
	sigFlags            map[int32]int32
	sigHandlers         map[int32]uintptr
	sp                  int
	stack               []tlsStackSlot
	ID                  int32
}

// tlsStackSlot mirrors libc's slot of the same name, whose size is a
// Tsize_t: 64 bits on the 64-bit architectures, 32 on 386 and arm, the
// width of a uintptr on each of them. A field of fixed width would give the
// slots another stride there, which the ID check cannot see, and free
// pointers read from the wrong place.
type tlsStackSlot struct {
	p  uintptr
	sz uintptr
}

// releaseCStack frees the emulated C stack of conn, which must not be in
// a call (the stream's lock guarantees that). It reports the bytes freed.
func releaseCStack(conn *sqlite.Conn) int {
	tls, _ := rawConn(conn)
	h := (*tlsHead)(unsafe.Pointer(tls))
	if h.ID != tls.ID || h.sp != 0 {
		return 0
	}
	n := 0
	for _, slot := range h.stack {
		n += int(slot.sz)
		libc.Xfree(tls, slot.p)
	}
	h.stack = nil
	return n
}
