package main

// gms push and gms pull end to end: against a gms test server, with
// ffprobe and ffmpeg judging what arrives, and synthetic FLV files for
// the cases that need no real codec (errors, reconnects, TLS).

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runCmd runs `gms ARGS...` as main would, and returns its error and
// what it printed.
func runCmd(ctx context.Context, args ...string) (string, error) {
	var out syncBuffer
	err := run(ctx, args, nil, &out)
	return out.String(), err
}

// synthFLV writes an FLV of n video frames at 25 fps (a keyframe every
// 10) and audio every 23 ms, with metadata and sequence headers; the
// frames carry their index so that a test can tell them apart.
func synthFLV(t testing.TB, n int) (string, []flvTag) {
	t.Helper()
	tags := []flvTag{
		{tagScript, 0, amf0AppendAll(nil, "onMetaData", amfECMAArray{{"videocodecid", 7.0}, {"audiocodecid", 10.0}})},
		{tagAudio, 0, []byte{0xAF, 0, 0x12, 0x10}},
		{tagVideo, 0, []byte{0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F, 0xFF, 0xE1, 0, 0}},
	}
	audio := 0
	for i := range n {
		ts := uint32(i * 40)
		// One NAL unit: a non-IDR slice (type 1), or an IDR (type 5) at
		// each keyframe, as the bitstream would say.
		first, nal := byte(0x27), []byte{0x41}
		if i%10 == 0 {
			first, nal = 0x17, []byte{0x65}
		}
		nal = append(nal, bytes.Repeat([]byte{byte(i)}, 200+i%7*100)...)
		body := binary.BigEndian.AppendUint32([]byte{first, 1, 0, 0, 0}, uint32(len(nal)))
		tags = append(tags, flvTag{tagVideo, ts, append(body, nal...)})
		for ; audio*23 <= int(ts); audio++ {
			tags = append(tags, flvTag{tagAudio, uint32(audio * 23), []byte{0xAF, 1, byte(audio), byte(audio >> 8)}})
		}
	}
	b := appendFLVHeader(nil, true, true)
	for _, tag := range tags {
		b = appendFLVTag(b, tag.Type, tag.Time, tag.Data)
	}
	path := filepath.Join(t.TempDir(), "synth.flv")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, tags
}

// probeURL is ffprobePackets for a goroutine: it returns its error.
func probeURL(url string) ([]probePacket, error) {
	out, err := exec.Command("ffprobe", "-v", "error", "-show_packets", "-show_entries",
		"packet=codec_type,dts,pts,size,flags", "-of", "json", url).Output()
	if err != nil {
		return nil, err
	}
	var res struct{ Packets []probePacket }
	err = json.Unmarshal(out, &res)
	return res.Packets, err
}

// TestPushFLV pushes ffmpeg's clip as fast as the server takes it and
// paced at twice real time, while ffprobe plays it over RTMP: ffprobe must
// see the clip's packets (count, sizes, timestamps, keyframe flags).
func TestPushFLV(t *testing.T) {
	clip := testClip(t)
	want := ffprobePackets(t, clip)
	ts := startServer(t, nil)
	for _, tc := range []struct {
		name  string
		speed string
	}{{"fast", "0"}, {"paced", "2"}} {
		t.Run(tc.name, func(t *testing.T) {
			url := ts.rtmpURL("push" + tc.name)
			type result struct {
				p   []probePacket
				err error
			}
			probed := make(chan result, 1)
			go func() { p, err := probeURL(url); probed <- result{p, err} }()
			waitFor(t, "ffprobe", func() bool { return ts.viewers(streamKey{"live", "push" + tc.name}) == 1 })
			start := time.Now()
			out, err := runCmd(context.Background(), "push", "-speed", tc.speed, clip, url)
			took := time.Since(start)
			if err != nil {
				t.Fatalf("push: %v\n%s", err, out)
			}
			t.Logf("push -speed %s took %v:\n%s", tc.speed, took.Round(time.Millisecond), out)
			if !strings.Contains(out, "push: 100 frames") {
				t.Errorf("summary: want 100 frames:\n%s", out)
			}
			// Paced at 2x, the 4 s clip cannot take less than 2 s (a lower bound, never a limit).
			if tc.speed == "2" && took < 1900*time.Millisecond {
				t.Errorf("paced push took %v; want at least 2 s", took)
			}
			r := <-probed
			if r.err != nil {
				t.Fatalf("ffprobe: %v", r.err)
			}
			comparePackets(t, "push "+tc.name, r.p, want)
		})
	}
}

