package cli

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfg-dev/cfg/agent"
)

// AgentOptions are the inputs of cfg agent.
type AgentOptions struct {
	Daemons          []string
	Host             string
	Labels           []string
	CacheDir         string
	Metrics          string
	Listen           string
	TokenFile        string
	AddrFile         string
	ReportEvery      time.Duration
	HeartbeatTimeout time.Duration
}

func newAgentCmd(f *Factory, runF func(*AgentOptions) error) *cobra.Command {
	opts := &AgentOptions{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the per-host agent",
		Long: `Agent runs the per-host agent: it fetches the configs local applications
ask for from a daemon, keeps them in an on-disk cache (written atomically),
follows their updates, serves them on --listen (see docs/api.md, "The
agent's local API"), and reports what it applied. It fails over between the
daemons given, and serves its cache when none answers, also right after a
restart.`,
		Example: `  cfg agent --daemon http://127.0.0.1:7480 --host web-1 --cache-dir /var/cache/cfg --token-file token
  cfg agent --daemon http://cfg-1:7480,http://cfg-2:7480 --label cluster=c1 --cache-dir /var/cache/cfg --token-file token`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return runAgent(f, cmd, opts)
		},
	}
	cmd.Flags().StringSliceVar(&opts.Daemons, "daemon", nil, "daemon URLs to fail over between, in order (required)")
	cmd.Flags().StringVar(&opts.Host, "host", "", "the host name to report (default: the machine's)")
	cmd.Flags().StringArrayVar(&opts.Labels, "label", nil, "a host label, KEY=VALUE (repeatable)")
	cmd.Flags().StringVar(&opts.CacheDir, "cache-dir", "", "the on-disk cache (required)")
	cmd.Flags().StringVar(&opts.Metrics, "metrics", "", "URL of this host's application metrics (Prometheus text), scraped by canaries")
	cmd.Flags().StringVar(&opts.Listen, "listen", "127.0.0.1:7481", "address to serve local applications on")
	cmd.Flags().StringVar(&opts.TokenFile, "token-file", "", "file whose first line is the daemon's token (default: $CFG_TOKEN)")
	cmd.Flags().StringVar(&opts.AddrFile, "addr-file", "", "write the address actually listened on to this file")
	cmd.Flags().DurationVar(&opts.ReportEvery, "report-every", 10*time.Second, "how often to report to the daemon besides after each update")
	cmd.Flags().DurationVar(&opts.HeartbeatTimeout, "heartbeat-timeout", 15*time.Second, "silence on the watch stream after which the agent fails over")
	return cmd
}

func runAgent(f *Factory, cmd *cobra.Command, opts *AgentOptions) error {
	if len(opts.Daemons) == 0 || opts.CacheDir == "" {
		return usageError(fmt.Errorf("--daemon and --cache-dir are required"))
	}
	labels := map[string]string{}
	for _, l := range opts.Labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return usageError(fmt.Errorf("--label %q: want KEY=VALUE", l))
		}
		labels[k] = v
	}
	token, err := readToken(opts.TokenFile)
	if err != nil {
		return err
	}
	a, err := agent.New(agent.Config{
		Daemons:          opts.Daemons,
		Host:             opts.Host,
		Labels:           labels,
		CacheDir:         opts.CacheDir,
		Metrics:          opts.Metrics,
		Token:            token,
		ReportEvery:      opts.ReportEvery,
		HeartbeatTimeout: opts.HeartbeatTimeout,
		Logger:           slog.New(slog.NewTextHandler(f.IO.Err, nil)),
	})
	if err != nil {
		return usageError(err)
	}
	ln, err := listen(opts.Listen, opts.AddrFile)
	if err != nil {
		return err
	}
	fmt.Fprintf(f.IO.Err, "cfg agent: listening on http://%s\n", ln.Addr())
	if err := a.Serve(cmd.Context(), ln); err != nil {
		return infraError(err)
	}
	return nil
}
