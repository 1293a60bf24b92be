package dnsfilter

import (
	"encoding/binary"
	"net"
	"time"

	"github.com/miekg/dns"
)

// wellFormed reports whether m is a DNS message whose sections hold what
// its header counts announce: every question and every record present and
// inside the message. miekg/dns accepts a bare 12-byte header whatever its
// counts say; such messages, like anything else that does not walk, are
// garbage and get no answer.
func wellFormed(m []byte) bool {
	if len(m) < 12 {
		return false
	}
	qd := int(binary.BigEndian.Uint16(m[4:]))
	rrs := int(binary.BigEndian.Uint16(m[6:])) + int(binary.BigEndian.Uint16(m[8:])) + int(binary.BigEndian.Uint16(m[10:]))
	off := 12
	var ok bool
	for i := 0; i < qd; i++ {
		if off, ok = skipName(m, off); !ok || off+4 > len(m) {
			return false
		}
		off += 4
	}
	for i := 0; i < rrs; i++ {
		if off, ok = skipName(m, off); !ok || off+10 > len(m) {
			return false
		}
		off += 10 + int(binary.BigEndian.Uint16(m[off+8:]))
		if off > len(m) {
			return false
		}
	}
	return true
}

// garbageDropper is the servers' DecorateReader: it reads past messages
// that are not wellFormed, so they never reach the handler and get no
// answer (an answer to garbage could be used to amplify).
type garbageDropper struct{ next dns.Reader }

func dropGarbage(r dns.Reader) dns.Reader { return garbageDropper{next: r} }

// ReadTCP implements dns.Reader.
func (g garbageDropper) ReadTCP(conn net.Conn, timeout time.Duration) ([]byte, error) {
	for {
		m, err := g.next.ReadTCP(conn, timeout)
		if err != nil || wellFormed(m) {
			return m, err
		}
	}
}

// ReadUDP implements dns.Reader.
func (g garbageDropper) ReadUDP(conn *net.UDPConn, timeout time.Duration) ([]byte, *dns.SessionUDP, error) {
	for {
		m, s, err := g.next.ReadUDP(conn, timeout)
		if err != nil || wellFormed(m) {
			return m, s, err
		}
	}
}

// ReadPacketConn implements dns.PacketConnReader.
func (g garbageDropper) ReadPacketConn(conn net.PacketConn, timeout time.Duration) ([]byte, net.Addr, error) {
	pr, ok := g.next.(dns.PacketConnReader)
	if !ok {
		return nil, nil, errNoPacketConnReader
	}
	for {
		m, a, err := pr.ReadPacketConn(conn, timeout)
		if err != nil || wellFormed(m) {
			return m, a, err
		}
	}
}
