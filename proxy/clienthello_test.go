package proxy

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// clientHello returns the first flight a crypto/tls client sends.
func clientHello(t testing.TB, serverName string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		c := tls.Client(a, &tls.Config{ServerName: serverName, InsecureSkipVerify: true})
		_ = c.Handshake()
	}()
	_ = b.SetReadDeadline(time.Now().Add(wait))
	head := make([]byte, 5)
	if _, err := io.ReadFull(b, head); err != nil {
		t.Fatal(err)
	}
	rec := make([]byte, 5+(int(head[3])<<8|int(head[4])))
	copy(rec, head)
	if _, err := io.ReadFull(b, rec[5:]); err != nil {
		t.Fatal(err)
	}
	return rec
}

// splitRecords re-frames a one-record ClientHello into records of at most size bytes.
func splitRecords(rec []byte, size int) []byte {
	body := rec[5:]
	var out bytes.Buffer
	for len(body) > 0 {
		k := min(size, len(body))
		out.Write([]byte{0x16, rec[1], rec[2], byte(k >> 8), byte(k)})
		out.Write(body[:k])
		body = body[k:]
	}
	return out.Bytes()
}

// sniEntry is one ServerName of a server_name list (RFC 6066 section 3).
type sniEntry struct {
	typ  byte
	name string
}

// helloWithSNIList builds a minimal one-record TLS 1.2 ClientHello whose
// server_name extension holds the given list, as a hostile client may
// write it (crypto/tls always sends exactly one host_name).
func helloWithSNIList(entries ...sniEntry) []byte {
	var list []byte
	for _, e := range entries {
		list = append(list, e.typ, byte(len(e.name)>>8), byte(len(e.name)))
		list = append(list, e.name...)
	}
	sn := append([]byte{byte(len(list) >> 8), byte(len(list))}, list...)
	ext := append([]byte{0x00, 0x00, byte(len(sn) >> 8), byte(len(sn))}, sn...)
	body := []byte{0x03, 0x03}
	body = append(body, make([]byte, 32)...)    // random
	body = append(body, 0x00)                   // session id
	body = append(body, 0x00, 0x02, 0xc0, 0x2f) // one cipher suite
	body = append(body, 0x01, 0x00)             // null compression
	body = append(body, byte(len(ext)>>8), byte(len(ext)))
	body = append(body, ext...)
	msg := append([]byte{handshakeClientHello, 0, byte(len(body) >> 8), byte(len(body))}, body...)
	return append([]byte{recordTypeHandshake, 0x03, 0x01, byte(len(msg) >> 8), byte(len(msg))}, msg...)
}

