// Package testpki gives tests a throwaway certificate authority, leaf
// certificates for any names, and a dialer that maps names to loopback
// listeners, so that code which dials Azure endpoints by name can be tested
// without leaving the machine. It is meant for tests only.
package testpki

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// CA is a test certificate authority.
type CA struct {
	// Cert is the CA certificate.
	Cert *x509.Certificate
	// Pool holds Cert alone: use it as RootCAs.
	Pool *x509.CertPool
	key  *ecdsa.PrivateKey
}

var serial struct {
	sync.Mutex
	n int64
}

func nextSerial() *big.Int {
	serial.Lock()
	defer serial.Unlock()
	serial.n++
	return big.NewInt(time.Now().UnixNano() + serial.n)
}

// NewCA returns a fresh CA valid for a day.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: "arcfence test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, Pool: pool, key: key}
}

// PEM returns the CA certificate PEM-encoded, for --ca-file style inputs.
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Leaf returns a server certificate signed by the CA for names (DNS names
// or IP literals).
func (ca *CA) Leaf(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if a, err := netip.ParseAddr(n); err == nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(a.AsSlice()))
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key}
}

// ServerConfig returns a TLS server config presenting a leaf for names.
func (ca *CA) ServerConfig(t testing.TB, names ...string) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{ca.Leaf(t, names...)}, MinVersion: tls.VersionTLS12}
}

// Dialer dials "host:port" addresses by looking them up in Map (keys
// "host:port", values loopback "ip:port"). Anything not in Map, or mapped
// to a non-loopback address, fails without touching the network.
type Dialer struct {
	mu sync.Mutex
	m  map[string]string
}

// NewDialer returns an empty Dialer.
func NewDialer() *Dialer { return &Dialer{m: map[string]string{}} }

// Map routes dials of from ("host:port") to to (a loopback "ip:port").
func (d *Dialer) Map(from, to string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m[from] = to
}

// DialContext implements the dial function of net/http and the checker.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	to, ok := d.m[addr]
	d.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("testpki: %s is not mapped to a loopback listener", addr)
	}
	ap, err := netip.ParseAddrPort(to)
	if err != nil || !ap.Addr().IsLoopback() {
		return nil, fmt.Errorf("testpki: refusing to dial non-loopback %q", to)
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, to)
}
