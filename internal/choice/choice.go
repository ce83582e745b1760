// Package choice checks a value against a fixed list of valid ones (a
// publisher, an encoder, an isolation, a storage driver), with one error
// type that names the value and every valid one, so a command can put its
// flag name in front.
package choice

import (
	"fmt"
	"slices"
	"strings"
)

// Invalid is a value outside its valid list.
type Invalid struct {
	What  string // what the value is, e.g. "publisher"
	Value string
	Valid []string
}

func (e *Invalid) Error() string {
	return fmt.Sprintf("%s %q: valid values are %s", e.What, e.Value, strings.Join(e.Valid, ", "))
}

// Parse returns s as a T when it is one of valid; else an *Invalid.
func Parse[T ~string](what, s string, valid []T) (T, error) {
	if v := T(s); slices.Contains(valid, v) {
		return v, nil
	}
	names := make([]string, len(valid))
	for i, v := range valid {
		names[i] = string(v)
	}
	return "", &Invalid{What: what, Value: s, Valid: names}
}
