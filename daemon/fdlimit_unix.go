//go:build unix

package daemon

import "syscall"

// fdLimit returns the process's limit on open file descriptors (the soft
// limit, which the Go runtime raises to the hard one at start).
func fdLimit() (int, bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return 0, false
	}
	return int(rl.Cur), true
}
