package store

import (
	"bytes"
	"context"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// TestReadsShareData checks that reads of one entry of more than
// minShared bytes return one copy while a reader holds it, that small
// entries are copied for each read, that a copy nobody holds is let go,
// and that a read still checks the file's value (a copy is no cache of
// what is stored).
func TestReadsShareData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cfg.db")
	s := openTest(t, path)
	big := "BIGVALUE" + strings.Repeat("x", 2*minShared)
	mustAppend(t, s, newRev(1, cv("big", big), cv("small", "s1")))

	g1, err := s.Get(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	g2, _ := s.Get(ctx, "big")
	var snap, since []byte
	s.Snapshot(ctx, All(), func(c ConfigVersion) error {
		if c.Name == "big" {
			snap = c.Data
		}
		return nil
	})
	s.Since(ctx, 0, Select("big"), func(c ConfigVersion) error { since = c.Data; return nil })
	for what, b := range map[string][]byte{"Get": g2.Data, "Snapshot": snap, "Since": since} {
		if string(b) != big || unsafe.SliceData(b) != unsafe.SliceData(g1.Data) {
			t.Errorf("%s of big: not the copy the first Get returned", what)
		}
	}
	s1, _ := s.Get(ctx, "small")
	s2, _ := s.Get(ctx, "small")
	if string(s1.Data) != "s1" || unsafe.SliceData(s1.Data) == unsafe.SliceData(s2.Data) {
		t.Error("two Gets of a small entry share a copy")
	}
	if n := s.shared.len(); n != 1 {
		t.Errorf("%d shared copies, want 1", n)
	}

	// Flipped in the file while a reader holds the copy: the next read
	// fails its checksum.
	held := g1.Data
	overwriteAll(t, path, "BIGVALUE", 0, []byte{'b'})
	if _, err := s.Get(ctx, "big"); err == nil || err.Error() != `config "big" at revision 1: store damaged: value fails its checksum` {
		t.Errorf("Get of a damaged value while its copy is held: %v, want a checksum error", err)
	}
	if !bytes.HasPrefix(held, []byte("BIGVALUE")) {
		t.Error("the held copy changed")
	}

	// Nobody holds the copy any more: it goes, and its entry with it.
	deadline := time.Now().Add(10 * time.Second)
	for s.shared.len() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d shared copies left after every reader let go", s.shared.len())
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
}
