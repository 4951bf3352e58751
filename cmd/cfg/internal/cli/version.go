package cli

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version returns cfg's version from the build information: the module
// version, or the VCS revision for a build from a checkout.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if (v == "" || v == "(devel)") && rev != "" {
		v = rev + dirty
	}
	if v == "" {
		v = "(devel)"
	}
	return v
}

// versionLine is what cfg version and cfg --version print after "cfg ":
// the version and the Go release that built cfg.
func versionLine() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.GoVersion != "" {
		return Version() + " " + bi.GoVersion
	}
	return Version()
}

func newVersionCmd(f *Factory, runF func() error) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print cfg's version (the module's, or the commit it was built from)",
		Example: `  cfg version
  cfg --version`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF()
			}
			fmt.Fprintf(f.IO.Out, "cfg %s\n", versionLine())
			return nil
		},
	}
}
