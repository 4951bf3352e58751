package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/gate"
	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/validate"
)

// GateOptions are the inputs of cfg gate check and cfg gate sample.
type GateOptions struct {
	Name       string
	Unit       string   // check: the unit's ID
	Attrs      []string // key=value
	Restraints []string // name=true|false
	Units      int      // sample: how many synthetic units
	IDPrefix   string   // sample: their IDs' prefix
	Format     string
	CompileFlags
}

func newGateCmd(f *Factory, runCheck, runSample func(*GateOptions) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gate",
		Short: "Check a feature gate of the working tree",
		Long: `The gate commands evaluate a gate (a config exporting a Gate of
@cfg//gate.thrift) as the working tree compiles it, in memory (writing
nothing), as applications evaluate it with the gate package: check decides
for one unit, sample counts the decisions over many.

Attributes are given as --attr KEY=VALUE, and read as the gate's restraints
read them: a number for number comparisons, true or false for boolean
restraints, a string otherwise. A restraint an application registers in Go
is evaluated as --restraint NAME=true or NAME=false says; one not given
does not hold (a note on stderr says so).`,
		Example: `  cfg gate check feed/new_ranker --unit u-1234 --attr country=US
  cfg gate sample feed/new_ranker --units 100000 --attr country=US`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError(fmt.Errorf("gate: unknown subcommand %q (want check or sample)", args[0]))
			}
			return usageError(errors.New("gate takes a subcommand: check or sample"))
		},
	}
	cmd.AddCommand(newGateCheckCmd(f, runCheck), newGateSampleCmd(f, runSample))
	return cmd
}

func (o *GateOptions) add(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&o.Attrs, "attr", nil, "an attribute of the unit, KEY=VALUE (repeatable)")
	cmd.Flags().StringArrayVar(&o.Restraints, "restraint", nil, "the value of an application's restraint, NAME=true|false (repeatable)")
	cmd.Flags().StringVar(&o.Format, "format", validate.FormatText, "output format: text or json")
	o.CompileFlags.add(cmd)
	addRootFlag(cmd, "")
}

func gateArgs(opts *GateOptions, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usageError(fmt.Errorf("gate %s takes one gate NAME, got %d arguments", what, len(args)))
		}
		opts.Name = args[0]
		return checkFormat(opts.Format, validate.FormatText, validate.FormatJSON)
	}
}

func newGateCheckCmd(f *Factory, runF func(*GateOptions) error) *cobra.Command {
	opts := &GateOptions{}
	cmd := &cobra.Command{
		Use:   "check NAME [--unit ID] [--attr KEY=VALUE]...",
		Short: "Decide a gate for one unit and show the deciding rule",
		Long: `Check compiles the gate NAME of the working tree and decides it for the
unit with ID --unit and the attributes --attr: pass or fail, the rule that
decided and its percentage, and, when the rule samples, the unit's bucket
(a unit passes a rule of p % when its bucket is below p × 100).

A check that cannot decide (an attribute of the wrong type, sampling without
a unit ID) fails closed: check prints the reason and exits 1, as it does
when the gate does not compile.`,
		Example: `  cfg gate check feed/new_ranker --unit u-1234 --attr country=US --attr app_version=2.4.0
  cfg gate check feed/new_ranker --unit alice --format json`,
		Args: gateArgs(opts, "check"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return runGateCheck(f, cmd, opts)
		},
	}
	cmd.Flags().StringVar(&opts.Unit, "unit", "", "the unit's ID")
	opts.add(cmd)
	return cmd
}

func newGateSampleCmd(f *Factory, runF func(*GateOptions) error) *cobra.Command {
	opts := &GateOptions{}
	cmd := &cobra.Command{
		Use:   "sample NAME [--units N] [--attr KEY=VALUE]...",
		Short: "Show a gate's pass rate per rule over synthetic units",
		Long: `Sample compiles the gate NAME of the working tree and decides it for N
synthetic units (IDs --id-prefix followed by 0 to N-1, all with the
attributes --attr), and prints, per rule, how many units it decided for,
how many of those passed, the pass rate, and the rule's percentage with the
margin N allows: three standard deviations of the rate over that many units
(99.7 % of samples fall within). Checks that fail closed are counted, and
make sample exit 1.`,
		Example: `  cfg gate sample feed/new_ranker --units 100000 --attr country=US --attr app_version=2.4.0`,
		Args:    gateArgs(opts, "sample"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Units < 1 || opts.Units > 100_000_000 {
				return usageError(fmt.Errorf("--units %d: want 1 to 100000000", opts.Units))
			}
			if runF != nil {
				return runF(opts)
			}
			return runGateSample(f, cmd, opts)
		},
	}
	cmd.Flags().IntVar(&opts.Units, "units", 10000, "how many synthetic units")
	cmd.Flags().StringVar(&opts.IDPrefix, "id-prefix", "unit-", "the prefix of the synthetic units' IDs")
	opts.add(cmd)
	return cmd
}

