package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/open-feature/go-sdk/openfeature/isolated"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cfg-dev/cfg/agent"
	"github.com/cfg-dev/cfg/agent/agenttest"
	"github.com/cfg-dev/cfg/client"
	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/gate"
)

// compileRamp10 compiles the example with changes/ramp_10.cconf as the gate
// and returns the gate's JSON.
func compileRamp10(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "source"), os.DirFS("../source")); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("../changes/ramp_10.cconf")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "source/feed/new_ranker.cconf"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := compiler.Build(context.Background(), dir, compiler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d := res.Diags(); len(d) > 0 {
		t.Fatal(d.Error())
	}
	data, err := os.ReadFile(filepath.Join(dir, "materialized_configs/feed/new_ranker.json"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func committed(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("../materialized_configs/" + name + ".json")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestRamp10: the next step of the ramp changes the percentage only.
func TestRamp10(t *testing.T) {
	ramp, err := gate.Compile(compileRamp10(t), gate.Options{Restraints: map[string]gate.NewRestraint{"internal_network": internalNetwork}})
	if err != nil {
		t.Fatal(err)
	}
	base, err := gate.Compile(committed(t, gateName), gate.Options{Restraints: map[string]gate.NewRestraint{"internal_network": internalNetwork}})
	if err != nil {
		t.Fatal(err)
	}
	want := base.Rules()
	want[len(want)-1].Percent = 10
	if got := ramp.Rules(); fmt.Sprint(got) != fmt.Sprint(want) || ramp.Salt() != base.Salt() {
		t.Errorf("changes/ramp_10.cconf: rules %v, want %v", got, want)
	}
}

// feedsvc runs the service against a real agent (in-process, fed by
// agenttest) serving the example's committed gate and settings, through
// OpenFeature, and returns its URL, the server and the test daemon's
// repository.
func feedsvc(t *testing.T) (string, *server, *agenttest.Repo) {
	t.Helper()
	repo := agenttest.NewRepo(t, 50*time.Millisecond)
	repo.Publish(
		agenttest.Change{Name: gateName, Type: gate.Type, Data: committed(t, gateName)},
		agenttest.Change{Name: settingsName, Type: "Feed", Data: committed(t, settingsName)},
	)
	d := agenttest.NewDaemon(t, repo)
	cacheDir := t.TempDir()
	a, err := agent.New(agent.Config{Daemons: []string{d.URL}, Host: "feed-1", CacheDir: cacheDir, Heartbeat: 50 * time.Millisecond, HeartbeatTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })

	c, err := client.New(client.Options{AgentURL: "http://" + ln.Addr().String(), CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	p, err := newProvider(c)
	if err != nil {
		t.Fatal(err)
	}
	api := isolated.NewAPI()
	t.Cleanup(func() { api.Shutdown(context.Background()) })
	if err := api.SetProviderAndWait(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	s := newServer(api.NewClient())
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv.URL, s, repo
}

// get asks /feed and counts the answer in served, by ranker.
func get(t *testing.T, url string, served map[string]float64) Feed {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var f Feed
	if err := json.NewDecoder(resp.Body).Decode(&f); err != nil {
		t.Fatalf("%s: %s: %v", url, resp.Status, err)
	}
	served[f.Ranker]++
	return f
}

// firstUser returns the first user "u-N" whose bucket satisfies ok.
func firstUser(ok func(bucket int) bool) string {
	for i := 0; ; i++ {
		if u := fmt.Sprint("u-", i); ok(gate.Bucket(gateName, u)) {
			return u
		}
	}
}

func TestFeedsvc(t *testing.T) {
	url, s, repo := feedsvc(t)
	served := map[string]float64{}
	in1 := firstUser(func(b int) bool { return b < 100 })
	in10 := firstUser(func(b int) bool { return b >= 100 && b < 1000 })
	out := firstUser(func(b int) bool { return b >= 1000 })
	us := "&country=US&app_version=2.4.0"
	for _, tc := range []struct {
		query string
		want  Feed
	}{
		{"user=alice", Feed{User: "alice", Ranker: "new", Reason: "TARGETING_MATCH", Rule: "allow", Revision: 1, PageSize: 20}},
		{"user=mallory&employee=true", Feed{User: "mallory", Ranker: "classic", Reason: "TARGETING_MATCH", Rule: "deny", Revision: 1, PageSize: 20}},
		{"user=" + out + "&employee=true", Feed{User: out, Ranker: "new", Reason: "TARGETING_MATCH", Rule: "employee", Revision: 1, PageSize: 20}},
		{"user=" + in1 + us, Feed{User: in1, Ranker: "new", Reason: "SPLIT", Rule: "ramp", Revision: 1, PageSize: 20}},
		{"user=" + in10 + us, Feed{User: in10, Ranker: "classic", Reason: "SPLIT", Rule: "ramp", Revision: 1, PageSize: 20}},
		{"user=" + in1 + "&country=FR&app_version=2.4.0", Feed{User: in1, Ranker: "classic", Reason: "DEFAULT", Revision: 1, PageSize: 20}},
		{"user=" + in1 + "&country=US&app_version=2.2.9", Feed{User: in1, Ranker: "classic", Reason: "DEFAULT", Revision: 1, PageSize: 20}},
		{"user=" + out + "&employee=yes", Feed{User: out, Ranker: "classic", Reason: "ERROR", Revision: 1, PageSize: 20,
			Error: `rule "employee": attribute "employee": got string "yes", want a bool`}},
		{"country=US&app_version=2.4.0", Feed{Ranker: "classic", Reason: "ERROR", Revision: 1, PageSize: 20,
			Error: `rule "ramp": the unit has no ID, and sampling needs one`}},
	} {
		if got := get(t, url+"/feed?"+tc.query, served); got != tc.want {
			t.Errorf("/feed?%s = %+v, want %+v", tc.query, got, tc.want)
		}
	}

	// A load driver's request: a synthetic user.
	if f := get(t, url+"/", served); !strings.HasPrefix(f.User, "user-") || f.Reason != "SPLIT" {
		t.Errorf("/ = %+v", f)
	}

	// From the office network: the application's restraint.
	req := httptest.NewRequest("GET", "/feed?user="+out, nil)
	req.RemoteAddr = "10.1.2.3:4567"
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	var f Feed
	json.NewDecoder(rec.Body).Decode(&f)
	if f.Ranker != "new" || f.Rule != "internal_network" {
		t.Errorf("from 10.1.2.3: %+v", f)
	}
	served[f.Ranker]++

	// The ramp to 10 % reaches the service without a restart.
	repo.Publish(agenttest.Change{Name: gateName, Type: gate.Type, Data: compileRamp10(t)})
	deadline := time.Now().Add(10 * time.Second)
	for {
		f := get(t, url+"/feed?user="+in10+us, served)
		if f.Revision == 2 {
			if f.Ranker != "new" || f.Reason != "SPLIT" {
				t.Errorf("at 10 %%: %+v", f)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ramp to 10 %% did not arrive: %+v", f)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if f := get(t, url+"/feed?user="+out+us, served); f.Ranker != "classic" || f.Revision != 2 {
		t.Errorf("outside 10 %%: %+v", f)
	}

	// Metrics: every request counted, by ranker.
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	for _, m := range fams["feed_requests_total"].GetMetric() {
		counts[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
	}
	if fmt.Sprint(counts) != fmt.Sprint(served) {
		t.Errorf("feed_requests_total %v, want %v", counts, served)
	}
	// No request failed, and the failures of both rankers are exported
	// (at 0): a canary's error ratio needs them.
	failed := map[string]float64{}
	for _, m := range fams["feed_requests_failed_total"].GetMetric() {
		failed[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
	}
	if fmt.Sprint(failed) != "map[classic:0 new:0]" {
		t.Errorf("feed_requests_failed_total %v, want both rankers at 0", failed)
	}
}
