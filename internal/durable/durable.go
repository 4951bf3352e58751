// Package durable creates directories that a power loss does not take
// back. A new directory is an entry in its parent, and like any entry it
// is on disk only once the parent is synced: os.MkdirAll syncs nothing,
// so a power loss soon after it returns can lose the directory, and with
// it every file written and synced into it since. The agent makes its
// cache directory, and the daemon its data directory, with MkdirAll.
package durable

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Dirs is what MkdirAll changes on a file system: it makes a directory,
// and syncs one so that its entries are on disk. A test can give one that
// keeps what a power loss would leave.
type Dirs interface {
	Mkdir(name string, perm fs.FileMode) error
	SyncDir(name string) error
}

// OS is the file system, through the os package.
var OS Dirs = osDirs{}

type osDirs struct{}

func (osDirs) Mkdir(name string, perm fs.FileMode) error { return os.Mkdir(name, perm) }

func (osDirs) SyncDir(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("syncing %s: %w", name, err)
	}
	return nil
}

// MkdirAll creates dir and its missing parents with perm (before the
// umask), as os.MkdirAll does, through d, and syncs the parent of each
// directory it creates, parents first, so that once it returns every
// directory it made stays made. A directory that a call beside this one
// made first has its parent synced too: that call may not have synced it
// yet. What exists already is left as it is (it is read with the os
// package, as d changes nothing by reading).
func MkdirAll(d Dirs, dir string, perm fs.FileMode) error {
	fi, err := os.Stat(dir)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil:
		return fmt.Errorf("%s exists and is not a directory", dir)
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := MkdirAll(d, parent, perm); err != nil {
			return err
		}
	}
	switch err := d.Mkdir(dir, perm); {
	case errors.Is(err, fs.ErrExist):
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", dir)
		}
	case err != nil:
		return err
	}
	return d.SyncDir(parent)
}
