package daemon

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cfg-dev/cfg/internal/syncbuf"
)

// TestReadOnly checks that a daemon without a token serves every read,
// refuses every write with 403 naming how to accept them, and says so in
// its log.
func TestReadOnly(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", "a1")
	var logs syncbuf.Buffer
	d := serve(t, Config{RepoPath: r.dir, DataDir: t.TempDir(), Poll: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	d.waitFor("healthz ok", func() bool { code, _, _ := d.do("GET", "/healthz", "", nil); return code == 200 })
	if !strings.Contains(logs.String(), "level=WARN msg=\"read-only: started without a token; writes (host reports, canary overrides and runs) are refused with 403 until cfg serve is started with --token-file FILE or CFG_TOKEN\"") {
		t.Errorf("log does not say the daemon is read-only:\n%s", logs.String())
	}

	reads := []struct{ method, path, body string }{
		{"GET", "/v1/configs/a", ""},
		{"GET", "/v1/revisions/latest", ""},
		{"GET", "/v1/revisions/1", ""},
		{"GET", "/v1/hosts", ""},
		{"GET", "/v1/overrides", ""},
		{"GET", "/v1/canaries", ""},
		{"GET", "/healthz", ""},
		{"GET", "/metrics", ""},
	}
	for _, tt := range reads {
		if code, body, _ := d.do(tt.method, tt.path, tt.body, nil); code != 200 {
			t.Errorf("%s %s: %d %s, want 200", tt.method, tt.path, code, body)
		}
	}
	// A watch, GET or POST, streams (a read).
	w := d.watch("configs=a")
	w.expect("snapshot 1 a@1=a1")

	want, _ := json.Marshal(map[string]string{"error": ReadOnlyMessage})
	auth := map[string]string{"Authorization": "Bearer anything"}
	writes := []struct{ method, path, body string }{
		{"POST", "/v1/hosts/web-1", `{"configs":["a"],"applied":1}`},
		{"PUT", "/v1/overrides/o1", `{"config":"a","hosts":["web-1"],"data":"eA==","lease_seconds":30}`},
		{"POST", "/v1/overrides/o1/renew", `{}`},
		{"DELETE", "/v1/overrides/o1", ""},
		{"PUT", "/v1/canaries/c1", `{"config":"a"}`},
	}
	for _, tt := range writes {
		for _, h := range []map[string]string{nil, auth} {
			code, body, _ := d.do(tt.method, tt.path, tt.body, h)
			if code != 403 || strings.TrimSuffix(body, "\n") != string(want) {
				t.Errorf("%s %s (headers %v): %d %s, want 403 %s", tt.method, tt.path, h, code, body, want)
			}
		}
	}
	if _, body, _ := d.do("GET", "/v1/hosts", "", nil); strings.TrimSpace(body) != "[]" {
		t.Errorf("hosts after refused reports: %s", body)
	}
}
