package main

// The RTMP handshake (Adobe RTMP 1.0 §5.2): the simple one, the Flash
// Player digest one at both schemas, and a fuzz target.

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
)

// makeC1 builds a C1; a signed one carries the Flash Player digest at
// schema's offset, as Flash and some hardware encoders send.
func makeC1(signed bool, schema int) []byte {
	c1 := make([]byte, handshakeSize)
	rand.Read(c1[8:])
	if signed {
		copy(c1[4:8], []byte{9, 0, 124, 2}) // a Flash Player version: non-zero
		off := digestOffset(c1, schema)
		copy(c1[off:], handshakeDigest(c1, off, clientKeyText))
	}
	return c1
}

func checkServerHandshake(c1, s1, s2 []byte, signed bool) error {
	if !signed {
		if !bytes.Equal(s2, c1) {
			return errors.New("S2 does not echo C1")
		}
		return nil
	}
	found := false
	for schema := range 2 {
		off := digestOffset(s1, schema)
		if hmac.Equal(handshakeDigest(s1, off, serverKeyText), s1[off:off+32]) {
			found = true
		}
	}
	if !found {
		return errors.New("S1 has no valid server digest")
	}
	_, clientDigest, _ := findClientDigest(c1)
	key := hmac.New(sha256.New, serverKeyFull)
	key.Write(clientDigest)
	h := hmac.New(sha256.New, key.Sum(nil))
	h.Write(s2[:handshakeSize-32])
	if !hmac.Equal(h.Sum(nil), s2[handshakeSize-32:]) {
		return errors.New("S2 digest is wrong")
	}
	return nil
}

