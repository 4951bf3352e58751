package daemon

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cfg-dev/cfg/wire"
)

var auth = map[string]string{"Authorization": "Bearer " + token}

// putOverride sets an override and returns the status and body.
func (d *testDaemon) putOverride(id, config string, hosts []string, data string, lease int) (int, string) {
	d.t.Helper()
	body, _ := json.Marshal(wire.Override{Config: config, Hosts: hosts, Compiled: true, Data: []byte(data), LeaseSeconds: lease})
	code, resp, _ := d.do("PUT", "/v1/overrides/"+id, string(body), auth)
	return code, resp
}

// errorMessage returns the message of an error response's body.
func errorMessage(body string) string {
	var e wire.Error
	if json.Unmarshal([]byte(body), &e) != nil {
		return body
	}
	return e.Error
}

func (d *testDaemon) runs() []wire.Run {
	d.t.Helper()
	_, body, _ := d.do("GET", "/v1/canaries", "", nil)
	var runs []wire.Run
	if err := json.Unmarshal([]byte(body), &runs); err != nil {
		d.t.Fatalf("GET /v1/canaries: %s: %v", body, err)
	}
	return runs
}

func TestOverrides(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", "a1", "materialized_configs/b.json", "b1")
	d := startDaemon(t, r.dir, t.TempDir())
	w1 := d.watch("configs=a,b&host=web-1")
	w1.expect("snapshot 1 a@1=a1 b@1=b1", "overrides 1")
	w2 := d.watch("configs=a&host=web-2")
	w2.expect("snapshot 1 a@1=a1", "overrides 1")
	plain := d.watch("configs=a")
	plain.expect("snapshot 1 a@1=a1")

	if code, body := d.putOverride("run-1", "a", []string{"web-1", "web-3"}, `{"v":"A"}`, 30); code != 200 {
		t.Fatalf("PUT override: %d %s", code, body)
	}
	w1.expect(`overrides 1 a=run-1@1:{"v":"A"}`)
	if code, body := d.putOverride("run-1", "a", []string{"web-1", "web-2"}, `{"v":"A2"}`, 30); code != 200 || !strings.Contains(body, `"version":2`) {
		t.Fatalf("PUT override again: %d %s", code, body)
	}
	w1.expect(`overrides 1 a=run-1@2:{"v":"A2"}`)
	w2.expect(`overrides 1 a=run-1@2:{"v":"A2"}`)

	// A second override of b for web-1 is fine; one of a is not.
	if code, body := d.putOverride("run-2", "b", []string{"web-1"}, `{"v":"B"}`, 30); code != 200 {
		t.Fatalf("PUT override of b: %d %s", code, body)
	}
	w1.expect(`overrides 1 a=run-1@2:{"v":"A2"} b=run-2@1:{"v":"B"}`)
	for _, tc := range []struct {
		id, config string
		hosts      []string
		data       string
		lease      int
		code       int
		msg        string
	}{
		{"run-3", "a", []string{"web-9", "web-2"}, `{"v":"X"}`, 30, 409, "host web-2 already has override run-1 of config \"a\""},
		{"run-1", "b", []string{"web-1"}, `{"v":"X"}`, 30, 409, "override run-1 is for config \"a\", not \"b\""},
		{"bad id", "a", []string{"web-1"}, `{"v":"X"}`, 30, 400, "invalid id"},
		{"run-4", "a", nil, `{"v":"X"}`, 30, 400, "no hosts"},
		{"run-4", "../a", []string{"web-1"}, `{"v":"X"}`, 30, 400, "config"},
		{"run-4", "a", []string{"web 1"}, `{"v":"X"}`, 30, 400, "invalid host name"},
		{"run-4", "a", []string{"web-1"}, `{"v":"X"}`, 0, 400, "lease_seconds: got 0, want 1 to 3600"},
	} {
		code, body := d.putOverride(tc.id, tc.config, tc.hosts, tc.data, tc.lease)
		if code != tc.code || !strings.Contains(errorMessage(body), tc.msg) {
			t.Errorf("PUT override %s %s %v: %d %s, want %d with %q", tc.id, tc.config, tc.hosts, code, body, tc.code, tc.msg)
		}
	}
	if code, _, _ := d.do("PUT", "/v1/overrides/run-5", `{"config":"a","hosts":["h"],"data":"eA==","lease_seconds":5}`, nil); code != 401 {
		t.Errorf("PUT override without a token: %d, want 401", code)
	}

	// Renewing pushes the expiry out; deleting removes the override.
	_, body, _ := d.do("GET", "/v1/overrides/run-1", "", nil)
	var before wire.Override
	if err := json.Unmarshal([]byte(body), &before); err != nil || string(before.Data) != `{"v":"A2"}` {
		t.Fatalf("GET override: %s: %v", body, err)
	}
	time.Sleep(10 * time.Millisecond)
	code, body, _ := d.do("POST", "/v1/overrides/run-1/renew", `{"lease_seconds":60}`, auth)
	var after wire.Override
	if err := json.Unmarshal([]byte(body), &after); code != 200 || err != nil || !after.Expires.After(before.Expires) || after.LeaseSeconds != 60 || after.Version != 2 {
		t.Errorf("renew: %d %s, want a later expiry than %v", code, body, before.Expires)
	}
	// The renewal goes to the override's hosts again (their agents count
	// the lease from it), and only to them.
	w1.expect(`overrides 1 a=run-1@2:{"v":"A2"} b=run-2@1:{"v":"B"}`)
	w2.expect(`overrides 1 a=run-1@2:{"v":"A2"}`)
	plain.quiet(100 * time.Millisecond)
	if code, _, _ := d.do("DELETE", "/v1/overrides/run-1", "", auth); code != 204 {
		t.Errorf("DELETE override: %d", code)
	}
	w1.expect(`overrides 1 b=run-2@1:{"v":"B"}`)
	w2.expect("overrides 1")
	for _, req := range [][2]string{{"DELETE", "/v1/overrides/run-1"}, {"POST", "/v1/overrides/run-1/renew"}} {
		if code, body, _ := d.do(req[0], req[1], "", auth); code != 404 {
			t.Errorf("%s %s after delete: %d %s, want 404", req[0], req[1], code, body)
		}
	}
	plain.quiet(100 * time.Millisecond)
	w2.quiet(100 * time.Millisecond)

	// A revision and an override change reach a host in the order they
	// happened.
	r.commit("materialized_configs/a.json", "a2")
	d.waitFor("revision 2", func() bool { return d.latest() == 2 })
	d.do("DELETE", "/v1/overrides/run-2", "", auth)
	w1.expect("update 2 a@2=a2", "overrides 2")
}

