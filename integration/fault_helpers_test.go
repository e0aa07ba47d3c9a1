package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// faultReply is one reply from the wire: its error code and reason (0 and
// "" for a success) and the message itself.
type faultReply struct {
	code   int
	reason string
	msg    *nats.Msg
}

func (r faultReply) String() string {
	if r.code == 0 {
		return "ok"
	}
	return fmt.Sprintf("%d %s", r.code, r.reason)
}

// faultDecode reads the error code and reason of a reply.
func faultDecode(m *nats.Msg) faultReply {
	r := faultReply{msg: m}
	code := m.Header.Get("Nats-Service-Error-Code")
	if code == "" {
		return r
	}
	r.code, _ = strconv.Atoi(code)
	if r.code == 0 {
		r.code = -1 // a code that is not a number
	}
	var body struct {
		Error struct {
			Reason string `json:"reason"`
		} `json:"error"`
	}
	if json.Unmarshal(m.Data, &body) == nil {
		r.reason = body.Error.Reason
	}
	if r.reason == "" {
		r.reason = "(no reason)"
	}
	return r
}

// faultCall sends one request for op on stream and returns its reply; for
// getall, the error reply or the terminator, with the number of messages
// before it. A timeout is an error.
func faultCall(nc *nats.Conn, op, stream string, hdr nats.Header, body []byte, timeout time.Duration) (faultReply, int, error) {
	subject := "persist.api." + op + "." + stream
	if op != "getall" {
		m, err := nc.RequestMsg(&nats.Msg{Subject: subject, Header: hdr, Data: body}, timeout)
		if err != nil {
			return faultReply{}, 0, fmt.Errorf("%s %s: %w", op, stream, err)
		}
		return faultDecode(m), 0, nil
	}
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return faultReply{}, 0, err
	}
	defer sub.Unsubscribe()
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return faultReply{}, 0, err
	}
	if err := nc.PublishMsg(&nats.Msg{Subject: subject, Reply: inbox, Header: hdr, Data: body}); err != nil {
		return faultReply{}, 0, err
	}
	n := 0
	for {
		m, err := sub.NextMsg(timeout)
		if err != nil {
			return faultReply{}, n, fmt.Errorf("%s %s: %w after %d messages", op, stream, err, n)
		}
		if m.Header.Get("Persist-End") != "" || m.Header.Get("Nats-Service-Error-Code") != "" {
			return faultDecode(m), n, nil
		}
		n++
	}
}

// faultFile is what faultSnapshot records of one file.
type faultFile struct {
	mode fs.FileMode
	size int64
	sum  string
}

// faultSnapshot records every file under dir (its mode, size and SHA-256),
// by path relative to dir. It reads the files as the test's user.
func faultSnapshot(tb testing.TB, dir string) map[string]faultFile {
	tb.Helper()
	out := map[string]faultFile{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		f := faultFile{mode: info.Mode(), size: info.Size()}
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(b)
			f.sum = hex.EncodeToString(s[:])
		}
		out[rel] = f
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// faultSameFiles fails unless two snapshots are identical.
func faultSameFiles(tb testing.TB, what string, before, after map[string]faultFile) {
	tb.Helper()
	for p, a := range after {
		b, ok := before[p]
		switch {
		case !ok:
			tb.Errorf("%s: %s appeared (%v, %d bytes)", what, p, a.mode, a.size)
		case a != b:
			tb.Errorf("%s: %s changed: %v %d bytes %.12s, was %v %d bytes %.12s", what, p, a.mode, a.size, a.sum, b.mode, b.size, b.sum)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			tb.Errorf("%s: %s disappeared", what, p)
		}
	}
}