// TestHandshakes checks both handshakes, and both digest schemas, against
// the server's answer.
func TestHandshakes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		signed bool
		schema int
	}{{"simple", false, 0}, {"digest schema 0", true, 0}, {"digest schema 1", true, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			c1 := makeC1(tc.signed, tc.schema)
			client, server := net.Pipe()
			defer client.Close()
			errc := make(chan error, 1)
			go func() { errc <- serverHandshake(server, server) }()
			client.Write(append([]byte{3}, c1...))
			s := make([]byte, 1+2*handshakeSize)
			if _, err := io.ReadFull(client, s); err != nil {
				t.Fatal(err)
			}
			if err := checkServerHandshake(c1, s[1:1+handshakeSize], s[1+handshakeSize:], tc.signed); err != nil {
				t.Error(err)
			}
			if got := binary.BigEndian.Uint32(s[5:9]) != 0; got != tc.signed {
				t.Errorf("S1 version non-zero = %v; want %v", got, tc.signed)
			}
			client.Write(s[1 : 1+handshakeSize])
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestHandshakeRejectsBadVersion(t *testing.T) {
	err := serverHandshake(bytes.NewReader(append([]byte{6}, make([]byte, handshakeSize)...)), io.Discard)
	if !errors.Is(err, errRTMPVersion) {
		t.Fatalf("err = %v; want errRTMPVersion", err)
	}
}

// ---- Digest handshake golden (§5.2, Flash Player digest) ----

// goldenC0C1 builds a deterministic C0+C1 as a Flash Player sends it:
// version 3, time 0, player version 9.0.124.2, and filler bytes; signed
// at schema 0 (offset bytes at 8..11) or 1 (at 772..775), the offset
// bytes are set to off. The digest is computed here from the definition
// (HMAC-SHA256 keyed by "Genuine Adobe Flash Player 001" over C1 without
// the 32 digest bytes) rather than by the server's helpers.
func goldenC0C1(signed bool, schema int, off [4]byte, key []byte) (c0c1 []byte, digestAt int) {
	c0c1 = make([]byte, 1+handshakeSize)
	c0c1[0] = 3
	c1 := c0c1[1:]
	for i := 8; i < handshakeSize; i++ {
		c1[i] = byte(i*37 + 11)
	}
	if !signed {
		return c0c1, -1
	}
	copy(c1[4:8], bs(9, 0, 124, 2))
	if schema == 1 {
		copy(c1[772:], off[:])
	} else {
		copy(c1[8:], off[:])
	}
	return c0c1, signC1(c1, schema, key)
}

func TestFindClientDigestGolden(t *testing.T) {
	flashKey := []byte("Genuine Adobe Flash Player 001")
	for _, tc := range []struct {
		name   string
		schema int
		off    [4]byte
		at     int // where the digest must be in C1
	}{
		{"schema 0, offset 0", 0, [4]byte{0, 0, 0, 0}, 12},
		{"schema 0, offset 160", 0, [4]byte{0x10, 0x20, 0x30, 0x40}, 12 + 160},
		{"schema 0, offset 1020 mod 728", 0, [4]byte{0xFF, 0xFF, 0xFF, 0xFF}, 12 + 292},
		{"schema 0, offset 727, the last", 0, [4]byte{0xFF, 0xFF, 0xD9, 0}, 12 + 727},
		{"schema 1, offset 10", 1, [4]byte{1, 2, 3, 4}, 776 + 10},
		{"schema 1, offset 1020 mod 728", 1, [4]byte{0xFF, 0xFF, 0xFF, 0xFF}, 776 + 292},
		{"schema 1, offset 727: digest ends the C1", 1, [4]byte{0, 0xFF, 0xFF, 0xD9}, 776 + 727},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c0c1, at := goldenC0C1(true, tc.schema, tc.off, flashKey)
			if at != tc.at {
				t.Fatalf("test bug: digest at %d; want %d", at, tc.at)
			}
			c1 := c0c1[1:]
			if got := digestOffset(c1, tc.schema); got != tc.at {
				t.Errorf("digestOffset(schema %d) = %d; want %d", tc.schema, got, tc.at)
			}
			schema, digest, ok := findClientDigest(c1)
			if !ok || schema != tc.schema || !bytes.Equal(digest, c1[tc.at:tc.at+32]) {
				t.Errorf("findClientDigest = %d, % x, %v; want %d, % x, true", schema, digest, ok, tc.schema, c1[tc.at:tc.at+32])
			}

			// The server answers the digest handshake.
			var out bytes.Buffer
			c2 := make([]byte, handshakeSize)
			if err := serverHandshake(bytes.NewReader(append(c0c1, c2...)), &out); err != nil {
				t.Fatal(err)
			}
			s := out.Bytes()
			if len(s) != 1+2*handshakeSize || s[0] != 3 {
				t.Fatalf("S0+S1+S2: %d bytes, S0 %d; want %d bytes, S0 3", len(s), s[0], 1+2*handshakeSize)
			}
			if err := checkServerHandshake(c1, s[1:1+handshakeSize], s[1+handshakeSize:], true); err != nil {
				t.Error(err)
			}

			// One flipped bit anywhere in the signed part breaks the digest.
			for _, i := range []int{0, 4, tc.at - 1, tc.at, tc.at + 31, tc.at + 32, handshakeSize - 1} {
				if i < 0 || i >= handshakeSize || i >= 8 && i < 12 || i >= 772 && i < 776 {
					continue // out of range, or moves the digest: not this test
				}
				bad := bytes.Clone(c1)
				bad[i] ^= 0x01
				if s, _, ok := findClientDigest(bad); ok && s == tc.schema {
					t.Errorf("findClientDigest with byte %d flipped = ok at schema %d; want not found", i, s)
				}
			}
		})
	}

	t.Run("plain C1", func(t *testing.T) {
		c0c1, _ := goldenC0C1(false, 0, [4]byte{}, nil)
		if schema, digest, ok := findClientDigest(c0c1[1:]); ok {
			t.Errorf("findClientDigest(plain) = %d, % x, true; want not found", schema, digest)
		}
		var out bytes.Buffer
		if err := serverHandshake(bytes.NewReader(append(c0c1, make([]byte, handshakeSize)...)), &out); err != nil {
			t.Fatal(err)
		}
		// §5.2.4: S2 echoes C1.
		if s2 := out.Bytes()[1+handshakeSize:]; !bytes.Equal(s2, c0c1[1:]) {
			t.Errorf("S2 does not echo C1")
		}
	})
	t.Run("signed with the server key", func(t *testing.T) {
		c0c1, _ := goldenC0C1(true, 0, [4]byte{1, 2, 3, 4}, serverKeyText)
		if _, _, ok := findClientDigest(c0c1[1:]); ok {
			t.Errorf("findClientDigest(C1 signed with the FMS key) = found; want not found")
		}
	})
}

