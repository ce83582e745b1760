package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"go.podman.io/image/v5/types"
	orasregistry "oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// Session is one set of registry options put to use: every oras client
// ([Session.Repository], [Session.Ping]) and every containers/image
// context ([Session.SystemContext]) of a run comes from it, so both sides
// read the same auth file, trust the same certificates and agree on TLS.
type Session struct {
	o     Options
	creds credentials
}

// NewSession validates o ([Options.Validate]) and resolves its auth file
// once, for both sides, refusing one that is malformed (an explicit
// AuthFile as an [OptionError]).
func NewSession(o Options) (*Session, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	path := o.ResolveAuthFile()
	if err := checkAuthFile(path); err != nil {
		if path == o.AuthFile {
			return nil, &OptionError{Option: "AuthFile", Err: err}
		}
		return nil, err
	}
	return &Session{o: o, creds: newCredentials(path)}, nil
}

// Options returns the options the session was made from (their retry and
// timeout settings drive [Do], [GuardStall] and [Options.Explain]).
func (s *Session) Options() Options { return s.o }

// SystemContext returns a new containers/image context with the session's
// auth file, cert dir, TLS verification (off: certificates not verified
// and plain HTTP accepted) and user agent, and blobInfoCacheDir ("": the
// default) as its blob-info cache. Callers may change it.
func (s *Session) SystemContext(blobInfoCacheDir string) *types.SystemContext {
	sys := &types.SystemContext{
		AuthFilePath:            s.creds.path,
		DockerCertPath:          s.o.CertDir,
		DockerRegistryUserAgent: s.o.UserAgent,
		BlobInfoCacheDir:        blobInfoCacheDir,
	}
	if !s.o.TLSVerify {
		sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
		sys.OCIInsecureSkipTLSVerify = true
	}
	return sys
}

// client builds the auth-decorated client for host (and the repository
// path, "" for registry-wide requests): the TLS transport, under the stall
// guard, under the one retry layer. It reports whether the host is spoken
// to over plain HTTP.
func (s *Session) client(ctx context.Context, host, path string) (*auth.Client, bool, error) {
	t, err := transport(host, s.o)
	if err != nil {
		return nil, false, err
	}
	plain, err := usePlainHTTP(ctx, host, s.o, t)
	if err != nil {
		return nil, false, describe(host, err)
	}
	rt := newRetryTransport(&stallTransport{base: t, after: s.o.requestTimeout()}, s.o)
	c := &auth.Client{
		Client:     &http.Client{Transport: rt},
		Cache:      auth.NewCache(),
		Credential: s.creds.credentialFunc(path),
	}
	if s.o.UserAgent != "" {
		c.SetUserAgent(s.o.UserAgent)
	}
	return c, plain, nil
}

// Repository returns an oras remote repository for repo ("host[:port]/path",
// no tag or digest) that uses the session's credentials and TLS settings
// and retries transient failures. Manifests pushed with a subject to a
// registry without the referrers API get the "sha256-<hex>" fallback tag
// (oras does that); the replaced fallback index is left in place rather
// than deleted (SkipReferrersGC), so registries that refuse deletes still
// work.
func (s *Session) Repository(ctx context.Context, repo string) (*remote.Repository, error) {
	ref, err := orasregistry.ParseReference(repo)
	if err != nil {
		return nil, fmt.Errorf("repository %q: %w", repo, err)
	}
	if ref.Reference != "" {
		return nil, fmt.Errorf("repository %q: give a repository without tag or digest", repo)
	}
	c, plain, err := s.client(ctx, ref.Host(), ref.Repository)
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
func (s *Session) Ping(ctx context.Context, target string) error {
	host, path, _ := strings.Cut(strings.TrimSuffix(target, "/"), "/")
	if host == "" {
		return fmt.Errorf("registry %q: give host[:port] or host[:port]/repository", target)
	}
	urlHost := orasregistry.Reference{Registry: host}.Host()
	af := s.creds
	c, plain, err := s.client(ctx, urlHost, path)
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
	return &CredentialsError{Host: host, Status: http.StatusUnauthorized, AuthFile: af.path}
}

func refused(host string, code int, af credentials) error {
	return &CredentialsError{Host: host, Status: code, AuthFile: af.path, Refused: true}
}

// describe turns a connection-level error into a message naming the
// registry; TLS failures are a [*TLSError].
func describe(host string, err error) error {
	if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return &TLSError{Host: host, Problem: PlainHTTPOnly, Err: err}
	}
	if msg := err.Error(); strings.Contains(msg, "tls: certificate required") || strings.Contains(msg, "tls: bad certificate") || strings.Contains(msg, "tls: unknown certificate authority") {
		return &TLSError{Host: host, Problem: ClientCertificateRefused, Err: err}
	}
	if isTLSTrustError(err) {
		return &TLSError{Host: host, Problem: UntrustedCertificate, Err: err}
	}
	var le *lookupError
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &le) {
		return fmt.Errorf("registry %s: %w", host, err)
	}
	return fmt.Errorf("registry %s unreachable: %w", host, err)
}
