package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strconv"
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

// TestSilentPlayerDropped: a player that says nothing, not even an
// answer to our pings, is dropped after the ping interval plus the ping
// timeout, also while no goroutine reads it (idle_linux.go); one that
// answers stays.
func TestSilentPlayerDropped(t *testing.T) {
	ts := startServer(t, func(c *config) { c.Ping = 300 * time.Millisecond; c.PingTimeout = 600 * time.Millisecond })
	key := streamKey{"live", "silent"}
	player := func() *rtmpClient {
		c := dialRTMP(t, ts.rtmpAddr, false)
		c.connect("live")
		sid := c.createStream()
		c.command(sid, "play", nil, key.Name)
		return c
	}
	start := time.Now() // before its last message: the silence starts after
	quiet := player()
	talker := player()
	waitFor(t, "two players", func() bool { return ts.viewers(key) == 2 })
	stop := make(chan struct{})
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
				talker.send(csidControl, msgUserControl, 0, 0, binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint16(nil, ucPingResponse), 0))
			}
		}
	}()
	waitFor(t, "the silent player to be dropped", func() bool { return ts.viewers(key) == 1 })
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Errorf("dropped after %v, before the ping interval plus the ping timeout (900 ms)", took)
	}
	time.Sleep(time.Second)
	if ts.viewers(key) != 1 {
		t.Error("the player that answers was dropped too")
	}
	close(stop)
	<-answered
	if logs := ts.logs.String(); !strings.Contains(logs, `reason=timeout`) {
		t.Errorf("no timeout in the close line:\n%s", logs)
	}
	_ = quiet
}

// TestPauseAndReceive: receiveAudio false stops audio, receiveVideo false
// stops video, pause stops both, and after unpause video resumes at a
// keyframe.
func TestPauseAndReceive(t *testing.T) {
	ts := startServer(t, nil)
	pub := dialRTMP(t, ts.rtmpAddr, false)
	pub.connect("live")
	sid := pub.createStream()
	pub.command(sid, "publish", nil, "pause", "live")
	pub.expectStatus()
	pub.send(csidData, msgDataAMF0, sid, 0, testMeta)
	pub.send(csidAudio, msgAudio, sid, 0, testAudioHeader)
	pub.send(csidVideo, msgVideo, sid, 0, testVideoHeader)
	pub.send(csidVideo, msgVideo, sid, 0, testVideo(true, 50))

	play := dialRTMP(t, ts.rtmpAddr, false)
	play.connect("live")
	psid := play.createStream()
	play.command(psid, "play", nil, "pause")
	// frames sends n rounds of one audio and one video frame, the first
	// video frame a keyframe when key is set, with a marker byte, and
	// reads until the marker's last frame shows up.
	round := 0
	frames := func(key bool, n int) (audio, video []byte) {
		for i := range n {
			round++
			a := []byte{0xAF, 1, byte(round)}
			v := testVideo(key && i == 0, 10)
			v[5] = byte(round)
			pub.send(csidAudio, msgAudio, sid, uint32(round*40), a)
			pub.send(csidVideo, msgVideo, sid, uint32(round*40), v)
		}
		// A marker frame every player gets: onCuePoint data.
		pub.send(csidData, msgDataAMF0, sid, uint32(round*40), amf0AppendAll(nil, "onCuePoint", float64(round)))
		for {
			msg, err := play.read()
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case msg.Type == msgAudio && len(msg.Payload) == 3:
				audio = append(audio, msg.Payload[2])
			case msg.Type == msgVideo && len(msg.Payload) > 5:
				if h, _ := videoInfo(msg.Payload); !h {
					video = append(video, msg.Payload[5])
				}
			case msg.Type == msgDataAMF0:
				if v, _ := amf0DecodeAll(msg.Payload); len(v) == 2 && v[0] == "onCuePoint" && v[1] == float64(round) {
					return audio, video
				}
			}
		}
	}
	a, v := frames(false, 2)
	if len(a) != 2 || len(v) < 2 {
		t.Fatalf("playing: audio %v video %v", a, v)
	}
	// Commands and media travel on different connections: wait until the
	// server has applied each command before sending frames.
	viewer := func(cond func(*subscriber) bool) func() bool {
		return func() bool {
			ok := false
			ts.hub.call(func() {
				for sub := range ts.hub.streams[streamKey{"live", "pause"}].subs {
					ok = cond(sub)
				}
			})
			return ok
		}
	}
	play.command(psid, "receiveAudio", nil, false)
	waitFor(t, "receiveAudio false", viewer(func(s *subscriber) bool { return s.noAudio.Load() }))
	if a, v := frames(false, 3); len(a) != 0 || len(v) != 3 {
		t.Errorf("receiveAudio false: audio %v video %v; want video only", a, v)
	}
	play.command(psid, "receiveAudio", nil, true)
	play.command(psid, "receiveVideo", nil, false)
	waitFor(t, "receiveVideo false", viewer(func(s *subscriber) bool { return !s.noAudio.Load() && s.noVideo.Load() }))
	if a, v := frames(false, 3); len(a) != 3 || len(v) != 0 {
		t.Errorf("receiveVideo false: audio %v video %v; want audio only", a, v)
	}
	play.command(psid, "receiveVideo", nil, true)
	play.command(psid, "pause", nil, true, 0.0)
	if code := play.expectStatus(); code != "NetStream.Pause.Notify" {
		t.Errorf("pause: %s", code)
	}
	if a, v := frames(false, 3); len(a) != 0 || len(v) != 0 {
		t.Errorf("paused: audio %v video %v; want nothing", a, v)
	}
	play.command(psid, "pause", nil, false, 0.0)
	if code := play.expectStatus(); code != "NetStream.Unpause.Notify" {
		t.Errorf("unpause: %s", code)
	}
	if a, v := frames(false, 2); len(a) != 2 || len(v) != 0 {
		t.Errorf("unpaused before a keyframe: audio %v video %v; want audio only", a, v)
	}
	if _, v := frames(true, 2); len(v) != 2 {
		t.Errorf("unpaused at a keyframe: video %v; want 2 frames", v)
	}
}

