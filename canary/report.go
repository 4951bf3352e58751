package canary

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText writes the report for people: the outcome, then each phase's
// hosts and each check's canary and control values, predicate and
// verdict.
func (r *Report) WriteText(w io.Writer) {
	outcome := map[string]string{Landed: "LANDED", RolledBack: "ROLLED BACK", Failed: "FAILED (rolled back)"}[r.Outcome]
	fmt.Fprintf(w, "canary %s of %s (spec %s, seed %d): %s\n", r.ID, r.Config, r.Spec, r.Seed, outcome)
	if r.Reason != "" {
		fmt.Fprintf(w, "  %s\n", r.Reason)
	}
	for _, p := range r.Phases {
		verdict := p.Verdict
		if verdict == "" {
			verdict = "not finished"
		}
		fmt.Fprintf(w, "\nphase %q: %s after %v\n", p.Name, verdict, p.Ended.Sub(p.Started).Round(100*time.Millisecond))
		fmt.Fprintf(w, "  canary:  %s\n  control: %s\n", list(p.Canary), list(p.Control))
		if len(p.Checks) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  check\tcanary\tcontrol\tpredicate\tverdict")
		for _, c := range p.Checks {
			v := c.Verdict
			if c.Reason != "" && c.Verdict != "pass" {
				v += ": " + c.Reason
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", c.Name, value(c.Canary, c.CanaryN), value(c.Control, c.ControlN), c.Predicate, v)
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	switch r.Outcome {
	case Landed:
		fmt.Fprintf(w, "landed: commit %s, published as revision %d\n", r.Commit, r.Revision)
	default:
		if r.RevertSeconds > 0 {
			fmt.Fprintf(w, "rolled back: every canary host serves revision %d again, %.1f s after the candidate was first pushed (scrape interval %d s)\n",
				r.Base, r.RevertSeconds, r.ScrapeIntervalSeconds)
		} else {
			fmt.Fprintf(w, "nothing was pushed; the hosts stay on revision %d\n", r.Base)
		}
	}
}

func list(hosts []string) string {
	if len(hosts) == 0 {
		return "(none)"
	}
	return strings.Join(hosts, ", ")
}

func value(x *float64, n int) string {
	if x == nil {
		return "no data"
	}
	return fmt.Sprintf("%.4g (%d)", *x, n)
}
