package daemon

import (
	"github.com/rs/zerolog"

	"github.com/arcfence/arcfence/internal/platform"
)

// filesReserve is what the daemon keeps of the open-files limit besides
// the tunnels: listeners, DNS, admin, dials in progress, logs.
const filesReserve = 256

// fitFileLimit returns the limits.max_tunnels to run with: maxTunnels
// lowered (for this run) when the open-files limit cannot hold that many
// tunnels at two descriptors each, so the excess gets a clear 429 instead
// of failing at accept; with maxTunnels 0 (no limit of its own), what the
// open-files limit can hold. It warns when the user set the limit (set),
// and at start-up says at info level what it uses otherwise. (Go raises the
// soft limit to the hard one at start.)
func fitFileLimit(log zerolog.Logger, maxTunnels int, set, start bool) int {
	cur, ok := platform.OpenFilesLimit()
	if !ok || cur <= 2*filesReserve {
		return maxTunnels
	}
	fit := int((cur - filesReserve) / 2)
	if maxTunnels > 0 && maxTunnels <= fit {
		return maxTunnels
	}
	switch {
	case maxTunnels > 0 && set:
		log.Warn().Uint64("open_files_limit", cur).Int("max_tunnels", maxTunnels).Int("max_tunnels_used", fit).
			Str("msg", "the open-files limit is below 2 x limits.max_tunnels: using a lower max_tunnels; raise the limit (LimitNOFILE=) to use yours").Send()
	case start:
		log.Info().Uint64("open_files_limit", cur).Int("max_tunnels_used", fit).
			Str("msg", "limits.max_tunnels fitted to the open-files limit (2 descriptors a tunnel); raise the limit (LimitNOFILE=) for more").Send()
	}
	return fit
}
