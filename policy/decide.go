package policy

import (
	"net/netip"
	"slices"
	"strings"
)

// Decide decides on one destination. It is a pure function of d and the
// policy: no I/O, no locks, and no allocation unless the host needs lower
// casing. Its cost grows with the labels of the name, not with the number
// of rules. Reasons are checked in this order: invalid-host, invalid-port,
// explicit-deny, ip-literal, not-in-allowlist, port-not-allowed,
// path-not-allowed.
func (p *Policy) Decide(d Dest) Decision {
	host, ok, ipForm := normalize(d.Host)
	if !ok {
		return Decision{Reason: InvalidHost, Host: d.Host, Port: d.Port}
	}
	if d.Port < 1 || d.Port > 65535 {
		return Decision{Reason: InvalidPort, Host: host, Port: d.Port}
	}
	if ipForm {
		return p.decideAddr(host, d)
	}
	if !p.deny.empty() {
		if c, i := p.deny.denied(host, d.Port); c != nil {
			return Decision{Reason: ExplicitDeny, Rule: c.denyName(i, d.Port), Host: host, Port: d.Port, Source: SourceDeny}
		}
	}
	var st lookup
	p.allow.find(host, d, &st)
	if st.best != nil {
		return allowOf(st.best, st.port, host, d.Port)
	}
	dec := Decision{Host: host, Port: d.Port, Reason: NotInAllowlist}
	switch {
	case st.pathMiss:
		dec.Reason = PathNotAllowed
	case st.nameHit:
		dec.Reason = PortNotAllowed
	}
	return dec
}

// allowOf builds the Decision for row c admitting host on port (c.names[i]).
func allowOf(c *crow, i int, host string, port int) Decision {
	return Decision{
		Verdict:   Allow,
		Rule:      c.names[i],
		Offering:  c.offering,
		Feature:   c.feature,
		Host:      host,
		Port:      port,
		Source:    c.source,
		TLSOnly:   c.tls && port != 80,
		PrivateOK: c.privateOK,
	}
}

// decideAddr decides on an IP literal (or an IPv4 form such as 2130706433):
// only address entries admit it.
func (p *Policy) decideAddr(host string, d Dest) Decision {
	dec := Decision{Host: host, Port: d.Port, Reason: IPLiteral}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" {
		return dec
	}
	dec.Addr = a
	u := a.Unmap()
	for _, c := range p.denyAddr[u] {
		if i := c.portIndex(d.Port); i >= 0 {
			dec.Reason, dec.Rule, dec.Source = ExplicitDeny, c.denyName(i, d.Port), SourceDeny
			return dec
		}
	}
	rows := p.allowAddr[u]
	for _, c := range rows {
		i := c.portIndex(d.Port)
		if i < 0 {
			continue
		}
		if c.path != "" && d.Plain && !pathAllowed(c.path, d.Path) {
			dec.Reason = PathNotAllowed
			continue
		}
		if c.path != "" && !d.Plain && d.Port == 80 {
			dec.Reason = PathNotAllowed
			continue
		}
		out := allowOf(c, i, host, d.Port)
		out.Addr = a
		return out
	}
	if len(rows) > 0 && dec.Reason == IPLiteral {
		dec.Reason = PortNotAllowed
	}
	return dec
}

// lookup is the state of one allowlist search.
type lookup struct {
	best     *crow
	port     int // index into best.names
	nameHit  bool
	pathMiss bool
}

// consider checks row c against the destination and records the outcome.
func (st *lookup) consider(c *crow, d *Dest) bool {
	st.nameHit = true
	i := c.portIndex(d.Port)
	if i < 0 {
		return false
	}
	if c.path != "" {
		if d.Plain && !pathAllowed(c.path, d.Path) || !d.Plain && d.Port == 80 {
			st.pathMiss = true
			return false
		}
	}
	st.best, st.port = c, i
	return true
}

// find searches the index in specificity order: exact name, first-label
// globs, then "*." zones from the longest to the shortest. The first row
// that admits the destination wins.
func (ix *index) find(host string, d Dest, st *lookup) {
	for _, c := range ix.exact[host] {
		if st.consider(c, &d) {
			return
		}
	}
	dot := strings.IndexByte(host, '.')
	if dot < 0 {
		return
	}
	if gz := ix.globs[host[dot+1:]]; gz != nil {
		first := host[:dot]
		for _, k := range gz.lens {
			if k >= len(first) {
				continue
			}
			for _, c := range gz.byPrefix[first[:k]] {
				if st.consider(c, &d) {
					return
				}
			}
		}
	}
	for i, labels := dot, strings.Count(host, "."); i >= 0 && labels >= ix.minZone; labels-- {
		if labels <= ix.maxZone {
			for _, c := range ix.suffix[host[i+1:]] {
				if st.consider(c, &d) {
					return
				}
			}
		}
		j := strings.IndexByte(host[i+1:], '.')
		if j < 0 {
			break
		}
		i += j + 1
	}
}

