package testregistry

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TLSFiles are a throw-away CA and a server certificate it signed for
// 127.0.0.1 and localhost, written for a test.
type TLSFiles struct {
	// CADir holds only ca.crt: what a client's --cert-dir (buildah's
	// convention, containers/image's DockerCertPath) should point at.
	CADir string
	// CACert is CADir/ca.crt (PEM).
	CACert string
	// CertFile and KeyFile are the server's PEM certificate and key, for
	// [WithTLS]; they live outside CADir.
	CertFile, KeyFile string
	// Pool trusts the CA, for the test's own clients.
	Pool *x509.CertPool
}

// ClientConfig is a TLS client configuration trusting only the test CA.
func (f *TLSFiles) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: f.Pool, MinVersion: tls.VersionTLS12}
}

// NewTLS makes a CA (valid one day) and a server certificate for
// 127.0.0.1/localhost signed by it, in new temporary directories.
func NewTLS(t testing.TB) *TLSFiles {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mcbuild test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKeyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	f := &TLSFiles{CADir: t.TempDir(), Pool: x509.NewCertPool()}
	f.Pool.AddCert(ca)
	f.CACert = filepath.Join(f.CADir, "ca.crt")
	serverDir := t.TempDir()
	f.CertFile = filepath.Join(serverDir, "server.crt")
	f.KeyFile = filepath.Join(serverDir, "server.key")
	for _, w := range []struct {
		path, typ string
		der       []byte
	}{{f.CACert, "CERTIFICATE", caDER}, {f.CertFile, "CERTIFICATE", srvDER}, {f.KeyFile, "EC PRIVATE KEY", srvKeyDER}} {
		if err := os.WriteFile(w.path, pem.EncodeToMemory(&pem.Block{Type: w.typ, Bytes: w.der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}