// loadGate compiles the gate config of the working tree and the unit
// attributes of the command line for it.
func loadGate(f *Factory, cmd *cobra.Command, opts *GateOptions) (*gate.Gate, []gate.Attr, error) {
	ws, err := findWorkspace(f, cmd)
	if err != nil {
		return nil, nil, err
	}
	restraints := map[string]gate.NewRestraint{}
	for _, arg := range opts.Restraints {
		name, value, ok := strings.Cut(arg, "=")
		b, err := strconv.ParseBool(value)
		if !ok || name == "" || err != nil {
			return nil, nil, usageError(fmt.Errorf("--restraint %q: want NAME=true or NAME=false", arg))
		}
		restraints[name] = func(map[string]string) (gate.Restraint, error) {
			return func(gate.Unit) (bool, error) { return b, nil }, nil
		}
	}
	r, err := ws.open()
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	// NAME is named as every command names a config (repo.Resolve).
	ref, err := resolveIn(ws, r.FS(), opts.Name, existingFile)
	if err != nil {
		return nil, nil, prefixed(err, "gate")
	}
	if repo.Classify(ref.Path) != repo.Config {
		return nil, nil, usageError(fmt.Errorf("gate %s: %s is a %s, not a config", opts.Name, ws.display(ref.Path), kindName(repo.Classify(ref.Path))))
	}
	src := ref.Path
	opts.Name = ref.Name
	out := compiler.New(r.FS(), opts.options(f)).Compile(src)
	if len(out.Diags) > 0 {
		if err := ws.report(f, validate.FormatText, out.Diags, nil); err != nil {
			return nil, nil, err
		}
		return nil, nil, inputFailed
	}
	if out.Type != gate.Type {
		return nil, nil, &exitError{code: ExitInput, err: fmt.Errorf("config %q is a %s, not a %s of %s", opts.Name, out.Type, gate.Type, gate.Schema)}
	}
	if out.Schema != gate.Schema {
		return nil, nil, &exitError{code: ExitInput, err: fmt.Errorf("config %q is a %s of %s, not a %s of %s", opts.Name, out.Type, out.Schema, gate.Type, gate.Schema)}
	}
	var assumed []string
	for _, name := range gate.CustomNames(out.Data) {
		if _, ok := restraints[name]; !ok {
			assumed = append(assumed, name)
			restraints[name] = func(map[string]string) (gate.Restraint, error) {
				return func(gate.Unit) (bool, error) { return false, nil }, nil
			}
		}
	}
	g, err := gate.Compile(out.Data, gate.Options{Restraints: restraints})
	if err != nil {
		return nil, nil, &exitError{code: ExitInput, err: fmt.Errorf("gate %q: %w", opts.Name, err)}
	}
	for _, name := range assumed {
		fmt.Fprintf(f.IO.Err, "note: the application's restraint %q does not hold here (give --restraint %s=true to change that)\n", name, name)
	}
	attrs, err := unitAttrs(g, opts.Attrs)
	if err != nil {
		return nil, nil, usageError(err)
	}
	return g, attrs, nil
}

// unitAttrs reads --attr KEY=VALUE as the gate reads KEY.
func unitAttrs(g *gate.Gate, args []string) ([]gate.Attr, error) {
	kinds := g.AttrKinds()
	var attrs []gate.Attr
	for _, arg := range args {
		k, v, ok := strings.Cut(arg, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--attr %q: want KEY=VALUE", arg)
		}
		switch kinds[k] {
		case gate.Number:
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return nil, fmt.Errorf("--attr %s: got %q, want a number (the gate compares %q with numbers)", arg, v, k)
			}
			attrs = append(attrs, gate.NumberAttr(k, n))
		case gate.Bool:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("--attr %s: got %q, want true or false (the gate reads %q as a boolean)", arg, v, k)
			}
			attrs = append(attrs, gate.BoolAttr(k, b))
		default:
			attrs = append(attrs, gate.StringAttr(k, v))
		}
	}
	return attrs, nil
}

// gateCheck is the outcome of cfg gate check, as --format json prints it.
type gateCheck struct {
	Gate     string  `json:"gate"`
	Unit     string  `json:"unit"`
	Pass     bool    `json:"pass"`
	Rule     int     `json:"rule"` // -1: no rule held
	RuleName string  `json:"rule_name,omitempty"`
	Percent  float64 `json:"percent"`
	Sampled  bool    `json:"sampled"`
	Bucket   int     `json:"bucket"` // the unit's, -1 without an ID
	Error    string  `json:"error,omitempty"`
}

