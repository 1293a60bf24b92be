package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestServeReadyzFollowsReloads runs serve with an admin listener: /readyz
// is 200 once it serves, 503 after a reload of a bad file (the running
// config stays), and 200 again after a good one; /metrics counts both.
func TestServeReadyzFollowsReloads(t *testing.T) {
	port := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	proxyAddr, adminAddr := port(), port()
	dir := t.TempDir()
	file := filepath.Join(dir, "arcfence.yaml")
	base := fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nresolver: 127.0.0.1:9\nlimits: {shutdown_grace: 2s}\n", proxyAddr, adminAddr)
	write := func(extra string) {
		t.Helper()
		tmp := filepath.Join(dir, ".tmp")
		if err := os.WriteFile(tmp, []byte(base+extra), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	write("offerings: [servers]\n")

	src := flagSource(t, []string{"--config", file}...)
	var logs strings.Builder
	logw := &lockedWriter{w: &logs}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, src, logw) }()

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	get := func(path string) (int, string) {
		resp, err := client.Get("http://" + adminAddr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitReady := func(what string, code int, lastReload string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			c, body := get("/readyz")
			var st struct {
				LastReload string `json:"last_reload"`
			}
			_ = json.Unmarshal([]byte(body), &st)
			if c == code && st.LastReload == lastReload {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: /readyz %d %s; want %d with last_reload %q\nlog:\n%s", what, c, body, code, lastReload, logw.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitReady("start", 200, "none")
	if c, body := get("/healthz"); c != 200 || body != "ok\n" {
		t.Fatalf("/healthz %d %q", c, body)
	}

	write("offerings: [bogus]\n")
	waitReady("after a bad file", 503, "failed")
	if _, body := get("/metrics"); !strings.Contains(body, `arcfence_config_reloads_total{result="failed"} 1`) ||
		!strings.Contains(body, "arcfence_config_last_reload_ok 0") || !strings.Contains(body, "arcfence_ready 0") {
		t.Fatalf("/metrics after a failed reload:\n%s", grepLines(body, "arcfence_"))
	}

	write("offerings: [servers, kubernetes]\n")
	waitReady("after a good file", 200, "ok")
	if _, body := get("/metrics"); !strings.Contains(body, `arcfence_config_reloads_total{result="ok"} 1`) ||
		!strings.Contains(body, "arcfence_config_last_reload_ok 1") || !strings.Contains(body, "arcfence_ready 1") {
		t.Fatalf("/metrics after a good reload:\n%s", grepLines(body, "arcfence_"))
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop")
	}
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}
