package main

// WebSocket framing (RFC 6455): golden bytes for reading and writing
// frames, the accept key, and a fuzz target.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/http/httptest"
	"runtime"
	"testing"
)

// maskedFrame builds a client frame (RFC 6455 §5.2): first byte b0 (FIN,
// RSV, opcode), MASK set, the shortest length form, the key, and the
// payload XORed with it (§5.3).
func maskedFrame(b0 byte, key [4]byte, payload []byte) []byte {
	out := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		out = append(out, 0x80|byte(n))
	case n <= 0xFFFF:
		out = binary.BigEndian.AppendUint16(append(out, 0x80|126), uint16(n))
	default:
		out = binary.BigEndian.AppendUint64(append(out, 0x80|127), uint64(n))
	}
	out = append(out, key[:]...)
	for i, c := range payload {
		out = append(out, c^key[i%4])
	}
	return out
}

var wsKey = [4]byte{0x37, 0xfa, 0x21, 0x3d} // the masking key of RFC 6455 §5.7

// wsGoldenFrame is a frame readWSFrame must accept.
type wsGoldenFrame struct {
	fin     bool
	opcode  byte
	payload []byte
}

var wsFrameGolden = []struct {
	name   string
	in     []byte
	max    int // 0: wsMaxClientFrame
	frames []wsGoldenFrame
}{
	{
		name: "§5.7 single-frame masked text message",
		in: bs(
			0x81,                   // FIN, opcode 1: text
			0x85,                   // MASK, payload length 5
			0x37, 0xfa, 0x21, 0x3d, // masking key
			0x7f, 0x9f, 0x4d, 0x51, 0x58, // "Hello" masked
		),
		frames: []wsGoldenFrame{{true, wsOpText, []byte("Hello")}},
	},
	{
		name: "§5.7 masked Pong response",
		in: bs(
			0x8a,                   // FIN, opcode 0xA: pong
			0x85,                   // MASK, length 5
			0x37, 0xfa, 0x21, 0x3d, // masking key
			0x7f, 0x9f, 0x4d, 0x51, 0x58, // "Hello" masked
		),
		frames: []wsGoldenFrame{{true, wsOpPong, []byte("Hello")}},
	},
	{
		name: "§5.7 fragmented text message, masked",
		in: bs(
			0x01,                   // FIN clear, opcode 1: text
			0x83,                   // MASK, length 3
			0x37, 0xfa, 0x21, 0x3d, // masking key
			0x7f, 0x9f, 0x4d, // "Hel" masked
			0x80,                   // FIN, opcode 0: continuation
			0x82,                   // MASK, length 2
			0x37, 0xfa, 0x21, 0x3d, // masking key
			0x5b, 0x95, // "lo" masked
		),
		frames: []wsGoldenFrame{{false, wsOpText, []byte("Hel")}, {true, wsOpContinuation, []byte("lo")}},
	},
	{
		name: "ping with payload",
		in: bs(
			0x89,                   // FIN, opcode 9: ping
			0x82,                   // MASK, length 2
			0xaa, 0x55, 0xaa, 0x55, // masking key
			0xc2, 0x3c, // "hi" masked
		),
		frames: []wsGoldenFrame{{true, wsOpPing, []byte("hi")}},
	},
	{
		name:   "empty ping, zero masking key",
		in:     bs(0x89, 0x80, 0, 0, 0, 0),
		frames: []wsGoldenFrame{{true, wsOpPing, []byte{}}},
	},
	{
		name: "close with status code 1000 and a reason (§5.5.1)",
		in: bs(
			0x88,                   // FIN, opcode 8: close
			0x85,                   // MASK, length 5
			0x01, 0x02, 0x03, 0x04, // masking key
			0x02, 0xea, 0x61, 0x7d, 0x64, // 03 e8 "bye" masked
		),
		frames: []wsGoldenFrame{{true, wsOpClose, bs(0x03, 0xe8, 'b', 'y', 'e')}},
	},
	{
		name:   "125 bytes: the largest 7-bit length",
		in:     maskedFrame(0x82, wsKey, seqBytes(125, 0)),
		frames: []wsGoldenFrame{{true, wsOpBinary, seqBytes(125, 0)}},
	},
	{
		name: "126 bytes: 16-bit length",
		in: joinBytes(
			bs(0x82),       // FIN, opcode 2: binary
			bs(0xFE),       // MASK, length 126: a 16-bit length follows
			bs(0x00, 0x7E), // 126
			wsKey[:],       //
			maskedFrame(0x82, wsKey, seqBytes(126, 0))[8:],
		),
		frames: []wsGoldenFrame{{true, wsOpBinary, seqBytes(126, 0)}},
	},
	{
		name: "§5.7 256 bytes in a single frame, masked",
		in: joinBytes(
			bs(0x82, 0xFE, 0x01, 0x00), // binary, MASK, 16-bit length 256
			wsKey[:],
			maskedFrame(0x82, wsKey, seqBytes(256, 9))[8:],
		),
		frames: []wsGoldenFrame{{true, wsOpBinary, seqBytes(256, 9)}},
	},
	{
		name:   "65535 bytes: the largest 16-bit length",
		in:     joinBytes(bs(0x82, 0xFE, 0xFF, 0xFF), maskedFrame(0x82, wsKey, seqBytes(0xFFFF, 1))[4:]),
		frames: []wsGoldenFrame{{true, wsOpBinary, seqBytes(0xFFFF, 1)}},
	},
	{
		name: "§5.7 64 KiB in a single frame: 64-bit length, at the limit",
		in: joinBytes(
			bs(0x82, 0xFF),                                    // binary, MASK, length 127: a 64-bit length follows
			bs(0, 0, 0, 0, 0, 0x01, 0, 0),                     // 65536
			maskedFrame(0x82, wsKey, seqBytes(65536, 2))[10:], // key and payload
		),
		frames: []wsGoldenFrame{{true, wsOpBinary, seqBytes(65536, 2)}},
	},
	{
		name:   "a 16-bit length for 5 bytes (not minimal) is accepted",
		in:     joinBytes(bs(0x81, 0xFE, 0x00, 0x05), wsKey[:], bs(0x7f, 0x9f, 0x4d, 0x51, 0x58)),
		frames: []wsGoldenFrame{{true, wsOpText, []byte("Hello")}},
	},
}

