package integration

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-persist/persist/broker"
	"github.com/nats-persist/persist/client"
	"zombiezen.com/go/sqlite"
)

// faultDamage is one way a stream file can be damaged: damage is applied
// to the file at path of a stream of msgs messages of size bytes each,
// written and closed by a worker.
type faultDamage struct {
	name   string
	msgs   int
	size   int
	damage func(tb testing.TB, path string)
}

// faultDamages are the damaged-file cases. The stream names are chosen so
// that none is a prefix of another, since log lines are matched by path.
var faultDamages = []faultDamage{
	{name: "truncated", msgs: 200, size: 1000, damage: func(tb testing.TB, path string) {
		// A checkpointed file cut to half its pages: the header still
		// claims them all.
		faultCheckpoint(tb, path)
		st, err := os.Stat(path)
		if err != nil {
			tb.Fatal(err)
		}
		page := faultPageSize(tb, path)
		if err := os.Truncate(path, st.Size()/2/page*page); err != nil {
			tb.Fatal(err)
		}
	}},
	{name: "cutmidpage", msgs: 200, size: 1000, damage: func(tb testing.TB, path string) {
		faultCheckpoint(tb, path)
		st, err := os.Stat(path)
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.Truncate(path, st.Size()-333); err != nil {
			tb.Fatal(err)
		}
	}},
	{name: "randombytes", msgs: 20, size: 100, damage: func(tb testing.TB, path string) {
		st, err := os.Stat(path)
		if err != nil {
			tb.Fatal(err)
		}
		faultRandomize(tb, path, 0, st.Size())
	}},
	{name: "randompages", msgs: 200, size: 1000, damage: func(tb testing.TB, path string) {
		// The first page (header and schema) is intact, every other page
		// is noise.
		faultCheckpoint(tb, path)
		st, err := os.Stat(path)
		if err != nil {
			tb.Fatal(err)
		}
		page := faultPageSize(tb, path)
		faultRandomize(tb, path, page, st.Size()-page)
	}},
	{name: "futureschema", msgs: 20, size: 100, damage: func(tb testing.TB, path string) {
		// A sound stream file that a newer version migrated: its
		// user_version is one more than this worker knows.
		faultCheckpoint(tb, path)
		faultSQLite(tb, path, fmt.Sprintf("PRAGMA user_version=%d", faultUserVersion(tb, path)+1))
	}},
	{name: "unreadable", msgs: 20, size: 100, damage: func(tb testing.TB, path string) {
		if err := os.Chmod(path, 0); err != nil {
			tb.Fatal(err)
		}
	}},
	{name: "otherdbwal", msgs: 5, size: 100, damage: func(tb testing.TB, path string) {
		// The -wal of a database that is no stream, copied while that
		// database is open (closing it would checkpoint and remove it).
		other := filepath.Join(tb.TempDir(), "other.db")
		conn, err := sqlite.OpenConn(other, sqlite.OpenReadWrite|sqlite.OpenCreate)
		if err != nil {
			tb.Fatal(err)
		}
		defer conn.Close()
		for _, q := range []string{"PRAGMA locking_mode=EXCLUSIVE", "PRAGMA journal_mode=WAL", "CREATE TABLE t (x)", "INSERT INTO t VALUES (randomblob(5000))"} {
			if err := faultExec(conn, q); err != nil {
				tb.Fatalf("%s: %v", q, err)
			}
		}
		b, err := os.ReadFile(other + "-wal")
		if err != nil || len(b) == 0 {
			tb.Fatalf("the other database's -wal: %d bytes, %v", len(b), err)
		}
		if err := os.WriteFile(path+"-wal", b, 0o644); err != nil {
			tb.Fatal(err)
		}
	}},
	{name: "foreignwal", msgs: 5, size: 100, damage: func(tb testing.TB, path string) {
		// The -wal of another stream, with its own valid frames.
		src := filepath.Join(filepath.Dir(filepath.Dir(path)), "ok", "walsource.db-wal")
		b, err := os.ReadFile(src)
		if err != nil {
			tb.Fatal(err)
		}
		if len(b) == 0 {
			tb.Fatalf("%s is empty: the case needs a -wal with frames", src)
		}
		if err := os.WriteFile(path+"-wal", b, 0o644); err != nil {
			tb.Fatal(err)
		}
	}},
	{name: "notastream", msgs: 0, damage: func(tb testing.TB, path string) {
		// A sound SQLite database that is not a stream file.
		faultSQLite(tb, path, "PRAGMA journal_mode=WAL", "CREATE TABLE t (x)", "INSERT INTO t VALUES (1)")
	}},
}

