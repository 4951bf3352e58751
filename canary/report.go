package canary

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cfg-dev/cfg/canary/judge"
)

// Report is what a run did and found.
type Report struct {
	ID     string `json:"id"`
	Config string `json:"config"`
	Spec   string `json:"spec"`
	// By is who ran the canary.
	By   string `json:"by,omitempty"`
	Seed uint64 `json:"seed"`
	// Candidate is the hex SHA-256 of the candidate's data.
	Candidate string  `json:"candidate"`
	Base      int64   `json:"base_revision"` // the revision the hosts ran before
	Outcome   Outcome `json:"outcome"`
	Reason    string  `json:"reason,omitempty"`
	Commit    string  `json:"commit,omitempty"`   // the landed commit
	Revision  int64   `json:"revision,omitempty"` // the landed revision
	// RevertCommit and RevertRevision are, for a run whose bake failed,
	// the commit that undid the change and its revision.
	RevertCommit   string        `json:"revert_commit,omitempty"`
	RevertRevision int64         `json:"revert_revision,omitempty"`
	Started        time.Time     `json:"started"`
	Ended          time.Time     `json:"ended"`
	Phases         []PhaseReport `json:"phases"`
	// Baseline is, for a spec with a bake, each bake check's value on the
	// fleet before anything was pushed.
	Baseline []BaselineValue `json:"baseline,omitempty"`
	Bake     *PhaseReport    `json:"bake,omitempty"`
	// RevertSeconds is, for a rolled-back run, the time from the first
	// push of the candidate until every canary host was verified back on
	// the committed config.
	RevertSeconds float64 `json:"revert_seconds,omitempty"`
	// ScrapeIntervalSeconds is the spec's interval, for reading
	// RevertSeconds.
	ScrapeIntervalSeconds int `json:"scrape_interval_seconds"`
}

