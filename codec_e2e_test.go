package main

// End to end with modern codecs: a Go publisher wraps the real clips of
// testdata/codec (see codec_test.go) in Enhanced RTMP tags, as ffmpeg 6+,
// OBS and MediaMTX send them (ffmpeg 5.1 cannot), publishes to gms over
// RTMP, and RTMP, HTTP-FLV and WS-FLV players that came before and after
// the publisher compare what they got with what was sent.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// sentTag is one message the test publisher sends.
type sentTag struct {
	typ    uint8
	ts     uint32
	data   []byte
	header bool // a header a joiner must get
	key    bool // a frame a joiner can start at
}

// opusHead is an OpusHead (RFC 7845 §5.1): version 1, 2 channels,
// pre-skip 312, 48 kHz, gain 0, mapping family 0.
var opusHead = joinBytes([]byte("OpusHead"), bs(1, 2, 0x38, 0x01, 0x80, 0xBB, 0, 0, 0, 0, 0))

// ertmpSession builds a publish: a SequenceStart (video, then audio Opus),
// then each frame with an Opus packet before it, 40 ms apart. frame wraps
// frame i of the clip in a video tag body; marked says whether keyframes
// carry frame type 1.
func ertmpSession(c testClipFrames, header []byte, frame func(i int, data []byte, key bool) []byte) []sentTag {
	out := []sentTag{
		{typ: msgVideo, data: header, header: true},
		{typ: msgAudio, data: joinBytes(bs(soundExHeader<<4|exSequenceStart), []byte("Opus"), opusHead), header: true},
	}
	for i, f := range c.frames {
		ts := uint32(i * 40)
		out = append(out, sentTag{typ: msgAudio, ts: ts, data: joinBytes(bs(soundExHeader<<4|exCodedFrames), []byte("Opus"), bs(0xFC, byte(i), 0xAA))})
		key := isKeyIndex(c.keys, i)
		out = append(out, sentTag{typ: msgVideo, ts: ts, data: frame(i, f, key), key: key})
	}
	return out
}

// exFrameBody is an Enhanced RTMP CodedFrames (with a CTS of 0) for
// avc1/hvc1, CodedFramesX for the others.
func exFrameBody(frameType byte, fourCC string, data []byte) []byte {
	if fourCC == "avc1" || fourCC == "hvc1" {
		return exVideo(frameType, exCodedFrames, fourCC, append([]byte{0, 0, 0}, data...)...)
	}
	return exVideo(frameType, exCodedFramesX, fourCC, data...)
}

