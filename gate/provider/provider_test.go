package provider_test

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-feature/go-sdk/openfeature"
	"github.com/open-feature/go-sdk/openfeature/isolated"

	"github.com/cfg-dev/cfg/gate"
	"github.com/cfg-dev/cfg/gate/internal/disttest"
	"github.com/cfg-dev/cfg/gate/provider"
	"github.com/cfg-dev/cfg/internal/syncbuf"
)

func rampSource(percent float64) string {
	return fmt.Sprintf(`load("@cfg//gate.cinc", "attr_in", "attr_is", "ramp")

export(ramp(
    salt = "feed/new_ranker",
    percent = %v,
    allow = ["alice"],
    early = [attr_is("employee")],
    where = [attr_in("country", ["US", "CA"])],
))
`, percent)
}

const settingsSchema = `struct Ranker {
  1: required string name
  2: required double weight
}

struct Settings {
  1: required i32 page_size
  2: required Ranker ranker
  3: optional bool enabled = true
  4: optional list<string> tags = []
  5: optional i64 big = 0
}
`

func settingsSource(pageSize int) string {
	return fmt.Sprintf(`load("//schemas/settings.thrift", "Ranker", "Settings")

export(Settings(page_size = %d, ranker = Ranker(name = "classic", weight = 0.5), tags = ["a", "b"], big = 9007199254740993))
`, pageSize)
}

func newDist(t *testing.T) *disttest.Dist {
	return disttest.New(t, map[string]string{
		"source/feed/new_ranker.cconf":   rampSource(10),
		"source/schemas/settings.thrift": settingsSchema,
		"source/feed/settings.cconf":     settingsSource(20),
	})
}

// start registers a provider of d's gate and config with an isolated
// OpenFeature API and returns a client of it.
func start(t *testing.T, d *disttest.Dist, opts provider.Options) (*openfeature.Client, *openfeature.EvaluationAPI, error) {
	t.Helper()
	if opts.Gates == nil {
		opts.Gates = []string{"feed/new_ranker"}
		opts.Configs = []string{"feed/settings"}
	}
	p, err := provider.New(d.Client(), opts)
	if err != nil {
		t.Fatal(err)
	}
	api := isolated.NewAPI()
	t.Cleanup(func() { api.Shutdown(context.Background()) })
	err = api.SetProviderAndWait(context.Background(), p)
	return api.NewClient(), api, err
}

// firstUnit returns the first ID "u-N" whose bucket in the gate satisfies ok.
func firstUnit(ok func(bucket int) bool) string {
	for i := 0; ; i++ {
		if id := fmt.Sprint("u-", i); ok(gate.Bucket("feed/new_ranker", id)) {
			return id
		}
	}
}

func ctxOf(id string, attrs map[string]any) openfeature.EvaluationContext {
	return openfeature.NewEvaluationContext(id, attrs)
}

// show prints evaluation details for comparison.
func show[T any](d openfeature.GenericEvaluationDetails[T], err error) string {
	s := fmt.Sprintf("%v %s", d.Value, d.Reason)
	if d.Variant != "" {
		s += " " + d.Variant
	}
	if d.ErrorCode != "" {
		s += fmt.Sprintf(" %s: %s", d.ErrorCode, d.ErrorMessage)
	}
	for _, k := range []string{"rule", "rule_index", "percent", "revision", "override", "from_cache"} {
		if v, ok := d.FlagMetadata[k]; ok {
			s += fmt.Sprintf(" %s=%v", k, v)
		}
	}
	if (err != nil) != (d.ErrorCode != "") {
		s += fmt.Sprintf(" (error %v)", err)
	}
	return s
}

