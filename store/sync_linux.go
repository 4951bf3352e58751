package store

import (
	"os"
	"syscall"
)

// syncData flushes f's data to disk, and of its metadata only what reading
// the data needs (fdatasync): a write over bytes the file already holds
// needs no journal commit for the times it changed.
func syncData(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = syscall.Fdatasync(int(fd))
			if serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}
