package subjects

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// MaxPartitions bounds the number of partitions of a deployment. A worker
// subscribes once per partition it owns and the lease bucket holds a key
// per partition, so the bound keeps both small; the NATS server itself
// would accept up to 2^31-1.
const MaxPartitions = 1024

// ErrWrongPartition is returned by [ParsePartitionAPI] for a request that
// arrived on a partition subject other than the one its stream belongs to:
// published there directly instead of through the mapping, or mapped by a
// server configured with another number of partitions. Such a request must
// not be applied.
var ErrWrongPartition = errors.New("request on the wrong partition")

// FNV-1a, 32 bits: the hash of the NATS server's partition() mapping
// function (hash/fnv's New32a).
const (
	fnvOffset32 = 2166136261
	fnvPrime32  = 16777619
)

// Partition returns the partition, 0 to partitions-1, of stream: the FNV-1a
// hash (32 bits) of the bytes of its namespace, spelled as on the wire
// (escapes included), modulo partitions. That is what the NATS server
// computes for {{partition(partitions,2)}} in the mappings of
// [PartitionMappings], where wildcard 2 is the namespace, so the worker
// that receives a request can check it itself. For partitions below 1 it
// returns 0, as the server does for partition(0).
func Partition(stream string, partitions int) int {
	if partitions < 1 {
		return 0
	}
	ns := Namespace(stream)
	h := uint32(fnvOffset32)
	for i := 0; i < len(ns); i++ {
		h ^= uint32(ns[i])
		h *= fnvPrime32
	}
	return int(uint64(h) % uint64(partitions))
}

// ValidatePartitions reports whether n can be the number of partitions of
// a deployment: 1 to [MaxPartitions].
func ValidatePartitions(n int) error {
	if n < 1 || n > MaxPartitions {
		return fmt.Errorf("%d partitions: the number of partitions must be 1 to %d", n, MaxPartitions)
	}
	return nil
}

// PartitionSubject returns the prefix under which partition n's requests
// arrive once mapped: <prefix>.part.<n>. Below it the request subjects
// keep their shape, so the request for op on stream S of partition n is
// <prefix>.part.<n>.api.<op>.<S> ([PartitionAPISubject]).
func PartitionSubject(prefix string, n int) string {
	return prefix + ".part." + strconv.Itoa(n)
}

// PartitionAPISubject returns the subject a request for op on stream is
// mapped to when stream is in partition n: <prefix>.part.<n>.api.<op>.<stream>.
func PartitionAPISubject(prefix string, n int, op, stream string) string {
	return PartitionSubject(prefix, n) + ".api." + op + "." + stream
}

// PartitionMappings returns the NATS subject mappings, source to
// destination, that route each request <prefix>.api.<op>.<stream> to
// <prefix>.part.<n>.api.<op>.<stream>, n being [Partition](stream,
// partitions). Every server of a cluster needs them in the account the
// clients publish in (mappings {…} in its configuration), since a server
// maps what its own clients publish, before routing.
//
// Two mappings, because a NATS wildcard matches whole tokens and '>' at
// least one: "<prefix>.api.*.*" for streams of one token and
// "<prefix>.api.*.*.>" for longer ones; a '>' source needs a '>'
// destination. No subject matches both, so their order does not matter.
// Wildcard 1 is the operation and wildcard 2 the namespace; both are
// carried into the destination, the namespace alone is hashed. Requests
// that name no stream (<prefix>.api.<op>) match neither and stay where
// they are, as do the service-discovery subjects ($SRV.>) and the events
// (<prefix>.ev.>).
func PartitionMappings(prefix string, partitions int) (map[string]string, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	if err := ValidatePartitions(partitions); err != nil {
		return nil, err
	}
	dest := prefix + ".part.{{partition(" + strconv.Itoa(partitions) + ",2)}}.api.{{wildcard(1)}}.{{wildcard(2)}}"
	return map[string]string{
		prefix + ".api.*.*":   dest,
		prefix + ".api.*.*.>": dest + ".>",
	}, nil
}

// PartitionMappingsBlock is [PartitionMappings] spelled as a nats-server
// configuration block, "mappings { … }", one mapping a line in the order
// of their sources: at the top of a configuration file it maps the
// global account's subjects, inside an account that account's.
func PartitionMappingsBlock(prefix string, partitions int) (string, error) {
	m, err := PartitionMappings(prefix, partitions)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("mappings {\n")
	for _, src := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "  %q: %q\n", src, m[src])
	}
	b.WriteString("}\n")
	return b.String(), nil
}