func TestProviderEvaluates(t *testing.T) {
	d := newDist(t)
	of, _, err := start(t, d, provider.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	in := firstUnit(func(b int) bool { return b < 1000 })
	out := firstUnit(func(b int) bool { return b >= 1000 })
	us := map[string]any{"country": "US"}
	for _, tc := range []struct {
		name string
		got  string
		want string
	}{
		{"allowed", show(of.BooleanValueDetails(ctx, "feed/new_ranker", false, ctxOf("alice", nil))),
			"true TARGETING_MATCH on rule=allow rule_index=0 percent=100 revision=1"},
		{"employee", show(of.BooleanValueDetails(ctx, "feed/new_ranker", false, ctxOf(out, map[string]any{"employee": true}))),
			"true TARGETING_MATCH on rule=employee rule_index=1 percent=100 revision=1"},
		{"sampled in", show(of.BooleanValueDetails(ctx, "feed/new_ranker", false, ctxOf(in, us))),
			"true SPLIT on rule=ramp rule_index=2 percent=10 revision=1"},
		{"sampled out", show(of.BooleanValueDetails(ctx, "feed/new_ranker", true, ctxOf(out, us))),
			"false SPLIT off rule=ramp rule_index=2 percent=10 revision=1"},
		{"no rule", show(of.BooleanValueDetails(ctx, "feed/new_ranker", true, ctxOf(in, map[string]any{"country": "FR"}))),
			"false DEFAULT off revision=1"},
		{"wrong type: fail closed", show(of.BooleanValueDetails(ctx, "feed/new_ranker", false, ctxOf(in, map[string]any{"employee": "yes"}))),
			`false ERROR INVALID_CONTEXT: rule "employee": attribute "employee": got string "yes", want a bool revision=1`},
		{"no targeting key", show(of.BooleanValueDetails(ctx, "feed/new_ranker", false, ctxOf("", us))),
			`false ERROR TARGETING_KEY_MISSING: rule "ramp": the unit has no ID, and sampling needs one revision=1`},
		{"int field", show(of.IntValueDetails(ctx, "feed/settings:page_size", 0, openfeature.EvaluationContext{})), "20 STATIC revision=1"},
		{"i64 field", show(of.IntValueDetails(ctx, "feed/settings:big", 0, openfeature.EvaluationContext{})), "9007199254740993 STATIC revision=1"},
		{"string field", show(of.StringValueDetails(ctx, "feed/settings:ranker.name", "", openfeature.EvaluationContext{})), "classic STATIC revision=1"},
		{"float field", show(of.FloatValueDetails(ctx, "feed/settings:ranker.weight", 0, openfeature.EvaluationContext{})), "0.5 STATIC revision=1"},
		{"bool field", show(of.BooleanValueDetails(ctx, "feed/settings:enabled", false, openfeature.EvaluationContext{})), "true STATIC revision=1"},
		{"list element", show(of.StringValueDetails(ctx, "feed/settings:tags.1", "", openfeature.EvaluationContext{})), "b STATIC revision=1"},
		{"object", show(of.ObjectValueDetails(ctx, "feed/settings:ranker", nil, openfeature.EvaluationContext{})), "map[name:classic weight:0.5] STATIC revision=1"},
		{"whole config", show(of.ObjectValueDetails(ctx, "feed/settings", nil, openfeature.EvaluationContext{})),
			"map[big:9007199254740993 enabled:true page_size:20 ranker:map[name:classic weight:0.5] tags:[a b]] STATIC revision=1"},
		{"no such field", show(of.IntValueDetails(ctx, "feed/settings:page_sise", 7, openfeature.EvaluationContext{})),
			`7 ERROR FLAG_NOT_FOUND: config "feed/settings" has no field "page_sise"`},
		{"no such index", show(of.StringValueDetails(ctx, "feed/settings:tags.2", "x", openfeature.EvaluationContext{})),
			`x ERROR FLAG_NOT_FOUND: config "feed/settings" has no field "tags.2"`},
		{"wrong type", show(of.IntValueDetails(ctx, "feed/settings:ranker.weight", 7, openfeature.EvaluationContext{})),
			`7 ERROR TYPE_MISMATCH: flag "feed/settings:ranker.weight": got the number 0.5, want int64`},
		{"a gate as a string", show(of.StringValueDetails(ctx, "feed/new_ranker", "x", openfeature.EvaluationContext{})),
			`x ERROR TYPE_MISMATCH: flag "feed/new_ranker" is a gate: evaluate it as a boolean`},
		{"not followed", show(of.BooleanValueDetails(ctx, "feed/other", true, openfeature.EvaluationContext{})),
			`true ERROR FLAG_NOT_FOUND: flag "feed/other": not a gate or a field of a config this provider follows`},
	} {
		if tc.got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, tc.got, tc.want)
		}
	}
	// An object flag is the application's copy.
	v := of.Object(ctx, "feed/settings", nil, openfeature.EvaluationContext{}).(map[string]any)
	v["page_size"] = int64(1)
	if n := of.Int(ctx, "feed/settings:page_size", 0, openfeature.EvaluationContext{}); n != 20 {
		t.Errorf("page_size %d after the application changed its copy", n)
	}
}

