package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rtmpClient is a small RTMP client for tests, built on the server's own
// chunk reader and writer, which rtmp golden tests pin down separately.
type rtmpClient struct {
	t         testing.TB
	nc        net.Conn
	cr        *chunkReader
	chunkSize int
	txn       float64
}

// dialRTMP connects and handshakes; signed selects the digest handshake.
func dialRTMP(t testing.TB, addr string, signed bool) *rtmpClient {
	t.Helper()
	c := dialRTMPOwned(t, addr, signed)
	t.Cleanup(func() { c.nc.Close() })
	return c
}

// dialRTMPOwned is dialRTMP for callers that close the connection
// themselves: it registers no cleanup, so that a thousand of them leave
// nothing behind in the test's own heap.
func dialRTMPOwned(t testing.TB, addr string, signed bool) *rtmpClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	if err := clientHandshake(nc, signed); err != nil {
		nc.Close()
		t.Fatalf("handshake: %v", err)
	}
	return &rtmpClient{t: t, nc: nc, chunkSize: 128, cr: newChunkReader(bufio.NewReader(nc))}
}

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

// clientHandshake runs the client side and checks S1/S2 the way a Flash
// client would: for a signed C1, S1 must carry a valid server digest and
// S2 must end with the HMAC keyed by the client's digest.
func clientHandshake(rw io.ReadWriter, signed bool) error {
	c1 := makeC1(signed, 1)
	if _, err := rw.Write(append([]byte{3}, c1...)); err != nil {
		return err
	}
	s := make([]byte, 1+2*handshakeSize)
	if _, err := io.ReadFull(rw, s); err != nil {
		return err
	}
	if s[0] != 3 {
		return fmt.Errorf("S0 = %d", s[0])
	}
	s1, s2 := s[1:1+handshakeSize], s[1+handshakeSize:]
	if err := checkServerHandshake(c1, s1, s2, signed); err != nil {
		return err
	}
	_, err := rw.Write(s1) // C2 echoes S1
	return err
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

func (c *rtmpClient) send(csid uint32, typ uint8, streamID, ts uint32, payload []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(appendChunks(nil, csid, typ, streamID, ts, payload, c.chunkSize)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *rtmpClient) command(streamID uint32, name string, args ...any) float64 {
	c.t.Helper()
	c.txn++
	c.send(csidCommand, msgCommandAMF0, streamID, 0, amf0AppendAll(nil, append([]any{name, c.txn}, args...)...))
	return c.txn
}

// read returns the next message, with its payload copied.
func (c *rtmpClient) read() (rtmpMessage, error) {
	msg, err := c.cr.readMessage()
	msg.Payload = bytes.Clone(msg.Payload)
	return msg, err
}

// expectCommand reads until a command named name arrives and returns it.
func (c *rtmpClient) expectCommand(name string) rtmpCommand {
	c.t.Helper()
	for {
		msg, err := c.read()
		if err != nil {
			c.t.Fatalf("waiting for %s: %v", name, err)
		}
		if msg.Type != msgCommandAMF0 {
			continue
		}
		cmd, err := decodeCommand(msg.Payload)
		if err != nil {
			c.t.Fatalf("bad command from server: %v", err)
		}
		if cmd.Name == name {
			return cmd
		}
	}
}

// expectStatus reads until an onStatus arrives and returns its code.
func (c *rtmpClient) expectStatus() string {
	c.t.Helper()
	cmd := c.expectCommand("onStatus")
	if len(cmd.Args) == 0 {
		c.t.Fatalf("onStatus without info object")
	}
	obj, _ := cmd.Args[0].(amfObject)
	return obj.String("code")
}

func (c *rtmpClient) connect(app string) {
	c.t.Helper()
	c.command(0, "connect", amfObject{{"app", app}, {"type", "nonprivate"}, {"tcUrl", "rtmp://127.0.0.1/" + app}})
	res := c.expectCommand("_result")
	if info, _ := res.Args[0].(amfObject); info.String("code") != "NetConnection.Connect.Success" {
		c.t.Fatalf("connect: %v", res.Args)
	}
}

func (c *rtmpClient) createStream() uint32 {
	c.t.Helper()
	txn := c.command(0, "createStream", nil)
	for {
		res := c.expectCommand("_result")
		if res.TxnID == txn {
			id, _ := res.Args[0].(float64)
			return uint32(id)
		}
	}
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

// TestRTMPSession drives a publisher and a player with the test client
// against a live server, checking the replies ffmpeg, OBS and librtmp rely
// on, the AMF3 command form, and the end-of-stream notifications.
func TestRTMPSession(t *testing.T) {
	ts := startServer(t, nil)
	pub := dialRTMP(t, ts.rtmpAddr, true)
	pub.connect("live")
	pub.command(0, "releaseStream", nil, "s1")
	pub.command(0, "FCPublish", nil, "s1")
	pub.expectCommand("onFCPublish")
	sid := pub.createStream()
	if sid != mediaStreamID {
		t.Errorf("createStream = %d", sid)
	}
	pub.command(sid, "publish", nil, "s1?sign=abc", "live")
	if code := pub.expectStatus(); code != "NetStream.Publish.Start" {
		t.Fatalf("publish status %q", code)
	}

	// The player speaks AMF3 commands (type 17: a 0 byte, then AMF0).
	play := dialRTMP(t, ts.rtmpAddr, false)
	play.txn++
	play.send(csidCommand, msgCommandAMF3, 0, 0, append([]byte{0}, amf0AppendAll(nil, "connect", play.txn,
		amfObject{{"app", "live"}, {"objectEncoding", 3.0}})...))
	play.expectCommand("_result")
	// An unknown command with a transaction id gets _error; the connection goes on.
	play.command(0, "noSuchCommand", nil)
	if e := play.expectCommand("_error"); e.TxnID != play.txn {
		t.Errorf("_error txn %v; want %v", e.TxnID, play.txn)
	}
	psid := play.createStream()
	play.command(psid, "play", nil, "s1", -1000.0, -1.0, true)
	if code := play.expectStatus(); code != "NetStream.Play.Reset" {
		t.Errorf("first play status %q; want Reset", code)
	}
	if code := play.expectStatus(); code != "NetStream.Play.Start" {
		t.Errorf("second play status %q; want Start", code)
	}
	waitFor(t, "the player", func() bool { return ts.viewers(streamKey{"live", "s1"}) == 1 })

	// Publish metadata, headers and frames; the player gets them.
	meta := amf0AppendAll(nil, "@setDataFrame", "onMetaData", amfECMAArray{{"videocodecid", 7.0}, {"audiocodecid", 10.0}})
	pub.send(csidData, msgDataAMF0, sid, 0, meta)
	pub.send(csidAudio, msgAudio, sid, 0, []byte{0xAF, 0, 0x12, 0x10})
	pub.send(csidVideo, msgVideo, sid, 0, []byte{0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F})
	pub.send(csidVideo, msgVideo, sid, 40, []byte{0x17, 1, 0, 0, 0, 0xAA})
	pub.send(csidVideo, msgVideo, sid, 0x1000000+80, []byte{0x27, 1, 0, 0, 0, 0xBB}) // extended timestamp
	var got []rtmpMessage
	for len(got) < 5 {
		msg, err := play.read()
		if err != nil {
			t.Fatal(err)
		}
		if msg.Type == msgAudio || msg.Type == msgVideo || msg.Type == msgDataAMF0 {
			got = append(got, msg)
		}
	}
	if v, _, _ := amf0Decode(got[0].Payload); v != "onMetaData" {
		t.Errorf("player's metadata starts with %v; want onMetaData", v)
	}
	if got[4].Time != 0x1000000+80 || got[4].Payload[5] != 0xBB {
		t.Errorf("extended-timestamp frame: time %#x payload % x", got[4].Time, got[4].Payload)
	}

	// A second publisher on the live name: BadName, and it is closed.
	dup := dialRTMP(t, ts.rtmpAddr, false)
	dup.connect("live")
	dsid := dup.createStream()
	dup.command(dsid, "publish", nil, "s1", "live")
	if code := dup.expectStatus(); code != "NetStream.Publish.BadName" {
		t.Errorf("duplicate publish status %q; want BadName", code)
	}
	if _, err := dup.read(); err == nil {
		t.Errorf("duplicate publisher not closed")
	}

	// The publisher leaves: the player gets UnpublishNotify, then Stream EOF.
	pub.command(sid, "deleteStream", nil, float64(sid))
	if code := play.expectStatus(); code != "NetStream.Play.UnpublishNotify" {
		t.Errorf("status %q; want UnpublishNotify", code)
	}
	for {
		msg, err := play.read()
		if err != nil {
			t.Fatalf("waiting for Stream EOF: %v", err)
		}
		if msg.Type == msgUserControl && binary.BigEndian.Uint16(msg.Payload) == ucStreamEOF {
			break
		}
	}
}

// TestRTMPBadNames: names outside the safe set get a clear status and the
// connection is closed.
func TestRTMPBadNames(t *testing.T) {
	ts := startServer(t, nil)
	for _, name := range []string{"", "a.b", "../x", strings.Repeat("x", 300), "a b"} {
		c := dialRTMP(t, ts.rtmpAddr, false)
		c.connect("live")
		sid := c.createStream()
		c.command(sid, "publish", nil, name, "live")
		if code := c.expectStatus(); code != "NetStream.Publish.BadName" {
			t.Errorf("publish %q: status %q; want BadName", name, code)
		}
	}
}

// TestSilentPublisherYields: a publisher that stops sending without closing
// (an encoder whose network died) loses its name to a new publisher.
func TestSilentPublisherYields(t *testing.T) {
	ts := startServer(t, func(c *config) { c.PingTimeout = 2 * time.Second; c.Ping = time.Second })
	old := dialRTMP(t, ts.rtmpAddr, false)
	old.connect("live")
	sid := old.createStream()
	old.command(sid, "publish", nil, "stale", "live")
	old.expectStatus()
	// old now says nothing at all. Within the ping timeout it is dropped.
	waitFor(t, "the silent publisher to be dropped", func() bool { return !ts.live(streamKey{"live", "stale"}) })
	fresh := dialRTMP(t, ts.rtmpAddr, false)
	fresh.connect("live")
	fsid := fresh.createStream()
	fresh.command(fsid, "publish", nil, "stale", "live")
	if code := fresh.expectStatus(); code != "NetStream.Publish.Start" {
		t.Fatalf("new publisher got %q", code)
	}
}

// ---- Chunk stream golden table (Adobe RTMP 1.0 §5.3) ----

// bs returns its arguments, so that golden tables can spell bytes out
// field by field.
func bs(b ...byte) []byte { return b }

// joinBytes concatenates byte slices into a new one.
func joinBytes(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// seqBytes returns n bytes counting up from start (mod 256), so that a
// misplaced chunk shows in the payload.
func seqBytes(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

func u32be(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// goldenMsg is a message of the chunk golden table and the chunk stream
// it travels on.
type goldenMsg struct {
	csid uint32
	rtmpMessage
}

func gmsg(csid uint32, typ uint8, streamID, ts uint32, payload []byte) goldenMsg {
	return goldenMsg{csid, rtmpMessage{Type: typ, StreamID: streamID, Time: ts, Payload: payload}}
}

// chunkCase is one entry of the golden table: bytes on the wire and the
// messages readMessage must return from them, in order.
type chunkCase struct {
	name string
	enc  []byte
	msgs []goldenMsg
	// err is what readMessage returns after msgs (checked with errors.Is);
	// nil means io.EOF, a clean end between messages.
	err error
	// writer: enc is exactly what appendChunks writes for msgs (a type 0
	// header, then type 3 continuations), at the chunk size in force: 128
	// until a Set Chunk Size in msgs changes it.
	writer bool
}

// errTruncated in a golden case accepts io.EOF or io.ErrUnexpectedEOF.
var errTruncated = errors.New("input ends inside a chunk")

var (
	goldP200 = seqBytes(200, 0)
	goldP150 = seqBytes(150, 0x80)
	goldP300 = seqBytes(300, 7)
)

var chunkGolden = []chunkCase{
	{
		name: "fmt 0, csid 3, one chunk",
		enc: joinBytes(
			bs(0x03),                   // basic header (§5.3.1.1): fmt 0, csid 3
			bs(0x00, 0x00, 0x64),       // timestamp 100 (§5.3.1.2.1)
			bs(0x00, 0x00, 0x04),       // message length 4
			bs(0x14),                   // message type id 20: AMF0 command
			bs(0x01, 0x00, 0x00, 0x00), // message stream id 1, little-endian
			[]byte("abcd"),             // chunk data
		),
		msgs:   []goldenMsg{gmsg(3, msgCommandAMF0, 1, 100, []byte("abcd"))},
		writer: true,
	},
	{
		name: "csid 2, the lowest 1-byte id: Window Acknowledgement Size",
		enc: joinBytes(
			bs(0x02),                   // fmt 0, csid 2 (protocol control, §5.4)
			bs(0x00, 0x00, 0x00),       // timestamp 0
			bs(0x00, 0x00, 0x04),       // length 4
			bs(0x05),                   // type 5: Window Acknowledgement Size
			bs(0x00, 0x00, 0x00, 0x00), // stream id 0
			bs(0x00, 0x4C, 0x4B, 0x40), // 5000000
		),
		msgs:   []goldenMsg{gmsg(2, msgWindowAckSize, 0, 0, u32be(5000000))},
		writer: true,
	},
	{
		name: "csid 63, the highest 1-byte id",
		enc: joinBytes(
			bs(0x3F),                   // fmt 0, csid 63
			bs(0x00, 0x00, 0x01),       // timestamp 1
			bs(0x00, 0x00, 0x01),       // length 1
			bs(0x08),                   // type 8: audio
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0xAF),
		),
		msgs:   []goldenMsg{gmsg(63, msgAudio, 1, 1, bs(0xAF))},
		writer: true,
	},
	{
		name: "stream id is little-endian",
		enc: joinBytes(
			bs(0x05),                   // fmt 0, csid 5
			bs(0x00, 0x00, 0x00),       // timestamp 0
			bs(0x00, 0x00, 0x01),       // length 1
			bs(0x12),                   // type 18: AMF0 data
			bs(0x04, 0x03, 0x02, 0x01), // stream id 0x01020304
			bs(0x05),                   // AMF0 null
		),
		msgs:   []goldenMsg{gmsg(5, msgDataAMF0, 0x01020304, 0, bs(0x05))},
		writer: true,
	},
	{
		name: "zero-length message",
		enc: joinBytes(
			bs(0x03),                   // fmt 0, csid 3
			bs(0x00, 0x00, 0x07),       // timestamp 7
			bs(0x00, 0x00, 0x00),       // length 0: no chunk data
			bs(0x09),                   // type 9: video
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
		),
		msgs:   []goldenMsg{gmsg(3, msgVideo, 1, 7, nil)},
		writer: true,
	},
	{
		name: "fmt 0 then fmt 3 continuation at chunk size 128",
		enc: joinBytes(
			bs(0x06),                   // fmt 0, csid 6
			bs(0x00, 0x00, 0x28),       // timestamp 40
			bs(0x00, 0x00, 0xC8),       // length 200
			bs(0x09),                   // type 9: video
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			goldP200[:128],             // first chunk: 128 bytes
			bs(0xC6),                   // fmt 3, csid 6 (§5.3.1.2.4): no message header
			goldP200[128:],             // the other 72 bytes
		),
		msgs:   []goldenMsg{gmsg(6, msgVideo, 1, 40, goldP200)},
		writer: true,
	},
	{
		name: "2-byte basic header: csid 64",
		enc: joinBytes(
			bs(0x00, 0x00),             // fmt 0, csid field 0: csid = 64 + 0x00
			bs(0x00, 0x00, 0x00),       // timestamp 0
			bs(0x00, 0x00, 0x03),       // length 3
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0xAF, 0x01, 0x21),
		),
		msgs:   []goldenMsg{gmsg(64, msgAudio, 1, 0, bs(0xAF, 0x01, 0x21))},
		writer: true,
	},
	{
		name: "2-byte basic header: csid 319, with continuation",
		enc: joinBytes(
			bs(0x00, 0xFF),             // fmt 0, csid = 64 + 255
			bs(0x00, 0x01, 0x00),       // timestamp 256
			bs(0x00, 0x00, 0x82),       // length 130
			bs(0x09),                   // type 9
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			goldP200[:128],             //
			bs(0xC0, 0xFF),             // fmt 3, csid 319
			goldP200[128:130],          //
		),
		msgs:   []goldenMsg{gmsg(319, msgVideo, 1, 256, goldP200[:130])},
		writer: true,
	},
	{
		name: "3-byte basic header: csid 320",
		enc: joinBytes(
			bs(0x01, 0x00, 0x01),       // fmt 0, csid field 1: csid = 64 + 0x00 + 0x01*256
			bs(0x00, 0x00, 0x00),       // timestamp 0
			bs(0x00, 0x00, 0x02),       // length 2
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0xAF, 0x00),
		),
		msgs:   []goldenMsg{gmsg(320, msgAudio, 1, 0, bs(0xAF, 0x00))},
		writer: true,
	},
	{
		name: "3-byte basic header: csid 65599, the highest, with continuation",
		enc: joinBytes(
			bs(0x01, 0xFF, 0xFF),       // fmt 0, csid = 64 + 255 + 255*256
			bs(0x00, 0x00, 0x0A),       // timestamp 10
			bs(0x00, 0x00, 0x81),       // length 129
			bs(0x09),                   // type 9
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			goldP200[:128],             //
			bs(0xC1, 0xFF, 0xFF),       // fmt 3, csid 65599
			goldP200[128:129],          //
		),
		msgs:   []goldenMsg{gmsg(65599, msgVideo, 1, 10, goldP200[:129])},
		writer: true,
	},
	{
		name: "3-byte form of csid 64 is the same chunk stream as the 2-byte form",
		enc: joinBytes(
			bs(0x01, 0x00, 0x00),       // fmt 0, 3-byte form: csid = 64 + 0 + 0*256
			bs(0x00, 0x00, 0x05),       // timestamp 5
			bs(0x00, 0x00, 0x01),       // length 1
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0xAA),                   //
			bs(0x40, 0x00),             // fmt 1, 2-byte form: csid 64
			bs(0x00, 0x00, 0x0A),       // timestamp delta 10
			bs(0x00, 0x00, 0x01),       // length 1
			bs(0x08),                   // type 8
			bs(0xBB),
		),
		msgs: []goldenMsg{
			gmsg(64, msgAudio, 1, 5, bs(0xAA)),
			gmsg(64, msgAudio, 1, 15, bs(0xBB)),
		},
	},
	{
		name: "fmt 1: delta, length and type; stream id kept",
		enc: joinBytes(
			bs(0x04),                   // fmt 0, csid 4
			bs(0x00, 0x03, 0xE8),       // timestamp 1000
			bs(0x00, 0x00, 0x02),       // length 2
			bs(0x08),                   // type 8
			bs(0x07, 0x00, 0x00, 0x00), // stream id 7
			bs(0xAF, 0x01),             //
			bs(0x44),                   // fmt 1, csid 4 (§5.3.1.2.2)
			bs(0x00, 0x00, 0x28),       // timestamp delta 40
			bs(0x00, 0x00, 0x03),       // length 3
			bs(0x12),                   // type 18
			bs(0x05, 0x05, 0x05),
		),
		msgs: []goldenMsg{
			gmsg(4, msgAudio, 7, 1000, bs(0xAF, 0x01)),
			gmsg(4, msgDataAMF0, 7, 1040, bs(0x05, 0x05, 0x05)),
		},
	},
	{
		name: "fmt 2: delta only; length, type and stream id kept",
		enc: joinBytes(
			bs(0x04),                   // fmt 0, csid 4
			bs(0x00, 0x03, 0xE8),       // timestamp 1000
			bs(0x00, 0x00, 0x02),       // length 2
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0xAF, 0x01),             //
			bs(0x84),                   // fmt 2, csid 4 (§5.3.1.2.3)
			bs(0x00, 0x00, 0x17),       // timestamp delta 23
			bs(0xAF, 0x02),
		),
		msgs: []goldenMsg{
			gmsg(4, msgAudio, 1, 1000, bs(0xAF, 0x01)),
			gmsg(4, msgAudio, 1, 1023, bs(0xAF, 0x02)),
		},
	},
	{
		name: "fmt 3 new message after fmt 2 reuses its delta",
		enc: joinBytes(
			bs(0x04),                   // fmt 0, csid 4
			bs(0x00, 0x03, 0xE8),       // timestamp 1000
			bs(0x00, 0x00, 0x02),       // length 2
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0xAF, 0x01),             //
			bs(0x84),                   // fmt 2, csid 4
			bs(0x00, 0x00, 0x17),       // delta 23
			bs(0xAF, 0x02),             //
			bs(0xC4),                   // fmt 3, csid 4: a new message, delta 23 again (§5.3.1.2.4)
			bs(0xAF, 0x03),             //
			bs(0xC4),                   // and again
			bs(0xAF, 0x04),
		),
		msgs: []goldenMsg{
			gmsg(4, msgAudio, 1, 1000, bs(0xAF, 0x01)),
			gmsg(4, msgAudio, 1, 1023, bs(0xAF, 0x02)),
			gmsg(4, msgAudio, 1, 1046, bs(0xAF, 0x03)),
			gmsg(4, msgAudio, 1, 1069, bs(0xAF, 0x04)),
		},
	},
	{
		name: "fmt 3 new message after fmt 1 reuses its delta and length",
		enc: joinBytes(
			bs(0x04),                   // fmt 0, csid 4
			bs(0x00, 0x03, 0xE8),       // timestamp 1000
			bs(0x00, 0x00, 0x01),       // length 1
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0x11),                   //
			bs(0x44),                   // fmt 1, csid 4
			bs(0x00, 0x00, 0x28),       // delta 40
			bs(0x00, 0x00, 0x02),       // length 2
			bs(0x09),                   // type 9
			bs(0x22, 0x22),             //
			bs(0xC4),                   // fmt 3: new message of 2 bytes, type 9, delta 40
			bs(0x33, 0x33),
		),
		msgs: []goldenMsg{
			gmsg(4, msgAudio, 1, 1000, bs(0x11)),
			gmsg(4, msgVideo, 1, 1040, bs(0x22, 0x22)),
			gmsg(4, msgVideo, 1, 1080, bs(0x33, 0x33)),
		},
	},
	{
		// After a type 0 header the spec leaves the delta of a type 3
		// message undefined; ffmpeg and librtmp take the type 0 timestamp
		// field as the delta (see readChunk).
		name: "fmt 3 new message after fmt 0 takes the fmt 0 field as delta",
		enc: joinBytes(
			bs(0x04),                   // fmt 0, csid 4
			bs(0x00, 0x00, 0x64),       // timestamp 100
			bs(0x00, 0x00, 0x01),       // length 1
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0x11),                   //
			bs(0xC4),                   // fmt 3: new message, delta = 100
			bs(0x22),
		),
		msgs: []goldenMsg{
			gmsg(4, msgAudio, 1, 100, bs(0x11)),
			gmsg(4, msgAudio, 1, 200, bs(0x22)),
		},
	},
	{
		name: "extended timestamp on fmt 0",
		enc: joinBytes(
			bs(0x06),                   // fmt 0, csid 6
			bs(0xFF, 0xFF, 0xFF),       // timestamp field 0xFFFFFF: see extended timestamp
			bs(0x00, 0x00, 0x02),       // length 2
			bs(0x09),                   // type 9
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0x01, 0x02, 0x03, 0x04), // extended timestamp (§5.3.1.3) 0x01020304
			bs(0x17, 0x01),
		),
		msgs:   []goldenMsg{gmsg(6, msgVideo, 1, 0x01020304, bs(0x17, 0x01))},
		writer: true,
	},
	{
		name: "timestamp 0xFFFFFF itself is extended",
		enc: joinBytes(
			bs(0x06),                   // fmt 0, csid 6
			bs(0xFF, 0xFF, 0xFF),       // timestamp field 0xFFFFFF
			bs(0x00, 0x00, 0x01),       // length 1
			bs(0x09),                   // type 9
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0x00, 0xFF, 0xFF, 0xFF), // extended timestamp 0x00FFFFFF
			bs(0x27),
		),
		msgs:   []goldenMsg{gmsg(6, msgVideo, 1, 0xFFFFFF, bs(0x27))},
		writer: true,
	},
	{
		name: "extended timestamp repeated on fmt 3 continuation chunks",
		enc: joinBytes(
			bs(0x06),                   // fmt 0, csid 6
			bs(0xFF, 0xFF, 0xFF),       // timestamp field 0xFFFFFF
			bs(0x00, 0x01, 0x04),       // length 260
			bs(0x09),                   // type 9
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0x12, 0x34, 0x56, 0x78), // extended timestamp 0x12345678
			goldP300[:128],             //
			bs(0xC6),                   // fmt 3, csid 6
			bs(0x12, 0x34, 0x56, 0x78), // extended timestamp again
			goldP300[128:256],          //
			bs(0xC6),                   // fmt 3, csid 6
			bs(0x12, 0x34, 0x56, 0x78), // extended timestamp again
			goldP300[256:260],
		),
		msgs:   []goldenMsg{gmsg(6, msgVideo, 1, 0x12345678, goldP300[:260])},
		writer: true,
	},
	{
		name: "fmt 1 with extended delta, then fmt 3 new message reusing it",
		enc: joinBytes(
			bs(0x04),                   // fmt 0, csid 4
			bs(0x00, 0x00, 0x00),       // timestamp 0
			bs(0x00, 0x00, 0x01),       // length 1
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0x11),                   //
			bs(0x44),                   // fmt 1, csid 4
			bs(0xFF, 0xFF, 0xFF),       // delta field 0xFFFFFF
			bs(0x00, 0x00, 0x01),       // length 1
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // extended delta 0x01000000
			bs(0x22),                   //
			bs(0xC4),                   // fmt 3: new message, same delta
			bs(0x01, 0x00, 0x00, 0x00), // extended timestamp, as the header before it had one
			bs(0x33),
		),
		msgs: []goldenMsg{
			gmsg(4, msgAudio, 1, 0, bs(0x11)),
			gmsg(4, msgAudio, 1, 0x01000000, bs(0x22)),
			gmsg(4, msgAudio, 1, 0x02000000, bs(0x33)),
		},
	},
	{
		name: "fmt 2 with extended delta, continuation and fmt 3 new message",
		enc: joinBytes(
			bs(0x04),                   // fmt 0, csid 4
			bs(0x00, 0x00, 0x0A),       // timestamp 10
			bs(0x00, 0x00, 0x81),       // length 129
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			goldP200[:128],             //
			bs(0xC4),                   // fmt 3 continuation, no extended timestamp
			goldP200[128:129],          //
			bs(0x84),                   // fmt 2, csid 4
			bs(0xFF, 0xFF, 0xFF),       // delta field 0xFFFFFF
			bs(0x00, 0xFF, 0xFF, 0xFF), // extended delta 0xFFFFFF
			goldP200[1:129],            //
			bs(0xC4),                   // fmt 3 continuation
			bs(0x00, 0xFF, 0xFF, 0xFF), // extended timestamp
			goldP200[129:130],          //
			bs(0xC4),                   // fmt 3: new message, delta 0xFFFFFF again
			bs(0x00, 0xFF, 0xFF, 0xFF), // extended timestamp
			goldP200[2:130],            //
			bs(0xC4),                   // fmt 3 continuation
			bs(0x00, 0xFF, 0xFF, 0xFF), // extended timestamp
			goldP200[130:131],
		),
		msgs: []goldenMsg{
			gmsg(4, msgAudio, 1, 10, goldP200[:129]),
			gmsg(4, msgAudio, 1, 10+0xFFFFFF, goldP200[1:130]),
			gmsg(4, msgAudio, 1, 10+2*0xFFFFFF, goldP200[2:131]),
		},
	},
	{
		name: "fmt 3 new message after an extended fmt 0 takes the whole timestamp as delta",
		enc: joinBytes(
			bs(0x04),                   // fmt 0, csid 4
			bs(0xFF, 0xFF, 0xFF),       // timestamp field 0xFFFFFF
			bs(0x00, 0x00, 0x01),       // length 1
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0x01, 0x00, 0x00, 0x00), // extended timestamp 0x01000000
			bs(0x11),                   //
			bs(0xC4),                   // fmt 3: new message
			bs(0x01, 0x00, 0x00, 0x00), // extended timestamp
			bs(0x22),
		),
		msgs: []goldenMsg{
			gmsg(4, msgAudio, 1, 0x01000000, bs(0x11)),
			gmsg(4, msgAudio, 1, 0x02000000, bs(0x22)),
		},
	},
	{
		name: "two chunk streams interleaved",
		enc: joinBytes(
			bs(0x04),                   // fmt 0, csid 4
			bs(0x00, 0x00, 0x05),       // timestamp 5
			bs(0x00, 0x00, 0xC8),       // length 200
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			goldP200[:128],             // audio, first chunk
			bs(0x06),                   // fmt 0, csid 6
			bs(0x00, 0x00, 0x07),       // timestamp 7
			bs(0x00, 0x00, 0x96),       // length 150
			bs(0x09),                   // type 9
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			goldP150[:128],             // video, first chunk
			bs(0xC4),                   // fmt 3, csid 4
			goldP200[128:],             // audio complete
			bs(0xC6),                   // fmt 3, csid 6
			goldP150[128:],             // video complete
		),
		msgs: []goldenMsg{
			gmsg(4, msgAudio, 1, 5, goldP200),
			gmsg(6, msgVideo, 1, 7, goldP150),
		},
	},
	{
		name: "Set Chunk Size 256, then a 300-byte message",
		enc: joinBytes(
			bs(0x02),                   // fmt 0, csid 2
			bs(0x00, 0x00, 0x00),       // timestamp 0
			bs(0x00, 0x00, 0x04),       // length 4
			bs(0x01),                   // type 1: Set Chunk Size (§5.4.1)
			bs(0x00, 0x00, 0x00, 0x00), // stream id 0
			bs(0x00, 0x00, 0x01, 0x00), // 256
			bs(0x03),                   // fmt 0, csid 3
			bs(0x00, 0x00, 0x00),       // timestamp 0
			bs(0x00, 0x01, 0x2C),       // length 300
			bs(0x14),                   // type 20
			bs(0x00, 0x00, 0x00, 0x00), // stream id 0
			goldP300[:256],             // a chunk is now 256 bytes
			bs(0xC3),                   // fmt 3, csid 3
			goldP300[256:],
		),
		msgs: []goldenMsg{
			gmsg(2, msgSetChunkSize, 0, 0, u32be(256)),
			gmsg(3, msgCommandAMF0, 0, 0, goldP300),
		},
		writer: true,
	},
	{
		name: "Set Chunk Size in the middle of a message applies to its next chunk",
		enc: joinBytes(
			bs(0x04),                   // fmt 0, csid 4
			bs(0x00, 0x00, 0x00),       // timestamp 0
			bs(0x00, 0x01, 0x2C),       // length 300
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			goldP300[:128],             // chunk of 128
			bs(0x02),                   // fmt 0, csid 2
			bs(0x00, 0x00, 0x00),       // timestamp 0
			bs(0x00, 0x00, 0x04),       // length 4
			bs(0x01),                   // type 1: Set Chunk Size
			bs(0x00, 0x00, 0x00, 0x00), // stream id 0
			bs(0x00, 0x00, 0x01, 0x00), // 256
			bs(0xC4),                   // fmt 3, csid 4
			goldP300[128:],             // the other 172 bytes, in one chunk
		),
		msgs: []goldenMsg{
			gmsg(2, msgSetChunkSize, 0, 0, u32be(256)),
			gmsg(4, msgAudio, 1, 0, goldP300),
		},
	},
	{
		name: "Set Chunk Size 0x7FFFFFFF, the largest",
		enc: joinBytes(
			bs(0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0), // fmt 0, csid 2, length 4, Set Chunk Size
			bs(0x7F, 0xFF, 0xFF, 0xFF),                   // 0x7FFFFFFF
			bs(0x03),                                     // fmt 0, csid 3
			bs(0x00, 0x00, 0x00),                         // timestamp 0
			bs(0x00, 0x01, 0x2C),                         // length 300
			bs(0x14),                                     // type 20
			bs(0x00, 0x00, 0x00, 0x00),                   // stream id 0
			goldP300,                                     // one chunk
		),
		msgs: []goldenMsg{
			gmsg(2, msgSetChunkSize, 0, 0, u32be(0x7FFFFFFF)),
			gmsg(3, msgCommandAMF0, 0, 0, goldP300),
		},
		writer: true,
	},
	{
		name: "Set Chunk Size with the top bit set is masked to 31 bits",
		enc: joinBytes(
			bs(0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0),          // fmt 0, csid 2, length 4, Set Chunk Size
			bs(0x80, 0x00, 0x01, 0x00),                            // 0x80000100: the bit must be 0 (§5.4.1); size 256
			bs(0x03, 0, 0, 0, 0x00, 0x01, 0x2C, 0x14, 0, 0, 0, 0), // fmt 0, csid 3, length 300, type 20
			goldP300[:256],
			bs(0xC3), // fmt 3, csid 3
			goldP300[256:],
		),
		msgs: []goldenMsg{
			gmsg(2, msgSetChunkSize, 0, 0, u32be(0x80000100)),
			gmsg(3, msgCommandAMF0, 0, 0, goldP300),
		},
		writer: true,
	},
	{
		name: "Set Chunk Size 1",
		enc: joinBytes(
			bs(0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0), // fmt 0, csid 2, length 4, Set Chunk Size
			bs(0x00, 0x00, 0x00, 0x01),                   // 1
			bs(0x03, 0, 0, 9, 0, 0, 3, 0x14, 0, 0, 0, 0), // fmt 0, csid 3, timestamp 9, length 3, type 20
			bs('a'),
			bs(0xC3), // fmt 3, csid 3
			bs('b'),
			bs(0xC3), // fmt 3, csid 3
			bs('c'),
		),
		msgs: []goldenMsg{
			gmsg(2, msgSetChunkSize, 0, 0, u32be(1)),
			gmsg(3, msgCommandAMF0, 0, 9, []byte("abc")),
		},
		writer: true,
	},
	{
		name: "Abort Message drops a partial message",
		enc: joinBytes(
			bs(0x04),                   // fmt 0, csid 4
			bs(0x00, 0x00, 0x00),       // timestamp 0
			bs(0x00, 0x00, 0xC8),       // length 200
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			goldP200[:128],             // first chunk; the rest never comes
			bs(0x02),                   // fmt 0, csid 2
			bs(0x00, 0x00, 0x00),       // timestamp 0
			bs(0x00, 0x00, 0x04),       // length 4
			bs(0x02),                   // type 2: Abort Message (§5.4.2)
			bs(0x00, 0x00, 0x00, 0x00), // stream id 0
			bs(0x00, 0x00, 0x00, 0x04), // chunk stream id 4
			bs(0x04),                   // fmt 0, csid 4: a new message
			bs(0x00, 0x00, 0x14),       // timestamp 20
			bs(0x00, 0x00, 0x02),       // length 2
			bs(0x08),                   // type 8
			bs(0x01, 0x00, 0x00, 0x00), // stream id 1
			bs(0xAF, 0x01),
		),
		msgs: []goldenMsg{
			gmsg(2, msgAbort, 0, 0, u32be(4)),
			gmsg(4, msgAudio, 1, 20, bs(0xAF, 0x01)),
		},
	},
	{
		name: "after Abort a fmt 3 chunk starts the message over",
		enc: joinBytes(
			bs(0x04, 0, 0, 0, 0, 0, 0x81, 0x08, 1, 0, 0, 0), // fmt 0, csid 4, length 129, type 8, stream 1
			goldP200[:128], // first chunk
			bs(0x02, 0, 0, 0, 0, 0, 4, 0x02, 0, 0, 0, 0), // fmt 0, csid 2, length 4, Abort
			bs(0x00, 0x00, 0x00, 0x04),                   // chunk stream id 4
			bs(0xC4),                                     // fmt 3, csid 4: a new message of 129 bytes
			goldP200[50:178],                             //
			bs(0xC4),                                     // fmt 3 continuation
			goldP200[178:179],
		),
		msgs: []goldenMsg{
			gmsg(2, msgAbort, 0, 0, u32be(4)),
			gmsg(4, msgAudio, 1, 0, goldP200[50:179]),
		},
	},
	{
		name: "Abort of a chunk stream never used is harmless",
		enc: joinBytes(
			bs(0x02, 0, 0, 0, 0, 0, 4, 0x02, 0, 0, 0, 0), // fmt 0, csid 2, length 4, Abort
			bs(0x00, 0x00, 0x00, 0x09),                   // chunk stream id 9
			bs(0x03, 0, 0, 0, 0, 0, 1, 0x14, 0, 0, 0, 0), // fmt 0, csid 3, length 1, type 20
			bs(0x05),
		),
		msgs: []goldenMsg{
			gmsg(2, msgAbort, 0, 0, u32be(9)),
			gmsg(3, msgCommandAMF0, 0, 0, bs(0x05)),
		},
		writer: true,
	},
	{
		name: "a new fmt 0 header in the middle of a message replaces it",
		enc: joinBytes(
			bs(0x04, 0, 0, 0, 0, 0, 0xC8, 0x08, 1, 0, 0, 0), // fmt 0, csid 4, length 200, type 8
			goldP200[:128], // first chunk
			bs(0x04, 0, 0, 3, 0, 0, 0x02, 0x08, 1, 0, 0, 0), // fmt 0, csid 4, timestamp 3, length 2
			bs(0xAF, 0x01),
		),
		msgs: []goldenMsg{gmsg(4, msgAudio, 1, 3, bs(0xAF, 0x01))},
	},

	// Errors.
	{
		name: "fmt 3 on a chunk stream with no header",
		enc:  bs(0xC3, 0x00), // fmt 3, csid 3: nothing to continue
		err:  errRTMPNoHeader,
	},
	{
		name: "fmt 1 on a chunk stream with no header",
		enc:  bs(0x43, 0, 0, 0, 0, 0, 1, 0x08, 0), // fmt 1, csid 3
		err:  errRTMPNoHeader,
	},
	{
		name: "fmt 2 on a 2-byte chunk stream with no header",
		enc: joinBytes(
			bs(0x03, 0, 0, 0, 0, 0, 1, 0x14, 0, 0, 0, 0, 0x05), // csid 3 has a header, csid 69 does not
			bs(0x80, 0x05, 0, 0, 0),                            // fmt 2, csid 64+5
		),
		msgs: []goldenMsg{gmsg(3, msgCommandAMF0, 0, 0, bs(0x05))},
		err:  errRTMPNoHeader,
	},
	tooManyChunkStreamsCase(),
	{
		name: "Set Chunk Size 0",
		enc:  bs(0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0x00),
		err:  errRTMPChunkSize,
	},
	{
		name: "Set Chunk Size 0x80000000 is 0 once masked",
		enc:  bs(0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0, 0x80, 0x00, 0x00, 0x00),
		err:  errRTMPChunkSize,
	},
	{
		name: "Set Chunk Size shorter than 4 bytes",
		enc:  bs(0x02, 0, 0, 0, 0, 0, 3, 0x01, 0, 0, 0, 0, 0x00, 0x01, 0x00),
		err:  errRTMPProtocol,
	},
	{
		name: "input ends inside a 2-byte basic header",
		enc:  bs(0x00),
		err:  errTruncated,
	},
	{
		name: "input ends inside a message header",
		enc:  bs(0x03, 0x00, 0x00, 0x00, 0x00),
		err:  errTruncated,
	},
	{
		name: "input ends inside an extended timestamp",
		enc:  bs(0x03, 0xFF, 0xFF, 0xFF, 0, 0, 1, 0x14, 0, 0, 0, 0, 0x01, 0x02),
		err:  errTruncated,
	},
	{
		name: "input ends inside chunk data",
		enc:  bs(0x03, 0, 0, 0, 0, 0, 4, 0x14, 0, 0, 0, 0, 'a', 'b'),
		err:  errTruncated,
	},
	{
		name: "input ends between the chunks of a message",
		enc:  joinBytes(bs(0x03, 0, 0, 0, 0, 0, 0x81, 0x14, 0, 0, 0, 0), goldP200[:128]),
		err:  errTruncated,
	},
}

