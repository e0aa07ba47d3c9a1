package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/nats-persist/persist/cmd/internal/command"
)

// env is a fake environment for parseConfig.
type env map[string]string

func (e env) lookup(k string) (string, bool) { v, ok := e[k]; return v, ok }

func TestParseConfig_Defaults(t *testing.T) {
	cfg, err := parseConfig(nil, env{}.lookup)
	if err != nil {
		t.Fatalf("parseConfig() error = %v", err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Data", cfg.Data, filepath.Join(wd, "persist-data")},
		{"NATSURL", cfg.NATSURL, ""},
		{"Listen", cfg.Listen, "127.0.0.1:4222"},
		{"listenPort", cfg.listenPort, 4222},
		{"Prefix", cfg.Prefix, "persist"},
		{"Name", cfg.Name, "persist"},
		{"QueueGroup", cfg.QueueGroup, "persist"},
		{"Archive", cfg.Archive, ""},
		{"ArchiveInterval", cfg.ArchiveInterval, 30 * time.Second},
		{"Backup", cfg.Backup, ""},
		{"IdleTimeout", cfg.IdleTimeout, 5 * time.Second},
		{"MemoryIdleTimeout", cfg.MemoryIdleTimeout, time.Duration(0)},
		{"MaxOpen", cfg.MaxOpen, 0},
		{"MemoryBudget", cfg.MemoryBudget, byteSize(256 << 20)},
		{"TrimDelay", cfg.TrimDelay, 2 * time.Second},
		{"MaxStreamsPerNamespace", cfg.MaxStreamsPerNamespace, 0},
		{"MaxStreams", cfg.MaxStreams, 0},
		{"MemoryQuota", cfg.MemoryQuota, byteSize(1 << 30)},
		{"LogFormat", cfg.LogFormat, "text"},
		{"LogLevel", cfg.LogLevel, "info"},
		{"ShutdownTimeout", cfg.ShutdownTimeout, 30 * time.Second},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestParseConfig_EnvAndFlags(t *testing.T) {
	dir := t.TempDir()
	e := env{
		"PERSIST_DATA":                      filepath.Join(dir, "from-env"),
		"PERSIST_PREFIX":                    "envprefix",
		"PERSIST_MEMORY_QUOTA":              "512MiB",
		"PERSIST_MAX_STREAMS_PER_NAMESPACE": "7",
		"PERSIST_MAX_STREAMS":               "9",
		"PERSIST_IDLE_TIMEOUT":              "5m",
		"PERSIST_LOG_LEVEL":                 "debug",
		"PERSIST_NATS_URL":                  "nats://env:4222",
		"PERSIST_NAME":                      "", // empty counts as unset
	}
	args := []string{"--prefix", "flagprefix", "--idle-timeout=10s", "--archive", filepath.Join(dir, "arch")}
	cfg, err := parseConfig(args, e.lookup)
	if err != nil {
		t.Fatalf("parseConfig() error = %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Data (env)", cfg.Data, filepath.Join(dir, "from-env")},
		{"Prefix (flag wins)", cfg.Prefix, "flagprefix"},
		{"MemoryQuota (env)", cfg.MemoryQuota, byteSize(512 << 20)},
		{"MaxStreamsPerNamespace (env)", cfg.MaxStreamsPerNamespace, 7},
		{"MaxStreams (env)", cfg.MaxStreams, 9},
		{"IdleTimeout (flag wins)", cfg.IdleTimeout, 10 * time.Second},
		{"LogLevel (env)", cfg.LogLevel, "debug"},
		{"NATSURL (env)", cfg.NATSURL, "nats://env:4222"},
		{"Name (empty env)", cfg.Name, "persist"},
		{"Archive (flag)", cfg.Archive, filepath.Join(dir, "arch")},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	t.Run("EveryFlagHasEnv", func(t *testing.T) {
		var cfg config
		fs := newFlagSet(&cfg)
		e := env{}
		want := map[string]string{}
		fs.VisitAll(func(f *flag.Flag) {
			v := "7" // an int or a byte size
			if g, ok := f.Value.(flag.Getter); ok {
				switch g.Get().(type) {
				case time.Duration:
					v = "7s"
				case string:
					v = "x7"
				case bool:
					v = "true"
				}
			}
			e[command.EnvName(envPrefix, f.Name)] = v
			want[f.Name] = v
		})
		if err := command.Parse(fs, envPrefix, nil, e.lookup); err != nil {
			t.Fatalf("command.Parse() error = %v", err)
		}
		fs.VisitAll(func(f *flag.Flag) {
			if got := f.Value.String(); got != want[f.Name] {
				t.Errorf("--%s = %q after %s=%q, want %q", f.Name, got, command.EnvName(envPrefix, f.Name), want[f.Name], want[f.Name])
			}
		})
	})
}

func TestRun_Help(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, &stdout, &stderr); err != nil {
		t.Fatalf("run(--help) error = %v", err)
	}
	out := stdout.String()
	var cfg config
	n := 0
	newFlagSet(&cfg).VisitAll(func(f *flag.Flag) {
		n++
		line := fmt.Sprintf("  --%s ", f.Name)
		if !strings.Contains(out, line) {
			t.Errorf("help lacks %q", line)
		}
		def := f.DefValue
		if def == "" {
			def = `""`
		}
		want := fmt.Sprintf("env %s, default %s\n", command.EnvName(envPrefix, f.Name), def)
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q", want)
		}
	})
	for _, name := range []string{
		"data", "nats-url", "listen", "prefix", "name", "queue-group", "nats-creds", "nats-nkey",
		"tls-ca", "tls-cert", "tls-key", "archive", "archive-interval", "backup", "idle-timeout",
		"memory-idle-timeout", "max-open", "memory-budget", "trim-delay", "max-streams-per-namespace", "max-streams", "memory-quota",
		"log-format", "log-level", "summary-interval", "shutdown-timeout",
	} {
		if !strings.Contains(out, "  --"+name+" ") {
			t.Errorf("help lacks --%s", name)
		}
	}
	if !strings.Contains(out, "  --version\n      print the version and exit\n") {
		t.Errorf("help lacks --version")
	}
	for _, want := range []string{"PERSIST_MEMORY_QUOTA, default 1GiB", "PERSIST_MEMORY_BUDGET, default 256MiB", "PERSIST_TRIM_DELAY, default 2s", "PERSIST_DATA, default ./persist-data", "PERSIST_LISTEN, default 127.0.0.1:4222"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q", want)
		}
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr = %q, want empty", stderr.String())
	}
}

func TestRun_BadUsage(t *testing.T) {
	long := "/" + strings.Repeat("d", maxDirLen)
	tests := []struct {
		name string
		args []string
		env  env
		want string // part of the message
	}{
		{"UnknownFlag", []string{"--nope"}, nil, "nope"},
		{"Positional", []string{"extra"}, nil, `unexpected argument "extra"`},
		{"BadPrefix", []string{"--prefix", "a b"}, nil, "--prefix"},
		{"BadName", []string{"--name", "a.b"}, nil, "--name"},
		{"BadQueueGroup", []string{"--queue-group", "a b"}, nil, "--queue-group"},
		{"BadListen", []string{"--listen", "nowhere"}, nil, "--listen"},
		{"BadListenPort", []string{"--listen", "127.0.0.1:99999"}, nil, "--listen"},
		{"BadDuration", []string{"--idle-timeout", "soon"}, nil, "idle-timeout"},
		{"ZeroIdleTimeout", []string{"--idle-timeout", "0"}, nil, "--idle-timeout"},
		{"NegativeMemoryIdle", []string{"--memory-idle-timeout", "-1s"}, nil, "--memory-idle-timeout"},
		{"ZeroArchiveInterval", []string{"--archive-interval", "0s"}, nil, "--archive-interval"},
		{"NegativeMaxOpen", []string{"--max-open", "-1"}, nil, "--max-open"},
		{"ZeroMemoryBudget", []string{"--memory-budget", "0"}, nil, "--memory-budget"},
		{"BadMemoryBudget", []string{"--memory-budget", "plenty"}, nil, "memory-budget"},
		{"ZeroTrimDelay", []string{"--trim-delay", "0s"}, nil, "--trim-delay"},
		{"NegativeStreams", []string{"--max-streams-per-namespace", "-1"}, nil, "--max-streams-per-namespace"},
		{"NegativeAllStreams", []string{"--max-streams", "-2"}, nil, "--max-streams"},
		{"BadQuota", []string{"--memory-quota", "lots"}, nil, "memory-quota"},
		{"ZeroQuota", []string{"--memory-quota", "0"}, nil, "--memory-quota"},
		{"BadLogFormat", []string{"--log-format", "xml"}, nil, "--log-format"},
		{"BadLogLevel", []string{"--log-level", "info+2"}, nil, "--log-level"},
		{"CredsWithoutURL", []string{"--nats-creds", "x.creds"}, nil, "--nats-creds needs --nats-url"},
		{"CredsAndNKey", []string{"--nats-url", "nats://h", "--nats-creds", "a", "--nats-nkey", "b"}, nil, "not both"},
		{"CertWithoutKey", []string{"--nats-url", "nats://h", "--tls-cert", "c.pem"}, nil, "--tls-key"},
		{"LongData", []string{"--data", long}, nil, "longer than 160"},
		{"LongArchive", []string{"--archive", long}, nil, "--archive"},
		{"LongBackupEnv", nil, env{"PERSIST_BACKUP": long}, "--backup"},
		{"ArchiveInData", []string{"--data", "/srv/d", "--archive", "/srv/d/arch"}, nil, "separate directories"},
		{"SameBackupAndArchive", []string{"--archive", "/srv/a", "--backup", "/srv/a"}, nil, "separate directories"},
		{"BadEnv", nil, env{"PERSIST_MAX_OPEN": "many"}, "PERSIST_MAX_OPEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"PERSIST_BACKUP", "PERSIST_MAX_OPEN"} {
				v, ok := tt.env[k]
				if ok {
					t.Setenv(k, v)
				} else {
					t.Setenv(k, "")
				}
			}
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tt.args, &stdout, &stderr)
			if got, want := command.ExitCode(err), 2; got != want {
				t.Fatalf("command.ExitCode(run(%q)) = %d (err %v), want %d", tt.args, got, err, want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run(%q) error = %q, want it to contain %q", tt.args, err, tt.want)
			}
		})
	}
}

