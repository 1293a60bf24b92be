// Command e2etool is the loopback scaffolding of arcfence's proxy
// end-to-end script (.ci/e2e-10-proxy.sh): a stub DNS server, a TLS origin
// with a websocket echo, and a websocket client that goes through a proxy.
// It listens on loopback addresses only.
//
//	e2etool dns -listen 127.0.0.1:0 -a name=127.0.0.77 ...   prints "ready ADDR"
//	e2etool origin -listen 127.0.0.77:443 -cert F -key F      prints "ready ADDR"
//	e2etool wsclient -proxy URL -url wss://... -ca F -n N     exits 0 when N echoes came back
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/miekg/dns"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func main() {
	if len(os.Args) < 2 {
		fail("usage: e2etool dns|origin|wsclient [flags]")
	}
	switch os.Args[1] {
	case "dns":
		runDNS(os.Args[2:])
	case "origin":
		runOrigin(os.Args[2:])
	case "wsclient":
		runWSClient(os.Args[2:])
	default:
		fail("unknown subcommand " + os.Args[1])
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "e2etool:", msg)
	os.Exit(1)
}

// loopback refuses any address that is not on loopback.
func loopback(addr string) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().IsLoopback() {
		fail("not a loopback host:port: " + addr)
	}
}

func runDNS(args []string) {
	fs := flag.NewFlagSet("dns", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "UDP address")
	var answers multi
	fs.Var(&answers, "a", "name=IPv4 answer, repeatable")
	_ = fs.Parse(args)
	loopback(*listen)
	table := map[string]string{}
	for _, a := range answers {
		name, ip, ok := strings.Cut(a, "=")
		if !ok {
			fail("bad -a " + a)
		}
		table[dns.Fqdn(strings.ToLower(name))] = ip
	}
	pc, err := net.ListenPacket("udp", *listen)
	if err != nil {
		fail(err.Error())
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if len(q.Question) == 1 {
			ip, ok := table[strings.ToLower(q.Question[0].Name)]
			switch {
			case !ok:
				m.Rcode = dns.RcodeNameError
			case q.Question[0].Qtype == dns.TypeA:
				rr, _ := dns.NewRR(q.Question[0].Name + " 60 IN A " + ip)
				m.Answer = append(m.Answer, rr)
			}
		}
		_ = w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: func() {
		fmt.Println("ready", pc.LocalAddr().String())
	}}
	if err := srv.ActivateAndServe(); err != nil {
		fail(err.Error())
	}
}

func runOrigin(args []string) {
	fs := flag.NewFlagSet("origin", flag.ExitOnError)
	listen := fs.String("listen", "", "TLS address")
	cert := fs.String("cert", "", "certificate chain PEM")
	key := fs.String("key", "", "key PEM")
	_ = fs.Parse(args)
	loopback(*listen)
	pair, err := tls.LoadX509KeyPair(*cert, *key)
	if err != nil {
		fail(err.Error())
	}
	up := websocket.Upgrader{}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, b, err := c.ReadMessage()
			if err != nil {
				return
			}
			if c.WriteMessage(mt, b) != nil {
				return
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from origin %s over %s\n", r.Host, r.Proto)
	})
	ln, err := tls.Listen("tcp", *listen, &tls.Config{Certificates: []tls.Certificate{pair}, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		fail(err.Error())
	}
	fmt.Println("ready", ln.Addr().String())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.Serve(ln); err != nil {
		fail(err.Error())
	}
}

func runWSClient(args []string) {
	fs := flag.NewFlagSet("wsclient", flag.ExitOnError)
	proxy := fs.String("proxy", "", "proxy URL")
	target := fs.String("url", "", "wss:// URL")
	ca := fs.String("ca", "", "CA PEM the origin's certificate chains to")
	n := fs.Int("n", 100, "messages")
	_ = fs.Parse(args)
	pu, err := url.Parse(*proxy)
	if err != nil {
		fail(err.Error())
	}
	loopback(pu.Host)
	pem, err := os.ReadFile(*ca)
	if err != nil {
		fail(err.Error())
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	d := websocket.Dialer{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: roots}, HandshakeTimeout: 10 * time.Second}
	c, _, err := d.Dial(*target, nil)
	if err != nil {
		fail(err.Error())
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for i := 0; i < *n; i++ {
		msg := fmt.Sprintf("message %d", i)
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			fail(err.Error())
		}
		_, b, err := c.ReadMessage()
		if err != nil {
			fail(err.Error())
		}
		if string(b) != msg {
			fail(fmt.Sprintf("echo %q, want %q", b, msg))
		}
	}
	fmt.Printf("websocket: %d messages echoed through the proxy\n", *n)
}
