package registry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
)

// authFile is the part of a containers auth.json / Docker config.json that
// mcbuild reads.
type authFile struct {
	path        string
	auths       map[string]authEntry
	credHelpers map[string]string
	credsStore  string
}

type authEntry struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
}

// loadAuthFile reads path; a missing file gives an empty set of credentials
// (only an explicit --authfile must exist, see Options.Validate). Errors never
// quote the file's content.
func loadAuthFile(path string) (*authFile, error) {
	af := &authFile{path: path}
	if path == "" {
		return af, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return af, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading auth file %s: %w", path, err)
	}
	if strings.TrimSpace(string(data)) == "" {
		return af, nil
	}
	var raw struct {
		Auths       map[string]authEntry `json:"auths"`
		CredHelpers map[string]string    `json:"credHelpers"`
		CredsStore  string               `json:"credsStore"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("auth file %s is not valid JSON (at byte %d)", path, se.Offset)
		}
		return nil, fmt.Errorf("auth file %s has an unexpected layout (want {\"auths\": {...}})", path)
	}
	af.auths = raw.Auths
	af.credHelpers = raw.CredHelpers
	af.credsStore = raw.CredsStore
	return af, nil
}

// normalizeKey turns an auths key into the form "host[/path]" used for
// matching. Legacy keys with a scheme ("https://index.docker.io/v1/") only
// name a host.
func normalizeKey(key string) string {
	if k, ok := strings.CutPrefix(key, "https://"); ok {
		key, _, _ = strings.Cut(k, "/")
	} else if k, ok := strings.CutPrefix(key, "http://"); ok {
		key, _, _ = strings.Cut(k, "/")
	}
	key = strings.TrimSuffix(key, "/")
	return normalizeHost(key)
}

// normalizeHost maps Docker Hub's aliases to "docker.io" (the host part only).
func normalizeHost(s string) string {
	host, rest, hasRest := strings.Cut(s, "/")
	switch host {
	case "index.docker.io", "registry-1.docker.io":
		host = "docker.io"
	}
	if hasRest {
		return host + "/" + rest
	}
	return host
}

// lookup returns the credential of the most specific entry matching
// host/path: "host/a/b", then "host/a", then "host". ok is false when no
// entry of "auths" matches.
func (af *authFile) lookup(host, path string) (auth.Credential, bool, error) {
	if len(af.auths) == 0 {
		return auth.EmptyCredential, false, nil
	}
	byKey := map[string]authEntry{}
	for k, v := range af.auths {
		n := normalizeKey(k)
		// An exact (scheme-less) key wins over a legacy one that normalizes
		// to the same value.
		if _, dup := byKey[n]; dup && strings.Contains(k, "://") {
			continue
		}
		byKey[n] = v
	}
	name := normalizeHost(host)
	if path != "" {
		name += "/" + path
	}
	for {
		if e, ok := byKey[name]; ok {
			c, err := e.credential()
			if err != nil {
				return auth.EmptyCredential, false, fmt.Errorf("auth file %s: entry for %s: %w", af.path, name, err)
			}
			return c, true, nil
		}
		i := strings.LastIndex(name, "/")
		if i < 0 {
			return auth.EmptyCredential, false, nil
		}
		name = name[:i]
	}
}

func (e authEntry) credential() (auth.Credential, error) {
	c := auth.Credential{
		Username:     e.Username,
		Password:     e.Password,
		RefreshToken: e.IdentityToken,
		AccessToken:  e.RegistryToken,
	}
	if e.Auth != "" {
		dec, err := base64.StdEncoding.DecodeString(e.Auth)
		if err != nil {
			return auth.EmptyCredential, errors.New(`"auth" is not valid base64`)
		}
		user, pass, ok := strings.Cut(string(dec), ":")
		if !ok {
			return auth.EmptyCredential, errors.New(`"auth" is not base64 of "user:password"`)
		}
		c.Username, c.Password = user, pass
	}
	return c, nil
}

// credentialFunc returns the oras credential function for one repository
// (path may be "" for registry-wide access such as Ping).
func (af *authFile) credentialFunc(path string) auth.CredentialFunc {
	return func(ctx context.Context, hostport string) (auth.Credential, error) {
		c, ok, err := af.lookup(hostport, path)
		if err != nil || ok {
			return c, err
		}
		host := normalizeHost(hostport)
		if af.credHelpers[host] == "" && af.credHelpers[hostport] == "" && af.credsStore == "" {
			return auth.EmptyCredential, nil
		}
		// A credential helper or store is configured: let oras run it.
		store, err := credentials.NewStore(af.path, credentials.StoreOptions{})
		if err != nil {
			return auth.EmptyCredential, fmt.Errorf("auth file %s: %w", af.path, err)
		}
		c, err = store.Get(ctx, credentials.ServerAddressFromHostname(hostport))
		if err != nil {
			return auth.EmptyCredential, fmt.Errorf("credential helper for %s (from %s): %w", hostport, af.path, err)
		}
		return c, nil
	}
}

// hasCredential reports whether any credential is configured for host/path.
func (af *authFile) hasCredential(ctx context.Context, host, path string) bool {
	c, err := af.credentialFunc(path)(ctx, host)
	return err == nil && c != auth.EmptyCredential
}