func TestRun_DataPathTooLong(t *testing.T) {
	base := t.TempDir()
	data := filepath.Join(base, strings.Repeat("x", maxDirLen))
	err := run(context.Background(), []string{"--data", data, "--listen", "127.0.0.1:0"}, &bytes.Buffer{}, &bytes.Buffer{})
	if got, want := command.ExitCode(err), 2; got != want {
		t.Fatalf("exitCode = %d (err %v), want %d", got, err, want)
	}
	if _, serr := os.Stat(data); !errors.Is(serr, os.ErrNotExist) {
		t.Errorf("data directory was created (stat err %v); a refused start must not create it", serr)
	}
}

func TestByteSize_Set(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"1073741824", 1 << 30, true},
		{"512MiB", 512 << 20, true},
		{"1GiB", 1 << 30, true},
		{"1gib", 1 << 30, true},
		{"2GB", 2e9, true},
		{"4k", 4096, true},
		{"3 MB", 3e6, true},
		{"100B", 100, true},
		{"1TiB", 1 << 40, true},
		{"", 0, false},
		{"GiB", 0, false},
		{"-1", 0, false},
		{"1.5GiB", 0, false},
		{"9999999999TiB", 0, false},
		{"12XB", 0, false},
	}
	for _, tt := range tests {
		var b byteSize
		err := b.Set(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("Set(%q) error = %v, want ok %v", tt.in, err, tt.ok)
			continue
		}
		if tt.ok && int64(b) != tt.want {
			t.Errorf("Set(%q) = %d, want %d", tt.in, b, tt.want)
		}
	}
	for _, tt := range []struct {
		n    byteSize
		want string
	}{{1 << 30, "1GiB"}, {512 << 20, "512MiB"}, {1000, "1000"}, {0, "0"}, {3 << 40, "3TiB"}} {
		if got := tt.n.String(); got != tt.want {
			t.Errorf("byteSize(%d).String() = %q, want %q", int64(tt.n), got, tt.want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://worker:secret@h:4222", "nats://worker:xxxxx@h:4222"},
		{"nats://s3cr3tt0ken@h:4222", "nats://xxxxx@h:4222"},
		{"nats://a:b@h1:4222,nats://a:b@h2:4222", "nats://a:xxxxx@h1:4222,nats://a:xxxxx@h2:4222"},
	}
	for _, tt := range tests {
		if got := redactURL(tt.in); got != tt.want {
			t.Errorf("redactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestExitCode(t *testing.T) {
	if got := command.ExitCode(nil); got != 0 {
		t.Errorf("command.ExitCode(nil) = %d, want 0", got)
	}
	if got := command.ExitCode(fmt.Errorf("wrapped: %w", command.Usagef("bad"))); got != 2 {
		t.Errorf("command.ExitCode(usage) = %d, want 2", got)
	}
	if got := command.ExitCode(errors.New("boom")); got != 1 {
		t.Errorf("command.ExitCode(other) = %d, want 1", got)
	}
}

func TestRun_PortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = run(context.Background(), []string{"--data", t.TempDir(), "--listen", l.Addr().String()}, &bytes.Buffer{}, &bytes.Buffer{})
	if got, want := command.ExitCode(err), 1; got != want {
		t.Fatalf("exitCode = %d (err %v), want %d", got, err, want)
	}
	if !strings.Contains(err.Error(), l.Addr().String()) || !strings.Contains(err.Error(), "listen") {
		t.Errorf("error = %q, want it to name the address and the listen failure", err)
	}
}

func TestRun_Embedded(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data") // missing: run creates it
	w := startWorker(t, "--data", data, "--listen", "127.0.0.1:0")

	// Records come in order: the limit is logged before anything starts.
	// The Go runtime raises the soft limit to one below the hard one.
	lim := w.logs.wait(t, "open files limit")
	if soft, hard := lim["soft"].(float64), lim["hard"].(float64); soft < 1 || hard-soft > 1 {
		t.Errorf("limit line = %v, want the soft limit raised to the hard one", lim)
	}
	rec := w.logs.wait(t, "persist worker started")
	url, _ := rec["nats_url"].(string)
	if strings.HasSuffix(url, ":0") || url == "" {
		t.Fatalf("started line nats_url = %q, want the actual address", url)
	}
	if rec["data"] != data || rec["prefix"] != "persist" || rec["version"] == nil {
		t.Errorf("started line = %v, want data %q, prefix persist and a version", rec, data)
	}
	if id, _ := rec["instance"].(string); id == "" {
		t.Errorf("started line = %v, want the micro instance id that locate and Persist-Worker name", rec)
	}
	if n, _ := rec["max_open"].(float64); n < 1 || rec["max_open_bound_by"] == "" {
		t.Errorf("started line = %v, want the open-stream cap and what bounds it", rec)
	}

	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	seq := setMsg(t, nc, "persist.api.set.acme.docs", "hello")
	msg, err := nc.Request("persist.api.get.acme.docs", fmt.Appendf(nil, `{"seq":%d}`, seq), 5*time.Second)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got, want := string(msg.Data), "hello"; got != want {
		t.Errorf("get body = %q, want %q", got, want)
	}
	if got, want := msg.Header.Get("Persist-Seq"), fmt.Sprint(seq); got != want {
		t.Errorf("get Persist-Seq = %q, want %q", got, want)
	}

	if err := w.stop(t); err != nil {
		t.Fatalf("run() = %v, want nil after cancel", err)
	}
	if _, err := os.Stat(filepath.Join(data, "acme", "docs.db")); err != nil {
		t.Errorf("stream file: %v", err)
	}
	w.logs.wait(t, "persist worker stopped")
}

func TestRun_ServerConfigPermissions(t *testing.T) {
	opts, err := server.ProcessConfigFile(filepath.Join("..", "..", "testdata", "nats-server.conf"))
	if err != nil {
		t.Fatalf("ProcessConfigFile: %v", err)
	}
	opts.Host, opts.Port, opts.NoSigs, opts.NoLog = "127.0.0.1", -1, true, true
	srv := runServer(t, opts)
	host := srv.Addr().String()

	data := t.TempDir()
	w := startWorker(t, "--data", data, "--nats-url", "nats://worker:worker-secret@"+host)
	rec := w.logs.wait(t, "persist worker started")
	if got := rec["nats_url"]; got != "nats://worker:xxxxx@"+host {
		t.Errorf("started line nats_url = %v, want the password redacted", got)
	}

	acme, acmeErrs := connectUser(t, "nats://acme:acme-secret@"+host)
	reader, readerErrs := connectUser(t, "nats://acme-reader:reader-secret@"+host)

	t.Run("OwnNamespace", func(t *testing.T) {
		for _, stream := range []string{"acme", "acme.docs"} {
			seq := setMsg(t, acme, "persist.api.set."+stream, "v-"+stream)
			msg, err := acme.Request("persist.api.get."+stream, fmt.Appendf(nil, `{"seq":%d}`, seq), 5*time.Second)
			if err != nil {
				t.Fatalf("acme get %s: %v", stream, err)
			}
			if got, want := string(msg.Data), "v-"+stream; got != want {
				t.Errorf("acme get %s = %q, want %q", stream, got, want)
			}
		}
	})

	t.Run("OtherNamespace", func(t *testing.T) {
		// The server refuses the publish itself and tells the client
		// asynchronously; the request would only time out.
		acmeErrs.refused(t, acme, "persist.api.set.globex.docs")
		// Whole tokens: "acmecorp" is another namespace.
		acmeErrs.refused(t, acme, "persist.api.set.acmecorp")
		for _, p := range []string{"globex", "acmecorp.db"} {
			if _, err := os.Stat(filepath.Join(data, p)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("stat %s: %v, want it not to exist", p, err)
			}
		}
	})

	t.Run("ReaderReadOnly", func(t *testing.T) {
		msg, err := reader.Request("persist.api.get.acme.docs", []byte(`{"seq":1}`), 5*time.Second)
		if err != nil {
			t.Fatalf("reader get: %v", err)
		}
		if got, want := string(msg.Data), "v-acme.docs"; got != want {
			t.Errorf("reader get = %q, want %q", got, want)
		}
		readerErrs.refused(t, reader, "persist.api.set.acme.docs")
		readerErrs.refused(t, reader, "persist.api.delete.acme.docs")
		msg, err = reader.Request("persist.api.get.acme.docs", []byte(`{"seq":2}`), 5*time.Second)
		if err != nil {
			t.Fatalf("reader get seq 2: %v", err)
		}
		if got, want := msg.Header.Get("Nats-Service-Error-Code"), "404"; got != want {
			t.Errorf("get seq 2 after refused set: error code %q, want %q (the set must not have been written)", got, want)
		}
	})

	if err := w.stop(t); err != nil {
		t.Fatalf("run() = %v, want nil", err)
	}
}

func TestRun_StartsBeforeServer(t *testing.T) {
	t.Parallel() // waits for reconnect attempts
	// A free port, closed again so that the server can take it later.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().(*net.TCPAddr)
	l.Close()

	data := t.TempDir()
	w := startWorker(t, "--data", data, "--nats-url", fmt.Sprintf("nats://127.0.0.1:%d", addr.Port))
	w.logs.wait(t, "NATS not reachable yet; retrying in the background")
	w.logs.wait(t, "persist worker started")

	srv := runServer(t, &server.Options{Host: "127.0.0.1", Port: addr.Port, NoSigs: true, NoLog: true})
	w.logs.wait(t, "NATS connected")

	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	setMsg(t, nc, "persist.api.set.late", "x")
	if err := w.stop(t); err != nil {
		t.Fatalf("run() = %v, want nil", err)
	}
	if _, err := os.Stat(filepath.Join(data, "late.db")); err != nil {
		t.Errorf("stream file: %v", err)
	}
}

func TestRun_WrongCredentials(t *testing.T) {
	t.Parallel() // waits for reconnect attempts
	srv := runServer(t, &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		Username: "worker", Password: "right"})
	w := startWorker(t, "--data", t.TempDir(), "--nats-url", "nats://worker:wrong@"+srv.Addr().String())
	select {
	case err := <-w.done:
		w.done <- err
		if got, want := command.ExitCode(err), 1; got != want {
			t.Fatalf("exitCode = %d (err %v), want %d", got, err, want)
		}
		if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("error = %q, want it to say why", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("run still running with refused credentials; log:\n%s", w.logs)
	}
}

func TestRun_NKey(t *testing.T) {
	worker, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	workerPub, _ := worker.PublicKey()
	seed, _ := worker.Seed()
	seedFile := filepath.Join(t.TempDir(), "worker.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	client, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	clientPub, _ := client.PublicKey()
	srv := runServer(t, &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		Nkeys: []*server.NkeyUser{{Nkey: workerPub}, {Nkey: clientPub}}})

	data := t.TempDir()
	w := startWorker(t, "--data", data, "--nats-url", srv.ClientURL(), "--nats-nkey", seedFile)
	w.logs.wait(t, "persist worker started")

	nc, err := nats.Connect(srv.ClientURL(), nats.Nkey(clientPub, client.Sign))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	setMsg(t, nc, "persist.api.set.keyed", "x")
	if err := w.stop(t); err != nil {
		t.Fatalf("run() = %v, want nil", err)
	}

	t.Run("MissingSeedFile", func(t *testing.T) {
		err := run(context.Background(), []string{"--data", t.TempDir(), "--nats-url", srv.ClientURL(),
			"--nats-nkey", filepath.Join(t.TempDir(), "missing.nk")}, &bytes.Buffer{}, &bytes.Buffer{})
		if got, want := command.ExitCode(err), 1; got != want || !strings.Contains(err.Error(), "--nats-nkey") {
			t.Fatalf("run() = %v (exit %d), want exit %d naming --nats-nkey", err, got, want)
		}
	})
}

func TestRun_TLS(t *testing.T) {
	c := writeCerts(t, t.TempDir())
	tlsConfig, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: c.serverCert, KeyFile: c.serverKey, CaFile: c.ca, Verify: true, Timeout: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := runServer(t, &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		TLSConfig: tlsConfig, TLS: true, TLSVerify: true, TLSTimeout: 2})
	url := "tls://" + srv.Addr().String()

	w := startWorker(t, "--data", t.TempDir(), "--nats-url", url,
		"--tls-ca", c.ca, "--tls-cert", c.clientCert, "--tls-key", c.clientKey)
	w.logs.wait(t, "persist worker started")

	nc, err := nats.Connect(url, nats.RootCAs(c.ca), nats.ClientCert(c.clientCert, c.clientKey))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	setMsg(t, nc, "persist.api.set.secure", "x")
	if err := w.stop(t); err != nil {
		t.Fatalf("run() = %v, want nil", err)
	}
}

// certFiles are the PEM files of a test CA and the certificates it signed.
type certFiles struct{ ca, serverCert, serverKey, clientCert, clientKey string }

// writeCerts writes a CA, a server certificate for 127.0.0.1 and a client
// certificate into dir.
func writeCerts(tb testing.TB, dir string) certFiles {
	tb.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		return k
	}
	writePEM := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			tb.Fatal(err)
		}
		return path
	}
	writeKey := func(name string, k *ecdsa.PrivateKey) string {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			tb.Fatal(err)
		}
		return writePEM(name, "EC PRIVATE KEY", der)
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		tb.Fatal(err)
	}
	sign := func(serial int64, name string, usage x509.ExtKeyUsage, k *ecdsa.PrivateKey) []byte {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			tb.Fatal(err)
		}
		return der
	}
	serverKey, clientKey := newKey(), newKey()
	return certFiles{
		ca:         writePEM("ca.pem", "CERTIFICATE", caDER),
		serverCert: writePEM("server.pem", "CERTIFICATE", sign(2, "server", x509.ExtKeyUsageServerAuth, serverKey)),
		serverKey:  writeKey("server-key.pem", serverKey),
		clientCert: writePEM("client.pem", "CERTIFICATE", sign(3, "client", x509.ExtKeyUsageClientAuth, clientKey)),
		clientKey:  writeKey("client-key.pem", clientKey),
	}
}

