package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/arcfence/arcfence/internal/servicebus"
	"github.com/arcfence/arcfence/internal/testpki"
)

func TestAgentConfigCmd(t *testing.T) {
	out, err := run(t, "agent-config", "--offerings", "servers,kubernetes", "--features", "private-link",
		"--region", "westeurope", "--proxy-url", "arcfence.corp.example:3128", "--service-cidr", "10.96.0.0/12")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`azcmagent config set proxy.url "http://arcfence.corp.example:3128"`,
		`azcmagent config set proxy.bypass "Arc"`,
		`--proxy-skip-range "10.96.0.0/12,kubernetes.default.svc,.svc.cluster.local,.svc"`,
		"--location westeurope",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("agent-config output lacks %q", want)
		}
	}
	if _, err := run(t, "agent-config", "--offerings", "servers"); err == nil || !strings.Contains(err.Error(), "proxy-url") {
		t.Errorf("without --proxy-url: err = %v", err)
	}
}

// refusingProxy answers every request with arcfence's 403 and counts them.
func refusingProxy(t *testing.T) (addr string, count func() int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	n := 0
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				mu.Lock()
				n++
				mu.Unlock()
				io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nX-Arcfence-Reason: explicit-deny\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String(), func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// TestCheckCmdThroughListen: a bare --proxy goes through the configured
// listen; refusals are reported and fail the command with exit code 1.
func TestCheckCmdThroughListen(t *testing.T) {
	addr, count := refusingProxy(t)
	cfg := filepath.Join(t.TempDir(), "arcfence.yaml")
	if err := os.WriteFile(cfg, []byte("listen: "+addr+"\nofferings: [esu]\nregions: [eastus2]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "check", "--config", cfg, "--proxy", "--sample", "eastus2.his.arc.azure.com")
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("err = %v; want exit code 1\n%s", err, out)
	}
	if !strings.Contains(out, "proxy refused: 403 Forbidden (explicit-deny)") || !strings.Contains(out, "eastus2.his.arc.azure.com") {
		t.Fatalf("output:\n%s", out)
	}
	if count() == 0 {
		t.Fatal("the proxy saw no request")
	}
	// --proxy URL (separate argument) and --json
	out, err = run(t, "check", "--config", cfg, "--proxy", "http://"+addr, "--json")
	if !errors.As(err, &ee) || !strings.Contains(out, `"reachable":false`) || !strings.Contains(out, `"endpoint":"management.azure.com:443"`) {
		t.Fatalf("--json: err = %v\n%s", err, out)
	}
	if _, err := run(t, "check", "--config", cfg, "--proxy", "http://"+addr, "--sample", "evil.example.com"); err == nil {
		t.Fatal("a sample matching no wildcard row was accepted")
	}
}

// TestServicebusFetchCmd fetches from a loopback HTTPS stub (direct, with a
// test CA) and writes the file that servicebus.allowlist_file reads.
func TestServicebusFetchCmd(t *testing.T) {
	ca := testpki.NewCA(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("location") {
		case "eastus2":
			io.WriteString(w, `["azgnrelay-eastus2-l1.servicebus.windows.net","AZGNRELAY-EASTUS2-L1.servicebus.windows.net","x"]`)
		case "westus":
			io.WriteString(w, `["azgnrelay-westus-l1.servicebus.windows.net"]`)
		default:
			io.WriteString(w, `{"error":"bad"}`)
		}
	}))
	srv.TLS = ca.ServerConfig(t, "127.0.0.1")
	srv.StartTLS()
	defer srv.Close()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "servicebus.json")
	base := srv.URL + "/urls/allowlist"
	if _, err := run(t, "servicebus", "fetch", "--region", "East US 2,westus", "--direct", "--ca-file", caFile, "--base-url", base, "-o", out); err != nil {
		t.Fatal(err)
	}
	names, err := servicebus.ReadFile(out)
	want := []string{"azgnrelay-eastus2-l1.servicebus.windows.net", "azgnrelay-westus-l1.servicebus.windows.net"}
	if err != nil || !slices.Equal(names, want) {
		t.Fatalf("file = %v, %v; want %v", names, err, want)
	}
	_, err = run(t, "servicebus", "fetch", "--region", "uksouth", "--direct", "--ca-file", caFile, "--base-url", base, "-o", out)
	if err == nil || !strings.Contains(err.Error(), "not a JSON array") {
		t.Fatalf("malformed answer: err = %v", err)
	}
	if again, _ := servicebus.ReadFile(out); !slices.Equal(again, want) {
		t.Fatalf("a failed fetch changed the file: %v", again)
	}
	// through a proxy that refuses: the error names the reason and the fix
	addr, count := refusingProxy(t)
	_, err = run(t, "servicebus", "fetch", "--region", "eastus2", "--proxy", "http://"+addr, "-o", out)
	if err == nil || !strings.Contains(err.Error(), "403 Forbidden (explicit-deny)") || !strings.Contains(err.Error(), "--direct") || count() != 1 {
		t.Fatalf("through a refusing proxy: err = %v (%d requests)", err, count())
	}
}