// TestPull pulls over RTMP and HTTP-FLV while ffmpeg's clip is pushed:
// each file holds the clip's media tags exactly, starts with metadata and
// the sequence headers, has both header flags, and ffmpeg decodes it
// without an error. With -t 2s the file holds the first two seconds.
func TestPull(t *testing.T) {
	clip := testClip(t)
	_, want := readFLVFile(t, clip)
	wantMedia := withoutAVCEnd(mediaTags(want))
	ts := startServer(t, nil)
	dir := t.TempDir()
	key := streamKey{"live", "pull"}
	type pulled struct {
		out string
		err error
	}
	pulls := map[string]chan pulled{}
	for name, args := range map[string][]string{
		"rtmp":  {ts.rtmpURL("pull"), filepath.Join(dir, "rtmp.flv")},
		"http":  {ts.httpURL("pull"), filepath.Join(dir, "http.flv")},
		"short": {"-t", "2s", ts.rtmpURL("pull"), filepath.Join(dir, "short.flv")},
	} {
		pulls[name] = make(chan pulled, 1)
		go func() {
			out, err := runCmd(context.Background(), append([]string{"pull"}, args...)...)
			pulls[name] <- pulled{out, err}
		}()
	}
	waitFor(t, "three pullers", func() bool { return ts.viewers(key) == 3 })
	if out, err := runCmd(context.Background(), "push", "-speed", "4", clip, ts.rtmpURL("pull")); err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	for _, name := range []string{"rtmp", "http", "short"} {
		r := <-pulls[name]
		if r.err != nil {
			t.Errorf("pull %s: %v\n%s", name, r.err, r.out)
			continue
		}
		t.Logf("pull %s:\n%s", name, r.out)
		path := filepath.Join(dir, name+".flv")
		flags, got := readFLVFile(t, path)
		if flags != [2]bool{true, true} {
			t.Errorf("pull %s: header flags audio, video = %v", name, flags)
		}
		wantStart := slices.Clone(want[:3])
		wantStart[0].Data = liveMetadata(wantStart[0].Data) // push sends a live stream's: duration 0, no filesize
		if len(got) < 3 || !slices.EqualFunc(got[:3], wantStart, sameTag) {
			t.Errorf("pull %s: the file does not start with the clip's metadata and sequence headers", name)
		}
		gotMedia := withoutAVCEnd(mediaTags(got))
		if name == "short" {
			n := 0
			for _, tag := range gotMedia {
				if tag.Type == tagVideo && tag.Time >= 2000 {
					t.Errorf("pull -t 2s: a video frame at %d ms", tag.Time)
					break
				}
				n++
			}
			compareTags(t, "pull "+name, gotMedia, wantMedia[:len(gotMedia)])
			if len(gotMedia) < 50 {
				t.Errorf("pull -t 2s: %d tags", len(gotMedia))
			}
			continue
		}
		compareTags(t, "pull "+name, gotMedia, wantMedia)
		decodesCleanly(t, "pull "+name, path)
	}
}

func sameTag(a, b flvTag) bool {
	return a.Type == b.Type && a.Time == b.Time && bytes.Equal(a.Data, b.Data)
}

