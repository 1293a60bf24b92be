package policy

import (
	"fmt"
	"net/netip"
)

// Mode is what a decision's caller does with a destination the allowlist
// lacks: refuse it (enforce) or admit it and report it (learn).
type Mode uint8

// Modes, as the configuration's "mode" key spells them (Mode.String).
const (
	// ModeEnforce refuses what the policy does not admit. The zero value.
	ModeEnforce Mode = iota
	// ModeLearn admits what only the allowlist lacks and logs it as
	// "would deny"; explicit denials and every guard still refuse.
	ModeLearn
)

// String returns the mode as the configuration spells it.
func (m Mode) String() string {
	if m == ModeLearn {
		return "learn"
	}
	return "enforce"
}

// ParseMode parses the configuration's spelling of a mode.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "enforce":
		return ModeEnforce, nil
	case "learn":
		return ModeLearn, nil
	}
	return ModeEnforce, fmt.Errorf("unknown value %q; expected one of enforce, learn", s)
}

// DefaultProfile is the name of the profile the top-level keys make.
const DefaultProfile = "default"

// Profile is one group of clients' compiled policy and mode.
type Profile struct {
	// Name is the profile's name (DefaultProfile for the top-level keys).
	Name string
	// Policy decides this profile's destinations.
	Policy *Policy
	// Mode is this profile's mode.
	Mode Mode
}

// Profiles picks the profile of a client address: the policy a connection
// from that address is decided with. It is immutable once built.
type Profiles struct {
	def     *Profile
	clients []netip.Prefix
}

// NewProfiles returns the profiles of a configuration whose one profile def
// serves the clients in clients (masked prefixes; IPv4 as 4-byte
// addresses). def must not be nil.
func NewProfiles(def *Profile, clients []netip.Prefix) *Profiles {
	return &Profiles{def: def, clients: clients}
}

// Default returns the profile of the top-level keys.
func (ps *Profiles) Default() *Profile { return ps.def }

// Clients returns the client prefixes of the default profile. The caller
// must not modify the slice.
func (ps *Profiles) Clients() []netip.Prefix { return ps.clients }

// For returns the profile that decides for a connection from a, and false
// when a is in no profile's clients (client-not-allowed). IPv4-mapped IPv6
// addresses are matched as IPv4.
func (ps *Profiles) For(a netip.Addr) (*Profile, bool) {
	a = a.Unmap()
	for _, p := range ps.clients {
		if p.Contains(a) {
			return ps.def, true
		}
	}
	return nil, false
}
