package proxy

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// wsEcho upgrades and echoes every message.
func wsEcho() http.Handler {
	up := websocket.Upgrader{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
			if err := c.WriteMessage(mt, b); err != nil {
				return
			}
		}
	})
}

// exchange sends n messages and reads their n echoes concurrently.
func exchange(t *testing.T, c *websocket.Conn, from, n int) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		for i := from; i < from+n; i++ {
			if err := c.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf("message %d", i))); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	for i := from; i < from+n; i++ {
		_, b, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if want := fmt.Sprintf("message %d", i); string(b) != want {
			t.Fatalf("got %q, want %q", b, want)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestWebsocketInsideConnectTLS(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	e.tlsOrigin("management.azure.com", wsEcho())
	d := websocket.Dialer{
		Proxy:            http.ProxyURL(e.url),
		TLSClientConfig:  &tls.Config{RootCAs: e.ca.Pool},
		HandshakeTimeout: wait,
	}
	c, resp, err := d.Dial("wss://management.azure.com/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	exchange(t, c, 0, 1000)
	time.Sleep(300 * time.Millisecond) // an idle pause: the tunnel waits without a pipe
	exchange(t, c, 1000, 1000)
	_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
}

// wsFrame writes one masked client text frame (payload < 126 bytes).
func wsFrame(w io.Writer, payload string) error {
	mask := [4]byte{1, 2, 3, 4}
	b := []byte{0x81, 0x80 | byte(len(payload)), mask[0], mask[1], mask[2], mask[3]}
	for i := 0; i < len(payload); i++ {
		b = append(b, payload[i]^mask[i%4])
	}
	_, err := w.Write(b)
	return err
}

// wsRead reads one unmasked server frame.
func wsRead(r *bufio.Reader) (string, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return "", err
	}
	n := int(h[1] & 0x7f)
	if n == 126 {
		var l [2]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return "", err
		}
		n = int(binary.BigEndian.Uint16(l[:]))
	}
	b := make([]byte, n)
	_, err := io.ReadFull(r, b)
	return string(b), err
}

func TestWebsocketAbsoluteFormUpgrade(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	e.plainOrigin("plain.arcfence.test", wsEcho())
	c := e.dialProxy()
	fmt.Fprint(c, "GET http://plain.arcfence.test/ws HTTP/1.1\r\nHost: plain.arcfence.test\r\n"+
		"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nProxy-Authorization: secret\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %s", resp.Status)
	}
	if got := resp.Header.Get("Sec-Websocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("Sec-WebSocket-Accept %q", got)
	}
	for i := 0; i < 1000; i++ {
		msg := fmt.Sprintf("message %d", i)
		if err := wsFrame(c, msg); err != nil {
			t.Fatal(err)
		}
		got, err := wsRead(br)
		if err != nil || got != msg {
			t.Fatalf("echo %d: %q %v", i, got, err)
		}
	}
	_ = c.Close()
	e.logs.find(t, map[string]any{"msg": msgTunnelClosed, "kind": kindWebsocket, "host": "plain.arcfence.test", "port": 80})
}