// TestPushErrors: a file push cannot read, a server that is not there, a
// publish the server refuses: a clear error (run returns it; main exits 1).
func TestPushErrors(t *testing.T) {
	ts := startServer(t, nil)
	signed := startServer(t, func(c *config) { c.Secret, c.PublishAuth = "S3CRET", true })
	path, tags := synthFLV(t, 50)
	good, _ := os.ReadFile(path)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		return p
	}
	// Offsets of the tags, to corrupt one.
	offsets := []int{13}
	for _, tag := range tags {
		offsets = append(offsets, offsets[len(offsets)-1]+11+len(tag.Data)+4)
	}
	corrupt := bytes.Clone(good)
	binary.BigEndian.PutUint32(corrupt[offsets[20]-4:], 12345) // tag 19's PreviousTagSize
	badType := bytes.Clone(good)
	badType[offsets[7]] = 0x1F
	huge := bytes.Clone(good)
	copy(huge[offsets[5]+1:], []byte{0xFF, 0xFF, 0xFF})

	// A port nobody listens on.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "rtmp://" + ln.Addr().String() + "/live/x"
	ln.Close()

	// A publisher already on the name.
	_, _, busy := rtmpTryPublish(t, ts.rtmpAddr, "busy")
	defer busy.nc.Close()

	for _, tc := range []struct {
		name, file, url, want string
	}{
		{"truncated", write("trunc.flv", good[:offsets[30]+5]), ts.rtmpURL("e1"), "trunc.flv: FLV tag 30 at byte " + strconv.Itoa(offsets[30]) + ": truncated"},
		{"bad PreviousTagSize", write("corrupt.flv", corrupt), ts.rtmpURL("e2"), "FLV tag 19 at byte " + strconv.Itoa(offsets[19]) + ": flv: bad tag: PreviousTagSize 12345"},
		{"bad tag type", write("type.flv", badType), ts.rtmpURL("e3"), "FLV tag 7 at byte " + strconv.Itoa(offsets[7]) + ": flv: bad tag: unknown TagType 31"},
		{"huge tag", write("huge.flv", huge), ts.rtmpURL("e4"), "FLV tag 5 at byte " + strconv.Itoa(offsets[5]) + ": "},
		{"not FLV", write("notes.txt", []byte("hello")), ts.rtmpURL("e5"), "not an FLV, MP4 or MPEG-TS file"},
		{"FLV signature", write("x.flv", []byte("FLX\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00")), ts.rtmpURL("e6"), "flv: not an FLV stream"},
		{"missing file", filepath.Join(dir, "nope.flv"), ts.rtmpURL("e7"), "no such file or directory"},
		{"MP4 without moov", write("cut.mp4", []byte("\x00\x00\x00\x10ftypisom\x00\x00\x00\x00\x00\x00\x00\x08mdat")), ts.rtmpURL("e8"), "cut.mp4: mp4: no moov box"},
		{"TS without PMT", write("junk.ts", append(bytes.Repeat([]byte{0x47, 0x1F, 0xFF, 0x10}, 1), make([]byte, 184*1)...)), ts.rtmpURL("e9"), "junk.ts: ts: "},
		{"no server", path, closed, "connection refused"},
		{"bad URL", path, "http://" + ts.rtmpAddr + "/live/x", "want rtmp:// or rtmps://"},
		{"busy name", path, ts.rtmpURL("busy"), "server refused publish: NetStream.Publish.BadName"},
		{"bad sign", path, "rtmp://" + signed.rtmpAddr + "/live/cam?sign=1-abc", "server refused publish: NetStream.Publish.Unauthorized"},
		{"bad app", path, "rtmp://" + ts.rtmpAddr + "/no.app/x", "server refused connect to app no.app: NetConnection.Connect.Rejected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runCmd(context.Background(), "push", "-speed", "0", "-reconnect", "0", tc.file, tc.url)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("push: %v; want an error with %q\n%s", err, tc.want, out)
			}
		})
	}
	// A file read to its end before the corrupt tag reached the server:
	// the publish ended cleanly all the same (FCUnpublish, deleteStream).
	waitFor(t, "the truncated file's publish to end", func() bool { return !ts.live(streamKey{"live", "e1"}) })
	// With the right sign the same server takes it.
	url := "rtmp://" + signed.rtmpAddr + "/live/cam?" + sign(streamKey{"live", "cam"}, time.Now().Add(time.Hour).Unix(), "S3CRET")
	if out, err := runCmd(context.Background(), "push", "-speed", "0", path, url); err != nil {
		t.Errorf("push with a valid sign: %v\n%s", err, out)
	}
}

