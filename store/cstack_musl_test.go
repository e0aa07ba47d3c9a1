//go:build linux && (amd64 || arm64 || loong64 || ppc64le || s390x || riscv64 || 386 || arm)

package store

import "testing"

// TestReleaseCStack checks that the stack of a connection that ran
// statements is found and freed, and that the connection works after it.
func TestReleaseCStack(t *testing.T) {
	ts := openTest(t, nil)
	ts.put(t, Write{Key: "k", Data: make([]byte, 3000)})
	if _, err := ts.GetKey("k"); err != nil {
		t.Fatal(err)
	}
	ts.mu.Lock()
	n, again := releaseCStack(ts.conn), releaseCStack(ts.conn)
	ts.mu.Unlock()
	if n == 0 || again != 0 {
		t.Fatalf("releaseCStack() = %d, then %d; want some bytes, then none", n, again)
	}
	ts.put(t, data("after"))
	if got := ts.seqs(t); len(got) != 2 {
		t.Fatalf("seqs after releasing the stack = %v", got)
	}
}