// tooManyChunkStreamsCase uses maxChunkStreams chunk streams, 2 to 65,
// then opens one more.
func tooManyChunkStreamsCase() chunkCase {
	tc := chunkCase{name: "one chunk stream more than maxChunkStreams", err: errRTMPChunkStreams}
	for csid := uint32(2); csid < 2+maxChunkStreams; csid++ {
		tc.enc = appendChunks(tc.enc, csid, msgAudio, 1, csid, nil, 128)
		tc.msgs = append(tc.msgs, gmsg(csid, msgAudio, 1, csid, nil))
	}
	tc.enc = append(tc.enc,
		0x00, 0x02, // fmt 0, csid 64+2 = 66: the 65th chunk stream
		0, 0, 0, 0, 0, 1, 0x08, 1, 0, 0, 0, 0xAF)
	return tc
}

// encodeGolden encodes msgs the way our writer does, following the Set
// Chunk Size messages among them.
func encodeGolden(msgs []goldenMsg) []byte {
	size := 128
	var out []byte
	for _, m := range msgs {
		out = appendChunks(out, m.csid, m.Type, m.StreamID, m.Time, m.Payload, size)
		if m.Type == msgSetChunkSize {
			size = int(binary.BigEndian.Uint32(m.Payload) & 0x7FFFFFFF)
		}
	}
	return out
}

