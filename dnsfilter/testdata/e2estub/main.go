// Command e2estub is the loopback world of .ci/e2e-20-dns.sh: a miekg/dns
// server on one ephemeral 127.0.0.1 port (UDP and TCP) that answers A
// queries with 203.0.113.10 (TTL 60), loop.<anything> with 127.0.0.1,
// big.<anything> with 120 A records (truncated over UDP); and a TCP echo
// server on another ephemeral port. It writes STUB_ADDR=, ECHO_PORT= (and,
// with -free N, FREE_PORT_1..N: ports that were free on 127.0.0.1 for both
// UDP and TCP) as shell assignments to -out, and runs until SIGINT,
// SIGTERM or -maxlife.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

func main() {
	out := flag.String("out", "", "file to write STUB_ADDR= and FREE_PORT_n= to")
	free := flag.Int("free", 0, "number of free loopback ports to report")
	maxLife := flag.Duration("maxlife", 10*time.Minute, "exit after this long (bound)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *maxLife)
	defer cancel()

	pc, ln := listenPair()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.RecursionAvailable = true
		qs := q.Question[0]
		if qs.Qtype == dns.TypeA {
			n := 1
			if strings.HasPrefix(strings.ToLower(qs.Name), "big.") {
				n = 120
			}
			for i := 0; i < n; i++ {
				ip := net.IPv4(203, 0, 113, 10)
				if strings.HasPrefix(strings.ToLower(qs.Name), "loop.") {
					ip = net.IPv4(127, 0, 0, 1)
				}
				if n > 1 {
					ip = net.IPv4(10, 0, byte(i/250), byte(i%250+1))
				}
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: qs.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: ip})
			}
		}
		if _, ok := w.LocalAddr().(*net.UDPAddr); ok {
			size := dns.MinMsgSize
			if o := q.IsEdns0(); o != nil {
				size = int(o.UDPSize())
			}
			m.Truncate(size)
		}
		w.WriteMsg(m)
	})
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	udp := &dns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: notify}
	tcp := &dns.Server{Listener: ln, Handler: h, NotifyStartedFunc: notify}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	for i := 0; i < 2; i++ {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			log.Fatal("stub did not start")
		}
	}

	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				io.Copy(c, c)
			}()
		}
	}()

	var b strings.Builder
	fmt.Fprintf(&b, "STUB_ADDR=%s\n", pc.LocalAddr())
	fmt.Fprintf(&b, "ECHO_PORT=%d\n", echo.Addr().(*net.TCPAddr).Port)
	// Hold the free ports until all are picked (so they differ), then
	// release them before the file is written.
	var held []func() error
	for i := 1; i <= *free; i++ {
		p, l := listenPair()
		fmt.Fprintf(&b, "FREE_PORT_%d=%d\n", i, p.LocalAddr().(*net.UDPAddr).Port)
		held = append(held, p.Close, l.Close)
	}
	for _, c := range held {
		c()
	}
	if err := os.WriteFile(*out+".tmp", []byte(b.String()), 0o644); err != nil {
		log.Fatal(err)
	}
	if err := os.Rename(*out+".tmp", *out); err != nil {
		log.Fatal(err)
	}
	<-ctx.Done()
	udp.Shutdown()
	tcp.Shutdown()
}

// listenPair binds UDP and TCP on one ephemeral loopback port.
func listenPair() (net.PacketConn, net.Listener) {
	for try := 0; try < 20; try++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln
		}
		pc.Close()
	}
	log.Fatal("no loopback port free for both UDP and TCP")
	return nil, nil
}
