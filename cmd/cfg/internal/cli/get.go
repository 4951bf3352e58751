package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfg-dev/cfg/client"
	"github.com/cfg-dev/cfg/wire"
)

// GetOptions are the inputs of cfg get.
type GetOptions struct {
	Name     string
	Agent    string
	Daemon   string
	CacheDir string
	Verbose  bool
}

func newGetCmd(f *Factory, runF func(*GetOptions) error) *cobra.Command {
	opts := &GetOptions{}
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Print a config, read through an agent or a daemon",
		Long: `Get prints a config's data. Through an agent (--agent, the default
http://127.0.0.1:7481) it reads as applications do, falling back to the
agent's disk cache (--cache-dir) when the agent does not answer; with
--agent '' it reads the cache alone; with --daemon it asks a daemon
directly. Data in the cache that fails its checksum is never printed: a
damaged entry is an error (exit 3) naming the damaged file. -v prints the
revision, commit and origin to stderr.`,
		Example: `  cfg get feed/cache_job
  cfg get --daemon http://127.0.0.1:7480 -v feed/cache_job
  cfg get --agent '' --cache-dir /var/cache/cfg feed/cache_job`,
		ValidArgsFunction: oneArg(completeRefs(f, refConfigs)),
		Args:              exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := configName(f, args[0])
			if err != nil {
				return err
			}
			opts.Name = name
			if runF != nil {
				return runF(opts)
			}
			return runGet(f, cmd, opts)
		},
	}
	cmd.Flags().StringVar(&opts.Agent, "agent", "http://127.0.0.1:7481", "the agent's URL")
	cmd.Flags().StringVar(&opts.Daemon, "daemon", "", "ask this daemon instead of an agent")
	cmd.Flags().StringVar(&opts.CacheDir, "cache-dir", "", "the agent's cache, read if the agent does not answer")
	cmd.Flags().BoolVarP(&opts.Verbose, "verbose", "v", false, "print the revision, commit and origin to stderr")
	return cmd
}

func runGet(f *Factory, cmd *cobra.Command, opts *GetOptions) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
	defer cancel()
	var c client.Config
	var err error
	if opts.Daemon != "" {
		c, err = getFromDaemon(ctx, opts.Daemon, opts.Name)
	} else {
		var cl *client.Client
		if cl, err = client.New(client.Options{AgentURL: opts.Agent, CacheDir: opts.CacheDir}); err != nil {
			return usageError(err)
		}
		c, err = cl.Get(ctx, opts.Name)
	}
	if errors.Is(err, client.ErrNotFound) {
		return &exitError{code: ExitInput, err: err}
	}
	if err != nil {
		return infraError(err)
	}
	if opts.Verbose {
		origin := "agent"
		switch {
		case opts.Daemon != "":
			origin = "daemon"
		case c.FromCache && opts.Agent == "":
			origin = "agent's disk cache"
		case c.FromCache:
			origin = "agent's disk cache (the agent did not answer)"
		}
		fmt.Fprintf(f.IO.Err, "%s: revision %d, commit %s, from the %s\n", c.Name, c.Revision, c.Commit, origin)
	}
	_, err = f.IO.Out.Write(c.Data)
	return err
}

// getFromDaemon reads a config with the daemon's GET /v1/configs/{name}.
func getFromDaemon(ctx context.Context, base, name string) (client.Config, error) {
	d, err := wire.NewClient(base, "", nil)
	if err != nil {
		return client.Config{}, fmt.Errorf("--daemon: %w", err)
	}
	cv, err := d.Config(ctx, name)
	if se, ok := errors.AsType[*wire.StatusError](err); ok {
		if se.Code == http.StatusNotFound {
			return client.Config{}, fmt.Errorf("%w: %s", client.ErrNotFound, se.Msg)
		}
		return client.Config{}, fmt.Errorf("daemon: %s: %s", se.Status, se.Msg)
	}
	if err != nil {
		return client.Config{}, err
	}
	return client.Config{Name: name, Revision: cv.Revision, Commit: cv.Commit, Type: cv.Type, Data: cv.Data}, nil
}
