package diag

import (
	"fmt"

	"github.com/agnivade/levenshtein"
)

// Suggest returns the candidate closest to name by edit distance, if it is
// close enough to be a plausible typo, and "" otherwise.
func Suggest(name string, candidates []string) string {
	best, bestDist := "", len(name)/2+1
	for _, c := range candidates {
		if d := levenshtein.ComputeDistance(name, c); d < bestDist || (d == bestDist && c < best) {
			best, bestDist = c, d
		}
	}
	return best
}

// DidYouMean returns ` (did you mean "x"?)` for the closest candidate, or "".
func DidYouMean(name string, candidates []string) string {
	if s := Suggest(name, candidates); s != "" {
		return fmt.Sprintf(" (did you mean %q?)", s)
	}
	return ""
}