func describeMessage(m rtmpMessage) string {
	p := m.Payload
	if len(p) > 16 {
		return fmt.Sprintf("{type %d stream %d time %#x payload(%d) % x...}", m.Type, m.StreamID, m.Time, len(p), p[:16])
	}
	return fmt.Sprintf("{type %d stream %d time %#x payload % x}", m.Type, m.StreamID, m.Time, p)
}

func sameMessage(a, b rtmpMessage) bool {
	return a.Type == b.Type && a.StreamID == b.StreamID && a.Time == b.Time && bytes.Equal(a.Payload, b.Payload)
}

// checkPending checks that the reader's count of bytes held in partial
// messages is the sum of its buffers.
func checkPending(t testing.TB, cr *chunkReader) {
	t.Helper()
	sum := 0
	for _, cs := range cr.streams {
		sum += len(cs.buf)
	}
	if cr.pending != sum {
		t.Fatalf("chunkReader.pending = %d; want %d, the bytes in partial messages", cr.pending, sum)
	}
}

func matchErr(err, want error) bool {
	if want == errTruncated {
		return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
	}
	return errors.Is(err, want)
}

// TestChunkReaderGolden decodes every golden case.
func TestChunkReaderGolden(t *testing.T) {
	for _, tc := range chunkGolden {
		t.Run(tc.name, func(t *testing.T) {
			cr := newChunkReader(bufio.NewReader(bytes.NewReader(tc.enc)))
			for i, want := range tc.msgs {
				got, err := cr.readMessage()
				if err != nil {
					t.Fatalf("message %d: readMessage = %v; want %s", i, err, describeMessage(want.rtmpMessage))
				}
				if !sameMessage(got, want.rtmpMessage) {
					t.Fatalf("message %d: readMessage = %s; want %s", i, describeMessage(got), describeMessage(want.rtmpMessage))
				}
				checkPending(t, cr)
			}
			want := tc.err
			if want == nil {
				want = io.EOF
			}
			if msg, err := cr.readMessage(); !matchErr(err, want) {
				t.Fatalf("after %d messages: readMessage = %s, %v; want error %v", len(tc.msgs), describeMessage(msg), err, want)
			}
			if tc.err == nil {
				if got := cr.bytesRead.Load(); got != uint64(len(tc.enc)) {
					t.Errorf("bytesRead = %d; want %d", got, len(tc.enc))
				}
			}
		})
	}
}

