package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestHealthzWhilePublishingFails fills the disk under the store (a
// 2 MiB tmpfs): publishing fails, /healthz says so with the reason and
// nothing of the revision shows; once there is room again the revision is
// published whole and /healthz is 200 again.
func TestHealthzWhilePublishingFails(t *testing.T) {
	data := t.TempDir()
	if err := syscall.Mount("tmpfs", data, "tmpfs", 0, "size=2m"); err != nil {
		t.Skipf("mounting a tmpfs to fill (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(data, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", data, err)
		}
	})
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", "a1")
	d := startDaemon(t, r.dir, data)

	// Fill the disk.
	filler := filepath.Join(data, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()

	big := strings.Repeat(`{"pad":"0123456789abcdef"},`, 20000) // 540 KB
	r.commit("materialized_configs/a.json", "a2", "materialized_configs/big.json", "["+big+"1]")
	d.waitFor("healthz to fail", func() bool {
		code, body, _ := d.do("GET", "/healthz", "", nil)
		return code == 503 && strings.Contains(body, "publishing commit") && strings.Contains(body, "no space left on device")
	})
	if got := d.latest(); got != 1 {
		t.Errorf("latest revision with a full disk: %d, want 1", got)
	}
	if code, body, _ := d.do("GET", "/v1/configs/a", "", nil); code != 200 || body != "a1" {
		t.Errorf("GET a with a full disk: %d %s, want a1", code, body)
	}
	if code, _, _ := d.do("GET", "/v1/configs/big", "", nil); code != 404 {
		t.Errorf("GET big with a full disk: %d, want 404", code)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	d.waitFor("healthz to be ok again", func() bool { code, _, _ := d.do("GET", "/healthz", "", nil); return code == 200 })
	if got := d.latest(); got != 2 {
		t.Errorf("latest revision with room again: %d, want 2", got)
	}
	for name, want := range map[string]string{"a": "a2", "big": "[" + big + "1]"} {
		if code, body, _ := d.do("GET", "/v1/configs/"+name, "", nil); code != 200 || body != want {
			t.Errorf("GET %s with room again: %d %.40s", name, code, body)
		}
	}
	d.stop()
	// The store is whole.
	d = startDaemon(t, r.dir, data)
	if got := d.latest(); got != 2 {
		t.Errorf("latest revision after a restart: %d, want 2", got)
	}
}