// ---- Fuzz targets ----

// signC1 puts the Flash Player digest into c1 at schema's offset, computed
// from the definition: HMAC-SHA256 keyed by key over C1 without the 32
// digest bytes. It returns where the digest went.
func signC1(c1 []byte, schema int, key []byte) int {
	base := 8
	if schema == 1 {
		base = 772
	}
	at := base + 4 + (int(c1[base])+int(c1[base+1])+int(c1[base+2])+int(c1[base+3]))%728
	mac := hmac.New(sha256.New, key)
	mac.Write(c1[:at])
	mac.Write(c1[at+32:])
	copy(c1[at:], mac.Sum(nil))
	return at
}

// FuzzHandshake runs the server handshake on C0+C1+C2 made from the
// input: the bytes as they are; or, with bit 2 of mode, extended to a full
// C0+C1+C2 with filler; and with mode&3 = 1 or 2, C1 signed at schema 0
// or 1, since random bytes never carry a valid digest. (Inputs stay
// short, so that the fuzzer's minimizing stays cheap.)
func FuzzHandshake(f *testing.F) {
	f.Add(bs(3), uint8(0))
	f.Add(bs(3), uint8(4))
	f.Add(bs(3, 0, 0, 0, 0, 9, 0, 124, 2, 1, 2, 3, 4), uint8(5))
	f.Add(bs(3, 0, 0, 0, 0, 9, 0, 124, 2), uint8(6))
	f.Add(bs(6), uint8(4))
	f.Add(bs(3, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF), uint8(5))
	flashKey := []byte("Genuine Adobe Flash Player 001")
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		in := bytes.Clone(data)
		if mode&4 != 0 && len(in) < 1+2*handshakeSize {
			for i := len(in); i < 1+2*handshakeSize; i++ {
				in = append(in, byte(i*37+11))
			}
		}
		signed := false
		if schema := int(mode&3) - 1; (schema == 0 || schema == 1) && len(in) >= 1+handshakeSize {
			signC1(in[1:1+handshakeSize], schema, flashKey)
			signed = true
		}
		var out bytes.Buffer
		err := serverHandshake(bytes.NewReader(in), &out)
		switch {
		case len(in) > 0 && in[0] != 3:
			if !errors.Is(err, errRTMPVersion) && len(in) >= 1+handshakeSize {
				t.Fatalf("C0 %d: serverHandshake = %v; want errRTMPVersion", in[0], err)
			}
		case len(in) >= 1+2*handshakeSize:
			if err != nil {
				t.Fatalf("serverHandshake = %v; want nil", err)
			}
		default:
			if err == nil {
				t.Fatalf("serverHandshake on %d bytes = nil; want an error", len(in))
			}
		}
		if len(in) >= 1+handshakeSize && in[0] == 3 {
			s := out.Bytes()
			if len(s) != 1+2*handshakeSize || s[0] != 3 {
				t.Fatalf("wrote %d bytes; want S0+S1+S2, %d", len(s), 1+2*handshakeSize)
			}
			c1 := in[1 : 1+handshakeSize]
			_, _, found := findClientDigest(c1)
			if signed && !found {
				t.Fatalf("findClientDigest missed the digest of a signed C1 (mode %d)", mode)
			}
			if err := checkServerHandshake(c1, s[1:1+handshakeSize], s[1+handshakeSize:], found); err != nil {
				t.Fatal(err)
			}
		}
	})
}
