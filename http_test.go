package main

// WebSocket framing (RFC 6455) golden bytes, play path parsing, the HTTP
// routes, and WS control frames against a live server.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"
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

func TestParsePlayPath(t *testing.T) {
	long := strings.Repeat("a", 128)
	for _, tc := range []struct {
		app, file string
		key       streamKey
		status    int
	}{
		{"live", "x.flv", streamKey{"live", "x"}, 0},
		{"live", "Stream_01-b.flv", streamKey{"live", "Stream_01-b"}, 0},
		{"a-b_C", "9.flv", streamKey{"a-b_C", "9"}, 0},
		{long, long + ".flv", streamKey{long, long}, 0},
		{"live", "x", streamKey{}, http.StatusNotFound},
		{"live", "x.mp4", streamKey{}, http.StatusNotFound},
		{"live", "x.FLV", streamKey{}, http.StatusNotFound},
		{"live", "x.flv.bak", streamKey{}, http.StatusNotFound},
		{"live", "", streamKey{}, http.StatusNotFound},
		{"live", ".flv", streamKey{}, http.StatusBadRequest},
		{"live", "a.b.flv", streamKey{}, http.StatusBadRequest},
		{"live", "x.flv.flv", streamKey{}, http.StatusBadRequest},
		{"live", "..flv", streamKey{}, http.StatusBadRequest},
		{"live", "../x.flv", streamKey{}, http.StatusBadRequest},
		{"live", "a b.flv", streamKey{}, http.StatusBadRequest},
		{"live", "a%20b.flv", streamKey{}, http.StatusBadRequest},
		{"live", "a\x00.flv", streamKey{}, http.StatusBadRequest},
		{"live", "é.flv", streamKey{}, http.StatusBadRequest},
		{"live", "流.flv", streamKey{}, http.StatusBadRequest},
		{"live", long + "a.flv", streamKey{}, http.StatusBadRequest},
		{"", "x.flv", streamKey{}, http.StatusBadRequest},
		{"li.ve", "x.flv", streamKey{}, http.StatusBadRequest},
		{"li/ve", "x.flv", streamKey{}, http.StatusBadRequest},
		{long + "a", "x.flv", streamKey{}, http.StatusBadRequest},
	} {
		key, status := parsePlayPath(tc.app, tc.file)
		if key != tc.key || status != tc.status {
			t.Errorf("parsePlayPath(%q, %q) = %v, %d; want %v, %d", trimName(tc.app), trimName(tc.file), key, status, tc.key, tc.status)
		}
	}
}

func trimName(s string) string {
	if len(s) > 20 {
		return s[:20] + "..."
	}
	return s
}