// TestAppendChunksGolden encodes the golden cases that are in our
// writer's form and checks chunksLen against the output.
func TestAppendChunksGolden(t *testing.T) {
	for _, tc := range chunkGolden {
		if !tc.writer {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			if got := encodeGolden(tc.msgs); !bytes.Equal(got, tc.enc) {
				t.Errorf("appendChunks =\n% x\nwant\n% x", got, tc.enc)
			}
			size := 128
			for _, m := range tc.msgs {
				n := len(appendChunks(nil, m.csid, m.Type, m.StreamID, m.Time, m.Payload, size))
				if got := chunksLen(m.csid, m.Time, len(m.Payload), size); got != n {
					t.Errorf("chunksLen(%d, %#x, %d, %d) = %d; want %d", m.csid, m.Time, len(m.Payload), size, got, n)
				}
				if m.Type == msgSetChunkSize {
					size = int(binary.BigEndian.Uint32(m.Payload) & 0x7FFFFFFF)
				}
			}
		})
	}
}

// TestAppendChunksRoundTrip: whatever the chunk stream id, timestamp,
// length and chunk size, the reader gets back what appendChunks wrote.
func TestAppendChunksRoundTrip(t *testing.T) {
	for _, csid := range []uint32{2, 63, 64, 319, 320, 65599} {
		for _, ts := range []uint32{0, 1, 0xFFFFFE, 0xFFFFFF, 0x1000000, 0xFFFFFFFF} {
			for _, n := range []int{0, 1, 127, 128, 129, 256, 1000} {
				for _, size := range []int{1, 128, 129, 4096} {
					payload := seqBytes(n, byte(ts))
					enc := appendChunks(nil, csid, msgVideo, 1, ts, payload, size)
					if got := chunksLen(csid, ts, n, size); got != len(enc) {
						t.Fatalf("chunksLen(%d, %#x, %d, %d) = %d; want %d", csid, ts, n, size, got, len(enc))
					}
					cr := newChunkReader(bufio.NewReader(bytes.NewReader(enc)))
					cr.chunkSize = uint32(size)
					got, err := cr.readMessage()
					want := rtmpMessage{Type: msgVideo, StreamID: 1, Time: ts, Payload: payload}
					if err != nil || !sameMessage(got, want) {
						t.Fatalf("csid %d ts %#x len %d chunk %d: readMessage = %s, %v; want %s",
							csid, ts, n, size, describeMessage(got), err, describeMessage(want))
					}
				}
			}
		}
	}
}

