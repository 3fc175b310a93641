package main

// HLS and LL-HLS on live output, from a synthetic publish straight into
// the hub (media times, not wall time, cut segments and parts, so the
// frames go in as fast as the test likes): the rules of
// draft-pantos-hls-rfc8216bis on every playlist, blocking reloads,
// preload hints, delta updates, discontinuities, signed URLs, caching
// headers. hls_ffmpeg_test.go has ffmpeg read the result.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hlsFeeder publishes a synthetic H.264 + AAC stream: video at 25 fps
// with a keyframe every second, AAC frames of 1024 samples at 44.1 kHz.
type hlsFeeder struct {
	t            *testing.T
	ts           *testServer
	p            *publisher
	ms           int64 // media time fed so far
	video, audio int   // frames fed
	gop          int   // video frames a GOP; 0: 25 (1 s)
}

func startHLSFeed(t *testing.T, ts *testServer, key streamKey) *hlsFeeder {
	t.Helper()
	p, err := ts.hub.publish(key, clientInfo{ID: "PUB" + key.Name}, func() uint64 { return 0 }, func() {})
	if err != nil {
		t.Fatal(err)
	}
	p.ingest(msgDataAMF0, 0, amf0AppendAll(nil, "@setDataFrame", "onMetaData",
		amfECMAArray{{"videocodecid", 7.0}, {"audiocodecid", 10.0}, {"width", 320.0}, {"height", 240.0}}))
	p.ingest(msgVideo, 0, joinBytes(bs(0x17, 0, 0, 0, 0), testAVCC))
	p.ingest(msgAudio, 0, joinBytes(bs(0xAF, 0), testASC))
	return &hlsFeeder{t: t, ts: ts, p: p}
}

// feedTo sends the frames before media time until (ms), in time order,
// half a second at a time, each time waiting for the HLS muxer (if one
// runs) to take them: as fast as it goes, but never so far ahead that the
// hub would drop frames for it, as a publisher in real time never is.
func (fd *hlsFeeder) feedTo(until int64) {
	for ms := fd.ms; ms < until; {
		ms = min(ms+500, until)
		fd.feedUpTo(ms)
		fd.p.hub.sync()
		hs := fd.ts.web.hls
		hs.mu.Lock()
		st := hs.streams[fd.p.key]
		hs.mu.Unlock()
		if st == nil {
			continue
		}
		waitFor(fd.t, "the HLS muxer to mux the frames", func() bool { return st.sub.queueLen() == 0 && st.sub.queued.Load() == 0 })
	}
}

func (fd *hlsFeeder) feedUpTo(until int64) {
	for {
		vt := int64(fd.video) * 40
		at := int64(math.Round(float64(fd.audio) * 1024 * 1000 / 44100))
		if min(vt, at) >= until {
			fd.ms = until
			return
		}
		if vt <= at {
			body := bs(0x27, 1, 0, 0, 0, 0, 0, 0, 2, 0x41, byte(fd.video)) // inter frame: one 2-byte NAL unit
			if fd.video%cmp.Or(fd.gop, 25) == 0 {
				body[0] = 0x17
			}
			fd.p.ingest(msgVideo, uint32(vt), body)
			fd.video++
		} else {
			fd.p.ingest(msgAudio, uint32(at), bs(0xAF, 1, 0x21, byte(fd.audio)))
			fd.audio++
		}
	}
}

// hlsGet fetches url; on a transport error it reports it and answers
// status 0 (it may run in a goroutine of its own).
func hlsGet(t *testing.T, url string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return 0, nil, nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
	}
	return resp.StatusCode, resp.Header, body
}

// m3u8 is a media playlist, parsed as far as the tests need.
type m3u8 struct {
	version, targetDuration, mediaSequence, discSeq, skipped int
	partTarget, partHoldBack, canSkipUntil                   float64
	canBlock, independent                                    bool
	segments                                                 []m3u8Segment
	openParts                                                []m3u8Part // parts after the last EXTINF
	preloadHint                                              string
}

type m3u8Segment struct {
	uri, mapURI   string
	dur           float64
	discontinuity bool
	pdt           time.Time
	parts         []m3u8Part
}

type m3u8Part struct {
	uri         string
	dur         float64
	independent bool
}

// attrs reads an attribute list (RFC 8216bis §4.2): NAME=value pairs
// separated by commas, a value quoted when it may hold commas. By hand,
// not with a regexp: the load tool's thousands of viewers parse a
// playlist a part.
func attrs(s string) map[string]string {
	m := map[string]string{}
	for s != "" {
		name, rest, ok := strings.Cut(s, "=")
		if !ok {
			break
		}
		var value string
		if quoted, ok := strings.CutPrefix(rest, `"`); ok {
			value, rest, _ = strings.Cut(quoted, `"`)
			rest = strings.TrimPrefix(rest, ",")
		} else {
			value, rest, _ = strings.Cut(rest, ",")
		}
		m[strings.TrimSpace(name)] = value
		s = rest
	}
	return m
}

func parseM3U8(t *testing.T, body []byte) *m3u8 {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(string(body)), "\n")
	if lines[0] != "#EXTM3U" {
		t.Fatalf("playlist does not start with #EXTM3U:\n%s", body)
	}
	pl := &m3u8{}
	var cur m3u8Segment
	var parts []m3u8Part
	mapURI := ""
	num := func(s string) float64 {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("bad number %q in:\n%s", s, body)
		}
		return v
	}
	for _, line := range lines[1:] {
		tag, value, _ := strings.Cut(line, ":")
		switch tag {
		case "#EXT-X-VERSION":
			pl.version = int(num(value))
		case "#EXT-X-TARGETDURATION":
			pl.targetDuration = int(num(value))
		case "#EXT-X-MEDIA-SEQUENCE":
			pl.mediaSequence = int(num(value))
		case "#EXT-X-DISCONTINUITY-SEQUENCE":
			pl.discSeq = int(num(value))
		case "#EXT-X-INDEPENDENT-SEGMENTS":
			pl.independent = true
		case "#EXT-X-SERVER-CONTROL":
			a := attrs(value)
			pl.canBlock = a["CAN-BLOCK-RELOAD"] == "YES"
			pl.partHoldBack, pl.canSkipUntil = num(a["PART-HOLD-BACK"]), num(a["CAN-SKIP-UNTIL"])
		case "#EXT-X-PART-INF":
			pl.partTarget = num(attrs(value)["PART-TARGET"])
		case "#EXT-X-SKIP":
			pl.skipped = int(num(attrs(value)["SKIPPED-SEGMENTS"]))
		case "#EXT-X-MAP":
			mapURI = attrs(value)["URI"]
		case "#EXT-X-DISCONTINUITY":
			cur.discontinuity = true
		case "#EXT-X-PROGRAM-DATE-TIME":
			pdt, err := time.Parse(time.RFC3339Nano, value)
			if err != nil {
				t.Fatalf("PROGRAM-DATE-TIME %q: %v", value, err)
			}
			cur.pdt = pdt
		case "#EXT-X-PART":
			a := attrs(value)
			parts = append(parts, m3u8Part{uri: a["URI"], dur: num(a["DURATION"]), independent: a["INDEPENDENT"] == "YES"})
		case "#EXT-X-PRELOAD-HINT":
			pl.preloadHint = attrs(value)["URI"]
		case "#EXTINF":
			d, _, _ := strings.Cut(value, ",")
			cur.dur = num(d)
		default:
			if strings.HasPrefix(line, "#") {
				t.Fatalf("unexpected tag %q in:\n%s", line, body)
			}
			cur.uri, cur.mapURI, cur.parts = line, mapURI, parts
			pl.segments = append(pl.segments, cur)
			cur, parts = m3u8Segment{}, nil
		}
	}
	pl.openParts = parts
	return pl
}

