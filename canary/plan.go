package canary

import (
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/cfg-dev/cfg/wire"
)

// MaxHostAge is how recently a host must have reported to take part in a
// canary: agents report every 10 s by default.
const MaxHostAge = time.Minute

// PhasePlan is the hosts of one phase: the canaries that get the
// candidate, and the controls they are compared with.
type PhasePlan struct {
	Canary  []string `json:"canary"`
	Control []string `json:"control"`
}

// Eligible returns the hosts that can take part in a canary of config:
// subscribed to it, heard from within MaxHostAge of now, and, when
// needMetrics, reporting a metrics URL.
func Eligible(hosts []wire.Host, config string, now time.Time, needMetrics bool) []wire.Host {
	var out []wire.Host
	for _, h := range hosts {
		if slices.Contains(h.Configs, config) && now.Sub(h.LastSeen) <= MaxHostAge && (!needMetrics || h.Metrics != "") {
			out = append(out, h)
		}
	}
	return out
}

// Plan picks each phase's canary and control hosts among hosts, the same
// way for the same seed and the same hosts. The hosts are put in an
// order drawn from the seed (and the config's name); a count or
// percentage takes the first hosts of that order, so that each phase of
// growing size keeps the previous phase's canaries; a selector takes the
// hosts whose labels match, in that order. Control hosts are the next
// hosts of the order that have not been canaries in this or an earlier
// phase, as many as the phase has canaries (or as many as remain).
func Plan(spec Spec, hosts []wire.Host, seed uint64) ([]PhasePlan, error) {
	byName := map[string]wire.Host{}
	for _, h := range hosts {
		byName[h.Name] = h
	}
	order := slices.Sorted(maps.Keys(byName))
	h := fnv.New64a()
	h.Write([]byte(spec.Config))
	r := rand.New(rand.NewPCG(seed, h.Sum64()))
	r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })

	n := len(order)
	used := map[string]bool{}
	plans := make([]PhasePlan, len(spec.Phases))
	for i, p := range spec.Phases {
		var canary []string
		switch t := p.Targets; {
		case t.Count != nil:
			if *t.Count > n {
				return nil, fmt.Errorf("phase %q wants %d hosts, but %s", p.Name, *t.Count, hostCount(n, spec.Config))
			}
			canary = slices.Clone(order[:*t.Count])
		case t.Percent != nil:
			k := max(1, int(math.Ceil(float64(n)**t.Percent/100)))
			if n == 0 {
				return nil, fmt.Errorf("phase %q: %s", p.Name, hostCount(n, spec.Config))
			}
			canary = slices.Clone(order[:k])
		case t.Selector != nil:
			for _, name := range order {
				if matches(byName[name].Labels, t.Selector) {
					canary = append(canary, name)
				}
			}
			if len(canary) == 0 {
				return nil, fmt.Errorf("phase %q: no host with labels %s among the %s", p.Name, labels(t.Selector), hostCount(n, spec.Config))
			}
		default:
			return nil, fmt.Errorf("phase %q: no targets", p.Name)
		}
		for _, c := range canary {
			used[c] = true
		}
		var control []string
		for _, name := range order {
			if len(control) == len(canary) {
				break
			}
			if !used[name] {
				control = append(control, name)
			}
		}
		if len(control) == 0 && p.needsControl() {
			return nil, fmt.Errorf("phase %q puts every host on the candidate (%s), leaving no control hosts to compare with", p.Name, hostCount(n, spec.Config))
		}
		slices.Sort(canary)
		slices.Sort(control)
		plans[i] = PhasePlan{Canary: canary, Control: control}
	}
	return plans, nil
}

func hostCount(n int, config string) string {
	if n == 1 {
		return fmt.Sprintf("1 host is subscribed to %s", config)
	}
	return fmt.Sprintf("%d hosts are subscribed to %s", n, config)
}

func matches(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func labels(m map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}
