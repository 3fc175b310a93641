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
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseRTMPURL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want rtmpURL
		err  bool
	}{
		{in: "rtmp://example.com/live/cam", want: rtmpURL{Addr: "example.com:1935", Host: "example.com", App: "live",
			TCURL: "rtmp://example.com/live", Name: "cam"}},
		{in: "rtmp://127.0.0.1:19350/live/cam?sign=1-abc&x=y", want: rtmpURL{Addr: "127.0.0.1:19350", Host: "127.0.0.1",
			App: "live", TCURL: "rtmp://127.0.0.1:19350/live", Name: "cam?sign=1-abc&x=y"}},
		{in: "rtmps://live.example.com/app/inst/key", want: rtmpURL{Secure: true, Addr: "live.example.com:443",
			Host: "live.example.com", App: "app/inst", TCURL: "rtmps://live.example.com/app/inst", Name: "key"}},
		{in: "RTMP://[::1]:1936/live/x", want: rtmpURL{Addr: "[::1]:1936", Host: "::1", App: "live",
			TCURL: "rtmp://[::1]:1936/live", Name: "x"}},
		{in: "http://example.com/live/cam", err: true},
		{in: "rtmp://example.com/cam", err: true},
		{in: "rtmp://example.com/live/", err: true},
		{in: "rtmp:///live/cam", err: true},
		{in: "rtmp://example.com/live/" + strings.Repeat("x", maxURLLen), err: true},
	} {
		got, err := parseRTMPURL(tc.in)
		if tc.err {
			if err == nil || !errors.Is(err, errRTMPURL) {
				t.Errorf("parseRTMPURL(%q) = %+v, %v; want an errRTMPURL", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseRTMPURL(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	u, _ := parseRTMPURL("rtmp://h/live/cam?sign=1796431621-0123456789abcdef&token=T")
	if s := u.String(); strings.Contains(s, "0123456789abcdef") || strings.Contains(s, "=T") {
		t.Errorf("String() = %q shows credentials", s)
	}
}

// TestClientHandshake runs the client's handshake against the server's:
// the server finds the client's digest and signs S1 and S2; the client
// finds the server's digest and signs C2 as Flash Player does.
func TestClientHandshake(t *testing.T) {
	cc, sc := net.Pipe()
	defer cc.Close()
	defer sc.Close()
	type answer struct {
		c1, s1, c2 []byte
		err        error
	}
	done := make(chan answer, 1)
	go func() {
		// The server's side by hand, to see C1 and C2.
		c0c1 := make([]byte, 1+handshakeSize)
		if _, err := io.ReadFull(sc, c0c1); err != nil {
			done <- answer{err: err}
			return
		}
		s1, s2 := makeS1S2(c0c1[1:])
		sc.Write(append(append([]byte{3}, s1...), s2...))
		c2 := make([]byte, handshakeSize)
		_, err := io.ReadFull(sc, c2)
		done <- answer{c0c1[1:], s1, c2, err}
	}()
	if err := clientHandshakeFlash(cc, cc); err != nil {
		t.Fatalf("client: %v", err)
	}
	a := <-done
	if a.err != nil {
		t.Fatalf("server: %v", a.err)
	}
	if _, _, ok := findClientDigest(a.c1); !ok {
		t.Errorf("C1 carries no client digest")
	}
	// C2: HMAC keyed by HMAC(client full key, S1's digest), over all but
	// its last 32 bytes.
	off := digestOffset(a.s1, 0)
	key := hmac.New(sha256.New, clientKeyFull)
	key.Write(a.s1[off : off+32])
	h := hmac.New(sha256.New, key.Sum(nil))
	h.Write(a.c2[:handshakeSize-32])
	if !hmac.Equal(h.Sum(nil), a.c2[handshakeSize-32:]) {
		t.Errorf("C2 does not carry the HMAC keyed by the server's digest")
	}

	// A server that answers with a plain S1 gets S1 echoed.
	cc2, sc2 := net.Pipe()
	defer cc2.Close()
	defer sc2.Close()
	go func() {
		c0c1 := make([]byte, 1+handshakeSize)
		io.ReadFull(sc2, c0c1)
		s1 := make([]byte, handshakeSize)
		rand.Read(s1[8:])
		sc2.Write(append(append([]byte{3}, s1...), c0c1[1:]...))
		c2 := make([]byte, handshakeSize)
		_, err := io.ReadFull(sc2, c2)
		if err == nil && !bytes.Equal(c2, s1) {
			err = errors.New("C2 does not echo a plain S1")
		}
		done <- answer{err: err}
	}()
	if err := clientHandshakeFlash(cc2, cc2); err != nil {
		t.Fatalf("client, plain server: %v", err)
	}
	if a := <-done; a.err != nil {
		t.Errorf("plain server: %v", a.err)
	}
}

// clipTags is a small stream: metadata, both sequence headers, a
// keyframe, frames, audio, a timestamp past 24 bits.
func clipTags() []flvTag {
	meta := amf0AppendAll(nil, "onMetaData", amfECMAArray{{"videocodecid", 7.0}, {"audiocodecid", 10.0}})
	return []flvTag{
		{tagScript, 0, meta},
		{tagAudio, 0, []byte{0xAF, 0, 0x12, 0x10}},
		{tagVideo, 0, []byte{0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F, 0xFF, 0xE1, 0, 0}},
		{tagVideo, 0, append([]byte{0x17, 1, 0, 0, 0x50}, bytes.Repeat([]byte{0xAA}, 300)...)},
		{tagAudio, 10, []byte{0xAF, 1, 1, 2, 3}},
		{tagVideo, 40, []byte{0x27, 1, 0, 0, 0x28, 0xBB}},
		{tagVideo, 0x1000000 + 80, []byte{0x27, 1, 0, 0, 0, 0xCC}},
	}
}

// TestRTMPClientPublishPlay publishes with the client and plays with it,
// against the server: every tag arrives as sent, then the end.
func TestRTMPClientPublishPlay(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	url := ts.rtmpURL("cli") + "?sign=whatever"
	player, err := dialRTMPClient(ctx, url, false, rtmpClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer player.close()
	if err := player.play(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the player", func() bool { return ts.viewers(streamKey{"live", "cli"}) == 1 })

	pub, err := dialRTMPClient(ctx, url, true, rtmpClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.publish(); err != nil {
		t.Fatal(err)
	}
	want := clipTags()
	for _, tag := range want {
		if err := pub.writeTag(tag); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.close(); err != nil {
		t.Errorf("close: %v", err)
	}
	var got []flvTag
	for {
		tag, err := player.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("play: %v", err)
		}
		tag.Data = bytes.Clone(tag.Data)
		got = append(got, tag)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d tags, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Type != want[i].Type || got[i].Time != want[i].Time || !bytes.Equal(got[i].Data, want[i].Data) {
			t.Errorf("tag %d = %d/%d/%x; want %d/%d/%x", i, got[i].Type, got[i].Time, truncate(string(got[i].Data), 16),
				want[i].Type, want[i].Time, truncate(string(want[i].Data), 16))
		}
	}
	if !strings.Contains(ts.logs.String(), "msg=unpublish") {
		t.Errorf("the server logged no unpublish: the client's deleteStream did not arrive")
	}
}

// TestRTMPClientRefused: each refusal is an error naming the status code.
func TestRTMPClientRefused(t *testing.T) {
	ts := startServer(t, func(c *config) { c.Secret, c.PlayAuth = "S3CRET", true })
	ctx := context.Background()
	first, err := dialRTMPClient(ctx, ts.rtmpURL("busy"), true, rtmpClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer first.close()
	if err := first.publish(); err != nil {
		t.Fatal(err)
	}
	first.writeTag(flvTag{tagAudio, 0, []byte{0xAF, 1, 1}})

	try := func(url string, publish bool) error {
		c, err := dialRTMPClient(ctx, url, publish, rtmpClientOptions{Timeout: 5 * time.Second})
		if err != nil {
			return err
		}
		defer c.close()
		if publish {
			return c.publish()
		}
		return c.play()
	}
	for _, tc := range []struct {
		url     string
		publish bool
		want    string
	}{
		{ts.rtmpURL("busy"), true, "server refused publish: NetStream.Publish.BadName"},
		{ts.rtmpURL("bad.name"), true, "server refused publish: NetStream.Publish.BadName"},
		{"rtmp://" + ts.rtmpAddr + "/bad.app/x", true, "server refused connect to app bad.app: NetConnection.Connect.Rejected"},
		{ts.rtmpURL("busy"), false, "server refused play: NetStream.Play.Unauthorized"},
	} {
		err := try(tc.url, tc.publish)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, errRTMPRefused) {
			t.Errorf("%s (publish %v): %v; want %q", tc.url, tc.publish, err, tc.want)
		}
	}
	// A port nobody listens on.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	if err := try("rtmp://"+addr+"/live/x", true); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("closed port: %v", err)
	}
}

// TestRTMPClientBadServers: a server that answers HTTP, one that is
// silent, one that closes: errors that say so, within the timeout.
func TestRTMPClientBadServers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	behave := make(chan func(net.Conn), 1)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go (<-behave)(nc)
		}
	}()
	url := "rtmp://" + ln.Addr().String() + "/live/x"
	for _, tc := range []struct {
		name  string
		serve func(net.Conn)
		want  string
	}{
		{"http", func(nc net.Conn) {
			nc.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
			time.Sleep(time.Second)
			nc.Close()
		},
			"an HTTP server on the RTMP port?"},
		{"silent", func(nc net.Conn) { time.Sleep(2 * time.Second); nc.Close() }, "i/o timeout"},
		{"closes", func(nc net.Conn) { nc.Close() }, "reading S0"},
		{"closes after the handshake", func(nc net.Conn) {
			serverHandshake(nc, nc)
			nc.Close()
		}, "closed the connection"},
	} {
		behave <- tc.serve
		_, err := dialRTMPClient(context.Background(), url, true, rtmpClientOptions{Timeout: 300 * time.Millisecond})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.name, err, tc.want)
		}
	}
}

// scriptConn is a net.Conn whose reads come from a script (a server's
// bytes) and whose writes go nowhere.
type scriptConn struct {
	net.Conn
	r io.Reader
	w io.Writer // what the client sends, if the test looks (nil: nowhere)
}

func (c *scriptConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error) {
	if c.w != nil {
		c.w.Write(p)
	}
	return len(p), nil
}
func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *scriptConn) CloseWrite() error                { return errors.New("no") }

