//go:build !linux

package main

// Elsewhere than Linux every connection keeps a goroutine blocked in its
// read (see idle_linux.go).

import "net"

type idlePoller struct{}

type idleWait struct{}

func idle() *idlePoller { return nil }

func (*idlePoller) park(*idleWait, net.Conn, func()) bool { return false }

func (*idlePoller) wake(*idleWait) {}
