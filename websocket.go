package main

// WebSocket (RFC 6455) on the standard library: the opening handshake,
// server frame headers and reading client frames, with every length
// bounded before anything is allocated.

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

const (
	wsOpContinuation = 0x0
	wsOpText         = 0x1
	wsOpBinary       = 0x2
	wsOpClose        = 0x8
	wsOpPing         = 0x9
	wsOpPong         = 0xA
	wsMaxClientFrame = 64 << 10 // players send control frames only
	// wsReadStep is how much of a frame's payload is allocated ahead of
	// the bytes themselves.
	wsReadStep = 4 << 10
)

var (
	errWSProtocol = errors.New("websocket: protocol error")
	errWSClosed   = errors.New("websocket: closed by peer")
)

// headerHasToken reports whether a comma-separated header has token,
// case-insensitively (RFC 9110 §5.6.1).
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// errWSVersion refuses an opening handshake of another version than 13:
// 426 with the version gms speaks (RFC 6455 §4.2.2 step 4).
var errWSVersion = fmt.Errorf("%w: Sec-WebSocket-Version must be 13", errWSProtocol)

// wsAcceptKey checks the client's opening handshake (RFC 6455 §4.2.1) and
// computes Sec-WebSocket-Accept (§4.2.2 step 5.4).
func wsAcceptKey(r *http.Request) (string, error) {
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		return "", errWSVersion
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if raw, err := base64.StdEncoding.DecodeString(key); err != nil || len(raw) != 16 {
		return "", fmt.Errorf("%w: bad Sec-WebSocket-Key", errWSProtocol)
	}
	return wsAccept(key), nil
}

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// appendWSHeader writes an unmasked server frame header (§5.2) for a
// final frame of n payload bytes.
func appendWSHeader(dst []byte, opcode byte, n int) []byte {
	dst = append(dst, 0x80|opcode) // FIN, no RSV bits
	switch {
	case n < 126:
		return append(dst, byte(n))
	case n <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(dst, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(dst, 127), uint64(n))
	}
}

// wsBinaryHeader is the header of a binary message of n bytes in one
// frame, as a sink puts before each media batch.
func wsBinaryHeader(dst []byte, n int) []byte { return appendWSHeader(dst, wsOpBinary, n) }

// wsFrame is one frame read from a client, unmasked.
type wsFrame struct {
	fin     bool
	opcode  byte
	payload []byte
}

// readWSFrame reads one client frame (§5.2). Client frames must be masked
// (§5.1); control frames must be final and at most 125 bytes (§5.5).
func readWSFrame(r io.Reader, max int) (wsFrame, error) {
	var h [14]byte
	if _, err := io.ReadFull(r, h[:2]); err != nil {
		return wsFrame{}, err
	}
	f := wsFrame{fin: h[0]&0x80 != 0, opcode: h[0] & 0x0F}
	if h[0]&0x70 != 0 {
		return f, fmt.Errorf("%w: RSV bits set without an extension", errWSProtocol)
	}
	if h[1]&0x80 == 0 {
		return f, fmt.Errorf("%w: unmasked client frame", errWSProtocol)
	}
	var n uint64
	switch l := h[1] & 0x7F; l {
	case 126:
		if _, err := io.ReadFull(r, h[2:4]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		if _, err := io.ReadFull(r, h[2:10]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(h[2:10])
	default:
		n = uint64(l)
	}
	switch f.opcode {
	case wsOpClose, wsOpPing, wsOpPong:
		if !f.fin || n > 125 {
			return f, fmt.Errorf("%w: bad control frame", errWSProtocol)
		}
	case wsOpContinuation, wsOpText, wsOpBinary:
	default:
		return f, fmt.Errorf("%w: unknown opcode %d", errWSProtocol, f.opcode)
	}
	if n > uint64(max) {
		return f, fmt.Errorf("%w: frame of %d bytes over limit %d", errWSProtocol, n, max)
	}
	var mask [4]byte
	if _, err := io.ReadFull(r, mask[:]); err != nil {
		return f, err
	}
	// The payload grows as it arrives, like readGrowing's RTMP messages,
	// so that a header announcing 64 KiB and then silence holds 4 KiB,
	// not 64.
	for len(f.payload) < int(n) {
		start := len(f.payload)
		f.payload = growLen(f.payload, min(int(n)-start, wsReadStep))
		if _, err := io.ReadFull(r, f.payload[start:]); err != nil {
			return f, err
		}
	}
	for i := range f.payload {
		f.payload[i] ^= mask[i%4]
	}
	return f, nil
}