func runGateCheck(f *Factory, cmd *cobra.Command, opts *GateOptions) error {
	g, attrs, err := loadGate(f, cmd, opts)
	if err != nil {
		return err
	}
	d := g.Check(gate.Unit{ID: opts.Unit, Attrs: attrs})
	res := gateCheck{Gate: opts.Name, Unit: opts.Unit, Pass: d.Pass, Rule: d.Rule, RuleName: d.RuleName, Percent: d.Percent(), Sampled: d.Sampled, Bucket: -1}
	if opts.Unit != "" {
		res.Bucket = gate.Bucket(g.Salt(), opts.Unit)
	}
	if d.Err != nil {
		res.Error = d.Err.Error()
	}
	if opts.Format == validate.FormatJSON {
		if err := writeJSON(f, res); err != nil {
			return err
		}
	} else {
		w := f.IO.Out
		switch {
		case d.Err != nil:
			fmt.Fprintf(w, "%s: fail (closed)\n  %s\n", opts.Name, d.Err)
		case d.Rule < 0:
			fmt.Fprintf(w, "%s: fail\n  no rule holds\n", opts.Name)
		default:
			fmt.Fprintf(w, "%s: %s\n  rule %d %q (%v %%)", opts.Name, map[bool]string{true: "pass", false: "fail"}[d.Pass], d.Rule, d.RuleName, d.Percent())
			if d.Sampled {
				below := "below"
				if !d.Pass {
					below = "not below"
				}
				fmt.Fprintf(w, ": bucket %d of %d is %s %d", res.Bucket, gate.Buckets, below, d.Buckets)
			}
			fmt.Fprintln(w)
		}
	}
	if d.Err != nil {
		return &exitError{code: ExitInput}
	}
	return nil
}

func writeJSON(f *Factory, v any) error {
	enc := json.NewEncoder(f.IO.Out)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return infraError(err)
	}
	return nil
}

// gateSample is the outcome of cfg gate sample, as --format json prints it.
type gateSample struct {
	Gate   string            `json:"gate"`
	Units  int               `json:"units"`
	Attrs  map[string]string `json:"attrs"`
	Passed int               `json:"passed"`
	Rules  []gateSampleRule  `json:"rules"`
	NoRule int               `json:"no_rule"`
	Failed int               `json:"failed_closed"`
	Error  string            `json:"error,omitempty"` // the first failure's reason
}

type gateSampleRule struct {
	Name    string  `json:"name"`
	Percent float64 `json:"percent"`
	Decided int     `json:"decided"`
	Passed  int     `json:"passed"`
	Rate    float64 `json:"rate"`   // percent of Decided
	Margin  float64 `json:"margin"` // percentage points, three standard deviations
}

func runGateSample(f *Factory, cmd *cobra.Command, opts *GateOptions) error {
	g, attrs, err := loadGate(f, cmd, opts)
	if err != nil {
		return err
	}
	rep := gate.Sample(g, opts.Units, opts.IDPrefix, attrs)
	res := gateSample{Gate: opts.Name, Units: rep.Units, Attrs: map[string]string{}, Passed: rep.Passed, NoRule: rep.NoRule, Failed: rep.Failed}
	for _, a := range opts.Attrs {
		k, v, _ := strings.Cut(a, "=")
		res.Attrs[k] = v
	}
	if rep.Err != nil {
		res.Error = rep.Err.Error()
	}
	for _, r := range rep.Rules {
		res.Rules = append(res.Rules, gateSampleRule{Name: r.Name, Percent: r.Percent, Decided: r.Decided, Passed: r.Passed, Rate: r.Rate(), Margin: r.Margin()})
	}
	if opts.Format == validate.FormatJSON {
		if err := writeJSON(f, res); err != nil {
			return err
		}
	} else {
		w := f.IO.Out
		with := ""
		if len(res.Attrs) > 0 {
			var kv []string
			for _, k := range slices.Sorted(maps.Keys(res.Attrs)) {
				kv = append(kv, k+"="+res.Attrs[k])
			}
			with = ", attributes " + strings.Join(kv, " ")
		}
		fmt.Fprintf(w, "%s: %d synthetic units (IDs %s0 to %s%d%s)\n", opts.Name, rep.Units, opts.IDPrefix, opts.IDPrefix, rep.Units-1, with)
		labels := []string{"rule"}
		for i, r := range res.Rules {
			labels = append(labels, fmt.Sprintf("%d %s", i, r.Name))
		}
		labels = append(labels, "no rule")
		width := 0
		for _, l := range labels {
			width = max(width, len(l))
		}
		fmt.Fprintf(w, "%-*s  %9s  %9s  %9s  %s\n", width, labels[0], "decided", "passed", "rate", "want")
		for i, r := range res.Rules {
			rate, want := "-", fmt.Sprintf("%v %%", r.Percent)
			if r.Decided > 0 {
				rate = fmt.Sprintf("%.3f %%", r.Rate)
				if r.Margin > 0 {
					want += fmt.Sprintf(" ± %.3f", r.Margin)
				}
			}
			fmt.Fprintf(w, "%-*s  %9d  %9d  %9s  %s\n", width, labels[i+1], r.Decided, r.Passed, rate, want)
		}
		fmt.Fprintf(w, "%-*s  %9d\n", width, "no rule", rep.NoRule)
		fmt.Fprintf(w, "passed: %d of %d (%.3f %%)\n", rep.Passed, rep.Units, 100*float64(rep.Passed)/float64(rep.Units))
		if rep.Failed > 0 {
			fmt.Fprintf(w, "failed closed: %d (the first: %s)\n", rep.Failed, rep.Err)
		}
	}
	if rep.Failed > 0 {
		return &exitError{code: ExitInput}
	}
	return nil
}