func TestOverrideLeaseExpires(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", "a1")
	d := startDaemon(t, r.dir, t.TempDir())
	w := d.watch("configs=a&host=web-1")
	w.expect("snapshot 1 a@1=a1", "overrides 1")
	started := time.Now().UTC()
	if code, body := d.putOverride("run-1", "a", []string{"web-1"}, `{"v":"A"}`, 1); code != 200 {
		t.Fatalf("PUT override: %d %s", code, body)
	}
	w.expect(`overrides 1 a=run-1@1:{"v":"A"}`)
	w.expect("overrides 1") // the lease ran out
	if since := time.Since(started); since < time.Second {
		t.Errorf("the override went after %v, before its 1 s lease", since)
	}
	// The expiry is counted once the hosts are told.
	var body string
	d.waitFor("the expired lease counted", func() bool {
		_, body, _ = d.do("GET", "/metrics", "", nil)
		return strings.Contains(body, "\ncfg_override_leases_expired_total 1\n")
	})
	if !strings.Contains(body, "\ncfg_overrides 0\n") {
		t.Errorf("metrics after a lease ran out:\n%s%s", grep(body, "cfg_override_leases"), grep(body, "cfg_overrides"))
	}
	// An override whose lease ran out is not retired, as one removed by
	// a DELETE is: it can be set again.
	if code, body := d.putOverride("run-1", "a", []string{"web-1"}, `{"v":"B"}`, 30); code != 200 {
		t.Fatalf("PUT of an override whose lease ran out: %d %s, want 200", code, body)
	}
	w.expect(`overrides 1 a=run-1@1:{"v":"B"}`)
}

