package broker

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nats-persist/persist/subjects"
)

// listReply is the reply to list.
type listReply struct {
	Streams []string `json:"streams"`
	More    bool     `json:"more"`
}

// list answers the streams whose name has prefix as a whole-token prefix:
// files under the data directory and live memory streams. It runs on the
// list endpoint's goroutine; it reads the directory and touches no stream.
func (b *Broker) list(reply, prefix string, body []byte) {
	var req pageReq
	if err := decodeOptional(body, &req); err != nil {
		b.replyError(subjects.OpList, reply, err)
		return
	}
	names, err := b.streamNames(prefix)
	if err != nil {
		b.replyError(subjects.OpList, reply, err)
		return
	}
	slices.Sort(names)
	names = slices.Compact(names)
	i, found := slices.BinarySearch(names, req.After)
	if found {
		i++
	}
	names = names[i:]
	limit := req.limit()
	out := listReply{Streams: names, More: len(names) > limit}
	if out.Streams == nil {
		out.Streams = []string{}
	}
	if out.More {
		out.Streams = names[:limit]
	}
	b.replyJSON(reply, out)
}

// streamNames returns the names of the existing streams under prefix ("":
// all of them), not
// sorted, possibly with duplicates: the files in the data directory and in
// the archive (a stream whose local file is gone is restored from there
// when opened), and the live memory streams.
func (b *Broker) streamNames(prefix string) ([]string, error) {
	var names []string
	add := func(name string) { names = append(names, name) }
	for _, root := range []string{b.opts.DataDir, b.opts.ArchiveDir} {
		if root == "" {
			continue
		}
		if err := walkStreams(root, prefix, add); err != nil {
			return nil, err
		}
	}
	b.mu.Lock()
	for name, e := range b.streams {
		if e.memory && e.st != nil && (prefix == "" || subjects.HasPrefix(name, prefix)) {
			names = append(names, name)
		}
	}
	b.mu.Unlock()
	return names, nil
}

// countStreams counts namespace ns's existing streams; "" counts all.
func (b *Broker) countStreams(ns string) (int, error) {
	names, err := b.streamNames(ns)
	if err != nil {
		return 0, err
	}
	slices.Sort(names)
	return len(slices.Compact(names)), nil
}

// walkStreams calls fn with the name of every stream file under root whose
// name has prefix as a whole-token prefix: <root>/<prefix path>.db and the
// files under <root>/<prefix tokens>/; every stream file when prefix is "".
// Files that are not exactly a stream's path (-wal and -journal
// companions, temporary files) are skipped.
func walkStreams(root, prefix string, fn func(name string)) error {
	dir := root
	if prefix != "" {
		rel := subjects.Path(prefix)
		if fi, err := os.Stat(filepath.Join(root, rel)); err == nil && fi.Mode().IsRegular() {
			fn(prefix)
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		dir = filepath.Join(root, strings.TrimSuffix(rel, ".db"))
	}
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		r, err := filepath.Rel(root, path)
		if err != nil {
			return nil
		}
		if name, ok := subjects.NameFromPath(r); ok && (prefix == "" || subjects.HasPrefix(name, prefix)) {
			fn(name)
		}
		return nil
	})
}