func serverCommand(dst []byte, sid uint32, v ...any) []byte {
	return appendChunks(dst, csidCommand, msgCommandAMF0, sid, 0, amf0AppendAll(nil, v...), 128)
}

// serverScript is what a server says to a publisher (transaction ids as
// the client numbers them) or a player, then media.
// A refusal code makes the publish or play answer an error instead.
func serverScript(publish bool, refusal string) []byte {
	b := append([]byte{3}, make([]byte, 2*handshakeSize)...)
	b = appendUint32Control(b, msgWindowAckSize, 100)
	b = appendControl(b, msgSetPeerBandwidth, []byte{0, 0, 0, 100, 2})
	b = appendUint32Control(b, msgSetChunkSize, 60000)
	b = serverCommand(b, 0, "onBWDone", 0.0, nil)
	b = serverCommand(b, 0, "_result", 1.0, amfObject{{"fmsVer", "FMS/3,0,1,123"}},
		statusObject("status", "NetConnection.Connect.Success", "ok"))
	if publish {
		b = serverCommand(b, 0, "_error", 2.0, nil, statusObject("error", "NetConnection.Call.Failed", ""))
		b = serverCommand(b, 0, "onFCPublish", 0.0, nil, statusObject("status", "NetStream.Publish.Start", ""))
		b = serverCommand(b, 0, "_result", 4.0, nil, 1.0)
		if refusal != "" {
			return serverCommand(b, 1, "onStatus", 0.0, nil, statusObject("error", refusal, "no\x01pe"))
		}
		b = serverCommand(b, 1, "onStatus", 0.0, nil, statusObject("status", "NetStream.Publish.Start", ""))
	} else {
		b = serverCommand(b, 0, "_result", 2.0, nil, 1.0)
		b = serverCommand(b, 1, "onStatus", 0.0, nil, statusObject("status", "NetStream.Play.Reset", ""))
		if refusal != "" {
			return serverCommand(b, 1, "onStatus", 0.0, nil, statusObject("error", refusal, "no"))
		}
		b = serverCommand(b, 1, "onStatus", 0.0, nil, statusObject("status", "NetStream.Play.Start", ""))
	}
	b = appendUserControl(b, ucPingRequest, 7)
	for _, tag := range clipTags() {
		b = appendChunks(b, csidVideo, tag.Type, 1, tag.Time, tag.Data, 60000)
	}
	b = serverCommand(b, 1, "onStatus", 0.0, nil, statusObject("status", "NetStream.Play.UnpublishNotify", ""))
	return b
}

