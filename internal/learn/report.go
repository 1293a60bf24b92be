package learn

import (
	"cmp"
	"fmt"
	"io"
	"net/netip"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/arcfence/arcfence/internal/audit"
	"github.com/arcfence/arcfence/internal/config"
	"github.com/arcfence/arcfence/policy"
)

// maxGroupClients bounds the client addresses kept per destination.
const maxGroupClients = 8

// Group is one refused destination with everything the logs said about it.
type Group struct {
	// Host is the refused name or address.
	Host string `json:"host"`
	// Port is the refused port (0 for DNS refusals, and for proxy refusals
	// of a missing port).
	Port int `json:"port,omitempty"`
	// DNS is true for names the DNS filter refused (no port known).
	DNS bool `json:"dns,omitempty"`
	// Path is the first URL path logged for it (plain-HTTP refusals).
	Path string `json:"path,omitempty"`
	// Components are the components that refused it ("proxy", "dns").
	Components []string `json:"components"`
	// Reasons counts its refusals by reason.
	Reasons map[string]int64 `json:"reasons"`
	// Count is the number of refusals, summary counts included.
	Count int64 `json:"count"`
	// WouldDeny is how many of them learn mode let through.
	WouldDeny int64 `json:"would_deny"`
	// Clients are the first few clients seen (at most 8).
	Clients []string `json:"clients"`
	// Profile is the profile that refused it ("" when the lines name none).
	Profile string `json:"profile,omitempty"`
	// FirstSeen and LastSeen bound the refusals (zero when the lines had no time).
	FirstSeen time.Time `json:"first_seen,omitzero"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
}

type groupKey struct {
	host    string
	port    int
	dns     bool
	profile string
}

// Collector groups refusals by destination. The zero value is not usable;
// call NewCollector.
type Collector struct {
	// Stats counts what was read.
	Stats  Stats
	groups map[groupKey]*Group
}

// NewCollector returns an empty Collector.
func NewCollector() *Collector {
	return &Collector{groups: map[groupKey]*Group{}}
}

// ReadLog reads one log (name labels it in messages) into c.
func (c *Collector) ReadLog(r io.Reader, name string) error {
	return Read(r, name, &c.Stats, c.Add)
}

// Add records one refusal line (Read counts it in Stats; Add does not).
func (c *Collector) Add(r Refusal) {
	if r.Unitemized || r.Host == "" {
		return
	}
	isDNS := r.Component == audit.ComponentDNS
	k := groupKey{host: r.Host, port: r.Port, dns: isDNS, profile: r.Profile}
	g := c.groups[k]
	if g == nil {
		g = &Group{Host: r.Host, Port: r.Port, DNS: isDNS, Reasons: map[string]int64{}, Clients: []string{}, Profile: r.Profile}
		c.groups[k] = g
	}
	if g.Path == "" {
		g.Path = r.Path
	}
	if !slices.Contains(g.Components, r.Component) {
		g.Components = append(g.Components, r.Component)
		slices.Sort(g.Components)
	}
	g.Reasons[r.Reason.String()] += r.Count
	g.Count += r.Count
	if r.WouldDeny {
		g.WouldDeny += r.Count
	}
	if r.Client != "" && len(g.Clients) < maxGroupClients && !slices.Contains(g.Clients, r.Client) {
		g.Clients = append(g.Clients, r.Client)
	}
	if !r.FirstSeen.IsZero() && (g.FirstSeen.IsZero() || r.FirstSeen.Before(g.FirstSeen)) {
		g.FirstSeen = r.FirstSeen
	}
	if r.LastSeen.After(g.LastSeen) {
		g.LastSeen = r.LastSeen
	}
}

// Split returns the collected destinations by profile: the groups of
// each profile name in names, and under def those of every other name
// (lines that name no profile or one the config lacks). Stats are c's.
func (c *Collector) Split(names []string, def string) map[string]*Collector {
	out := map[string]*Collector{}
	for k, g := range c.groups {
		name := k.profile
		if !slices.Contains(names, name) {
			name = def
		}
		sub := out[name]
		if sub == nil {
			sub = &Collector{Stats: c.Stats, groups: map[groupKey]*Group{}}
			out[name] = sub
		}
		sub.groups[k] = g
	}
	return out
}

// Groups returns the destinations, most refused first (then by host and port).
func (c *Collector) Groups() []Group {
	out := make([]Group, 0, len(c.groups))
	for _, g := range c.groups {
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b Group) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Host, b.Host), cmp.Compare(a.Port, b.Port),
			boolCmp(a.DNS, b.DNS))
	})
	return out
}

// Actions say what a report item needs.
const (
	// ActionAllowed: the config already admits the destination (it changed
	// since the lines were logged); nothing to add.
	ActionAllowed = "already-allowed"
	// ActionCatalog: a catalog offering, feature or region admits it.
	ActionCatalog = "catalog"
	// ActionAllow: nothing in the catalog does; an allow entry is suggested.
	ActionAllow = "allow"
	// ActionDenyList: the config's deny list refuses it; nothing suggested.
	ActionDenyList = "deny-list"
	// ActionGuard: a safety guard refused it (client, private address,
	// invalid host or port, limits); allowlist lines do not change that.
	ActionGuard = "guard"
	// ActionClient: the name is allowed but the client's bytes were refused
	// (sni-mismatch, not-tls); allowlist lines do not change that.
	ActionClient = "client"
	// ActionGateway: with connection gateway, a direct row the Arc gateway
	// fronts: the agent went direct instead of through the gateway; nothing
	// suggested (see Note).
	ActionGateway = "gateway"
	// ActionUnresolved: no suggestion admits it (see Note).
	ActionUnresolved = "unresolved"
)

// Item is one destination of a report and what would admit it.
type Item struct {
	Group
	// Action is one of the Action constants.
	Action string `json:"action"`
	// Offering, Feature and Region are what the catalog needs added
	// (ActionCatalog); Section is the spec section of the admitting row.
	Offering string `json:"offering,omitempty"`
	Feature  string `json:"feature,omitempty"`
	Region   string `json:"region,omitempty"`
	Section  string `json:"section,omitempty"`
	// AlsoFeatures are further features the row needs with Feature (a row
	// of the spec's "A and B", such as the 2026-08 obo row).
	AlsoFeatures []string `json:"also_features,omitempty"`
	// Allow is the suggested allow entry (ActionAllow).
	Allow string `json:"allow,omitempty"`
	// Rule is the row that admits the destination under the suggested
	// config (or the current one, for ActionAllowed).
	Rule string `json:"rule,omitempty"`
	// Note explains guards, deny-list hits and unresolved items.
	Note string `json:"note,omitempty"`
}

// Additions are config values to add.
type Additions struct {
	Offerings []string `json:"offerings"`
	Features  []string `json:"features"`
	Regions   []string `json:"regions"`
	Allow     []string `json:"allow"`
}

// Empty reports whether there is nothing to add.
func (a Additions) Empty() bool {
	return len(a.Offerings)+len(a.Features)+len(a.Regions)+len(a.Allow) == 0
}

// Report is the outcome of Analyze.
type Report struct {
	// Stats counts the lines read.
	Stats Stats `json:"stats"`
	// Items are the destinations, most refused first.
	Items []Item `json:"items"`
	// Current are the config's offerings, features, regions and allow entries.
	Current Additions `json:"current"`
	// Added are the values to add to them.
	Added Additions `json:"added"`
	// Why maps each added value to the destinations that need it (in
	// "offerings/kubernetes" form for the key).
	Why map[string][]string `json:"why"`
	// NewProfiles are profiles suggested for the clients of an offering
	// the profile does not select (see ActionProfile).
	NewProfiles []NewProfile `json:"new_profiles,omitempty"`
}

// actionable are the reasons an allowlist change can fix.
func actionable(r string) bool {
	switch r {
	case policy.NotInAllowlist.String(), policy.PortNotAllowed.String(), policy.PathNotAllowed.String(),
		policy.IPLiteral.String():
		return true
	}
	return false
}

// Analyze works out, for the collected destinations, what the config cfg
// needs added: it compiles cfg, asks the policy's Hint for each refused
// destination, applies the hints, then adds allow entries for what is
// still refused, and checks every destination through Decide under the
// resulting config. cfg must be valid.
func Analyze(cfg config.Config, c *Collector) (*Report, error) {
	return AnalyzeProfile(cfg, c, nil)
}

// AnalyzeProfile is Analyze for one profile of a configuration with
// profiles, whose names are taken: the destinations of an offering the
// profile does not select that only some of its clients reached for get a
// profile of their own (Report.NewProfiles) instead of widening the
// profile. With taken empty (a configuration without profiles) it is
// Analyze: the offering is added.
func AnalyzeProfile(cfg config.Config, c *Collector, taken []string) (*Report, error) {
	base, err := config.Compile(&cfg)
	if err != nil {
		return nil, err
	}
	rep := &Report{Stats: c.Stats, Why: map[string][]string{},
		Current: Additions{Offerings: slices.Clone(cfg.Offerings), Features: slices.Clone(cfg.Features),
			Regions: slices.Clone(cfg.Regions), Allow: slices.Clone(cfg.Allow)}}
	rep.Current.normalize()
	hint := audit.PolicyHint(func(string) *policy.Policy { return base })

	var todo []int // items still to admit
	for _, g := range c.Groups() {
		it := Item{Group: g}
		var fixable bool
		for r := range g.Reasons {
			fixable = fixable || actionable(r)
		}
		switch {
		case fixable:
			if d := decide(base, g); d.Allowed() {
				it.Action, it.Rule = ActionAllowed, d.Rule
				it.Note = "the config admits it already (it changed after these lines were logged)"
				break
			}
			h := hint("", dest(g))
			if h.Fronted {
				it.Action, it.Section = ActionGateway, h.Section
				it.Note = fmt.Sprintf("the gateway fronts this (%s, section %q); is the agent configured for the gateway? "+
					"(servers: azcmagent config set connection.type gateway on agents 1.50 and older; clusters: az connectedk8s update --gateway-resource-id)",
					h.Rule, h.Section)
				if h.Offering != "" {
					it.Note += fmt.Sprintf("; offering %s is not selected: adding it admits its gateway rows, not this direct row", h.Offering)
				}
				break
			}
			todo = append(todo, len(rep.Items))
			if base.Connection() == policy.ConnectionGateway && h.Found() && h.Revision == "" {
				it.Note = "not fronted by the gateway: its direct row is needed"
			}
			switch {
			case h.Found() && h.Revision != "":
				it.Note = fmt.Sprintf("%s (%s, section %q), not in catalog revision %s; read 'arcfence catalog diff --from %s --to %s' "+
					"and set catalog.revision: %s, or allow it", h.Text(), h.Rule, h.Section, base.Revision(), base.Revision(), h.Revision, h.Revision)
			case h.Found() && h.Phase == "" && h.DataServicesMode == "":
				it.Action = ActionCatalog
				it.Offering, it.Feature, it.Region, it.Section = h.Offering, h.Feature, h.Region, h.Section
			case h.Found() && h.Phase != "":
				it.Note = fmt.Sprintf("an installation-time row (%s, section %q) that phase %s switches off; "+
					"set phase: onboarding while installing, or allow it", h.Rule, h.Section, cfg.Phase)
			case h.Found():
				it.Note = fmt.Sprintf("a direct-mode data services row (%s, section %q) that data_services.mode %s switches off; "+
					"set data_services.mode: %s, or allow it", h.Rule, h.Section, cfg.DataServices.Mode, h.DataServicesMode)
			}
		case g.Reasons[policy.ExplicitDeny.String()] > 0:
			it.Action, it.Note = ActionDenyList, "your deny list refuses it; learn report never suggests lifting a deny entry"
		case g.Reasons[policy.SNIMismatch.String()]+g.Reasons[policy.NotTLS.String()] > 0:
			it.Action, it.Note = ActionClient, "the name is allowed but the client's first bytes were refused (sni-mismatch or not-tls): a client misusing the tunnel, not a missing row"
		default:
			it.Action, it.Note = ActionGuard, guardNote(g)
		}
		rep.Items = append(rep.Items, it)
	}

	if len(taken) > 0 {
		todo = suggestProfiles(rep, cfg, taken, todo)
	}
	// Apply the catalog hints, one destination at a time, keeping only
	// additions that leave a valid config.
	cand := cfg
	cand.Offerings, cand.Features, cand.Regions, cand.Allow =
		slices.Clone(rep.Current.Offerings), slices.Clone(rep.Current.Features),
		slices.Clone(rep.Current.Regions), slices.Clone(rep.Current.Allow)
	for _, i := range todo {
		it := &rep.Items[i]
		if it.Action != ActionCatalog {
			continue
		}
		next := cand
		next.Offerings = addTo(slices.Clone(cand.Offerings), it.Offering)
		next.Features = addTo(slices.Clone(cand.Features), it.Feature)
		next.Regions = addTo(slices.Clone(cand.Regions), it.Region)
		if _, err := config.Compile(&next); err != nil {
			it.Action, it.Offering, it.Feature, it.Region, it.Section = "", "", "", "", ""
			it.Note = fmt.Sprintf("the catalog row needs a change the config cannot take (%v)", firstLine(err))
			continue
		}
		// A row may need every one of several features: ask again under
		// the extended config, once per feature at most.
		for range policy.Features() {
			np, err := config.Compile(&next)
			if err != nil || decide(np, it.Group).Allowed() {
				break
			}
			h := audit.PolicyHint(func(string) *policy.Policy { return np })("", dest(it.Group))
			if h.Feature == "" || h.Offering != "" || h.Region != "" || slices.Contains(next.Features, h.Feature) {
				break
			}
			next.Features = addTo(slices.Clone(next.Features), h.Feature)
			it.AlsoFeatures = append(it.AlsoFeatures, h.Feature)
		}
		if _, err := config.Compile(&next); err != nil {
			continue // cannot happen: only known features were added
		}
		cand = next
	}
	p, err := config.Compile(&cand)
	if err != nil {
		return nil, fmt.Errorf("learn: suggested config does not compile: %w", err)
	}
	// What the hints do not admit gets an allow entry.
	for _, i := range todo {
		it := &rep.Items[i]
		if decide(p, it.Group).Allowed() {
			continue
		}
		it.Offering, it.Feature, it.Region, it.Section, it.AlsoFeatures = "", "", "", "", nil
		if _, ok := policy.NormalizeHost(it.Host); !ok {
			// Never turn a name that is not one ("*.com" in an edited log)
			// into an allow entry.
			it.Action, it.Note = ActionUnresolved, "not a valid host name or address; nothing suggested"
			continue
		}
		entry := allowEntry(it.Group)
		if !slices.Contains(cand.Allow, entry) {
			// A name from a log may not make a valid entry (an edited or
			// foreign log): such an item stays unresolved, the rest goes on.
			next := cand
			next.Allow = append(slices.Clone(cand.Allow), entry)
			if _, err := config.Compile(&next); err != nil {
				it.Action = ActionUnresolved
				it.Note = fmt.Sprintf("no valid allow entry admits it (%s)", firstLine(err))
				continue
			}
			cand = next
		}
		it.Action, it.Allow = ActionAllow, entry
	}
	if p, err = config.Compile(&cand); err != nil {
		return nil, fmt.Errorf("learn: suggested config does not compile: %w", err)
	}
	for _, i := range todo {
		it := &rep.Items[i]
		if it.Action == ActionUnresolved {
			continue
		}
		d := decide(p, it.Group)
		if !d.Allowed() {
			it.Action, it.Allow = ActionUnresolved, ""
			it.Note = fmt.Sprintf("still refused with the suggested lines (%s)", d.Reason)
			continue
		}
		it.Rule = d.Rule
		name := destName(it.Group)
		kvs := [][2]string{{"offerings", it.Offering}, {"features", it.Feature}, {"regions", it.Region}, {"allow", it.Allow}}
		for _, f := range it.AlsoFeatures {
			kvs = append(kvs, [2]string{"features", f})
		}
		for _, kv := range kvs {
			if kv[1] != "" {
				k := kv[0] + "/" + kv[1]
				if !slices.Contains(rep.Why[k], name) {
					rep.Why[k] = append(rep.Why[k], name)
				}
			}
		}
	}
	// Keep only the allow entries that admit something.
	cand.Allow = slices.Clone(rep.Current.Allow)
	for _, it := range rep.Items {
		if it.Action == ActionAllow {
			cand.Allow = addTo(cand.Allow, it.Allow)
		}
	}
	rep.Added = Additions{
		Offerings: added(rep.Current.Offerings, cand.Offerings),
		Features:  added(rep.Current.Features, cand.Features),
		Regions:   added(rep.Current.Regions, cand.Regions),
		Allow:     added(rep.Current.Allow, cand.Allow),
	}
	return rep, nil
}

func (a *Additions) normalize() {
	for _, l := range []*[]string{&a.Offerings, &a.Features, &a.Regions, &a.Allow} {
		if *l == nil {
			*l = []string{}
		}
	}
}

// addTo appends s unless it is empty or present.
func addTo(list []string, s string) []string {
	if s == "" || slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// added returns the values of now that were not in before, in order.
func added(before, now []string) []string {
	out := []string{}
	for _, s := range now {
		if !slices.Contains(before, s) {
			out = append(out, s)
		}
	}
	return out
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// dest is the destination a group stands for (port 0 for a DNS name).
func dest(g Group) policy.Dest {
	return policy.Dest{Host: g.Host, Port: g.Port, Path: g.Path, Plain: g.Path != ""}
}

// decide decides on a group: by name for a DNS-only group, else on its
// host, port and (for plain-HTTP refusals) path.
func decide(p *policy.Policy, g Group) policy.Decision {
	if g.DNS {
		return p.DecideName(g.Host)
	}
	return p.Decide(dest(g))
}

// destName is how a report names a group.
func destName(g Group) string {
	if g.DNS {
		return g.Host + " (dns)"
	}
	s := policy.FormatHostPort(g.Host, g.Port)
	if g.Path != "" {
		s += g.Path
	}
	return s
}

// allowEntry is the allow entry that admits a group: the name alone for
// port 443 (and for a DNS-only name), host:port otherwise, and
// host:port/dir for a plain-HTTP request (the narrowest entry that admits
// the logged path's directory, so the neighbouring files are admitted too).
func allowEntry(g Group) string {
	host := g.Host
	if a, err := netip.ParseAddr(host); err == nil {
		if g.Port == 443 || g.DNS {
			return a.String()
		}
		return netip.AddrPortFrom(a, uint16(g.Port)).String()
	}
	dir := ""
	if g.Path != "" {
		if d := path.Dir(path.Clean(g.Path)); d != "/" && d != "." {
			dir = d
		}
	}
	if (g.Port == 443 || g.DNS) && dir == "" {
		return host
	}
	return fmt.Sprintf("%s:%d%s", host, g.Port, dir)
}

// guardNote explains a refusal by a safety guard.
func guardNote(g Group) string {
	var notes []string
	for _, r := range policy.Reasons() {
		if g.Reasons[r.String()] == 0 {
			continue
		}
		switch r {
		case policy.PrivateAddress:
			notes = append(notes, "private-address: the name resolved to a private or special address; allow_ranges lifts the guard for a CIDR")
		case policy.ClientNotAllowed:
			notes = append(notes, "client-not-allowed: the client is outside `clients`")
		case policy.InvalidHost:
			notes = append(notes, "invalid-host: the client asked for a name that is not a valid DNS name")
		case policy.InvalidPort:
			notes = append(notes, "invalid-port: the client asked for a missing or invalid port")
		case policy.LimitExceeded:
			notes = append(notes, "limit-exceeded: a tunnel limit (limits.*) was hit")
		}
	}
	if len(notes) == 0 {
		return "refused by a safety guard; learn mode keeps it enforced"
	}
	return strings.Join(notes, "; ")
}
