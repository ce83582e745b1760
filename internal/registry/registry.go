package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	orasregistry "oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// client builds the auth-decorated, retrying client for host (and the
// repository path, "" for registry-wide requests) and reports whether the
// host is spoken to over plain HTTP.
func client(ctx context.Context, host, path string, o Options) (*auth.Client, credentials, bool, error) {
	af := newCredentials(o.ResolveAuthFile())
	if err := o.Validate(); err != nil {
		return nil, af, false, err
	}
	t, err := transport(host, o)
	if err != nil {
		return nil, af, false, err
	}
	plain, err := usePlainHTTP(ctx, host, o, t)
	if err != nil {
		return nil, af, false, describe(host, err)
	}
	c := &auth.Client{
		Client:     &http.Client{Transport: retryTransport(t, o)},
		Cache:      auth.NewCache(),
		Credential: af.credentialFunc(path),
	}
	if o.UserAgent != "" {
		c.SetUserAgent(o.UserAgent)
	}
	return c, af, plain, nil
}

// Repository returns an oras remote repository for repo ("host[:port]/path",
// no tag or digest) that uses o's credentials and TLS settings and retries
// transient failures. Manifests pushed with a subject to a registry without
// the referrers API get the "sha256-<hex>" fallback tag (oras does that);
// the replaced fallback index is left in place rather than deleted
// (SkipReferrersGC), so registries that refuse deletes still work.
func Repository(ctx context.Context, repo string, o Options) (*remote.Repository, error) {
	ref, err := orasregistry.ParseReference(repo)
	if err != nil {
		return nil, fmt.Errorf("repository %q: %w", repo, err)
	}
	if ref.Reference != "" {
		return nil, fmt.Errorf("repository %q: give a repository without tag or digest", repo)
	}
	c, _, plain, err := client(ctx, ref.Host(), ref.Repository, o)
	if err != nil {
		return nil, err
	}
	return &remote.Repository{
		Reference:       ref,
		Client:          c,
		PlainHTTP:       plain,
		SkipReferrersGC: true,
	}, nil
}

// Ping checks, before any build work, that the registry of target
// ("host[:port]" or "host[:port]/repository") answers the registry API (GET
// /v2/) and accepts the credentials configured for target: a repository's
// own auth entry counts, as it will for the push. Its errors name the
// registry and never contain a secret.
func Ping(ctx context.Context, target string, o Options) error {
	host, path, _ := strings.Cut(strings.TrimSuffix(target, "/"), "/")
	if host == "" {
		return fmt.Errorf("registry %q: give host[:port] or host[:port]/repository", target)
	}
	urlHost := orasregistry.Reference{Registry: host}.Host()
	c, af, plain, err := client(ctx, urlHost, path, o)
	if err != nil {
		return err
	}
	scheme := "https"
	if plain {
		scheme = "http"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+urlHost+"/v2/", nil)
	if err != nil {
		return fmt.Errorf("registry %s: %w", host, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		var er *errcode.ErrorResponse
		switch {
		case errors.Is(err, auth.ErrBasicCredentialNotFound):
			return noCredentials(host, af)
		case errors.As(err, &er) && (er.StatusCode == http.StatusUnauthorized || er.StatusCode == http.StatusForbidden):
			// The token service refused the credentials.
			if !af.has(urlHost, path) {
				return noCredentials(host, af)
			}
			return refused(host, er.StatusCode, af)
		}
		return describe(host, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		if !af.has(urlHost, path) {
			return noCredentials(host, af)
		}
		return refused(host, resp.StatusCode, af)
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("registry %s does not serve the registry API: GET %s://%s/v2/ answered 404", host, scheme, urlHost)
	default:
		return fmt.Errorf("registry %s: GET %s://%s/v2/ answered %s", host, scheme, urlHost, resp.Status)
	}
}

func noCredentials(host string, af credentials) error {
	return fmt.Errorf("registry %s requires authentication (401) and there are no credentials for it in %s", host, af.where())
}

func refused(host string, code int, af credentials) error {
	return fmt.Errorf("registry %s: credentials refused (%d); check the entry for it in %s", host, code, af.where())
}

// describe turns a connection-level error into a message naming the registry.
func describe(host string, err error) error {
	if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return fmt.Errorf("registry %s speaks plain HTTP, not HTTPS: use --tls-verify=false for it (%v)", host, err)
	}
	if msg := err.Error(); strings.Contains(msg, "tls: certificate required") || strings.Contains(msg, "tls: bad certificate") || strings.Contains(msg, "tls: unknown certificate authority") {
		return fmt.Errorf("registry %s refused our TLS client certificate (none or not trusted): put a *.cert/*.key pair in --cert-dir (%v)", host, err)
	}
	if isTLSTrustError(err) {
		return fmt.Errorf("registry %s: TLS certificate not trusted: use --cert-dir or --tls-verify=false (%v)", host, err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("registry %s: %w", host, err)
	}
	return fmt.Errorf("registry %s unreachable: %w", host, err)
}
