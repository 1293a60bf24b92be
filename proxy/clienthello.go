package proxy

// TLS ClientHello inspection for the SNI check (RFC 8446 section 4.1.2,
// RFC 6066 section 3). The parser works on the bytes a tunnel's client sent
// first, which may hold the ClientHello split across several TLS records and
// arrive in several TCP segments; it never allocates.

const (
	recordTypeHandshake  = 0x16
	handshakeClientHello = 0x01
	extServerName        = 0x0000
	sniHostName          = 0x00
	recordHeaderLen      = 5
	// maxHelloBytes bounds the bytes buffered for one ClientHello (records
	// included). Real ClientHellos, post-quantum key shares included, are a
	// few KiB; anything larger is refused as not-tls rather than buffered.
	maxHelloBytes = 32 << 10
)

// helloStatus is the outcome of inspecting a tunnel's first bytes.
type helloStatus uint8

const (
	// helloNeedMore: the bytes are a plausible, incomplete ClientHello.
	helloNeedMore helloStatus = iota
	// helloOK: a complete ClientHello; sni holds its server name or is empty.
	helloOK
	// helloNotTLS: the bytes are not a TLS handshake starting with a ClientHello.
	helloNotTLS
)

// parseClientHello inspects b, the first bytes a client sent in a tunnel.
// On helloOK, sni is the host_name of the server_name extension (a sub-slice
// of b, nil when the extension is absent).
func parseClientHello(b []byte) (sni []byte, st helloStatus) {
	if len(b) == 0 {
		return nil, helloNeedMore
	}
	if b[0] != recordTypeHandshake {
		return nil, helloNotTLS
	}
	// Reassemble the handshake message from consecutive handshake records
	// without copying: walk the records and collect the message length first.
	var (
		msgLen  = -1 // handshake body length, once known
		have    int  // handshake bytes seen so far
		hdr     [4]byte
		hdrHave int
		off     int
	)
	// First pass: learn the message length and whether it is all here.
	for {
		if len(b)-off < recordHeaderLen {
			if !plausibleRecordPrefix(b[off:]) {
				return nil, helloNotTLS
			}
			return nil, helloNeedMore
		}
		if b[off] != recordTypeHandshake || b[off+1] != 0x03 || b[off+2] > 0x04 {
			return nil, helloNotTLS
		}
		rlen := int(b[off+3])<<8 | int(b[off+4])
		if rlen == 0 || rlen > 1<<14+256 {
			return nil, helloNotTLS
		}
		body := b[off+recordHeaderLen:]
		complete := len(body) >= rlen
		if complete {
			body = body[:rlen]
		}
		for _, c := range body {
			if hdrHave < 4 {
				hdr[hdrHave] = c
				hdrHave++
				if hdrHave == 4 {
					if hdr[0] != handshakeClientHello {
						return nil, helloNotTLS
					}
					msgLen = int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])
					if msgLen+4+recordHeaderLen > maxHelloBytes {
						return nil, helloNotTLS
					}
				}
				continue
			}
			have++
			if have >= msgLen {
				break
			}
		}
		if hdrHave == 4 && have >= msgLen {
			break
		}
		if !complete {
			return nil, helloNeedMore
		}
		off += recordHeaderLen + rlen
		if off > maxHelloBytes {
			return nil, helloNotTLS
		}
	}
	// The message is complete. When it fits in the first record (the usual
	// case) parse it in place; otherwise it is spread over records and is
	// parsed through a record-skipping reader.
	first := int(b[3])<<8 | int(b[4])
	if 4+msgLen <= first {
		return parseHelloBody(b[recordHeaderLen+4 : recordHeaderLen+4+msgLen])
	}
	r := recordReader{b: b}
	r.skip(4)
	return parseHelloSpread(&r, msgLen)
}

// plausibleRecordPrefix reports whether p (shorter than a record header)
// can start a TLS handshake record.
func plausibleRecordPrefix(p []byte) bool {
	if len(p) > 0 && p[0] != recordTypeHandshake {
		return false
	}
	if len(p) > 1 && p[1] != 0x03 {
		return false
	}
	if len(p) > 2 && p[2] > 0x04 {
		return false
	}
	return true
}

// parseHelloBody parses a ClientHello body held in one contiguous slice.
func parseHelloBody(m []byte) ([]byte, helloStatus) {
	r := recordReader{flat: m}
	return parseHelloSpread(&r, len(m))
}

