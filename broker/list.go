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

// list answers the streams whose name has prefix as a whole-token prefix:
// stream files (from the name index, see nameIndex) and live memory
// streams. It runs on the list endpoint's goroutine; it touches no stream.
func (b *Broker) list(reply, prefix string, body []byte) {
	var req subjects.PageRequest
	if err := decodeOptional(body, &req); err != nil {
		b.replyError(subjects.OpList, prefix, reply, err)
		return
	}
	limit := req.PageLimit()
	var files []string
	var err error
	if b.parts != nil && b.parts.lease != nil {
		// Partitions move between workers, which create and remove files
		// in the archive (or a shared data directory) that this worker's
		// index never hears of: read the disk every time.
		if files, err = b.diskStreamNames(prefix); err == nil {
			slices.Sort(files)
			files = pageOf(slices.Compact(files), req.After, limit+1)
		}
	} else {
		files, err = b.names.page(prefix, req.After, limit+1, func() ([]string, error) { return b.diskStreamNames(prefix) })
	}
	if err != nil {
		b.replyError(subjects.OpList, prefix, reply, err)
		return
	}
	mem := b.memoryStreamNames(prefix)
	mem = slices.DeleteFunc(mem, func(name string) bool { return name <= req.After })
	slices.Sort(mem)
	names := mergeSorted(files, mem)
	out := subjects.ListReply{Streams: names, More: len(names) > limit}
	if out.More {
		out.Streams = names[:limit]
	}
	if out.Streams == nil {
		out.Streams = []string{}
	}
	b.replyJSON(reply, out)
}

// mergeSorted merges two sorted lists into one without duplicates.
func mergeSorted(a, c []string) []string {
	if len(c) == 0 {
		return a
	}
	out := make([]string, 0, len(a)+len(c))
	for len(a) > 0 || len(c) > 0 {
		switch {
		case len(c) == 0 || len(a) > 0 && a[0] < c[0]:
			out, a = append(out, a[0]), a[1:]
		case len(a) == 0 || c[0] < a[0]:
			out, c = append(out, c[0]), c[1:]
		default:
			out, a, c = append(out, a[0]), a[1:], c[1:]
		}
	}
	return out
}

// diskStreamNames returns the names of the stream files under prefix ("":
// all of them), not sorted, possibly with duplicates: the files in the
// data directory and in the archive (a stream whose local file is gone is
// restored from there when opened).
func (b *Broker) diskStreamNames(prefix string) ([]string, error) {
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
	return names, nil
}

// memoryStreamNames returns the names of the live memory streams under
// prefix ("": all of them), not sorted.
func (b *Broker) memoryStreamNames(prefix string) []string {
	var names []string
	b.mu.Lock()
	// b.streams holds exactly the open memory streams (see opened and
	// forget); their entries' fields belong to their owners.
	for name := range b.streams {
		if prefix == "" || subjects.HasPrefix(name, prefix) {
			names = append(names, name)
		}
	}
	b.mu.Unlock()
	return names
}

// countStreams counts namespace ns's existing streams; "" counts all. It
// walks the disk: it runs once per namespace (see countOnce).
func (b *Broker) countStreams(ns string) (int, error) {
	names, err := b.diskStreamNames(ns)
	if err != nil {
		return 0, err
	}
	names = append(names, b.memoryStreamNames(ns)...)
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