// zeroReader reads zeros forever.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestChunkReaderPendingLimit: partial messages on several chunk streams
// may not hold more than maxPendingBytes together. The check is made
// before the chunk's data is read.
func TestChunkReaderPendingLimit(t *testing.T) {
	const l = 0x7FFFFF // maxMessageLen - 1: the longest message allowed
	if maxMessageLen != l+1 {
		t.Fatalf("maxMessageLen changed to %d: update this test", maxMessageLen)
	}
	setSize := func(n uint32) []byte { return appendUint32Control(nil, msgSetChunkSize, n) }
	header := func(csid byte) []byte {
		return bs(csid, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0x09, 1, 0, 0, 0) // fmt 0, length l, video
	}
	parts := []io.Reader{bytes.NewReader(setSize(l - 1))}
	for csid := byte(4); csid < 8; csid++ { // four messages, each one byte short of complete
		parts = append(parts, bytes.NewReader(header(csid)), io.LimitReader(zeroReader{}, l-1))
	}
	parts = append(parts, bytes.NewReader(joinBytes(setSize(0x7FFFFFFF), header(8)))) // csid 8 would add l
	cr := newChunkReader(bufio.NewReader(io.MultiReader(parts...)))
	for i := range 2 {
		msg, err := cr.readMessage()
		if err != nil || msg.Type != msgSetChunkSize {
			t.Fatalf("message %d: readMessage = %s, %v; want Set Chunk Size", i, describeMessage(msg), err)
		}
	}
	if _, err := cr.readMessage(); !errors.Is(err, errRTMPPendingBytes) {
		t.Fatalf("readMessage = %v; want errRTMPPendingBytes", err)
	}
	if want := 4 * (l - 1); cr.pending != want {
		t.Errorf("pending = %d; want %d", cr.pending, want)
	}
}