// runScript drives the client through a whole session against a script.
func runScript(data []byte, publish bool) (tags int, err error) {
	return runScriptTo(data, publish, nil)
}

func runScriptTo(data []byte, publish bool, w io.Writer) (tags int, err error) {
	u, _ := parseRTMPURL("rtmp://h/live/x")
	c := newRTMPClientConn(&scriptConn{r: bytes.NewReader(data), w: w}, u, rtmpClientOptions{})
	if err := c.start(publish); err != nil {
		return 0, err
	}
	if publish {
		if err := c.publish(); err != nil {
			return 0, err
		}
		c.writeTag(clipTags()[0])
		return 0, c.close()
	}
	defer c.close()
	if err := c.play(); err != nil {
		return 0, err
	}
	for {
		if _, err := c.next(); err != nil {
			return tags, err
		}
		tags++
	}
}

func TestRTMPClientScript(t *testing.T) {
	if _, err := runScript(serverScript(true, ""), true); err != nil {
		t.Errorf("publish: %v", err)
	}
	var sent bytes.Buffer
	n, err := runScriptTo(serverScript(false, ""), false, &sent)
	if err != io.EOF || n != len(clipTags()) {
		t.Errorf("play: %d tags, %v; want %d, EOF", n, err, len(clipTags()))
	}
	// What the player said: the server's window (100 bytes) acknowledged
	// (§5.4.3), the peer bandwidth answered with a window (§5.4.5), the
	// ping answered (§7.1.7), then connect, createStream, play, and
	// deleteStream at close.
	cr := newChunkReader(bufio.NewReader(bytes.NewReader(sent.Bytes()[1+2*handshakeSize:])))
	var said []string
	for {
		msg, err := cr.readMessage()
		if err != nil {
			break
		}
		switch msg.Type {
		case msgAck, msgWindowAckSize, msgSetChunkSize:
			said = append(said, map[uint8]string{msgAck: "ack", msgWindowAckSize: "window", msgSetChunkSize: "chunk size"}[msg.Type])
		case msgUserControl:
			said = append(said, fmt.Sprintf("user control %d", binary.BigEndian.Uint16(msg.Payload)))
		case msgCommandAMF0:
			cmd, _ := decodeCommand(msg.Payload)
			said = append(said, cmd.Name)
		}
	}
	got := strings.Join(slices.Compact(said), ", ")
	if want := "chunk size, connect, window, ack, createStream, play, user control 3, ack, user control 7, ack, deleteStream"; got != want {
		t.Errorf("the player said %s; want %s", got, want)
	}
	_, err = runScript(serverScript(true, "NetStream.Publish.BadName"), true)
	if want := "server refused publish: NetStream.Publish.BadName (no?pe)"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("refused publish: %v; want %q", err, want)
	}
	_, err = runScript(serverScript(false, "NetStream.Play.StreamNotFound"), false)
	if want := "server refused play: NetStream.Play.StreamNotFound"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("refused play: %v; want %q", err, want)
	}
}

// FuzzRTMPClient feeds the client whatever a malicious server could say,
// as a publisher and as a player: errors, never a panic or a hang. (The
// seeds are 4 KB; the fuzzer stalls minimizing them here: run it with -fuzzminimizetime 0.)
func FuzzRTMPClient(f *testing.F) {
	f.Add(serverScript(true, ""))
	f.Add(serverScript(false, ""))
	f.Add(serverScript(true, "NetStream.Publish.BadName"))
	f.Add(append([]byte{3}, make([]byte, 2*handshakeSize)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		runScript(data, true)
		runScript(data, false)
	})
}
