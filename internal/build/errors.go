package build

import (
	"errors"
	"strconv"
	"strings"
)

// readableError is a build error whose message has the Go values buildah
// prints into some errors replaced by what a person reads (see readable);
// it unwraps to the error buildah returned.
type readableError struct {
	msg string
	err error
}

func (e *readableError) Error() string { return e.msg }
func (e *readableError) Unwrap() error { return e.err }

// readable returns err with buildah's value dumps made readable: a build
// step printed with %+v (`committing container for step {Env:[…] Command:copy
// … Original:COPY big /big}`: the environment, build arguments included,
// and every field) becomes its instruction as written (`… for step "COPY
// big /big"`), and a copier request printed with %#v by its child process
// (`error during bulk transfer for copier.request{Request:"GET", Root:…}`,
// kilobytes of options and pointers) its kind (`… for a copier GET
// request`). Anything else is returned as it is.
func readable(err error) error {
	msg := err.Error()
	tidy := tidyCopierRequests(tidySteps(err, msg))
	if tidy == msg {
		return err
	}
	return &readableError{msg: tidy, err: err}
}

// stepDumps are buildah's (imagebuildah) messages that print an
// imagebuilder.Step with %+v.
var stepDumps = []string{"committing container for step ", "committing final squash step "}

// tidySteps replaces each step dump in msg, found in err's chain: a %+v
// dump does not quote its strings, so where it ends is known only from the
// message of the error it wraps.
func tidySteps(err error, msg string) string {
	walk(err, func(e error) {
		inner := errors.Unwrap(e)
		if inner == nil {
			return
		}
		s := e.Error()
		for _, prefix := range stepDumps {
			if !strings.HasPrefix(s, prefix+"{") {
				continue
			}
			if dump, ok := strings.CutSuffix(strings.TrimPrefix(s, prefix), ": "+inner.Error()); ok {
				msg = strings.Replace(msg, prefix+dump, prefix+strconv.Quote(stepText(dump)), 1)
			}
		}
	})
	return msg
}

// stepText is the instruction as written: Original, the last field of
// imagebuilder.Step.
func stepText(dump string) string {
	const field = " Original:"
	i := strings.LastIndex(dump, field)
	if i < 0 {
		return "(unknown step)"
	}
	return strings.TrimSuffix(dump[i+len(field):], "}")
}

// walk calls f on err and every error it wraps, depth first.
func walk(err error, f func(error)) {
	if err == nil {
		return
	}
	f(err)
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		walk(u.Unwrap(), f)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			walk(e, f)
		}
	}
}

// tidyCopierRequests replaces each "for copier.request{…}" in msg with the
// request's kind. %#v quotes every string, so the dump ends at the brace
// that balances its first one, outside quotes.
func tidyCopierRequests(msg string) string {
	const marker = "for copier.request{"
	var b strings.Builder
	for {
		i := strings.Index(msg, marker)
		if i < 0 {
			b.WriteString(msg)
			return b.String()
		}
		open := i + len(marker) - 1
		end := balancedEnd(msg, open)
		if end < 0 {
			b.WriteString(msg)
			return b.String()
		}
		kind := "a copier request"
		if rest, ok := strings.CutPrefix(msg[open+1:end], "Request:"); ok {
			if q, err := strconv.QuotedPrefix(rest); err == nil {
				unq, _ := strconv.Unquote(q)
				kind = "a copier " + unq + " request"
			}
		}
		b.WriteString(msg[:i] + "for " + kind)
		msg = msg[end+1:]
	}
}

// balancedEnd returns the index of the brace closing the one at open in
// s, skipping Go-quoted strings, or -1.
func balancedEnd(s string, open int) int {
	depth := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '"', '`':
			q, err := strconv.QuotedPrefix(s[i:])
			if err != nil {
				return -1
			}
			i += len(q) - 1
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}
