package main

// End-to-end tests: a real server on 127.0.0.1:0, real ffmpeg publishing,
// real ffmpeg/ffprobe and test clients playing, and what came out compared
// with what went in.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// needFFmpeg skips when ffmpeg/ffprobe are missing on a laptop, and fails
// on CI, so these tests can never silently vanish there.
func needFFmpeg(t testing.TB) {
	t.Helper()
	skipShort(t)
	for _, tool := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not found on CI: .ci/run must install it (%v)", tool, err)
			}
			t.Skipf("%s not found: install ffmpeg to run the end-to-end tests", tool)
		}
	}
}

// skipShort lets `go test -short` on a laptop leave out the tests that
// drive real clients (they take most of the suite's 100 s). CI never runs
// -short, and with CI=true they run whatever the flags say.
func skipShort(t testing.TB) {
	t.Helper()
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("-short: leaving out an end-to-end test with real clients")
	}
}

// testServer is a gms serving on loopback ports for one test.
type testServer struct {
	*server
	rtmpAddr, httpAddr string
	logs               *syncBuffer
	stop               func() error // cancels serve and returns what it returned
}

func (ts *testServer) rtmpURL(name string) string { return "rtmp://" + ts.rtmpAddr + "/live/" + name }
func (ts *testServer) httpURL(name string) string {
	return "http://" + ts.httpAddr + "/live/" + name + ".flv"
}

// syncBuffer collects the server's log for failure messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startServer(t testing.TB, edit func(*config)) *testServer {
	t.Helper()
	cfg := defaultConfig()
	cfg.RTMPAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.LogLevel = slog.LevelDebug
	if edit != nil {
		edit(&cfg)
	}
	logs := &syncBuffer{}
	srv, err := listen(&cfg, newLogger(logs, &cfg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.serve(ctx) }()
	stop := sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("server did not shut down in 10 s")
		}
	})
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return &testServer{server: srv, rtmpAddr: srv.rtmpLn.Addr().String(), httpAddr: srv.httpLn.Addr().String(),
		logs: logs, stop: stop}
}

var (
	clipOnce sync.Once
	clipPath string
	clipErr  error
)

// testClip makes (once per run) a 4 s H.264 + AAC FLV with a keyframe
// every second and B-frames, the input every publish test sends.
func testClip(t testing.TB) string {
	t.Helper()
	needFFmpeg(t)
	clipOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gms-clip")
		if err != nil {
			clipErr = err
			return
		}
		clipPath = filepath.Join(dir, "clip.flv")
		out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error",
			"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
			"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
			"-t", "4", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-bf", "2", "-pix_fmt", "yuv420p",
			"-c:a", "aac", "-b:a", "64k", "-f", "flv", clipPath).CombinedOutput()
		if err != nil {
			clipErr = fmt.Errorf("making the test clip: %v\n%s", err, out)
		}
	})
	if clipErr != nil {
		t.Fatal(clipErr)
	}
	return clipPath
}

// readFLVFile parses a whole FLV file.
func readFLVFile(t testing.TB, path string) (header [2]bool, tags []flvTag) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseFLV(t, data)
}

func parseFLV(t testing.TB, data []byte) (header [2]bool, tags []flvTag) {
	t.Helper()
	fr, err := newFLVReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("FLV header: %v", err)
	}
	for {
		tag, err := fr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("FLV tag %d: %v", len(tags), err)
		}
		tag.Data = bytes.Clone(tag.Data)
		tags = append(tags, tag)
	}
	return [2]bool{fr.HasAudio, fr.HasVideo}, tags
}

func mediaTags(tags []flvTag) []flvTag {
	var out []flvTag
	for _, tag := range tags {
		if tag.Type == tagAudio || tag.Type == tagVideo {
			out = append(out, tag)
		}
	}
	return out
}

// publish runs ffmpeg sending the clip in real time; it returns when
// ffmpeg exits.
func publish(t testing.TB, ctx context.Context, clip, url string) error {
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-i", clip,
		"-c", "copy", "-f", "flv", url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ffmpeg publish: %v: %s", err, out)
	}
	return nil
}

// startPublish publishes in the background; the returned func waits.
func startPublish(t testing.TB, clip, url string) (wait func() error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	errc := make(chan error, 1)
	go func() { errc <- publish(t, ctx, clip, url) }()
	return func() error {
		defer cancel()
		return <-errc
	}
}

// httpGetFLV reads an HTTP-FLV stream until it ends.
func httpGetFLV(ctx context.Context, url string) (*http.Response, []byte, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp, data, err
}

// wsClient is a minimal RFC 6455 client for the tests: it masks what it
// sends, as clients must.
type wsClient struct {
	nc net.Conn
	br *bufio.Reader
}

func dialWS(ctx context.Context, addr, path string) (*wsClient, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return upgradeWS(nc, addr, path)
}

// upgradeWS runs the client's opening handshake (RFC 6455 §4.1) on nc.
func upgradeWS(nc net.Conn, addr, path string) (*wsClient, error) {
	key := make([]byte, 16)
	rand.Read(key)
	k := base64.StdEncoding.EncodeToString(key)
	fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, addr, k)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		nc.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(k) {
		nc.Close()
		return nil, fmt.Errorf("upgrade refused: %s %v", resp.Status, resp.Header)
	}
	return &wsClient{nc: nc, br: br}, nil
}

// readFrame reads one server frame, which must be unmasked (§5.1).
func (c *wsClient) readFrame() (opcode byte, payload []byte, err error) {
	var h [10]byte
	if _, err := io.ReadFull(c.br, h[:2]); err != nil {
		return 0, nil, err
	}
	if h[1]&0x80 != 0 {
		return 0, nil, errors.New("server frame is masked")
	}
	opcode = h[0] & 0x0F
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		io.ReadFull(c.br, h[:2])
		n = uint64(binary.BigEndian.Uint16(h[:2]))
	case 127:
		io.ReadFull(c.br, h[:8])
		n = binary.BigEndian.Uint64(h[:8])
	}
	if n > 64<<20 {
		return 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(c.br, payload)
	return opcode, payload, err
}

func (c *wsClient) writeFrame(opcode byte, payload []byte) error {
	mask := [4]byte{1, 2, 3, 4}
	b := []byte{0x80 | opcode}
	switch {
	case len(payload) < 126:
		b = append(b, 0x80|byte(len(payload)))
	default:
		b = binary.BigEndian.AppendUint16(append(b, 0x80|126), uint16(len(payload)))
	}
	b = append(b, mask[:]...)
	for i, x := range payload {
		b = append(b, x^mask[i%4])
	}
	_, err := c.nc.Write(b)
	return err
}

// readFLV collects binary frames until the server closes the stream.
func (c *wsClient) readFLV() ([]byte, error) {
	var data []byte
	for {
		op, p, err := c.readFrame()
		if err != nil {
			return data, err
		}
		switch op {
		case wsOpBinary, wsOpContinuation:
			data = append(data, p...)
		case wsOpClose:
			return data, nil
		}
	}
}

// ffprobePackets lists the packets of a file or URL.
type probePacket struct {
	CodecType string `json:"codec_type"`
	DTS       int64  `json:"dts"`
	PTS       int64  `json:"pts"`
	Size      string `json:"size"`
	Flags     string `json:"flags"`
}

func ffprobePackets(t testing.TB, input string) []probePacket {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-show_packets", "-show_entries",
		"packet=codec_type,dts,pts,size,flags", "-of", "json", input).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", input, err)
	}
	var res struct{ Packets []probePacket }
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	return res.Packets
}

func ffprobeStreams(t testing.TB, input string) string {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "stream=codec_type,codec_name,width,height",
		"-of", "compact", input).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", input, err, out)
	}
	return strings.TrimSpace(string(out))
}

// waitFor polls cond until it holds; tests use it to wait for state, never
// to assert a duration.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// viewers returns how many players watch key.
func (ts *testServer) viewers(key streamKey) int {
	for _, s := range ts.hub.snapshot() {
		if s.Key == key {
			return len(s.Subscribers)
		}
	}
	return 0
}

// players returns how many player slots are taken (see playerSlots).
func (ts *testServer) players() int {
	p := ts.web.players
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

func (ts *testServer) live(key streamKey) bool {
	for _, s := range ts.hub.snapshot() {
		if s.Key == key && s.Publisher != nil {
			return true
		}
	}
	return false
}

// TestPublishPlayEveryProtocol has players on RTMP (ffmpeg), HTTP-FLV and
// WS-FLV wait for a stream, then ffmpeg publishes the clip; every player
// must get every media frame of the clip, in order, with the same bytes
// and timestamps, and its stream must end when the publisher leaves.
func TestPublishPlayEveryProtocol(t *testing.T) {
	clip := testClip(t)
	ts := startServer(t, nil)
	_, want := readFLVFile(t, clip)
	wantMedia := mediaTags(want)
	key := streamKey{"live", "all"}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// RTMP player: ffmpeg records what it receives.
	rtmpOut := filepath.Join(t.TempDir(), "rtmp.flv")
	rtmpPlayer := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error",
		"-i", ts.rtmpURL("all"), "-c", "copy", "-f", "flv", rtmpOut)
	var rtmpLog bytes.Buffer
	rtmpPlayer.Stdout, rtmpPlayer.Stderr = &rtmpLog, &rtmpLog
	if err := rtmpPlayer.Start(); err != nil {
		t.Fatal(err)
	}

	type result struct {
		data []byte
		resp *http.Response
		err  error
	}
	httpRes := make(chan result, 1)
	go func() {
		resp, data, err := httpGetFLV(ctx, ts.httpURL("all"))
		httpRes <- result{data, resp, err}
	}()
	ws, err := dialWS(ctx, ts.httpAddr, "/live/all.flv")
	if err != nil {
		t.Fatal(err)
	}
	wsRes := make(chan result, 1)
	go func() {
		data, err := ws.readFLV()
		wsRes <- result{data: data, err: err}
	}()
	waitFor(t, "three waiting players", func() bool { return ts.viewers(key) == 3 })

	if err := startPublish(t, clip, ts.rtmpURL("all"))(); err != nil {
		t.Fatal(err)
	}

	hr := <-httpRes
	if hr.err != nil {
		t.Fatalf("HTTP-FLV: %v", hr.err)
	}
	if got := hr.resp.Header.Get("Content-Type"); got != "video/x-flv" {
		t.Errorf("Content-Type = %q; want video/x-flv", got)
	}
	if got := hr.resp.Header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("Access-Control-Allow-Origin = %q; want *", got)
	}
	wr := <-wsRes
	if wr.err != nil {
		t.Fatalf("WS-FLV: %v", wr.err)
	}
	for _, got := range []struct {
		proto string
		data  []byte
	}{{"http", hr.data}, {"ws", wr.data}} {
		flags, tags := parseFLV(t, got.data)
		if flags != [2]bool{true, true} {
			t.Errorf("%s: FLV header audio,video = %v; want both", got.proto, flags)
		}
		if len(tags) == 0 || tags[0].Type != tagScript || !bytes.Contains(tags[0].Data, []byte("onMetaData")) {
			t.Errorf("%s: first tag is not onMetaData", got.proto)
		}
		compareTags(t, got.proto, mediaTags(tags), wantMedia)
	}

	if err := rtmpPlayer.Wait(); err != nil {
		t.Fatalf("RTMP player: %v\n%s", err, rtmpLog.String())
	}
	comparePackets(t, "rtmp", ffprobePackets(t, rtmpOut), ffprobePackets(t, clip))
	if got := ffprobeStreams(t, rtmpOut); !strings.Contains(got, "codec_name=h264|codec_type=video|width=320|height=240") ||
		!strings.Contains(got, "codec_name=aac|codec_type=audio") || strings.Count(got, "stream|") != 2 {
		t.Errorf("RTMP output streams:\n%s\nwant exactly h264 320x240 and aac", got)
	}
	waitFor(t, "players to leave", func() bool { return ts.viewers(key) == 0 })
}

// compareTags wants got to equal want tag by tag: type, time and bytes.
func compareTags(t *testing.T, proto string, got, want []flvTag) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %d media tags, want %d", proto, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		if g.Type != w.Type || g.Time != w.Time || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("%s: tag %d = type %d time %d len %d; want type %d time %d len %d",
				proto, i, g.Type, g.Time, len(g.Data), w.Type, w.Time, len(w.Data))
			return
		}
	}
}