// TestRunLease attacks the run's lease: a running run that its writer
// stops recording (cfg canary killed, in a phase or in the bake) is
// listed abandoned once its lease runs out, ended then; a run that ended
// is never running again, and a run without a lease stays running.
func TestRunLease(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", "a1")
	d := startDaemon(t, r.dir, t.TempDir())
	started := time.Now().UTC().Format(time.RFC3339Nano)
	put := func(id, status string, lease int) (int, string) {
		body := fmt.Sprintf(`{"config":"a","spec":"canary/a","status":%q,"started":%q,"base":1,"lease_seconds":%d}`, status, started, lease)
		code, resp, _ := d.do("PUT", "/v1/canaries/"+id, body, auth)
		return code, resp
	}
	list := func(query string) map[string]wire.Run {
		_, body, _ := d.do("GET", "/v1/canaries"+query, "", nil)
		var runs []wire.Run
		if err := json.Unmarshal([]byte(body), &runs); err != nil {
			t.Fatalf("GET /v1/canaries%s: %s: %v", query, body, err)
		}
		m := map[string]wire.Run{}
		for _, run := range runs {
			m[run.ID] = run
		}
		return m
	}
	before := time.Now()
	for _, id := range []string{"run-1", "run-2"} {
		if code, body := put(id, wire.RunRunning, 1); code != 204 {
			t.Fatalf("PUT %s: %d %s", id, code, body)
		}
	}
	if code, body := put("no-lease", wire.RunRunning, 0); code != 204 {
		t.Fatalf("PUT no-lease: %d %s", code, body)
	}
	if run := list("")["run-1"]; run.Status != wire.RunRunning || run.Expires.Before(before.Add(time.Second)) || !run.Ended.IsZero() {
		t.Errorf("run-1 just put: %+v, want running with a lease of 1 s", run)
	}
	// run-2 is recorded as ended before its lease runs out.
	if code, body := put("run-2", wire.RunLanded, 1); code != 204 {
		t.Fatalf("PUT run-2 landed: %d %s", code, body)
	}
	d.waitFor("run-1 abandoned", func() bool { return list("")["run-1"].Status == wire.RunAbandoned })
	runs := list("")
	if run := runs["run-1"]; !run.Ended.Equal(run.Expires) {
		t.Errorf("run-1 abandoned: %+v, want ended when its lease ran out", run)
	}
	if run := runs["run-2"]; run.Status != wire.RunLanded || run.LeaseSeconds != 0 || !run.Expires.IsZero() {
		t.Errorf("run-2 ended before its lease: %+v, want landed without a lease", run)
	}
	if run := runs["no-lease"]; run.Status != wire.RunRunning || !run.Expires.IsZero() {
		t.Errorf("a run without a lease: %+v, want running", run)
	}
	if got := list("?status=abandoned"); len(got) != 1 || got["run-1"].ID == "" {
		t.Errorf("?status=abandoned: %v, want run-1", got)
	}
	if got := list("?status=running"); len(got) != 1 || got["no-lease"].ID == "" {
		t.Errorf("?status=running: %v, want no-lease", got)
	}
	// A writer that comes back renews it: it is running again.
	if code, body := put("run-1", wire.RunRunning, 60); code != 204 {
		t.Fatalf("renewing run-1: %d %s", code, body)
	}
	if run := list("")["run-1"]; run.Status != wire.RunRunning {
		t.Errorf("run-1 renewed: %+v, want running", run)
	}
	// A late renewal of a run that ended is refused, and the end stays.
	if code, body := put("run-2", wire.RunRunning, 1); code != 409 || !strings.Contains(errorMessage(body), "run-2 has ended") {
		t.Errorf("renewing run-2 after its end: %d %s, want 409", code, body)
	}
	if run := list("")["run-2"]; run.Status != wire.RunLanded {
		t.Errorf("run-2 after a late renewal: %+v, want landed", run)
	}
}

