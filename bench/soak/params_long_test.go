//go:build soak

package soak

import "time"

// The long form (bench/soak.sh): 10,000 idle tunnels held for a minute, a
// minute of tunnel churn and a minute of DNS churn.
const (
	idleTunnels  = 10000
	idleHold     = 60 * time.Second
	churnFor     = 60 * time.Second
	churnWorkers = 64
)
