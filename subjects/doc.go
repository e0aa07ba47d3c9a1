// Package subjects is the vocabulary of the persist wire protocol, its one
// home: stream names and their tokens, the escaping that maps arbitrary
// path segments to tokens, the on-disk path of a stream, the NATS subjects
// of requests and events, the header names and how an incoming header is
// treated, the partition of a stream and the subject mappings that route
// to it, the stream configuration with its defaults and validation, the
// JSON bodies of every request, reply and event, the bounds on requests,
// the operation and reason names, and the coded errors a request can
// answer with.
//
// It imports neither NATS nor SQLite (nor cgo), so the worker, the store
// and every client agree on the same rules by sharing this one package.
//
// # Names
//
// A stream name is one or more tokens joined by '.'; [ValidateName] checks
// it against the limits [MaxTokenLen], [MaxTokens] and [MaxNameLen], and
// every error it returns wraps [ErrInvalidName]. A token spells every byte
// outside [A-Za-z0-9_=-] as %XX with upper-case hex, and only those bytes, so
// each name has exactly one spelling: [Escape] turns any path segment into
// that spelling and [Unescape] turns it back. The first token is the
// stream's [Namespace]; [HasPrefix] compares names in whole tokens.
//
// # Files
//
// [Path] places a stream at <token1>/…/<tokenN>.db using the escaped tokens
// verbatim. Because a valid token never contains '/', '.', or anything a
// file system treats specially, no valid name can reach outside the data
// directory, and [NameFromPath] recovers the name from a path found on disk.
//
// # Subjects
//
// Requests go to <prefix>.api.<op>.<stream> ([APISubject], [ParseAPI]) where
// op is one of [Ops] ([OpLocate], which says which worker serves a
// stream, is an extension of the protocol); events go to <prefix>.ev.<stream> ([EventSubject],
// [ParseEvent]). The prefix defaults to [DefaultPrefix] and is checked by
// [ValidatePrefix].
//
// # Partitions
//
// Several workers share the streams by partition. [Partition] gives the
// partition of a stream, a hash of its namespace, so a namespace and its
// list stay on one worker; it is the hash the NATS server's partition()
// mapping function computes. [PartitionMappings] are the subject mappings
// that make the server deliver <prefix>.api.<op>.<stream> on
// <prefix>.part.<n>.api.<op>.<stream> ([PartitionSubject],
// [PartitionAPISubject]), and [ParsePartitionAPI] reads such a subject
// back, refusing a stream that is not in the partition it arrived on
// ([ErrWrongPartition]). [ParsePartitions] and [FormatPartitions] read and
// spell a set of partitions such as "0-7,9"; [MaxPartitions] bounds their
// number. The package's tests run these mappings on real NATS servers,
// alone and in a cluster, and check the configurations of testdata/cluster
// against them; the package itself still imports no NATS.
//
// # Headers
//
// The Header* constants spell every header the protocol defines, and
// [HeaderWorker], the extension that names the worker on a partitioned
// worker's replies.
// [ClassifyHeader] decides whether a header on a write is stored, is a
// request header, is silently dropped, or makes the request a 400.
// [ParseTTL] and [ValidateKey] check the values of Persist-TTL and
// Persist-Key.
//
// # Configuration
//
// [Config] is the config table; [DefaultConfig] gives its defaults,
// [Config.Validate] checks it, [ParseConfigPatch] applies a config request
// onto a configuration, and [Config.NonDefault] is the "limits" of an
// inventory. [ConfigPatch] is a config request as a client builds it. The
// store keeps its own versioned, tolerant encoding of a Config on disk.
//
// # Bodies and bounds
//
// Every JSON body of the protocol has a type here: the requests
// ([GetRequest], [GetAllRequest], [DeleteRequest], [PageRequest],
// [ChangesRequest], [SetManyItem]), the replies ([SetReply],
// [SetManyEntry], [CountReply], [OKReply], [Inventory], [KeysReply],
// [ListReply], [Location], [ErrorReply]) and the delete event ([DeleteEvent]). The
// requests' bounds are constants ([MaxSetMany], [MaxPageMsgs], …);
// [PageBounds] and [PageRequest.PageLimit] apply a request's page size
// with its default and cap. Event operations are the Op constants of the
// operations they come from; Reason* name why a delete event removed
// messages.
//
// # Errors
//
// [Error] carries a wire code, reason and description. The worker answers
// with one of the sentinels ([ErrNotFound], [ErrWrongLastSequence], …),
// usually through [Error.WithDescription]; a client decodes the reply into
// an [Error], and errors.Is(err, subjects.ErrNotFound) matches by reason.
package subjects