func TestOverridesSurviveRestart(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", "a1")
	data := t.TempDir()
	d := startDaemon(t, r.dir, data)
	if code, body := d.putOverride("run-1", "a", []string{"web-1"}, `{"v":"A"}`, 60); code != 200 {
		t.Fatalf("PUT override: %d %s", code, body)
	}
	d.stop()
	d = startDaemon(t, r.dir, data)
	w := d.watch("configs=a&host=web-1")
	w.expect("snapshot 1 a@1=a1", `overrides 1 a=run-1@1:{"v":"A"}`)
	if code, body := d.putOverride("run-1", "a", []string{"web-1"}, `{"v":"B"}`, 60); code != 200 || !strings.Contains(body, `"version":2`) {
		t.Errorf("PUT after a restart: %d %s, want version 2", code, body)
	}
}

// TestOverrideRetired attacks the removal of an override: a PUT that the
// daemon takes in after a DELETE of its ID (held up on the way past it,
// as a canary's push interrupted by its rollback may be) must not set the
// override again, nor one whose ID was removed before it was ever set,
// nor after a restart.
func TestOverrideRetired(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", "a1")
	data := t.TempDir()
	d := startDaemon(t, r.dir, data)
	w := d.watch("configs=a&host=web-1")
	w.expect("snapshot 1 a@1=a1", "overrides 1")
	if code, body := d.putOverride("run-1", "a", []string{"web-1"}, `{"v":"A"}`, 30); code != 200 {
		t.Fatalf("PUT override: %d %s", code, body)
	}
	w.expect(`overrides 1 a=run-1@1:{"v":"A"}`)

	// The next PUT of run-1 (to more hosts) arrives whole only after the
	// DELETE was answered.
	body, _ := json.Marshal(wire.Override{Config: "a", Hosts: []string{"web-1", "web-2"}, Compiled: true, Data: []byte(`{"v":"A"}`), LeaseSeconds: 30})
	c := d.dialFrom("127.0.0.1")
	defer c.Close()
	if _, err := fmt.Fprintf(c, "PUT /v1/overrides/run-1 HTTP/1.1\r\nHost: cfg\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s", token, len(body), body[:len(body)-1]); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := d.do("DELETE", "/v1/overrides/run-1", "", auth); code != 204 {
		t.Fatalf("DELETE override: %d %s", code, body)
	}
	w.expect("overrides 1")
	if _, err := c.Write(body[len(body)-1:]); err != nil {
		t.Fatal(err)
	}
	if got := statusLine(t, c); got != "HTTP/1.1 410 Gone" {
		t.Errorf("a PUT taken in after the DELETE: %s, want 410 Gone", got)
	}

	// An ID removed before its override was set.
	if code, body, _ := d.do("DELETE", "/v1/overrides/run-2", "", auth); code != 404 {
		t.Errorf("DELETE of an override never set: %d %s, want 404", code, body)
	}
	const msg = `override "run-2": id retired until `
	if code, body := d.putOverride("run-2", "a", []string{"web-1"}, `{"v":"B"}`, 30); code != 410 || !strings.Contains(errorMessage(body), msg) {
		t.Errorf("PUT of an override removed before it was set: %d %s, want 410 with %q", code, body, msg)
	}
	if code, body, _ := d.do("DELETE", "/v1/overrides/run%201", "", auth); code != 400 {
		t.Errorf("DELETE of a bad id: %d %s, want 400", code, body)
	}
	// Another ID is not affected.
	if code, body := d.putOverride("run-3", "a", []string{"web-2"}, `{"v":"C"}`, 30); code != 200 {
		t.Errorf("PUT of another override: %d %s", code, body)
	}
	d.stop()
	d = startDaemon(t, r.dir, data)
	for _, id := range []string{"run-1", "run-2"} {
		if code, body := d.putOverride(id, "a", []string{"web-1"}, `{"v":"D"}`, 30); code != 410 {
			t.Errorf("PUT of removed %s after a restart: %d %s, want 410", id, code, body)
		}
	}
	w = d.watch("configs=a&host=web-1")
	w.expect("snapshot 1 a@1=a1", "overrides 1")
	w.quiet(100 * time.Millisecond)
}