// comparePackets wants the same packets per stream: count, sizes, dts, pts, keyframes.
func comparePackets(t *testing.T, proto string, got, want []probePacket) {
	t.Helper()
	for _, kind := range []string{"video", "audio"} {
		g, w := filterPackets(got, kind), filterPackets(want, kind)
		if len(g) != len(w) {
			t.Errorf("%s: %d %s packets, want %d", proto, len(g), kind, len(w))
		}
		for i := range min(len(g), len(w)) {
			if g[i] != w[i] {
				t.Errorf("%s: %s packet %d = %+v; want %+v", proto, kind, i, g[i], w[i])
				break
			}
		}
	}
}

func filterPackets(ps []probePacket, kind string) []probePacket {
	var out []probePacket
	for _, p := range ps {
		if p.CodecType == kind {
			out = append(out, p)
		}
	}
	return out
}

// TestLateJoiner joins while the clip plays: the player must start with the
// FLV header, metadata and sequence headers, then a keyframe from the GOP
// cache, and from there get every later frame exactly once, in order, with
// timestamps that never go backwards; ffmpeg must decode it without errors.
func TestLateJoiner(t *testing.T) {
	clip := testClip(t)
	ts := startServer(t, nil)
	_, want := readFLVFile(t, clip)
	wantMedia := mediaTags(want)
	key := streamKey{"live", "late"}
	wait := startPublish(t, clip, ts.rtmpURL("late"))
	waitFor(t, "the publisher", func() bool { return ts.live(key) })
	time.Sleep(1500 * time.Millisecond) // into the second GOP: the cache then starts mid-stream

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, data, err := httpGetFLV(ctx, ts.httpURL("late"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	flags, tags := parseFLV(t, data)
	if flags != [2]bool{true, true} {
		t.Errorf("FLV header audio,video = %v; want both", flags)
	}
	checkJoin(t, tags)
	got := mediaTags(tags)
	// After the two sequence headers, got must be the clip's media from
	// some keyframe to the end.
	if len(got) < 3 {
		t.Fatalf("only %d media tags", len(got))
	}
	start := -1
	for i, w := range wantMedia {
		if w.Type == got[2].Type && w.Time == got[2].Time && bytes.Equal(w.Data, got[2].Data) {
			start = i
			break
		}
	}
	if start <= 2 {
		t.Fatalf("late joiner's first frame found at clip index %d; want a later keyframe", start)
	}
	compareTags(t, "late http", got[2:], wantMedia[start:])

	out := filepath.Join(t.TempDir(), "late.flv")
	os.WriteFile(out, data, 0o644)
	if msg, err := exec.Command("ffmpeg", "-v", "error", "-i", out, "-f", "null", "-").CombinedOutput(); err != nil || len(msg) > 0 {
		t.Errorf("decoding the late joiner's stream: %v\n%s", err, msg)
	}
	// Metadata a reader takes for a data stream (a script tag not at 0)
	// would show here as a third stream.
	if got := ffprobeStreams(t, out); strings.Count(got, "stream|") != 2 {
		t.Errorf("late joiner's streams:\n%s\nwant exactly video and audio", got)
	}
}

// checkJoin checks the start of a player's stream: metadata, audio and
// video sequence headers, then a video keyframe; and that timestamps never
// go backwards after that.
func checkJoin(t *testing.T, tags []flvTag) {
	t.Helper()
	if len(tags) < 4 {
		t.Fatalf("only %d tags", len(tags))
	}
	if tags[0].Type != tagScript {
		t.Errorf("tag 0 type %d; want metadata", tags[0].Type)
	}
	// The two sequence headers, in the order the publisher sent them.
	a, v := 1, 2
	if tags[1].Type == tagVideo {
		a, v = 2, 1
	}
	if !audioIsHeader(tags[a].Data) {
		t.Errorf("tag %d is not the audio sequence header", a)
	}
	if header, _ := videoInfo(tags[v].Data); !header {
		t.Errorf("tag %d is not the video sequence header", v)
	}
	if _, key := videoInfo(tags[3].Data); tags[3].Type != tagVideo || !key {
		t.Errorf("tag 3 is not a video keyframe")
	}
	last := map[uint8]uint32{}
	for i, tag := range tags[3:] {
		if tag.Time < last[tag.Type] {
			t.Errorf("tag %d (type %d) time %d after %d", i+3, tag.Type, tag.Time, last[tag.Type])
		}
		last[tag.Type] = tag.Time
	}
}

// TestDuplicatePublish: a second publisher on a live name is refused and
// its ffmpeg exits with an error; the first keeps going, its viewer untouched.
func TestDuplicatePublish(t *testing.T) {
	clip := testClip(t)
	ts := startServer(t, nil)
	key := streamKey{"live", "dup"}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	httpRes := make(chan []byte, 1)
	go func() {
		_, data, _ := httpGetFLV(ctx, ts.httpURL("dup"))
		httpRes <- data
	}()
	waitFor(t, "the viewer", func() bool { return ts.viewers(key) == 1 })
	wait := startPublish(t, clip, ts.rtmpURL("dup"))
	waitFor(t, "the publisher", func() bool { return ts.live(key) })
	err := publish(t, ctx, clip, ts.rtmpURL("dup"))
	if err == nil {
		t.Fatal("second publisher was accepted")
	}
	if !strings.Contains(ts.logs.String(), "already being published") {
		t.Errorf("no log line for the refused publisher")
	}
	if err := wait(); err != nil {
		t.Fatalf("first publisher: %v", err)
	}
	_, want := readFLVFile(t, clip)
	_, got := parseFLV(t, <-httpRes)
	compareTags(t, "viewer of the first publisher", mediaTags(got), mediaTags(want))
}

// TestPortInUse: run fails with one clear error when a port is taken.
func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = run(context.Background(), []string{"-rtmp", ln.Addr().String(), "-http", "127.0.0.1:0"}, nil, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("run = %v; want address already in use", err)
	}
}

// TestShutdown: cancelling run's context (what SIGINT does) closes a
// publisher and a waiting player and returns nil.
func TestShutdown(t *testing.T) {
	ts := startServer(t, nil)
	c := dialRTMP(t, ts.rtmpAddr, false)
	c.connect("live")
	sid := c.createStream()
	c.command(sid, "publish", nil, "bye", "live")
	c.expectStatus()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, _, err := httpGetFLV(ctx, ts.httpURL("waiting"))
		done <- err
	}()
	waitFor(t, "the viewer", func() bool { return ts.viewers(streamKey{"live", "waiting"}) == 1 })
	if err := ts.stop(); err != nil {
		t.Fatalf("serve returned %v; want nil", err)
	}
	if _, err := c.read(); err == nil {
		t.Errorf("publisher still connected after shutdown")
	}
	if err := <-done; err != nil {
		t.Errorf("viewer's response did not end cleanly: %v", err)
	}
	// Each close line says the server closed it, whatever the protocol.
	for line := range strings.Lines(ts.logs.String()) {
		if strings.Contains(line, "msg=close ") && !strings.Contains(line, `reason="closed by server"`) {
			t.Errorf("close line at shutdown: %s", line)
		}
	}
}

// ---- Other real clients ----
//
// End-to-end tests with clients other than ffmpeg: rtmpdump (librtmp, also
// with the FP9 digest handshake), GStreamer publishing (rtmp2sink and the
// librtmp rtmpsink) and playing (rtmp2src, souphttpsrc), and Chromium
// playing WS-FLV and HTTP-FLV with mpegts.js. Each skips when its tool is
// missing on a laptop and fails on CI, where .ci/run installs it.

// needTool skips when the command is missing locally and fails on CI; it
// returns the command's path.
func needTool(t testing.TB, name string) string {
	t.Helper()
	skipShort(t)
	path, err := exec.LookPath(name)
	if err != nil {
		missingOnCI(t, fmt.Sprintf("%s not found (%v)", name, err))
	}
	return path
}

func missingOnCI(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s on CI: .ci/run must install it", what)
	}
	t.Skipf("%s: install it to run this test", what)
}

// needGstElements wants gst-launch-1.0 and every named element.
func needGstElements(t testing.TB, elements ...string) {
	t.Helper()
	needTool(t, "gst-launch-1.0")
	needTool(t, "gst-inspect-1.0")
	for _, e := range elements {
		if err := exec.Command("gst-inspect-1.0", "--exists", e).Run(); err != nil {
			missingOnCI(t, "GStreamer element "+e+" not found")
		}
	}
}

// withoutAVCEnd drops AVC end-of-sequence tags (5 bytes, AVCPacketType 2):
// librtmp and GStreamer's rtmp2src skip such "too small video packets" on
// purpose, so players built on them never write them.
func withoutAVCEnd(tags []flvTag) []flvTag {
	var out []flvTag
	for _, tag := range tags {
		if tag.Type == tagVideo && len(tag.Data) == 5 && tag.Data[0]&0x0F == 7 && tag.Data[1] == 2 {
			continue
		}
		out = append(out, tag)
	}
	return out
}

// indexOfTag finds tag in tags by type, time and bytes.
func indexOfTag(tags []flvTag, tag flvTag) int {
	for i, w := range tags {
		if w.Type == tag.Type && w.Time == tag.Time && bytes.Equal(w.Data, tag.Data) {
			return i
		}
	}
	return -1
}

// decodesCleanly wants ffmpeg to decode the file without a single error.
func decodesCleanly(t *testing.T, what, path string) {
	t.Helper()
	if msg, err := exec.Command("ffmpeg", "-v", "error", "-i", path, "-f", "null", "-").CombinedOutput(); err != nil || len(msg) > 0 {
		t.Errorf("%s: decoding %s: %v\n%s", what, filepath.Base(path), err, msg)
	}
}

// startCmd starts a client that the test waits for later; it is killed if
// the test ends first.
func startCmd(t *testing.T, ctx context.Context, name string, args ...string) (wait func() (string, error)) {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waited := sync.OnceValue(func() error { return <-done })
	t.Cleanup(func() { cmd.Process.Kill(); waited() })
	return func() (string, error) {
		err := waited()
		return out.String(), err
	}
}

// TestRtmpdump plays with librtmp's rtmpdump: one player waiting before the
// publisher with the simple handshake must record every media frame of the
// clip; a late joiner using the FP9 digest handshake (librtmp switches to
// it when given a SWF hash) must verify the server's digests and record the
// clip from a keyframe on. Both must exit 0 when the publisher leaves
// (librtmp closes on NetStream.Play.UnpublishNotify).
func TestRtmpdump(t *testing.T) {
	needTool(t, "rtmpdump")
	clip := testClip(t)
	ts := startServer(t, nil)
	_, want := readFLVFile(t, clip)
	wantMedia := withoutAVCEnd(mediaTags(want))
	key := streamKey{"live", "rtmpdump"}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()

	early := filepath.Join(dir, "early.flv")
	waitEarly := startCmd(t, ctx, "rtmpdump", "--live", "-r", ts.rtmpURL("rtmpdump"), "-o", early)
	waitFor(t, "rtmpdump waiting", func() bool { return ts.viewers(key) == 1 })

	waitPub := startPublish(t, clip, ts.rtmpURL("rtmpdump"))
	waitFor(t, "the publisher", func() bool { return ts.live(key) })
	time.Sleep(1500 * time.Millisecond) // into the second GOP
	late := filepath.Join(dir, "late.flv")
	waitLate := startCmd(t, ctx, "rtmpdump", "--verbose", "--live", "-r", ts.rtmpURL("rtmpdump"),
		"--swfhash", strings.Repeat("0123456789abcdef", 4), "--swfsize", "12345", "-o", late)
	if err := waitPub(); err != nil {
		t.Fatal(err)
	}

	out, err := waitEarly()
	if err != nil {
		t.Fatalf("rtmpdump (waiting player): %v\n%s", err, out)
	}
	_, tags := readFLVFile(t, early)
	compareTags(t, "rtmpdump waiting player", withoutAVCEnd(mediaTags(tags)), wantMedia)
	decodesCleanly(t, "rtmpdump waiting player", early)

	out, err = waitLate()
	if err != nil {
		t.Fatalf("rtmpdump (late joiner, digest handshake): %v\n%s", err, out)
	}
	if !strings.Contains(out, "Client digest offset") || !strings.Contains(out, "Genuine Adobe Flash Media Server") {
		t.Errorf("rtmpdump did not do and verify the digest handshake:\n%s", out)
	}
	_, tags = readFLVFile(t, late)
	checkJoin(t, tags)
	got := withoutAVCEnd(mediaTags(tags))
	if len(got) < 3 {
		t.Fatalf("late joiner: only %d media tags", len(got))
	}
	start := indexOfTag(wantMedia, got[2])
	if start <= 2 {
		t.Fatalf("late joiner's first frame found at clip index %d; want a later keyframe", start)
	}
	compareTags(t, "rtmpdump late joiner", got[2:], wantMedia[start:])
	decodesCleanly(t, "rtmpdump late joiner", late)
}