// TestPublisherReadsBatched: with a write delay, a publisher whose frames
// come 5 ms apart is read about once per tick, not once per frame (the
// frames wait for the flushers' tick anyway), and its frames all arrive.
// The count is compared with a server at delay 0, in the same test, so
// that a slow machine (which batches by itself) cannot make it pass. While
// flusher passes are long, publishers are read at once again.
func TestPublisherReadsBatched(t *testing.T) {
	if blockingWrites {
		t.Skip("blocking writes: publishers are read on the write grid only with non-blocking writes")
	}
	reads := func(delay time.Duration, longPasses bool) int {
		ts := startServer(t, func(c *config) { c.WriteDelay = delay })
		if longPasses {
			// No viewers here, so no pass overwrites this.
			ts.hub.flushers[0].passTime.Store(int64(shortPass))
		}
		pub := dialRTMPOwned(t, ts.rtmpAddr, false)
		pub.connect("live")
		sid := pub.createStream()
		pub.command(sid, "publish", nil, "batch", "live")
		pub.expectStatus()
		pub.send(csidData, msgDataAMF0, sid, 0, testMeta)
		pub.send(csidVideo, msgVideo, sid, 0, testVideoHeader)
		const frames = 100
		for i := range frames {
			pub.send(csidVideo, msgVideo, sid, uint32(5*i), testVideo(i%25 == 0, 500))
			time.Sleep(5 * time.Millisecond)
		}
		waitForFramesIn(t, ts, "batch", frames)
		pub.nc.Close()
		var n int
		waitFor(t, "the publisher's close line", func() bool {
			m := regexp.MustCompile(`msg=close .*app=live stream=batch .*reads=(\d+)`).FindStringSubmatch(ts.logs.String())
			if m != nil {
				n, _ = strconv.Atoi(m[1])
			}
			return m != nil
		})
		return n
	}
	at0, at50, long := reads(0, false), reads(50*time.Millisecond, false), reads(50*time.Millisecond, true)
	t.Logf("reads of a publisher sending 100 frames 5 ms apart: %d at delay 0, %d at 50 ms, %d at 50 ms with long passes", at0, at50, long)
	if at50*2 > at0 {
		t.Errorf("%d reads at 50 ms; want under half of the %d at delay 0", at50, at0)
	}
	if long*2 < at0 {
		t.Errorf("%d reads at 50 ms with long flusher passes; want about the %d at delay 0", long, at0)
	}
}

// ---- Fuzz targets ----

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