func TestReadWSFrameGolden(t *testing.T) {
	for _, tc := range wsFrameGolden {
		t.Run(tc.name, func(t *testing.T) {
			max := tc.max
			if max == 0 {
				max = wsMaxClientFrame
			}
			r := bytes.NewReader(tc.in)
			for i, want := range tc.frames {
				f, err := readWSFrame(r, max)
				if err != nil {
					t.Fatalf("frame %d: readWSFrame = %v", i, err)
				}
				if f.fin != want.fin || f.opcode != want.opcode || !bytes.Equal(f.payload, want.payload) {
					t.Fatalf("frame %d: readWSFrame = {fin %v op %#x %q}; want {fin %v op %#x %q}",
						i, f.fin, f.opcode, trimForLog(f.payload), want.fin, want.opcode, trimForLog(want.payload))
				}
			}
			if _, err := readWSFrame(r, max); err != io.EOF {
				t.Fatalf("readWSFrame at the end = %v; want io.EOF", err)
			}
		})
	}
}

func trimForLog(p []byte) []byte {
	if len(p) > 16 {
		return p[:16]
	}
	return p
}

func TestReadWSFrameErrors(t *testing.T) {
	hugeLen := func(n uint64) []byte {
		return binary.BigEndian.AppendUint64(bs(0x82, 0xFF), n) // binary, MASK, 64-bit length n
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"§5.7 unmasked text (§5.1: clients must mask)", bs(0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f), errWSProtocol},
		{"§5.7 unmasked ping", bs(0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f), errWSProtocol},
		{"§5.7 unmasked fragment", bs(0x01, 0x03, 0x48, 0x65, 0x6c), errWSProtocol},
		{"RSV1 without an extension (§5.2)", maskedFrame(0xC1, wsKey, []byte("x")), errWSProtocol},
		{"RSV2", maskedFrame(0xA2, wsKey, []byte("x")), errWSProtocol},
		{"RSV3", maskedFrame(0x92, wsKey, []byte("x")), errWSProtocol},
		{"fragmented ping (§5.5: control frames are not fragmented)", maskedFrame(0x09, wsKey, []byte("x")), errWSProtocol},
		{"fragmented close", maskedFrame(0x08, wsKey, bs(0x03, 0xe8)), errWSProtocol},
		{"ping of 126 bytes (§5.5: at most 125)", maskedFrame(0x89, wsKey, seqBytes(126, 0)), errWSProtocol},
		{"close of 126 bytes, header only", bs(0x88, 0xFE, 0x00, 0x7E), errWSProtocol},
		{"opcode 3, reserved non-control (§5.2)", maskedFrame(0x83, wsKey, nil), errWSProtocol},
		{"opcode 7, reserved non-control", maskedFrame(0x87, wsKey, nil), errWSProtocol},
		{"opcode 0xB, reserved control", maskedFrame(0x8B, wsKey, nil), errWSProtocol},
		{"opcode 0xF, reserved control", maskedFrame(0x8F, wsKey, nil), errWSProtocol},
		{"65537 bytes: over the limit, header only", hugeLen(65537), errWSProtocol},
		{"2^63-1 bytes, header only", hugeLen(1<<63 - 1), errWSProtocol},
		{"64-bit length with the top bit set (§5.2)", hugeLen(1 << 63), errWSProtocol},
		{"empty input", nil, io.EOF},
		{"one byte", bs(0x81), io.ErrUnexpectedEOF},
		{"16-bit length cut", bs(0x82, 0xFE, 0x01), io.ErrUnexpectedEOF},
		{"64-bit length cut", bs(0x82, 0xFF, 0, 0, 0), io.ErrUnexpectedEOF},
		{"masking key cut", bs(0x81, 0x85, 0x37, 0xfa), io.ErrUnexpectedEOF},
		{"payload cut", bs(0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f), io.ErrUnexpectedEOF},
	} {
		f, err := readWSFrame(bytes.NewReader(tc.in), wsMaxClientFrame)
		if !errors.Is(err, tc.want) || (tc.want == io.EOF && err != io.EOF) {
			t.Errorf("%s: readWSFrame(% x) = {op %#x %q}, %v; want %v", tc.name, trimForLog(tc.in), f.opcode, f.payload, err, tc.want)
		}
	}
}

