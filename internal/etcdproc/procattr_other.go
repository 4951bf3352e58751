//go:build !linux

package etcdproc

import "syscall"

// sysProcAttr is the default elsewhere: a member outlives a test binary
// killed before its cleanup.
func sysProcAttr() *syscall.SysProcAttr { return nil }