func TestParseClientHello(t *testing.T) {
	withSNI := clientHello(t, "management.azure.com")
	noSNI := clientHello(t, "")
	for _, tc := range []struct {
		name string
		in   []byte
		sni  string
		st   helloStatus
	}{
		{"sni", withSNI, "management.azure.com", helloOK},
		{"no-sni", noSNI, "", helloOK},
		{"two-records", splitRecords(withSNI, len(withSNI)/2), "management.azure.com", helloOK},
		{"many-small-records", splitRecords(withSNI, 7), "management.azure.com", helloOK},
		{"trailing-bytes", append(append([]byte{}, withSNI...), 0x14, 0x03), "management.azure.com", helloOK},
		{"empty", nil, "", helloNeedMore},
		{"one-byte", []byte{0x16}, "", helloNeedMore},
		{"header-only", withSNI[:5], "", helloNeedMore},
		{"half", withSNI[:len(withSNI)/2], "", helloNeedMore},
		{"http", []byte("GET / HTTP/1.1\r\n"), "", helloNotTLS},
		{"ssh", []byte("SSH-2.0-OpenSSH_9.6\r\n"), "", helloNotTLS},
		{"bad-version", []byte{0x16, 0x02, 0x00, 0x00, 0x10}, "", helloNotTLS},
		{"not-client-hello", []byte{0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00}, "", helloNotTLS},
		{"zero-length-record", []byte{0x16, 0x03, 0x01, 0x00, 0x00}, "", helloNotTLS},
		{"empty-hello", []byte{0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00}, "", helloNotTLS},
		// Issue 13 finding 6: RFC 6066 allows one name of a type, and Go's
		// server rejects longer lists; a list of more than one entry is
		// refused whatever its order, never decided on its first host_name.
		{"one-entry-list", helloWithSNIList(sniEntry{0, "management.azure.com"}), "management.azure.com", helloOK},
		{"list-allowed-then-evil", helloWithSNIList(sniEntry{0, "management.azure.com"}, sniEntry{0, "evil.example"}), "", helloSNIList},
		{"list-evil-then-allowed", helloWithSNIList(sniEntry{0, "evil.example"}, sniEntry{0, "management.azure.com"}), "", helloSNIList},
		{"list-other-type-then-allowed", helloWithSNIList(sniEntry{1, "evil.example"}, sniEntry{0, "management.azure.com"}), "", helloSNIList},
		{"list-allowed-then-other-type", helloWithSNIList(sniEntry{0, "management.azure.com"}, sniEntry{7, "evil.example"}), "", helloSNIList},
		{"list-same-name-twice", helloWithSNIList(sniEntry{0, "management.azure.com"}, sniEntry{0, "management.azure.com"}), "", helloSNIList},
		{"list-other-type-only", helloWithSNIList(sniEntry{1, "evil.example"}), "", helloNotTLS},
		{"list-split-records", splitRecords(helloWithSNIList(sniEntry{0, "management.azure.com"}, sniEntry{0, "evil.example"}), 11), "", helloSNIList},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sni, st := parseClientHello(tc.in, make([]byte, 0, maxHelloBytes))
			if st != tc.st || string(sni) != tc.sni {
				t.Fatalf("got (%q, %d), want (%q, %d)", sni, st, tc.sni, tc.st)
			}
		})
	}
	// Every proper prefix of a hello, however it is framed, asks for more.
	for _, in := range [][]byte{withSNI, splitRecords(withSNI, 100)} {
		for i := 0; i < len(in); i++ {
			if _, st := parseClientHello(in[:i], make([]byte, 0, maxHelloBytes)); st != helloNeedMore {
				t.Fatalf("prefix of %d bytes: status %d, want need-more", i, st)
			}
		}
	}
}

func TestParseClientHelloNeedScratch(t *testing.T) {
	in := splitRecords(clientHello(t, "management.azure.com"), 100)
	if _, st := parseClientHello(in, nil); st != helloNeedScratch {
		t.Fatalf("status %d, want need-scratch", st)
	}
	if sni, st := parseClientHello(clientHello(t, "a.example"), nil); st != helloOK || string(sni) != "a.example" {
		t.Fatalf("one record without scratch: (%q, %d)", sni, st)
	}
}

func TestParseClientHelloAllocs(t *testing.T) {
	in := splitRecords(clientHello(t, "management.azure.com"), 100)
	scratch := make([]byte, 0, maxHelloBytes)
	if n := testing.AllocsPerRun(100, func() { parseClientHello(in, scratch) }); n != 0 {
		t.Fatalf("%v allocations per parse", n)
	}
}

func TestSameHost(t *testing.T) {
	for _, tc := range []struct {
		sni, host string
		want      bool
	}{
		{"management.azure.com", "management.azure.com", true},
		{"Management.Azure.COM", "management.azure.com", true},
		{"management.azure.com.", "management.azure.com", true},
		{"management.azure.com", "login.windows.net", false},
		{"xmanagement.azure.com", "management.azure.com", false},
		{"", "management.azure.com", false},
	} {
		if got := sameHost([]byte(tc.sni), tc.host); got != tc.want {
			t.Errorf("sameHost(%q, %q) = %v", tc.sni, tc.host, got)
		}
	}
}