// denied returns the deny row matching host on port (any port when port is
// 0) and the index of its name, or nil.
func (ix *index) denied(host string, port int) (*crow, int) {
	match := func(rows []*crow) (*crow, int) {
		for _, c := range rows {
			if c.ports == nil {
				return c, 0
			}
			if port != 0 {
				if i := c.portIndex(port); i >= 0 {
					return c, i
				}
			}
		}
		return nil, 0
	}
	if c, i := match(ix.exact[host]); c != nil {
		return c, i
	}
	dot := strings.IndexByte(host, '.')
	if dot < 0 {
		return nil, 0
	}
	if gz := ix.globs[host[dot+1:]]; gz != nil {
		first := host[:dot]
		for _, k := range gz.lens {
			if k >= len(first) {
				continue
			}
			if c, i := match(gz.byPrefix[first[:k]]); c != nil {
				return c, i
			}
		}
	}
	for i, labels := dot, strings.Count(host, "."); i >= 0 && labels >= ix.minZone; labels-- {
		if labels <= ix.maxZone {
			if c, k := match(ix.suffix[host[i+1:]]); c != nil {
				return c, k
			}
		}
		j := strings.IndexByte(host[i+1:], '.')
		if j < 0 {
			break
		}
		i += j + 1
	}
	return nil, 0
}

// pathAllowed reports whether path lies under prefix by whole segments:
// "/pub" admits "/pub" and "/pub/x", not "/public". The path is taken as
// the client sent it (no decoding): a percent-encoded or dot-segment path
// that differs from the prefix is refused, never normalized into it, and
// so is a ';' (or "%3b") below the prefix: origins that read it as a path
// parameter (Tomcat, Jetty) resolve "..;" as "..".
func pathAllowed(prefix, path string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	if len(path) != len(prefix) && path[len(prefix)] != '/' {
		return false
	}
	rest := path[len(prefix):]
	if strings.IndexByte(rest, '\\') >= 0 || strings.IndexByte(rest, ';') >= 0 ||
		containsFold(rest, "%5c") || containsFold(rest, "%2f") || containsFold(rest, "%2e") || containsFold(rest, "%3b") {
		// IIS and others read a backslash (or an encoded one) as a
		// separator, and encoded slashes or dots as path syntax: such a
		// path may resolve outside the prefix at the origin.
		return false
	}
	return !strings.Contains(rest, "/../") && !strings.HasSuffix(rest, "/..") &&
		!strings.Contains(rest, "/./") && !strings.HasSuffix(rest, "/.")
}

// DecideName decides on a name for the DNS filter: allowed when any row
// admits it on any port (paths ignored). A deny entry refuses the name only
// when it covers every port. IP forms and invalid names are refused.
func (p *Policy) DecideName(name string) Decision {
	host, ok, ipForm := normalize(name)
	if !ok {
		return Decision{Reason: InvalidHost, Host: name}
	}
	if ipForm {
		return Decision{Reason: IPLiteral, Host: host}
	}
	if c, i := p.deny.denied(host, 0); c != nil {
		return Decision{Reason: ExplicitDeny, Rule: c.names[i], Host: host, Source: SourceDeny}
	}
	var st nameLookup
	p.allow.each(host, &st)
	if st.best == nil {
		return Decision{Reason: NotInAllowlist, Host: host}
	}
	port := 0
	if len(st.best.ports) > 0 {
		port = st.best.ports[0]
	}
	return allowOf(st.best, 0, host, port)
}

// nameLookup keeps the first row matching a name.
type nameLookup struct{ best *crow }

// each finds the most specific row matching host, whatever its port.
func (ix *index) each(host string, st *nameLookup) {
	if rows := ix.exact[host]; len(rows) > 0 {
		st.best = rows[0]
		return
	}
	dot := strings.IndexByte(host, '.')
	if dot < 0 {
		return
	}
	if gz := ix.globs[host[dot+1:]]; gz != nil {
		first := host[:dot]
		for _, k := range gz.lens {
			if k < len(first) {
				if rows := gz.byPrefix[first[:k]]; len(rows) > 0 {
					st.best = rows[0]
					return
				}
			}
		}
	}
	for i, labels := dot, strings.Count(host, "."); i >= 0 && labels >= ix.minZone; labels-- {
		if labels <= ix.maxZone {
			if rows := ix.suffix[host[i+1:]]; len(rows) > 0 {
				st.best = rows[0]
				return
			}
		}
		j := strings.IndexByte(host[i+1:], '.')
		if j < 0 {
			break
		}
		i += j + 1
	}
}

