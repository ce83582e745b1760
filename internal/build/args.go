package build

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strings"
	"unicode"
)

// ParseArgs merges build arguments from a file of KEY=VALUE lines (blank lines
// and # comments ignored) and from --build-arg values, which win. A bare KEY
// takes its value from the environment, as buildah does, and is skipped when
// the variable is unset.
//
// Errors are *ArgError: File says whether the bad argument came from the
// file, for the caller to name the flag.
func ParseArgs(file string, flags []string, lookupEnv func(string) (string, bool)) (map[string]string, error) {
	args := map[string]string{}
	if file != "" {
		fh, err := os.Open(file)
		if err != nil {
			return nil, &ArgError{File: file, Err: err}
		}
		defer fh.Close()
		sc := bufio.NewScanner(fh)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if err := addArg(args, line, lookupEnv); err != nil {
				return nil, &ArgError{File: file, Line: n, Err: err}
			}
		}
		if err := sc.Err(); err != nil {
			return nil, &ArgError{File: file, Err: err}
		}
	}
	for _, a := range flags {
		if err := addArg(args, a, lookupEnv); err != nil {
			return nil, &ArgError{Err: err}
		}
	}
	return args, nil
}

// ParseEnv reads --env values, KEY=VALUE, in order; a bare KEY takes its
// value from the environment, as buildah's --env does, and is skipped when
// the variable is unset. A key given twice keeps its first place and its
// last value, so the ENV line buildah writes (and the image's history) does
// not depend on anything but the values. The error starts with the value,
// for the caller to name the flag.
func ParseEnv(flags []string, lookupEnv func(string) (string, bool)) ([]string, error) {
	values := map[string]string{}
	var order []string
	for _, spec := range flags {
		before := len(values)
		if err := addArg(values, spec, lookupEnv); err != nil {
			return nil, err
		}
		key, _, _ := strings.Cut(spec, "=")
		if key = strings.TrimSpace(key); len(values) > before {
			order = append(order, key)
		}
	}
	out := make([]string, len(order))
	for i, k := range order {
		out[i] = k + "=" + values[k]
	}
	return out, nil
}

// ArgError is a build argument that cannot be used. File and Line say
// where it was read; File is "" for one given directly.
type ArgError struct {
	File string
	Line int
	Err  error
}

func (e *ArgError) Error() string {
	switch {
	case e.File == "":
		return e.Err.Error()
	case e.Line > 0:
		return fmt.Sprintf("%s line %d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *ArgError) Unwrap() error { return e.Err }

func addArg(args map[string]string, spec string, lookupEnv func(string) (string, bool)) error {
	key, value, hasValue := strings.Cut(spec, "=")
	key = strings.TrimSpace(key)
	if badKey(key) {
		return fmt.Errorf("%q: want KEY=VALUE (or KEY to take it from the environment)", spec)
	}
	if !hasValue {
		v, ok := lookupEnv(key)
		if !ok {
			return nil
		}
		value = v
	}
	args[key] = value
	return nil
}

// badKey reports whether key cannot name a build argument, label or
// annotation: empty, or with a blank or control character anywhere (a
// --build-arg "A\nB=1" must not become an argument no ARG line can name,
// nor a label key one that breaks every line-based reader).
func badKey(key string) bool {
	return key == "" || strings.IndexFunc(key, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0
}

// CheckKeyValue checks a label or annotation KEY=VALUE before any work:
// its key is checked as a build argument's is. The error starts with the
// value, for the caller to name the flag.
func CheckKeyValue(spec string) error {
	if key, _, ok := strings.Cut(spec, "="); !ok || badKey(key) {
		return fmt.Errorf("%q: want KEY=VALUE, the key without blanks or control characters", spec)
	}
	return nil
}

// secretWords are the words of a build argument's name that say its value
// is a secret.
var secretWords = map[string]bool{
	"TOKEN": true, "TOKENS": true, "PASSWORD": true, "PASSWORDS": true, "PASSWD": true, "PASS": true,
	"SECRET": true, "SECRETS": true, "KEY": true, "KEYS": true, "APIKEY": true,
	"CREDENTIAL": true, "CREDENTIALS": true, "CREDS": true, "AUTH": true,
}

// SecretLikeArgs returns, sorted, the keys of args whose names say they
// hold a secret: one of their words (split at '_', '-', '.' and lower-to-
// upper case changes, compared case-insensitively) is TOKEN, PASSWORD,
// SECRET, KEY, CREDENTIAL or the like. GITHUB_TOKEN, npmAuthToken and
// API_KEY are; GOPROXY and KEYBOARD are not. Build argument values are
// recorded in the image's history, as Docker and buildah record them.
func SecretLikeArgs(args map[string]string) []string {
	var out []string
	for k := range args {
		for _, w := range words(k) {
			if secretWords[strings.ToUpper(w)] {
				out = append(out, k)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// words splits a name at every character that is not a letter or digit
// and where a lower-case letter is followed by an upper-case one.
func words(name string) []string {
	var out []string
	start := 0
	rs := []rune(name)
	for i, r := range rs {
		switch {
		case !unicode.IsLetter(r) && !unicode.IsDigit(r):
			out = append(out, string(rs[start:i]))
			start = i + 1
		case i > start && unicode.IsUpper(r) && unicode.IsLower(rs[i-1]):
			out = append(out, string(rs[start:i]))
			start = i
		}
	}
	return append(out, string(rs[start:]))
}

// CheckSecret validates a secret spec (id=ID,src=PATH[,type=file|env]) before
// any work starts, so a typo does not surface only at the RUN that needs it.
func CheckSecret(spec string) error {
	fields := map[string]string{}
	for _, kv := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || v == "" {
			return fmt.Errorf("%q: want id=ID,src=PATH (or id=ID,env=VAR)", spec)
		}
		fields[k] = v
	}
	if fields["id"] == "" {
		return fmt.Errorf("%q: id= is required", spec)
	}
	if v := fields["env"]; v != "" || fields["type"] == "env" {
		if v == "" {
			v = fields["src"]
		}
		if v == "" {
			v = fields["id"]
		}
		if _, ok := os.LookupEnv(v); !ok {
			return fmt.Errorf("id=%s: environment variable %s is not set", fields["id"], v)
		}
		return nil
	}
	if src := fields["src"]; src != "" {
		if _, err := os.Stat(src); err != nil {
			return fmt.Errorf("id=%s: source file: %w", fields["id"], err)
		}
	}
	return nil
}