// TestModernCodecsEndToEnd: HEVC, AV1, VP9 and H.264 in Enhanced RTMP
// tags, with keyframes marked and with frame type 0 everywhere; H.264 and
// HEVC (id 12) in legacy tags that flag every frame inter; a multitrack
// stream (HEVC track 0, AV1 track 1). Players that waited for the
// publisher get every tag as sent; players that join after 8 frames get
// the headers stamped at the last keyframe's time, then everything from
// that keyframe on, byte for byte, on RTMP, HTTP-FLV and WS-FLV.
func TestModernCodecsEndToEnd(t *testing.T) {
	ts := startServer(t, nil)
	clips := map[string]testClipFrames{}
	for _, c := range codecClips(t) {
		clips[c.fourCC] = c
	}
	type variant struct {
		name string
		tags []sentTag
		api  videoParams // what the API says of the video: codec, its string, size
	}
	apiOf := map[string]videoParams{
		"hvc1": {Codec: "HEVC", CodecString: "hvc1.1.6.L30.90", Width: 64, Height: 64},
		"av01": {Codec: "AV1", CodecString: "av01.0.00M.08", Width: 64, Height: 64},
		"vp09": {Codec: "VP9", CodecString: "vp09.00.10.08", Width: 64, Height: 64},
		"avc1": {Codec: "H264", CodecString: "avc1.4d400a", Width: 64, Height: 64},
	}
	var variants []variant
	for _, cc := range []string{"hvc1", "av01", "vp09", "avc1"} {
		c := clips[cc]
		for _, marked := range []bool{true, false} {
			frameType := func(key bool) byte {
				switch {
				case !marked:
					return 0
				case key:
					return 1
				}
				return 2
			}
			name := fmt.Sprintf("%s-marked", cc)
			if !marked {
				name = fmt.Sprintf("%s-unmarked", cc)
			}
			variants = append(variants, variant{name, ertmpSession(c, exVideo(frameType(true), exSequenceStart, cc, c.config...),
				func(i int, data []byte, key bool) []byte { return exFrameBody(frameType(key), cc, data) }), apiOf[cc]})
		}
	}
	for _, legacy := range []struct {
		cc    string
		codec byte
	}{{"avc1", codecAVC}, {"hvc1", codecHEVCLegacy}} {
		c := clips[legacy.cc]
		variants = append(variants, variant{"legacy-" + legacy.cc + "-flagged-inter", ertmpSession(c,
			joinBytes(bs(0x10|legacy.codec, 0, 0, 0, 0), c.config),
			func(i int, data []byte, key bool) []byte { return joinBytes(bs(0x20|legacy.codec, 1, 0, 0, 0), data) }), apiOf[legacy.cc]})
	}
	variants[len(variants)-1].api.Codec = "H265" // NMS v2's name for legacy id 12
	variants = append(variants, variant{"multitrack", multitrackSession(clips["hvc1"], clips["av01"]), apiOf["hvc1"]})

	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			checkCodecSession(t, ts, "codec-"+v.name, v.tags, func(name string) {
				var api apiStreamsReply
				getJSON(t, "GET", "http://"+ts.httpAddr+"/api/streams", &api)
				p := api["live"][name].Publisher
				if p == nil || p.Video == nil || p.Audio == nil {
					t.Fatalf("API: publisher %+v", p)
				}
				if got := (videoParams{Codec: p.Video.Codec, CodecString: p.Video.CodecString, Width: p.Video.Width, Height: p.Video.Height}); got != v.api {
					t.Errorf("API video %+v; want %+v", got, v.api)
				}
				if want := (audioParams{Codec: "Opus", CodecString: "opus", SampleRate: 48000, Channels: 2}); *p.Audio != want {
					t.Errorf("API audio %+v; want %+v", *p.Audio, want)
				}
				if v.name == "multitrack" {
					want := []trackParams{{Type: "video", ID: 1, Video: &videoParams{Codec: "AV1", CodecString: "av01.0.00M.08", Width: 64, Height: 64, Profile: "Main", Level: 2}}}
					if len(p.Tracks) != 1 || p.Tracks[0].Video == nil || *p.Tracks[0].Video != *want[0].Video || p.Tracks[0].ID != 1 {
						t.Errorf("API tracks %+v; want %+v", p.Tracks, want)
					}
				}
				resp, err := http.Get("http://" + ts.httpAddr + "/metrics")
				if err != nil {
					t.Fatal(err)
				}
				metrics, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if line := fmt.Sprintf("gms_streams_by_codec{type=\"video\",codec=%q} 1", v.api.Codec); !strings.Contains(string(metrics), line) {
					t.Errorf("/metrics has no line %s", line)
				}
			})
		})
	}
}

// multitrackSession sends HEVC as track 0 in plain Enhanced RTMP messages
// (frame type 0) and AV1 as track 1 in Multitrack OneTrack messages, as
// OBS's multitrack video does: GOPs start at track 0's keyframes.
func multitrackSession(hevc, av1 testClipFrames) []sentTag {
	track1 := func(packetType byte, data []byte) []byte {
		return joinBytes(bs(0x80|exVideoMultitrack, multitrackOneTrack<<4|packetType), []byte("av01"), bs(1), data)
	}
	tags := ertmpSession(hevc, exVideo(0, exSequenceStart, "hvc1", hevc.config...),
		func(i int, data []byte, key bool) []byte { return exFrameBody(0, "hvc1", data) })
	out := append([]sentTag{}, tags[:2]...)
	out = append(out, sentTag{typ: msgVideo, data: track1(exSequenceStart, av1.config), header: true})
	for i, tag := range tags[2:] {
		out = append(out, tag)
		if tag.typ == msgVideo {
			n := i / 2
			out = append(out, sentTag{typ: msgVideo, ts: tag.ts, data: track1(exCodedFramesX, av1.frames[n])})
		}
	}
	return out
}