// TestGStreamerPublish publishes 100 frames of H.264 (openh264enc) and AAC
// (voaacenc) from GStreamer, through rtmp2sink and through the librtmp
// rtmpsink, while a tee keeps what flvmux produced. The test sources are
// not live (under load live ones stamp frames with repeated timestamps,
// which ffmpeg then reports when decoding); identity sync=true sends in
// real time instead. An HTTP-FLV player must get exactly those media
// tags; an ffmpeg RTMP player must get the same packets (count, sizes,
// timestamps, keyframes) as h264 320x240 + aac.
func TestGStreamerPublish(t *testing.T) {
	needFFmpeg(t)
	needGstElements(t, "videotestsrc", "audiotestsrc", "openh264enc", "h264parse", "voaacenc", "aacparse",
		"flvmux", "identity", "tee", "queue", "filesink", "rtmp2sink", "rtmpsink")
	ts := startServer(t, nil)
	for _, sink := range []string{"rtmp2sink", "rtmpsink"} {
		t.Run(sink, func(t *testing.T) {
			name := "gst" + sink
			key := streamKey{"live", name}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			dir := t.TempDir()

			type result struct {
				data []byte
				err  error
			}
			httpRes := make(chan result, 1)
			go func() {
				_, data, err := httpGetFLV(ctx, ts.httpURL(name))
				httpRes <- result{data, err}
			}()
			rtmpOut := filepath.Join(dir, "rtmp.flv")
			waitRTMP := startCmd(t, ctx, "ffmpeg", "-hide_banner", "-loglevel", "error",
				"-i", ts.rtmpURL(name), "-c", "copy", "-f", "flv", rtmpOut)
			waitFor(t, "two waiting players", func() bool { return ts.viewers(key) == 2 })

			location := ts.rtmpURL(name)
			if sink == "rtmpsink" {
				location += " live=1"
			}
			sent := filepath.Join(dir, "sent.flv")
			pipeline := []string{"-e",
				"videotestsrc", "num-buffers=100", "!", "video/x-raw,width=320,height=240,framerate=25/1",
				"!", "openh264enc", "gop-size=25", "!", "h264parse", "!", "flvmux", "streamable=true", "name=m",
				"audiotestsrc", "num-buffers=172", "samplesperbuffer=1024", "!", "audio/x-raw,rate=44100",
				"!", "voaacenc", "!", "aacparse", "!", "m.",
				"m.", "!", "identity", "sync=true", "!", "tee", "name=t",
				"t.", "!", "queue", "!", sink, "location=" + location,
				"t.", "!", "queue", "!", "filesink", "location=" + sent}
			if out, err := startCmd(t, ctx, "gst-launch-1.0", pipeline...)(); err != nil {
				t.Fatalf("gst-launch-1.0 publishing: %v\n%s", err, out)
			}

			_, sentTags := readFLVFile(t, sent)
			wantMedia := mediaTags(sentTags)
			if n := len(filterPackets(ffprobePackets(t, sent), "video")); n != 100 {
				t.Fatalf("GStreamer made %d video frames; want 100", n)
			}
			hr := <-httpRes
			if hr.err != nil {
				t.Fatalf("HTTP-FLV player: %v", hr.err)
			}
			flags, got := parseFLV(t, hr.data)
			if flags != [2]bool{true, true} {
				t.Errorf("HTTP-FLV header audio,video = %v; want both", flags)
			}
			compareTags(t, "HTTP-FLV", mediaTags(got), wantMedia)

			if out, err := waitRTMP(); err != nil {
				t.Fatalf("ffmpeg RTMP player: %v\n%s", err, out)
			}
			comparePackets(t, "RTMP", ffprobePackets(t, rtmpOut), ffprobePackets(t, sent))
			if got := ffprobeStreams(t, rtmpOut); !strings.Contains(got, "codec_name=h264|codec_type=video|width=320|height=240") ||
				!strings.Contains(got, "codec_name=aac|codec_type=audio") {
				t.Errorf("RTMP output streams:\n%s\nwant h264 320x240 and aac", got)
			}
			decodesCleanly(t, "RTMP player", rtmpOut)
			waitFor(t, "players to leave", func() bool { return ts.viewers(key) == 0 })
		})
	}
}

// TestGStreamerPlay has GStreamer players wait for the stream, over RTMP
// (rtmp2src) and HTTP-FLV (souphttpsrc), then ffmpeg publishes the clip;
// both pipelines must reach EOS when the publisher leaves. The HTTP one
// must have recorded every media tag of the clip. rtmp2src stops at Stream
// EOF and may drop the last message or two still in its queue, so the
// RTMP one must be the clip from its start, short of at most two tags at
// the end.
func TestGStreamerPlay(t *testing.T) {
	needGstElements(t, "rtmp2src", "souphttpsrc", "filesink")
	clip := testClip(t)
	ts := startServer(t, nil)
	_, want := readFLVFile(t, clip)
	wantMedia := mediaTags(want)
	key := streamKey{"live", "gstplay"}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()

	rtmpOut, httpOut := filepath.Join(dir, "rtmp.flv"), filepath.Join(dir, "http.flv")
	waitRTMP := startCmd(t, ctx, "gst-launch-1.0", "rtmp2src", "location="+ts.rtmpURL("gstplay"),
		"!", "filesink", "location="+rtmpOut)
	waitHTTP := startCmd(t, ctx, "gst-launch-1.0", "souphttpsrc", "location="+ts.httpURL("gstplay"),
		"!", "filesink", "location="+httpOut)
	waitFor(t, "two waiting GStreamer players", func() bool { return ts.viewers(key) == 2 })
	if err := startPublish(t, clip, ts.rtmpURL("gstplay"))(); err != nil {
		t.Fatal(err)
	}

	if out, err := waitHTTP(); err != nil {
		t.Fatalf("souphttpsrc pipeline: %v\n%s", err, out)
	}
	flags, tags := readFLVFile(t, httpOut)
	if flags != [2]bool{true, true} {
		t.Errorf("HTTP-FLV header audio,video = %v; want both", flags)
	}
	compareTags(t, "souphttpsrc", mediaTags(tags), wantMedia)
	decodesCleanly(t, "souphttpsrc", httpOut)

	if out, err := waitRTMP(); err != nil {
		t.Fatalf("rtmp2src pipeline: %v\n%s", err, out)
	}
	_, tags = readFLVFile(t, rtmpOut)
	got, wantRTMP := withoutAVCEnd(mediaTags(tags)), withoutAVCEnd(wantMedia)
	if len(got) < len(wantRTMP)-2 || len(got) > len(wantRTMP) {
		t.Errorf("rtmp2src: got %d media tags; want %d, or up to 2 fewer", len(got), len(wantRTMP))
	}
	compareTags(t, "rtmp2src", got, wantRTMP[:min(len(got), len(wantRTMP))])
	decodesCleanly(t, "rtmp2src", rtmpOut)
}

// ---- Limits, leaks, stress and soak ----
// (API and admission tests: api_test.go, auth_test.go.)

// longPublish publishes the clip in a loop until the returned cmd is
// killed or the server drops it.
func longPublish(t *testing.T, url string) *exec.Cmd {
	t.Helper()
	clip := testClip(t)
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", clip,
		"-c", "copy", "-f", "flv", url)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// selfSignedCert writes a certificate and key for 127.0.0.1 and returns
// their paths.
func selfSignedCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "gms test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

