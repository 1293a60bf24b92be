// Command e2estub is the loopback world of .ci/e2e-40-learn.sh: a DNS server
// that answers every A query with 127.0.0.1, and an HTTPS origin (a
// throw-away self-signed certificate) that answers every request with its
// Host. It listens on ephemeral 127.0.0.1 ports, and on 127.0.0.1:443 too
// when -443 is set and that port can be bound, writes the ports (and, with
// -free, a few free ports for the script's own listeners) as shell
// assignments to -out, and runs until SIGINT or SIGTERM.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

func main() {
	out := flag.String("out", "", "file to write DNS_ADDR=, ORIGIN_PORT= and ORIGIN_443= to")
	want443 := flag.Bool("443", false, "also listen on 127.0.0.1:443 when possible")
	free := flag.Int("free", 0, "also write FREE_PORT_1..N: ports free on 127.0.0.1 (bound and released)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	tcp, err := net.Listen("tcp", udp.LocalAddr().String())
	if err != nil {
		log.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, qq := range q.Question {
			if qq.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		_ = w.WriteMsg(m)
	})
	us := &dns.Server{PacketConn: udp, Handler: h}
	ts := &dns.Server{Listener: tcp, Handler: h}
	go func() { _ = us.ActivateAndServe() }()
	go func() { _ = ts.ActivateAndServe() }()

	cert := selfSigned()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from origin %s\n", r.Host)
		}),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 10 * time.Second,
	}
	origin, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = srv.ServeTLS(origin, "", "") }()
	has443 := 0
	if *want443 {
		if ln, err := net.Listen("tcp", "127.0.0.1:443"); err == nil {
			has443 = 1
			go func() { _ = srv.ServeTLS(ln, "", "") }()
		} else {
			log.Printf("e2estub: no 127.0.0.1:443 (%v); the catalog part is skipped", err)
		}
	}
	vars := fmt.Sprintf("DNS_ADDR=%s\nORIGIN_PORT=%d\nORIGIN_443=%d\n",
		udp.LocalAddr(), origin.Addr().(*net.TCPAddr).Port, has443)
	var held []net.Listener
	for i := range *free {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		held = append(held, ln)
		vars += fmt.Sprintf("FREE_PORT_%d=%d\n", i+1, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range held {
		_ = ln.Close()
	}
	if err := os.WriteFile(*out+".tmp", []byte(vars), 0o644); err != nil {
		log.Fatal(err)
	}
	if err := os.Rename(*out+".tmp", *out); err != nil {
		log.Fatal(err)
	}
	<-ctx.Done()
	_ = us.Shutdown()
	_ = ts.Shutdown()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
}

func selfSigned() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "e2estub"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{"*"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		log.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
