package learn

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/arcfence/arcfence/internal/config"
	"github.com/arcfence/arcfence/policy"
)

// ActionProfile: the destination belongs to an offering the profile does
// not select, and only some of the profile's clients reach for it: a
// profile of their own is suggested (Report.NewProfiles) instead of adding
// the offering for every client of the profile.
const ActionProfile = "profile"

// NewProfile is a profile learn report suggests for the clients of one
// offering that the analysed profile does not select.
type NewProfile struct {
	// Name is the suggested name (the offering's).
	Name string `json:"name"`
	// Clients are the addresses that reached for the offering, as /32 or /128.
	Clients []string `json:"clients"`
	// Offerings, Features and Regions are its selection.
	Offerings []string `json:"offerings"`
	Features  []string `json:"features"`
	Regions   []string `json:"regions,omitempty"`
	// For names the destinations that need it.
	For []string `json:"for"`
	// Before is the profile it is carved from: it must come before that
	// profile in the file (the first profile whose clients match wins).
	Before string `json:"before,omitempty"`
}

// suggestProfiles moves the catalog items of todo that bring an offering
// cfg does not select into suggested profiles, when the clients that
// needed that offering are not every client seen refused in this profile
// (the rest did without it, so adding the offering would widen the profile
// for them). It returns the items left to add to cfg.
func suggestProfiles(rep *Report, cfg config.Config, taken []string, todo []int) []int {
	var seen []string
	for _, it := range rep.Items {
		for _, c := range it.Clients {
			seen = addTo(seen, c)
		}
	}
	byOffering := map[string][]int{}
	var order []string
	for _, i := range todo {
		it := &rep.Items[i]
		if it.Action != ActionCatalog || it.Offering == "" || len(it.Clients) == 0 {
			continue
		}
		if _, ok := byOffering[it.Offering]; !ok {
			order = append(order, it.Offering)
		}
		byOffering[it.Offering] = append(byOffering[it.Offering], i)
	}
	moved := map[int]bool{}
	for _, off := range order {
		items := byOffering[off]
		np := NewProfile{Name: profileName(off, taken), Offerings: []string{off}, Features: []string{}}
		var need []string
		for _, i := range items {
			it := rep.Items[i]
			for _, c := range it.Clients {
				need = addTo(need, c)
			}
			np.Features = addTo(np.Features, it.Feature)
			if it.Region != "" && !slices.Contains(cfg.Regions, it.Region) {
				np.Regions = addTo(np.Regions, it.Region)
			}
			np.For = addTo(np.For, destName(it.Group))
		}
		if len(need) >= len(seen) {
			continue // every client seen needs it: the profile's own offering
		}
		for _, c := range need {
			p, err := config.ParsePrefix(c) // an address: its /32 or /128
			if err != nil {
				np.Clients = nil
				break
			}
			np.Clients = append(np.Clients, p.String())
		}
		if len(np.Regions) > 0 {
			np.Regions = append(slices.Clone(cfg.Regions), np.Regions...)
		}
		if np.Clients == nil || !np.admits(cfg, rep, items) {
			continue
		}
		taken = append(taken, np.Name)
		rep.NewProfiles = append(rep.NewProfiles, np)
		var others []string
		for _, c := range seen {
			if !slices.Contains(need, c) {
				others = append(others, c)
			}
		}
		for _, i := range items {
			it := &rep.Items[i]
			it.Action = ActionProfile
			it.Note = fmt.Sprintf("clients %s reach rows of offering %s, which this profile does not select, while its other clients "+
				"(%s) did without it: suggested profile %q for them instead of %s for every client",
				joinShort(need, 4), off, joinShort(others, 4), np.Name, off)
			moved[i] = true
		}
	}
	var left []int
	for _, i := range todo {
		if !moved[i] {
			left = append(left, i)
		}
	}
	return left
}

// admits reports whether the profile np, compiled as the flat config cfg
// with np's selection, admits every item of items.
func (np NewProfile) admits(cfg config.Config, rep *Report, items []int) bool {
	c := cfg
	c.Offerings, c.Features, c.Allow = np.Offerings, np.Features, nil
	if len(np.Regions) > 0 {
		c.Regions = np.Regions
	}
	p, err := config.Compile(&c)
	if err != nil {
		return false
	}
	for _, i := range items {
		if !decide(p, rep.Items[i].Group).Allowed() {
			return false
		}
	}
	return true
}

// profileName is the offering's name, made unique among taken.
func profileName(off string, taken []string) string {
	name := off
	for n := 2; slices.Contains(taken, name) || name == policy.DefaultProfile; n++ {
		name = fmt.Sprintf("%s-%d", off, n)
	}
	return name
}

// WriteNewProfiles writes the suggested profiles as entries of a
// `profiles:` list, each line prefixed by indent.
func WriteNewProfiles(w io.Writer, indent string, nps []NewProfile) error {
	var b strings.Builder
	for _, np := range nps {
		where := "put it before profile " + np.Before + " (the first match wins)"
		if np.Before == "" || np.Before == policy.DefaultProfile {
			where = "anywhere in profiles (the default profile is matched last)"
		}
		fmt.Fprintf(&b, "%s- name: %s   # new, for %s: %s\n", indent, np.Name, printable(joinShort(np.For, 3)), where)
		fmt.Fprintf(&b, "%s  clients: %s\n", indent, list(np.Clients))
		fmt.Fprintf(&b, "%s  offerings: %s\n", indent, list(np.Offerings))
		fmt.Fprintf(&b, "%s  features: %s\n", indent, list(np.Features))
		if len(np.Regions) > 0 {
			fmt.Fprintf(&b, "%s  regions: %s\n", indent, list(np.Regions))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
