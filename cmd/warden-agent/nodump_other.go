//go:build !linux

package main

// disableTracing is Linux-only for now; elsewhere the agent stays traceable
// by the user's own processes.
func disableTracing() error { return nil }