// TestChunkReaderAllocatesWhatArrives: a message header claiming 8 MB
// followed by 10 bytes must not make the reader allocate 16 MB, whatever
// the chunk size the peer set (readChunk: "a peer can't make us allocate
// for a length it never sends").
func TestChunkReaderAllocatesWhatArrives(t *testing.T) {
	for _, tc := range []struct {
		name   string
		prefix []byte
	}{
		{"chunk size 128", nil},
		{"chunk size 65536", appendUint32Control(nil, msgSetChunkSize, 65536)},
		{"chunk size 0xFFFFFF", appendUint32Control(nil, msgSetChunkSize, 0xFFFFFF)},
		{"chunk size 0x7FFFFFFF", appendUint32Control(nil, msgSetChunkSize, 0x7FFFFFFF)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc := joinBytes(tc.prefix,
				bs(0x06),                   // fmt 0, csid 6
				bs(0x00, 0x00, 0x00),       // timestamp 0
				bs(0x7F, 0xFF, 0xFF),       // length 8 MiB - 1, the most allowed
				bs(0x09),                   // type 9
				bs(0x01, 0x00, 0x00, 0x00), // stream id 1
				seqBytes(10, 0),            // and only 10 bytes of it
			)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			cr := newChunkReader(bufio.NewReader(bytes.NewReader(enc)))
			var err error
			for i := 0; err == nil && i < 10; i++ {
				_, err = cr.readMessage()
			}
			runtime.ReadMemStats(&after)
			if !matchErr(err, errTruncated) {
				t.Errorf("readMessage = %v; want a truncation error", err)
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
				t.Errorf("reading %d bytes allocated %d bytes; want well under 1 MiB", len(enc), n)
			}
		})
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

// chunkSeeds are the golden inputs plus session-shaped byte streams.
func chunkSeeds() [][]byte {
	var seeds [][]byte
	for _, tc := range chunkGolden {
		seeds = append(seeds, tc.enc)
	}
	for _, s := range rtmpSessionSeeds() {
		seeds = append(seeds, s)
	}
	return seeds
}

// FuzzChunkReader reads messages from arbitrary bytes: no panic, no
// message longer than the input, and the reader's byte accounting holds.
func FuzzChunkReader(f *testing.F) {
	for _, s := range chunkSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cr := newChunkReader(bufio.NewReader(bytes.NewReader(data)))
		total := 0
		for range 10000 {
			msg, err := cr.readMessage()
			if err != nil {
				break
			}
			total += len(msg.Payload)
			if total > len(data) {
				t.Fatalf("messages carry %d bytes; the input has %d", total, len(data))
			}
			checkPending(t, cr)
		}
		if n := cr.bytesRead.Load(); n > uint64(len(data)) {
			t.Fatalf("bytesRead = %d; the input has %d", n, len(data))
		}
	})
}

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