// checkCodecSession publishes tags as name with three players waiting and
// three joining after the eighth video frame, and checks what each got.
func checkCodecSession(t *testing.T, ts *testServer, name string, tags []sentTag, checkAPI func(name string)) {
	key := streamKey{"live", name}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type result struct {
		proto string
		late  bool
		flv   []byte   // HTTP-FLV and WS-FLV: the stream
		tags  []flvTag // RTMP: the media messages
		err   error
	}
	var wg sync.WaitGroup
	results := make(chan result, 6)
	startPlayers := func(late bool) {
		wg.Add(3)
		go func() {
			defer wg.Done()
			_, data, err := httpGetFLV(ctx, ts.httpURL(name))
			results <- result{"http-flv", late, data, nil, err}
		}()
		go func() {
			defer wg.Done()
			ws, err := dialWS(ctx, ts.httpAddr, "/live/"+name+".flv")
			if err != nil {
				results <- result{"ws-flv", late, nil, nil, err}
				return
			}
			defer ws.nc.Close()
			data, err := ws.readFLV()
			if err == io.EOF {
				err = nil
			}
			results <- result{"ws-flv", late, data, nil, err}
		}()
		play := playWaiting(t, ts, name)
		go func() {
			defer wg.Done()
			got, err := rtmpMediaUntilUnpublish(play)
			results <- result{"rtmp", late, nil, got, err}
		}()
	}
	startPlayers(false)
	waitFor(t, "the waiting players", func() bool { return ts.viewers(key) == 3 })

	pub := dialRTMP(t, ts.rtmpAddr, false)
	pub.connect("live")
	sid := pub.createStream()
	pub.command(sid, "publish", nil, name, "live")
	if code := pub.expectStatus(); code != "NetStream.Publish.Start" {
		t.Fatalf("publish: %s", code)
	}
	send := func(tag sentTag) {
		csid := uint32(csidVideo)
		if tag.typ == msgAudio {
			csid = csidAudio
		}
		pub.send(csid, tag.typ, sid, tag.ts, tag.data)
	}
	// The late players join after the eighth video frame.
	joinAt, videos, media := 0, 0, uint64(0)
	for i, tag := range tags {
		if tag.typ == msgVideo && !tag.header {
			videos++
		}
		if !tag.header {
			media++
		}
		if videos == 8 {
			joinAt = i + 1
			break
		}
	}
	for _, tag := range tags[:joinAt] {
		send(tag)
	}
	waitForFramesIn(t, ts, name, media)
	startPlayers(true)
	waitFor(t, "the late players", func() bool { return ts.viewers(key) == 6 })
	checkAPI(name)
	for _, tag := range tags[joinAt:] {
		send(tag)
	}
	waitForFramesIn(t, ts, name, media+uint64(len(tags)-joinAt))
	pub.command(sid, "deleteStream", nil, float64(sid))
	wg.Wait()
	close(results)

	// The waiting players get every tag as it was sent.
	var early []flvTag
	for _, tag := range tags {
		early = append(early, flvTag{Type: tag.typ, Time: tag.ts, Data: tag.data})
	}
	// The late ones: the headers, stamped with the time of the last
	// keyframe before they joined, then everything from that keyframe on.
	lastKey := -1
	for i, tag := range tags[:joinAt] {
		if tag.key {
			lastKey = i
		}
	}
	if lastKey < 0 {
		t.Fatal("the test session has no keyframe before the join")
	}
	var late []flvTag
	for _, tag := range tags {
		if tag.header {
			late = append(late, flvTag{Type: tag.typ, Time: tags[lastKey].ts, Data: tag.data})
		}
	}
	for _, tag := range tags[lastKey:] {
		if !tag.header {
			late = append(late, flvTag{Type: tag.typ, Time: tag.ts, Data: tag.data})
		}
	}
	seen := map[string]int{}
	for r := range results {
		if r.err != nil {
			t.Errorf("%s player: %v", r.proto, r.err)
			continue
		}
		if r.proto != "rtmp" {
			r.tags = flvMediaTags(t, r.flv)
		}
		want, which := early, "waiting"
		if seen[r.proto]++; r.late {
			want, which = late, "late"
		}
		compareSentTags(t, which+" "+r.proto, r.tags, want)
	}
	for _, proto := range []string{"rtmp", "http-flv", "ws-flv"} {
		if seen[proto] != 2 {
			t.Errorf("%d %s players reported; want 2", seen[proto], proto)
		}
	}
}

