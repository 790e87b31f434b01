package interop

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Event mode uses the process-wide poller (netpoll.Default), whose
		// loop and workers live as long as the process by design. Every
		// connection it served is checked to have ended (OnClose) by the
		// tests themselves.
		goleak.IgnoreAnyFunction("github.com/heraldhq/herald/internal/netpoll.(*loop).run"),
		goleak.IgnoreAnyFunction("github.com/heraldhq/herald/internal/netpoll.(*epollPoller).worker"),
	)
}
