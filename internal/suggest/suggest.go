// Package suggest finds the known word nearest to a mistyped one, for error
// messages that name the fix ("unknown key "lisen"; did you mean "listen"?").
package suggest

import "sort"

// Distance is the Levenshtein edit distance between a and b (bytes).
func Distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Nearest returns up to n candidates within maxDist of word, nearest first
// (ties in alphabetical order). dist, when not nil, replaces Distance.
func Nearest(word string, candidates []string, maxDist, n int, dist func(a, b string) int) []string {
	if dist == nil {
		dist = Distance
	}
	type cand struct {
		name string
		d    int
	}
	var cs []cand
	for _, c := range candidates {
		if d := dist(word, c); d <= maxDist {
			cs = append(cs, cand{c, d})
		}
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].d != cs[j].d {
			return cs[i].d < cs[j].d
		}
		return cs[i].name < cs[j].name
	})
	out := make([]string, 0, n)
	for i := 0; i < len(cs) && i < n; i++ {
		out = append(out, cs[i].name)
	}
	return out
}