// TestTLS publishes over RTMPS with ffmpeg and plays over HTTPS-FLV with
// ffprobe, against a certificate the test makes.
func TestTLS(t *testing.T) {
	needFFmpeg(t)
	cert, key := selfSignedCert(t)
	ts := startServer(t, func(c *config) {
		c.RTMPSAddr, c.HTTPSAddr, c.TLSCert, c.TLSKey = "127.0.0.1:0", "127.0.0.1:0", cert, key
	})
	rtmps := "rtmps://" + ts.rtmpsLn.Addr().String() + "/live/tls"
	https := "https://" + ts.httpsLn.Addr().String() + "/live/tls.flv"
	longPublish(t, rtmps)
	waitFor(t, "the RTMPS publisher", func() bool { return ts.live(streamKey{"live", "tls"}) })
	got := ffprobeStreams(t, https)
	if !strings.Contains(got, "codec_name=h264") || !strings.Contains(got, "codec_name=aac") {
		t.Errorf("HTTPS-FLV streams:\n%s", got)
	}
	got = ffprobeStreams(t, rtmps)
	if !strings.Contains(got, "codec_name=h264") || !strings.Contains(got, "codec_name=aac") {
		t.Errorf("RTMPS streams:\n%s", got)
	}
	// WSS: the same FLV over WebSocket over TLS.
	tc, err := tls.Dial("tcp", ts.httpsLn.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	ws, err := upgradeWS(tc, ts.httpsLn.Addr().String(), "/live/tls.flv")
	if err != nil {
		t.Fatal(err)
	}
	op, p, err := ws.readFrame()
	if err != nil || op != wsOpBinary || !bytes.HasPrefix(p, []byte("FLV")) {
		t.Errorf("WSS first frame: op %d, % x, %v; want binary FLV", op, p[:min(len(p), 8)], err)
	}
}

// TestConnectionLimits: past -max-conns-per-ip (and -max-conns) a new
// connection is closed at once with a log line; a freed slot is reusable,
// and the limit spans RTMP and HTTP.
func TestConnectionLimits(t *testing.T) {
	ts := startServer(t, func(c *config) { c.MaxConnsIP = 3 })
	var conns []net.Conn
	for i := range 3 {
		addr := ts.rtmpAddr
		if i == 2 {
			addr = ts.httpAddr
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	// Let the server accept them all before the next one.
	waitFor(t, "three accepted", func() bool {
		ts.web.connLimits.mu.Lock()
		defer ts.web.connLimits.mu.Unlock()
		return ts.web.connLimits.total == 3
	})
	extra, err := net.Dial("tcp", ts.rtmpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := extra.Read(make([]byte, 1)); err == nil {
		t.Fatalf("fourth connection from one IP got %d bytes; want it closed", n)
	}
	if got := ts.hub.counters.tooManyConns.Load(); got != 1 {
		t.Errorf("refused count = %d; want 1", got)
	}
	if !strings.Contains(ts.logs.String(), "max-conns-per-ip 3") {
		t.Errorf("no log line naming the limit")
	}
	conns[0].Close()
	waitFor(t, "the slot to free", func() bool {
		ts.web.connLimits.mu.Lock()
		defer ts.web.connLimits.mu.Unlock()
		return ts.web.connLimits.total == 2
	})
	c := dialRTMP(t, ts.rtmpAddr, false)
	c.connect("live")
}

// waitingPlayer asks for an HTTP-FLV stream nobody publishes and returns
// the connection and the answer's status (0: closed without one, as a
// connection over the limits is at accept).
func waitingPlayer(t *testing.T, addr string) (net.Conn, int) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(nc, "GET /live/nobody.flv HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		return nc, 0
	}
	return nc, resp.StatusCode
}

// TestWaitingPlayersLeaveSlots is the attack of finding 8: with
// -max-conns 20, one host opens more waiting HTTP-FLV players than that.
// Players get at most their share of the slots, the rest a 503 (RTMP:
// Play.Failed), and a real publisher still publishes and the API still
// answers.
func TestWaitingPlayersLeaveSlots(t *testing.T) {
	const maxConns = 20
	ts := startServer(t, func(c *config) { c.MaxConns = maxConns })
	var waiting []net.Conn
	refused := 0
	for i := range maxConns + 5 {
		nc, status := waitingPlayer(t, ts.httpAddr)
		switch status {
		case http.StatusOK:
			waiting = append(waiting, nc)
		case http.StatusServiceUnavailable:
			refused++
		default:
			t.Errorf("player %d: status %d; want 200 or 503", i+1, status)
		}
	}
	// The refused players' connections close; the waiting ones stay.
	waitFor(t, "the refused players to go", func() bool {
		ts.web.connLimits.mu.Lock()
		defer ts.web.connLimits.mu.Unlock()
		return ts.web.connLimits.total == len(waiting)
	})

	api := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	defer api.CloseIdleConnections()
	if resp, err := api.Get("http://" + ts.httpAddr + "/api/streams"); err != nil {
		t.Errorf("API with %d waiting players: %v", len(waiting), err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusOK {
		t.Errorf("API with %d waiting players: %s", len(waiting), resp.Status)
	}
	pub := dialRTMP(t, ts.rtmpAddr, false)
	pub.connect("live")
	sid := pub.createStream()
	pub.command(sid, "publish", nil, "real", "live")
	if code := pub.expectStatus(); code != "NetStream.Publish.Start" {
		t.Fatalf("publisher with %d waiting players: %q", len(waiting), code)
	}
	waitFor(t, "the publisher", func() bool { return ts.live(streamKey{"live", "real"}) })

	if want := maxConns - max(1, maxConns*playerReservePercent/100); len(waiting) != want {
		t.Errorf("%d players waiting; want %d (max-conns less the reserve)", len(waiting), want)
	}
	if got := ts.hub.counters.playersRefused.Load(); got != uint64(refused) || refused == 0 {
		t.Errorf("players refused: counter %d, 503s %d; want them equal and not 0", got, refused)
	}
	// An RTMP player over the share is refused too (once the API's
	// connection has gone: it needs a free connection slot to be told).
	api.CloseIdleConnections()
	waitFor(t, "the API's connection to go", func() bool {
		ts.web.connLimits.mu.Lock()
		defer ts.web.connLimits.mu.Unlock()
		return ts.web.connLimits.total == len(waiting)+1
	})
	rp := dialRTMP(t, ts.rtmpAddr, false)
	rp.connect("live")
	rp.command(rp.createStream(), "play", nil, "real")
	if code := rp.expectStatus(); code != "NetStream.Play.Failed" {
		t.Errorf("RTMP player over the share: %q; want NetStream.Play.Failed", code)
	}
	if _, err := rp.read(); err == nil {
		t.Errorf("refused RTMP player still connected")
	}
	// Players that leave give their slots back.
	for _, nc := range waiting {
		nc.Close()
	}
	waitFor(t, "the player slots to free", func() bool { return ts.players() == 0 })
}

// TestWaitingPlayersPerIP: waiting players count against
// -max-conns-per-ip like any connection: past it, a player from the same
// host (HTTP-FLV or RTMP) is closed at accept.
func TestWaitingPlayersPerIP(t *testing.T) {
	const perIP = 3
	ts := startServer(t, func(c *config) { c.MaxConnsIP = perIP })
	var waiting []net.Conn
	for i := range perIP {
		nc, status := waitingPlayer(t, ts.httpAddr)
		if status != http.StatusOK {
			t.Fatalf("player %d: status %d; want 200", i+1, status)
		}
		waiting = append(waiting, nc)
	}
	waitFor(t, "the players to wait", func() bool { return ts.viewers(streamKey{"live", "nobody"}) == perIP })
	if _, status := waitingPlayer(t, ts.httpAddr); status != 0 {
		t.Errorf("HTTP-FLV player past -max-conns-per-ip: status %d; want the connection closed", status)
	}
	nc, err := net.Dial("tcp", ts.rtmpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	if err := clientHandshake(nc, false); err == nil {
		t.Errorf("RTMP player past -max-conns-per-ip: handshake done; want the connection closed")
	}
	if got := ts.hub.counters.tooManyConns.Load(); got != 2 {
		t.Errorf("refused at accept: %d; want 2", got)
	}
	if got := ts.viewers(streamKey{"live", "nobody"}); got != perIP {
		t.Errorf("%d players waiting; want %d", got, perIP)
	}
	// One leaves: another can wait in its place.
	waiting[0].Close()
	waitFor(t, "the slot to free", func() bool { return ts.viewers(streamKey{"live", "nobody"}) == perIP-1 })
	waitFor(t, "the connection slot to free", func() bool {
		ts.web.connLimits.mu.Lock()
		defer ts.web.connLimits.mu.Unlock()
		return ts.web.connLimits.total == perIP-1
	})
	if _, status := waitingPlayer(t, ts.httpAddr); status != http.StatusOK {
		t.Errorf("player in a freed slot: status %d; want 200", status)
	}
}

// TestPlayerSlots: players get -max-conns less a reserve of 10% (at
// least one slot); -max-conns 0 means no limit.
func TestPlayerSlots(t *testing.T) {
	var refused atomic.Uint64
	log := slog.New(slog.DiscardHandler)
	if p := newPlayerSlots(0, &refused, log); p != nil || !p.take("x") {
		t.Errorf("-max-conns 0: %+v; want no limit", p)
	}
	for _, tc := range []struct{ maxConns, players int }{{1, 0}, {2, 1}, {20, 18}, {25, 23}, {20000, 18000}} {
		p := newPlayerSlots(tc.maxConns, &refused, log)
		n := 0
		for p.take("x") {
			n++
		}
		if n != tc.players {
			t.Errorf("-max-conns %d: %d players; want %d", tc.maxConns, n, tc.players)
		}
		if tc.players > 0 {
			p.release()
			if !p.take("x") {
				t.Errorf("-max-conns %d: a released slot is not taken again", tc.maxConns)
			}
		}
	}
	if refused.Load() != 5 {
		t.Errorf("refused = %d; want 5 (one per limit)", refused.Load())
	}
}

func (s *syncBuffer) capacity() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Cap()
}

// openFDs counts this process's open file descriptors (Linux).
func openFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(entries)
}

// TestNoLeaks runs a thousand publish/play/disconnect cycles over every
// protocol, with clients that leave in every way (clean close, abrupt
// close mid-stream, close during the handshake), then checks that
// goroutines, open files and the heap are back where they started.
func TestNoLeaks(t *testing.T) {
	cycles := 1000
	if testing.Short() {
		cycles = 100
	}
	ts := startServer(t, nil)
	runtime.GC()
	baseG, baseFD := runtime.NumGoroutine(), openFDs(t)
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	logsBefore := ts.logs.capacity()

	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range cycles {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			leakCycle(t, ts, i)
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	waitFor(t, "every stream to go", func() bool { return len(ts.hub.snapshot()) == 0 })
	var g, fds int
	waitFor(t, "goroutines and files back to the start", func() bool {
		g, fds = runtime.NumGoroutine(), openFDs(t)
		return g <= baseG+2 && fds <= baseFD+2
	})
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	// The test keeps the server's log in memory; that is not the server's.
	grew := int64(after.HeapInuse) - int64(before.HeapInuse) - int64(ts.logs.capacity()-logsBefore)
	t.Logf("%d cycles: goroutines %d -> %d, open files %d -> %d, heap in use %+d bytes", cycles, baseG, g, baseFD, fds, grew)
	if grew > 1<<20 {
		t.Errorf("heap grew by %d bytes over %d cycles", grew, cycles)
	}
}

// leakCycle is one publisher with three players, ending in a way chosen by i.
func leakCycle(t *testing.T, ts *testServer, i int) {
	name := fmt.Sprintf("leak%d", i)
	if i%10 == 9 { // a client that leaves during the handshake
		c, err := net.Dial("tcp", ts.rtmpAddr)
		if err == nil {
			c.Write([]byte{3, 1, 2, 3})
			c.Close()
		}
		return
	}
	pub := dialRTMPOwned(t, ts.rtmpAddr, false)
	pub.connect("live")
	sid := pub.createStream()
	pub.command(sid, "publish", nil, name, "live")
	pub.expectStatus()
	pub.send(csidData, msgDataAMF0, sid, 0, testMeta)
	pub.send(csidAudio, msgAudio, sid, 0, testAudioHeader)
	pub.send(csidVideo, msgVideo, sid, 0, testVideoHeader)
	pub.send(csidVideo, msgVideo, sid, 0, testVideo(true, 2000))

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	httpDone, httpStarted := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(httpDone)
		req, _ := http.NewRequestWithContext(ctx, "GET", ts.httpURL(name), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("GET: %v", err)
			close(httpStarted)
			return
		}
		resp.Body.Read(make([]byte, 100))
		close(httpStarted)
		{
			if i%2 == 0 {
				resp.Body.Close() // leaves mid-stream
			} else {
				io.Copy(io.Discard, resp.Body) // stays to the end
				resp.Body.Close()
			}
		}
	}()
	ws, err := dialWS(ctx, ts.httpAddr, "/live/"+name+".flv")
	if err == nil {
		ws.readFrame()
		if i%3 == 0 {
			ws.writeFrame(wsOpClose, nil)
		}
		ws.nc.Close()
	}
	play := dialRTMPOwned(t, ts.rtmpAddr, i%2 == 0)
	play.connect("live")
	play.command(play.createStream(), "play", nil, name)
	play.expectStatus()
	play.nc.Close()

	<-httpStarted // it must have joined, or it would wait for the next publisher
	for j := range 5 {
		pub.send(csidVideo, msgVideo, sid, uint32(40*(j+1)), testVideo(false, 1000))
	}
	if i%4 == 0 {
		pub.nc.Close() // vanishes without deleteStream
	} else {
		pub.command(sid, "deleteStream", nil, float64(sid))
		pub.nc.Close()
	}
	<-httpDone
}

// TestStress has publishers and HTTP-FLV/WS-FLV viewers come and go at
// random, and checks every viewer's stream: a valid FLV, starting with
// metadata, sequence headers and a keyframe; timestamps never going
// backwards; and every frame after the start, in order, unless the
// server says it skipped some (then it must resume at a keyframe).
func TestStress(t *testing.T) {
	ts := startServer(t, nil)
	dur := 6 * time.Second
	if testing.Short() {
		dur = 2 * time.Second
	}
	sessions, frames := churn(t, ts, time.Now().Add(dur))
	t.Logf("%d viewer sessions checked, %d frames", sessions, frames)
	if sessions < 20 {
		t.Errorf("only %d viewer sessions got frames", sessions)
	}
}

// churn runs 3 publishers and 12 viewers that come and go until stop,
// checking every viewer's stream; it returns the viewer sessions that got
// frames and the frames checked.
func churn(t *testing.T, ts *testServer, stop time.Time) (sessions, frames int) {
	var wg sync.WaitGroup
	var viewersChecked, framesChecked atomicCounter
	for p := range 3 {
		wg.Go(func() {
			for round := 0; time.Now().Before(stop); round++ {
				stressPublish(t, ts, fmt.Sprintf("s%d", p), stop, round)
			}
		})
	}
	for v := range 12 {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				name := fmt.Sprintf("s%d", (v+i)%3)
				n := stressView(t, ts, name, v%2 == 0, time.Duration(50+(v*37+i*91)%400)*time.Millisecond)
				if n > 0 {
					viewersChecked.add(1)
					framesChecked.add(n)
				}
			}
		})
	}
	wg.Wait()
	return viewersChecked.load(), framesChecked.load()
}

// TestSoak churns for GMS_SOAK (e.g. 1h), printing goroutines, open files
// and the heap once a minute, then checks that they are back where they
// started once the churn stops.
func TestSoak(t *testing.T) {
	d, _ := time.ParseDuration(os.Getenv("GMS_SOAK"))
	if d <= 0 {
		t.Skip("set GMS_SOAK=1h to run the soak test")
	}
	ts := startServer(t, func(c *config) { c.LogLevel = slog.LevelWarn })
	sample := func() (g, fds int, heap uint64) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return runtime.NumGoroutine(), openFDs(t), ms.HeapInuse
	}
	g0, fd0, h0 := sample()
	fmt.Printf("soak start: goroutines %d, open files %d, heap %d\n", g0, fd0, h0)
	end := time.Now().Add(d)
	var sessions, frames int
	for minute := 1; time.Now().Before(end); minute++ {
		s, f := churn(t, ts, minTime(end, time.Now().Add(time.Minute)))
		sessions, frames = sessions+s, frames+f
		g, fds, heap := sample()
		fmt.Printf("soak minute %d: sessions %d, frames %d, goroutines %d, open files %d, heap %d\n",
			minute, sessions, frames, g, fds, heap)
		if t.Failed() {
			return
		}
	}
	waitFor(t, "every stream to go", func() bool { return len(ts.hub.snapshot()) == 0 })
	g, fds, heap := sample()
	fmt.Printf("soak end: goroutines %d, open files %d, heap %d\n", g, fds, heap)
	if g > g0+2 || fds > fd0+2 || heap > h0+4<<20 {
		t.Errorf("after %v: goroutines %d -> %d, open files %d -> %d, heap %d -> %d", d, g0, g, fd0, fds, h0, heap)
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

type atomicCounter struct {
	mu sync.Mutex
	n  int
}

func (c *atomicCounter) add(d int) { c.mu.Lock(); c.n += d; c.mu.Unlock() }
func (c *atomicCounter) load() int { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

// stressPublish publishes name for a random while: 100 frames a second,
// a keyframe every 10, each frame's payload carrying its sequence number.
func stressPublish(t *testing.T, ts *testServer, name string, stop time.Time, round int) {
	c := dialRTMPOwned(t, ts.rtmpAddr, false)
	defer c.nc.Close()
	c.connect("live")
	sid := c.createStream()
	c.command(sid, "publish", nil, name, "live")
	if c.expectStatus() != "NetStream.Publish.Start" {
		time.Sleep(50 * time.Millisecond) // the last round's publisher is still leaving
		return
	}
	c.send(csidData, msgDataAMF0, sid, 0, testMeta)
	c.send(csidAudio, msgAudio, sid, 0, testAudioHeader)
	c.send(csidVideo, msgVideo, sid, 0, testVideoHeader)
	frames := 50 + (round*53)%150
	for seq := range frames {
		if time.Now().After(stop) {
			break
		}
		payload := testVideo(seq%10 == 0, 200)
		binary.BigEndian.PutUint32(payload[5:], uint32(seq))
		c.send(csidVideo, msgVideo, sid, uint32(seq*10), payload)
		time.Sleep(10 * time.Millisecond)
	}
	c.command(sid, "deleteStream", nil, float64(sid))
}

// stressView watches name for a while over HTTP-FLV or WS-FLV and checks
// what it got; it returns the number of frames checked.
func stressView(t *testing.T, ts *testServer, name string, ws bool, watch time.Duration) int {
	ctx, cancel := context.WithTimeout(context.Background(), watch)
	defer cancel()
	var data []byte
	if ws {
		c, err := dialWS(ctx, ts.httpAddr, "/live/"+name+".flv")
		if err != nil {
			return 0
		}
		go func() { <-ctx.Done(); c.nc.Close() }()
		data, _ = c.readFLV()
	} else {
		req, _ := http.NewRequestWithContext(ctx, "GET", ts.httpURL(name), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		data, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if len(data) == 0 {
		return 0 // no publisher came while it waited
	}
	fr, err := newFLVReader(bytes.NewReader(data))
	if err != nil {
		t.Errorf("%s: %v", name, err)
		return 0
	}
	var kinds []string
	lastSeq, lastTime, n := -1, uint32(0), 0
	for {
		tag, err := fr.next()
		if err != nil {
			break // a cut-off last tag is how a viewer that leaves ends
		}
		switch {
		case tag.Type == tagScript:
			kinds = append(kinds, "meta")
			lastSeq = -1 // a new publisher: its frames count from 0 again
			lastTime = 0
			continue
		case tag.Type == tagAudio:
			kinds = append(kinds, "aseq")
			continue
		}
		header, key := videoInfo(tag.Data)
		if header {
			kinds = append(kinds, "vseq")
			continue
		}
		seq := int(binary.BigEndian.Uint32(tag.Data[5:]))
		if lastSeq < 0 {
			if !key || len(kinds) < 3 || strings.Join(kinds[len(kinds)-3:], " ") != "meta aseq vseq" {
				t.Errorf("%s: starts with %v then frame %d (key %v)", name, kinds, seq, key)
				return n
			}
		} else if seq != lastSeq+1 && !key {
			t.Errorf("%s: frame %d after %d, not at a keyframe", name, seq, lastSeq)
			return n
		}
		if tag.Time < lastTime {
			t.Errorf("%s: time %d after %d", name, tag.Time, lastTime)
		}
		lastSeq, lastTime = seq, tag.Time
		kinds = append(kinds, "frame")
		n++
	}
	return n
}

// TestHostileInput sends each kind of bad input the README's table lists,
// checks the log line that says why the connection ended, and then that a
// fresh publish and play still work.
func TestHostileInput(t *testing.T) {
	ts := startServer(t, func(c *config) { c.PingTimeout = 2 * time.Second })
	handshaken := func() net.Conn {
		c, err := net.Dial("tcp", ts.rtmpAddr)
		if err != nil {
			t.Fatal(err)
		}
		if err := clientHandshake(c, false); err != nil {
			t.Fatal(err)
		}
		return c
	}
	connected := func() *rtmpClient {
		c := dialRTMPOwned(t, ts.rtmpAddr, false)
		c.connect("live")
		return c
	}
	rawHTTP := func(req string) string {
		c, err := net.Dial("tcp", ts.httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		io.WriteString(c, req)
		b, _ := io.ReadAll(c)
		return string(b)
	}
	for _, tc := range []struct {
		name    string
		send    func()
		wantLog string
	}{
		{"random bytes instead of a handshake", func() {
			c, _ := net.Dial("tcp", ts.rtmpAddr)
			c.Write(bytes.Repeat([]byte{0xAB}, 3000))
			io.Copy(io.Discard, c)
			c.Close()
		}, "unsupported handshake version 171"},
		{"disconnect during the handshake", func() {
			c, _ := net.Dial("tcp", ts.rtmpAddr)
			c.Write([]byte{3, 0, 0})
			c.Close()
		}, `reason="peer closed"`},
		{"chunk on a stream with no header", func() {
			c := handshaken()
			c.Write([]byte{0xC5, 1, 2, 3})
			io.Copy(io.Discard, c)
			c.Close()
		}, "continuation chunk on a chunk stream with no header"},
		{"message length over the limit", func() {
			c := handshaken()
			c.Write([]byte{0x03, 0, 0, 0, 0xFF, 0xFF, 0xFF, 20, 0, 0, 0, 0})
			io.Copy(io.Discard, c)
			c.Close()
		}, "message longer than limit"},
		{"too many chunk streams", func() {
			c := handshaken()
			for csid := range 70 {
				c.Write(appendChunks(nil, uint32(csid+3), 99, 0, 0, []byte{1, 2, 3}, 128))
			}
			io.Copy(io.Discard, c)
			c.Close()
		}, "too many chunk streams"},
		{"chunk size 0", func() {
			c := handshaken()
			c.Write(appendChunks(nil, 2, msgSetChunkSize, 0, 0, []byte{0, 0, 0, 0}, 128))
			io.Copy(io.Discard, c)
			c.Close()
		}, "invalid chunk size"},
		{"malformed AMF command", func() {
			c := handshaken()
			c.Write(appendChunks(nil, 3, msgCommandAMF0, 0, 0, []byte{0x02, 0xFF, 0xFF, 'c'}, 128))
			io.Copy(io.Discard, c)
			c.Close()
		}, "bad command"},
		{"AMF nested 100 deep", func() {
			c := handshaken()
			body := amf0AppendAll(nil, "connect", 1.0)
			body = append(body, bytes.Repeat([]byte{0x0A, 0, 0, 0, 1}, 100)...)
			c.Write(appendChunks(nil, 3, msgCommandAMF0, 0, 0, body, 128))
			io.Copy(io.Discard, c)
			c.Close()
		}, "bad command"},
		{"publish before connect", func() {
			c := handshaken()
			c.Write(appendChunks(nil, 3, msgCommandAMF0, 1, 0, amf0AppendAll(nil, "publish", 0.0, nil, "x"), 128))
			io.Copy(io.Discard, c)
			c.Close()
		}, "publish before connect"},
		{"bad stream name", func() {
			c := connected()
			c.command(c.createStream(), "publish", nil, "../../etc/passwd", "live")
			c.expectStatus()
			c.nc.Close()
		}, "invalid name"},
		{"publisher killed mid-message", func() {
			c := connected()
			c.command(c.createStream(), "publish", nil, "killed", "live")
			c.expectStatus()
			b := appendChunks(nil, csidVideo, msgVideo, 1, 0, testVideo(true, 5000), 128)
			c.nc.Write(b[:len(b)/2])
			c.nc.Close()
		}, "stream=killed reason=\"peer closed\""},
		{"peer silent without FIN", func() {
			c := connected()
			c.command(c.createStream(), "publish", nil, "silent", "live")
			c.expectStatus()
			time.Sleep(3 * time.Second) // past the 2 s ping timeout of this server
			c.nc.Close()
		}, "stream=silent reason=timeout"},
		{"HTTP path with a dot", func() {
			if r := rawHTTP("GET /live/te.st.flv HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); !strings.HasPrefix(r, "HTTP/1.1 400") {
				t.Errorf("got %.40q", r)
			}
		}, ""},
		{"HTTP path escaping the root", func() {
			if r := rawHTTP("GET /live/../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); !strings.HasPrefix(r, "HTTP/1.1 3") && !strings.HasPrefix(r, "HTTP/1.1 4") {
				t.Errorf("got %.40q", r)
			}
		}, ""},
		{"HTTP garbage request", func() {
			if r := rawHTTP("\x00\x01\x02 garbage\r\n\r\n"); !strings.HasPrefix(r, "HTTP/1.1 400") {
				t.Errorf("got %.40q", r)
			}
		}, ""},
		{"HTTP header over 16 KiB", func() {
			if r := rawHTTP("GET /live/x.flv HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", 40000) + "\r\n\r\n"); !strings.HasPrefix(r, "HTTP/1.1 431") {
				t.Errorf("got %.40q", r)
			}
		}, ""},
		{"WebSocket upgrade with a bad key", func() {
			if r := rawHTTP("GET /live/x.flv HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: bad\r\n\r\n"); !strings.HasPrefix(r, "HTTP/1.1 400") {
				t.Errorf("got %.40q", r)
			}
		}, ""},
		{"WebSocket unmasked frame", func() {
			ws, err := dialWS(context.Background(), ts.httpAddr, "/live/wsbad.flv")
			if err != nil {
				t.Fatal(err)
			}
			ws.nc.Write([]byte{0x82, 0x01, 0x00})
			io.Copy(io.Discard, ws.nc)
			ws.nc.Close()
		}, "unmasked client frame"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.send()
			if tc.wantLog != "" {
				waitFor(t, "the log line", func() bool { return strings.Contains(ts.logs.String(), tc.wantLog) })
			}
			checkPublishPlay(t, ts)
		})
	}
}

// checkPublishPlay publishes a few frames and checks an HTTP-FLV viewer
// gets them: the server is still fine.
func checkPublishPlay(t *testing.T, ts *testServer) {
	t.Helper()
	name := "fresh" + newClientID()
	pub := dialRTMPOwned(t, ts.rtmpAddr, false)
	defer pub.nc.Close()
	pub.connect("live")
	sid := pub.createStream()
	pub.command(sid, "publish", nil, name, "live")
	if code := pub.expectStatus(); code != "NetStream.Publish.Start" {
		t.Fatalf("fresh publish: %s", code)
	}
	pub.send(csidData, msgDataAMF0, sid, 0, testMeta)
	pub.send(csidAudio, msgAudio, sid, 0, testAudioHeader)
	pub.send(csidVideo, msgVideo, sid, 0, testVideoHeader)
	pub.send(csidVideo, msgVideo, sid, 0, testVideo(true, 100))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan []byte, 1)
	go func() {
		_, data, _ := httpGetFLV(ctx, ts.httpURL(name))
		done <- data
	}()
	waitFor(t, "the fresh viewer", func() bool { return ts.viewers(streamKey{"live", name}) == 1 })
	pub.command(sid, "deleteStream", nil, float64(sid))
	_, tags := parseFLV(t, <-done)
	if len(mediaTags(tags)) != 3 {
		t.Errorf("fresh viewer got %d media tags; want 3", len(mediaTags(tags)))
	}
}

// TestEnhancedRTMP publishes hand-built Enhanced RTMP tags (ffmpeg 5.1
// cannot write them): HEVC video and Opus audio with ExHeaders. Players get
// the bytes unchanged, a late joiner starts at the SequenceStart headers
// and a keyframe, and the API names the codecs.
func TestEnhancedRTMP(t *testing.T) {
	ts := startServer(t, nil)
	pub := dialRTMP(t, ts.rtmpAddr, false)
	pub.connect("live")
	sid := pub.createStream()
	pub.command(sid, "publish", nil, "ertmp", "live")
	pub.expectStatus()
	ex := func(frameType, packetType byte, fourcc string, data ...byte) []byte {
		return append(append([]byte{0x80 | frameType<<4 | packetType}, fourcc...), data...)
	}
	exAudio := func(packetType byte, data ...byte) []byte {
		return append(append([]byte{soundExHeader<<4 | packetType}, "Opus"...), data...)
	}
	sent := []struct {
		typ  uint8
		ts   uint32
		data []byte
	}{
		{msgVideo, 0, ex(1, exSequenceStart, "hvc1", 1, 2, 3, 4)},         // HEVCDecoderConfigurationRecord (stub)
		{msgAudio, 0, exAudio(0, 'O', 'p', 'u', 's', 'H', 'e', 'a', 'd')}, // OpusHead
		{msgVideo, 0, ex(1, exCodedFrames, "hvc1", 0, 0, 0, 0xAA)},        // keyframe, CTS 0
		{msgAudio, 20, exAudio(1, 0xF0)},
		{msgVideo, 40, ex(2, exCodedFramesX, "hvc1", 0xBB)},
		{msgVideo, 80, ex(1, exCodedFrames, "hvc1", 0, 0, 0, 0xCC)}, // second keyframe
		{msgVideo, 120, ex(2, exCodedFramesX, "hvc1", 0xDD)},
	}
	pub.send(csidData, msgDataAMF0, sid, 0, amf0AppendAll(nil, "@setDataFrame", "onMetaData",
		amfECMAArray{{"videocodecid", float64(0x68766331)}, {"audiocodecid", float64(0x4F707573)}}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	early := make(chan []byte, 1)
	go func() {
		_, data, _ := httpGetFLV(ctx, ts.httpURL("ertmp"))
		early <- data
	}()
	waitFor(t, "the viewer", func() bool { return ts.viewers(streamKey{"live", "ertmp"}) == 1 })
	for i, m := range sent {
		csid := uint32(csidVideo)
		if m.typ == msgAudio {
			csid = csidAudio
		}
		pub.send(csid, m.typ, sid, m.ts, m.data)
		if i == 4 { // a late joiner, after the first GOP
			waitForFramesIn(t, ts, "ertmp", 3)
		}
	}
	// All of them in the hub before the late viewer joins: with a write
	// delay, publishers are read once per tick.
	waitForFramesIn(t, ts, "ertmp", 5)
	var late []byte
	lateDone := make(chan struct{})
	go func() {
		_, late, _ = httpGetFLV(ctx, ts.httpURL("ertmp"))
		close(lateDone)
	}()
	waitFor(t, "the late viewer", func() bool { return ts.viewers(streamKey{"live", "ertmp"}) == 2 })
	var api apiStreamsReply
	getJSON(t, "GET", "http://"+ts.httpAddr+"/api/streams", &api)
	if p := api["live"]["ertmp"].Publisher; p == nil || p.Video == nil || p.Video.Codec != "HEVC" || p.Audio == nil || p.Audio.Codec != "Opus" {
		t.Errorf("API codecs: %+v", p)
	}
	pub.command(sid, "deleteStream", nil, float64(sid))
	_, got := parseFLV(t, <-early)
	got = mediaTags(got)
	if len(got) != len(sent) {
		t.Fatalf("early viewer got %d tags; want %d", len(got), len(sent))
	}
	for i, m := range sent {
		if got[i].Type != m.typ || got[i].Time != m.ts || !bytes.Equal(got[i].Data, m.data) {
			t.Errorf("tag %d = %d %d % x; want %d %d % x", i, got[i].Type, got[i].Time, got[i].Data, m.typ, m.ts, m.data)
		}
	}
	<-lateDone
	flags, lateTags := parseFLV(t, late)
	if flags != [2]bool{true, true} {
		t.Errorf("late FLV header flags %v", flags)
	}
	lateTags = mediaTags(lateTags)
	// SequenceStart headers (video first, as sent), then the second keyframe and what followed.
	want := [][]byte{sent[0].data, sent[1].data, sent[5].data, sent[6].data}
	if len(lateTags) != len(want) {
		t.Fatalf("late viewer got %d tags; want %d", len(lateTags), len(want))
	}
	for i := range want {
		if !bytes.Equal(lateTags[i].Data, want[i]) {
			t.Errorf("late tag %d = % x; want % x", i, lateTags[i].Data, want[i])
		}
	}
}

// waitForFramesIn waits until the hub has taken n frames of stream name.
func waitForFramesIn(t *testing.T, ts *testServer, name string, n uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d frames of %s", n, name), func() bool {
		for _, s := range ts.hub.snapshot() {
			if s.Key.Name == name {
				return s.FramesIn >= n
			}
		}
		return false
	})
}

// TestVersion: -version stops parseFlags before anything else (a missing
// config file included), a binary without version control information
// says so, /api/server reports the same line, and a binary built from a
// git commit prints that commit, its time and whether the tree was
// modified, on one line of stdout, and exits 0.
func TestVersion(t *testing.T) {
	if _, err := parseFlags([]string{"-version", "-config", "/does/not/exist"}, nil, io.Discard, func(string, ...any) {}); !errors.Is(err, errShowVersion) {
		t.Errorf("parseFlags(-version) = %v; want errShowVersion", err)
	}
	var help bytes.Buffer
	parseFlags([]string{"-h"}, nil, &help, func(string, ...any) {})
	if !strings.Contains(help.String(), "-version") {
		t.Errorf("-h does not document -version")
	}

	// go test stamps no version control information.
	goOSArch := regexp.QuoteMeta(runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH)
	if got, want := versionString(), `^gms devel \(unknown commit, `+goOSArch+`\)$`; !regexp.MustCompile(want).MatchString(got) {
		t.Errorf("versionString() = %q; want it to match %s", got, want)
	}
	ts := startServer(t, nil)
	var srv struct{ Version string }
	getJSON(t, "GET", "http://"+ts.httpAddr+"/api/server", &srv)
	if srv.Version != versionString() {
		t.Errorf("/api/server version = %q; want %q", srv.Version, versionString())
	}

	if testing.Short() {
		t.Skip("-short: not building gms from a git commit")
	}
	gitTool, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git")
	}
	// A repository of its own with this source: the go command does not
	// stamp builds in a git worktree, and the checkout may have changes.
	// No dot files: a worktree's .git file would lead git to the
	// checkout's own repository.
	dir := t.TempDir()
	files, _ := os.ReadDir(".")
	for _, f := range files {
		if !f.Type().IsRegular() || strings.HasPrefix(f.Name(), ".") || strings.HasSuffix(f.Name(), "_test.go") {
			continue
		}
		data, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(gitTool, append([]string{"-c", "user.name=gms", "-c", "user.email=gms@example.com",
			"-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_DIR="+filepath.Join(dir, ".git"), "GIT_WORK_TREE="+dir,
			"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
			"GIT_AUTHOR_DATE=2001-02-03T04:05:06Z", "GIT_COMMITTER_DATE=2001-02-03T04:05:06Z")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	git("add", ".")
	git("commit", "-q", "-m", "version test")
	rev := git("rev-parse", "--short=12", "HEAD")

	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	versionOf := func() string {
		t.Helper()
		bin := filepath.Join(t.TempDir(), "gms")
		build := exec.Command(goTool, "build", "-buildvcs=true", "-o", bin, ".")
		build.Dir = dir
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, "-version") // a server that starts instead is killed
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Errorf("gms -version: %v; stderr %q", err, stderr.String())
		}
		return stdout.String()
	}
	pseudo := `v0\.0\.0-20010203040506-` + rev
	if got, want := versionOf(), `^gms `+pseudo+` \(commit `+rev+` of 2001-02-03T04:05:06Z, `+goOSArch+`\)\n$`; !regexp.MustCompile(want).MatchString(got) {
		t.Errorf("gms -version = %q; want it to match %s", got, want)
	}
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("uncommitted\n"), 0o644)
	if got, want := versionOf(), `^gms `+pseudo+`\+dirty \(commit `+rev+` of 2001-02-03T04:05:06Z, modified, `+goOSArch+`\)\n$`; !regexp.MustCompile(want).MatchString(got) {
		t.Errorf("gms -version, tree modified = %q; want it to match %s", got, want)
	}
}

// recordings lists ts's recordings through the API.
func recordings(t *testing.T, ts *testServer) []recordingInfo {
	t.Helper()
	var res struct{ Recordings []recordingInfo }
	if code := getJSON(t, "GET", "http://"+ts.httpAddr+"/api/recordings", &res); code != http.StatusOK {
		t.Fatalf("GET /api/recordings: %d", code)
	}
	return res.Recordings
}

// recordClip publishes clip to a server recording in format and waits
// for the recording to finish; it returns its listing and its path.
func recordClip(t *testing.T, clip, format string) (recordingInfo, string) {
	t.Helper()
	dir := t.TempDir()
	ts := startServer(t, func(c *config) { c.RecordDir, c.RecordFormat = dir, format })
	if err := startPublish(t, clip, ts.rtmpURL("rec"))(); err != nil {
		t.Fatal(err)
	}
	var list []recordingInfo
	waitFor(t, "the recording to finish", func() bool {
		list = recordings(t, ts)
		return len(list) == 1 && !list[0].Recording
	})
	r := list[0]
	if r.App != "live" || r.Stream != "rec" || !strings.HasPrefix(r.File, "live/rec/") || !strings.HasSuffix(r.File, "."+format) {
		t.Errorf("recording listed as %+v; want live/rec/<time>.%s", r, format)
	}
	return r, filepath.Join(dir, filepath.FromSlash(r.File))
}

// TestRecord publishes the clip with -record on: the file must hold every
// packet of the clip (ffprobe: counts, sizes, timestamps, keyframes), and
// the API must list it, finished, with its size and duration.
func TestRecord(t *testing.T) {
	clip := testClip(t)
	r, path := recordClip(t, clip, "flv")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if r.Size != st.Size() {
		t.Errorf("API size %d; file has %d", r.Size, st.Size())
	}
	if r.Duration < 3.5 || r.Duration > 4.1 {
		t.Errorf("API duration %.3f s; want the clip's ~4 s", r.Duration)
	}
	comparePackets(t, "record", ffprobePackets(t, path), ffprobePackets(t, clip))
	if got := ffprobeStreams(t, path); !strings.Contains(got, "codec_name=h264") || !strings.Contains(got, "codec_name=aac") {
		t.Errorf("recorded streams:\n%s", got)
	}
	decodesCleanly(t, "record", path)
}

// TestRecordLateStart records a stream whose frames start at 10 s: the
// file's metadata is at 0, where ffprobe takes it for metadata (at the
// first frame's time it showed a "text" data stream), and the API's
// duration is the media's, from the first frame.
func TestRecordLateStart(t *testing.T) {
	path, _ := lateStartFLV(t, 50)
	dir := t.TempDir()
	ts := startServer(t, func(c *config) { c.RecordDir = dir })
	if out, err := runCmd(context.Background(), "push", "-speed", "0", path, ts.rtmpURL("late")); err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	var list []recordingInfo
	waitFor(t, "the recording to finish", func() bool {
		list = recordings(t, ts)
		return len(list) == 1 && !list[0].Recording
	})
	if d := list[0].Duration; d < 1.9 || d > 2.0 {
		t.Errorf("API duration %.3f s; want the 50 frames' 1.96 s", d)
	}
	file := filepath.Join(dir, filepath.FromSlash(list[0].File))
	_, tags := readFLVFile(t, file)
	if len(tags) < 4 || tags[0].Type != tagScript || tags[0].Time != 0 || tags[3].Time != 10000 {
		t.Errorf("recording starts %v; want the metadata at 0 and the first frame at 10000", tags[:min(len(tags), 4)])
	}
	if got := ffprobeStreams(t, file); strings.Contains(got, "codec_type=data") || strings.Contains(got, "codec_type=subtitle") {
		t.Errorf("ffprobe sees a data stream in the recording:\n%s", got)
	}
}

// TestRecordNothingPublished: a publisher that leaves before its first
// frame leaves no empty file (which ffprobe cannot open) in the
// directory or the API's list.
func TestRecordNothingPublished(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, func(c *config) { c.RecordDir = dir })
	code, _, c := rtmpTryPublish(t, ts.rtmpAddr, "empty")
	if code != "NetStream.Publish.Start" {
		t.Fatalf("publish: %s", code)
	}
	waitFor(t, "the recording to start", func() bool { return strings.Contains(ts.logs.String(), "record: started") })
	c.nc.Close()
	waitFor(t, "the recording to end", func() bool { return strings.Contains(ts.logs.String(), "nothing recorded") })
	if list := recordings(t, ts); len(list) != 0 {
		t.Errorf("recordings = %+v; want none", list)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "live", "empty", "*"))
	if len(files) != 0 {
		t.Errorf("files left: %v", files)
	}
}