// msnOf reads the media sequence number (and part index, -1 for a
// segment) from a URI: seg-RUN-MSN.m4s or part-RUN-MSN-PART.m4s, maybe
// with a query.
func msnOf(t *testing.T, uri string) (msn, part int) {
	t.Helper()
	name, _, _ := strings.Cut(uri, "?")
	name, ok := strings.CutSuffix(name, ".m4s")
	f := strings.Split(name, "-")
	want := map[string]int{"seg": 3, "part": 4}[f[0]]
	var err1, err2 error
	part = -1
	if ok && want > 0 && len(f) == want {
		msn, err1 = strconv.Atoi(f[2])
		if want == 4 {
			part, err2 = strconv.Atoi(f[3])
		}
	}
	if !ok || want == 0 || len(f) != want || err1 != nil || err2 != nil || msn < 0 || part < -1 {
		t.Fatalf("URI %q is not a segment or part", uri)
	}
	return msn, part
}

// checkPlaylistRules checks the rules of draft-pantos-hls-rfc8216bis on
// one live playlist.
func checkPlaylistRules(t *testing.T, pl *m3u8, body []byte) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf(format+"\nplaylist:\n%s", append(args, body)...)
	}
	if !pl.canBlock || pl.partTarget <= 0 || pl.partHoldBack < 3*pl.partTarget-1e-9 || pl.canSkipUntil < float64(6*pl.targetDuration) {
		fail("server control: block %v, PART-TARGET %v, PART-HOLD-BACK %v, CAN-SKIP-UNTIL %v; want YES, > 0, >= 3 part targets, >= 6 target durations",
			pl.canBlock, pl.partTarget, pl.partHoldBack, pl.canSkipUntil)
	}
	if pl.version < 9 || !pl.independent {
		fail("version %d, independent segments %v; want >= 9 and true", pl.version, pl.independent)
	}
	for i, s := range pl.segments {
		// §4.4.3.1: each EXTINF rounded to the nearest integer is at most the target duration.
		if int(math.Round(s.dur)) > pl.targetDuration {
			fail("segment %s lasts %.3f s, over TARGETDURATION %d", s.uri, s.dur, pl.targetDuration)
		}
		if msn, _ := msnOf(t, s.uri); msn != pl.mediaSequence+pl.skipped+i {
			fail("segment %d is %s; want media sequence %d", i, s.uri, pl.mediaSequence+pl.skipped+i)
		}
		if s.mapURI == "" {
			fail("segment %s has no EXT-X-MAP", s.uri)
		}
		if s.pdt.IsZero() {
			fail("segment %s has no PROGRAM-DATE-TIME", s.uri)
		}
		if i > 0 && !s.discontinuity && !pl.segments[i-1].pdt.IsZero() {
			if d := s.pdt.Sub(pl.segments[i-1].pdt).Seconds() - pl.segments[i-1].dur; math.Abs(d) > 0.002 {
				fail("segment %s: PROGRAM-DATE-TIME is %.3f s off its predecessor's end", s.uri, d)
			}
		}
		if len(s.parts) == 0 {
			continue
		}
		sum := 0.0
		for j, p := range s.parts {
			sum += p.dur
			if msn, part := msnOf(t, p.uri); part != j || msn != pl.mediaSequence+pl.skipped+i {
				fail("part %d of %s is %s", j, s.uri, p.uri)
			}
		}
		// The parts add up to their segment (each duration is printed to the millisecond).
		if math.Abs(sum-s.dur) > 0.001*float64(len(s.parts)+1) {
			fail("parts of %s add up to %.3f s; the segment lasts %.3f s", s.uri, sum, s.dur)
		}
		if !s.parts[0].independent {
			fail("segment %s's first part is not INDEPENDENT=YES", s.uri)
		}
		// §4.4.4.9: a part lasts at least 85% of PART-TARGET, but for a
		// segment's last and INDEPENDENT=YES ones.
		for _, p := range s.parts[:len(s.parts)-1] {
			if !p.independent && p.dur < 0.85*pl.partTarget-0.0005 {
				fail("part %s lasts %.3f s, under 85%% of PART-TARGET %.3f", p.uri, p.dur, pl.partTarget)
			}
		}
	}
	next := pl.mediaSequence + pl.skipped + len(pl.segments)
	for j, p := range append(allParts(pl), pl.openParts...) {
		if p.dur > pl.partTarget {
			fail("part %d (%s) lasts %.3f s, over PART-TARGET %.3f", j, p.uri, p.dur, pl.partTarget)
		}
	}
	for j, p := range pl.openParts {
		if msn, part := msnOf(t, p.uri); msn != next || part != j {
			fail("open part %d is %s; want segment %d", j, p.uri, next)
		}
	}
	if msn, part := msnOf(t, pl.preloadHint); msn != next || part != len(pl.openParts) {
		fail("preload hint %s; want part %d of segment %d", pl.preloadHint, len(pl.openParts), next)
	}
}

func allParts(pl *m3u8) []m3u8Part {
	var ps []m3u8Part
	for _, s := range pl.segments {
		ps = append(ps, s.parts...)
	}
	return ps
}

// TestHLSPlaylistRules feeds 20 s of media and checks every playlist on
// the way, then the bytes: the init segment and each listed segment
// parse, and segments follow one another in decode time.
func TestHLSPlaylistRules(t *testing.T) {
	ts := startServer(t, nil)
	key := streamKey{"live", "rules"}
	fd := startHLSFeed(t, ts, key)
	fd.feedTo(500)
	base := "http://" + ts.httpAddr + "/live/rules/"
	first := make(chan []byte, 1)
	go func() { _, _, body := hlsGet(t, base+"index.m3u8"); first <- body }()
	waitFor(t, "the HLS muxer to join", func() bool { return ts.viewers(key) == 1 })
	fd.feedTo(1200) // the first segment ends at the second keyframe
	body := <-first
	checkPlaylistRules(t, parseM3U8(t, body), body)
	var pl *m3u8
	for ms := int64(1200); ms <= 20000; ms += 700 {
		fd.feedTo(ms)
		waitFor(t, "the muxer to catch up", func() bool {
			_, _, body := hlsGet(t, base+"index.m3u8")
			pl = parseM3U8(t, body)
			return pl.preloadHint != "" && hintTime(pl) >= ms-80-200
		})
		status, _, body := hlsGet(t, base+"index.m3u8")
		if status != 200 {
			t.Fatalf("playlist: %d", status)
		}
		pl = parseM3U8(t, body)
		checkPlaylistRules(t, pl, body)
	}
	// -hls-part 100ms in whole 40 ms frames: two, and a millisecond for
	// FLV's rounding.
	if len(pl.segments) != ts.cfg.HLSWindow || pl.targetDuration != 2 || pl.partTarget != 0.081 {
		t.Errorf("%d segments, target duration %d, part target %v; want %d, 2, 0.081", len(pl.segments), pl.targetDuration, pl.partTarget, ts.cfg.HLSWindow)
	}
	status, h, init := hlsGet(t, base+pl.segments[0].mapURI)
	if status != 200 || h.Get("Content-Type") != "video/mp4" || !strings.Contains(h.Get("Cache-Control"), "immutable") {
		t.Fatalf("init: %d %v", status, h)
	}
	if findBox(init, "moov/trak/mdia/minf/stbl/stsd", 0) == nil || findBox(init, "moov/mvex/trex", 1) == nil {
		t.Fatalf("init segment without its boxes: % x", init)
	}
	var nextDTS uint64
	for i, s := range pl.segments {
		status, h, seg := hlsGet(t, base+s.uri)
		if status != 200 || h.Get("Content-Type") != "video/iso.segment" || h.Get("Cache-Control") != "public, max-age=31536000, immutable" ||
			h.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("segment %s: %d %v", s.uri, status, h)
		}
		// The segment is its parts back to back.
		var joined []byte
		for _, p := range s.parts {
			_, _, b := hlsGet(t, base+p.uri)
			joined = append(joined, b...)
		}
		if len(s.parts) > 0 && !bytes.Equal(joined, seg) {
			t.Errorf("segment %s is not its parts back to back", s.uri)
		}
		if i == 0 {
			checkRangeAndETag(t, base+s.uri, seg)
		}
		tfdt := findBox(seg, "moof/traf/tfdt", 0)
		dts := binary.BigEndian.Uint64(tfdt[12:])
		if i > 0 && dts != nextDTS {
			t.Errorf("segment %s starts at %d; the one before ended at %d", s.uri, dts, nextDTS)
		}
		// Where this segment's video ends: its moofs' video runs.
		nextDTS = dts
		for rest := seg; len(rest) > 8; {
			moof := findBox(rest, "moof", 0)
			if moof == nil {
				break
			}
			trun := findBox(moof, "moof/traf/trun", 0)
			n := int(binary.BigEndian.Uint32(trun[12:]))
			for k := range n {
				nextDTS += uint64(binary.BigEndian.Uint32(trun[20+16*k:]))
			}
			rest = rest[len(moof):]
			rest = rest[binary.BigEndian.Uint32(rest):] // the mdat
		}
	}
}