// faultSQLite runs statements on the database at path with SQLite's own
// file layer, then closes it, which checkpoints and removes its -wal.
// Exclusive locking keeps the WAL index in memory: no -shm file is left.
func faultSQLite(tb testing.TB, path string, stmts ...string) {
	tb.Helper()
	conn, err := sqlite.OpenConn(path, sqlite.OpenReadWrite|sqlite.OpenCreate)
	if err != nil {
		tb.Fatal(err)
	}
	for _, q := range append([]string{"PRAGMA locking_mode=EXCLUSIVE"}, stmts...) {
		if err := faultExec(conn, q); err != nil {
			conn.Close()
			tb.Fatalf("%s: %s: %v", path, q, err)
		}
	}
	if err := conn.Close(); err != nil {
		tb.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); err == nil {
		tb.Fatalf("%s-wal is still there after closing", path)
	}
}

// faultExec runs one statement on conn, ignoring the rows it returns.
func faultExec(conn *sqlite.Conn, q string) error {
	st, _, err := conn.PrepareTransient(q)
	if err != nil {
		return err
	}
	defer st.Finalize()
	for {
		row, err := st.Step()
		if err != nil || !row {
			return err
		}
	}
}

// faultCheckpoint moves everything in the -wal of the stream file at path
// into the file and removes the -wal, so that the file alone is the
// stream.
func faultCheckpoint(tb testing.TB, path string) {
	tb.Helper()
	faultSQLite(tb, path, "PRAGMA wal_checkpoint(TRUNCATE)")
}

// faultHeader reads the 100-byte SQLite header of the file at path.
func faultHeader(tb testing.TB, path string) []byte {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	h := make([]byte, 100)
	if _, err := f.ReadAt(h, 0); err != nil {
		tb.Fatal(err)
	}
	return h
}

func faultPageSize(tb testing.TB, path string) int64 {
	tb.Helper()
	n := int64(binary.BigEndian.Uint16(faultHeader(tb, path)[16:]))
	if n == 1 {
		n = 65536
	}
	return n
}

// faultUserVersion is the schema version recorded in a file's header.
func faultUserVersion(tb testing.TB, path string) int {
	tb.Helper()
	return int(binary.BigEndian.Uint32(faultHeader(tb, path)[60:]))
}

// faultRandomize overwrites n bytes at off of the file at path with noise.
func faultRandomize(tb testing.TB, path string, off, n int64) {
	tb.Helper()
	b := make([]byte, n)
	rand.Read(b)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	_, err = f.WriteAt(b, off)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		tb.Fatal(err)
	}
}

// faultDamagedRequests are the requests sent to every damaged stream, each
// of which must be answered 503 damaged: one per operation on a stream,
// the config both read and changed.
var faultDamagedRequests = []struct{ op, body string }{
	{"set", "x"},
	{"setmany", `[{"data":"eA=="},{"data":"eQ==","key":"k"}]`},
	{"get", `{"seq":1}`},
	{"get", `{"key":"k"}`},
	{"getall", ``},
	{"inventory", ``},
	{"config", ``},
	{"config", `{"max_msgs":10}`},
	{"keys", ``},
	{"delete", `{"all":true}`},
	{"delete", `{"seq":1}`},
	{"destroy", ``},
}

// faultNoBypass returns the command that runs the worker with args so
// that file permissions apply to it. Root reads a file of any mode: then
// the worker runs under util-linux's setpriv without the two capabilities
// that let root ignore permissions (CAP_DAC_OVERRIDE and
// CAP_DAC_READ_SEARCH), still as root, so that it reaches its data
// wherever the test's TMPDIR is.
func faultNoBypass(tb testing.TB, args ...string) *exec.Cmd {
	tb.Helper()
	if os.Geteuid() != 0 {
		return exec.Command(workerBin, args...)
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		tb.Fatalf("the unreadable-file case needs setpriv (util-linux) to run the worker without root's permission bypass: %v", err)
	}
	return exec.Command("setpriv", append([]string{"--bounding-set", "-dac_override,-dac_read_search", "--", workerBin}, args...)...)
}

// TestFault_DamagedFiles damages stream files in every way faultDamages
// lists and checks what faultCheckDamaged says.
func TestFault_DamagedFiles(t *testing.T) {
	faultCheckDamaged(t, faultDamages)
}