// compareSentTags checks got against want: type, time and bytes.
func compareSentTags(t *testing.T, who string, got, want []flvTag) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s player got %d media tags; want %d", who, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		if g.Type != w.Type || g.Time != w.Time || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("%s player, tag %d: type %d at %d, %d bytes % x...; want type %d at %d, %d bytes % x...", who, i,
				g.Type, g.Time, len(g.Data), g.Data[:min(len(g.Data), 8)], w.Type, w.Time, len(w.Data), w.Data[:min(len(w.Data), 8)])
			return
		}
	}
}

// flvMediaTags parses an FLV stream and keeps its audio and video tags.
func flvMediaTags(t *testing.T, data []byte) []flvTag {
	if len(data) == 0 {
		return nil
	}
	_, tags := parseFLV(t, data)
	return mediaTags(tags)
}

// rtmpMediaUntilUnpublish reads an RTMP player's audio and video messages
// until NetStream.Play.UnpublishNotify.
func rtmpMediaUntilUnpublish(c *rtmpClient) ([]flvTag, error) {
	var got []flvTag
	for {
		msg, err := c.read()
		if err != nil {
			return got, err
		}
		switch msg.Type {
		case msgAudio, msgVideo:
			got = append(got, flvTag{Type: msg.Type, Time: msg.Time, Data: msg.Payload})
		case msgCommandAMF0:
			cmd, err := decodeCommand(msg.Payload)
			if err != nil {
				return got, err
			}
			if info, _ := firstArg(cmd).(amfObject); cmd.Name == "onStatus" && info.String("code") == "NetStream.Play.UnpublishNotify" {
				return got, nil
			}
		case msgUserControl:
			if len(msg.Payload) >= 2 && binary.BigEndian.Uint16(msg.Payload) == ucStreamEOF {
				return got, nil
			}
		}
	}
}

func firstArg(cmd rtmpCommand) any {
	if len(cmd.Args) == 0 {
		return nil
	}
	return cmd.Args[0]
}

// TestUnknownCodecsPassThrough: an unknown FourCC, an unknown packet type
// and a malformed multitrack message are relayed as they came (a player
// that waited gets them all), and each is logged once per stream, not
// once per message.
func TestUnknownCodecsPassThrough(t *testing.T) {
	ts := startServer(t, nil)
	name := "unknown-codecs"
	play := playWaiting(t, ts, name)
	pub := dialRTMP(t, ts.rtmpAddr, false)
	pub.connect("live")
	sid := pub.createStream()
	pub.command(sid, "publish", nil, name, "live")
	if code := pub.expectStatus(); code != "NetStream.Publish.Start" {
		t.Fatalf("publish: %s", code)
	}
	var sent []flvTag
	for i := range 3 {
		ts := uint32(i * 40)
		for _, tag := range []flvTag{
			{Type: msgVideo, Data: exVideo(1, exCodedFramesX, "zzzz", byte(i))},      // unknown video FourCC
			{Type: msgVideo, Data: exVideo(1, 9, "hvc1", byte(i))},                   // unknown packet type
			{Type: msgAudio, Data: joinBytes(bs(0x91), []byte("qqqq"), bs(byte(i)))}, // unknown audio FourCC
			{Type: msgVideo, Data: joinBytes(bs(0x80|exVideoMultitrack, 1<<4|exCodedFramesX), // a track longer than the message
				[]byte("av01"), bs(0, 0, 0, 9, byte(i)))},
		} {
			tag.Time = ts
			csid := uint32(csidVideo)
			if tag.Type == msgAudio {
				csid = csidAudio
			}
			pub.send(csid, tag.Type, sid, tag.Time, tag.Data)
			sent = append(sent, tag)
		}
	}
	waitForFramesIn(t, ts, name, uint64(len(sent)))
	pub.command(sid, "deleteStream", nil, float64(sid))
	got, err := rtmpMediaUntilUnpublish(play)
	if err != nil {
		t.Fatal(err)
	}
	compareSentTags(t, "waiting rtmp", got, sent)
	for _, line := range []string{"unknown video FourCC", "unknown video packet type", "unknown audio FourCC", "unreadable video tag header"} {
		if n := strings.Count(ts.logs.String(), line); n != 1 {
			t.Errorf("log has %q %d times; want once\n%s", line, n, ts.logs.String())
		}
	}
}
