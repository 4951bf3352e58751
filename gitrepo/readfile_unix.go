//go:build unix

package gitrepo

import (
	"errors"
	"io/fs"
	"syscall"
)

// readFile reads the small file name whole, as os.ReadFile does, with the
// three system calls it takes (open, read, close) rather than os.Open's
// eight: the tailer reads a ref and each new loose object of a commit this
// way, on the path from a branch moving to its watchers having it. A read
// that fills the buffer is followed by more; a short one is the end of the
// file, as for any regular file.
func readFile(name string) ([]byte, error) {
	var fd int
	var err error
	for {
		if fd, err = syscall.Open(name, syscall.O_RDONLY|syscall.O_CLOEXEC, 0); !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	defer syscall.Close(fd)
	buf := make([]byte, 0, 4096)
	for {
		n, err := syscall.Read(fd, buf[len(buf):cap(buf)])
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: name, Err: err}
		}
		buf = buf[:len(buf)+n]
		if len(buf) < cap(buf) {
			return buf, nil
		}
		buf = append(buf, 0)[:len(buf)] // room for more
	}
}
