package broker

import (
	"slices"
	"strings"
	"sync"
)

// defaultIndexBytes bounds the memory of the name index: the names it
// holds for all listed prefixes together and the prefixes themselves,
// counted as len(name) plus a string header each (100k names of 20 bytes:
// 3.6 MB). Past it, the least
// recently listed prefixes are forgotten, and a prefix too large for it
// alone is listed from the disk every time.
const defaultIndexBytes = 64 << 20

// nameCost is what one name held costs the index.
func nameCost(name string) int64 { return int64(len(name)) + 16 }

// nameIndex keeps, for every prefix that list was asked for, the sorted
// names of the stream files under it (data and archive directories), so
// that a page is a binary search and a copy rather than a walk of the
// directory tree. A prefix's names are read from the disk on its first
// list; after that the index follows the worker's own creations and
// removals, reported by add and remove (stream files are created and
// removed only by this worker: each data directory has one worker).
// Names are held only for prefixes that were listed, within
// defaultIndexBytes. Its lock is a leaf: nothing is locked under it (the
// disk is read without it), and retire calls remove under dirMu. The zero value is ready to use.
type nameIndex struct {
	mu    sync.Mutex
	dirs  map[string]*nameDir // by listed prefix
	bytes int64               // nameCost of all names held
	clock uint64              // ticks on every page, for recency
	max   int64               // bound on bytes; 0 is defaultIndexBytes
}

// nameDir is the index of one listed prefix.
type nameDir struct {
	names    []string // sorted, no duplicates
	bytes    int64
	used     uint64
	building bool         // names are being read from the disk
	changes  []nameChange // add and remove calls while building
}

type nameChange struct {
	name  string
	added bool
}

// add records that the stream file name was created.
func (x *nameIndex) add(name string) { x.change(name, true) }

// remove records that the stream file name was removed (destroyed or
// dropped), from the data directory and the archive.
func (x *nameIndex) remove(name string) { x.change(name, false) }

func (x *nameIndex) change(name string, added bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.dirs) == 0 {
		return
	}
	// The listed prefixes that hold name: "" (all streams), each run of
	// its leading tokens, and name itself ('.' never appears inside a
	// token).
	if d := x.dirs[""]; d != nil {
		x.apply(d, name, added)
	}
	for i := 1; i <= len(name); i++ {
		if i == len(name) || name[i] == '.' {
			if d := x.dirs[name[:i]]; d != nil {
				x.apply(d, name, added)
			}
		}
	}
	if added {
		x.evict(nil) // creations grow the listed prefixes too
	}
}

// apply adds name to d or removes it. x.mu is held.
func (x *nameIndex) apply(d *nameDir, name string, added bool) {
	if d.building {
		d.changes = append(d.changes, nameChange{name, added})
		return
	}
	i, found := slices.BinarySearch(d.names, name)
	switch {
	case added && !found:
		d.names = slices.Insert(d.names, i, strings.Clone(name))
		d.bytes += nameCost(name)
		x.bytes += nameCost(name)
	case !added && found:
		d.names = slices.Delete(d.names, i, i+1)
		d.bytes -= nameCost(name)
		x.bytes -= nameCost(name)
	}
}

// page returns up to n names under prefix that sort after after, in
// order; read lists the names from the disk (unsorted, possibly with
// duplicates) when the prefix is not indexed yet.
func (x *nameIndex) page(prefix, after string, n int, read func() ([]string, error)) ([]string, error) {
	x.mu.Lock()
	if x.dirs == nil {
		x.dirs = make(map[string]*nameDir)
	}
	d := x.dirs[prefix]
	if d != nil && !d.building {
		x.clock++
		d.used = x.clock
		out := pageOf(d.names, after, n)
		x.mu.Unlock()
		return out, nil
	}
	if d != nil {
		// Another list is reading this prefix: read it alone.
		x.mu.Unlock()
		names, err := read()
		if err != nil {
			return nil, err
		}
		slices.Sort(names)
		return pageOf(slices.Compact(names), after, n), nil
	}
	d = &nameDir{building: true}
	x.dirs[prefix] = d
	x.mu.Unlock()

	// Changes reported while the disk is read are kept and applied after
	// it, in order: whether or not the read saw a file, the last change
	// decides.
	names, err := read()
	if err == nil {
		slices.Sort(names)
		names = slices.Compact(names)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if err != nil {
		delete(x.dirs, prefix)
		return nil, err
	}
	// The prefix itself is held too, so that many listed prefixes with
	// few names or none stay within the bound as well.
	d.names, d.building, d.bytes = names, false, nameCost(prefix)
	for _, name := range names {
		d.bytes += nameCost(name)
	}
	x.bytes += d.bytes
	for _, c := range d.changes {
		x.apply(d, c.name, c.added)
	}
	d.changes = nil
	x.clock++
	d.used = x.clock
	out := pageOf(d.names, after, n)
	x.evict(d)
	return out, nil
}

// evict forgets the least recently listed prefixes, keep last, until the
// index is within its bound; keep itself goes when it alone is too
// large. x.mu is held.
func (x *nameIndex) evict(keep *nameDir) {
	max := x.max
	if max == 0 {
		max = defaultIndexBytes
	}
	for x.bytes > max {
		var victim string
		var vd *nameDir
		for p, d := range x.dirs {
			if d.building || d == keep {
				continue
			}
			if vd == nil || d.used < vd.used {
				victim, vd = p, d
			}
		}
		if vd == nil {
			for p, d := range x.dirs {
				if d == keep {
					victim, vd = p, d
				}
			}
		}
		if vd == nil {
			return
		}
		delete(x.dirs, victim)
		x.bytes -= vd.bytes
	}
}

// pageOf copies up to n names of sorted that sort after after.
func pageOf(sorted []string, after string, n int) []string {
	i, found := slices.BinarySearch(sorted, after)
	if found {
		i++
	}
	return slices.Clone(sorted[i:min(len(sorted), i+n)])
}
