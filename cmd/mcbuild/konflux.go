package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/mcbuild/mcbuild/internal/build"
	"github.com/mcbuild/mcbuild/internal/choice"
)

// The flags Konflux's buildah task has a parameter for (README, "Coming
// from Konflux's buildah task").
func (f *buildFlags) registerKonflux(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.env, "env", nil, "environment variable KEY=VALUE set at the start of every stage, as buildah's --env: RUN steps see it and the image's config keeps it (KEY alone takes it from the environment); repeatable")
	fl.StringVar(&f.network, "network", string(build.NetworkHost), "network of RUN steps: host (the host's network namespace) or none (only loopback, for hermetic builds; base images are still pulled, an ADD of a URL is refused)")
	fl.BoolVar(&f.skipUnusedStages, "skip-unused-stages", true, "skip the stages the target does not depend on (buildah's default); false builds every stage")
	fl.StringVar(&f.httpProxy, "http-proxy", "", "proxy for mcbuild's own requests (base images, push) and, as HTTP_PROXY and HTTPS_PROXY, for RUN steps")
	fl.StringVar(&f.noProxy, "no-proxy", "", "comma-separated hosts and domains that bypass the proxy (NO_PROXY), for mcbuild and RUN steps")
	fl.StringVar(&f.provenance.SourceURL, "source-url", "", "where the source comes from: label and annotation "+build.LabelSource)
	fl.StringVar(&f.provenance.Revision, "revision", "", "the source's revision (commit): label and annotation "+build.LabelRevision)
	fl.StringVar(&f.provenance.ExpiresAfter, "expires-after", "", "label "+build.LabelExpiresAfter+": quay.io deletes the tag of an image carrying it that long after the push (1h, 2d, 3w; units s, m, h, d, w)")
	fl.BoolVar(&f.provenance.Konflux, "konflux-labels", false, "also add the labels Konflux's buildah task adds: "+build.LabelCreated+" (also an annotation), build-date, architecture, and with --source-url/--revision vcs-url, vcs-ref, vcs-type")
}

// konfluxOptions puts those flags into o, checked.
func (f *buildFlags) konfluxOptions(o *build.Options) error {
	env, err := build.ParseEnv(f.env, os.LookupEnv)
	if err != nil {
		return fmt.Errorf("--env %w", err)
	}
	for _, p := range []struct{ flag, value string }{{"--http-proxy", f.httpProxy}, {"--no-proxy", f.noProxy}} {
		if err := checkProxy(p.value, p.flag == "--no-proxy"); err != nil {
			return fmt.Errorf("%s %w", p.flag, err)
		}
	}
	o.Env, o.Network, o.BuildUnusedStages = env, build.Network(f.network), !f.skipUnusedStages
	o.ProxyToRun = f.httpProxy != "" || f.noProxy != ""
	o.Provenance = f.provenance
	o.Provenance.Created = time.Now().UTC() // one build time for every platform
	return nil
}

// provenanceFlags are the flags that set each build.Provenance field.
var provenanceFlags = map[string]string{
	"SourceURL":    "--source-url",
	"Revision":     "--revision",
	"ExpiresAfter": "--expires-after",
}

// choiceFlags are the flags of the build options checked against a list.
var choiceFlags = map[string]string{"isolation": "--isolation", "network": "--network"}

// optionFlag puts the flag that set a bad build option in front of err.
func optionFlag(err error) error {
	var inv *choice.Invalid
	if errors.As(err, &inv) && choiceFlags[inv.What] != "" {
		return flagError(choiceFlags[inv.What], err)
	}
	var fe *build.FieldError
	if errors.As(err, &fe) && provenanceFlags[fe.Field] != "" {
		return fmt.Errorf("%s %w", provenanceFlags[fe.Field], err)
	}
	return err
}

// checkProxy checks a --http-proxy URL (as Go's HTTP_PROXY reads it: a
// URL, or host:port for plain HTTP) or a --no-proxy list. A proxy's
// password is never printed.
func checkProxy(v string, list bool) error {
	if strings.IndexFunc(v, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return fmt.Errorf("%q: blanks and control characters are not allowed", redactURL(v))
	}
	if v == "" || list {
		return nil
	}
	u, err := url.Parse(v)
	if err != nil || u.Host == "" {
		u, err = url.Parse("http://" + v)
	}
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q: want a proxy URL, e.g. http://proxy.example:3128", redactURL(v))
	}
	switch u.Scheme {
	case "http", "https", "socks5", "socks5h":
		return nil
	}
	return fmt.Errorf("%q: scheme %q: want http, https, socks5 or socks5h", u.Redacted(), u.Scheme)
}

// redactURL hides the password of a URL that parses as one.
func redactURL(v string) string {
	if u, err := url.Parse(v); err == nil && u.User != nil {
		return u.Redacted()
	}
	return v
}

// proxyEnv sets the environment variables Go's HTTP clients (mcbuild's
// registry session, containers/image's pulls, buildah's ADD) and RUN steps
// read, before the first request: Go reads them once.
func (f *buildFlags) proxyEnv() {
	set := func(v string, names ...string) {
		if v == "" {
			return
		}
		for _, n := range names {
			_ = os.Setenv(n, v)
		}
	}
	set(f.httpProxy, "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy")
	set(f.noProxy, "NO_PROXY", "no_proxy")
}