// TestRecordKilledPublisher records a publisher killed with SIGKILL: the
// file is closed at the unpublish and reads cleanly; one cut mid-tag (gms
// itself killed) still reads up to its last whole tag.
func TestRecordKilledPublisher(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, func(c *config) { c.RecordDir = dir })
	pub := longPublish(t, ts.rtmpURL("kill"))
	waitFor(t, "200 KB recorded", func() bool {
		list := recordings(t, ts)
		return len(list) == 1 && list[0].Size > 200<<10
	})
	pub.Process.Signal(syscall.SIGKILL)
	var list []recordingInfo
	waitFor(t, "the recording to end", func() bool {
		list = recordings(t, ts)
		return len(list) == 1 && !list[0].Recording
	})
	path := filepath.Join(dir, filepath.FromSlash(list[0].File))
	decodesCleanly(t, "killed publisher", path)
	whole := len(ffprobePackets(t, path))
	if whole < 20 {
		t.Fatalf("%d packets recorded", whole)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut.flv")
	if err := os.WriteFile(cut, data[:len(data)-1000], 0o644); err != nil {
		t.Fatal(err)
	}
	frames := wholeFrames(data[:len(data)-1000])
	cutPackets, wholePackets := ffprobePackets(t, cut), ffprobePackets(t, path)
	if len(cutPackets) < frames || frames < whole-20 {
		t.Errorf("file cut 1000 bytes short: ffprobe read %d packets; it holds %d whole frames (%d before the cut)", len(cutPackets), frames, whole)
	}
	for i := range min(frames, len(cutPackets)) {
		if cutPackets[i] != wholePackets[i] {
			t.Errorf("cut file: packet %d = %+v; want %+v", i, cutPackets[i], wholePackets[i])
			break
		}
	}
}