// Hint says what outside a policy's configuration would admit a destination.
type Hint struct {
	// Offering is an offering to add ("" when the selected ones suffice).
	Offering string `json:"offering,omitempty"`
	// Feature is a feature to add ("" when none is needed).
	Feature string `json:"feature,omitempty"`
	// Region is a region to add ("" when none is needed).
	Region string `json:"region,omitempty"`
	// Section is the spec section of the row that would admit it.
	Section string `json:"section,omitempty"`
	// Rule is that row's name on the destination's port.
	Rule string `json:"rule,omitempty"`
	// Phase is "onboarding" when the row is an installation or connection
	// row that the steady phase switches off.
	Phase string `json:"phase,omitempty"`
	// DataServicesMode is "direct" when the row is a direct-mode-only data
	// services row and data_services.mode is indirect.
	DataServicesMode string `json:"data_services_mode,omitempty"`
	// Revision is another catalog revision whose tables list the
	// destination when this policy's revision does not ("" otherwise):
	// the hint "in catalog revision R".
	Revision string `json:"revision,omitempty"`
	// Fronted is true, with connection gateway, when the refused row is a
	// direct row the Arc gateway fronts: the agent should reach it through
	// the gateway; Offering then names the row's offering when none of
	// the selected ones brings it (adding it brings its gateway rows, not
	// this row).
	Fronted bool `json:"fronted,omitempty"`
}

// Text returns the hint as a short phrase for people: "in catalog revision
// R" for a Revision hint, "" otherwise.
func (h Hint) Text() string {
	if h.Revision == "" {
		return ""
	}
	return "in catalog revision " + h.Revision
}

// Found reports whether a catalog row would admit the destination.
func (h Hint) Found() bool { return h.Rule != "" }

// Hint returns what would admit a destination this policy refuses: the
// catalog row (with every offering, feature and region on) that admits it,
// and the offering, feature, region or phase missing from this policy's
// configuration. The zero Hint means nothing in the catalog admits it (an
// allow entry is then the only way).
func (p *Policy) Hint(d Dest) Hint {
	if p.all == nil {
		return Hint{}
	}
	dec := p.all.Decide(d)
	if !dec.Allowed() || dec.Source != SourceCatalog {
		return p.revisionHint(d)
	}
	var st lookup
	host := dec.Host
	p.all.allow.find(host, d, &st)
	c := st.best
	if c == nil || c.entry < 0 {
		return Hint{}
	}
	e := &p.cat.Entries[c.entry]
	h := Hint{Rule: dec.Rule}
	if ok, missing := p.fronted(e); ok {
		h.Fronted, h.Offering, h.Section = true, missing, e.Sources[0].Section
		return h
	}
	if c.region != "" && !containsStr(p.regions, c.region) {
		h.Region = c.region
	}
	// Prefer a spec row whose offering is already brought in by the
	// selection: then only a feature or the phase is missing.
	var pick *SpecRow
	for i := range e.Sources {
		s := &e.Sources[i]
		if s.PrivateLink == PrivateLinkUnused && p.features[FeaturePrivateLink] {
			continue
		}
		if p.broughtBy(e, s) != "" {
			pick = s
			break
		}
	}
	if pick == nil {
		for i := range e.Sources {
			s := &e.Sources[i]
			if s.PrivateLink == PrivateLinkUnused && p.features[FeaturePrivateLink] {
				continue
			}
			pick = s
			if s.Offering == OfferingDataServices && s.DirectOnly && p.selected[OfferingDataServices] {
				h.DataServicesMode = DataServicesDirect
			} else {
				h.Offering = s.Offering
			}
			break
		}
	}
	if pick == nil {
		return Hint{}
	}
	h.Section = pick.Section
	h.Feature = p.missingFeature(pick)
	if (pick.When == WhenInstall || pick.When == WhenConnect) && p.cfg.Phase == PhaseSteady {
		h.Phase = PhaseOnboarding
	}
	if h.Offering == "" && h.Feature == "" && h.Region == "" && h.Phase == "" && h.DataServicesMode == "" {
		// The selection already brings the row: something else (the
		// servicebus allowlist file, a deny entry) refuses the name.
		return Hint{}
	}
	return h
}

// revisionHint returns the hint for a destination that this policy's
// revision does not list: the newest other revision (same cloud) whose
// every-offering policy admits it by a catalog row, or the zero Hint.
func (p *Policy) revisionHint(d Dest) Hint {
	if p.root == nil {
		return Hint{}
	}
	revs := Revisions()
	for i := len(revs) - 1; i >= 0; i-- {
		r := revs[i]
		if r == p.revision || !slices.Contains(p.root.CloudsOf(r), p.cloud) {
			continue
		}
		v := p.root.Select(r, p.cloud)
		all, err := v.allPolicy()
		if err != nil || all == nil {
			continue
		}
		dec := all.Decide(d)
		if !dec.Allowed() || dec.Source != SourceCatalog {
			continue
		}
		h := Hint{Rule: dec.Rule, Revision: r}
		var st lookup
		all.allow.find(dec.Host, d, &st)
		if c := st.best; c != nil && c.entry >= 0 {
			h.Section = v.Entries[c.entry].Sources[0].Section
		}
		return h
	}
	return Hint{}
}

// containsFold reports whether s contains the lower-case ASCII sub (any case).
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