// recordReader reads handshake bytes either from a flat slice or from a
// sequence of TLS records, skipping their headers. Server names longer than
// one record fragment cannot occur (a name is at most 255 bytes) except at a
// record boundary, where sub reports failure and the hello counts as not-tls.
type recordReader struct {
	flat []byte // contiguous handshake bytes, when set
	b    []byte // records, when flat is nil
	off  int    // offset in b of the next unread byte
	left int    // bytes left in the current record
	bad  bool
}

func (r *recordReader) next() (byte, bool) {
	if r.flat != nil {
		if len(r.flat) == 0 {
			r.bad = true
			return 0, false
		}
		c := r.flat[0]
		r.flat = r.flat[1:]
		return c, true
	}
	for r.left == 0 {
		if len(r.b)-r.off < recordHeaderLen {
			r.bad = true
			return 0, false
		}
		r.left = int(r.b[r.off+3])<<8 | int(r.b[r.off+4])
		r.off += recordHeaderLen
	}
	if r.off >= len(r.b) {
		r.bad = true
		return 0, false
	}
	c := r.b[r.off]
	r.off++
	r.left--
	return c, true
}

func (r *recordReader) skip(n int) {
	if r.flat != nil {
		if n > len(r.flat) {
			r.bad = true
			r.flat = r.flat[:0]
			return
		}
		r.flat = r.flat[n:]
		return
	}
	for ; n > 0 && !r.bad; n-- {
		r.next()
	}
}

func (r *recordReader) u8() int {
	c, _ := r.next()
	return int(c)
}

func (r *recordReader) u16() int {
	return r.u8()<<8 | r.u8()
}

// sub returns the next n bytes as one slice, when they are contiguous.
func (r *recordReader) sub(n int) []byte {
	if r.flat != nil {
		if n > len(r.flat) {
			r.bad = true
			return nil
		}
		s := r.flat[:n]
		r.flat = r.flat[n:]
		return s
	}
	if r.left == 0 {
		if _, ok := r.next(); !ok {
			return nil
		}
		r.off--
		r.left++
	}
	if n > r.left || r.off+n > len(r.b) {
		r.bad = true
		return nil
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	r.left -= n
	return s
}

// parseHelloSpread parses a ClientHello body of msgLen bytes from r.
func parseHelloSpread(r *recordReader, msgLen int) ([]byte, helloStatus) {
	read := 0
	take := func(n int) { read += n }
	r.skip(2 + 32) // legacy_version, random
	take(34)
	sid := r.u8()
	if sid > 32 {
		return nil, helloNotTLS
	}
	r.skip(sid)
	take(1 + sid)
	cs := r.u16()
	if cs < 2 || cs%2 != 0 {
		return nil, helloNotTLS
	}
	r.skip(cs)
	take(2 + cs)
	comp := r.u8()
	if comp < 1 {
		return nil, helloNotTLS
	}
	r.skip(comp)
	take(1 + comp)
	if r.bad || read > msgLen {
		return nil, helloNotTLS
	}
	if read == msgLen {
		return nil, helloOK // no extensions at all
	}
	extLen := r.u16()
	take(2)
	if read+extLen > msgLen {
		return nil, helloNotTLS
	}
	var sni []byte
	for extLen >= 4 && !r.bad {
		typ, l := r.u16(), r.u16()
		extLen -= 4
		if l > extLen {
			return nil, helloNotTLS
		}
		extLen -= l
		if typ != extServerName {
			r.skip(l)
			continue
		}
		if l < 2 {
			return nil, helloNotTLS
		}
		list := r.u16()
		if list+2 != l {
			return nil, helloNotTLS
		}
		for list >= 3 && !r.bad {
			nt, nl := r.u8(), r.u16()
			list -= 3
			if nl > list || nl == 0 {
				return nil, helloNotTLS
			}
			list -= nl
			if nt == sniHostName && sni == nil {
				sni = r.sub(nl)
				if sni == nil {
					return nil, helloNotTLS
				}
				continue
			}
			r.skip(nl)
		}
		if list != 0 {
			return nil, helloNotTLS
		}
	}
	if r.bad || extLen != 0 {
		return nil, helloNotTLS
	}
	return sni, helloOK
}

// sameHost reports whether a ClientHello's server name equals host (the
// normalized CONNECT target): ASCII case-insensitive, one trailing dot
// ignored. It does not allocate.
func sameHost(sni []byte, host string) bool {
	if n := len(sni); n > 0 && sni[n-1] == '.' {
		sni = sni[:n-1]
	}
	if len(sni) != len(host) {
		return false
	}
	for i := 0; i < len(sni); i++ {
		a, b := sni[i], host[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}
