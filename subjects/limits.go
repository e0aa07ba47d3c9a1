package subjects

// Bounds on requests (PROTOCOL.md section 4). The worker refuses or caps
// what exceeds them; a client checks them before sending.
const (
	// MaxSetMany is the most items of one setmany.
	MaxSetMany = 1000
	// MaxDeleteSeqs is the most seqs of one delete {"seqs":[…]}.
	MaxDeleteSeqs = 10000
	// DefaultPageMsgs and DefaultPageBytes bound a getall or changes page
	// when the request gives no max_msgs or max_bytes; MaxPageMsgs and
	// MaxPageBytes cap what it gives.
	DefaultPageMsgs  = 1000
	DefaultPageBytes = MaxPageBytes
	MaxPageMsgs      = 10000
	MaxPageBytes     = 8 << 20
	// DefaultLimit is the page size of keys and list when the request
	// gives no limit; MaxLimit caps what it gives.
	DefaultLimit = 1000
	MaxLimit     = 10000
	// MaxMsgIDLen is the longest Persist-Msg-Id (or setmany msg_id).
	MaxMsgIDLen = 1024
	// DefaultChangesWindow is how many delete and config changes a stream
	// keeps for changes when the worker is not told otherwise.
	DefaultChangesWindow = 10000
)

// Delete reasons, the Persist-Reason of a delete event.
const (
	ReasonRequest  = "request"
	ReasonMaxMsgs  = "max_msgs"
	ReasonMaxBytes = "max_bytes"
	ReasonMaxAge   = "max_age"
	ReasonTTL      = "ttl"
)
