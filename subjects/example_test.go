package subjects_test

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/nats-persist/persist/subjects"
)

func ExampleEscape() {
	// A client maps path segments to tokens, so a file "notes.txt" in
	// project 3fa2b1 becomes one stream.
	name := "acme.projects.3fa2b1." + subjects.Escape("notes.txt")
	fmt.Println(name)
	fmt.Println(subjects.Escape(".."))
	fmt.Println(subjects.ValidateName(name) == nil)
	seg, _ := subjects.Unescape("notes%2Etxt")
	fmt.Println(seg)
	// Output:
	// acme.projects.3fa2b1.notes%2Etxt
	// %2E%2E
	// true
	// notes.txt
}

func ExamplePath() {
	fmt.Println(filepath.ToSlash(subjects.Path("acme.docs.%2E%2E")))
	name, ok := subjects.NameFromPath(filepath.Join("acme", "docs", "%2E%2E.db"))
	fmt.Println(name, ok)
	// Output:
	// acme/docs/%2E%2E.db
	// acme.docs.%2E%2E true
}

func ExampleParseAPI() {
	op, stream, err := subjects.ParseAPI("persist", "persist.api.get.acme.docs")
	fmt.Println(op, stream, err)

	_, _, err = subjects.ParseAPI("persist", "persist.api.get.acme..docs")
	fmt.Println(errors.Is(err, subjects.ErrInvalidName))

	_, _, err = subjects.ParseAPI("persist", "persist.api.fetch.acme")
	fmt.Println(errors.Is(err, subjects.ErrUnknownSubject))
	// Output:
	// get acme.docs <nil>
	// true
	// true
}

func ExampleClassifyHeader() {
	for _, h := range []string{"Content-Type", "Persist-Key", "persist-seq", "Nats-Msg-Id", "persist-key", "Persist-Foo"} {
		fmt.Println(h, subjects.ClassifyHeader(h))
	}
	// Output:
	// Content-Type user
	// Persist-Key request
	// persist-seq ignored
	// Nats-Msg-Id ignored
	// persist-key bad
	// Persist-Foo bad
}

func ExampleError_Is() {
	// A client decodes an error reply; errors.Is matches by reason.
	err := error(&subjects.Error{Code: 404, Reason: "not_found", Description: "no message with seq 7"})
	fmt.Println(errors.Is(err, subjects.ErrNotFound), err)
	// Output:
	// true no message with seq 7 (not_found, 404)
}
