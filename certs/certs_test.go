package certs

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func caPool(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		t.Fatal("ca.pem holds no certificate")
	}
	return p
}

// handshake serves one TLS handshake with cfg on loopback and returns the
// certificate the client saw, verified against roots for name.
func handshake(t *testing.T, cfg *tls.Config, roots *x509.CertPool, name string) *x509.Certificate {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_ = c.(*tls.Conn).Handshake()
		_ = c.Close()
	}()
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: name})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-done
	return c.ConnectionState().PeerCertificates[0]
}

func TestInitAndServe(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	paths, err := Init(dir, InitOptions{Hosts: []string{"proxy.example", "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 4 {
		t.Fatalf("paths %v", paths)
	}
	for _, f := range []string{CAKeyFile, ServerKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	r, err := NewReloader(filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	roots := caPool(t, dir)
	for _, name := range []string{"proxy.example", "127.0.0.1"} {
		if cn := handshake(t, r.TLSConfig(), roots, name).Subject.CommonName; cn != "proxy.example" {
			t.Fatalf("served %q", cn)
		}
	}
	// Init refuses to overwrite without Force.
	if _, err := Init(dir, InitOptions{}); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("overwrite without force: %v", err)
	}
}

func TestReloadOnChange(t *testing.T) {
	dir := t.TempDir()
	if _, err := Init(dir, InitOptions{Hosts: []string{"one.example"}}); err != nil {
		t.Fatal(err)
	}
	r, err := NewReloader(filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	r.now = func() time.Time { return clock }
	first, _ := r.GetCertificate(nil)

	// New files: picked up once the check interval has passed.
	if _, err := Init(dir, InitOptions{Hosts: []string{"two.example"}, Force: true}); err != nil {
		t.Fatal(err)
	}
	same, _ := r.GetCertificate(nil)
	if same != first {
		t.Fatal("reloaded before the check interval")
	}
	clock = clock.Add(2 * checkEvery)
	second, _ := r.GetCertificate(nil)
	if second == first {
		t.Fatal("changed files not reloaded")
	}
	leaf, _ := x509.ParseCertificate(second.Certificate[0])
	if leaf.Subject.CommonName != "two.example" {
		t.Fatalf("reloaded %q", leaf.Subject.CommonName)
	}

	// A broken file keeps the previous pair.
	if err := os.WriteFile(filepath.Join(dir, ServerCertFile), []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(2 * checkEvery)
	kept, err := r.GetCertificate(nil)
	if err != nil || kept != second {
		t.Fatalf("broken file: got %v, %v; want the previous pair", kept, err)
	}
}

func TestNewReloaderErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewReloader("", "", zerolog.Nop()); err == nil {
		t.Fatal("empty paths accepted")
	}
	if _, err := NewReloader(filepath.Join(dir, "missing.pem"), filepath.Join(dir, "missing-key.pem"), zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "tls.cert") {
		t.Fatalf("missing file: %v", err)
	}
}