// hintTime is the media time (ms) where the preload hint's part starts,
// from the playlist: the segments' and parts' durations add up to it.
func hintTime(pl *m3u8) int64 {
	sum := 0.0
	for _, s := range pl.segments {
		sum += s.dur
	}
	for _, p := range pl.openParts {
		sum += p.dur
	}
	// The segments listed start at the window's first; the stream started
	// at 0 with its first segment ending at 1 s: 1 s plus 2 s a segment.
	start := 0.0
	if pl.mediaSequence > 0 {
		start = 1 + 2*float64(pl.mediaSequence-1)
	}
	return int64(math.Round((start + sum) * 1000))
}

// startHLS publishes key, feeds until media time ms and has the first
// playlist request start the muxer; it returns the feeder and the base URL.
func startHLS(t *testing.T, ts *testServer, name string, ms int64) (*hlsFeeder, string) {
	t.Helper()
	key := streamKey{"live", name}
	fd := startHLSFeed(t, ts, key)
	fd.feedTo(100)
	base := "http://" + ts.httpAddr + "/live/" + name + "/"
	first := make(chan int, 1)
	go func() { status, _, _ := hlsGet(t, base+"index.m3u8"); first <- status }()
	waitFor(t, "the HLS muxer to join", func() bool { return ts.viewers(key) == 1 })
	fd.feedTo(ms)
	if status := <-first; status != 200 {
		t.Fatalf("first playlist: %d", status)
	}
	return fd, base
}

// waitPlaylist reloads the playlist until cond holds.
func waitPlaylist(t *testing.T, url string, cond func(*m3u8) bool) *m3u8 {
	t.Helper()
	var pl *m3u8
	waitFor(t, "a playlist", func() bool {
		_, _, body := hlsGet(t, url)
		pl = parseM3U8(t, body)
		return cond(pl)
	})
	return pl
}

// TestHLSBlockingReload: a blocking reload for the hinted part, and a
// request for the part itself, are answered when the part is made, not
// before; requests too far ahead get 400 at once.
func TestHLSBlockingReload(t *testing.T) {
	ts := startServer(t, func(c *config) { c.HLSPart = 200 * time.Millisecond }) // parts of five frames
	fd, base := startHLS(t, ts, "block", 3500)
	pl := waitPlaylist(t, base+"index.m3u8", func(pl *m3u8) bool { return len(pl.openParts) == 2 })
	msn, part := msnOf(t, pl.preloadHint)
	type answer struct {
		status int
		body   []byte
		at     time.Time
	}
	reload, partReq := make(chan answer, 1), make(chan answer, 1)
	go func() {
		status, _, body := hlsGet(t, fmt.Sprintf("%sindex.m3u8?_HLS_msn=%d&_HLS_part=%d", base, msn, part))
		reload <- answer{status, body, time.Now()}
	}()
	go func() {
		status, _, body := hlsGet(t, base+pl.preloadHint)
		partReq <- answer{status, body, time.Now()}
	}()
	// Frames that do not finish the part: nothing comes back.
	fd.feedTo(3590)
	time.Sleep(100 * time.Millisecond) // long enough for a wrong answer to show; a right one never comes here
	select {
	case a := <-reload:
		t.Fatalf("blocking reload answered before its part was made: %d\n%s", a.status, a.body)
	case a := <-partReq:
		t.Fatalf("part request answered before the part was made: %d", a.status)
	default:
	}
	made := time.Now()
	fd.feedTo(3610) // the video frame at 3600 ends the part
	a := <-reload
	if a.status != 200 {
		t.Fatalf("blocking reload: %d %s", a.status, a.body)
	}
	got := parseM3U8(t, a.body)
	checkPlaylistRules(t, got, a.body)
	if len(got.openParts) <= part {
		t.Errorf("blocking reload for part %d of %d answered with %d parts:\n%s", part, msn, len(got.openParts), a.body)
	}
	b := <-partReq
	if b.status != 200 || findBox(b.body, "moof/traf/trun", 0) == nil {
		t.Errorf("part request: %d, % x", b.status, b.body[:min(len(b.body), 32)])
	}
	t.Logf("answered %v and %v after the frame that made the part went in", a.at.Sub(made), b.at.Sub(made))

	for _, tc := range []struct{ query, why string }{
		{"_HLS_part=1", "part without msn"},
		{fmt.Sprintf("_HLS_msn=%d", msn+3), "msn past the last plus two"},
		{fmt.Sprintf("_HLS_msn=%d&_HLS_part=%d", msn, part+40), "part past the advance part limit"},
		{"_HLS_msn=x", "not a number"},
	} {
		if status, _, body := hlsGet(t, base+"index.m3u8?"+tc.query); status != 400 {
			t.Errorf("%s (%s): %d %s; want 400", tc.query, tc.why, status, body)
		}
	}
	// A blocking reload for the next segment whole is answered when it completes.
	done := make(chan int, 1)
	go func() {
		status, _, _ := hlsGet(t, fmt.Sprintf("%sindex.m3u8?_HLS_msn=%d", base, msn))
		done <- status
	}()
	fd.feedTo(5100)
	if status := <-done; status != 200 {
		t.Errorf("blocking reload for a whole segment: %d", status)
	}
}