// rtmpSessionSeeds are client byte streams after the handshake: what
// ffmpeg, OBS and players send.
func rtmpSessionSeeds() [][]byte {
	cmd := func(dst []byte, sid uint32, vs ...any) []byte {
		return appendChunks(dst, csidCommand, msgCommandAMF0, sid, 0, amf0AppendAll(nil, vs...), 128)
	}
	connect := func(dst []byte) []byte {
		return cmd(dst, 0, "connect", 1.0, amfObject{{"app", "live"}, {"type", "nonprivate"},
			{"flashVer", "FMLE/3.0"}, {"tcUrl", "rtmp://127.0.0.1/live"}})
	}
	var pub []byte
	pub = appendUint32Control(pub, msgSetChunkSize, 4096)
	pub = connect(pub)
	pub = cmd(pub, 0, "releaseStream", 2.0, nil, "fz")
	pub = cmd(pub, 0, "FCPublish", 3.0, nil, "fz")
	pub = cmd(pub, 0, "createStream", 4.0, nil)
	pub = cmd(pub, 1, "publish", 5.0, nil, "fz?k=v", "live")
	pub = appendChunks(pub, csidData, msgDataAMF0, 1, 0, amf0AppendAll(nil, "@setDataFrame", "onMetaData",
		amfECMAArray{{"videocodecid", 7.0}, {"audiocodecid", 10.0}}), 4096)
	pub = appendChunks(pub, csidAudio, msgAudio, 1, 0, bs(0xAF, 0x00, 0x12, 0x10), 4096)
	pub = appendChunks(pub, csidVideo, msgVideo, 1, 0, bs(0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F), 4096)
	pub = appendChunks(pub, csidVideo, msgVideo, 1, 40, joinBytes(bs(0x17, 1, 0, 0, 0), seqBytes(200, 0)), 128)
	pub = appendChunks(pub, csidAudio, msgAudio, 1, 23, bs(0xAF, 0x01, 0x21, 0x22), 4096)
	pub = appendChunks(pub, csidVideo, msgVideo, 1, 0x1000000, bs(0x27, 1, 0, 0, 0, 0xBB), 4096)
	pubEnd := cmd(bytes.Clone(pub), 0, "FCUnpublish", 6.0, nil, "fz")
	pubEnd = cmd(pubEnd, 1, "deleteStream", 7.0, nil, 1.0)

	var play []byte
	play = appendUint32Control(play, msgWindowAckSize, 2500000)
	play = connect(play)
	play = cmd(play, 0, "createStream", 2.0, nil)
	play = appendUserControl(play, ucSetBufferLen, 1) // short: 6 bytes of the usual 10
	play = cmd(play, 1, "play", 3.0, nil, "fz", -1000.0, -1.0, false)
	play = cmd(play, 1, "receiveAudio", 0.0, nil, false)
	play = cmd(play, 1, "pause", 0.0, nil, true, 0.0)
	play = cmd(play, 1, "pause", 0.0, nil, false, 0.0)
	play = appendUserControl(play, ucPingResponse, 1234)
	play = cmd(play, 1, "closeStream", 0.0, nil)

	var amf3 []byte
	amf3 = appendChunks(amf3, csidCommand, msgCommandAMF3, 0, 0, append(bs(0),
		amf0AppendAll(nil, "connect", 1.0, amfObject{{"app", "live"}, {"objectEncoding", 3.0}})...), 128)
	amf3 = appendUserControl(amf3, ucPingRequest, 99)
	amf3 = cmd(amf3, 0, "noSuchCommand", 2.0, nil)
	amf3 = cmd(amf3, 0, "getStreamLength", 3.0, nil, "fz")
	amf3 = appendChunks(amf3, csidCommand, msgCommandAMF3, 0, 0, nil, 128)
	amf3 = appendControl(amf3, msgAck, u32be(100))
	amf3 = appendControl(amf3, msgSetPeerBandwidth, bs(0, 0x26, 0x25, 0xA0, 2))
	amf3 = appendChunks(amf3, 7, 99, 0, 0, bs(1, 2, 3), 128) // unknown message type

	var bad []byte
	bad = connect(bad)
	bad = connect(bad) // a second connect
	return [][]byte{pub, pubEnd, play, amf3, bad, connect(nil)}
}