// TestReadWSFrameLimitBeforeAlloc: a length over the limit fails from
// the header alone, allocating nothing near that length.
func TestReadWSFrameLimitBeforeAlloc(t *testing.T) {
	for _, n := range []uint64{wsMaxClientFrame + 1, 16 << 20, 1 << 40} {
		in := binary.BigEndian.AppendUint64(bs(0x82, 0xFF), n)
		in = append(in, wsKey[:]...)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := readWSFrame(bytes.NewReader(in), wsMaxClientFrame)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, errWSProtocol) {
			t.Errorf("readWSFrame(length %d) = %v; want errWSProtocol", n, err)
		}
		if got := after.TotalAlloc - before.TotalAlloc; got > 64<<10 {
			t.Errorf("readWSFrame(length %d) allocated %d bytes; want under 64 KiB", n, got)
		}
	}
}

func TestAppendWSHeaderGolden(t *testing.T) {
	for _, tc := range []struct {
		opcode byte
		n      int
		want   []byte
	}{
		{wsOpBinary, 0, bs(0x82, 0x00)},   // FIN, binary; no MASK from a server (§5.1)
		{wsOpBinary, 125, bs(0x82, 0x7D)}, // 7-bit length
		{wsOpBinary, 126, bs(0x82, 0x7E, 0x00, 0x7E)},
		{wsOpBinary, 65535, bs(0x82, 0x7E, 0xFF, 0xFF)},                        // 16-bit length
		{wsOpBinary, 65536, bs(0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00)},   // 64-bit length
		{wsOpBinary, 1 << 32, bs(0x82, 0x7F, 0, 0, 0, 0x01, 0x00, 0, 0, 0x00)}, // past 32 bits
		{wsOpClose, 2, bs(0x88, 0x02)},
		{wsOpPong, 5, bs(0x8A, 0x05)},
	} {
		if got := appendWSHeader(nil, tc.opcode, tc.n); !bytes.Equal(got, tc.want) {
			t.Errorf("appendWSHeader(%#x, %d) = % x; want % x", tc.opcode, tc.n, got, tc.want)
		}
	}
}

