package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/diag"
	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/validate"
)

// DecodeOptions are the inputs of cfg decode.
type DecodeOptions struct {
	File     string
	Type     string // SCHEMA:TYPE, e.g. //schemas/job.thrift:Job
	Encoding string // "" means by the file's extension
	Format   string
}

func newDecodeCmd(f *Factory, runF func(*DecodeOptions) error) *cobra.Command {
	opts := &DecodeOptions{}
	cmd := &cobra.Command{
		Use:   "decode --type SCHEMA:TYPE [--encoding ENCODING] FILE",
		Short: "Print a config in a Thrift encoding as canonical JSON",
		Long: `Decode reads FILE, a value of a struct TYPE in a Thrift encoding (such as
the materialized_configs/NAME.thrift-binary that cfg compile writes when the
repository publishes that encoding),
and prints it as canonical JSON: what cfg compile writes for the config.

SCHEMA is the .thrift file declaring TYPE, named as every command names a
source file: as load() spells it (//schemas/job.thrift), its path under
source/ (schemas/job.thrift) or its path from the working directory. TYPE may
name a struct of an included file (common.Endpoint). The encoding is
thrift-binary or thrift-compact, by default from FILE's extension. Fields
the schema does not declare are skipped; data that does not match the
schema is an error naming the field.`,
		Example: `  cfg decode --type //schemas/job.thrift:Job materialized_configs/feed/cache_job.thrift-binary`,
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return []string{compiler.EncodingThriftBinary, compiler.EncodingThriftCompact}, cobra.ShellCompDirectiveFilterFileExt
		},
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError(fmt.Errorf("decode takes one FILE, got %d arguments", len(args)))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.File = args[0]
			if opts.Type == "" {
				return usageError(errors.New("--type is required (such as --type //schemas/job.thrift:Job)"))
			}
			if err := checkFormat(opts.Format, validate.FormatText, validate.FormatJSON); err != nil {
				return err
			}
			switch opts.Encoding {
			case "", compiler.EncodingThriftBinary, compiler.EncodingThriftCompact:
			default:
				return usageError(fmt.Errorf("--encoding %q: want %s or %s", opts.Encoding, compiler.EncodingThriftBinary, compiler.EncodingThriftCompact))
			}
			if runF != nil {
				return runF(opts)
			}
			return runDecode(f, cmd, opts)
		},
	}
	cmd.Flags().StringVar(&opts.Type, "type", "", "the struct type of the data, SCHEMA:TYPE (//schemas/job.thrift:Job)")
	cmd.RegisterFlagCompletionFunc("type", completeRefs(f, refSchemas))
	cmd.Flags().StringVar(&opts.Encoding, "encoding", "", "thrift-binary or thrift-compact (default: from FILE's extension)")
	cmd.RegisterFlagCompletionFunc("encoding", cobra.FixedCompletions([]string{compiler.EncodingThriftBinary, compiler.EncodingThriftCompact}, cobra.ShellCompDirectiveNoFileComp))
	cmd.Flags().StringVar(&opts.Format, "format", validate.FormatText, "format of problems: text or json")
	addRootFlag(cmd, "")
	return cmd
}

// parseType splits SCHEMA:TYPE into the schema's reference and the type
// name.
func parseType(arg string) (schema, name string, err error) {
	i := strings.LastIndex(arg, ":")
	if i < 0 || i == len(arg)-1 || !strings.HasSuffix(arg[:i], ".thrift") {
		return "", "", fmt.Errorf("--type %q: want SCHEMA:TYPE, such as //schemas/job.thrift:Job", arg)
	}
	return arg[:i], arg[i+1:], nil
}

// encodingOf tells the encoding of a file by its extension.
func encodingOf(file string) (string, bool) {
	switch filepath.Ext(file) {
	case "." + compiler.EncodingThriftBinary:
		return compiler.EncodingThriftBinary, true
	case "." + compiler.EncodingThriftCompact:
		return compiler.EncodingThriftCompact, true
	}
	return "", false
}

func runDecode(f *Factory, cmd *cobra.Command, opts *DecodeOptions) error {
	ws, err := findWorkspace(f, cmd)
	if err != nil {
		return err
	}
	schema, name, err := parseType(opts.Type)
	if err != nil {
		return usageError(err)
	}
	r, err := ws.open()
	if err != nil {
		return err
	}
	defer r.Close()
	ref, err := resolveIn(ws, r.FS(), schema, existingFile)
	if err != nil {
		return prefixed(err, "--type")
	}
	schemaPath := ref.Path
	if repo.Classify(schemaPath) != repo.Schema {
		return usageError(fmt.Errorf("--type %s: %s is a %s, not a schema", opts.Type, ws.display(schemaPath), kindName(repo.Classify(schemaPath))))
	}
	enc := opts.Encoding
	if enc == "" {
		var ok bool
		if enc, ok = encodingOf(opts.File); !ok {
			return usageError(fmt.Errorf("%s: cannot tell the encoding from the extension; use --encoding %s or %s",
				opts.File, compiler.EncodingThriftBinary, compiler.EncodingThriftCompact))
		}
	}
	// A file inside the repository is read following no link, like every
	// file cfg reads there; one outside it is the user's to name.
	var data []byte
	if p, perr := ws.repoPath(opts.File); perr == nil {
		data, err = r.ReadFile(p)
	} else {
		file := opts.File
		if !filepath.IsAbs(file) {
			file = filepath.Join(ws.cwd, file)
		}
		data, err = os.ReadFile(file)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return usageError(fmt.Errorf("%s: no such file", opts.File))
	} else if err != nil {
		return ws.fail(err)
	}
	out, err := compiler.DecodeThrift(r.FS(), schemaPath, name, data, enc)
	if err != nil {
		var diags diag.List
		var de *compiler.DecodeError
		switch {
		case errors.As(err, &diags):
			validate.Relativize(diags, ws.display)
		case errors.As(err, &de):
			for _, p := range de.Problems {
				diags = append(diags, diag.Errorf(diag.Pos{File: opts.File}, "%s", p))
			}
		default:
			return &exitError{code: ExitInput, err: fmt.Errorf("%s: %w", opts.File, err)}
		}
		w := f.IO.Err
		if opts.Format != validate.FormatText {
			w = f.IO.Out
		}
		if err := validate.Write(w, opts.Format, diags, f.IO.Color && opts.Format == validate.FormatText, nil); err != nil {
			return infraError(err)
		}
		return inputFailed
	}
	if _, err := f.IO.Out.Write(out); err != nil {
		return infraError(err)
	}
	return nil
}
