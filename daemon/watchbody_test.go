package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// watchBody opens a watch stream with POST /v1/watch and body.
func (d *testDaemon) watchBody(body string) *watcher {
	d.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "POST", d.url+"/v1/watch", strings.NewReader(body))
	if err != nil {
		d.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		b, _ := io.ReadAll(resp.Body)
		d.t.Fatalf("watch %.100s: %s %s", body, resp.Status, b)
	}
	w := &watcher{t: d.t, events: make(chan watchEvent, 100), cancel: cancel}
	go func() {
		defer resp.Body.Close()
		defer close(w.events)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var e watchEvent
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				d.t.Errorf("watch event %s: %v", sc.Bytes(), err)
				return
			}
			w.events <- e
		}
	}()
	d.t.Cleanup(cancel)
	return w
}

// TestWatchWithABody: POST /v1/watch takes the parameters of GET
// /v1/watch as a JSON body, so that a watch of many configs fits where
// its URL would not (431).
func TestWatchWithABody(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/feed/job.json", `{"a":1}`, "materialized_configs/other.json", `{"o":1}`)
	d := startDaemon(t, r.dir, t.TempDir())

	w := d.watchBody(`{"configs":["feed/job","feed/nope"]}`)
	w.expect(`snapshot 1 feed/job@1={"a":1}`)
	r.commit("materialized_configs/feed/job.json", `{"a":2}`, "materialized_configs/other.json", `{"o":2}`)
	w.expect(`update 2 feed/job@2={"a":2}`)
	w.cancel()

	// from and host, as in the query.
	code, _, _ := d.do("PUT", "/v1/overrides/o1", `{"config":"feed/job","hosts":["web-1"],"compiled":true,"data":"eyJhIjo5fQ==","lease_seconds":60}`,
		map[string]string{"Authorization": "Bearer " + token})
	if code != 200 {
		t.Fatalf("PUT override: %d", code)
	}
	w = d.watchBody(`{"configs":["feed/job"],"from":1,"host":"web-1"}`)
	w.expect(`update 2 feed/job@2={"a":2}`, `overrides 2 feed/job=o1@1:{"a":9}`)
	w.cancel()

	// 8,000 names of 70 bytes, 32 of them slashes: a URL of 1.1 MB (a
	// slash is escaped as %2F), a body of 0.6 MB.
	var names []string
	for i := range 8000 {
		names = append(names, fmt.Sprintf("made/up/%s%04d", strings.Repeat("a/", 30), i))
	}
	names = append(names, "feed/job")
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get(d.url + "/v1/watch?configs=" + url.QueryEscape(strings.Join(names, ",")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 431 {
		t.Errorf("GET /v1/watch of %d names: %s, want 431", len(names), resp.Status)
	}
	b, _ := json.Marshal(map[string]any{"configs": names})
	w = d.watchBody(string(b))
	w.expect(`snapshot 2 feed/job@2={"a":2}`)
	w.cancel()

	huge, _ := json.Marshal(map[string]any{"configs": append(names, names...)})
	for _, tc := range []struct {
		body     string
		code     int
		wantBody string
	}{
		{`{"configs":["a,b"]}`, 400, `{"error":"configs: config name \"a,b\": character ',' not allowed (want ASCII letters, digits and . _ - + @)"}`},
		{`{"configs":["/etc"]}`, 400, `{"error":"configs: config name \"/etc\": empty element (want slash-separated names)"}`},
		{`{"configs":[]}`, 400, `{"error":"missing configs: want configs=NAME[,NAME...] or configs=*"}`},
		{`{"configs":["feed/job"],"from":-1}`, 400, `{"error":"from: got \"-1\", want a revision number"}`},
		{`{"configs":["feed/job"],"from":99}`, 400, `{"error":"from: revision 99 is beyond the latest revision 2"}`},
		{`{"configs":"feed/job"}`, 400, `{"error":"decoding watch request: json: cannot unmarshal string into Go struct field WatchRequest.configs of type []string"}`},
		{`{"configs":["feed/job"]} {}`, 400, `{"error":"decoding watch request: more than one JSON value"}`},
		{string(huge), 413, `{"error":"watch request: body over 1048576 bytes"}`},
	} {
		code, body, _ := d.do("POST", "/v1/watch", tc.body, nil)
		if code != tc.code || strings.TrimSpace(body) != tc.wantBody {
			t.Errorf("POST /v1/watch %.60s: %d %s, want %d %s", tc.body, code, body, tc.code, tc.wantBody)
		}
	}
}
