package etcdproc

import "syscall"

// sysProcAttr makes a member die with the process that started it, so
// that a test binary that panics or is killed leaves no member behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
