package subjects_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/nats-persist/persist/subjects"
)

func ExamplePartitionMappings() {
	m, _ := subjects.PartitionMappings("persist", 8)
	for _, src := range slices.Sorted(maps.Keys(m)) {
		fmt.Printf("%q: %q\n", src, m[src])
	}
	// Output:
	// "persist.api.*.*": "persist.part.{{partition(8,2)}}.api.{{wildcard(1)}}.{{wildcard(2)}}"
	// "persist.api.*.*.>": "persist.part.{{partition(8,2)}}.api.{{wildcard(1)}}.{{wildcard(2)}}.>"
}

func ExamplePartition() {
	// Every stream of a namespace is in the namespace's partition, so a
	// list of the namespace reaches the worker that has them all.
	for _, s := range []string{"acme", "acme.docs", "acme.projects.notes%2Etxt", "globex.docs"} {
		n := subjects.Partition(s, 8)
		fmt.Println(s, n, subjects.PartitionAPISubject("persist", n, subjects.OpGet, s))
	}
	// Output:
	// acme 7 persist.part.7.api.get.acme
	// acme.docs 7 persist.part.7.api.get.acme.docs
	// acme.projects.notes%2Etxt 7 persist.part.7.api.get.acme.projects.notes%2Etxt
	// globex.docs 6 persist.part.6.api.get.globex.docs
}

func ExampleParsePartitionAPI() {
	part, op, stream, err := subjects.ParsePartitionAPI("persist", "persist.part.7.api.set.acme.docs", 8)
	fmt.Println(part, op, stream, err)

	// Published on partition 3 directly: acme is not there.
	_, _, _, err = subjects.ParsePartitionAPI("persist", "persist.part.3.api.set.acme.docs", 8)
	fmt.Println(errors.Is(err, subjects.ErrWrongPartition))
	// Output:
	// 7 set acme.docs <nil>
	// true
}

func ExampleParsePartitions() {
	parts, err := subjects.ParsePartitions("0-3,6", 8)
	fmt.Println(parts, err, subjects.FormatPartitions(parts))

	_, err = subjects.ParsePartitions("4-9", 8)
	fmt.Println(err)
	// Output:
	// [0 1 2 3 6] <nil> 0-3,6
	// partitions "4-9": partition "9" out of range: the deployment has partitions 0 to 7
}