// TestPullErrors: a play the server refuses, over RTMP and HTTP, a stream
// that never comes, a server that is not there: a clear error and no file.
func TestPullErrors(t *testing.T) {
	ts := startServer(t, func(c *config) { c.Secret, c.PlayAuth, c.PlayWait = "S3CRET", true, 300*time.Millisecond })
	open := startServer(t, func(c *config) { c.PlayWait = 300 * time.Millisecond })
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	for _, tc := range []struct{ name, url, want string }{
		{"unsigned rtmp", ts.rtmpURL("cam"), "server refused play: NetStream.Play.Unauthorized"},
		{"unsigned http", ts.httpURL("cam") + "?sign=1-bad", "answered 403 Forbidden"},
		{"nobody publishes", "rtmp://" + open.rtmpAddr + "/live/none", "the server ended the stream: NetStream.Play.StreamNotFound"},
		{"nobody publishes, http", open.httpURL("none"), "the stream ended before any media arrived"},
		{"no server", "rtmp://" + closed + "/live/x", "connection refused"},
		{"no server, http", "http://me:1-bad@" + closed + "/live/x.flv?key=1-bad", "connection refused"},
		{"bad scheme", "ftp://" + closed + "/live/x", "want rtmp://, rtmps://, http:// or https://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, "out.flv")
			out, err := runCmd(context.Background(), "pull", tc.url, file)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("pull: %v; want an error with %q\n%s", err, tc.want, out)
			}
			if strings.Contains(err.Error(), "1-bad") {
				t.Errorf("the error shows the sign: %v", err)
			}
			if _, err := os.Stat(file); err == nil {
				t.Errorf("a failed pull left %s", file)
			}
		})
	}
}