// events collects the provider's PROVIDER_CONFIGURATION_CHANGED events.
type events struct {
	mu  sync.Mutex
	got []openfeature.EventDetails
	ch  chan struct{}
}

// mark returns how many events have arrived, for wait.
func (e *events) mark() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.got)
}

// wait waits for an event, after the first from, for which ok holds.
func (e *events) wait(t *testing.T, from int, ok func(openfeature.EventDetails) bool) openfeature.EventDetails {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		e.mu.Lock()
		for _, d := range e.got[from:] {
			if ok(d) {
				e.mu.Unlock()
				return d
			}
		}
		e.mu.Unlock()
		select {
		case <-e.ch:
		case <-deadline:
			t.Fatalf("timed out waiting for an event; got %+v", e.got)
		}
	}
}

// TestProviderChanges: commits and a canary's override reach evaluations
// and emit PROVIDER_CONFIGURATION_CHANGED with the flags that changed.
func TestProviderChanges(t *testing.T) {
	d := newDist(t)
	of, api, err := start(t, d, provider.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ev := &events{ch: make(chan struct{}, 100)}
	handler := func(details openfeature.EventDetails) {
		ev.mu.Lock()
		ev.got = append(ev.got, details)
		ev.mu.Unlock()
		ev.ch <- struct{}{}
	}
	api.AddHandler(openfeature.ProviderConfigChange, &handler)
	ctx := context.Background()
	out := firstUnit(func(b int) bool { return b >= 1000 && b < 5000 })
	us := ctxOf(out, map[string]any{"country": "US"})
	if of.Boolean(ctx, "feed/new_ranker", true, us) {
		t.Fatal("unit in at 10 %")
	}

	d.Write("source/feed/new_ranker.cconf", rampSource(50))
	d.Commit("ramp to 50 %")
	e := ev.wait(t, ev.mark(), func(e openfeature.EventDetails) bool { return slices.Contains(e.FlagChanges, "feed/new_ranker") })
	if e.ProviderName != "cfg" || e.EventMetadata["revision"] != int64(2) || e.Message != "gate feed/new_ranker: revision 2" {
		t.Errorf("event %+v", e)
	}
	if got := show(of.BooleanValueDetails(ctx, "feed/new_ranker", false, us)); got != "true SPLIT on rule=ramp rule_index=2 percent=50 revision=2" {
		t.Errorf("after the commit: %s", got)
	}
	if got, _ := of.BooleanValueDetails(ctx, "feed/new_ranker", false, us); got.FlagMetadata["commit"] != d.Head() {
		t.Errorf("commit %v, want %s", got.FlagMetadata["commit"], d.Head())
	}

	mark := ev.mark()
	d.Write("source/feed/settings.cconf", settingsSource(50))
	d.Commit("bigger pages")
	e = ev.wait(t, mark, func(e openfeature.EventDetails) bool { return slices.Contains(e.FlagChanges, "feed/settings") })
	if got := strings.Join(e.FlagChanges, " "); got != "feed/settings feed/settings:page_size" {
		t.Errorf("flags changed: %s", got)
	}
	if n := of.Int(ctx, "feed/settings:page_size", 0, openfeature.EvaluationContext{}); n != 50 {
		t.Errorf("page_size %d after the commit", n)
	}
	// A field deeper down: the flags of the objects that hold it change too.
	mark = ev.mark()
	d.Write("source/feed/settings.cconf", strings.Replace(settingsSource(50), `"classic"`, `"neural"`, 1))
	d.Commit("the neural ranker")
	e = ev.wait(t, mark, func(e openfeature.EventDetails) bool { return slices.Contains(e.FlagChanges, "feed/settings") })
	if got := strings.Join(e.FlagChanges, " "); got != "feed/settings feed/settings:ranker feed/settings:ranker.name" {
		t.Errorf("flags changed: %s", got)
	}

	// A canary pushes 0 % to this host, then rolls back.
	d.Write("source/feed/new_ranker.cconf", rampSource(0))
	mark = ev.mark()
	d.PutOverride("canary-7", "feed/new_ranker", gate.Type, d.Compiled("feed/new_ranker"))
	ev.wait(t, mark, func(e openfeature.EventDetails) bool { return e.EventMetadata["override"] == "canary-7" })
	got, _ := of.BooleanValueDetails(ctx, "feed/new_ranker", true, us)
	if show(got, nil) != "false TARGETING_MATCH off rule=ramp rule_index=2 percent=0 revision=2 override=canary-7" || got.FlagMetadata["override_version"] != int64(1) {
		t.Errorf("with the override: %s override_version=%v", show(got, nil), got.FlagMetadata["override_version"])
	}
	mark = ev.mark()
	d.DeleteOverride("canary-7")
	ev.wait(t, mark, func(e openfeature.EventDetails) bool {
		return slices.Contains(e.FlagChanges, "feed/new_ranker") && e.EventMetadata["override"] == nil
	})
	if got := show(of.BooleanValueDetails(ctx, "feed/new_ranker", false, us)); got != "true SPLIT on rule=ramp rule_index=2 percent=50 revision=2" {
		t.Errorf("after the override: %s", got)
	}
}

// TestProviderFromCache: an application started while the agent and the
// daemon are down evaluates from the agent's cache.
func TestProviderFromCache(t *testing.T) {
	d := newDist(t)
	if _, _, err := start(t, d, provider.Options{}); err != nil { // the agent caches both configs
		t.Fatal(err)
	}
	d.StopAgent()
	d.StopDaemon()
	of, _, err := start(t, d, provider.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if got := show(of.BooleanValueDetails(ctx, "feed/new_ranker", false, ctxOf("alice", nil))); got != "true TARGETING_MATCH on rule=allow rule_index=0 percent=100 revision=1 from_cache=true" {
		t.Errorf("gate from the cache: %s", got)
	}
	if got := show(of.IntValueDetails(ctx, "feed/settings:page_size", 0, openfeature.EvaluationContext{})); got != "20 CACHED revision=1 from_cache=true" {
		t.Errorf("config from the cache: %s", got)
	}
}

// TestProviderInitFails: a gate that does not exist fails Init (the SDK
// reports the provider in error) and its evaluations; the others work.
func TestProviderInitFails(t *testing.T) {
	d := newDist(t)
	of, _, err := start(t, d, provider.Options{Gates: []string{"feed/new_ranker", "feed/missing"}, Configs: []string{"feed/settings"}, InitTimeout: 2 * time.Second})
	if err == nil || !strings.Contains(err.Error(), `gate "feed/missing": context deadline exceeded`) {
		t.Errorf("SetProviderAndWait = %v", err)
	}
	ctx := context.Background()
	if got := show(of.BooleanValueDetails(ctx, "feed/missing", true, ctxOf("alice", nil))); got != `true ERROR PROVIDER_NOT_READY: gate "feed/missing": not loaded yet` {
		t.Errorf("missing gate: %s", got)
	}
	if got := show(of.BooleanValueDetails(ctx, "feed/new_ranker", false, ctxOf("alice", nil))); got != "true TARGETING_MATCH on rule=allow rule_index=0 percent=100 revision=1" {
		t.Errorf("present gate: %s", got)
	}
	if _, err := provider.New(d.Client(), provider.Options{Gates: []string{"a b"}}); err == nil {
		t.Error("New accepted a bad gate name")
	}
}

// officeSource is a gate with an application's restraint.
const officeSource = `load("@cfg//gate.cinc", "custom", "ramp")

export(ramp(salt = "feed/office", percent = 0, early = [custom("internal_network", cidr = "10.0.0.0/8")]))
`

// TestProviderRestraintErrors: an application's restraint that fails is
// GENERAL; a gate that does not compile in this application (it names a
// restraint the application does not register) is PARSE_ERROR and Init's
// error, while the other gate works. Both return the caller's default.
func TestProviderRestraintErrors(t *testing.T) {
	d := disttest.New(t, map[string]string{
		"source/feed/new_ranker.cconf": rampSource(10),
		"source/feed/office.cconf":     officeSource,
	})
	ctx := context.Background()
	gates := []string{"feed/new_ranker", "feed/office"}
	failing := func(map[string]string) (gate.Restraint, error) {
		return func(gate.Unit) (bool, error) { return false, fmt.Errorf("no address") }, nil
	}
	of, _, err := start(t, d, provider.Options{Gates: gates, Restraints: map[string]gate.NewRestraint{"internal_network": failing}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := show(of.BooleanValueDetails(ctx, "feed/office", true, ctxOf("u-1", nil))),
		`true ERROR GENERAL: rule "internal_network": restraint "internal_network": no address revision=1`; got != want {
		t.Errorf("a failing restraint:\n got %s\nwant %s", got, want)
	}

	of, _, err = start(t, d, provider.Options{Gates: gates})
	const why = `gate "feed/office" revision 1: rules[0].restraints[0].condition.custom.name: restraint "internal_network" is not registered by this application (registered: none)`
	if err == nil || !strings.Contains(err.Error(), why) {
		t.Errorf("SetProviderAndWait = %v, want an error containing %s", err, why)
	}
	if got, want := show(of.BooleanValueDetails(ctx, "feed/office", true, ctxOf("u-1", nil))), "true ERROR PARSE_ERROR: "+why+" revision=1"; got != want {
		t.Errorf("a gate that does not compile:\n got %s\nwant %s", got, want)
	}
	if got := show(of.BooleanValueDetails(ctx, "feed/new_ranker", false, ctxOf("alice", nil))); got != "true TARGETING_MATCH on rule=allow rule_index=0 percent=100 revision=1" {
		t.Errorf("the other gate: %s", got)
	}
}

// TestProviderConcurrentChanges: while commits change the gate's
// percentage and the settings, readers evaluate through the SDK; every
// gate evaluation's value, rule and percent must be those of the version
// its metadata names, and every field's value that of the revision its
// metadata names. Run it with -race -count=20.
func TestProviderConcurrentChanges(t *testing.T) {
	d := newDist(t)
	of, _, err := start(t, d, provider.Options{})
	if err != nil {
		t.Fatal(err)
	}
	type version struct {
		gate     *gate.Gate
		pageSize int64
	}
	var mu sync.Mutex // guards versions
	versions := map[int64]version{}
	record := func(rev, pageSize int64) {
		g, err := gate.Compile(d.Compiled("feed/new_ranker"), gate.Options{})
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		versions[rev] = version{g, pageSize}
		mu.Unlock()
	}
	record(1, 20)
	const last = 6

	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for r := range 2 {
		wg.Add(2)
		go func() { // gate evaluations
			defer wg.Done()
			var seen int64
			for i := 0; seen < last; i++ {
				id := fmt.Sprint("u-", (i+r*97)%500)
				d, err := of.BooleanValueDetails(ctx, "feed/new_ranker", false, ctxOf(id, map[string]any{"country": "US"}))
				rev, _ := d.FlagMetadata.GetInt("revision")
				if err != nil || rev < seen {
					errs <- fmt.Errorf("gate reader %d: %s after revision %d", r, show(d, err), seen)
					return
				}
				seen = rev
				mu.Lock()
				v, ok := versions[rev]
				mu.Unlock()
				want := v.gate.Check(gate.Unit{ID: id, Attrs: []gate.Attr{gate.StringAttr("country", "US")}})
				rule, _ := d.FlagMetadata.GetString("rule")
				percent, _ := d.FlagMetadata.GetFloat("percent")
				if !ok || d.Value != want.Pass || rule != want.RuleName || percent != want.Percent() {
					errs <- fmt.Errorf("gate reader %d: %s: %s, revision %d decides %v by rule %q at %v %%", r, id, show(d, err), rev, want.Pass, want.RuleName, want.Percent())
					return
				}
				if i%64 == 0 {
					runtime.Gosched() // leave the distribution some of the 2 cores
				}
			}
		}()
		go func() { // field evaluations
			defer wg.Done()
			var seen int64
			for i := 0; seen < last; i++ {
				d, err := of.IntValueDetails(ctx, "feed/settings:page_size", 0, openfeature.EvaluationContext{})
				rev, _ := d.FlagMetadata.GetInt("revision")
				mu.Lock()
				v, ok := versions[rev]
				mu.Unlock()
				if err != nil || rev < seen || !ok || d.Value != v.pageSize {
					errs <- fmt.Errorf("field reader %d: %s after revision %d; revision %d has page_size %d", r, show(d, err), seen, rev, v.pageSize)
					return
				}
				seen = rev
				if i%64 == 0 {
					runtime.Gosched()
				}
			}
		}()
	}
	for rev := int64(2); rev <= last; rev++ {
		d.Write("source/feed/new_ranker.cconf", rampSource(float64(rev*15)))
		d.Write("source/feed/settings.cconf", settingsSource(int(10*rev)))
		// Record the version before committing: a reader may see it as
		// soon as the commit lands.
		record(rev, 10*rev)
		d.Commit(fmt.Sprintf("revision %d", rev))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestProviderEventsBounded: a provider whose events nobody reads keeps
// following the gate; the events beyond the 64 that wait are dropped and
// logged.
func TestProviderEventsBounded(t *testing.T) {
	d := newDist(t)
	var logs syncbuf.Buffer
	p, err := provider.New(d.Client(), provider.Options{Gates: []string{"feed/new_ranker"}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Init(openfeature.EvaluationContext{}); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown()
	const changes = 70
	for i := 1; i <= changes; i++ {
		d.Write("source/feed/new_ranker.cconf", rampSource(float64(i)))
		d.Commit(fmt.Sprintf("ramp to %d %%", i))
		// Each version must reach the provider before the next commit:
		// the daemon may publish commits made together as one revision.
		deadline := time.Now().Add(10 * time.Second)
		for {
			res := p.BooleanEvaluation(context.Background(), "feed/new_ranker", false, openfeature.FlattenedContext{openfeature.TargetingKey: "u-1", "country": "US"})
			if rev, _ := res.FlagMetadata.GetInt("revision"); rev == int64(i+1) {
				if percent, _ := res.FlagMetadata.GetFloat("percent"); percent != float64(i) {
					t.Fatalf("revision %d: percent %v, want %d", rev, percent, i)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("revision %d did not reach the provider: %+v\n%s", i+1, res, logs.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// A check sees a version before the provider is told of it (and
	// emits its event): wait for the last event to be dropped.
	dropped := func() int { return strings.Count(logs.String(), "OpenFeature event dropped: too many waiting") }
	for deadline := time.Now().Add(10 * time.Second); dropped() < changes-64 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if n := len(p.EventChannel()); n != 64 {
		t.Errorf("%d events wait, want 64", n)
	}
	if got := dropped(); got != changes-64 {
		t.Errorf("%d events dropped and logged, want %d:\n%s", got, changes-64, logs.String())
	}
}
