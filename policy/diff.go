package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Diff changes.
const (
	// DiffAdded: a row the newer revision lists and the older does not.
	DiffAdded = "added"
	// DiffRemoved: a row the older revision lists and the newer does not.
	DiffRemoved = "removed"
	// DiffChanged: a row both list (or one the newer took over, see
	// SpecRow.Replaces) whose pattern, ports, condition or private-link
	// mark differ.
	DiffChanged = "changed"
)

// DiffRow is one difference between two catalog revisions: one table row
// of one offering in one cloud.
type DiffRow struct {
	// Change is DiffAdded, DiffRemoved or DiffChanged.
	Change string `json:"change"`
	// Offering is the table's offering.
	Offering string `json:"offering"`
	// Feature is the row's feature(s) in the newer revision (the older for
	// removed rows), joined with "," ("+" when all are needed); "" = always.
	Feature string `json:"feature"`
	// Cloud is the cloud whose tables list the row.
	Cloud string `json:"cloud"`
	// Pattern is the row's pattern and path in the newer revision (the
	// older for removed rows).
	Pattern string `json:"pattern"`
	// From and To are the row in the older and newer revision (nil when absent).
	From *DiffSide `json:"from,omitempty"`
	To   *DiffSide `json:"to,omitempty"`
	// Changes say what differs for a changed row ("ports 443 -> 443,80").
	Changes []string `json:"changes,omitempty"`
}

// DiffSide is a row as one revision lists it.
type DiffSide struct {
	// Pattern is the pattern and path.
	Pattern string `json:"pattern"`
	// Ports the row needs.
	Ports []int `json:"ports"`
	// Feature is the row's feature(s), as DiffRow.Feature.
	Feature string `json:"feature"`
	// When is the normalized "when required".
	When string `json:"when"`
	// PrivateLink is the private-link mark ("" where the table has none).
	PrivateLink string `json:"private_link"`
	// Section and Table name the source table.
	Section string `json:"section"`
	Table   string `json:"table"`
}

// DiffFilter narrows a diff. The zero value keeps every row.
type DiffFilter struct {
	// Offerings keep the rows of these offerings' own tables (aliases
	// accepted); empty = every offering.
	Offerings []string
	// Features keep the rows that need no feature or one of these; empty =
	// every row.
	Features []string
	// Cloud keeps one cloud's rows; "" = every cloud.
	Cloud string
}

// diffRow is one catalog row while diffing.
type diffRow struct {
	key   string // cloud, offering, pattern+path
	side  DiffSide
	feats []string
	repl  []string
	used  bool
}