// newTestHandler returns the HTTP routes on a running hub.
func newTestHandler(t *testing.T, edit func(*config)) http.Handler {
	t.Helper()
	cfg := defaultConfig()
	if edit != nil {
		edit(&cfg)
	}
	log := slog.New(slog.DiscardHandler)
	h := newHub(&cfg, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return newHTTPServer(&cfg, h, newAdmission(&cfg, nil, &h.counters), log).handler()
}

func TestHTTPRoutes(t *testing.T) {
	h := newTestHandler(t, nil)
	wsHeaders := func(version, key string) http.Header {
		return http.Header{"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"websocket"},
			"Sec-Websocket-Version": {version}, "Sec-Websocket-Key": {key}}
	}
	for _, tc := range []struct {
		name, method, path string
		header             http.Header
		status             int
		wantHeader         map[string]string
		body               string // a substring of the body
	}{
		{
			name: "CORS preflight", method: "OPTIONS", path: "/live/x.flv",
			header: http.Header{"Origin": {"https://example.com"}, "Access-Control-Request-Method": {"GET"},
				"Access-Control-Request-Headers": {"range"}},
			status: http.StatusNoContent,
			wantHeader: map[string]string{"Access-Control-Allow-Origin": "*",
				"Access-Control-Allow-Methods": "GET, HEAD, DELETE, OPTIONS", "Access-Control-Allow-Headers": "range",
				"Access-Control-Max-Age": "86400"},
		},
		{
			name: "preflight on the API", method: "OPTIONS", path: "/api/streams",
			header:     http.Header{"Origin": {"https://example.com"}, "Access-Control-Request-Method": {"DELETE"}},
			status:     http.StatusNoContent,
			wantHeader: map[string]string{"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Headers": ""},
		},
		{
			name: "admin page", method: "GET", path: "/admin/", status: http.StatusOK,
			wantHeader: map[string]string{"Content-Type": "text/html; charset=utf-8", "Access-Control-Allow-Origin": "*"},
			body:       "<",
		},
		{
			name: "root redirects to the admin page", method: "GET", path: "/", status: http.StatusFound,
			wantHeader: map[string]string{"Location": "/admin/"},
		},
		{
			name: "stream list", method: "GET", path: "/api/streams", status: http.StatusOK,
			wantHeader: map[string]string{"Content-Type": "application/json"}, body: "{",
		},
		{
			name: "WS upgrade, version 12", method: "GET", path: "/live/x.flv",
			header: wsHeaders("12", "dGhlIHNhbXBsZSBub25jZQ=="), status: http.StatusBadRequest,
		},
		{
			name: "WS upgrade, bad key", method: "GET", path: "/live/x.flv",
			header: wsHeaders("13", "short"), status: http.StatusBadRequest,
		},
		{
			name: "WS upgrade, no key", method: "GET", path: "/live/x.flv",
			header: wsHeaders("13", ""), status: http.StatusBadRequest,
		},
		{name: "bad name, WS upgrade", method: "GET", path: "/live/a.b.flv", header: wsHeaders("13", "dGhlIHNhbXBsZSBub25jZQ=="), status: http.StatusBadRequest},
		{name: "not .flv", method: "GET", path: "/live/x.mp4", status: http.StatusNotFound},
		{name: "too deep", method: "GET", path: "/a/b/c.flv", status: http.StatusNotFound},
		{name: "POST a stream", method: "POST", path: "/live/x.flv", status: http.StatusMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.path, nil)
			for k, vs := range tc.header {
				for _, v := range vs {
					if v != "" {
						r.Header.Add(k, v)
					}
				}
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Errorf("%s %s = %d; want %d", tc.method, tc.path, w.Code, tc.status)
			}
			for k, v := range tc.wantHeader {
				if got := w.Header().Get(k); got != v {
					t.Errorf("%s %s: %s = %q; want %q", tc.method, tc.path, k, got, v)
				}
			}
			if !strings.Contains(w.Body.String(), tc.body) {
				t.Errorf("%s %s: body %q; want it to contain %q", tc.method, tc.path, trimName(w.Body.String()), tc.body)
			}
		})
	}

	t.Run("no CORS when allow-origin is empty", func(t *testing.T) {
		h := newTestHandler(t, func(c *config) { c.AllowOrigin = "" })
		for _, method := range []string{"OPTIONS", "GET"} {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(method, "/api/streams", nil))
			if got := w.Header().Get("Access-Control-Allow-Origin"); got != "" {
				t.Errorf("%s: Access-Control-Allow-Origin = %q; want none", method, got)
			}
			if got := w.Header().Get("Access-Control-Allow-Methods"); got != "" {
				t.Errorf("%s: Access-Control-Allow-Methods = %q; want none", method, got)
			}
		}
	})
}

// readUntilOpcode reads server frames, skipping media, until one with op.
func readUntilOpcode(t *testing.T, c *wsClient, op byte) []byte {
	t.Helper()
	for {
		got, p, err := c.readFrame()
		if err != nil {
			t.Fatalf("waiting for opcode %#x: %v", op, err)
		}
		if got == op {
			return p
		}
		if got != wsOpBinary {
			t.Fatalf("got opcode %#x (% x) waiting for %#x", got, p, op)
		}
	}
}

