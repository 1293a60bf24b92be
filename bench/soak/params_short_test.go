//go:build !soak

package soak

import "time"

// The short form, run by plain `go test` (and CI): seconds, not minutes.
const (
	idleTunnels  = 500
	idleHold     = 2 * time.Second
	churnFor     = 4 * time.Second
	churnWorkers = 16
)