// TestPushReconnect stops the server under a looping push and starts a
// new one on the same port: the pusher reconnects and publishes again,
// starting at a keyframe; a cancel (Ctrl-C) then ends the publish
// cleanly.
func TestPushReconnect(t *testing.T) {
	path, _ := synthFLV(t, 50)
	first := startServer(t, nil)
	addr := first.rtmpAddr
	key := streamKey{"live", "re"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"push", "-loop", "0", path, "rtmp://" + addr + "/live/re"}, nil, &out)
	}()
	waitFor(t, "the first server's publisher", func() bool { return first.live(key) })
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	second := startServer(t, func(c *config) { c.RTMPAddr = addr })
	// A player waiting on the second server sees the stream start.
	player, err := dialRTMPClient(context.Background(), "rtmp://"+addr+"/live/re", false, rtmpClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer player.close()
	if err := player.play(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the pusher on the second server", func() bool { return second.live(key) })
	var firstVideo flvTag
	for firstVideo.Data == nil {
		tag, err := player.next()
		if err != nil {
			t.Fatalf("play: %v\n%s", err, out.String())
		}
		if header, _ := videoInfo(tag.Data); tag.Type == tagVideo && !header {
			firstVideo = flvTag{tag.Type, tag.Time, bytes.Clone(tag.Data)}
		}
	}
	if _, key := videoInfo(firstVideo.Data); !key {
		t.Errorf("after the reconnect the first video frame is not a keyframe: %x", firstVideo.Data[:min(9, len(firstVideo.Data))])
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("push after cancel: %v", err)
	}
	log := out.String()
	for _, want := range []string{"connection lost; reconnecting", "reconnected: resuming at the next keyframe", "1 reconnects"} {
		if !strings.Contains(log, want) {
			t.Errorf("push output lacks %q:\n%s", want, log)
		}
	}
	waitFor(t, "the unpublish", func() bool { return strings.Contains(second.logs.String(), "msg=unpublish") })
}

// TestPushLoop sends a file three times: a player gets every frame three
// times, the timestamps going on one frame after the last, and the
// metadata and sequence headers once.
func TestPushLoop(t *testing.T) {
	path, tags := synthFLV(t, 50)
	ts := startServer(t, nil)
	url := ts.rtmpURL("loop")
	file, pulled := startPull(t, ts, "loop")
	out, err := runCmd(context.Background(), "push", "-speed", "0", "-loop", "3", path, url)
	if err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	if !strings.Contains(out, "push: 150 frames") {
		t.Errorf("summary: want 150 frames:\n%s", out)
	}
	if err := <-pulled; err != nil {
		t.Fatal(err)
	}
	var want []flvTag
	for pass := range 3 {
		for _, tag := range tags {
			if pass > 0 && (tag.Type == tagScript || audioIsHeader(tag.Data)) {
				continue
			}
			if header, _ := videoInfo(tag.Data); pass > 0 && tag.Type == tagVideo && header {
				continue
			}
			tag.Time += uint32(pass * 2000) // 50 frames of 40 ms
			want = append(want, tag)
		}
	}
	_, got := readFLVFile(t, file)
	compareTags(t, "loop", got, want)
}

// TestPushPullTLS pushes to rtmps:// and pulls from it (and from
// https://), the certificate unchecked with -insecure.
func TestPushPullTLS(t *testing.T) {
	cert, key := selfSignedCert(t)
	ts := startServer(t, func(c *config) {
		c.RTMPSAddr, c.HTTPSAddr, c.TLSCert, c.TLSKey = "127.0.0.1:0", "127.0.0.1:0", cert, key
	})
	path, tags := synthFLV(t, 30)
	rtmps := "rtmps://" + ts.rtmpsLn.Addr().String() + "/live/tls"
	https := "https://" + ts.httpsLn.Addr().String() + "/live/tls.flv"
	dir := t.TempDir()
	errs := make(chan error, 2)
	for _, src := range []string{rtmps, https} {
		file := filepath.Join(dir, strings.SplitN(src, ":", 2)[0]+".flv")
		go func() {
			out, err := runCmd(context.Background(), "pull", "-insecure", src, file)
			if err != nil {
				err = errors.New(err.Error() + "\n" + out)
			}
			errs <- err
		}()
	}
	waitFor(t, "two pullers", func() bool { return ts.viewers(streamKey{"live", "tls"}) == 2 })
	// Without -insecure the certificate is refused.
	if _, err := runCmd(context.Background(), "push", path, rtmps); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("push to a self-signed rtmps server: %v; want a certificate error", err)
	}
	if out, err := runCmd(context.Background(), "push", "-insecure", "-speed", "0", path, rtmps); err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("pull: %v", err)
		}
	}
	for _, name := range []string{"rtmps", "https"} {
		_, got := readFLVFile(t, filepath.Join(dir, name+".flv"))
		compareTags(t, name, mediaTags(got), mediaTags(tags))
	}
}

// TestMediaKind picks readers by content first, then by extension.
func TestMediaKind(t *testing.T) {
	ts := make([]byte, 376)
	ts[0], ts[188] = 0x47, 0x47
	for _, tc := range []struct {
		head []byte
		path string
		want string
	}{
		{[]byte("FLV\x01\x05"), "a.mp4", "flv"},
		{[]byte("\x00\x00\x00\x20ftypisom"), "a.flv", "mp4"},
		{[]byte("\x00\x00\x00\x08moof"), "x", "mp4"},
		{ts, "a.bin", "ts"},
		{[]byte("junk"), "A.FLV", "flv"},
		{[]byte("junk"), "a.m2ts", "ts"},
		{[]byte("junk"), "a.txt", ""},
	} {
		if got := mediaKind(tc.head, tc.path); got != tc.want {
			t.Errorf("mediaKind(%q, %s) = %q; want %q", tc.head[:min(8, len(tc.head))], tc.path, got, tc.want)
		}
	}
}

// FuzzFLVFileSource: whatever the file holds, push's reader returns tags
// or an error naming a tag and its offset, never a panic.
func FuzzFLVFileSource(f *testing.F) {
	b := appendFLVHeader(nil, true, true)
	for _, tag := range clipTags() {
		b = appendFLVTag(b, tag.Type, tag.Time, tag.Data)
	}
	f.Add(b)
	f.Add(b[:40])
	f.Fuzz(func(t *testing.T, data []byte) {
		src, err := newFLVFileSource(bytes.NewReader(data), "fuzz.flv")
		if err != nil {
			return
		}
		for range 1000 {
			if _, err := src.next(); err != nil {
				if err != io.EOF && !strings.Contains(err.Error(), "at byte") {
					t.Fatalf("error without an offset: %v", err)
				}
				return
			}
		}
	})
}

