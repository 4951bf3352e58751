package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cfg-dev/cfg/canary"
	"github.com/cfg-dev/cfg/canary/judge"
	"github.com/cfg-dev/cfg/gate"
)

// The feature gates example of examples/gates, end to end with real
// processes: a daemon, four agents, four feedsvc services evaluating the
// gate feed/new_ranker through OpenFeature, the load driver, and cfg canary
// ramping the gate with the example's spec, as committed.

// startGatesFleet runs the feature gates example on four hosts.
func startGatesFleet(t *testing.T) *fleet {
	t.Helper()
	return startExample(t, "gates", 4, "feed/new_ranker", "canary/new_ranker", feedsvc(t))
}

// feedsvc returns the command of a feedsvc.
func feedsvc(t *testing.T) func(listen, agent, cache string) *exec.Cmd {
	bin := exampleBinary(t, "gates/feedsvc")
	return func(listen, agent, cache string) *exec.Cmd {
		return exec.Command(bin, "-listen", listen, "-agent", agent, "-cache-dir", cache)
	}
}

// feed is feedsvc's answer to /feed (examples/gates/feedsvc's Feed).
type feed struct {
	User      string `json:"user"`
	Ranker    string `json:"ranker"`
	Reason    string `json:"reason"`
	Rule      string `json:"rule"`
	Revision  int64  `json:"revision"`
	Override  string `json:"override"`
	FromCache bool   `json:"from_cache"`
	Error     string `json:"error"`
}

// ask asks a service which ranker serves user, a user in the US on app
// 2.4.0; a ranker that fails is the status code's text.
func ask(service, user string) feed {
	body, code, err := httpGet(service + "/feed?country=US&app_version=2.4.0&user=" + user)
	if err != nil {
		return feed{Error: err.Error()}
	}
	if code != http.StatusOK {
		return feed{User: user, Error: fmt.Sprintf("%d %s", code, strings.TrimSpace(body))}
	}
	var fd feed
	if err := json.Unmarshal([]byte(body), &fd); err != nil {
		return feed{Error: fmt.Sprintf("%q: %v", body, err)}
	}
	return fd
}