// wholeFrames counts the whole audio and video frames (sequence headers
// left out) at the start of an FLV file that may end mid-tag.
func wholeFrames(data []byte) int {
	frames := 0
	for off := flvHeaderLen + 4; off+flvTagHeaderLen <= len(data); {
		n := int(be24(data[off+1 : off+4]))
		if off+flvTagHeaderLen+n+4 > len(data) {
			break
		}
		body := data[off+flvTagHeaderLen : off+flvTagHeaderLen+n]
		switch data[off] & 0x1F {
		case tagAudio:
			if !audioIsHeader(body) {
				frames++
			}
		case tagVideo:
			if header, _ := videoInfo(body); !header {
				frames++
			}
		}
		off += flvTagHeaderLen + n + 4
	}
	return frames
}

// TestRecordMP4 publishes the clip with -record-format mp4: the file is
// a fragmented MP4 holding every packet of the clip (ffprobe: counts,
// sizes, keyframes, times within the 1 ms that FLV's rounding of audio
// times costs, as in TestMuxFLVFFprobe), decodes cleanly, and is listed
// with its duration read from its fragments.
func TestRecordMP4(t *testing.T) {
	clip := testClip(t)
	r, path := recordClip(t, clip, "mp4")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if r.Size != int64(len(data)) {
		t.Errorf("API size %d; file has %d", r.Size, len(data))
	}
	if r.Duration < 3.5 || r.Duration > 4.1 {
		t.Errorf("API duration %.3f s; want the clip's ~4 s", r.Duration)
	}
	boxes := topBoxes(t, data)
	if len(boxes) < 5 || boxes[0].typ != "ftyp" || boxes[1].typ != "moov" || boxes[2].typ != "moof" || boxes[3].typ != "mdat" ||
		boxes[len(boxes)-1].typ != "mfra" || binary.BigEndian.Uint32(data[len(data)-4:]) != uint32(len(boxes[len(boxes)-1].body)+8) {
		t.Errorf("top-level boxes %v; want ftyp, moov, moof and mdat pairs, then mfra (its size at the file's end)", boxes)
	}
	// The mfra's times are the fragments' keyframes' presentation times
	// (§8.8.10): ffmpeg reading it for them sees the same packets.
	if got, want := ffprobeTimed(t, path, "-use_mfra_for", "pts"), ffprobeTimed(t, path); !slices.Equal(got, want) {
		t.Errorf("with the mfra's times: %d packets, differing from the fragments' %d", len(got), len(want))
	}
	if got := ffprobeStreams(t, path); !strings.Contains(got, "codec_name=h264") || !strings.Contains(got, "codec_name=aac") {
		t.Errorf("recorded streams:\n%s", got)
	}
	comparePacketsTimed(t, "record mp4", ffprobeTimed(t, path), ffprobeTimed(t, clip), 0.0011)
	decodesCleanly(t, "record mp4", path)
}

