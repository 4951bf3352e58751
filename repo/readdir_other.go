//go:build !unix

package repo

import (
	"io/fs"
	"os"
)

// listDir lists the directory open as dir.
func listDir(dir *os.File, name string) ([]fs.DirEntry, error) { return dir.ReadDir(-1) }
