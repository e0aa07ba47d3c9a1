//go:build !linux

package main

import "os/exec"

// setDeathSignal does nothing where there is no parent-death signal: the
// bench still stops its children on every exit path it controls.
func setDeathSignal(*exec.Cmd) {}
