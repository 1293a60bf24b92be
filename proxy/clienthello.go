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
	// helloBufSize is the buffer first tried for a tunnel's first bytes:
	// enough for nearly every ClientHello; it grows up to maxHelloBytes.
	helloBufSize = 8 << 10
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
	// helloNeedScratch: the hello is complete but spread over several
	// records, and scratch is too small to reassemble it.
	helloNeedScratch
	// helloSNIList: a complete ClientHello whose server_name list holds
	// more than one entry (RFC 6066 section 3 allows one name of a type;
	// Go's TLS server rejects such lists). The tunnel refuses it as
	// sni-mismatch whatever the entries name: deciding on one of them
	// would let the origin pick another.
	helloSNIList
)

// parseClientHello inspects b, the first bytes a client sent in a tunnel.
// On helloOK, sni is the host_name of the server_name extension (nil when
// the extension is absent; a list of more than one entry is helloSNIList,
// with sni nil): a sub-slice of b, or of scratch when the
// message is spread over several records, in which case it is reassembled
// there. A scratch too small for that gives helloNeedScratch (nil is fine
// for the usual one-record hello).
func parseClientHello(b, scratch []byte) (sni []byte, st helloStatus) {
	if len(b) == 0 {
		return nil, helloNeedMore
	}
	if b[0] != recordTypeHandshake {
		return nil, helloNotTLS
	}
	// Walk the records, learning the message length from the first four
	// handshake bytes, until the whole message is here.
	var (
		msgLen  = -1
		total   int // handshake bytes seen
		hdr     [4]byte
		hb      int // handshake header bytes collected
		off     int
		records int
	)
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
		if rlen == 0 || rlen > 1<<14 {
			return nil, helloNotTLS
		}
		body := b[off+recordHeaderLen:]
		complete := len(body) >= rlen
		if complete {
			body = body[:rlen]
		}
		records++
		for i := 0; i < len(body) && hb < 4; i++ {
			hdr[hb] = body[i]
			hb++
		}
		total += len(body)
		if msgLen < 0 && hb == 4 {
			if hdr[0] != handshakeClientHello {
				return nil, helloNotTLS
			}
			msgLen = int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])
			if msgLen+4+recordHeaderLen > maxHelloBytes {
				return nil, helloNotTLS
			}
		}
		if msgLen >= 0 && total >= 4+msgLen {
			break
		}
		if !complete {
			return nil, helloNeedMore
		}
		off += recordHeaderLen + rlen
		if off >= maxHelloBytes {
			return nil, helloNotTLS
		}
	}
	if records == 1 {
		return parseHelloBody(b[recordHeaderLen+4 : recordHeaderLen+4+msgLen])
	}
	if cap(scratch) < 4+msgLen {
		return nil, helloNeedScratch
	}
	m := scratch[:0]
	for o := 0; len(m) < 4+msgLen; {
		rlen := int(b[o+3])<<8 | int(b[o+4])
		body := b[o+recordHeaderLen:]
		m = append(m, body[:min(rlen, len(body))]...)
		o += recordHeaderLen + rlen
	}
	return parseHelloBody(m[4 : 4+msgLen])
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

// reader reads a ClientHello body; out-of-range reads set bad.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) u8() int {
	if len(r.b) < 1 {
		r.bad = true
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return int(c)
}

func (r *reader) u16() int {
	if len(r.b) < 2 {
		r.bad = true
		r.b = r.b[:0]
		return 0
	}
	v := int(r.b[0])<<8 | int(r.b[1])
	r.b = r.b[2:]
	return v
}

func (r *reader) bytes(n int) []byte {
	if n > len(r.b) {
		r.bad = true
		r.b = r.b[:0]
		return nil
	}
	s := r.b[:n]
	r.b = r.b[n:]
	return s
}

// parseHelloBody parses a ClientHello body (RFC 8446 section 4.1.2) and
// returns its server name (RFC 6066 section 3).
func parseHelloBody(m []byte) ([]byte, helloStatus) {
	r := reader{b: m}
	r.bytes(2 + 32) // legacy_version, random
	if sid := r.u8(); sid > 32 {
		return nil, helloNotTLS
	} else {
		r.bytes(sid)
	}
	if cs := r.u16(); cs < 2 || cs%2 != 0 {
		return nil, helloNotTLS
	} else {
		r.bytes(cs)
	}
	if comp := r.u8(); comp < 1 {
		return nil, helloNotTLS
	} else {
		r.bytes(comp)
	}
	if r.bad {
		return nil, helloNotTLS
	}
	if len(r.b) == 0 {
		return nil, helloOK // no extensions at all
	}
	ext := reader{b: r.bytes(r.u16())}
	if r.bad || len(r.b) != 0 {
		return nil, helloNotTLS
	}
	var (
		sni   []byte
		multi bool // the server_name list held more than one entry
	)
	for len(ext.b) > 0 && !ext.bad {
		typ := ext.u16()
		data := ext.bytes(ext.u16())
		if ext.bad {
			return nil, helloNotTLS
		}
		if typ != extServerName {
			continue
		}
		if sni != nil {
			return nil, helloNotTLS // a second server_name extension
		}
		sn := reader{b: data}
		list := reader{b: sn.bytes(sn.u16())}
		if sn.bad || len(sn.b) != 0 || len(list.b) == 0 {
			return nil, helloNotTLS
		}
		for entries := 0; len(list.b) > 0; entries++ {
			nt := list.u8()
			name := list.bytes(list.u16())
			if list.bad || len(name) == 0 {
				return nil, helloNotTLS
			}
			multi = multi || entries > 0
			if nt == sniHostName && sni == nil {
				sni = name
			}
		}
		if sni == nil && !multi {
			return nil, helloNotTLS
		}
	}
	if ext.bad {
		return nil, helloNotTLS
	}
	if multi {
		return nil, helloSNIList
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