func TestWSAccept(t *testing.T) {
	// RFC 6455 §1.3.
	if got, want := wsAccept("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="; got != want {
		t.Errorf("wsAccept(%q) = %q; want %q", "dGhlIHNhbXBsZSBub25jZQ==", got, want)
	}
	for _, tc := range []struct {
		name, version, key string
		ok                 bool
	}{
		{"RFC 6455 §1.3 key", "13", "dGhlIHNhbXBsZSBub25jZQ==", true},
		{"version 12", "12", "dGhlIHNhbXBsZSBub25jZQ==", false},
		{"no version", "", "dGhlIHNhbXBsZSBub25jZQ==", false},
		{"no key", "13", "", false},
		{"key not base64", "13", "not base64 at all!!!!!!!", false},
		{"key of 15 bytes", "13", "AAAAAAAAAAAAAAAAAAAA", false},
		{"key of 17 bytes", "13", "AAAAAAAAAAAAAAAAAAAAAAA=", false},
	} {
		r := httptest.NewRequest("GET", "/live/x.flv", nil)
		if tc.version != "" {
			r.Header.Set("Sec-WebSocket-Version", tc.version)
		}
		if tc.key != "" {
			r.Header.Set("Sec-WebSocket-Key", tc.key)
		}
		got, err := wsAcceptKey(r)
		if tc.ok && (err != nil || got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") {
			t.Errorf("%s: wsAcceptKey = %q, %v; want the §1.3 answer", tc.name, got, err)
		}
		if !tc.ok && !errors.Is(err, errWSProtocol) {
			t.Errorf("%s: wsAcceptKey = %q, %v; want errWSProtocol", tc.name, got, err)
		}
	}
}

// ---- Fuzz targets ----

// FuzzWSFrame reads frames from arbitrary bytes: no panic, and every
// frame read obeys RFC 6455 §5.2 and §5.5 and the size limit.
func FuzzWSFrame(f *testing.F) {
	for _, tc := range wsFrameGolden {
		if len(tc.in) < 4096 {
			f.Add(tc.in)
		}
	}
	f.Add(bs(0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f))
	f.Add(binary.BigEndian.AppendUint64(bs(0x82, 0xFF), 1<<63))
	f.Add(maskedFrame(0x09, wsKey, []byte("x")))
	const max = 1024
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			fr, err := readWSFrame(r, max)
			if err != nil {
				return
			}
			if len(fr.payload) > max || len(fr.payload) > len(data) {
				t.Fatalf("frame of %d bytes from %d bytes of input, limit %d", len(fr.payload), len(data), max)
			}
			switch fr.opcode {
			case wsOpClose, wsOpPing, wsOpPong:
				if !fr.fin || len(fr.payload) > 125 {
					t.Fatalf("control frame op %#x fin %v with %d bytes", fr.opcode, fr.fin, len(fr.payload))
				}
			case wsOpContinuation, wsOpText, wsOpBinary:
			default:
				t.Fatalf("reserved opcode %#x accepted", fr.opcode)
			}
			// Masked again with any key, the frame reads back the same.
			b0 := fr.opcode
			if fr.fin {
				b0 |= 0x80
			}
			again, err := readWSFrame(bytes.NewReader(maskedFrame(b0, [4]byte{9, 8, 7, 6}, fr.payload)), max)
			if err != nil || again.fin != fr.fin || again.opcode != fr.opcode || !bytes.Equal(again.payload, fr.payload) {
				t.Fatalf("frame {%v %#x % x} masked again reads {%v %#x % x}, %v",
					fr.fin, fr.opcode, fr.payload, again.fin, again.opcode, again.payload, err)
			}
		}
	})
}

// stallingReader serves its bytes, then fails as a stalled client's read
// deadline would; it records the largest read asked of it, which is the
// buffer readWSFrame has allocated ahead of the bytes.
type stallingReader struct {
	data    []byte
	maxRead int
}

var errStalled = errors.New("stalled")

func (r *stallingReader) Read(p []byte) (int, error) {
	r.maxRead = max(r.maxRead, len(p))
	if len(r.data) == 0 {
		return 0, errStalled
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestReadWSFrameGrowsAsBytesArrive is the attack of a client that sends
// the header of a 60000-byte frame (and maybe a few bytes of it) and then
// stalls: readWSFrame must not have allocated the 60000 bytes. It may ask
// for a little ahead of what arrived (budget), not for the whole frame.
func TestReadWSFrameGrowsAsBytesArrive(t *testing.T) {
	const announced, budget = 60000, 8 << 10
	header := binary.BigEndian.AppendUint16(bs(0x82, 0x80|126), announced) // binary, MASK, 16-bit length
	header = append(header, wsKey[:]...)
	for _, sent := range []int{0, 100, 5000, 20000} {
		r := &stallingReader{data: append(bytes.Clone(header), make([]byte, sent)...)}
		if _, err := readWSFrame(r, wsMaxClientFrame); !errors.Is(err, errStalled) {
			t.Fatalf("readWSFrame(header of %d bytes, %d sent) = %v; want the reader's error", announced, sent, err)
		}
		if r.maxRead > budget {
			t.Errorf("header of %d bytes, %d sent: readWSFrame asked for a read of %d bytes; want at most %d", announced, sent, r.maxRead, budget)
		}
	}
	// The same in heap bytes, averaged over many stalled headers so that
	// whatever else the process allocates meanwhile hardly counts.
	const runs = 100
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		readWSFrame(&stallingReader{data: header}, wsMaxClientFrame)
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > budget {
		t.Errorf("a stalled header of %d bytes allocated %d bytes; want at most %d", announced, per, budget)
	}
}