// TestHLSDiscontinuity: a publisher that leaves and comes back continues
// the playlist after EXT-X-DISCONTINUITY, with a new init segment; the
// media sequence goes on.
func TestHLSDiscontinuity(t *testing.T) {
	ts := startServer(t, nil)
	key := streamKey{"live", "disc"}
	fd, base := startHLS(t, ts, "disc", 4100)
	waitPlaylist(t, base+"index.m3u8", func(pl *m3u8) bool { return len(pl.segments) == 2 && len(pl.openParts) >= 4 })
	ts.hub.unpublish(fd.p)
	pl := waitPlaylist(t, base+"index.m3u8", func(pl *m3u8) bool { return len(pl.segments) == 3 })
	if len(pl.openParts) != 0 {
		t.Errorf("after the unpublish the open segment still has parts: %+v", pl.openParts)
	}
	// Nor do the complete segments list theirs: from a playlist with parts
	// hls.js 1.7.4 makes a next segment (its fragmentHint) of the same
	// discontinuity sequence, and the republish's EXT-X-DISCONTINUITY
	// then fails its merge ("discontinuity sequence mismatch (0!=1)", a
	// fatal levelParsingError: TestChromiumHLSJSRepublish).
	if _, _, body := hlsGet(t, base+"index.m3u8"); strings.Contains(string(body), "#EXT-X-PART:") {
		t.Errorf("between publishes the playlist lists parts:\n%s", body)
	}
	fd2 := startHLSFeed(t, ts, key)
	fd2.feedTo(3100)
	pl = waitPlaylist(t, base+"index.m3u8", func(pl *m3u8) bool { return len(pl.segments) == 5 })
	_, _, body := hlsGet(t, base+"index.m3u8")
	pl = parseM3U8(t, body)
	checkPlaylistRules(t, pl, body)
	s := pl.segments
	if !s[3].discontinuity || s[2].discontinuity || s[3].mapURI == s[2].mapURI || s[4].mapURI != s[3].mapURI {
		t.Errorf("want a discontinuity and a new map at the 4th segment:\n%s", body)
	}
	if status, _, init := hlsGet(t, base+s[3].mapURI); status != 200 || findBox(init, "moov", 0) == nil {
		t.Errorf("new init segment: %d", status)
	}
	if !strings.Contains(string(body), "#EXT-X-DISCONTINUITY-SEQUENCE:0\n") {
		t.Errorf("discontinuity sequence:\n%s", body)
	}
}

// TestHLSDeltaUpdate: with _HLS_skip=YES the playlist leaves out the
// segments older than CAN-SKIP-UNTIL and says how many (EXT-X-SKIP).
func TestHLSDeltaUpdate(t *testing.T) {
	ts := startServer(t, func(c *config) { c.HLSWindow = 12 })
	fd, base := startHLS(t, ts, "delta", 1100)
	fd.feedTo(25100)
	// A delta update, and the full playlist as it was at the same time
	// (the same before and after: the muxer may still be busy).
	var full, delta *m3u8
	var body []byte
	waitFor(t, "a delta update between two equal full playlists", func() bool {
		_, _, before := hlsGet(t, base+"index.m3u8")
		var status int
		status, _, body = hlsGet(t, base+"index.m3u8?_HLS_skip=YES")
		_, _, after := hlsGet(t, base+"index.m3u8")
		if status != 200 {
			t.Fatalf("delta update: %d", status)
		}
		full, delta = parseM3U8(t, after), parseM3U8(t, body)
		return bytes.Equal(before, after) && len(full.segments) == 12
	})
	checkPlaylistRules(t, delta, body)
	if delta.skipped == 0 || delta.skipped+len(delta.segments) != len(full.segments) || delta.mediaSequence != full.mediaSequence {
		t.Fatalf("delta update skipped %d and lists %d (from %d); full playlist lists %d from %d:\n%s",
			delta.skipped, len(delta.segments), delta.mediaSequence, len(full.segments), full.mediaSequence, body)
	}
	// What is left covers at least CAN-SKIP-UNTIL.
	left := 0.0
	for _, s := range delta.segments {
		left += s.dur
	}
	if left < delta.canSkipUntil-float64(delta.targetDuration) {
		t.Errorf("delta update keeps %.1f s; CAN-SKIP-UNTIL is %.1f", left, delta.canSkipUntil)
	}
}

// TestHLSNotLive: a stream nobody publishes is a 404 that says so, and
// starts no muxer; a bad name is a 400; unknown files are 404.
func TestHLSNotLive(t *testing.T) {
	ts := startServer(t, nil)
	status, _, body := hlsGet(t, "http://"+ts.httpAddr+"/live/nobody/index.m3u8")
	if status != 404 || !strings.Contains(string(body), "/live/nobody is not live") {
		t.Errorf("not live: %d %q", status, body)
	}
	if n := len(ts.hub.snapshot()); n != 0 {
		t.Errorf("%d streams after a request for one not live", n)
	}
	if status, _, _ := hlsGet(t, "http://"+ts.httpAddr+"/live/te.st/index.m3u8"); status != 400 {
		t.Errorf("bad name: %d", status)
	}
	_, base := startHLS(t, ts, "files", 1100)
	for _, f := range []string{"seg-00000000-0.m4s", "part-x-1-2.m4s", "init-zz-1.mp4", "other.txt", "seg-1.m4s"} {
		if status, _, _ := hlsGet(t, base+f); status != 404 {
			t.Errorf("%s: %d; want 404", f, status)
		}
	}
}

// TestHLSSignedURLs: with -auth-play the playlist needs a sign, and its
// URIs carry it, so that a player can fetch what it lists; segments and
// parts without one are refused.
func TestHLSSignedURLs(t *testing.T) {
	const secret = "hls-secret"
	ts := startServer(t, func(c *config) { c.PlayAuth, c.Secret = true, secret })
	key := streamKey{"live", "signed"}
	fd := startHLSFeed(t, ts, key)
	fd.feedTo(1100)
	base := "http://" + ts.httpAddr + "/live/signed/"
	if status, _, _ := hlsGet(t, base+"index.m3u8"); status != 403 {
		t.Fatalf("playlist without a sign: %d; want 403", status)
	}
	q := sign(key, time.Now().Add(time.Hour).Unix(), secret)
	first := make(chan []byte, 1)
	go func() { _, _, body := hlsGet(t, base+"index.m3u8?"+q); first <- body }()
	waitFor(t, "the HLS muxer to join", func() bool { return ts.viewers(key) == 1 })
	fd.feedTo(3100)
	body := <-first
	pl := parseM3U8(t, body)
	uris := []string{pl.preloadHint, pl.segments[0].mapURI, pl.segments[0].uri, pl.segments[0].parts[0].uri}
	for _, u := range uris {
		if !strings.HasSuffix(u, "?"+q) {
			t.Errorf("URI %q does not carry the sign", u)
		}
	}
	for _, u := range uris[1:] {
		if status, _, _ := hlsGet(t, base+u); status != 200 {
			t.Errorf("%s: %d", u, status)
		}
		plain, _, _ := strings.Cut(u, "?")
		if status, _, _ := hlsGet(t, base+plain); status != 403 {
			t.Errorf("%s without the sign: %d; want 403", plain, status)
		}
	}
}

// TestHLSIdleStop: a stream's muxing stops a while after its last
// request: the muxer leaves the hub, and the next request starts anew.
func TestHLSIdleStop(t *testing.T) {
	ts := startServer(t, nil)
	ts.web.hls.idle = 200 * time.Millisecond
	key := streamKey{"live", "idle"}
	_, base := startHLS(t, ts, "idle", 1100)
	waitFor(t, "the muxer to stop", func() bool { return ts.viewers(key) == 0 })
	if !strings.Contains(ts.logs.String(), "hls stop") {
		t.Errorf("no hls stop line in the log")
	}
	go hlsGet(t, base+"index.m3u8")
	waitFor(t, "a new muxer", func() bool { return ts.viewers(key) == 1 })
}