// panicFlag is a slog handler that notices the "rtmp panic" a
// connection's serve recovers from, which would otherwise hide a crash
// from the fuzzer.
type panicFlag struct {
	panics atomic.Int64
	last   atomic.Value // string
}

func (h *panicFlag) Enabled(context.Context, slog.Level) bool { return true }
func (h *panicFlag) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *panicFlag) WithGroup(string) slog.Handler            { return h }
func (h *panicFlag) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "rtmp panic" {
		h.panics.Add(1)
		r.Attrs(func(a slog.Attr) bool {
			h.last.Store(a.String())
			return true
		})
	}
	return nil
}

// loopRTMPServer is an rtmpServer with a running hub on a loopback
// listener, built here so that its log can be watched for panics.
type loopRTMPServer struct {
	srv  *rtmpServer
	addr string
	flag *panicFlag
}

func newLoopRTMPServer(tb testing.TB) *loopRTMPServer {
	cfg := defaultConfig()
	cfg.Ping = 0
	cfg.PingTimeout = 2 * time.Second
	cfg.ChunkSize = 4096
	flag := &panicFlag{}
	log := slog.New(flag)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	h := newHub(&cfg, log)
	ctx, cancel := context.WithCancel(context.Background())
	hubDone, serveDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(hubDone)
		h.run(ctx)
	}()
	ls := &loopRTMPServer{
		srv:  newRTMPServer(&cfg, h, newAdmission(&cfg, nil, &h.counters), log),
		addr: ln.Addr().String(),
		flag: flag,
	}
	go func() {
		defer close(serveDone)
		ls.srv.serve(ctx, ln)
	}()
	tb.Cleanup(func() {
		ln.Close()
		<-serveDone
		cancel()
		ls.srv.shutdown()
		<-hubDone
	})
	return ls
}

// dial connects and handshakes.
func (ls *loopRTMPServer) dial(tb testing.TB) *net.TCPConn {
	tb.Helper()
	nc, err := net.DialTimeout("tcp", ls.addr, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	tcp := nc.(*net.TCPConn)
	tcp.SetLinger(0) // no TIME_WAIT: a fuzz run makes many thousands of these
	tcp.SetDeadline(time.Now().Add(10 * time.Second))
	if err := clientHandshake(tcp, false); err != nil {
		tcp.Close()
		tb.Fatalf("handshake: %v", err)
	}
	return tcp
}

func (ls *loopRTMPServer) checkPanics(tb testing.TB) {
	tb.Helper()
	if n := ls.flag.panics.Load(); n > 0 {
		tb.Fatalf("a connection panicked: %v", ls.flag.last.Load())
	}
}

// checkAlive makes a fresh connection and connects, as a player would.
func (ls *loopRTMPServer) checkAlive(tb testing.TB) {
	tb.Helper()
	nc := ls.dial(tb)
	defer nc.Close()
	c := &rtmpClient{t: tb, nc: nc, cr: newChunkReader(bufio.NewReader(nc)), chunkSize: 128}
	c.connect("live")
}

// feedRTMPSession sends data after a handshake and half-closes, so that
// the server reads all of it, then EOF; it reads what the server answers
// until the server hangs up. Then the server must still serve.
func feedRTMPSession(tb testing.TB, ls *loopRTMPServer, data []byte) {
	tb.Helper()
	nc := ls.dial(tb)
	defer nc.Close()
	drained := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, nc)
		drained <- err
	}()
	nc.Write(data) // fails if the server has hung up already: fine
	nc.CloseWrite()
	if err := <-drained; err != nil && !errors.Is(err, net.ErrClosed) && !isConnReset(err) {
		tb.Fatalf("the server did not end the connection after the client's EOF: %v", err)
	}
	ls.checkPanics(tb)
	ls.checkAlive(tb)
	ls.checkPanics(tb)
}

func isConnReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}

func TestRTMPSessionSeeds(t *testing.T) {
	ls := newLoopRTMPServer(t)
	for i, seed := range rtmpSessionSeeds() {
		feedRTMPSession(t, ls, seed)
		if t.Failed() {
			t.Fatalf("seed %d", i)
		}
	}
}

// FuzzRTMPSession feeds bytes to a server connection after a valid
// handshake: one of the session seeds chosen by prefix (none when prefix
// is past them), cut to at most cut bytes, then arbitrary bytes. No
// panic, the connection ends when the client goes, and the server still
// accepts a fresh connection. (The seeds are a prefix rather than part of
// the input, so that inputs stay short and cheap to minimize.)
func FuzzRTMPSession(f *testing.F) {
	seeds := rtmpSessionSeeds()
	for i := range seeds {
		f.Add(uint8(i), uint16(0xFFFF), []byte(nil))
		f.Add(uint8(i), uint16(0xFFFF), appendUint32Control(nil, msgSetChunkSize, 0x7FFFFFFF))
	}
	f.Add(uint8(0), uint16(200), []byte{0xC3, 1, 2, 3})
	for _, tc := range chunkGolden {
		if len(tc.enc) <= 300 {
			f.Add(uint8(0xFF), uint16(0), tc.enc)
		}
	}
	ls := newLoopRTMPServer(f)
	f.Fuzz(func(t *testing.T, prefix uint8, cut uint16, data []byte) {
		var in []byte
		if int(prefix) < len(seeds) {
			in = seeds[prefix][:min(int(cut), len(seeds[prefix]))]
		}
		feedRTMPSession(t, ls, joinBytes(in, data))
	})
}

// TestRTMPPlayThenCloseStream: a player that sends play and closeStream
// back to back (a player closing at once, or a hostile one) must not
// crash the server. onPlay starts writeLoop, which reads c.sub in its own
// goroutine, while the read loop's onDeleteStream sets c.sub = nil: a data
// race, and a nil dereference in subscriber.run when the goroutine runs
// second.
func TestRTMPPlayThenCloseStream(t *testing.T) {
	ls := newLoopRTMPServer(t)
	cmd := func(dst []byte, sid uint32, vs ...any) []byte {
		return appendChunks(dst, csidCommand, msgCommandAMF0, sid, 0, amf0AppendAll(nil, vs...), 128)
	}
	var in []byte
	in = cmd(in, 0, "connect", 1.0, amfObject{{"app", "live"}})
	in = cmd(in, 0, "createStream", 2.0, nil)
	in = cmd(in, 1, "play", 3.0, nil, "quick")
	in = cmd(in, 1, "closeStream", 0.0, nil)
	for range 20 {
		feedRTMPSession(t, ls, in)
	}
}
