package daemon

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/wire"
)

// watchParams returns the parameters of a watch request: the query of
// GET /v1/watch, or the body of POST /v1/watch (a wire.WatchRequest, at
// most MaxBody bytes) as the same values. If the body is bad it answers
// the request and returns false.
func watchParams(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	if r.Method != http.MethodPost {
		return r.URL.Query(), true
	}
	var req wire.WatchRequest
	if !readBody(w, r, "watch request", &req) {
		return nil, false
	}
	// Names are joined with commas below: one holding a comma must not
	// become two.
	for _, n := range req.Configs {
		if err := repo.CheckName(n); err != nil {
			writeError(w, http.StatusBadRequest, "configs: %v", err)
			return nil, false
		}
	}
	q := url.Values{}
	if len(req.Configs) > 0 {
		q.Set("configs", strings.Join(req.Configs, ","))
	}
	if req.From != nil {
		q.Set("from", strconv.FormatInt(*req.From, 10))
	}
	if req.Host != "" {
		q.Set("host", req.Host)
	}
	return q, true
}