// checkRangeAndETag: a byte range of a segment (spanning its parts) is
// 206 with those bytes, and a revalidation with its ETag is 304.
func checkRangeAndETag(t *testing.T, url string, whole []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	from, to := len(whole)/3, len(whole)*2/3
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", from, to))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, whole[from:to+1]) {
		t.Errorf("range %d-%d of %s: %d, %d bytes", from, to, url, resp.StatusCode, len(body))
	}
	req, _ = http.NewRequest("GET", url, nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("ETag") == "" || resp.StatusCode != http.StatusNotModified {
		t.Errorf("revalidating %s with ETag %q: %d", url, resp.Header.Get("ETag"), resp.StatusCode)
	}
}

// TestHLSViewersInAPI: HLS viewers (address and user agent) are counted
// in the API and /metrics; the muxer itself is no viewer, and makes no
// play or stop events.
func TestHLSViewersInAPI(t *testing.T) {
	ts := startServer(t, nil)
	events, stop := ts.hub.watch()
	defer stop()
	_, base := startHLS(t, ts, "counted", 1100)
	req, _ := http.NewRequest("GET", base+"index.m3u8", nil)
	req.Header.Set("User-Agent", "second player")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, _, body := hlsGet(t, "http://"+ts.httpAddr+"/api/streams")
	if !strings.Contains(string(body), `"subscribers":[]`) || !strings.Contains(string(body), `"hls":2`) {
		t.Errorf("/api/streams: %s; want no subscribers and 2 HLS viewers", body)
	}
	_, _, body = hlsGet(t, "http://"+ts.httpAddr+"/api/streams/live/counted")
	if !strings.Contains(string(body), `"viewers":2`) {
		t.Errorf("/api/streams/live/counted: %s; want 2 viewers", body)
	}
	_, _, body = hlsGet(t, "http://"+ts.httpAddr+"/metrics")
	if !strings.Contains(string(body), `gms_viewers{protocol="hls"} 2`) {
		t.Errorf("/metrics has no gms_viewers{protocol=\"hls\"} 2")
	}
	for {
		select {
		case ev := <-events:
			if ev.Type == actPlay || ev.Type == actStop {
				t.Errorf("event %s for %s (%s)", ev.Type, ev.Client.ID, ev.Client.Protocol)
			}
			continue
		default:
		}
		break
	}
}

// TestDASHManifest: index.mpd lists the HLS segments a track an
// AdaptationSet, on one contiguous SegmentTimeline; each track's init and
// segments hold that track only.
func TestDASHManifest(t *testing.T) {
	ts := startServer(t, nil)
	key := streamKey{"live", "dash"}
	fd := startHLSFeed(t, ts, key)
	fd.feedTo(100)
	base := "http://" + ts.httpAddr + "/live/dash/"
	first := make(chan int, 1)
	go func() { status, _, _ := hlsGet(t, base+"index.mpd"); first <- status }()
	waitFor(t, "the muxer to join", func() bool { return ts.viewers(key) == 1 })
	fd.feedTo(9100)
	if status := <-first; status != 200 {
		t.Fatalf("first MPD: %d", status)
	}
	status, h, body := hlsGet(t, base+"index.mpd")
	if status != 200 || h.Get("Content-Type") != "application/dash+xml" {
		t.Fatalf("MPD: %d %v", status, h)
	}
	var mpd struct {
		Type   string `xml:"type,attr"`
		Period []struct {
			Sets []struct {
				ContentType string `xml:"contentType,attr"`
				Rep         struct {
					Codecs   string `xml:"codecs,attr"`
					Template struct {
						Init        string `xml:"initialization,attr"`
						Media       string `xml:"media,attr"`
						StartNumber int    `xml:"startNumber,attr"`
						S           []struct {
							T int64 `xml:"t,attr"`
							D int64 `xml:"d,attr"`
						} `xml:"SegmentTimeline>S"`
					} `xml:"SegmentTemplate"`
				} `xml:"Representation"`
			} `xml:"AdaptationSet"`
		} `xml:"Period"`
	}
	if err := xml.Unmarshal(body, &mpd); err != nil {
		t.Fatalf("MPD: %v\n%s", err, body)
	}
	if mpd.Type != "dynamic" || len(mpd.Period) != 1 || len(mpd.Period[0].Sets) != 2 {
		t.Fatalf("want a dynamic MPD, one Period, two AdaptationSets:\n%s", body)
	}
	for i, set := range mpd.Period[0].Sets {
		tpl := set.Rep.Template
		want := [2]string{"video avc1.64001f", "audio mp4a.40.2"}[i]
		if set.ContentType+" "+set.Rep.Codecs != want || len(tpl.S) < 3 {
			t.Errorf("AdaptationSet %d: %s %s, %d segments; want %s and at least 3", i, set.ContentType, set.Rep.Codecs, len(tpl.S), want)
		}
		_, _, init := hlsGet(t, base+tpl.Init)
		if findBox(init, "moov/trak", 1) != nil || findBox(init, "moov/trak/tkhd", 0) == nil {
			t.Errorf("%s: want one track", tpl.Init)
		}
		for j, s := range tpl.S {
			if j > 0 && s.T != tpl.S[j-1].T+tpl.S[j-1].D {
				t.Errorf("segment %d starts at %d; the one before ends at %d", j, s.T, tpl.S[j-1].T+tpl.S[j-1].D)
			}
			uri := strings.Replace(tpl.Media, "$Number$", strconv.Itoa(tpl.StartNumber+j), 1)
			status, _, seg := hlsGet(t, base+uri)
			tfhd := findBox(seg, "moof/traf/tfhd", 0)
			if status != 200 || tfhd == nil || binary.BigEndian.Uint32(tfhd[12:]) != uint32(i+1) || findBox(seg, "moof/traf", 1) != nil {
				t.Errorf("%s: %d; want track %d only", uri, status, i+1)
			}
		}
	}
}

// TestHLSPlayHook: the play hook is asked at a viewer's first playlist
// request, not at its reloads; a refusal is a 403 and starts no muxer.
func TestHLSPlayHook(t *testing.T) {
	var calls atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), "token=bad") {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		if !strings.Contains(string(body), `"protocol":"hls"`) {
			t.Errorf("hook body %s; want protocol hls", body)
		}
	}))
	defer hook.Close()
	ts := startServer(t, func(c *config) { c.OnPlay = hook.URL })
	key := streamKey{"live", "hooked"}
	fd := startHLSFeed(t, ts, key)
	fd.feedTo(100)
	base := "http://" + ts.httpAddr + "/live/hooked/"
	if status, _, _ := hlsGet(t, base+"index.m3u8?token=bad"); status != 403 || ts.viewers(key) != 0 {
		t.Fatalf("refused by the hook: %d, %d muxers; want 403 and none", status, ts.viewers(key))
	}
	first := make(chan int, 1)
	go func() { status, _, _ := hlsGet(t, base+"index.m3u8?token=good"); first <- status }()
	waitFor(t, "the muxer to join", func() bool { return ts.viewers(key) == 1 })
	fd.feedTo(1100)
	if status := <-first; status != 200 {
		t.Fatalf("admitted by the hook: %d", status)
	}
	before := calls.Load()
	for range 3 {
		if status, _, _ := hlsGet(t, base+"index.m3u8?token=good"); status != 200 {
			t.Fatalf("reload: %d", status)
		}
	}
	if calls.Load() != before || before != 2 {
		t.Errorf("hook calls: %d, then %d after 3 reloads; want 2, 2", before, calls.Load())
	}
}

