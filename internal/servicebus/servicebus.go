// Package servicebus narrows the wide *.servicebus.windows.net allowlist rows
// to the names Azure publishes for a region, through the call the Arc network
// requirements name:
//
//	GET https://guestnotificationservice.azure.com/urls/allowlist?api-version=2020-01-01&location=<region>
//
// whose answer is a JSON array of host names. Parse reads such an answer
// defensively, Fetch makes the call, ReadFile reads a saved answer (the
// config's servicebus.allowlist_file) and Refresher re-fetches it while
// arcfence serves, keeping the last good list when a fetch fails.
package servicebus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/arcfence/arcfence/policy"
)

// DefaultBaseURL is the allowlist endpoint of the spec, without its query.
const DefaultBaseURL = "https://guestnotificationservice.azure.com/urls/allowlist"

// APIVersion is the api-version the spec's call uses.
const APIVersion = "2020-01-01"

// Zone is the DNS zone every accepted name must be inside: the names replace
// the *.servicebus.windows.net rows, so an answer cannot widen the allowlist
// beyond them.
const Zone = "servicebus.windows.net"

// MaxAnswerBytes bounds the answer Parse, ReadFile and Fetch accept.
const MaxAnswerBytes = 1 << 20

// MaxNames bounds the number of names in an answer.
const MaxNames = 10000

// ErrEmpty is returned (wrapped) when an answer holds no usable host name.
var ErrEmpty = errors.New("no servicebus host names in the answer")

// Parse reads an allowlist answer: a JSON array whose string elements are
// host names. Elements that are not strings, not valid DNS names, IP
// literals, wildcards, or outside servicebus.windows.net are ignored; an
// "https://" or "wss://" prefix, a trailing "/" or ":443" and letter case are
// normalized away. The result is sorted and without repeats. An answer that
// is not a JSON array, is larger than MaxAnswerBytes, has more than MaxNames
// elements, or yields no name is an error (wrapping ErrEmpty for the last).
func Parse(data []byte) ([]string, error) {
	names, _, err := parse(data)
	return names, err
}

// parse is Parse that also counts the ignored elements.
func parse(data []byte) (names []string, ignored int, err error) {
	if len(data) > MaxAnswerBytes {
		return nil, 0, fmt.Errorf("servicebus allowlist answer is %d bytes; at most %d accepted", len(data), MaxAnswerBytes)
	}
	data = bytes.TrimPrefix(bytes.TrimSpace(data), []byte("\xef\xbb\xbf"))
	var elems []json.RawMessage
	if err := json.Unmarshal(data, &elems); err != nil {
		return nil, 0, fmt.Errorf("servicebus allowlist answer is not a JSON array of host names: %w", err)
	}
	if len(elems) > MaxNames {
		return nil, 0, fmt.Errorf("servicebus allowlist answer has %d entries; at most %d accepted", len(elems), MaxNames)
	}
	for _, e := range elems {
		var s string
		if json.Unmarshal(e, &s) != nil {
			ignored++
			continue
		}
		h, ok := hostOf(s)
		if !ok {
			ignored++
			continue
		}
		names = append(names, h)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) == 0 {
		return nil, ignored, fmt.Errorf("servicebus allowlist answer: %w (%d entries, %d ignored)", ErrEmpty, len(elems), ignored)
	}
	return names, ignored, nil
}

// hostOf normalizes one answer element into a host name inside Zone.
func hostOf(s string) (string, bool) {
	s = strings.TrimSpace(s)
	for _, p := range []string{"https://", "wss://", "sb://"} {
		if len(s) > len(p) && strings.EqualFold(s[:len(p)], p) {
			s = s[len(p):]
			break
		}
	}
	s = strings.TrimSuffix(s, "/")
	s = strings.TrimSuffix(s, ":443")
	if strings.ContainsAny(s, "*/:@ ") {
		return "", false
	}
	h, ok := policy.NormalizeHost(s)
	if !ok || !strings.HasSuffix(h, "."+Zone) {
		return "", false
	}
	return h, true
}

// ReadFile reads a saved allowlist answer (servicebus.allowlist_file) and
// parses it with Parse. Errors name the file.
func ReadFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("servicebus.allowlist_file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxAnswerBytes+1))
	if err != nil {
		return nil, fmt.Errorf("servicebus.allowlist_file %s: %w", path, err)
	}
	names, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("servicebus.allowlist_file %s: %w", path, err)
	}
	return names, nil
}

// Marshal renders names as an allowlist answer (a JSON array, one name per
// line), the form Fetch's callers save and ReadFile reads back.
func Marshal(names []string) []byte {
	var b bytes.Buffer
	b.WriteString("[")
	for i, n := range names {
		if i > 0 {
			b.WriteString(",")
		}
		q, _ := json.Marshal(n)
		b.WriteString("\n  ")
		b.Write(q)
	}
	b.WriteString("\n]\n")
	return b.Bytes()
}

// URL returns the allowlist call's URL for region (normalized) on base
// ("" = DefaultBaseURL).
func URL(base, region string) string {
	if base == "" {
		base = DefaultBaseURL
	}
	q := url.Values{}
	q.Set("api-version", APIVersion)
	q.Set("location", policy.NormalizeRegion(region))
	return base + "?" + q.Encode()
}

// Fetch makes the allowlist call for region with client (nil =
// http.DefaultClient; give one whose Transport routes through arcfence, and a
// Timeout or a ctx deadline) and parses the answer.
func Fetch(ctx context.Context, client *http.Client, region string) ([]string, error) {
	return FetchURL(ctx, client, URL("", region))
}

// FetchURL is Fetch for a full URL (a mirror, or a test server).
func FetchURL(ctx context.Context, client *http.Client, u string) ([]string, error) {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "arcfence")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("servicebus allowlist: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBytes+1))
	if err != nil {
		return nil, fmt.Errorf("servicebus allowlist: reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("servicebus allowlist: %s answered %s: %s", redact(u), resp.Status, snippet(data))
	}
	names, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w (from %s)", err, redact(u))
	}
	return names, nil
}

// redact drops the query of a URL for messages.
func redact(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}

// snippet is the start of a body, printable, for error messages.
func snippet(b []byte) string {
	const max = 200
	if len(b) > max {
		b = b[:max]
	}
	s := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, string(b))
	return strings.TrimSpace(s)
}