// runServer runs a nats-server until the test ends.
func runServer(tb testing.TB, opts *server.Options) *server.Server {
	tb.Helper()
	srv, err := server.NewServer(opts)
	if err != nil {
		tb.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats-server not ready")
	}
	tb.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv
}

// worker is a run call in the background of a test.
type worker struct {
	cancel context.CancelFunc
	done   chan error
	logs   *logSink
}

// startWorker runs the command with args (plus JSON logs) until the test
// stops it or ends.
func startWorker(tb testing.TB, args ...string) *worker {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{cancel: cancel, done: make(chan error, 1), logs: newLogSink()}
	args = append([]string{"--log-format", "json", "--log-level", "debug", "--shutdown-timeout", "10s"}, args...)
	go func() { w.done <- run(ctx, args, &bytes.Buffer{}, w.logs) }()
	tb.Cleanup(func() {
		cancel()
		<-w.done
	})
	return w
}

// stop cancels the worker's context and returns what run returned.
func (w *worker) stop(tb testing.TB) error {
	tb.Helper()
	w.cancel()
	select {
	case err := <-w.done:
		w.done <- err // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		tb.Fatalf("run did not return after cancel; log:\n%s", w.logs)
		return nil
	}
}

// logSink collects the worker's JSON log records and hands them to wait.
type logSink struct {
	mu   sync.Mutex
	all  bytes.Buffer
	recs chan map[string]any
}