func FuzzParseClientHello(f *testing.F) {
	f.Add(clientHello(f, "management.azure.com"))
	f.Add(clientHello(f, ""))
	f.Add(splitRecords(clientHello(f, "a.b"), 9))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Add(helloWithSNIList(sniEntry{0, "management.azure.com"}, sniEntry{0, "evil.example"}))
	f.Add(helloWithSNIList(sniEntry{1, "evil.example"}, sniEntry{0, "management.azure.com"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		sni, st := parseClientHello(b, make([]byte, 0, maxHelloBytes))
		if st != helloOK && sni != nil {
			t.Fatal("server name without a complete hello")
		}
		if st == helloSNIList {
			// A refused list stays refused behind more bytes.
			if _, st2 := parseClientHello(append(append([]byte{}, b...), 0x16), make([]byte, 0, maxHelloBytes)); st2 != helloSNIList {
				t.Fatalf("with a trailing byte: status %d, before %d", st2, st)
			}
		}
		if st == helloOK {
			// A complete hello stays complete, with the same name, behind more bytes.
			sni2, st2 := parseClientHello(append(append([]byte{}, b...), 0x16), make([]byte, 0, maxHelloBytes))
			if st2 != helloOK || !bytes.Equal(sni, sni2) {
				t.Fatalf("with a trailing byte: (%q, %d), before (%q, %d)", sni2, st2, sni, st)
			}
		}
	})
}

func TestGuard(t *testing.T) {
	allow := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	for _, tc := range []struct {
		addr      string
		privateOK bool
		ranges    []netip.Prefix
		want      bool
	}{
		{"20.50.1.2", false, nil, true},
		{"2603:1030::1", false, nil, true},
		{"10.1.2.3", false, nil, false},
		{"10.1.2.3", true, nil, true},
		{"172.16.0.1", false, nil, false},
		{"192.168.1.1", false, nil, false},
		{"100.64.0.1", false, nil, false},
		{"100.64.0.1", true, nil, true},
		{"fd00::1", false, nil, false},
		{"fd00::1", true, nil, true},
		{"127.0.0.1", true, nil, false},
		{"127.0.0.1", false, allow, true},
		{"::1", true, nil, false},
		{"169.254.169.254", true, nil, false},
		{"169.254.1.1", true, nil, false},
		{"fe80::1", true, nil, false},
		{"0.0.0.0", true, nil, false},
		{"::", true, nil, false},
		{"224.0.0.1", true, nil, false},
		{"ff02::1", true, nil, false},
		{"255.255.255.255", true, nil, false},
		{"::ffff:127.0.0.1", true, nil, false},
		{"::ffff:127.0.0.1", false, allow, true},
		{"::ffff:10.0.0.1", false, nil, false},
		{"64:ff9b::a9fe:a9fe", true, nil, false},         // NAT64 of 169.254.169.254
		{"64:ff9b::7f00:1", true, nil, false},            // NAT64 of 127.0.0.1
		{"64:ff9b::a00:1", false, nil, false},            // NAT64 of 10.0.0.1
		{"64:ff9b::1432:102", false, nil, true},          // NAT64 of 20.50.1.2
		{"2002:7f00:1::1", true, nil, false},             // 6to4 of 127.0.0.1
		{"2002:a00:1::1", false, nil, false},             // 6to4 of 10.0.0.1
		{"2001:0:1432:102::80ff:fefe", true, nil, false}, // Teredo, client 127.0.1.1
		{"fe80::1%eth0", true, nil, false},
	} {
		a := netip.MustParseAddr(tc.addr)
		if got := addrAllowed(a, tc.privateOK, tc.ranges); got != tc.want {
			t.Errorf("addrAllowed(%s, privateOK=%v, %v) = %v, want %v", tc.addr, tc.privateOK, tc.ranges, got, tc.want)
		}
	}
}