// TestHLSAlways: an -hls-always app's stream is muxed from its publish
// on, with no request, and is not stopped for want of requests.
func TestHLSAlways(t *testing.T) {
	ts := startServer(t, func(c *config) { c.HLSAlways = "tv" })
	ts.web.hls.idle = 200 * time.Millisecond
	key := streamKey{"tv", "always"}
	fd := startHLSFeed(t, ts, key)
	waitFor(t, "the muxer to start at publish", func() bool { return ts.viewers(key) == 1 })
	fd.feedTo(3100)
	time.Sleep(1500 * time.Millisecond) // past the idle stop (and its once-a-second check)
	if ts.viewers(key) != 1 {
		t.Fatal("the muxer of an -hls-always stream stopped for want of requests")
	}
	status, _, body := hlsGet(t, "http://"+ts.httpAddr+"/tv/always/index.m3u8")
	if pl := parseM3U8(t, body); status != 200 || len(pl.segments) != 2 || pl.mediaSequence != 0 {
		t.Errorf("playlist: %d\n%s\nwant the two segments since the publish", status, body)
	}
	other := streamKey{"live", "other"}
	startHLSFeed(t, ts, other)
	time.Sleep(100 * time.Millisecond) // a wrong start would show by now; a right run never starts one
	if ts.viewers(other) != 0 {
		t.Errorf("a stream of another app is muxed with no request")
	}
}

// TestHLSPlain: with -hls-part 0 the playlist is plain HLS: segments
// only, no LL-HLS tags, and _HLS_ directives are ignored: the answer is
// the live playlist, which a cache may keep a second only, not the three
// target durations of a blocking reload's.
func TestHLSPlain(t *testing.T) {
	ts := startServer(t, func(c *config) { c.HLSPart = 0 })
	_, base := startHLS(t, ts, "plain", 5100)
	status, h, body := hlsGet(t, base+"index.m3u8?_HLS_msn=1&_HLS_part=3")
	if cc := h.Get("Cache-Control"); cc != "public, max-age=1" {
		t.Errorf("plain HLS playlist asked with _HLS_msn: Cache-Control %q; want public, max-age=1", cc)
	}
	if status, _, _ := hlsGet(t, base+"index.m3u8?_HLS_part=3"); status != 200 {
		t.Errorf("plain HLS playlist asked with _HLS_part alone: %d; want 200", status)
	}
	pl := parseM3U8(t, body)
	if status != 200 || pl.version != 6 || pl.canBlock || pl.partTarget != 0 || pl.preloadHint != "" || len(allParts(pl)) != 0 ||
		len(pl.segments) != 3 || pl.segments[1].dur != 2 {
		t.Errorf("plain HLS playlist: %d\n%s", status, body)
	}
	for _, s := range pl.segments {
		if status, _, seg := hlsGet(t, base+s.uri); status != 200 || findBox(seg, "moof", 0) == nil {
			t.Errorf("%s: %d", s.uri, status)
		}
	}
}

// TestHLSAudioOnly: a stream without video is cut by its audio frames:
// segments of the target duration, every part independent, one track.
func TestHLSAudioOnly(t *testing.T) {
	ts := startServer(t, nil)
	key := streamKey{"live", "radio"}
	p, err := ts.hub.publish(key, clientInfo{ID: "PUBRADIO"}, func() uint64 { return 0 }, func() {})
	if err != nil {
		t.Fatal(err)
	}
	p.ingest(msgAudio, 0, joinBytes(bs(0xAF, 0), testASC))
	frame := 0
	feed := func(until float64) {
		for ; float64(frame)*1024*1000/44100 < until; frame++ {
			p.ingest(msgAudio, uint32(math.Round(float64(frame)*1024*1000/44100)), bs(0xAF, 1, 0x21, byte(frame)))
			if frame%20 == 0 {
				p.hub.sync()
				time.Sleep(time.Millisecond) // let the muxer keep up, as with a publisher in real time
			}
		}
	}
	feed(100)
	base := "http://" + ts.httpAddr + "/live/radio/"
	first := make(chan int, 1)
	go func() { status, _, _ := hlsGet(t, base+"index.m3u8"); first <- status }()
	waitFor(t, "the muxer to join", func() bool { return ts.viewers(key) == 1 })
	feed(6100)
	if status := <-first; status != 200 {
		t.Fatalf("first playlist: %d", status)
	}
	pl := waitPlaylist(t, base+"index.m3u8", func(pl *m3u8) bool { return len(pl.segments) == 3 })
	_, _, body := hlsGet(t, base+"index.m3u8")
	pl = parseM3U8(t, body)
	checkPlaylistRules(t, pl, body)
	for _, s := range pl.segments {
		if math.Abs(s.dur-2) > 0.03 {
			t.Errorf("segment %s lasts %.3f s; want about 2", s.uri, s.dur)
		}
		for _, part := range s.parts {
			if !part.independent {
				t.Errorf("audio part %s not INDEPENDENT=YES", part.uri)
			}
		}
	}
	_, _, init := hlsGet(t, base+pl.segments[0].mapURI)
	if findBox(init, "moov/trak", 1) != nil || !bytes.Contains(findBox(init, "moov/trak/mdia/hdlr", 0), []byte("soun")) {
		t.Errorf("init segment: want one sound track")
	}
}

// TestHLSPartTargetFrameRates: PART-TARGET from -hls-part and a frame
// interval, averaged over a GOP cache or measured between two frames in
// whole milliseconds, then parts cut as the muxer cuts them (after its
// frames, or before a frame that would take a part past the target),
// last between 85% and 100% of it (§4.4.4.9) at common rates, with frame
// times in whole milliseconds as FLV has them.
func TestHLSPartTargetFrameRates(t *testing.T) {
	for _, part := range []time.Duration{20 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond} {
		for _, fps := range []float64{24, 25, 29.97, 30, 50, 59.94, 60, 44100.0 / 1024, 48000.0 / 1024} {
			var times []int64
			for n := range 600 {
				times = append(times, int64(math.Round(float64(n)*1000/fps)))
			}
			for _, how := range []string{"gop", "floor", "ceil"} {
				st := &hlsStream{srv: &hlsServer{cfg: &config{HLSPart: part}}}
				switch how {
				case "gop": // as run() does with 30 frames: the first left out
					st.setPartTarget(float64(times[30]-times[1])/29, true)
				case "floor":
					st.setPartTarget(math.Floor(1000/fps), false)
				case "ceil":
					st.setPartTarget(math.Ceil(1000/fps), false)
				}
				target := st.partTarget
				start, last, interval, frames := int64(0), int64(0), int64(0), int64(1)
				for _, ms := range times[1:] {
					if frames >= st.framesPerPart || ms-start+interval > target+2 {
						if d := ms - start; d > target || float64(d) < 0.85*float64(target) {
							t.Errorf("-hls-part %v at %.2f fps (interval %s): a part of %d ms, PART-TARGET %d ms", part, fps, how, d, target)
							break
						}
						start, frames = ms, 0
					}
					interval, last = ms-last, ms
					frames++
				}
			}
		}
	}
}

