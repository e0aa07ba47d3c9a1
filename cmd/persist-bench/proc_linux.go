package main

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel kill the child when the bench dies,
// however it dies, and puts it in a process group of its own.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
