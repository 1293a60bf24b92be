// Package certs holds the TLS material of arcfence's own listeners (the
// HTTPS proxy listener, the admin listener): a certificate source that
// reloads its files when they change, and Init, which writes a self-signed
// CA and a server certificate for `arcfence certs init`.
package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// checkEvery is the least time between two looks at the files.
const checkEvery = time.Second

// Reloader serves a certificate and key read from PEM files, and reads them
// again when their size or modification time changes (checked at most once a
// second, on a handshake). A change that does not load keeps the previous
// pair and is logged at error level. It is safe for concurrent use.
type Reloader struct {
	certFile, keyFile string
	log               zerolog.Logger
	now               func() time.Time

	mu        sync.Mutex
	cert      *tls.Certificate
	certStamp stamp
	keyStamp  stamp
	checked   time.Time
}

// stamp is what tells that a file changed.
type stamp struct {
	size int64
	mod  time.Time
}

func stampOf(path string) (stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	return stamp{size: fi.Size(), mod: fi.ModTime()}, nil
}

// NewReloader loads certFile (the certificate chain, leaf first) and keyFile
// (its private key); an error names the file and what is wrong.
func NewReloader(certFile, keyFile string, log zerolog.Logger) (*Reloader, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("tls.cert and tls.key must both be set")
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: log, now: time.Now}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the files now. On error the previous pair stays.
func (r *Reloader) Reload() error {
	cs, err := stampOf(r.certFile)
	if err != nil {
		return fmt.Errorf("tls.cert: %w", err)
	}
	ks, err := stampOf(r.keyFile)
	if err != nil {
		return fmt.Errorf("tls.key: %w", err)
	}
	pair, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tls.cert %s and tls.key %s: %w", r.certFile, r.keyFile, err)
	}
	r.mu.Lock()
	r.cert, r.certStamp, r.keyStamp, r.checked = &pair, cs, ks, r.now()
	r.mu.Unlock()
	return nil
}

// GetCertificate returns the current pair, reloading it first when the
// files changed. It fits tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	cert := r.cert
	due := r.now().Sub(r.checked) >= checkEvery
	if due {
		r.checked = r.now()
	}
	cs0, ks0 := r.certStamp, r.keyStamp
	r.mu.Unlock()
	if !due {
		return cert, nil
	}
	cs, err1 := stampOf(r.certFile)
	ks, err2 := stampOf(r.keyFile)
	if err1 != nil || err2 != nil || (cs == cs0 && ks == ks0) {
		return cert, nil
	}
	if err := r.Reload(); err != nil {
		r.log.Error().Str("component", "certs").Str("error", err.Error()).
			Str("msg", "certificate files changed but do not load; keeping the previous pair").Send()
		// Do not try again until the files change once more.
		r.mu.Lock()
		r.certStamp, r.keyStamp = cs, ks
		r.mu.Unlock()
		return cert, nil
	}
	r.log.Info().Str("component", "certs").Str("cert", r.certFile).Str("msg", "certificate reloaded").Send()
	r.mu.Lock()
	cert = r.cert
	r.mu.Unlock()
	return cert, nil
}

// TLSConfig returns a server configuration (TLS 1.2 or later) whose
// certificate comes from r.
func (r *Reloader) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
}

// File names written by Init, inside its directory.
const (
	CACertFile     = "ca.pem"
	CAKeyFile      = "ca-key.pem"
	ServerCertFile = "server.pem"
	ServerKeyFile  = "server-key.pem"
)

// InitOptions configure Init. Zero values mean the documented defaults.
type InitOptions struct {
	// Hosts are the server certificate's names and IP addresses; empty
	// means localhost, 127.0.0.1, ::1 and the machine's host name.
	Hosts []string
	// Validity is the server certificate's lifetime; 0 means 397 days.
	// The CA lives ten years.
	Validity time.Duration
	// Force overwrites existing files; otherwise Init refuses to.
	Force bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Init writes a self-signed CA and a server certificate signed by it into
// dir (created when missing, mode 0700): ca.pem, ca-key.pem, server.pem
// (the server certificate followed by the CA) and server-key.pem. Keys are
// ECDSA P-256 in PKCS #8, written with mode 0600. It returns the paths
// written.
func Init(dir string, o InitOptions) ([]string, error) {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	if len(o.Hosts) == 0 {
		o.Hosts = []string{"localhost", "127.0.0.1", "::1"}
		if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
			o.Hosts = append(o.Hosts, h)
		}
	}
	if o.Validity <= 0 {
		o.Validity = 397 * 24 * time.Hour
	}
	paths := []string{filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile),
		filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile)}
	if !o.Force {
		for _, p := range paths {
			if _, err := os.Stat(p); err == nil {
				return nil, fmt.Errorf("%s exists; remove it or use --force to overwrite", p)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	t0 := now().Add(-5 * time.Minute)
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "arcfence local CA", Organization: []string{"arcfence"}},
		NotBefore:             t0,
		NotAfter:              t0.Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: o.Hosts[0], Organization: []string{"arcfence"}},
		NotBefore:    t0,
		NotAfter:     t0.Add(o.Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range o.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caKeyPEM, err := keyPEM(caKey)
	if err != nil {
		return nil, err
	}
	keyPEMBytes, err := keyPEM(key)
	if err != nil {
		return nil, err
	}
	var chain bytes.Buffer
	_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	contents := [][]byte{
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		caKeyPEM,
		chain.Bytes(),
		keyPEMBytes,
	}
	modes := []os.FileMode{0o644, 0o600, 0o644, 0o600}
	for i, p := range paths {
		if err := writeFile(p, contents[i], modes[i]); err != nil {
			return nil, err
		}
	}
	return paths, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n.Add(n, big.NewInt(1))
}

func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// writeFile writes data through a temporary file renamed into place, so a
// Reloader never reads half a file.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".arcfence-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(name)
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		os.Remove(name)
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(name)
		return err
	}
	return os.Rename(name, path)
}