// TestRecordMP4KilledPublisher records a publisher killed with SIGKILL as
// MP4: the file is closed at the unpublish and reads cleanly; one cut
// mid-fragment (gms itself killed) still reads every whole fragment
// before the cut, and its duration is listed from those.
func TestRecordMP4KilledPublisher(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, func(c *config) { c.RecordDir, c.RecordFormat = dir, "mp4" })
	pub := longPublish(t, ts.rtmpURL("kill"))
	var list []recordingInfo
	waitFor(t, "200 KB recorded", func() bool {
		list = recordings(t, ts)
		return len(list) == 1 && list[0].Size > 200<<10
	})
	path := filepath.Join(dir, filepath.FromSlash(list[0].File))
	if n := len(ffprobeTimed(t, path)); n == 0 { // readable while it is written
		t.Errorf("the file being written: ffprobe read no packets")
	}
	pub.Process.Signal(syscall.SIGKILL)
	waitFor(t, "the recording to end", func() bool {
		list = recordings(t, ts)
		return len(list) == 1 && !list[0].Recording
	})
	decodesCleanly(t, "killed publisher", path)
	whole := ffprobeTimed(t, path)
	if len(whole) < 20 {
		t.Fatalf("%d packets recorded", len(whole))
	}
	if list[0].Duration <= 0 {
		t.Errorf("API duration %.3f s", list[0].Duration)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Cut in the middle of the mdat of the second to last fragment: the
	// fragments before it are whole.
	boxes := topBoxes(t, data)
	var mdats []mp4Box
	for _, b := range boxes {
		if b.typ == "mdat" {
			mdats = append(mdats, b)
		}
	}
	if len(mdats) < 3 {
		t.Fatalf("%d fragments; want at least 3 (boxes %v)", len(mdats), boxes)
	}
	cutFragment := mdats[len(mdats)-2]
	boundary := mdats[len(mdats)-3].bodyOff + int64(len(mdats[len(mdats)-3].body)) // the end of the last whole fragment
	tmp := t.TempDir()
	atBoundary, cut := filepath.Join(tmp, "boundary.mp4"), filepath.Join(tmp, "cut.mp4")
	os.WriteFile(atBoundary, data[:boundary], 0o644)
	os.WriteFile(cut, data[:cutFragment.bodyOff+int64(len(cutFragment.body)/2)], 0o644)
	before := ffprobeTimed(t, atBoundary)
	cutPackets := ffprobeTimed(t, cut)
	t.Logf("%d fragments; the cut file reads %d packets, its whole fragments hold %d, the file %d", len(mdats), len(cutPackets), len(before), len(whole))
	if len(before) == 0 || len(before) >= len(whole) || len(cutPackets) < len(before) {
		t.Errorf("file cut mid-fragment: ffprobe read %d packets; the whole fragments before the cut hold %d (the file %d)", len(cutPackets), len(before), len(whole))
	}
	for i := range min(len(before), len(cutPackets)) {
		if cutPackets[i] != whole[i] || before[i] != whole[i] {
			t.Errorf("cut file: packet %d = %+v (%+v at the fragment boundary); want %+v", i, cutPackets[i], before[i], whole[i])
			break
		}
	}
	if d, full := mp4FileDuration(cut), mp4FileDuration(path); d <= 0 || d >= full || d != mp4FileDuration(atBoundary) {
		t.Errorf("cut file's duration %v; want that of its whole fragments, %v (the whole file: %v)", d, mp4FileDuration(atBoundary), full)
	}
}

// topBoxes splits an MP4 file into its top-level boxes.
func topBoxes(t *testing.T, data []byte) []mp4Box {
	t.Helper()
	boxes, err := mp4Children(mp4Box{}, data, 0)
	if err != nil {
		t.Fatal(err)
	}
	return boxes
}

// TestRecordWriteError makes the recording directory unusable: the
// recording fails with a log line and a counter, and the stream and its
// viewers go on.
func TestRecordWriteError(t *testing.T) {
	clip := testClip(t)
	dir := t.TempDir()
	blocker := filepath.Join(dir, "live")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil { // a file where the app's directory must go
		t.Fatal(err)
	}
	ts := startServer(t, func(c *config) { c.RecordDir = dir })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got := make(chan []byte, 1)
	go func() {
		_, data, _ := httpGetFLV(ctx, ts.httpURL("err"))
		got <- data
	}()
	waitFor(t, "the player", func() bool { return ts.viewers(streamKey{"live", "err"}) == 1 })
	if err := startPublish(t, clip, ts.rtmpURL("err"))(); err != nil {
		t.Fatal(err)
	}
	_, want := readFLVFile(t, clip)
	_, tags := parseFLV(t, <-got)
	compareTags(t, "http", mediaTags(tags), mediaTags(want))
	if n := ts.rec.errors.Load(); n != 1 {
		t.Errorf("record errors = %d; want 1", n)
	}
	if !strings.Contains(ts.logs.String(), "record: cannot create file") {
		t.Errorf("no log line for the failed recording")
	}
}

// ---- Relays and edges ----

// relayList reads ts's /api/relay into a flat list.
func relayList(t *testing.T, ts *testServer) []relayInfo {
	t.Helper()
	var res map[string]map[string]struct{ Relays []relayInfo }
	if code := getJSON(t, "GET", "http://"+ts.httpAddr+"/api/relay", &res); code != http.StatusOK {
		t.Fatalf("GET /api/relay: %d", code)
	}
	var out []relayInfo
	for _, names := range res {
		for _, n := range names {
			out = append(out, n.Relays...)
		}
	}
	return out
}

// TestRelayPush has gms A push every stream to gms B: a player waiting on
// B gets every media frame the publisher sent to A, byte for byte. Then B
// restarts mid-stream: A's push reconnects and B's new players get media
// again, while A's publisher is never held up (it stays live throughout).
func TestRelayPush(t *testing.T) {
	clip := testClip(t)
	b := startServer(t, func(c *config) { c.PlayWait = 0 })
	a := startServer(t, func(c *config) { c.RelayPush = []string{"rtmp://" + b.rtmpAddr + "/live"} })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got := make(chan []byte, 1)
	go func() {
		_, data, _ := httpGetFLV(ctx, b.httpURL("r"))
		got <- data
	}()
	waitFor(t, "the player on B", func() bool { return b.viewers(streamKey{"live", "r"}) == 1 })
	if err := startPublish(t, clip, a.rtmpURL("r"))(); err != nil {
		t.Fatal(err)
	}
	_, want := readFLVFile(t, clip)
	_, tags := parseFLV(t, <-got)
	compareTags(t, "relayed", mediaTags(tags), mediaTags(want))
	waitFor(t, "the push to end", func() bool { return len(relayList(t, a)) == 0 })

	// B goes away mid-stream and comes back on the same port.
	pub := longPublish(t, a.rtmpURL("r2"))
	key := streamKey{"live", "r2"}
	waitFor(t, "the relayed stream on B", func() bool { return b.live(key) })
	bAddr := b.rtmpAddr
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the push to retry", func() bool {
		l := relayList(t, a)
		return len(l) == 1 && l[0].State != "live" && l[0].Errors > 0
	})
	b2 := startServer(t, func(c *config) { c.RTMPAddr = bAddr })
	waitFor(t, "the push to reconnect", func() bool { return b2.live(key) })
	ctx2, cancel2 := context.WithTimeout(ctx, 3*time.Second)
	defer cancel2()
	_, data, _ := httpGetFLV(ctx2, b2.httpURL("r2"))
	if _, tags := parseFLV(t, data); len(mediaTags(tags)) < 10 {
		t.Errorf("after B restarted: %d media tags in 3 s", len(mediaTags(tags)))
	}
	if !a.live(key) || pub.ProcessState != nil {
		t.Errorf("A's publisher did not stay live while B was away")
	}
}