// TestHLSTargetDurationLongGOP: with GOPs longer than -hls-segment every
// segment is a whole GOP, and EXT-X-TARGETDURATION, which must never
// change (RFC 8216bis §4.4.3.1), says so from the first playlist on.
func TestHLSTargetDurationLongGOP(t *testing.T) {
	ts := startServer(t, nil)
	key := streamKey{"live", "longgop"}
	fd := startHLSFeed(t, ts, key)
	fd.gop = 100 // 4 s at 25 fps; -hls-segment is 2 s
	fd.feedTo(8100)
	base := "http://" + ts.httpAddr + "/live/longgop/"
	first := make(chan []byte, 1)
	go func() { _, _, body := hlsGet(t, base+"index.m3u8"); first <- body }()
	waitFor(t, "the HLS muxer to join", func() bool { return ts.viewers(key) == 1 })
	targets := map[int]int{}
	for fd.ms < 30000 && len(first) == 0 { // the first answer comes when there is something to play
		fd.feedTo(fd.ms + 200)
	}
	targets[parseM3U8(t, <-first).targetDuration]++
	for range 20 {
		fd.feedTo(fd.ms + 1000)
		_, _, body := hlsGet(t, base+"index.m3u8")
		pl := parseM3U8(t, body)
		targets[pl.targetDuration]++
		checkPlaylistRules(t, pl, body)
	}
	if len(targets) != 1 {
		t.Errorf("EXT-X-TARGETDURATION changed: %v (value: playlists)", targets)
	}
	for td := range targets {
		if td < 4 {
			t.Errorf("EXT-X-TARGETDURATION %d with 4 s segments", td)
		}
	}
}

// TestPlaylistRenderedOncePerChange: viewers asking for the playlist at
// the same version share one rendering; a new part, another query or the
// delta form render anew, and the cached bytes are what a fresh
// rendering gives.
func TestPlaylistRenderedOncePerChange(t *testing.T) {
	ts := startServer(t, func(c *config) { c.HLSPart = 200 * time.Millisecond })
	fd, _ := startHLS(t, ts, "cache", 2500)
	hs := ts.web.hls
	hs.mu.Lock()
	st := hs.streams[streamKey{"live", "cache"}]
	hs.mu.Unlock()
	check := func(what string) {
		t.Helper()
		st.mu.Lock()
		defer st.mu.Unlock()
		for _, skip := range []bool{false, true} {
			a := st.cachedPlaylist("", skip)
			b := st.cachedPlaylist("", skip)
			if &a[0] != &b[0] {
				t.Errorf("%s, skip %v: rendered twice at one version", what, skip)
			}
			if fresh := st.playlist("", skip); !bytes.Equal(a, fresh) {
				t.Errorf("%s, skip %v: cached\n%s\nfresh\n%s", what, skip, a, fresh)
			}
			signed := st.cachedPlaylist("sign=abc", skip)
			if !bytes.Contains(signed, []byte("?sign=abc")) || !bytes.Equal(signed, st.playlist("sign=abc", skip)) {
				t.Errorf("%s, skip %v: another query got\n%s", what, skip, signed)
			}
		}
	}
	check("after 2.5 s")
	st.mu.Lock()
	before := st.version
	st.mu.Unlock()
	fd.feedTo(3100)
	st.mu.Lock()
	after := st.version
	st.mu.Unlock()
	if after == before {
		t.Fatal("new parts did not change the version")
	}
	check("after 3.1 s")
}

// TestHLSViewerMapsBounded: the viewers an HLS stream counts, and those
// the play hook admitted, are keyed by a fixed-size digest (not a client's
// user agent and query, up to 16 KiB each), and those not seen for the
// viewer TTL are dropped as new ones come, not only when the API asks: a
// client sending playlist requests with ever new user agents grew them
// without bound while nobody read /api/streams.
func TestHLSViewerMapsBounded(t *testing.T) {
	ts := startServer(t, nil)
	key := streamKey{"live", "bounded"}
	_, base := startHLS(t, ts, key.Name, 1100)
	hs := ts.web.hls
	hs.mu.Lock()
	st := hs.streams[key]
	hs.mu.Unlock()
	long := time.Now().Add(-time.Hour)
	st.mu.Lock()
	for i := range 2000 {
		st.viewers[fmt.Sprint("gone ", i)] = long
	}
	st.mu.Unlock()
	req, _ := http.NewRequest("GET", base+"index.m3u8?token="+strings.Repeat("t", 4000), nil)
	req.Header.Set("User-Agent", strings.Repeat("u", 8000))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("playlist: %d", resp.StatusCode)
	}
	st.mu.Lock()
	n := len(st.viewers)
	for v := range st.viewers {
		if len(v) > 64 {
			t.Errorf("a viewer is kept under a %d-byte key", len(v))
		}
	}
	st.mu.Unlock()
	if n != 2 {
		t.Errorf("%d viewers kept after a request; want 2 (the 2000 gone an hour dropped)", n)
	}
	hs.mu.Lock()
	for v := range hs.admittedAt {
		if len(v) > 64 {
			t.Errorf("an admitted viewer is kept under a %d-byte key", len(v))
		}
	}
	hs.mu.Unlock()
}

// TestHLSTimestampJump: a publisher whose clock jumps (an hour ahead, or
// back to 0) starts a new epoch after a discontinuity at its next
// keyframe. A jump ahead made a part, and so TARGETDURATION, of an hour
// for the rest of the run: blocking reloads then waited, and caches kept
// their answers, three hours. A jump back cut nothing until the clock
// came back to where it was, holding all the media in between in the
// open part.
func TestHLSTimestampJump(t *testing.T) {
	for _, tc := range []struct {
		name string
		jump func(fd *hlsFeeder)
	}{
		{"ahead", func(fd *hlsFeeder) { fd.video += 3600 * 25 }},
		{"back", func(fd *hlsFeeder) { fd.video = 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, nil)
			fd, base := startHLS(t, ts, "jump", 6100)
			tc.jump(fd)
			fd.audio = int(float64(fd.video) * 40 * 44.1 / 1024)
			fd.ms = int64(fd.video) * 40
			fd.feedTo(fd.ms + 6100)
			_, _, body := hlsGet(t, base+"index.m3u8")
			pl := parseM3U8(t, body)
			checkPlaylistRules(t, pl, body)
			if pl.targetDuration > 2 {
				t.Errorf("TARGETDURATION %d after the jump; want 2", pl.targetDuration)
			}
			disc := -1
			for i, s := range pl.segments {
				if s.discontinuity {
					disc = i
				}
				if s.dur > 2.5 {
					t.Errorf("segment %s of %.3f s", s.uri, s.dur)
				}
			}
			if disc < 0 || len(pl.segments)-disc < 2 {
				t.Errorf("want a discontinuity and segments after it:\n%s", body)
			}
		})
	}
}

