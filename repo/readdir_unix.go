//go:build unix

package repo

import (
	"io/fs"
	"os"
	"syscall"
)

// listDir lists the directory open as dir, whose absolute path is name.
// Entries of a directory opened through an os.Root are each stat'ed as
// they are listed; a duplicate of the descriptor, opened as a plain file,
// lists them with the types the file system reports (d_type), as
// os.ReadDir does, at a fraction of the cost.
func listDir(dir *os.File, name string) ([]fs.DirEntry, error) {
	fd, err := dupFD(dir)
	if err != nil {
		return dir.ReadDir(-1)
	}
	plain := os.NewFile(uintptr(fd), name)
	defer plain.Close()
	return plain.ReadDir(-1)
}

func dupFD(f *os.File) (int, error) {
	raw, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var fd int
	var dupErr error
	if err := raw.Control(func(old uintptr) {
		fd, dupErr = syscall.Dup(int(old))
		if dupErr == nil {
			syscall.CloseOnExec(fd)
		}
	}); err != nil {
		return 0, err
	}
	return fd, dupErr
}
