//go:build !race

package policy_test

// raceEnabled is true when the tests run under the race detector, which
// changes allocation counts.
const raceEnabled = false