func TestRuns(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", "a1")
	d := startDaemon(t, r.dir, t.TempDir())
	for i, id := range []string{"run-2", "run-1"} {
		started := time.Date(2026, 11, 22, 5, 0, i, 0, time.UTC).Format(time.RFC3339)
		body := `{"config":"a","spec":"canary/a","status":"rolled_back","started":"` + started + `","base":1,"report":{"verdict":"fail"}}`
		if code, resp, _ := d.do("PUT", "/v1/canaries/"+id, body, auth); code != 204 {
			t.Fatalf("PUT run %s: %d %s", id, code, resp)
		}
	}
	runs := d.runs()
	if len(runs) != 2 || runs[0].ID != "run-2" || runs[1].ID != "run-1" || string(runs[0].Report) != `{"verdict":"fail"}` {
		t.Errorf("runs: %+v, want run-2 then run-1 (by start time) with their reports", runs)
	}
	// A reverted run of another config: the runs of one config or status.
	reverted := `{"config":"b","spec":"canary/b","status":"reverted","started":"2026-11-22T06:00:00Z","base":1,"candidate":"abc"}`
	if code, resp, _ := d.do("PUT", "/v1/canaries/run-3", reverted, auth); code != 204 {
		t.Fatalf("PUT run-3: %d %s", code, resp)
	}
	for query, want := range map[string]string{"?config=a": "run-2 run-1", "?status=reverted": "run-3", "?config=b&status=rolled_back": "", "": "run-2 run-1 run-3"} {
		_, body, _ := d.do("GET", "/v1/canaries"+query, "", nil)
		var got []wire.Run
		json.Unmarshal([]byte(body), &got)
		var ids []string
		for _, run := range got {
			ids = append(ids, run.ID)
		}
		if strings.Join(ids, " ") != want || got == nil {
			t.Errorf("GET /v1/canaries%s: %s, want %q", query, body, want)
		}
	}
	if code, body, _ := d.do("GET", "/v1/canaries?status=exploded", "", nil); code != 400 || !strings.Contains(errorMessage(body), `status: got "exploded"`) {
		t.Errorf("GET /v1/canaries?status=exploded: %d %s", code, body)
	}
	for _, tc := range []struct{ body, msg string }{
		{`{"config":"a","status":"exploded","started":"2026-11-22T05:00:00Z"}`, "status: got \"exploded\""},
		{`{"config":"a","status":"running"}`, "no started time"},
		{`{"id":"other","config":"a","status":"running","started":"2026-11-22T05:00:00Z"}`, "body names run \"other\""},
		{`{"config":"","status":"running","started":"2026-11-22T05:00:00Z"}`, "config"},
		{`{"config":"a","status":"running","started":"2026-11-22T05:00:00Z","lease_seconds":3601}`, "lease_seconds: got 3601, want 1 to 3600"},
	} {
		if code, resp, _ := d.do("PUT", "/v1/canaries/run-3", tc.body, auth); code != 400 || !strings.Contains(errorMessage(resp), tc.msg) {
			t.Errorf("PUT run %s: %d %s, want 400 with %q", tc.body, code, resp, tc.msg)
		}
	}
}