// Diff returns the rows that differ between revisions from and to of the
// whole catalog, in Offerings order, then feature, cloud, pattern. Errors
// name the flag (--from, --to, --offerings, --features, --cloud) and the
// allowed values.
func (c *Catalog) Diff(from, to string, f DiffFilter) ([]DiffRow, error) {
	var errs []string
	for _, r := range [][2]string{{"--from", from}, {"--to", to}} {
		if !slices.Contains(Revisions(), r[1]) {
			errs = append(errs, fmt.Sprintf("%s: unknown revision %q; expected one of %s", r[0], r[1], strings.Join(Revisions(), ", ")))
		}
	}
	offs := map[string]bool{}
	for _, o := range f.Offerings {
		n := strings.ToLower(strings.TrimSpace(o))
		if a, ok := offeringAliases[n]; ok {
			n = a
		}
		if !slices.Contains(Offerings(), n) {
			errs = append(errs, fmt.Sprintf("--offerings: unknown offering %q; expected one of %s", o, strings.Join(Offerings(), ", ")))
		}
		offs[tableOffering(n)] = true
	}
	for _, ft := range f.Features {
		if !slices.Contains(Features(), ft) {
			errs = append(errs, fmt.Sprintf("--features: unknown feature %q; expected one of %s", ft, strings.Join(Features(), ", ")))
		}
	}
	if f.Cloud != "" && !slices.Contains(Clouds(), f.Cloud) {
		errs = append(errs, fmt.Sprintf("--cloud: unknown cloud %q; expected one of %s", f.Cloud, strings.Join(Clouds(), ", ")))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	keep := func(s *SpecRow) bool {
		if len(offs) > 0 && !offs[s.Offering] {
			return false
		}
		if len(f.Features) > 0 && len(s.Features) > 0 && !slices.ContainsFunc(s.Features, func(x string) bool { return slices.Contains(f.Features, x) }) {
			return false
		}
		return true
	}
	collect := func(rev string) []*diffRow {
		var out []*diffRow
		for _, cl := range Clouds() {
			if f.Cloud != "" && cl != f.Cloud {
				continue
			}
			for _, e := range c.Whole().Select(rev, cl).Entries {
				for i := range e.Sources {
					s := &e.Sources[i]
					if !keep(s) || s.Gateway {
						continue // the gateway rows are no revision's direct table
					}
					pat := e.Pattern + e.Path
					d := &diffRow{
						key: cl + "\x00" + s.Offering + "\x00" + strings.ToLower(pat),
						side: DiffSide{Pattern: pat, Ports: slices.Clone(e.Ports), Feature: featureLabel(s), When: s.When,
							PrivateLink: s.PrivateLink, Section: s.Section, Table: s.Table},
						feats: s.Features,
					}
					for _, r := range strings.Split(s.Replaces, ",") {
						if r = strings.TrimSpace(r); r != "" {
							d.repl = append(d.repl, cl+"\x00"+s.Offering+"\x00"+strings.ToLower(r))
						}
					}
					out = append(out, d)
				}
			}
		}
		return out
	}
	olds, news := collect(from), collect(to)
	var out []DiffRow
	emit := func(change string, o, n *diffRow) {
		r := DiffRow{Change: change}
		ref := n
		if n == nil {
			ref = o
		}
		parts := strings.SplitN(ref.key, "\x00", 3)
		r.Cloud, r.Offering = parts[0], parts[1]
		r.Pattern, r.Feature = ref.side.Pattern, ref.side.Feature
		if o != nil {
			s := o.side
			r.From = &s
		}
		if n != nil {
			s := n.side
			r.To = &s
		}
		if change == DiffChanged {
			r.Changes = sideChanges(o.side, n.side)
			if len(r.Changes) == 0 {
				return
			}
		}
		out = append(out, r)
	}
	// pair rows of the same key: identical features first, then in order
	for pass := 0; pass < 2; pass++ {
		for _, n := range news {
			if n.used {
				continue
			}
			for _, o := range olds {
				if o.used || o.key != n.key || (pass == 0 && featureKey(o.feats) != featureKey(n.feats)) {
					continue
				}
				o.used, n.used = true, true
				emit(DiffChanged, o, n)
				break
			}
		}
	}
	for _, n := range news {
		if n.used {
			continue
		}
		for _, o := range olds {
			if !o.used && slices.Contains(n.repl, o.key) {
				o.used, n.used = true, true
				emit(DiffChanged, o, n)
				for _, o2 := range olds { // the other rows it took over
					if !o2.used && slices.Contains(n.repl, o2.key) {
						o2.used = true
						emit(DiffChanged, o2, n)
					}
				}
				break
			}
		}
	}
	for _, o := range olds {
		if !o.used {
			emit(DiffRemoved, o, nil)
		}
	}
	for _, n := range news {
		if !n.used {
			emit(DiffAdded, nil, n)
		}
	}
	offIndex := func(o string) int { return slices.Index(Offerings(), o) }
	cloudIndex := func(c string) int { return slices.Index(Clouds(), c) }
	changeIndex := func(c string) int { return slices.Index([]string{DiffRemoved, DiffChanged, DiffAdded}, c) }
	slices.SortStableFunc(out, func(a, b DiffRow) int {
		switch {
		case a.Offering != b.Offering:
			return offIndex(a.Offering) - offIndex(b.Offering)
		case a.Feature != b.Feature:
			return strings.Compare(a.Feature, b.Feature)
		case a.Cloud != b.Cloud:
			return cloudIndex(a.Cloud) - cloudIndex(b.Cloud)
		case a.Change != b.Change:
			return changeIndex(a.Change) - changeIndex(b.Change)
		}
		return strings.Compare(a.Pattern, b.Pattern)
	})
	return out, nil
}

// featureLabel returns a row's features as DiffRow.Feature gives them.
func featureLabel(s *SpecRow) string {
	if s.AllFeatures {
		return strings.Join(s.Features, "+")
	}
	return strings.Join(s.Features, ",")
}

func featureKey(f []string) string {
	c := slices.Clone(f)
	slices.Sort(c)
	return strings.Join(c, ",")
}

// sideChanges says what differs between two sides of a row.
func sideChanges(o, n DiffSide) []string {
	var out []string
	add := func(what, a, b string) {
		if a != b {
			out = append(out, what+" "+dashed(a)+" -> "+dashed(b))
		}
	}
	add("pattern", o.Pattern, n.Pattern)
	add("ports", portList(o.Ports), portList(n.Ports))
	add("feature", o.Feature, n.Feature)
	add("when", o.When, n.When)
	add("private_link", o.PrivateLink, n.PrivateLink)
	return out
}

func dashed(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func portList(ports []int) string {
	c := slices.Clone(ports)
	slices.Sort(c)
	s := make([]string, len(c))
	for i, p := range c {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ",")
}
