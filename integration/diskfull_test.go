package integration

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-persist/persist/client"
	"github.com/nats-persist/persist/subjects"
	"zombiezen.com/go/sqlite"
)

// faultTmpfsSize is the size of the disk-full test's file system.
const faultTmpfsSize = 4 << 20

// faultMountNS is a private mount namespace, held by a sleeping process,
// in which dir is a small tmpfs. Nothing of it is visible outside: the
// test reaches it with nsenter, and it goes away with its processes.
type faultMountNS struct {
	pid int
	dir string
}

// faultTmpfs makes a private mount namespace with a tmpfs mounted with
// options (size=…, nr_inodes=…) on a fresh directory. It needs root (or CAP_SYS_ADMIN) and
// util-linux's unshare and nsenter.
func faultTmpfs(tb testing.TB, options string) *faultMountNS {
	tb.Helper()
	for _, tool := range []string{"unshare", "nsenter", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Fatalf("the disk-full test needs %s (util-linux) to mount a private tmpfs: %v", tool, err)
		}
	}
	dir := filepath.Join(tb.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs -o "$1" tmpfs "$2" && echo mounted && exec sleep infinity`, "sh", options, dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("unshare: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tb.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "mounted\n" {
		tb.Fatalf("could not mount a tmpfs in a private mount namespace (needs root or CAP_SYS_ADMIN): %q %s", line, stderr.String())
	}
	return &faultMountNS{pid: cmd.Process.Pid, dir: dir}
}

// command is a command run inside the namespace.
func (ns *faultMountNS) command(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"-t", strconv.Itoa(ns.pid), "-m", "--", name}, args...)...)
}

// run runs a command inside the namespace and returns its output.
func (ns *faultMountNS) run(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	out, err := ns.command(name, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %v in the namespace: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// files lists every file and directory under the tmpfs, with the size of
// the files, as seen inside the namespace.
func (ns *faultMountNS) files(tb testing.TB) map[string]string {
	tb.Helper()
	out := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(ns.run(tb, "find", ns.dir, "-mindepth", "1", "-printf", `%P %y %s\n`)), "\n") {
		if f := strings.Fields(l); len(f) == 3 {
			out[f[0]] = f[1] + " " + f[2]
		}
	}
	return out
}

// copyOut copies the tmpfs's files to a directory outside the namespace.
func (ns *faultMountNS) copyOut(tb testing.TB) string {
	tb.Helper()
	dst := tb.TempDir()
	cmd := ns.command("tar", "-C", ns.dir, "-cf", "-", ".")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("tar in the namespace: %v\n%s", err, stderr.String())
	}
	tr := tar.NewReader(bytes.NewReader(out))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return dst
		}
		if err != nil {
			tb.Fatal(err)
		}
		p := filepath.Join(dst, filepath.FromSlash(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			var b []byte
			if b, err = io.ReadAll(tr); err == nil {
				err = os.WriteFile(p, b, 0o644)
			}
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// faultIntegrity fails unless PRAGMA integrity_check is ok on every
// stream file under dir (a copy: SQLite applies the -wal to it).
func faultIntegrity(tb testing.TB, dir string) int {
	tb.Helper()
	files := dbFiles(tb, dir)
	for _, f := range files {
		conn, err := sqlite.OpenConn(filepath.Join(dir, f), sqlite.OpenReadWrite)
		if err != nil {
			tb.Fatalf("open %s: %v", f, err)
		}
		var result []string
		st, _, err := conn.PrepareTransient("PRAGMA integrity_check")
		for err == nil {
			var row bool
			if row, err = st.Step(); err != nil || !row {
				break
			}
			result = append(result, st.ColumnText(0))
		}
		if st != nil {
			st.Finalize()
		}
		conn.Close()
		if err != nil || !slices.Equal(result, []string{"ok"}) {
			tb.Errorf("integrity_check %s = %v %v, want ok", f, result, err)
		}
	}
	return len(files)
}

// faultReason is the reason of a protocol error, "ok" for nil, or the
// error itself.
func faultReason(err error) string {
	var perr *subjects.Error
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &perr):
		return strconv.Itoa(perr.Code) + " " + perr.Reason
	}
	return err.Error()
}

// faultRandom returns n bytes of noise: they do not compress.
func faultRandom(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestFault_DiskFull runs a worker on a 4 MiB tmpfs, fills it, and checks
// from the wire that writes are refused with 507 storage_full and leave
// nothing behind, that reads still work, that a new stream is not
// half-created, and that after space is freed writes go on where they
// stopped, with every acknowledged write still there, also after a
// restart, and every file sound.
func TestFault_DiskFull(t *testing.T) {
	ctx := context.Background()
	s := runServer(t, -1)
	url := s.ClientURL()
	ns := faultTmpfs(t, "size="+strconv.Itoa(faultTmpfsSize))
	start := func() *worker {
		return startWorkerCmd(t, url, ns.command(workerBin, "--nats-url", url, "--data", ns.dir, "--log-level", "warn", "--idle-timeout", "1s"))
	}
	w := start()
	c := client.New(connect(t, url), client.WithTimeout(20*time.Second))

	streams := []string{"acme.full.plain", "acme.full.keyed", "other.full"}
	acked := map[string][]ackedWrite{}
	reasons := map[string]int{}
	write := func(name string, size int) error {
		data := string(faultRandom(size))
		var opts []client.SetOption
		if name == "acme.full.keyed" {
			opts = append(opts, client.WithKey(fmt.Sprintf("k%d", len(acked[name]))))
		}
		ack, err := c.Stream(name).Set(ctx, []byte(data), opts...)
		if err == nil {
			if a := acked[name]; len(a) > 0 && ack.Seq != a[len(a)-1].seq+1 {
				t.Errorf("Set(%s) seq = %d after %d: seqs must continue", name, ack.Seq, a[len(a)-1].seq)
			}
			acked[name] = append(acked[name], ackedWrite{ack.Seq, data})
		}
		return err
	}
	for i := range 30 {
		for _, name := range streams {
			if err := write(name, 100+i*50); err != nil {
				t.Fatalf("Set(%s) before the disk is full: %v", name, err)
			}
		}
	}

	// A filler takes all the space but 256 KiB; the writes take the rest.
	filler := filepath.Join(ns.dir, "filler")
	ns.command("dd", "if=/dev/zero", "of="+filler, "bs=64k").Run() // ends with ENOSPC
	ns.run(t, "truncate", "-s", "-256K", filler)
	refused := 0
	for i := 0; refused < 3*len(streams); i++ {
		if i > 5000 {
			t.Fatalf("the disk did not fill after %d writes: %v", i, reasons)
		}
		name := streams[i%len(streams)]
		err := write(name, 4096)
		r := faultReason(err)
		reasons["set "+r]++
		switch {
		case err == nil:
		case r == "507 storage_full":
			refused++
		default:
			t.Fatalf("Set(%s) on a full disk: %v, want 507 storage_full", name, err)
		}
	}
	// A setmany on a full disk is refused as a whole or item by item;
	// either way nothing of it is written.
	items := make([]client.Item, 10)
	for i := range items {
		items[i].Data = faultRandom(4096)
	}
	res, err := c.Stream("acme.full.plain").SetMany(ctx, items)
	if err != nil {
		r := faultReason(err)
		reasons["setmany "+r]++
		if r != "507 storage_full" {
			t.Fatalf("SetMany() on a full disk: %v, want 507 storage_full", err)
		}
	} else {
		for i, r := range res {
			if r.Err == nil {
				// Space freed by a checkpoint: then it is a write like any other.
				a := acked["acme.full.plain"]
				acked["acme.full.plain"] = append(a, ackedWrite{r.Seq, string(items[i].Data)})
				continue
			}
			reason := faultReason(r.Err)
			reasons["setmany item "+reason]++
			if reason != "507 storage_full" {
				t.Fatalf("SetMany() item %d on a full disk: %v, want 507 storage_full", i, r.Err)
			}
		}
	}

	// Reads work on the full disk and show exactly what was acknowledged.
	checkStreams := func(when string) {
		t.Helper()
		for _, name := range streams {
			msgs := readAll(t, c.Stream(name))
			checkAcked(t, acked[name], msgs)
			inv, err := c.Stream(name).Inventory(ctx)
			if err != nil {
				t.Fatalf("%s: Inventory(%s) error = %v", when, name, err)
			}
			a := acked[name]
			var bytes int64
			for _, m := range msgs {
				bytes += int64(len(m.Data) + len(m.Key))
			}
			if inv.Count != int64(len(msgs)) || inv.Count != int64(len(a)) || inv.LastSeq != a[len(a)-1].seq || inv.Bytes != bytes {
				t.Fatalf("%s: Inventory(%s) = %+v; read %d messages of %d bytes, %d acknowledged, last seq %d",
					when, name, inv, len(msgs), bytes, len(a), a[len(a)-1].seq)
			}
			if _, err := c.Stream(name).Get(ctx, a[0].seq); err != nil {
				t.Fatalf("%s: Get(%s, %d) error = %v", when, name, a[0].seq, err)
			}
		}
	}
	checkStreams("full disk")
	// And after the streams were closed for idleness and open again.
	statsNC := connect(t, url)
	waitFor(t, time.Minute, func() bool {
		st, err := faultStats(statsNC)
		if err != nil {
			t.Fatal(err)
		}
		return st["open_streams"] == 0.0
	})
	checkStreams("full disk, reopened")

	// Creating a stream on the full disk fails and leaves no trace.
	before := ns.files(t)
	three := int64(3)
	for _, name := range []string{"acme.fresh", "newns.fresh", "newns.deep.er.fresh"} {
		_, err := c.Stream(name).Set(ctx, faultRandom(4096))
		r := faultReason(err)
		reasons["set new stream "+r]++
		if r != "507 storage_full" {
			t.Errorf("Set(new stream %s) on a full disk: %v, want 507 storage_full", name, err)
		}
		_, err = c.Stream(name).UpdateConfig(ctx, client.ConfigPatch{MaxMsgs: &three})
		r = faultReason(err)
		reasons["config new stream "+r]++
		if r != "507 storage_full" {
			t.Errorf("UpdateConfig(new stream %s) on a full disk: %v, want 507 storage_full", name, err)
		}
	}
	after := ns.files(t)
	var left []string
	for p, what := range after {
		if _, ok := before[p]; !ok {
			left = append(left, p+" ("+what+")")
		}
	}
	if len(left) > 0 {
		t.Errorf("failed creations left %v on the full disk", left)
	}
	if list, _, err := c.ListPage(ctx, "newns", "", 100); err != nil || len(list) != 0 {
		t.Errorf("List(newns) = %v, %v; want no streams", list, err)
	}

	// Space returns: writes go on where they stopped.
	ns.run(t, "rm", filler)
	var ackedFull int
	for _, a := range acked {
		ackedFull += len(a)
	}
	for range 10 {
		for _, name := range streams {
			if err := write(name, 4096); err != nil {
				t.Fatalf("Set(%s) after space returned: %v", name, err)
			}
		}
	}
	for _, name := range []string{"acme.fresh", "newns.fresh"} {
		ack, err := c.Stream(name).Set(ctx, []byte("fresh"))
		if err != nil || ack.Seq != 1 {
			t.Fatalf("Set(new stream %s) after space returned = %+v, %v; want seq 1", name, ack, err)
		}
	}
	checkStreams("space returned")

	// Nothing acknowledged is lost across a restart, and every file is sound.
	if code := w.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("worker exit code after SIGTERM = %d, want 0\n%s", code, w.stderr.String())
	}
	w2 := start()
	checkStreams("restart")
	for _, w := range []*worker{w, w2} {
		if out := w.stderr.String(); strings.Contains(out, "panic") {
			t.Fatalf("the worker panicked:\n%s", out)
		}
	}
	checked := faultIntegrity(t, ns.copyOut(t))
	var total int
	for _, a := range acked {
		total += len(a)
	}
	result := "507 storage_full, nothing half written, every acknowledged write kept"
	if t.Failed() {
		result = "failed"
	}
	report(t, "diskfull", map[string]any{
		"tmpfs_bytes":      faultTmpfsSize,
		"replies":          reasons,
		"writes_refused":   refused,
		"acked_until_full": ackedFull,
		"acked_total":      total,
		"lost":             0,
		"leftovers":        len(left),
		"files_integrity":  checked,
		"streams":          len(streams) + 2,
		"restarts":         1,
		"result":           result,
	})
}

// TestFault_InodesFull runs a worker on a tmpfs with few inodes and uses
// them all up: a directory or a file can no longer be made, while bytes
// are free. Creating a stream, in a new namespace (its directory fails)
// or an existing one (its file fails), answers 507 storage_full and
// leaves nothing behind; the existing streams keep working; once inodes
// are free, creations succeed.
func TestFault_InodesFull(t *testing.T) {
	ctx := context.Background()
	s := runServer(t, -1)
	url := s.ClientURL()
	ns := faultTmpfs(t, "size=16m,nr_inodes=64")
	startWorkerCmd(t, url, ns.command(workerBin, "--nats-url", url, "--data", ns.dir, "--log-level", "warn"))
	c := client.New(connect(t, url), client.WithTimeout(20*time.Second))
	var acked []ackedWrite
	st := c.Stream("acme.inodes")
	write := func() error {
		data := fmt.Sprintf("write %d", len(acked))
		ack, err := st.Set(ctx, []byte(data))
		if err == nil {
			acked = append(acked, ackedWrite{ack.Seq, data})
		}
		return err
	}
	for range 10 {
		if err := write(); err != nil {
			t.Fatal(err)
		}
	}
	fillers := filepath.Join(ns.dir, "fillers")
	ns.run(t, "sh", "-c", `mkdir "$1" && i=0; while touch "$1/f$i" 2>/dev/null; do i=$((i+1)); done`, "sh", fillers)

	before := ns.files(t)
	refused := map[string]int{}
	for _, name := range []string{"acme.fresh", "newns.fresh", "newns.deep.fresh"} {
		_, err := c.Stream(name).Set(ctx, []byte("x"))
		r := faultReason(err)
		refused[r]++
		if r != "507 storage_full" {
			t.Errorf("Set(new stream %s) without free inodes: %v, want 507 storage_full", name, err)
		}
	}
	for p, what := range ns.files(t) {
		if _, ok := before[p]; !ok {
			t.Errorf("a failed creation left %s (%s)", p, what)
		}
	}
	for range 10 {
		if err := write(); err != nil {
			t.Fatalf("Set(existing stream) without free inodes: %v", err)
		}
	}
	checkAcked(t, acked, readAll(t, st))

	ns.run(t, "rm", "-r", fillers)
	for _, name := range []string{"acme.fresh", "newns.fresh", "newns.deep.fresh"} {
		if ack, err := c.Stream(name).Set(ctx, []byte("x")); err != nil || ack.Seq != 1 {
			t.Fatalf("Set(new stream %s) with inodes free = %+v, %v; want seq 1", name, ack, err)
		}
	}
	report(t, "diskfull_inodes", map[string]any{"creations_refused": refused, "acked": len(acked), "lost": 0})
}
