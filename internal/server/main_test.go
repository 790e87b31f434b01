package server

import (
	"testing"

	"github.com/heraldhq/herald/internal/testnode"
)

// TestMain checks for leaked goroutines after the tests, other than those
// of the process-wide netpoll poller (netpoll.Default), which lives as long
// as the process by design.
func TestMain(m *testing.M) { testnode.VerifyTestMain(m) }