// ParsePartitionAPI splits a mapped request subject,
// <prefix>.part.<n>.api.<op>.<stream>, into its partition n, operation and
// stream, for a deployment of the given number of partitions. Its errors
// are those of [ParseAPI], and besides:
//
//   - [ErrUnknownSubject] also when n is not one of the deployment's
//     partitions spelled as the server writes it (decimal, no sign, no
//     leading zero);
//   - [ErrWrongPartition], with part, op and stream set, when stream is
//     not in partition n.
func ParsePartitionAPI(prefix, subject string, partitions int) (part int, op, stream string, err error) {
	rest, ok := cutPrefix(subject, prefix, ".part.")
	if !ok {
		return 0, "", "", fmt.Errorf("%w: %s", ErrUnknownSubject, quote(subject))
	}
	tok, rest, _ := strings.Cut(rest, ".")
	part, ok = partitionToken(tok, partitions)
	rest, api := strings.CutPrefix(rest, "api.")
	if !ok || !api {
		return 0, "", "", fmt.Errorf("%w: %s", ErrUnknownSubject, quote(subject))
	}
	if op, stream, err = parseOpStream(subject, rest); err != nil {
		return 0, op, "", err
	}
	if want := Partition(stream, partitions); want != part {
		return part, op, stream, fmt.Errorf("%w: stream %s belongs to partition %d of %d, not %d", ErrWrongPartition, quote(stream), want, partitions, part)
	}
	return part, op, stream, nil
}

// partitionToken reads a partition number as the server's mapping spells
// it (strconv.Itoa: no sign, no leading zero) and checks it is below
// partitions.
func partitionToken(tok string, partitions int) (int, bool) {
	if tok == "" || len(tok) > 1 && tok[0] == '0' || strings.Trim(tok, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(tok)
	return n, err == nil && n < partitions
}

// ParsePartitions reads a set of partitions as the --partitions flag spells
// it: comma-separated numbers and inclusive ranges, such as "0-7,9", each
// below partitions (the deployment's number of partitions), none given
// twice. Spaces around items are ignored. It returns the partitions in
// increasing order; [FormatPartitions] is its inverse.
func ParsePartitions(s string, partitions int) ([]int, error) {
	if err := ValidatePartitions(partitions); err != nil {
		return nil, err
	}
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("no partitions given")
	}
	seen := make([]bool, partitions)
	var parts []int
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("partitions %s: empty item", quote(s))
		}
		lo, hi := item, item
		if a, b, ok := strings.Cut(item, "-"); ok {
			lo, hi = strings.TrimSpace(a), strings.TrimSpace(b)
		}
		from, err := partitionNumber(lo, partitions)
		if err != nil {
			return nil, fmt.Errorf("partitions %s: %w", quote(s), err)
		}
		to, err := partitionNumber(hi, partitions)
		if err != nil {
			return nil, fmt.Errorf("partitions %s: %w", quote(s), err)
		}
		if from > to {
			return nil, fmt.Errorf("partitions %s: range %d-%d runs backwards", quote(s), from, to)
		}
		for n := from; n <= to; n++ {
			if seen[n] {
				return nil, fmt.Errorf("partitions %s: partition %d given twice", quote(s), n)
			}
			seen[n] = true
			parts = append(parts, n)
		}
	}
	slices.Sort(parts)
	return parts, nil
}

// partitionNumber reads one number of a --partitions value.
func partitionNumber(s string, partitions int) (int, error) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("%s is not a partition number", quote(s))
	}
	n, err := strconv.Atoi(s)
	if err != nil || n >= partitions {
		return 0, fmt.Errorf("partition %s out of range: the deployment has partitions 0 to %d", quote(s), partitions-1)
	}
	return n, nil
}

// FormatPartitions spells a set of partitions the way [ParsePartitions]
// reads it, with runs of consecutive partitions as ranges: 0, 1, 2, 3 and
// 9 give "0-3,9". The order of parts and repeats do not matter; the empty
// set gives "".
func FormatPartitions(parts []int) string {
	sorted := slices.Compact(slices.Sorted(slices.Values(parts)))
	var b strings.Builder
	for i := 0; i < len(sorted); {
		j := i
		for j+1 < len(sorted) && sorted[j+1] == sorted[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(sorted[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(sorted[j]))
		}
		i = j + 1
	}
	return b.String()
}
