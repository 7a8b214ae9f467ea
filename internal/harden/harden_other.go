//go:build !linux && !darwin && !freebsd

package harden

import (
	"errors"
	"runtime"
)

// disableTracing has no implementation here: Process reports it, so the
// agent does not start believing it is protected.
func disableTracing() error {
	return errors.New("harden: no tracing protection is implemented on " + runtime.GOOS)
}
