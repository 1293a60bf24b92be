package main

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// freePort returns a loopback address with a port free at the time of the call.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestServeExitAdminPortTaken: the admin port already in use at start-up
// ends the binary with a non-zero exit and an error naming admin.listen.
func TestServeExitAdminPortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := []string{"serve", "--listen", freePort(t), "--admin-listen", taken.Addr().String(), "--resolver", "127.0.0.1:9"}
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFaultsMainHelper$")
	cmd.Env = append(os.Environ(), "ARCFENCE_FAULTS_MAIN="+strings.Join(args, "\x1f"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("exit: %v, want a non-zero exit; stderr:\n%s", err, stderr.String())
	}
	msg := stderr.String()
	if !strings.Contains(msg, "admin.listen "+taken.Addr().String()) || !strings.Contains(msg, "already in use") {
		t.Fatalf("stderr does not name admin.listen and the address in use:\n%s", msg)
	}
}

// TestFaultsMainHelper runs the binary's main with the arguments in
// ARCFENCE_FAULTS_MAIN (separated by \x1f); it does nothing otherwise.
func TestFaultsMainHelper(t *testing.T) {
	args := os.Getenv("ARCFENCE_FAULTS_MAIN")
	if args == "" {
		return
	}
	os.Args = append([]string{"arcfence"}, strings.Split(args, "\x1f")...)
	main()
	os.Exit(0)
}
