package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.podman.io/image/v5/pkg/tlsclientconfig"
)

// transportKey identifies the TLS settings of one host.
type transportKey struct {
	host      string
	tlsVerify bool
	certDir   string
}

var (
	transports sync.Map // transportKey -> *http.Transport
	plainHTTP  sync.Map // transportKey -> bool (true: speak plain HTTP)
)

// perHostCertDirs are read, first existing wins, when Options.CertDir is
// empty (same places as containers/image).
func perHostCertDirs(host string) []string {
	var dirs []string
	if home := os.Getenv("HOME"); home != "" {
		dirs = append(dirs, filepath.Join(home, ".config", "containers", "certs.d", host))
	}
	return append(dirs,
		filepath.Join("/etc/containers/certs.d", host),
		filepath.Join("/etc/docker/certs.d", host))
}

// transport returns the (cached) HTTP transport for host with o's TLS
// settings. It neither retries nor bounds stalls; [Session.client] wraps
// it in the stall guard and the retry layer.
func transport(host string, o Options) (*http.Transport, error) {
	key := transportKey{host, o.TLSVerify, o.CertDir}
	if t, ok := transports.Load(key); ok {
		return t.(*http.Transport), nil
	}
	tlsc := &tls.Config{MinVersion: tls.VersionTLS12}
	dir := o.CertDir
	if dir == "" {
		for _, d := range perHostCertDirs(host) {
			if st, err := os.Stat(d); err == nil && st.IsDir() {
				dir = d
				break
			}
		}
	}
	if dir != "" {
		if err := tlsclientconfig.SetupCertificates(dir, tlsc); err != nil {
			return nil, fmt.Errorf("registry %s: loading certificates from %s: %w", host, dir, err)
		}
	}
	if !o.TLSVerify {
		tlsc.InsecureSkipVerify = true
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       tlsc,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   16,
		ForceAttemptHTTP2:     true,
	}
	actual, _ := transports.LoadOrStore(key, t)
	return actual.(*http.Transport), nil
}

// usePlainHTTP decides, once per host and settings, whether host is spoken to
// over plain HTTP. With TLSVerify it never is. Otherwise https://host/v2/ is
// probed; when that fails at the connection level and http://host/v2/
// answers, plain HTTP is used. Only conclusive answers are cached.
func usePlainHTTP(ctx context.Context, host string, o Options, t *http.Transport) (bool, error) {
	if o.TLSVerify {
		return false, nil
	}
	key := transportKey{host, o.TLSVerify, o.CertDir}
	if v, ok := plainHTTP.Load(key); ok {
		return v.(bool), nil
	}
	client := &http.Client{
		Transport: t,
		Timeout:   30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	probe := func(scheme string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+host+"/v2/", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	httpsErr := probe("https")
	if httpsErr == nil {
		plainHTTP.Store(key, false)
		return false, nil
	}
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err := probe("http"); err == nil {
		plainHTTP.Store(key, true)
		return true, nil
	}
	return false, httpsErr
}

// isTLSTrustError reports whether err is a certificate verification failure.
func isTLSTrustError(err error) bool {
	var (
		cv  *tls.CertificateVerificationError
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		uae *x509.UnknownAuthorityError
	)
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &uae) ||
		errors.As(err, &he) || errors.As(err, &ci)
}
