//go:build !unix

package daemon

// fdLimit reports that the file descriptor limit is not known here.
func fdLimit() (int, bool) { return 0, false }
