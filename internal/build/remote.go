package build

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/openshift/imagebuilder"
	"github.com/openshift/imagebuilder/dockerfile/parser"
)

// remoteSource matches an ADD source that buildah fetches over the network
// itself (in this process, not in a RUN step): a URL (http, https, git,
// ssh, ...) or a git repository in scp form (git@host:path).
var remoteSource = regexp.MustCompile(`(?i)^([a-z][a-z0-9+.-]*://|[a-z0-9._-]+@[^/:]+:)`)

// checkNoRemoteSources refuses, for a --network none build, an ADD whose
// source is a URL or a git repository: mcbuild fetches those itself (as it
// pulls base images), so such a build would not be hermetic. Variables in a
// source are expanded as buildah would, from the build arguments, the
// file's ARG defaults and ENV values seen before it; an undefined one
// expands to nothing. The error names the instruction and its line.
func checkNoRemoteSources(containerfile string, args map[string]string) error {
	node, err := imagebuilder.ParseFile(containerfile)
	if err != nil {
		return fmt.Errorf("containerfile %s: %w", containerfile, err)
	}
	vars := map[string]string{}
	for _, n := range node.Children {
		switch strings.ToLower(n.Value) {
		case "arg":
			for a := n.Next; a != nil; a = a.Next {
				// ARG NAME in a stage takes the global default.
				if k, v, ok := strings.Cut(a.Value, "="); ok || vars[k] == "" {
					vars[k] = v
				}
			}
		case "env":
			for a := n.Next; a != nil && a.Next != nil; a = a.Next.Next {
				vars[a.Value] = a.Next.Value
			}
		case "add":
			if src := remoteAdd(n, vars, args); src != "" {
				return fmt.Errorf("containerfile %s line %d: %s: --network none builds without network, but this source (%q) would be fetched from the network by mcbuild itself; fetch it before the build and COPY it", containerfile, n.StartLine, strings.TrimSpace(n.Original), src)
			}
		}
	}
	return nil
}

// remoteAdd returns the first source of the ADD instruction n that is
// remote once expanded, or "".
func remoteAdd(n *parser.Node, vars, args map[string]string) string {
	env := make([]string, 0, len(vars)+len(args))
	for k, v := range args { // build arguments win: the first entry counts
		env = append(env, k+"="+v)
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	var words []string
	for a := n.Next; a != nil; a = a.Next {
		words = append(words, a.Value)
	}
	if len(words) < 2 {
		return ""
	}
	for _, w := range words[:len(words)-1] { // the last is the destination
		expanded, err := imagebuilder.ProcessWord(w, env)
		if err != nil {
			expanded = w
		}
		for _, s := range []string{w, expanded} {
			if remoteSource.MatchString(strings.TrimSpace(s)) {
				return s
			}
		}
	}
	return ""
}
