//go:build !unix

package gitrepo

import (
	"errors"
	"os"
	"runtime"
)

var errNoFlock = errors.New("the commit lock needs flock(2), which " + runtime.GOOS + " does not have")

func flock(*os.File) (bool, error) { return false, errNoFlock }

func fileID(string) (LockedFile, error) { return LockedFile{}, errNoFlock }
