package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfg-dev/cfg/client"
	"github.com/cfg-dev/cfg/validate"
	"github.com/cfg-dev/cfg/wire"
)

// StatusOptions are the inputs of cfg status.
type StatusOptions struct {
	Name   string
	Daemon string
	Format string
}

func newStatusCmd(f *Factory, runF func(*StatusOptions) error) *cobra.Command {
	opts := &StatusOptions{}
	cmd := &cobra.Command{
		Use:   "status [NAME]",
		Short: "Show the revision each host has applied, and which hosts are behind",
		Long: `Status lists the hosts that report to a daemon, with their labels, the
revision each has applied, and the canary overrides each serves
(CONFIG=OVERRIDE/VERSION, or - for none; only NAME's, if given). A host is
behind when a config it holds (or NAME, if given) was last changed by a
revision later than the one it applied.`,
		Example: `  cfg status
  cfg status --daemon http://cfg-1:7480 feed/cache_job
  cfg status --format json`,
		ValidArgsFunction: oneArg(completeRefs(f, refConfigs)),
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError(fmt.Errorf("status takes at most one config NAME"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				name, err := configName(f, args[0])
				if err != nil {
					return err
				}
				opts.Name = name
			}
			if err := checkFormat(opts.Format, validate.FormatText, validate.FormatJSON); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return runStatus(f, cmd, opts)
		},
	}
	cmd.Flags().StringVar(&opts.Daemon, "daemon", "http://127.0.0.1:7480", "the daemon's URL")
	cmd.Flags().StringVar(&opts.Format, "format", validate.FormatText, "output format: text or json")
	return cmd
}

type hostStatus struct {
	wire.Host
	Behind bool `json:"behind"`
}

func runStatus(f *Factory, cmd *cobra.Command, opts *StatusOptions) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
	defer cancel()
	d, err := wire.NewClient(opts.Daemon, "", nil)
	if err != nil {
		return usageError(fmt.Errorf("--daemon: %w", err))
	}
	hosts, err := d.Hosts(ctx)
	if err != nil {
		return infraError(err)
	}
	// The revision that last changed each config, asked once per config.
	lastChanged := map[string]int64{}
	revisionOf := func(name string) (int64, error) {
		if r, ok := lastChanged[name]; ok {
			return r, nil
		}
		c, err := getFromDaemon(ctx, opts.Daemon, name)
		if errors.Is(err, client.ErrNotFound) {
			err = nil
		}
		lastChanged[name] = c.Revision
		return c.Revision, err
	}
	var out []hostStatus
	for _, h := range hosts {
		names := h.Configs
		if opts.Name != "" {
			if !slices.Contains(h.Configs, opts.Name) {
				continue
			}
			names = []string{opts.Name}
		}
		hs := hostStatus{Host: h}
		hs.Configs = list(hs.Configs)
		if hs.Labels == nil {
			hs.Labels = map[string]string{}
		}
		for _, n := range names {
			r, err := revisionOf(n)
			if err != nil {
				return infraError(err)
			}
			hs.Behind = hs.Behind || r > h.Applied
		}
		out = append(out, hs)
	}
	slices.SortFunc(out, func(a, b hostStatus) int { return strings.Compare(a.Name, b.Name) })
	if opts.Format == validate.FormatJSON {
		enc := json.NewEncoder(f.IO.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(append([]hostStatus{}, out...))
	}
	tw := tabwriter.NewWriter(f.IO.Out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tAPPLIED\tSTATE\tLABELS\tLAST SEEN\tOVERRIDES")
	for _, h := range out {
		state := "current"
		if h.Behind {
			state = "behind"
		}
		var labels []string
		for k, v := range h.Labels {
			labels = append(labels, k+"="+v)
		}
		slices.Sort(labels)
		// The canary overrides the host serves: CONFIG=ID/VERSION.
		overrides := []string{}
		for _, o := range h.Overrides {
			if opts.Name == "" || o.Config == opts.Name {
				overrides = append(overrides, fmt.Sprintf("%s=%s/%d", o.Config, o.ID, o.Version))
			}
		}
		slices.Sort(overrides)
		shown := strings.Join(overrides, ",")
		if shown == "" {
			shown = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", h.Name, h.Applied, state, strings.Join(labels, ","), h.LastSeen.Format(time.RFC3339), shown)
	}
	return tw.Flush()
}