// faultCheckDamaged damages stream files as cases say, then asks a worker
// for every operation on each of them, twice: every answer is 503
// damaged, the worker logs each damaged file once with its path, no byte
// of the damaged files or their siblings changes, and the healthy
// streams, written to all the while, lose nothing.
func faultCheckDamaged(t *testing.T, cases []faultDamage) {
	ctx := context.Background()
	s := runServer(t, -1)
	url := s.ClientURL()
	root := t.TempDir()
	data := filepath.Join(root, "data")

	// A worker writes every stream and stops; then the files are damaged.
	b := startBroker(t, s, broker.Options{DataDir: data})
	c := client.New(connect(t, url))
	healthy := map[string][]ackedWrite{}
	write := func(name string, n, size int) {
		for i := range n {
			payload := fmt.Sprintf("%s-%d-%s", name, i, strings.Repeat("p", size))
			ack, err := c.Stream(name).Set(ctx, []byte(payload), client.WithKey(fmt.Sprintf("k%d", i%7)))
			if err != nil {
				t.Fatalf("Set(%s) error = %v", name, err)
			}
			if !strings.Contains(name, ".damaged.") {
				healthy[name] = append(healthy[name], ackedWrite{ack.Seq, payload})
			}
		}
	}
	for _, name := range []string{"acme.ok.walsource", "acme.ok.plain", "other.ok"} {
		write(name, 5, 50)
	}
	for _, d := range cases {
		if d.msgs > 0 {
			write("acme.damaged."+d.name, d.msgs, d.size)
		}
	}
	shutdown(t, b)
	for name, acked := range healthy {
		// Keyed writes replace each other: only the last of each key stays.
		healthy[name] = acked[len(acked)-min(len(acked), 7):]
	}
	damagedDir := filepath.Join(data, "acme", "damaged")
	if err := os.MkdirAll(damagedDir, 0o755); err != nil {
		t.Fatal(err)
	}
	paths := map[string]string{}
	for _, d := range cases {
		path := filepath.Join(damagedDir, d.name+".db")
		d.damage(t, path)
		paths[d.name] = path
	}
	before := faultSnapshot(t, damagedDir)
	cmd := faultNoBypass(t, "--nats-url", url, "--data", data, "--log-level", "warn", "--idle-timeout", "1s")
	w := startWorkerCmd(t, url, cmd)

	// Between any two requests to damaged streams, a healthy stream (old or
	// new, in the same namespace or not) is written and read.
	names := []string{"acme.ok.walsource", "acme.ok.plain", "other.ok", "acme.ok.fresh", "acme.damagedtoo"}
	healthyStep := func(i int) {
		t.Helper()
		name := names[i%len(names)]
		payload := fmt.Sprintf("%s-live-%d", name, i)
		ack, err := c.Stream(name).Set(ctx, []byte(payload))
		if err != nil {
			t.Fatalf("Set(healthy stream %s) error = %v", name, err)
		}
		if m, err := c.Stream(name).Get(ctx, ack.Seq); err != nil || string(m.Data) != payload {
			t.Fatalf("Get(healthy stream %s, %d) = %v, want %q", name, ack.Seq, err, payload)
		}
		healthy[name] = append(healthy[name], ackedWrite{ack.Seq, payload})
	}

	nc := connect(t, url)
	requests := 0
	for round := range 2 {
		for _, d := range cases {
			stream := "acme.damaged." + d.name
			for _, rq := range faultDamagedRequests {
				healthyStep(requests)
				r, n, err := faultCall(nc, rq.op, stream, nil, []byte(rq.body), 10*time.Second)
				requests++
				if err != nil {
					t.Errorf("round %d: %v", round, err)
					continue
				}
				if r.code != 503 || r.reason != "damaged" || n != 0 {
					t.Errorf("round %d: %s %s %s = %v after %d messages (%s), want 503 damaged", round, rq.op, stream, rq.body, r, n, r.msg.Data)
				}
			}
		}
	}

	faultSameFiles(t, "damaged files", before, faultSnapshot(t, damagedDir))
	logged := 0
	lines := strings.Split(w.stderr.String(), "\n")
	for _, d := range cases {
		n := 0
		for _, l := range lines {
			if strings.Contains(l, paths[d.name]) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s: %d log lines name %s, want 1", d.name, n, paths[d.name])
		}
		logged += n
	}
	writes := 0
	for name, acked := range healthy {
		checkAcked(t, acked, readAll(t, c.Stream(name)))
		writes += len(acked)
	}
	report(t, "damaged", map[string]any{
		"cases":            len(cases),
		"case_names":       faultDamageNames(cases),
		"requests":         requests,
		"log_lines":        logged,
		"healthy_streams":  len(healthy),
		"healthy_verified": writes,
	})
}

func faultDamageNames(cases []faultDamage) []string {
	var out []string
	for _, d := range cases {
		out = append(out, d.name)
	}
	return out
}
