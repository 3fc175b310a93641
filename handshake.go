package main

// The RTMP handshake (Adobe RTMP 1.0 §5.2): the simple handshake of the
// spec, and the digest handshake that Flash Player, FMS and some encoders
// use, which the spec does not describe.

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The handshake's C1/S1/C2/S2 size (§5.2.3).
const handshakeSize = 1536

var errRTMPVersion = errors.New("rtmp: unsupported handshake version")

// Keys of the digest handshake that Flash Player and FMS use. The first
// 30 (client) and 36 (server) bytes are the ASCII texts; the full keys add
// the same 32 random-looking bytes.
var (
	handshakeKeyTail = []byte{
		0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1,
		0x02, 0x9E, 0x7E, 0x57, 0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB,
		0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
	}
	clientKeyText = []byte("Genuine Adobe Flash Player 001")
	serverKeyText = []byte("Genuine Adobe Flash Media Server 001")
	serverKeyFull = append(append([]byte{}, serverKeyText...), handshakeKeyTail...)
)

// digestOffset returns where the 32-byte digest sits in a C1/S1 for the
// given schema: schema 0 reads the offset bytes at 8..11, schema 1 at
// 772..775; the sum of the four bytes mod 728 is added to the base.
func digestOffset(p []byte, schema int) int {
	base := 8
	if schema == 1 {
		base = 772
	}
	sum := int(p[base]) + int(p[base+1]) + int(p[base+2]) + int(p[base+3])
	return base + 4 + sum%728
}

// handshakeDigest is the HMAC-SHA256 of p without the 32 bytes at off.
func handshakeDigest(p []byte, off int, key []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(p[:off])
	h.Write(p[off+32:])
	return h.Sum(nil)
}

// findClientDigest reports the schema and digest of a C1 signed the Flash
// way, or ok=false for a plain C1 (simple handshake).
func findClientDigest(c1 []byte) (schema int, digest []byte, ok bool) {
	for schema := range 2 {
		off := digestOffset(c1, schema)
		d := handshakeDigest(c1, off, clientKeyText)
		if hmac.Equal(d, c1[off:off+32]) {
			return schema, c1[off : off+32], true
		}
	}
	return 0, nil, false
}

// makeS1S2 builds the server's S1 and S2 for a given C1. For a plain C1
// (§5.2.3) S1 is time, zero and random bytes and S2 echoes C1. For a signed
// C1, S1 carries our digest at the client's schema and S2 ends with an HMAC
// keyed by the client's digest.
func makeS1S2(c1 []byte) (s1, s2 []byte) {
	s1 = make([]byte, handshakeSize)
	rand.Read(s1[8:])
	binary.BigEndian.PutUint32(s1[0:4], 0)
	schema, clientDigest, signed := findClientDigest(c1)
	if !signed {
		copy(s1[4:8], []byte{0, 0, 0, 0})
		s2 = append([]byte(nil), c1...)
		return s1, s2
	}
	copy(s1[4:8], []byte{4, 5, 0, 1}) // server version, non-zero marks a digest handshake
	off := digestOffset(s1, schema)
	copy(s1[off:], handshakeDigest(s1, off, serverKeyText))

	s2 = make([]byte, handshakeSize)
	rand.Read(s2)
	key := hmac.New(sha256.New, serverKeyFull)
	key.Write(clientDigest)
	h := hmac.New(sha256.New, key.Sum(nil))
	h.Write(s2[:handshakeSize-32])
	copy(s2[handshakeSize-32:], h.Sum(nil))
	return s1, s2
}

// serverHandshake runs the server side: read C0+C1, write S0+S1+S2, read C2.
func serverHandshake(r io.Reader, w io.Writer) error {
	c0c1 := make([]byte, 1+handshakeSize)
	if _, err := io.ReadFull(r, c0c1[:1]); err != nil {
		return fmt.Errorf("rtmp: reading C0: %w", err)
	}
	// §5.2.2: version 3 is RTMP; 6 is RTMPE, which we do not offer.
	// Check C0 before waiting for C1, so a stray HTTP request or scanner
	// is refused at once.
	switch v := c0c1[0]; {
	case v == 'G' || v == 'P' || v == 'H' || v == 'O' || v == 'D':
		return fmt.Errorf("%w %d (an HTTP request on the RTMP port?)", errRTMPVersion, v)
	case v != 3:
		return fmt.Errorf("%w %d", errRTMPVersion, v)
	}
	if _, err := io.ReadFull(r, c0c1[1:]); err != nil {
		return fmt.Errorf("rtmp: reading C1: %w", err)
	}
	s1, s2 := makeS1S2(c0c1[1:])
	out := make([]byte, 0, 1+2*handshakeSize)
	out = append(out, 3)
	out = append(out, s1...)
	out = append(out, s2...)
	if _, err := w.Write(out); err != nil {
		return fmt.Errorf("rtmp: writing S0/S1/S2: %w", err)
	}
	if _, err := io.ReadFull(r, c0c1[:handshakeSize]); err != nil {
		return fmt.Errorf("rtmp: reading C2: %w", err)
	}
	return nil
}
