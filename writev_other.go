//go:build !linux

package main

// Elsewhere than Linux every viewer gets blocking writes from its own
// goroutine (see writev_linux.go).

import "net"

// blockingWrites is always on here; on Linux tests can turn it on.
var blockingWrites = true

func newNonblockWriter(net.Conn) func(net.Buffers) (int, error) { return nil }