// TestHLSMediaNamesCanonical: a segment, part or init segment answers
// only under the name a manifest gives it: numbers with a sign or
// leading zeros are 404, not the same bytes under another name (and
// another ETag) for a cache to keep again.
func TestHLSMediaNamesCanonical(t *testing.T) {
	ts := startServer(t, nil)
	key := streamKey{"live", "names"}
	fd := startHLSFeed(t, ts, key)
	fd.feedTo(100)
	base := "http://" + ts.httpAddr + "/live/names/"
	first := make(chan int, 1)
	go func() { status, _, _ := hlsGet(t, base+"index.mpd"); first <- status }()
	waitFor(t, "the muxer to join", func() bool { return ts.viewers(key) == 1 })
	fd.feedTo(7100)
	if status := <-first; status != 200 {
		t.Fatalf("first MPD: %d", status)
	}
	ts.web.hls.mu.Lock()
	run := ts.web.hls.streams[key].runID
	ts.web.hls.mu.Unlock()
	for _, f := range []string{"seg-R-2.m4s", "part-R-2-1.m4s", "init-R-1.mp4", "dashinit-R-1-1.mp4", "dash-R-2-1.m4s"} {
		if status, _, _ := hlsGet(t, base+strings.Replace(f, "R", run, 1)); status != 200 {
			t.Fatalf("%s: %d", f, status)
		}
	}
	for _, f := range []string{"seg-R-02.m4s", "seg-R-+2.m4s", "part-R-2-01.m4s", "part-R-02-1.m4s", "init-R-01.mp4",
		"init-R-+1.mp4", "dashinit-R-01-1.mp4", "dashinit-R-1-01.mp4", "dash-R-02-1.m4s", "dash-R-2-+1.m4s"} {
		if status, _, _ := hlsGet(t, base+strings.Replace(f, "R", run, 1)); status != 404 {
			t.Errorf("%s: %d; want 404", f, status)
		}
	}
}

// FuzzMediaIndex: mediaIndex takes exactly the names strconv.Itoa writes.
func FuzzMediaIndex(f *testing.F) {
	for _, s := range []string{"0", "7", "10", "007", "+1", "-1", "", "999999999", "1000000000", "1e3", " 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := mediaIndex(s)
		if ok != (strconv.Itoa(n) == s && n >= 0 && n < 1e9) {
			t.Errorf("mediaIndex(%q) = %d, %v", s, n, ok)
		}
	})
}

// TestHLSRefusalsLogged: refused HLS requests are logged at most about
// once a second, with a count of those not logged: an LL-HLS player whose
// sign has expired asks a few dozen times a second, and each refusal was
// a line.
func TestHLSRefusalsLogged(t *testing.T) {
	ts := startServer(t, func(c *config) { c.PlayAuth, c.Secret = true, "s" })
	for range 100 {
		if status, _, _ := hlsGet(t, "http://"+ts.httpAddr+"/live/x/part-abc-1-2.m4s?sign=1-0"); status != 403 {
			t.Fatalf("unsigned part: %d; want 403", status)
		}
	}
	if n := strings.Count(ts.logs.String(), "hls refused"); n == 0 || n > 10 {
		t.Errorf("%d lines for 100 refusals; want one a second", n)
	}
	mark := time.Now()
	waitFor(t, "a second", func() bool { return time.Since(mark) > 1100*time.Millisecond })
	hlsGet(t, "http://"+ts.httpAddr+"/live/x/index.m3u8")
	if !strings.Contains(ts.logs.String(), "unlogged=") {
		t.Errorf("no count of the refusals not logged")
	}
}

// TestHLSSlowReader: a client that asks for a segment and then takes
// nothing is dropped after -ping-timeout, as a silent player is: its
// request held a goroutine and a connection for good once the socket's
// buffers were full (segments of a few megabytes fill them).
func TestHLSSlowReader(t *testing.T) {
	ts := startServer(t, func(c *config) { c.PingTimeout = time.Second })
	key := streamKey{"live", "slowread"}
	fd := startHLSFeed(t, ts, key)
	base := "http://" + ts.httpAddr + "/live/slowread/"
	go hlsGet(t, base+"index.m3u8")
	waitFor(t, "the HLS muxer to join", func() bool { return ts.viewers(key) == 1 })
	ts.web.hls.mu.Lock()
	st := ts.web.hls.streams[key]
	ts.web.hls.mu.Unlock()
	nal := make([]byte, 400<<10) // 10 MB a second at 25 fps
	nal[0] = 0x41
	for i := range 60 {
		body := binary.BigEndian.AppendUint32(bs(0x27, 1, 0, 0, 0), uint32(len(nal)))
		if i%25 == 0 {
			body[0] = 0x17
		}
		fd.p.ingest(msgVideo, uint32(i*40), append(body, nal...))
		if i%5 == 4 {
			fd.p.hub.sync()
			waitFor(t, "the HLS muxer to mux the frames", func() bool { return st.sub.queueLen() == 0 && st.sub.queued.Load() == 0 })
		}
	}
	st.mu.Lock()
	seg := fmt.Sprintf("seg-%s-%d.m4s", st.runID, st.segments[0].msn)
	size := slicesLen(func() (d [][]byte) {
		for _, p := range st.segments[0].parts {
			d = append(d, p.data)
		}
		return d
	}())
	st.mu.Unlock()
	if size < 8<<20 {
		t.Fatalf("segment of %d bytes; want more than the socket buffers hold", size)
	}
	c, err := net.Dial("tcp", ts.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(c, "GET /live/slowread/%s HTTP/1.1\r\nHost: x\r\n\r\n", seg)
	waitFor(t, "the request to end", func() bool { return strings.Contains(ts.logs.String(), "path=/live/slowread/"+seg) })
}

// feedInRealTime feeds fd from media time from on, at the wall clock's
// pace, until the returned stop is called.
func (fd *hlsFeeder) feedInRealTime(from int64) (stop func()) {
	done := make(chan struct{})
	var feeding sync.WaitGroup
	feeding.Go(func() {
		start := time.Now()
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			fd.feedUpTo(from + time.Since(start).Milliseconds())
		}
	})
	return func() { close(done); feeding.Wait() }
}

// TestHLSAtEdge: an edge (-origin) serves HLS of a stream published on
// its origin to viewers that ask for nothing else: the first playlist
// request starts the pull, as a player's does. It was 404 until some
// RTMP or HTTP-FLV player made the edge pull the stream.
func TestHLSAtEdge(t *testing.T) {
	origin := startServer(t, nil)
	edge := startServer(t, func(c *config) { c.Origins = []string{"rtmp://" + origin.rtmpAddr} })
	key := streamKey{"live", "edged"}
	fd := startHLSFeed(t, origin, key)
	defer fd.feedInRealTime(0)() // as the pull plays it
	status, _, body := hlsGet(t, "http://"+edge.httpAddr+"/live/edged/index.m3u8")
	if status != 200 {
		t.Fatalf("playlist at the edge: %d %s", status, body)
	}
	if pl := parseM3U8(t, body); len(pl.segments) == 0 {
		t.Errorf("playlist at the edge lists no segment:\n%s", body)
	}
}

// TestHLSEdgePullsBounded: the muxers an edge starts for streams it has
// to pull first cost no connection once their requests are gone, so at
// most hlsMaxPendingPulls of them wait at once: past that, a playlist
// request for another stream not live is 404 at once, and starts no pull.
func TestHLSEdgePullsBounded(t *testing.T) {
	origin := startServer(t, nil)
	edge := startServer(t, func(c *config) { c.Origins = []string{"rtmp://" + origin.rtmpAddr} })
	hs := edge.web.hls
	hs.mu.Lock()
	hs.maxPendingPulls = 2
	hs.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 2 {
		req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://%s/live/madeup%d/index.m3u8", edge.httpAddr, i), nil)
		go func() {
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	waitFor(t, "two muxers waiting for their pulls", func() bool {
		hs.mu.Lock()
		defer hs.mu.Unlock()
		return hs.pendingPulls == 2
	})
	status, _, body := hlsGet(t, "http://"+edge.httpAddr+"/live/madeup2/index.m3u8")
	if status != 404 || !strings.Contains(string(body), "is not live") {
		t.Errorf("a third stream to pull: %d %q; want 404 not live", status, body)
	}
	if l := relayList(t, edge); len(l) != 2 {
		t.Errorf("%d pulls; want 2", len(l))
	}
}