// TestOverrideDataChecked attacks the check of override data against the
// kind of config it replaces: a compiled config takes one JSON object, a
// raw config any bytes, and an override must say which it is (before, any
// bytes were taken for a compiled config, and agents served them as JSON).
func TestOverrideDataChecked(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", `{"a":1}`, "materialized_configs/banner.txt", "hello")
	d := startDaemon(t, r.dir, t.TempDir())
	put := func(id, config string, compiled bool, data string) (int, string) {
		body, _ := json.Marshal(wire.Override{Config: config, Hosts: []string{"web-1"}, Compiled: compiled, Data: []byte(data), LeaseSeconds: 30})
		code, resp, _ := d.do("PUT", "/v1/overrides/"+id, string(body), auth)
		return code, errorMessage(resp)
	}
	for i, tc := range []struct {
		config   string
		compiled bool
		data     string
		code     int
		msg      string
	}{
		{"a", true, "not json", 400, `override run-1: data of compiled config "a": invalid JSON: invalid character 'o' in literal null (expecting 'u') at byte 2`},
		{"a", true, `{"a":`, 400, `override run-1: data of compiled config "a": invalid JSON: unexpected end of JSON input at byte 5`},
		{"a", true, `{"a":1} {}`, 400, `override run-1: data of compiled config "a": invalid JSON: invalid character '{' after top-level value at byte 9`},
		{"a", true, "null", 400, `override run-1: data of compiled config "a": got null, want a JSON object`},
		{"a", true, `[{"a":1}]`, 400, `override run-1: data of compiled config "a": got an array, want a JSON object`},
		{"a", true, `"{}"`, 400, `override run-1: data of compiled config "a": got a string, want a JSON object`},
		{"a", true, "{\"a\":\"\xff\"}", 400, `override run-1: data of compiled config "a": not UTF-8`},
		{"a", false, `{"a":2}`, 400, `override run-1: compiled: got false, want true: config "a" is compiled (JSON)`},
		{"banner.txt", true, `{"a":2}`, 400, `override run-1: compiled: got true, want false: config "banner.txt" is raw`},
		{"nope", true, `{"a":2}`, 404, `override run-1: unknown config "nope": an override replaces a published config`},
		{"banner.txt", false, "any \xff bytes", 200, ""},
		{"a", true, "{\n  \"a\": 2\n}\n", 200, ""},
	} {
		if tc.code == 200 {
			// Each of its own config, under its own id.
			if code, msg := put(fmt.Sprintf("run-ok-%d", i), tc.config, tc.compiled, tc.data); code != 200 {
				t.Errorf("override of %s, compiled %v, data %q: %d %s, want 200", tc.config, tc.compiled, tc.data, code, msg)
			}
			continue
		}
		code, msg := put("run-1", tc.config, tc.compiled, tc.data)
		if code != tc.code || msg != tc.msg {
			t.Errorf("override of %s, compiled %v, data %q: %d %s\nwant %d %s", tc.config, tc.compiled, tc.data, code, msg, tc.code, tc.msg)
		}
	}
}

// TestBodiesMustBeObjects attacks the decoding of request bodies: null,
// and JSON values other than objects, are refused (before, a null host
// report was taken as an empty one: 204).
func TestBodiesMustBeObjects(t *testing.T) {
	r := newTestRepo(t)
	r.commit("materialized_configs/a.json", `{"a":1}`)
	d := startDaemon(t, r.dir, t.TempDir())
	if code, body := d.putOverride("run-1", "a", []string{"web-1"}, `{"a":2}`, 30); code != 200 {
		t.Fatalf("PUT override: %d %s", code, body)
	}
	for _, tc := range []struct{ method, path, body, msg string }{
		{"POST", "/v1/hosts/web-1", "null", "decoding host report: got null, want a JSON object"},
		{"POST", "/v1/hosts/web-1", "[]", "decoding host report: got an array, want a JSON object"},
		{"POST", "/v1/hosts/web-1", "7", "decoding host report: got a number, want a JSON object"},
		{"PUT", "/v1/overrides/run-2", "null", "decoding override: got null, want a JSON object"},
		{"POST", "/v1/overrides/run-1/renew", "null", "decoding lease: got null, want a JSON object"},
		{"PUT", "/v1/canaries/run-1", `"running"`, "decoding run: got a string, want a JSON object"},
	} {
		code, body, _ := d.do(tc.method, tc.path, tc.body, auth)
		if code != 400 || errorMessage(body) != tc.msg {
			t.Errorf("%s %s %s: %d %s, want 400 %s", tc.method, tc.path, tc.body, code, body, tc.msg)
		}
	}
	_, body, _ := d.do("GET", "/v1/hosts", "", nil)
	if body != "[]\n" {
		t.Errorf("hosts after refused reports: %s, want none", body)
	}
}
