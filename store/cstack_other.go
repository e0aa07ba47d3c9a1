//go:build !(linux && (amd64 || arm64 || loong64 || ppc64le || s390x || riscv64 || 386 || arm))

package store

import "zombiezen.com/go/sqlite"

// releaseCStack frees nothing where libc's TLS has another layout.
func releaseCStack(*sqlite.Conn) int { return 0 }