// TestRelayRefusedKeyHidden pushes to an exact target (a platform's
// stream key) that refuses, quoting the key in its answer: the key shows
// neither in the relay's log lines nor in the API's lastError.
func TestRelayRefusedKeyHidden(t *testing.T) {
	const secret = "sk_live_4b3a2918"
	b := startServer(t, nil)
	longPublish(t, "rtmp://"+b.rtmpAddr+"/ingest/"+secret) // the key is taken: B refuses
	waitFor(t, "B's own publisher", func() bool { return b.live(streamKey{"ingest", secret}) })
	a := startServer(t, func(c *config) { c.RelayPush = []string{"live=rtmp://" + b.rtmpAddr + "/ingest/" + secret} })
	longPublish(t, a.rtmpURL("cam"))
	var l []relayInfo
	waitFor(t, "the push to be refused", func() bool {
		l = relayList(t, a)
		return len(l) == 1 && l[0].Errors > 0 && l[0].LastError != ""
	})
	if strings.Contains(l[0].LastError, secret) || !strings.Contains(l[0].LastError, "BadName") {
		t.Errorf("lastError = %q; want B's refusal without the key", l[0].LastError)
	}
	if logs := a.logs.String(); strings.Contains(logs, secret) || !strings.Contains(logs, "cannot publish to target") {
		t.Errorf("A's log shows the key or not the refusal:\n%s", logs)
	}
}

// TestRelayTargetAwayLong: a push whose target stays away for longer
// than the hub lets a viewer lag (maxBehind) is still there, retrying,
// and goes live when the target comes back. It used to fill its queue
// while away, be disconnected as a slow viewer, and end for good.
func TestRelayTargetAwayLong(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out maxBehind and the back-off (about 20 s)")
	}
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bAddr := dead.Addr().String()
	dead.Close()
	a := startServer(t, func(c *config) { c.RelayPush = []string{"rtmp://" + bAddr + "/live"} })
	longPublish(t, a.rtmpURL("away"))
	waitFor(t, "the push to fail", func() bool {
		l := relayList(t, a)
		return len(l) == 1 && l[0].Errors > 0
	})
	start := time.Now()
	waitFor(t, "the push to have been failing for longer than maxBehind", func() bool {
		l := relayList(t, a)
		return len(l) != 1 || time.Since(start) > maxBehind+3*time.Second
	})
	if l := relayList(t, a); len(l) != 1 || l[0].State == "stopped" {
		t.Fatalf("after %v away, relays = %+v; want the push retrying\n%s", time.Since(start).Round(time.Second), l, a.logs.String())
	}
	b := startServer(t, func(c *config) { c.RTMPAddr = bAddr })
	waitFor(t, "the push to reach B", func() bool { return b.live(streamKey{"live", "away"}) })
	if strings.Contains(a.logs.String(), "conn=relay") && strings.Contains(a.logs.String(), "too slow") {
		t.Errorf("the push waiting for its target was treated as a slow viewer:\n%s", a.logs.String())
	}
}

// TestEdge puts an edge in front of an origin (after one that does not
// answer: origins are tried in turn): players of the edge share one pull
// from the origin, and the pull stops a few seconds after the last one
// has left.
func TestEdge(t *testing.T) {
	origin := startServer(t, nil)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead.Close()
	edge := startServer(t, func(c *config) {
		c.Origins = []string{"rtmp://" + dead.Addr().String(), "rtmp://" + origin.rtmpAddr}
	})
	longPublish(t, origin.rtmpURL("e"))
	key := streamKey{"live", "e"}
	waitFor(t, "the origin's stream", func() bool { return origin.live(key) })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sizes := make(chan int, 3)
	for range 3 {
		go func() {
			pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
			defer pcancel()
			_, data, _ := httpGetFLV(pctx, edge.httpURL("e"))
			sizes <- len(data)
		}()
	}
	waitFor(t, "three players on the edge", func() bool { return edge.viewers(key) == 3 })
	waitFor(t, "the edge's pull on the origin", func() bool { return origin.viewers(key) > 0 })
	if n := origin.viewers(key); n != 1 {
		t.Errorf("origin has %d players; want the edge's one pull", n)
	}
	for range 3 {
		if n := <-sizes; n < 50<<10 {
			t.Errorf("an edge player got %d bytes in 5 s", n)
		}
	}
	waitFor(t, "the pull to stop after the last player", func() bool {
		return origin.viewers(key) == 0 && !edge.live(key)
	})
	if l := relayList(t, edge); len(l) != 0 {
		t.Errorf("relays after the pull ended: %+v", l)
	}
}

// TestEdgeSignedOrigin: an origin that checks plays with the secret it
// shares with its edge (-auth-play, one config for both, as NMS set-ups
// go) serves the edge's pull, which the edge signs itself; the edge's
// players need their own sign, which stays on the edge.
func TestEdgeSignedOrigin(t *testing.T) {
	const secret = "shared-S3CRET"
	origin := startServer(t, func(c *config) { c.Secret, c.PlayAuth = secret, true })
	edge := startServer(t, func(c *config) {
		c.Secret, c.PlayAuth = secret, true
		c.Origins = []string{"rtmp://" + origin.rtmpAddr}
	})
	longPublish(t, origin.rtmpURL("signed"))
	key := streamKey{"live", "signed"}
	waitFor(t, "the origin's stream", func() bool { return origin.live(key) })
	playerSign := sign(key, time.Now().Add(time.Hour).Unix(), secret)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, data, _ := httpGetFLV(ctx, edge.httpURL("signed")+"?"+playerSign)
	if _, tags := parseFLV(t, data); len(mediaTags(tags)) < 10 {
		t.Errorf("edge player: %d media tags in 5 s\n%s", len(mediaTags(tags)), edge.logs.String())
	}
	if _, hash, _ := strings.Cut(playerSign, "-"); strings.Contains(origin.logs.String(), hash) || strings.Contains(edge.logs.String(), hash) {
		t.Errorf("a sign shows in a log")
	}
}

// TestStaticRelay pulls a stream from another server from start-up, as
// NMS's static relay task does, under a local name of its own.
func TestStaticRelay(t *testing.T) {
	origin := startServer(t, nil)
	longPublish(t, origin.rtmpURL("src"))
	b := startServer(t, func(c *config) {
		c.RelayTasks = []relayTaskConfig{{App: "live", Mode: "static", Name: "copy", Edge: origin.rtmpURL("src")}}
	})
	waitFor(t, "the static pull", func() bool { return b.live(streamKey{"live", "copy"}) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, data, _ := httpGetFLV(ctx, b.httpURL("copy"))
	if _, tags := parseFLV(t, data); len(mediaTags(tags)) < 10 {
		t.Errorf("static relay: %d media tags in 2 s", len(mediaTags(tags)))
	}
	if l := relayList(t, b); len(l) != 1 || l[0].Mode != relayStatic || l[0].State != "live" {
		t.Errorf("GET /api/relay = %+v; want one live static relay", l)
	}
}

// TestRelayAPI adds a push by NMS's API to a URL that names its stream
// (a platform's key): the key never shows in the API or the log, and
// DELETE stops it; a name with a path in it is refused.
func TestRelayAPI(t *testing.T) {
	b := startServer(t, nil)
	a := startServer(t, nil)
	longPublish(t, a.rtmpURL("api"))
	waitFor(t, "the stream", func() bool { return a.live(streamKey{"live", "api"}) })
	const secret = "sk_live_9f8e7d6c"
	form := url.Values{"url": {"rtmp://" + b.rtmpAddr + "/ingest/" + secret}, "app": {"live"}, "name": {"api"}}
	resp, err := http.PostForm("http://"+a.httpAddr+"/api/relay/push", form)
	if err != nil {
		t.Fatal(err)
	}
	idBytes, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(idBytes) == 0 {
		t.Fatalf("POST /api/relay/push: %d %s", resp.StatusCode, idBytes)
	}
	waitFor(t, "the push to be live on B", func() bool { return b.live(streamKey{"ingest", secret}) })
	// B lists the stream as soon as it takes the publish; A calls the push
	// live when B's answer (Publish.Start) has come back.
	var l []relayInfo
	waitFor(t, "A to list the push as live", func() bool { l = relayList(t, a); return len(l) == 1 && l[0].State == "live" })
	if len(l) != 1 || l[0].Mode != relayPush || l[0].State != "live" || !strings.HasSuffix(l[0].URL, "/ingest/***") {
		t.Errorf("GET /api/relay = %+v; want one live push to .../ingest/***", l)
	}
	raw, _ := http.Get("http://" + a.httpAddr + "/api/relay")
	body, _ := io.ReadAll(raw.Body)
	raw.Body.Close()
	if strings.Contains(string(body), secret) || strings.Contains(a.logs.String(), secret) {
		t.Errorf("the stream key shows in the API or the log")
	}
	if code := getJSON(t, "DELETE", "http://"+a.httpAddr+"/api/relay/"+string(idBytes), nil); code != http.StatusOK {
		t.Errorf("DELETE /api/relay/ID: %d", code)
	}
	waitFor(t, "the push to stop", func() bool { return !b.live(streamKey{"ingest", secret}) })
	if code := getJSON(t, "DELETE", "http://"+a.httpAddr+"/api/relay/"+string(idBytes), nil); code != http.StatusNotFound {
		t.Errorf("DELETE of a deleted relay: %d; want 404", code)
	}
	form.Set("name", "../x")
	if resp, err := http.PostForm("http://"+a.httpAddr+"/api/relay/push", form); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("POST with a bad name: %v %v; want 400", resp.StatusCode, err)
	}
}

// TestRecordFastPush records a file pushed as fast as the server takes it
// (gms push -speed 0): a recording is not a viewer to be held to 1024
// queued frames, so it gets every frame.
func TestRecordFastPush(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, func(c *config) { c.RecordDir = dir })
	path, sent := synthFLV(t, 5000)
	if err := run(context.Background(), []string{"push", "-speed", "0", path, ts.rtmpURL("fast")}, nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	var list []recordingInfo
	waitFor(t, "the recording to finish", func() bool {
		list = recordings(t, ts)
		return len(list) == 1 && !list[0].Recording
	})
	_, tags := readFLVFile(t, filepath.Join(dir, filepath.FromSlash(list[0].File)))
	if got, want := len(mediaTags(tags)), len(mediaTags(sent)); got != want {
		t.Errorf("recorded %d media tags of the %d pushed", got, want)
	}
}

// TestEdgeKeepsPlayersThroughOriginRestart: the origin's publisher goes
// away and comes back while a player watches on the edge: the player's
// HTTP-FLV response goes on (it does not end with the first publish),
// with timestamps that keep rising.
func TestEdgeKeepsPlayersThroughOriginRestart(t *testing.T) {
	origin := startServer(t, nil)
	edge := startServer(t, func(c *config) { c.Origins = []string{"rtmp://" + origin.rtmpAddr} })
	key := streamKey{"live", "rs"}
	first := longPublish(t, origin.rtmpURL("rs"))
	waitFor(t, "the origin's stream", func() bool { return origin.live(key) })

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", edge.httpURL("rs"), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	fr, err := newFLVReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var last uint32
	media := 0
	readMedia := func(n int) {
		t.Helper()
		for got := 0; got < n; {
			tag, err := fr.next()
			if err != nil {
				t.Fatalf("edge player after %d media tags: %v", media, err)
			}
			if tag.Type != tagAudio && tag.Type != tagVideo {
				continue
			}
			if tag.Time+1000 < last {
				t.Errorf("timestamp went back from %d to %d", last, tag.Time)
			}
			last = max(last, tag.Time)
			got++
			media++
		}
	}
	readMedia(50)
	first.Process.Kill()
	first.Wait()
	waitFor(t, "the origin's publisher to go", func() bool { return !origin.live(key) })
	longPublish(t, origin.rtmpURL("rs"))
	readMedia(100) // the same response, after the origin's restart
}