func newLogSink() *logSink { return &logSink{recs: make(chan map[string]any, 10000)} }

// Write takes one record per call, as slog's handlers write them.
func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.all.Write(p)
	s.mu.Unlock()
	var rec map[string]any
	if err := json.Unmarshal(p, &rec); err == nil {
		select {
		case s.recs <- rec:
		default: // a test that stopped reading does not block the worker
		}
	}
	return len(p), nil
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.all.String()
}

// wait returns the first record with message msg not yet consumed.
func (s *logSink) wait(tb testing.TB, msg string) map[string]any {
	tb.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case rec := <-s.recs:
			if rec["msg"] == msg {
				return rec
			}
		case <-timeout:
			tb.Fatalf("no log record %q; log:\n%s", msg, s)
			return nil
		}
	}
}

// setMsg sets a payload on subject and returns its seq.
func setMsg(tb testing.TB, nc *nats.Conn, subject, payload string) uint64 {
	tb.Helper()
	msg, err := nc.Request(subject, []byte(payload), 5*time.Second)
	if err != nil {
		tb.Fatalf("set %s: %v", subject, err)
	}
	var reply struct {
		Seq  uint64 `json:"seq"`
		Time int64  `json:"time"`
	}
	if err := json.Unmarshal(msg.Data, &reply); err != nil || reply.Seq == 0 || reply.Time == 0 {
		tb.Fatalf("set %s reply = %q (headers %v), want {seq,time}", subject, msg.Data, msg.Header)
	}
	return reply.Seq
}

// asyncErrs records a connection's asynchronous errors, where the server's
// permission violations arrive.
type asyncErrs struct{ ch chan error }

func connectUser(tb testing.TB, url string) (*nats.Conn, *asyncErrs) {
	tb.Helper()
	errs := &asyncErrs{ch: make(chan error, 100)}
	nc, err := nats.Connect(url, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case errs.ch <- err:
		default:
		}
	}))
	if err != nil {
		tb.Fatalf("connect %s: %v", redactURL(url), err)
	}
	tb.Cleanup(nc.Close)
	return nc, errs
}

// refused sends a request on subject and checks that the server refused
// it with a permissions violation.
func (e *asyncErrs) refused(tb testing.TB, nc *nats.Conn, subject string) {
	tb.Helper()
	if err := nc.PublishRequest(subject, nc.NewRespInbox(), []byte("x")); err != nil {
		tb.Fatalf("publish %s: %v", subject, err)
	}
	if err := nc.Flush(); err != nil {
		tb.Fatalf("flush: %v", err)
	}
	timeout := time.After(5 * time.Second)
	for {
		select {
		case err := <-e.ch:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), subject) {
				return
			}
		case <-timeout:
			tb.Fatalf("no permissions violation for %q", subject)
		}
	}
}
