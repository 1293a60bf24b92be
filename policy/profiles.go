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

// ProfileClients is a profile and the client prefixes it serves.
type ProfileClients struct {
	// Profile is the compiled profile.
	Profile *Profile
	// Clients are its client prefixes.
	Clients []netip.Prefix
}

// Profiles picks the profile of a client address: the policy a connection
// from that address is decided with. It is immutable once built.
type Profiles struct {
	def    *Profile
	list   []ProfileClients // file order; the default last
	v4, v6 trie
}

// NewProfiles returns the profiles of a configuration: def (the top-level
// keys) serving clients, and the named profiles in file order. A source
// address picks the first named profile whose clients contain it, else def
// when clients contain it. Prefixes are masked; IPv4 as 4-byte addresses
// (IPv4-mapped prefixes of /96 or longer are matched as IPv4). def must
// not be nil; its clients may be empty (no default profile).
func NewProfiles(def *Profile, clients []netip.Prefix, named ...ProfileClients) *Profiles {
	ps := &Profiles{def: def}
	ps.list = append(append(ps.list, named...), ProfileClients{Profile: def, Clients: clients})
	ps.v4.init()
	ps.v6.init()
	for i, pc := range ps.list {
		for _, p := range pc.Clients {
			a, bits := p.Addr(), p.Bits()
			if a.Is4In6() && bits >= 96 {
				a, bits = a.Unmap(), bits-96
			}
			hi, lo := addrKey(a)
			if a.Is4() {
				ps.v4.insert(hi, lo, bits, int32(i))
			} else {
				ps.v6.insert(hi, lo, bits, int32(i))
			}
		}
	}
	return ps
}

// Default returns the profile of the top-level keys.
func (ps *Profiles) Default() *Profile { return ps.def }

// List returns every profile with its clients: the named ones in file
// order, then the default. The caller must not modify it.
func (ps *Profiles) List() []ProfileClients { return ps.list }

// Named returns the profile called name (DefaultProfile for the top-level
// keys), and false when there is none.
func (ps *Profiles) Named(name string) (*Profile, bool) {
	for _, pc := range ps.list {
		if pc.Profile.Name == name {
			return pc.Profile, true
		}
	}
	return nil, false
}

// For returns the profile that decides for a connection from a, and false
// when a is in no profile's clients (client-not-allowed). IPv4-mapped IPv6
// addresses are matched as IPv4. It reads at most 8 (IPv4) or 32 (IPv6)
// trie nodes and does not allocate.
func (ps *Profiles) For(a netip.Addr) (*Profile, bool) {
	i := ps.Index(a)
	if i < 0 {
		return nil, false
	}
	return ps.list[i].Profile, true
}

// Index is For as an index into List, -1 for no profile.
func (ps *Profiles) Index(a netip.Addr) int {
	a = a.Unmap()
	if !a.IsValid() {
		return -1
	}
	hi, lo := addrKey(a)
	if a.Is4() {
		return int(ps.v4.lookup(hi, lo, 32))
	}
	return int(ps.v6.lookup(hi, lo, 128))
}

// addrKey returns a's bits, most significant first, left-aligned in hi, lo.
func addrKey(a netip.Addr) (hi, lo uint64) {
	if a.Is4() {
		b := a.As4()
		return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32, 0
	}
	b := a.As16()
	for i := 0; i < 8; i++ {
		hi = hi<<8 | uint64(b[i])
		lo = lo<<8 | uint64(b[8+i])
	}
	return hi, lo
}

// trie is a multibit trie (4 bits a level) of prefixes. Each slot holds
// the lowest profile index among the prefixes that cover it (-1 = none),
// so a lookup takes the lowest index on its path: file order wins, not the
// longest prefix. A lookup reads at most 8 (IPv4) or 32 (IPv6) nodes.
type trie struct{ nodes []trieNode }

// trieNode is one level: 16 slots, one per value of the next 4 bits.
type trieNode [16]struct {
	child int32 // 0 = none (the root is never a child)
	best  int32
}

func (t *trie) init() { t.nodes = []trieNode{newTrieNode()} }

func newTrieNode() trieNode {
	var n trieNode
	for i := range n {
		n[i].best = -1
	}
	return n
}

// nibble returns the 4 bits of hi, lo starting at bit i (a multiple of 4;
// 0 = most significant).
func nibble(hi, lo uint64, i int) int {
	if i < 64 {
		return int(hi >> (60 - i) & 15)
	}
	return int(lo >> (124 - i) & 15)
}

// insert records profile idx for the prefix of the first bits bits of hi, lo.
func (t *trie) insert(hi, lo uint64, bits int, idx int32) {
	n, depth := int32(0), 0
	for ; bits-depth > 4; depth += 4 {
		e := nibble(hi, lo, depth)
		c := t.nodes[n][e].child
		if c == 0 {
			c = int32(len(t.nodes))
			t.nodes = append(t.nodes, newTrieNode())
			t.nodes[n][e].child = c
		}
		n = c
	}
	// The last 0-4 bits cover the slots that share them.
	r := bits - depth
	first := 0
	if r > 0 {
		first = nibble(hi, lo, depth) &^ (1<<(4-r) - 1)
	}
	for e := first; e < first+1<<(4-r); e++ {
		if b := t.nodes[n][e].best; b < 0 || idx < b {
			t.nodes[n][e].best = idx
		}
	}
}

// lookup returns the lowest profile index whose prefix covers the first
// bits bits of hi, lo, or -1.
func (t *trie) lookup(hi, lo uint64, bits int) int32 {
	nodes := t.nodes
	best := int32(-1)
	n := int32(0)
	for depth := 0; depth < bits; depth += 4 {
		s := &nodes[n][nibble(hi, lo, depth)]
		if b := s.best; b >= 0 && (best < 0 || b < best) {
			best = b
		}
		if s.child == 0 {
			break
		}
		n = s.child
	}
	return best
}