// playWaiting has a new RTMP client play name and returns it once it has
// Play.Reset and Play.Start.
func playWaiting(t *testing.T, ts *testServer, name string) *rtmpClient {
	t.Helper()
	c := dialRTMP(t, ts.rtmpAddr, false)
	c.nc.SetDeadline(time.Now().Add(20 * time.Second))
	c.connect("live")
	c.command(c.createStream(), "play", nil, name)
	for _, want := range []string{"NetStream.Play.Reset", "NetStream.Play.Start"} {
		if code := c.expectStatus(); code != want {
			t.Fatalf("play %s: status %q; want %q", name, code, want)
		}
	}
	return c
}

// TestPlayWaitRTMP: with -play-wait, an RTMP player of a name nobody
// publishes gets NetStream.Play.StreamNotFound and is closed.
func TestPlayWaitRTMP(t *testing.T) {
	ts := startServer(t, func(c *config) { c.PlayWait = 500 * time.Millisecond })
	c := playWaiting(t, ts, "nobody")
	if code := c.expectStatus(); code != "NetStream.Play.StreamNotFound" {
		t.Errorf("status %q; want StreamNotFound", code)
	}
	if _, err := c.read(); err == nil {
		t.Errorf("player still connected after StreamNotFound")
	}
	waitFor(t, "the player slot to free", func() bool { return ts.players() == 0 })
	waitFor(t, "a log line naming "+string(reasonNoPublisher), func() bool {
		return strings.Contains(ts.logs.String(), string(reasonNoPublisher))
	})
}

// TestPlayWaitAfterUnpublish: an RTMP player that stays through its
// publisher's leave waits play-wait again from the leave, then gets
// StreamNotFound and is closed. Neither the time it waited before the
// publisher came (long enough for a sweep to see it) nor the time the
// stream was live counts.
func TestPlayWaitAfterUnpublish(t *testing.T) {
	const playWait = 2 * time.Second
	ts := startServer(t, func(c *config) { c.PlayWait = playWait })
	play := playWaiting(t, ts, "comeback")
	time.Sleep(1200 * time.Millisecond) // past a sweep (once a second), short of play-wait
	pub := dialRTMP(t, ts.rtmpAddr, false)
	pub.connect("live")
	sid := pub.createStream()
	pub.command(sid, "publish", nil, "comeback", "live")
	if code := pub.expectStatus(); code != "NetStream.Publish.Start" {
		t.Fatalf("publish status %q", code)
	}
	pub.send(csidVideo, msgVideo, sid, 0, testVideoHeader)
	pub.send(csidVideo, msgVideo, sid, 0, testVideo(true, 50))
	for {
		msg, err := play.read()
		if err != nil {
			t.Fatalf("player: %v; want the publisher's video", err)
		}
		if msg.Type == msgVideo {
			break
		}
	}
	// Live for longer than play-wait, then leave.
	time.Sleep(playWait + time.Second)
	left := time.Now()
	pub.command(sid, "deleteStream", nil, float64(sid))
	var codes []string
	var gaveUpAfter time.Duration
	for {
		msg, err := play.read()
		if err != nil {
			break // closed, or the read deadline: codes tell
		}
		if msg.Type != msgCommandAMF0 {
			continue
		}
		cmd, err := decodeCommand(msg.Payload)
		if err != nil || cmd.Name != "onStatus" || len(cmd.Args) == 0 {
			continue
		}
		obj, _ := cmd.Args[0].(amfObject)
		codes = append(codes, obj.String("code"))
		if obj.String("code") == "NetStream.Play.StreamNotFound" {
			gaveUpAfter = time.Since(left)
		}
	}
	if want := []string{"NetStream.Play.UnpublishNotify", "NetStream.Play.StreamNotFound"}; !equalStrings(codes, want) {
		t.Fatalf("player after the leave: statuses %v; want %v, then the close", codes, want)
	}
	if gaveUpAfter < playWait {
		t.Errorf("player gave up %v after the leave; want at least play-wait (%v)", gaveUpAfter, playWait)
	}
	waitFor(t, "the player slot to free", func() bool { return ts.players() == 0 })
}

