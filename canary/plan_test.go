package canary

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cfg-dev/cfg/wire"
)

func hostsN(n int) []wire.Host {
	var hs []wire.Host
	for i := range n {
		zone := "a"
		if i%2 == 1 {
			zone = "b"
		}
		hs = append(hs, wire.Host{Name: fmt.Sprintf("web-%d", i+1), Labels: map[string]string{"zone": zone}, Configs: []string{"demo/service"}})
	}
	return hs
}

func ptr[T any](v T) *T { return &v }

func relative() []Check {
	return []Check{{Name: "errors", Predicate: Predicate{Relative: &struct {
		MaxRatio float64 `json:"max_ratio"`
		Slack    float64 `json:"slack"`
	}{MaxRatio: 1.1}}}}
}

func absolute() []Check {
	return []Check{{Name: "errors", Predicate: Predicate{Absolute: &struct {
		Limit float64 `json:"limit"`
	}{Limit: 0.1}}}}
}

func specOf(phases ...Phase) Spec { return Spec{Config: "demo/service", Phases: phases} }

func TestPlanDeterministicAndGrowing(t *testing.T) {
	spec := specOf(
		Phase{Name: "two", Targets: Targets{Count: ptr(2)}, Checks: relative()},
		Phase{Name: "half", Targets: Targets{Percent: ptr(50.0)}, Checks: relative()},
	)
	hosts := hostsN(6)
	a, err := Plan(spec, hosts, 42)
	if err != nil {
		t.Fatal(err)
	}
	// The order of the hosts given does not matter.
	reversed := slices.Clone(hosts)
	slices.Reverse(reversed)
	b, err := Plan(spec, reversed, 42)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("the same seed chose differently (-first +second):\n%s", diff)
	}
	if len(a[0].Canary) != 2 || len(a[1].Canary) != 3 || len(a[0].Control) != 2 || len(a[1].Control) != 3 {
		t.Fatalf("plan sizes: %+v", a)
	}
	for _, h := range a[0].Canary {
		if !slices.Contains(a[1].Canary, h) {
			t.Errorf("phase two's canary %s is not a canary of the larger phase half: %+v", h, a)
		}
	}
	for i, p := range a {
		for _, h := range p.Control {
			if slices.Contains(p.Canary, h) || i > 0 && slices.Contains(a[i-1].Canary, h) {
				t.Errorf("phase %d: control host %s is or was a canary: %+v", i, h, a)
			}
		}
	}
	// Different seeds spread the canaries over different hosts.
	firsts := map[string]bool{}
	for seed := range uint64(20) {
		p, err := Plan(spec, hosts, seed)
		if err != nil {
			t.Fatal(err)
		}
		firsts[strings.Join(p[0].Canary, ",")] = true
	}
	if len(firsts) < 5 {
		t.Errorf("20 seeds chose only %d different first phases: %v", len(firsts), firsts)
	}
}

func TestPlanSelector(t *testing.T) {
	spec := specOf(Phase{Name: "zone b", Targets: Targets{Selector: map[string]string{"zone": "b"}}, Checks: relative()})
	p, err := Plan(spec, hostsN(6), 7)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"web-2", "web-4", "web-6"}, p[0].Canary); diff != "" {
		t.Errorf("canaries (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"web-1", "web-3", "web-5"}, p[0].Control); diff != "" {
		t.Errorf("controls (-want +got):\n%s", diff)
	}
}

func TestPlanErrors(t *testing.T) {
	for _, tc := range []struct {
		spec Spec
		want string
	}{
		{specOf(Phase{Name: "many", Targets: Targets{Count: ptr(7)}, Checks: relative()}), `phase "many" wants 7 hosts, but 6 hosts are subscribed to demo/service`},
		{specOf(Phase{Name: "all", Targets: Targets{Percent: ptr(100.0)}, Checks: relative()}), `phase "all" puts every host on the candidate (6 hosts are subscribed to demo/service)`},
		{specOf(Phase{Name: "zone c", Targets: Targets{Selector: map[string]string{"zone": "c"}}, Checks: relative()}), `phase "zone c": no host with labels zone=c`},
	} {
		_, err := Plan(tc.spec, hostsN(6), 1)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Plan(%s): %v, want %q", tc.spec.Phases[0].Name, err, tc.want)
		}
	}
	// Absolute checks need no control hosts.
	if _, err := Plan(specOf(Phase{Name: "all", Targets: Targets{Percent: ptr(100.0)}, Checks: absolute()}), hostsN(6), 1); err != nil {
		t.Errorf("all hosts with only absolute checks: %v", err)
	}
}

func TestEligible(t *testing.T) {
	now := time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)
	hosts := []wire.Host{
		{Name: "ok", Configs: []string{"demo/service"}, LastSeen: now.Add(-10 * time.Second), Metrics: "http://ok/metrics"},
		{Name: "stale", Configs: []string{"demo/service"}, LastSeen: now.Add(-MaxHostAge - time.Second), Metrics: "http://stale/metrics"},
		{Name: "other", Configs: []string{"demo/other"}, LastSeen: now, Metrics: "http://other/metrics"},
		{Name: "no-metrics", Configs: []string{"demo/service"}, LastSeen: now},
	}
	names := func(hs []wire.Host) []string {
		var out []string
		for _, h := range hs {
			out = append(out, h.Name)
		}
		return out
	}
	if diff := cmp.Diff([]string{"ok"}, names(Eligible(hosts, "demo/service", now, true))); diff != "" {
		t.Errorf("eligible with metrics (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"ok", "no-metrics"}, names(Eligible(hosts, "demo/service", now, false))); diff != "" {
		t.Errorf("eligible without metrics (-want +got):\n%s", diff)
	}
}
