package daemon

import "net/http"

// ReadOnlyMessage is the answer to a write request (host reports, canary
// overrides and runs) of a daemon started without a token: it serves
// reads only.
const ReadOnlyMessage = "this daemon is read-only: it was started without a token; start cfg serve with --token-file FILE (or CFG_TOKEN) to accept writes"

// readOnly answers every request with 403 and ReadOnlyMessage.
func readOnly(w http.ResponseWriter, _ *http.Request) {
	writeError(w, http.StatusForbidden, "%s", ReadOnlyMessage)
}
