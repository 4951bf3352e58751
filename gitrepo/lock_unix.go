//go:build unix

package gitrepo

import (
	"errors"
	"os"
	"syscall"
)

// flock takes an exclusive flock(2) lock on f without waiting; held is
// false when another open file holds it.
func flock(f *os.File) (held bool, err error) {
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}

// fileID returns the identity of the file at path.
func fileID(path string) (LockedFile, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return LockedFile{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return LockedFile{}, errors.New("no file identity on this system")
	}
	return LockedFile{Path: path, Dev: uint64(st.Dev), Ino: uint64(st.Ino)}, nil
}
