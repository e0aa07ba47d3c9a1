package client

import "github.com/nats-persist/persist/subjects"

// Until the protocol's vocabulary carries them.
var errRevisionGone = &subjects.Error{Code: 410, Reason: "revision_gone", Description: "the changes after that revision are no longer kept"}

const opChanges = "changes"