// TestRTMPPlayerSlot: an RTMP player holds one player slot from play until
// closeStream or close, and can play again on the same connection.
func TestRTMPPlayerSlot(t *testing.T) {
	ts := startServer(t, nil)
	c := dialRTMP(t, ts.rtmpAddr, false)
	c.connect("live")
	sid := c.createStream()
	for range 2 {
		c.command(sid, "play", nil, "slot")
		c.expectStatus()
		waitFor(t, "one player slot taken", func() bool { return ts.players() == 1 })
		c.command(sid, "closeStream", nil)
		waitFor(t, "the slot back", func() bool { return ts.players() == 0 })
	}
	c.command(sid, "play", nil, "slot")
	waitFor(t, "one player slot taken", func() bool { return ts.players() == 1 })
	c.nc.Close()
	waitFor(t, "the slot back", func() bool { return ts.players() == 0 })
}

// TestConnectEnhanced: a client that declares Enhanced RTMP v2 in connect
// (fourCcList, capsEx, as ffmpeg 6.1+ and OBS do) hears in _result's
// properties which FourCCs gms carries and that it parses Multitrack and
// ModEx; a legacy client's _result has none of that.
func TestConnectEnhanced(t *testing.T) {
	ts := startServer(t, nil)
	connect := func(extra ...amfProp) amfObject {
		c := dialRTMP(t, ts.rtmpAddr, false)
		c.command(0, "connect", append(amfObject{{"app", "live"}, {"tcUrl", "rtmp://127.0.0.1/live"}}, extra...))
		res := c.expectCommand("_result")
		props, _ := res.Object.(amfObject)
		if info, _ := res.Args[0].(amfObject); info.String("code") != "NetConnection.Connect.Success" {
			t.Fatalf("connect: %v", res.Args)
		}
		return props
	}
	props := connect(amfProp{"fourCcList", []any{"hvc1", "av01", "Opus"}}, amfProp{"capsEx", 2.0})
	list, _ := props.Get("fourCcList")
	var got []string
	for _, cc := range list.([]any) {
		got = append(got, cc.(string))
	}
	if want := "av01 vp09 vp08 hvc1 avc1 Opus fLaC ac-3 ec-3 mp4a .mp3"; strings.Join(got, " ") != want {
		t.Errorf("fourCcList %q; want %q", got, want)
	}
	for _, k := range []string{"videoFourCcInfoMap", "audioFourCcInfoMap"} {
		v, _ := props.Get(k)
		m, _ := v.(amfObject)
		if n, _ := m.Number("*"); n != 4 { // CanForward
			t.Errorf("%s = %v; want {\"*\": 4, ...}", k, v)
		}
	}
	if caps, _ := props.Number("capsEx"); caps != 0x02|0x04 {
		t.Errorf("capsEx = %v; want Multitrack|ModEx (6)", caps)
	}
	if fms := props.String("fmsVer"); fms == "" {
		t.Errorf("no fmsVer in the enhanced answer")
	}
	for _, extra := range [][]amfProp{nil, {{"videoFourCcInfoMap", amfObject{{"*", 4.0}}}}} {
		props := connect(extra...)
		_, has := props.Get("fourCcList")
		if has != (extra != nil) {
			t.Errorf("connect with %v: fourCcList in the answer %v", extra, has)
		}
	}
}

// TestKickedPlayerCloseReason: an RTMP player ended by the server for a
// reason of its own (a kick here; a failed write or play-wait alike) says
// that reason in its close line, as HTTP-FLV players do, not just "closed
// by server" (what its read sees once the connection is closed).
func TestKickedPlayerCloseReason(t *testing.T) {
	ts := startServer(t, nil)
	c := playWaiting(t, ts, "kicked")
	key := streamKey{"live", "kicked"}
	waitFor(t, "the player", func() bool { return ts.viewers(key) == 1 })
	var id string
	for _, s := range ts.hub.snapshot() {
		if s.Key == key {
			id = s.Subscribers[0].ID
		}
	}
	if !ts.hub.kickClient(id) {
		t.Fatal("kickClient found no player")
	}
	if _, err := c.read(); err == nil {
		t.Error("player still connected after the kick")
	}
	waitFor(t, "the close line", func() bool { return strings.Contains(ts.logs.String(), "msg=close conn="+id) })
	for _, line := range strings.Split(ts.logs.String(), "\n") {
		if strings.Contains(line, "msg=close conn="+id) && !strings.Contains(line, "reason="+string(reasonOf(errKicked))) {
			t.Errorf("close line without the kick's reason:\n%s", line)
		}
	}
}