// TestWSControlFrames plays a stream nobody publishes over WS-FLV and
// drives the control frames of RFC 6455 §5.5 against a live server.
func TestWSControlFrames(t *testing.T) {
	ts := startServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	key := streamKey{"live", "wsctl"}
	dial := func(t *testing.T) *wsClient {
		c, err := dialWS(ctx, ts.httpAddr, "/live/wsctl.flv")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.nc.Close() })
		c.nc.SetDeadline(time.Now().Add(10 * time.Second))
		waitFor(t, "the WS player", func() bool { return ts.viewers(key) == 1 })
		return c
	}

	t.Run("ping gets a pong with the same payload, close ends the stream", func(t *testing.T) {
		c := dial(t)
		for _, payload := range [][]byte{[]byte("are you there?"), {}, seqBytes(125, 0)} {
			if err := c.writeFrame(wsOpPing, payload); err != nil {
				t.Fatal(err)
			}
			// §5.5.3: the Pong carries the Ping's application data.
			if got := readUntilOpcode(t, c, wsOpPong); !bytes.Equal(got, payload) {
				t.Errorf("pong payload %q; want %q", got, payload)
			}
		}
		// §5.5.1: a client Close gets a Close back, then the server closes.
		if err := c.writeFrame(wsOpClose, joinBytes(bs(0x03, 0xE8), []byte("bye"))); err != nil {
			t.Fatal(err)
		}
		if p := readUntilOpcode(t, c, wsOpClose); len(p) < 2 {
			t.Errorf("server Close payload % x; want a status code", p)
		}
		if op, p, err := c.readFrame(); err == nil {
			t.Errorf("after the Close, a frame op %#x % x; want the connection closed", op, p)
		}
		waitFor(t, "the player to leave", func() bool { return ts.viewers(key) == 0 })
	})

	t.Run("an unmasked frame gets Close 1002 and the connection ends", func(t *testing.T) {
		c := dial(t)
		if _, err := c.nc.Write(bs(0x89, 0x02, 'h', 'i')); err != nil { // unmasked ping
			t.Fatal(err)
		}
		p := readUntilOpcode(t, c, wsOpClose)
		if len(p) < 2 || binary.BigEndian.Uint16(p) != 1002 {
			t.Errorf("server Close payload % x; want status 1002, protocol error (§7.4.1)", p)
		}
		// §1.4, §5.5.1: after its Close the server sends nothing more.
		if op, p, err := c.readFrame(); err == nil {
			t.Errorf("after its Close 1002 the server sent another frame, op %#x % x; want nothing more (§1.4, §5.5.1)", op, p)
		}
		waitFor(t, "the player to leave", func() bool { return ts.viewers(key) == 0 })
	})

	t.Run("a frame over the limit gets Close 1002", func(t *testing.T) {
		c := dial(t)
		hdr := binary.BigEndian.AppendUint64(bs(0x82, 0xFF), 1<<40) // binary, MASK, 1 TiB
		if _, err := c.nc.Write(append(hdr, wsKey[:]...)); err != nil {
			t.Fatal(err)
		}
		if p := readUntilOpcode(t, c, wsOpClose); len(p) < 2 || binary.BigEndian.Uint16(p) != 1002 {
			t.Errorf("server Close payload % x; want status 1002", p)
		}
		waitFor(t, "the player to leave", func() bool { return ts.viewers(key) == 0 })
	})
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

// FuzzParsePlayPath: only names in the safe set are accepted, and they
// are the path's own.
func FuzzParsePlayPath(f *testing.F) {
	for _, s := range [][2]string{{"live", "x.flv"}, {"live", "a.b.flv"}, {"", ".flv"}, {"live", "x.mp4"}, {"é", "流.flv"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, app, file string) {
		key, status := parsePlayPath(app, file)
		switch status {
		case 0:
			if key.App != app || key.Name+".flv" != file || !validName(key.App) || !validName(key.Name) {
				t.Fatalf("parsePlayPath(%q, %q) = %v", app, file, key)
			}
			for _, s := range []string{key.App, key.Name} {
				if len(s) == 0 || len(s) > 128 || strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != "" {
					t.Fatalf("parsePlayPath(%q, %q) accepted %q", app, file, s)
				}
			}
		case http.StatusNotFound:
			if strings.HasSuffix(file, ".flv") {
				t.Fatalf("parsePlayPath(%q, %q) = 404 for a .flv path", app, file)
			}
		case http.StatusBadRequest:
			if !strings.HasSuffix(file, ".flv") {
				t.Fatalf("parsePlayPath(%q, %q) = 400 for a path that is not .flv", app, file)
			}
		default:
			t.Fatalf("parsePlayPath(%q, %q) = status %d", app, file, status)
		}
		if status != 0 && key != (streamKey{}) {
			t.Fatalf("parsePlayPath(%q, %q) = %v with status %d", app, file, key, status)
		}
	})
}