// TestPushMP4TS pushes ffmpeg's clip remuxed to MP4 and to MPEG-TS while
// ffprobe plays it: the packets ffprobe sees are the source file's (count,
// keyframe flags, timestamps relative to the first; sizes too for MP4,
// whose samples are already length-prefixed as FLV's are).
func TestPushMP4TS(t *testing.T) {
	clip := testClip(t)
	ts := startServer(t, nil)
	dir := t.TempDir()
	for _, kind := range []string{"mp4", "ts"} {
		t.Run(kind, func(t *testing.T) {
			file := filepath.Join(dir, "clip."+kind)
			if out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-i", clip, "-c", "copy", file).CombinedOutput(); err != nil {
				t.Fatalf("ffmpeg: %v\n%s", err, out)
			}
			url := ts.rtmpURL("push" + kind)
			type result struct {
				p   []probePacket
				err error
			}
			probed := make(chan result, 1)
			go func() { p, err := probeURL(url); probed <- result{p, err} }()
			waitFor(t, "ffprobe", func() bool { return ts.viewers(streamKey{"live", "push" + kind}) == 1 })
			if out, err := runCmd(context.Background(), "push", "-speed", "0", file, url); err != nil {
				t.Fatalf("push: %v\n%s", err, out)
			}
			r := <-probed
			if r.err != nil {
				t.Fatalf("ffprobe: %v", r.err)
			}
			want := ffprobePacketsMS(t, file)
			got := relativeMS(r.p)
			for _, media := range []string{"video", "audio"} {
				g, w := filterPackets(got, media), filterPackets(want, media)
				if len(g) != len(w) {
					t.Errorf("%s: %d %s packets, want %d", kind, len(g), media, len(w))
				}
				for i := range min(len(g), len(w)) {
					if kind == "ts" {
						g[i].Size, w[i].Size = "", "" // Annex B start codes become 4-byte lengths
					}
					if g[i].Flags[:1] != w[i].Flags[:1] || max(g[i].DTS-w[i].DTS, w[i].DTS-g[i].DTS) > 1 || max(g[i].PTS-w[i].PTS, w[i].PTS-g[i].PTS) > 1 || g[i].Size != w[i].Size {
						t.Errorf("%s: %s packet %d = %+v; want %+v", kind, media, i, g[i], w[i])
						break
					}
				}
			}
		})
	}
}

// ffprobePacketsMS lists a file's packets with times in milliseconds
// relative to its first packet.
func ffprobePacketsMS(t testing.TB, input string) []probePacket {
	t.Helper()
	var ps []probePacket
	for _, p := range ffprobeTimed(t, input) {
		ps = append(ps, probePacket{p.CodecType, int64(math.Round(seconds(p.DTS) * 1000)),
			int64(math.Round(seconds(p.PTS) * 1000)), p.Size, p.Flags})
	}
	return relativeMS(ps)
}

// relativeMS shifts packets (FLV times are in ms already) so that the
// first dts is 0.
func relativeMS(ps []probePacket) []probePacket {
	if len(ps) == 0 {
		return ps
	}
	first := ps[0].DTS
	for _, p := range ps {
		first = min(first, p.DTS)
	}
	out := slices.Clone(ps)
	for i := range out {
		out[i].DTS -= first
		out[i].PTS -= first
	}
	return out
}

