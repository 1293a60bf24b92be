package dnsfilter

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// UDP multiplexing to one upstream: a few connected sockets, each with a
// reader goroutine that hands answers to the waiting query by message ID.
// Opening a socket per query costs more than the rest of the forwarding
// path together; reusing one for ever would fix the source port an
// off-path spoofer has to guess. So each socket serves muxUses queries and
// is then replaced by a fresh one (new random port), and IDs are random.
const (
	muxSockets    = 4    // sockets in use per upstream
	muxUses       = 512  // queries per socket before it is replaced
	muxMaxPending = 4096 // queries in flight per socket
)

var (
	errMuxClosed = errors.New("upstream connections closed")
	errMuxBusy   = errors.New("too many queries in flight to the upstream")
)

type udpMux struct {
	addr *net.UDPAddr

	mu     sync.Mutex
	socks  [muxSockets]*muxSock
	all    map[*muxSock]struct{} // every open socket, retired ones included
	next   int
	closed bool
	wg     sync.WaitGroup // readers
}

// waiter is a query in flight: its question section (to check answers
// against) and where its answer goes.
type waiter struct {
	qsec []byte
	ch   chan []byte
}

type muxSock struct {
	conn    *net.UDPConn
	mu      sync.Mutex
	pending map[uint16]waiter
	uses    int
	retired bool
	closed  bool
}

func newUDPMux(addr *net.UDPAddr) *udpMux {
	return &udpMux{addr: addr, all: make(map[*muxSock]struct{})}
}

// register picks a socket and a free random ID for one query. The ID is
// registered under m.mu, so a socket is never retired (and closed) between
// being picked and holding the query.
func (m *udpMux) register(qsec []byte) (*muxSock, uint16, chan []byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, 0, nil, errMuxClosed
	}
	i := m.next
	m.next = (m.next + 1) % muxSockets
	s := m.socks[i]
	if s == nil || s.uses >= muxUses {
		ns, err := m.open()
		if err != nil {
			return nil, 0, nil, err
		}
		if s != nil {
			s.retire()
		}
		m.socks[i] = ns
		s = ns
	}
	s.uses++
	ch := make(chan []byte, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) >= muxMaxPending {
		return nil, 0, nil, errMuxBusy
	}
	for try := 0; try < 64; try++ {
		id := uint16(rand.Uint32())
		if _, taken := s.pending[id]; !taken {
			s.pending[id] = waiter{qsec: qsec, ch: ch}
			return s, id, ch, nil
		}
	}
	return nil, 0, nil, errMuxBusy
}

// open dials a new socket and starts its reader. m.mu is held.
func (m *udpMux) open() (*muxSock, error) {
	conn, err := net.DialUDP("udp", nil, m.addr)
	if err != nil {
		return nil, err
	}
	s := &muxSock{conn: conn, pending: make(map[uint16]waiter)}
	m.all[s] = struct{}{}
	m.wg.Add(1)
	go m.read(s)
	return s, nil
}

// retire stops new queries on s; it closes once its last answer arrived or
// the queries in flight timed out (the reader's deadline).
func (s *muxSock) retire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retired = true
	if len(s.pending) == 0 {
		s.closeLocked()
		return
	}
	s.conn.SetReadDeadline(time.Now().Add(DefaultQueryTimeout))
}

func (s *muxSock) closeLocked() {
	if !s.closed {
		s.closed = true
		s.conn.Close()
	}
}

// read delivers answers to the waiting queries until the socket closes.
func (m *udpMux) read(s *muxSock) {
	defer m.wg.Done()
	defer func() {
		m.mu.Lock()
		delete(m.all, s)
		m.mu.Unlock()
	}()
	buf := make([]byte, 4096)
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			s.mu.Lock()
			s.closeLocked()
			s.mu.Unlock()
			return
		}
		if n < 12 || buf[2]&0x80 == 0 { // too short, or not a response
			continue
		}
		id := binary.BigEndian.Uint16(buf)
		// Only an answer to the pending query's question is delivered: a
		// stray or forged datagram with the right ID but another question
		// is dropped and the query keeps waiting for the real answer.
		var b []byte
		s.mu.Lock()
		w, ok := s.pending[id]
		if ok && answers(buf[:n], id, w.qsec) {
			delete(s.pending, id)
			b = append([]byte(nil), buf[:n]...)
		}
		done := s.retired && len(s.pending) == 0
		s.mu.Unlock()
		if b != nil {
			w.ch <- b
		}
		if done {
			s.mu.Lock()
			s.closeLocked()
			s.mu.Unlock()
			return
		}
	}
}

// forget drops a query that timed out.
func (s *muxSock) forget(id uint16) {
	s.mu.Lock()
	delete(s.pending, id)
	if s.retired && len(s.pending) == 0 {
		s.closeLocked()
	}
	s.mu.Unlock()
}

// close closes every socket and waits for the readers.
func (m *udpMux) close() {
	m.mu.Lock()
	m.closed = true
	for s := range m.all {
		s.mu.Lock()
		s.closeLocked()
		s.mu.Unlock()
	}
	m.mu.Unlock()
	m.wg.Wait()
}

// exchange sends the query wire (its ID replaced by a free random one) and
// waits for the answer until deadline or ctx is done. Datagrams with the ID
// but not the question qsec are strays or spoofing attempts and are
// dropped by the reader. The answer is returned as received. qsec must stay
// unchanged until exchange returns.
func (m *udpMux) exchange(ctx context.Context, wire, qsec []byte, deadline time.Time) ([]byte, error) {
	s, id, ch, err := m.register(qsec)
	if err != nil {
		return nil, err
	}
	binary.BigEndian.PutUint16(wire, id)
	if _, err := s.conn.Write(wire); err != nil {
		s.forget(id)
		return nil, err
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	var b []byte
	select {
	case b = <-ch:
	case <-timer.C:
		s.forget(id)
		return nil, errTimeout
	case <-ctx.Done():
		s.forget(id)
		return nil, errTimeout
	}
	return b, nil
}
