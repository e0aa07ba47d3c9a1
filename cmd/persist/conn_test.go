package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// writeContext writes a nats CLI context file under dir/nats/context.
func writeContext(tb testing.TB, dir, name string, fields map[string]string) string {
	tb.Helper()
	b, err := json.Marshal(fields)
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(dir, "nats", "context", name+".json")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// selectContext writes the nats CLI's selected context.
func selectContext(tb testing.TB, dir, name string) {
	tb.Helper()
	if err := os.WriteFile(filepath.Join(dir, "nats", "context.txt"), []byte(name+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
}

func TestConnection(t *testing.T) {
	w := startWorker(t, &server.Options{Username: "app", Password: "s3cret"}, nats.UserInfo("app", "s3cret"))
	ctx := context.Background()
	xdg := os.Getenv("XDG_CONFIG_HOME") // startWorker gave the test its own
	const dead = "nats://127.0.0.1:1"
	writeContext(t, xdg, "good", map[string]string{"url": w.url, "user": "app", "password": "s3cret", "description": "ignored"})
	writeContext(t, xdg, "wrongpw", map[string]string{"url": w.url, "user": "app", "password": "nope"})
	writeContext(t, xdg, "deadurl", map[string]string{"url": dead, "user": "app", "password": "s3cret"})
	okRun := func(t *testing.T, args ...string) {
		t.Helper()
		r := invocation{}.run(ctx, append(args, "info", "acme")...)
		if r.code != 0 {
			t.Fatalf("persist %s info: exit %d, %q", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	failRun := func(t *testing.T, want string, args ...string) {
		t.Helper()
		r := invocation{}.run(ctx, append(args, "info", "acme")...)
		if r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Fatalf("persist %s info = %+v, want exit 1 and %q", strings.Join(args, " "), r, want)
		}
	}

	t.Run("NoCredentials", func(t *testing.T) {
		failRun(t, "Authorization Violation", "--server", w.url)
	})
	t.Run("Flags", func(t *testing.T) {
		okRun(t, "-s", w.url, "--user", "app", "--password", "s3cret")
	})
	t.Run("Environment", func(t *testing.T) {
		t.Setenv("NATS_URL", w.url)
		t.Setenv("NATS_USER", "app")
		t.Setenv("NATS_PASSWORD", "s3cret")
		okRun(t)
		failRun(t, "connect to "+dead, "--server", dead) // a flag wins over its variable
	})
	t.Run("Selected", func(t *testing.T) {
		selectContext(t, xdg, "good")
		okRun(t)
		// An explicit context wins over the selected one.
		failRun(t, "(context wrongpw)", "--context", "wrongpw")
		t.Setenv("NATS_CONTEXT", "wrongpw")
		failRun(t, "Authorization Violation")
	})
	t.Run("Named", func(t *testing.T) {
		selectContext(t, xdg, "wrongpw")
		okRun(t, "--context", "good")
		// A flag wins over the context's field.
		okRun(t, "--context", "wrongpw", "--password", "s3cret")
	})
	t.Run("URLOverride", func(t *testing.T) {
		failRun(t, "connect to "+dead+" (context deadurl)", "--context", "deadurl")
		t.Setenv("NATS_URL", w.url)
		okRun(t, "--context", "deadurl")
	})
	t.Run("File", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ctx.json")
		b, _ := json.Marshal(map[string]string{"url": w.url, "user": "app", "password": "s3cret"})
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		okRun(t, "--context", path)
	})
	t.Run("HomeConfig", func(t *testing.T) {
		// Without XDG_CONFIG_HOME the files are under ~/.config.
		home := t.TempDir()
		t.Setenv("HOME", home)
		t.Setenv("XDG_CONFIG_HOME", "")
		writeContext(t, filepath.Join(home, ".config"), "home", map[string]string{"url": w.url, "user": "app", "password": "s3cret"})
		selectContext(t, filepath.Join(home, ".config"), "home")
		okRun(t)
	})
	t.Run("PasswordNotPrinted", func(t *testing.T) {
		r := invocation{}.run(ctx, "--server", "nats://app:s3cret@127.0.0.1:1", "--timeout", "1s", "info", "acme")
		if r.code != 1 || strings.Contains(r.stderr, "s3cret") || !strings.Contains(r.stderr, "nats://xxxxx@127.0.0.1:1") {
			t.Fatalf("connect error = %q, want the URL without its password", r.stderr)
		}
	})
	t.Run("Unknown", func(t *testing.T) {
		r := invocation{}.run(ctx, "--context", "nosuch", "info", "acme")
		if r.code != 2 || !strings.Contains(r.stderr, `unknown context "nosuch"`) {
			t.Fatalf("--context nosuch = %+v, want exit 2", r)
		}
	})
}

// TestBinary builds the command and runs it as a child process against
// a worker, as a user's shell does.
func TestBinary(t *testing.T) {
	// Built before startWorker moves HOME, so the build cache is the usual one.
	bin := filepath.Join(t.TempDir(), "persist")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	w := startWorker(t, nil)
	run := func(stdin string, args ...string) (string, string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "NATS_URL="+w.url)
		cmd.Stdin = strings.NewReader(stdin)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), code
	}
	if out, errOut, code := run("from a pipe", "set", "acme.docs", "--key", "k"); code != 0 || !strings.HasPrefix(out, "stored seq 1 ") {
		t.Fatalf("set = %q, %q, exit %d", out, errOut, code)
	}
	if out, _, code := run("", "get", "acme.docs", "--key", "k", "--raw"); code != 0 || out != "from a pipe" {
		t.Fatalf("get --raw = %q, exit %d", out, code)
	}
	if _, errOut, code := run("", "get", "acme.docs", "--seq", "5"); code != 1 || errOut != "persist: get acme.docs: not found (not_found, 404)\n" {
		t.Fatalf("get of a missing seq = %q, exit %d", errOut, code)
	}
	// Standard input is a pipe, not a terminal: destroy does not ask.
	if _, errOut, code := run("y\n", "destroy", "acme.docs"); code != 2 || !strings.Contains(errOut, "--force") {
		t.Fatalf("destroy without --force = %q, exit %d", errOut, code)
	}
	exp, errOut, code := run("", "export", "acme.docs")
	if code != 0 || errOut != "" || !strings.Contains(exp, `"key":"k"`) {
		t.Fatalf("export = %q, %q, exit %d; want a line and no progress bar on a pipe", exp, errOut, code)
	}
	if out, _, code := run("", "--version"); code != 0 || !strings.HasPrefix(out, "persist ") {
		t.Fatalf("--version = %q, exit %d", out, code)
	}
}
