package sign

import (
	"fmt"
	"strings"
)

// SumLine is one line of a SHA256SUMS file: what a signature covers.
type SumLine struct{ SHA256, Name string }

// ParseSums reads SHA256SUMS (sha256sum's format, which signify -C also
// checks), in its order; a line without the two-space separator is an
// error quoting it.
func ParseSums(data []byte) ([]SumLine, error) {
	var out []SumLine
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok {
			return nil, fmt.Errorf("SHA256SUMS: bad line %q", line)
		}
		out = append(out, SumLine{sum, name})
	}
	return out, nil
}
