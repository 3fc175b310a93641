package main

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
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
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	c := &rtmpClient{t: t, nc: nc, chunkSize: 128}
	if err := clientHandshake(nc, signed); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	c.cr = newChunkReader(bufio.NewReader(nc))
	return c
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