// lateStartFLV is synthFLV with its frames moved 10 s later and its
// metadata and sequence headers left at 0, as in an FLV cut from a live
// stream or written by ffmpeg -output_ts_offset 10.
func lateStartFLV(t testing.TB, n int) (string, []flvTag) {
	t.Helper()
	path, tags := synthFLV(t, n)
	b := appendFLVHeader(nil, true, true)
	for i := range tags {
		if i >= 3 {
			tags[i].Time += 10000
		}
		b = appendFLVTag(b, tags[i].Type, tags[i].Time, tags[i].Data)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, tags
}

// TestPushLateStart pushes a file whose frames start at 10 s and whose
// headers sit at 0, twice (-loop 2), while pull records it: the second
// pass follows the first by one frame (not by the 10 s before the first
// frame), the summary counts the media from the first frame, and the
// pulled file's metadata is at 0, where ffprobe takes it for metadata
// (at any other time it shows a "text" data stream).
func TestPushLateStart(t *testing.T) {
	path, tags := lateStartFLV(t, 50)
	ts := startServer(t, nil)
	url := ts.rtmpURL("late")
	file, pulled := startPull(t, ts, "late")
	out, err := runCmd(context.Background(), "push", "-speed", "0", "-loop", "2", path, url)
	if err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	// 100 frames of 40 ms: 3.960 s from the first to the last.
	if !strings.Contains(out, "push: 100 frames") || !strings.Contains(out, "3.960s of media") {
		t.Errorf("summary: want 100 frames and 3.960s of media:\n%s", out)
	}
	if err := <-pulled; err != nil {
		t.Fatal(err)
	}
	_, got := readFLVFile(t, file)
	if len(got) == 0 || got[0].Type != tagScript || got[0].Time != 0 {
		t.Errorf("pulled file: want the metadata first at 0, got %v", got[:min(len(got), 1)])
	}
	var want []flvTag
	for pass := range 2 {
		for _, tag := range mediaTags(tags) {
			if pass > 0 && isHeaderTag(tag) {
				continue
			}
			tag.Time += uint32(pass * 2000)
			want = append(want, tag)
		}
	}
	var gotMedia []flvTag
	for _, tag := range mediaTags(got) {
		if isHeaderTag(tag) {
			tag.Time = 0 // the server stamps a joiner's headers with its first frame's time
			if len(gotMedia) >= 2 {
				continue
			}
		}
		gotMedia = append(gotMedia, tag)
	}
	compareTags(t, "late start", gotMedia, want)
	if _, err := exec.LookPath("ffprobe"); err == nil {
		streams, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0", file).Output()
		if err != nil || strings.Contains(string(streams), "data") || strings.Contains(string(streams), "subtitle") {
			t.Errorf("ffprobe sees streams %q (%v); want only audio and video", streams, err)
		}
	}
}

func isHeaderTag(tag flvTag) bool {
	header, _ := videoInfo(tag.Data)
	return (tag.Type == tagVideo && header) || (tag.Type == tagAudio && audioIsHeader(tag.Data))
}

// TestPushPaceStartsAtFirstFrame: headers at 0 before frames at 10 s
// neither wait nor start the pacing clock; the first frame does.
func TestPushPaceStartsAtFirstFrame(t *testing.T) {
	p := &pusher{opt: pushOptions{speed: 1}, prog: newProgress(io.Discard, "PUSHING")}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // a pace that would sleep returns the context's error instead
	if err := p.pace(ctx, flvTag{Type: tagScript, Time: 0}, true); err != nil {
		t.Fatalf("pace(metadata at 0) = %v; want no wait", err)
	}
	if err := p.pace(ctx, flvTag{Type: tagVideo, Time: 10000}, false); err != nil {
		t.Fatalf("pace(first frame at 10 s) = %v; want no wait", err)
	}
	if p.clockBase != 10000 {
		t.Errorf("pacing clock starts at %d ms; want the first frame's 10000", p.clockBase)
	}
}

// TestLiveMetadata: a file's duration and size do not go out with the
// stream (ffmpeg streams FLV with duration 0 and no filesize); the rest
// of the metadata does, in order, and other data is untouched.
func TestLiveMetadata(t *testing.T) {
	file := amf0AppendAll(nil, "onMetaData", amfECMAArray{{"duration", 6.08}, {"width", 320.0}, {"filesize", 89762.0}, {"encoder", "Lavf59"}})
	got, err := amf0DecodeAll(liveMetadata(file))
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"onMetaData", amfECMAArray{{"duration", 0.0}, {"width", 320.0}, {"encoder", "Lavf59"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("liveMetadata = %#v; want %#v", got, want)
	}
	cue := amf0AppendAll(nil, "onCuePoint", amfObject{{"time", 1.0}})
	if !bytes.Equal(liveMetadata(cue), cue) {
		t.Errorf("onCuePoint changed")
	}
	if junk := []byte{0x02, 0xFF}; !bytes.Equal(liveMetadata(junk), junk) {
		t.Errorf("undecodable data changed")
	}
}

// startPull runs `gms pull` of live/name into a file and waits until it
// plays; pulled gets what the pull returned.
func startPull(t *testing.T, ts *testServer, name string) (file string, pulled <-chan error) {
	t.Helper()
	file = filepath.Join(t.TempDir(), name+".flv")
	done := make(chan error, 1)
	go func() {
		out, err := runCmd(context.Background(), "pull", ts.rtmpURL(name), file)
		if err != nil {
			err = errors.New(err.Error() + "\n" + out)
		}
		done <- err
	}()
	waitFor(t, "the puller", func() bool { return ts.viewers(streamKey{"live", name}) == 1 })
	return file, done
}

// TestPushMetadata: an MP4 or MPEG-TS file, which carries no onMetaData,
// is pushed with one first, its size and codec ids from the sequence
// headers that follow it; the tags after it are the reader's, unchanged.
func TestPushMetadata(t *testing.T) {
	for _, tc := range []struct {
		file  string
		video float64 // videocodecid
	}{
		{"demux-h264-aac.mp4", 7},
		{"demux-h264-aac-frag.mp4", 7},
		{"demux-h264-aac.ts", 7},
		{"demux-h265-aac.ts", float64(binary.BigEndian.Uint32([]byte("hvc1")))},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", tc.file)
			src, closer, err := openMedia(path)
			if err != nil {
				t.Fatal(err)
			}
			defer closer.Close()
			first, err := src.next()
			if err != nil || first.Type != tagScript {
				t.Fatalf("first tag: type %d, %v; want onMetaData", first.Type, err)
			}
			vals, err := amf0DecodeAll(first.Data)
			if err != nil || len(vals) != 2 || vals[0] != "onMetaData" {
				t.Fatalf("first tag %q: %v", first.Data, err)
			}
			meta := vals[1].(amfECMAArray)
			// The reader alone, for what must follow.
			plain, plainCloser, _ := openMedia(path)
			defer plainCloser.Close()
			raw := plain.(*metadataSource).src // nothing read from it yet
			var video, audio []byte
			for n := 0; ; n++ {
				got, err1 := src.next()
				want, err2 := raw.next()
				if err1 == io.EOF && err2 == io.EOF && n > 0 {
					break
				}
				if err1 != nil || err2 != nil || got.Type != want.Type || got.Time != want.Time || !bytes.Equal(got.Data, want.Data) {
					t.Fatalf("after the metadata: %v %v, tag type %d at %d; want type %d at %d", err1, err2, got.Type, got.Time, want.Type, want.Time)
				}
				if header, _ := videoInfo(got.Data); got.Type == tagVideo && header && video == nil {
					video = got.Data
				} else if got.Type == tagAudio && audioIsHeader(got.Data) && audio == nil {
					audio = got.Data
				}
			}
			if video == nil || audio == nil {
				t.Fatal("no video or audio sequence header in the first tags")
			}
			v, a := parseVideoHeader(video), parseAudioHeader(audio)
			want := map[string]any{"duration": 0.0, "width": float64(v.Width), "height": float64(v.Height),
				"videocodecid": tc.video, "audiocodecid": 10.0, "audiosamplerate": float64(a.SampleRate),
				"stereo": a.Channels > 1, "encoder": "gms push"}
			if v.Width == 0 || a.SampleRate == 0 {
				t.Fatalf("the headers give no size or rate: %+v %+v", v, a)
			}
			for key, w := range want {
				if got, ok := meta.Get(key); !ok || got != w {
					t.Errorf("%s = %v; want %v (metadata %v)", key, got, w, meta)
				}
			}
		})
	}
}