// PhaseReport is one phase of a Report, or its bake.
type PhaseReport struct {
	Name    string   `json:"name"`
	Canary  []string `json:"canary"`
	Control []string `json:"control"`
	Verdict Verdict  `json:"verdict"` // "" if the phase did not end
	// Started is when the observation started: every canary host ran
	// the candidate (or, for the bake, the landed revision).
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`
	// ExtendedSeconds is how long the phase went on past its duration
	// because a check was in breach.
	ExtendedSeconds float64 `json:"extended_seconds,omitempty"`
	// Checks holds each check's latest evaluation.
	Checks []CheckReport `json:"checks"`
	// Evaluations are the phase's evaluations, oldest first;
	// EvaluationsOmitted counts the oldest ones left out to bound the
	// report's size.
	Evaluations        []Evaluation `json:"evaluations,omitempty"`
	EvaluationsOmitted int          `json:"evaluations_omitted,omitempty"`
}

// CheckReport is one check's latest evaluation in a phase.
type CheckReport struct {
	Name        string        `json:"name"`
	Metric      string        `json:"metric"`
	Predicate   string        `json:"predicate"`
	Canary      *float64      `json:"canary"`  // nil without data
	Control     *float64      `json:"control"` // nil without data
	CanaryN     int           `json:"canary_samples"`
	ControlN    int           `json:"control_samples"`
	P           *float64      `json:"p,omitempty"`
	Verdict     judge.Verdict `json:"verdict"`
	Reason      string        `json:"reason,omitempty"`
	Evaluations int           `json:"evaluations"`
}

// Evaluation is one evaluation of a phase: which hosts it judged, which
// it left out and why, and each check's values and verdict.
type Evaluation struct {
	At time.Time `json:"at"`
	// Seconds is the time since the phase's observation started.
	Seconds  float64      `json:"seconds"`
	Canary   []string     `json:"canary"`
	Control  []string     `json:"control"`
	Excluded []Exclusion  `json:"excluded,omitempty"`
	Checks   []CheckValue `json:"checks"`
}

// Exclusion is a host left out of an evaluation, and why.
type Exclusion struct {
	Host   string `json:"host"`
	Reason string `json:"reason"`
}

// CheckValue is one check in one Evaluation.
type CheckValue struct {
	Name     string        `json:"name"`
	Canary   *float64      `json:"canary"`
	Control  *float64      `json:"control"`
	CanaryN  int           `json:"canary_samples"`
	ControlN int           `json:"control_samples"`
	Verdict  judge.Verdict `json:"verdict"`
	Reason   string        `json:"reason,omitempty"`
}

// BaselineValue is a bake check's value on the fleet before the change.
type BaselineValue struct {
	Name  string   `json:"name"`
	Value *float64 `json:"value"` // nil without data
	N     int      `json:"samples"`
}

func (c *CheckReport) update(ev judge.Evaluation) {
	c.Evaluations++
	c.Verdict, c.Reason = ev.Verdict, ev.Reason
	c.CanaryN, c.ControlN = ev.CanaryN, ev.ControlN
	c.Canary, c.Control, c.P = finite(ev.Canary), finite(ev.Control), finite(ev.P)
}

func checkValue(name string, ev judge.Evaluation) CheckValue {
	return CheckValue{Name: name, Canary: finite(ev.Canary), Control: finite(ev.Control), CanaryN: ev.CanaryN, ControlN: ev.ControlN,
		Verdict: ev.Verdict, Reason: ev.Reason}
}

func (p *PhaseReport) addEvaluation(ev Evaluation) {
	if ev.Canary == nil {
		ev.Canary = []string{}
	}
	if ev.Control == nil {
		ev.Control = []string{}
	}
	if ev.Checks == nil {
		ev.Checks = []CheckValue{}
	}
	p.Evaluations = append(p.Evaluations, ev)
}

// fit leaves out the oldest evaluations of the phases with the most
// until the report's JSON takes at most limit bytes.
func (r *Report) fit(limit int) {
	for {
		b, err := json.Marshal(r)
		if err != nil || len(b) <= limit {
			return
		}
		var longest *PhaseReport
		for _, p := range r.phasesAndBake() {
			if longest == nil || len(p.Evaluations) > len(longest.Evaluations) {
				longest = p
			}
		}
		if longest == nil || len(longest.Evaluations) == 0 {
			return
		}
		drop := (len(longest.Evaluations) + 1) / 2
		longest.Evaluations = append([]Evaluation(nil), longest.Evaluations[drop:]...)
		longest.EvaluationsOmitted += drop
	}
}

func (r *Report) phasesAndBake() []*PhaseReport {
	var out []*PhaseReport
	for i := range r.Phases {
		out = append(out, &r.Phases[i])
	}
	if r.Bake != nil {
		out = append(out, r.Bake)
	}
	return out
}

var outcomeText = map[Outcome]string{Landed: "LANDED", RolledBack: "ROLLED BACK", Reverted: "LANDED, THEN REVERTED", Failed: "FAILED"}

// WriteText writes the report for people: the outcome, then each phase's
// hosts and each check's canary and control values, predicate and
// verdict, the hosts left out of evaluations, and how the run ended.
func (r *Report) WriteText(w io.Writer) { r.write(w, false) }

// WriteDetail writes the report as WriteText does, with every evaluation
// of every phase (cfg canary history RUN).
func (r *Report) WriteDetail(w io.Writer) { r.write(w, true) }

func (r *Report) write(w io.Writer, detail bool) {
	fmt.Fprintf(w, "canary %s of %s (spec %s, seed %d): %s\n", r.ID, r.Config, r.Spec, r.Seed, outcomeText[r.Outcome])
	if r.By != "" {
		fmt.Fprintf(w, "  run by %s, %s to %s\n", r.By, r.Started.Local().Format(time.DateTime), r.Ended.Local().Format(time.TimeOnly))
	}
	if r.Reason != "" {
		fmt.Fprintf(w, "  %s\n", r.Reason)
	}
	if len(r.Baseline) > 0 {
		fmt.Fprintf(w, "\nbake baseline (the fleet before the change):\n")
		for _, b := range r.Baseline {
			fmt.Fprintf(w, "  %s: %s\n", b.Name, value(b.Value, b.N))
		}
	}
	for _, p := range r.phasesAndBake() {
		verdict := string(p.Verdict)
		if verdict == "" {
			verdict = "not finished"
		}
		extended := ""
		if p.ExtendedSeconds > 0 {
			extended = fmt.Sprintf(" (extended by %v: a check was in breach at its end)", time.Duration(p.ExtendedSeconds*float64(time.Second)))
		}
		name := fmt.Sprintf("phase %q", p.Name)
		if p == r.Bake {
			name = "bake"
		}
		fmt.Fprintf(w, "\n%s: %s after %v%s\n", name, verdict, p.Ended.Sub(p.Started).Round(100*time.Millisecond), extended)
		if p == r.Bake {
			fmt.Fprintf(w, "  fleet:   %s\n", list(p.Canary))
		} else {
			fmt.Fprintf(w, "  canary:  %s\n  control: %s\n", list(p.Canary), list(p.Control))
		}
		if left := leftOut(p.Evaluations); left != "" {
			fmt.Fprintf(w, "  left out of evaluations: %s\n", left)
		}
		// In the bake, "canary" is the fleet and "control" its values
		// before the change.
		sides := "canary\tcontrol"
		if p == r.Bake {
			sides = "fleet\tbefore"
		}
		if len(p.Checks) > 0 {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "  check\t"+sides+"\tpredicate\tverdict")
			for _, c := range p.Checks {
				v := c.Verdict.String()
				if c.Reason != "" && c.Verdict != judge.Pass {
					v += ": " + c.Reason
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", c.Name, value(c.Canary, c.CanaryN), value(c.Control, c.ControlN), c.Predicate, v)
			}
			tw.Flush()
		}
		if detail {
			writeEvaluations(w, p, sides)
		}
	}
	fmt.Fprintln(w)
	switch r.Outcome {
	case Landed:
		fmt.Fprintf(w, "landed: commit %s, published as revision %d\n", r.Commit, r.Revision)
	case Reverted:
		fmt.Fprintf(w, "landed: commit %s, published as revision %d\n", r.Commit, r.Revision)
		fmt.Fprintf(w, "reverted: commit %s, published as revision %d and applied by the fleet\n", r.RevertCommit, r.RevertRevision)
	default:
		switch {
		case r.Commit != "":
			fmt.Fprintf(w, "landed: commit %s, published as revision %d\n", r.Commit, r.Revision)
		case r.RevertSeconds > 0:
			fmt.Fprintf(w, "rolled back: every canary host serves revision %d again, %.1f s after the candidate was first pushed (scrape interval %d s)\n",
				r.Base, r.RevertSeconds, r.ScrapeIntervalSeconds)
		case len(r.Phases) == 0:
			fmt.Fprintf(w, "nothing was pushed; the hosts stay on revision %d\n", r.Base)
		}
	}
}

// leftOut names the hosts some evaluation left out, with the latest
// reason.
func leftOut(evs []Evaluation) string {
	why := map[string]string{}
	var order []string
	for _, ev := range evs {
		for _, e := range ev.Excluded {
			if _, ok := why[e.Host]; !ok {
				order = append(order, e.Host)
			}
			why[e.Host] = e.Reason
		}
	}
	var parts []string
	for _, h := range order {
		n := 0
		for _, ev := range evs {
			for _, e := range ev.Excluded {
				if e.Host == h {
					n++
				}
			}
		}
		parts = append(parts, fmt.Sprintf("%s from %d of %d (%s)", h, n, len(evs), why[h]))
	}
	return strings.Join(parts, "; ")
}

func writeEvaluations(w io.Writer, p *PhaseReport, sides string) {
	if len(p.Evaluations) == 0 {
		return
	}
	fmt.Fprintln(w, "  evaluations:")
	if p.EvaluationsOmitted > 0 {
		fmt.Fprintf(w, "    (%d earlier evaluations left out of the record)\n", p.EvaluationsOmitted)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "    time\tcheck\t"+sides+"\tverdict")
	for _, ev := range p.Evaluations {
		t := fmt.Sprintf("%s +%vs", ev.At.Local().Format(time.TimeOnly), ev.Seconds)
		for i, c := range ev.Checks {
			if i > 0 {
				t = ""
			}
			v := c.Verdict.String()
			if c.Verdict != judge.Pass && c.Reason != "" {
				v += ": " + c.Reason
			}
			fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%s\n", t, c.Name, value(c.Canary, c.CanaryN), value(c.Control, c.ControlN), v)
		}
		for _, e := range ev.Excluded {
			fmt.Fprintf(tw, "    \tleft out\t%s\t\t%s\n", e.Host, e.Reason)
		}
	}
	tw.Flush()
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
