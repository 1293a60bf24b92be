package main

import (
	"io"
	"time"

	"github.com/rs/zerolog"

	"github.com/arcfence/arcfence/internal/config"
)

// newLogger builds the process logger from log.level and log.format:
// zerolog JSON lines (or console text) on w, with RFC 3339 millisecond times.
func newLogger(c config.Log, w io.Writer) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(c.Level)
	if err != nil {
		return zerolog.Nop(), err
	}
	if c.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	// Every line names its message "msg", as refusal lines do (design: "msg":"denied").
	zerolog.MessageFieldName = "msg"
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}