// waitFeed waits until service answers for user as ok says.
func waitFeed(t *testing.T, service, what, user string, ok func(feed) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for last := ask(service, user); !ok(last); last = ask(service, user) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s: timed out; the last answer for %s: %+v", service, what, user, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// everywhere waits until every service answers for user as ok says.
func (f *fleet) everywhere(t *testing.T, what, user string, ok func(feed) bool) {
	t.Helper()
	for _, s := range f.services {
		waitFeed(t, s, what, user, ok)
	}
}

// replaceIn replaces old by new in a file of the repository, which must
// hold old once.
func (f *fleet) replaceIn(t *testing.T, file, old, new string) {
	t.Helper()
	p := filepath.Join(f.repo, filepath.FromSlash(file))
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(data), old) != 1 {
		t.Fatalf("%s does not hold %q once:\n%s", file, old, data)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(data), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// firstUser returns the first user "u-N" whose bucket in the example's
// gate satisfies ok.
func firstUser(ok func(bucket int) bool) string {
	for i := 0; ; i++ {
		if u := fmt.Sprint("u-", i); ok(gate.Bucket("feed/new_ranker", u)) {
			return u
		}
	}
}

// The example's ramp of the gate from 1 % to 10 % (changes/ramp_10.cconf),
// canaried with the example's spec as committed, lands and reaches every
// service without a restart; a ramp to 50 % while the new ranker fails its
// users is rolled back. Then, with the daemon and every agent down, the
// services keep deciding with the landed gate, and a service started
// afterwards loads it from its host's agent cache.
func TestGatesDemo(t *testing.T) {
	skipUnderRace(t)
	t.Parallel()
	f := startGatesFleet(t)
	in1 := firstUser(func(b int) bool { return b < 100 })                // in at 1 %
	in10 := firstUser(func(b int) bool { return b >= 100 && b < 1000 })  // in at 10 %, not at 1 %
	in50 := firstUser(func(b int) bool { return b >= 1000 && b < 5000 }) // in at 50 %, not at 10 %
	f.everywhere(t, "the committed gate", in10, func(fd feed) bool {
		return fd.Ranker == "classic" && fd.Reason == "SPLIT" && fd.Rule == "ramp" && fd.Revision == 1 && fd.Override == ""
	})

	// The ramp to 10 % lands.
	ramp := f.apply(t, "ramp_10")
	rep, stderr, code := f.canary(t, "--seed", "1")
	if code != 0 || rep.Outcome != canary.Landed {
		t.Fatalf("ramp to 10 %%: exit %d, outcome %q (%s), want 0 and landed\n%s", code, rep.Outcome, rep.Reason, stderr)
	}
	if rep.Bake == nil || rep.Bake.Verdict != canary.Pass {
		t.Errorf("ramp to 10 %%: bake %+v, want passed", rep.Bake)
	}
	if got := gitShow(t, f.repo, rep.Commit, "source/feed/new_ranker.cconf"); got != string(ramp) {
		t.Errorf("the landing commit holds the gate\n%s\nwant changes/ramp_10.cconf", got)
	}
	landed := func(fd feed) bool {
		return fd.Ranker == "new" && fd.Reason == "SPLIT" && fd.Rule == "ramp" && fd.Revision == rep.Revision && fd.Override == ""
	}
	f.everywhere(t, "the landed ramp", in10, landed)
	f.everywhere(t, "the landed ramp", in1, landed) // in at 1 %, in at 10 %
	f.everywhere(t, "the landed ramp", in50, func(fd feed) bool { return fd.Ranker == "classic" && fd.Revision == rep.Revision })

	// The new ranker breaks: every request it serves times out.
	f.replaceIn(t, "source/feed/settings.cconf", "new_work_ms = 3,", "new_work_ms = 80,")
	run(t, f.repo, "commit", "-m", "feed: the new ranker works 80 ms")
	f.everywhere(t, "the new ranker to fail", in10, func(fd feed) bool { return strings.HasPrefix(fd.Error, "503 ") })

	// A ramp to 50 % would send five times as many users to it: the canary
	// host's error ratio shows it, and the ramp is rolled back.
	head := headCommit(t, f.repo)
	f.replaceIn(t, "source/feed/new_ranker.cconf", "percent = 10,", "percent = 50,")
	rep50, stderr, code := f.canary(t, "--seed", "1")
	if code != 1 || rep50.Outcome != canary.RolledBack {
		t.Fatalf("ramp to 50 %% with a failing ranker: exit %d, outcome %q (%s), want 1 and rolled_back\n%s", code, rep50.Outcome, rep50.Reason, stderr)
	}
	if p := rep50.Phases[0]; p.Verdict != canary.Fail || !slices.ContainsFunc(p.Checks, func(c canary.CheckReport) bool { return c.Name == "error ratio" && c.Verdict == judge.Fail }) {
		t.Errorf("ramp to 50 %% with a failing ranker: first phase %+v, want the error ratio check failed", p)
	}
	t.Logf("ramp to 50 %% with a failing ranker rolled back: %s", rep50.Reason)
	if got := headCommit(t, f.repo); got != head {
		t.Errorf("the rolled back ramp moved HEAD to %s", got)
	}
	f.everywhere(t, "the landed ramp again", in50, func(fd feed) bool {
		return fd.Ranker == "classic" && fd.Rule == "ramp" && fd.Revision == rep.Revision && fd.Override == ""
	})

	// Everything upstream goes down: the services keep the landed gate.
	for _, p := range f.upstream {
		p.kill()
	}
	f.everywhere(t, "the landed gate without the agents", in50, func(fd feed) bool {
		return fd.Ranker == "classic" && fd.Rule == "ramp" && fd.Revision == rep.Revision
	})

	// A service started now loads the gate from its host's agent cache.
	svc := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startCmd(t, feedsvc(t)(svc, fmt.Sprintf("http://127.0.0.1:%d", freePort(t)), f.caches[0]))
	waitFeed(t, "http://"+svc, "the landed gate from the cache", in50, func(fd feed) bool {
		return fd.Ranker == "classic" && fd.Rule == "ramp" && fd.Revision == rep.Revision && fd.FromCache
	})
}
