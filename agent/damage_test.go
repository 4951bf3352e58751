package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfg-dev/cfg/agent/agenttest"
	"github.com/cfg-dev/cfg/agent/cache"
	"github.com/cfg-dev/cfg/internal/syncbuf"
)

func sha(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// TestStartWithDamagedCache: a damaged meta file, data file or state.json
// does not stop the agent from starting. It serves the configs whose
// entries are whole at once, logs each damaged one, fetches it again,
// and follows the daemon's revisions.
func TestStartWithDamagedCache(t *testing.T) {
	jobData := job(1).Data
	jobFile := "data/feed/job.sha256-" + sha(jobData)
	for _, tc := range []struct {
		name    string
		file    string // relative to the cache directory
		content []byte
		wantLog string // DIR stands for the cache directory
	}{
		{"meta garbage", "meta/feed/job.json", []byte("\x00\x00\x00"),
			`level=WARN msg="damaged cache entry removed; fetching the config again" config=feed/job file=DIR/meta/feed/job.json err="invalid character '\\x00' looking for beginning of value"`},
		{"meta truncated", "meta/feed/job.json", []byte(`{"name":"feed/job","revis`),
			`level=WARN msg="damaged cache entry removed; fetching the config again" config=feed/job file=DIR/meta/feed/job.json err="unexpected end of JSON input"`},
		{"meta empty", "meta/feed/job.json", nil,
			`level=WARN msg="damaged cache entry removed; fetching the config again" config=feed/job file=DIR/meta/feed/job.json err="unexpected end of JSON input"`},
		{"data truncated", jobFile, jobData[:3],
			fmt.Sprintf(`level=WARN msg="damaged cache entry removed; fetching the config again" config=feed/job file=DIR/%s err="got sha256 %s, want %s"`, jobFile, sha(jobData[:3]), sha(jobData))},
		{"state truncated", "state.json", []byte(`{"revision":2,"comm`),
			`level=WARN msg="damaged cache state; resynchronising from a snapshot" file=DIR/state.json err="cache damaged: DIR/state.json: unexpected end of JSON input"`},
		{"state garbage", "state.json", []byte("\xff\xfe"),
			`level=WARN msg="damaged cache state; resynchronising from a snapshot" file=DIR/state.json err="cache damaged: DIR/state.json: invalid character 'ÿ' looking for beginning of value"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := agenttest.NewRepo(t, hb)
			repo.Publish(job(1), other(1))
			d := agenttest.NewDaemon(t, repo)
			dir := t.TempDir()
			a := startAgent(t, dir, d)
			a.waitServes(t, "feed/job", "{\"rev\": 1}\n")
			a.waitServes(t, "other", "{\"other\": 1}\n")
			waitFor(t, "state.json to list both configs", func() bool {
				st, _ := cache.ReadState(dir)
				return len(st.Configs) == 2 && st.Revision == 1
			})
			a.stop()

			if err := os.WriteFile(filepath.Join(dir, tc.file), tc.content, 0o644); err != nil {
				t.Fatal(err)
			}
			logs := &syncbuf.Buffer{}
			cfg := testConfig(dir, d)
			cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
			a = serveAgent(t, cfg)
			a.waitServes(t, "other", "{\"other\": 1}\n")
			a.waitServes(t, "feed/job", "{\"rev\": 1}\n")
			waitForLog(t, logs, replaceDir(tc.wantLog, dir))
			repo.Publish(job(2))
			a.waitServes(t, "feed/job", "{\"rev\": 2}\n")
			waitFor(t, "the cache to hold revision 2", func() bool {
				cv, err := cache.Read(dir, "feed/job")
				return err == nil && cv.Revision == 2
			})
			waitFor(t, "state.json to be whole again", func() bool {
				st, err := cache.ReadState(dir)
				return err == nil && st.Revision == 2 && len(st.Configs) == 2
			})
		})
	}
}

func replaceDir(s, dir string) string { return strings.ReplaceAll(s, "DIR", dir) }
