package main

// HLS's HTTP side: the media playlist (RFC 8216bis §4.4, with LL-HLS's
// tags), rendered once per change and shared by every viewer waiting for
// it; blocking reloads and delta updates (§6.2.5); and the init segments,
// segments and parts it lists, immutable and served with byte ranges. The
// muxer that makes them is hls.go.

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ---- Playlists ----

// targetDuration is EXT-X-TARGETDURATION: every segment's duration,
// rounded to the nearest second, at most this (§4.4.3.1). st.mu is held.
func (st *hlsStream) targetDuration() int {
	return max(int(math.Round(st.srv.cfg.HLSSegment.Seconds())), int(math.Round(st.maxDur)), 1)
}

// window is the complete segments a playlist lists, and the open one.
// st.mu is held.
func (st *hlsStream) window() (complete []*hlsSegment, open *hlsSegment) {
	segs := st.segments
	if n := len(segs); n > 0 && !segs[n-1].complete {
		open, segs = segs[n-1], segs[:n-1]
	}
	if w := st.srv.cfg.HLSWindow; len(segs) > w {
		segs = segs[len(segs)-w:]
	}
	return segs, open
}

// playlist writes the media playlist (§4.4, with LL-HLS's §4.4.4.9,
// §4.4.5.2, §4.4.5.3, §4.4.3.8 tags). query is appended to every URI
// (the viewer's sign). skip asks for a delta update (§6.2.5.1). st.mu is
// held.
func (st *hlsStream) playlist(query string, skip bool) []byte {
	cfg := st.srv.cfg
	ll := cfg.HLSPart > 0
	segs, open := st.window()
	td := st.targetDuration()
	var b strings.Builder
	b.WriteString("#EXTM3U\n")
	if ll {
		b.WriteString("#EXT-X-VERSION:9\n") // EXT-X-SKIP needs 9 (§4.4.5.2)
	} else {
		b.WriteString("#EXT-X-VERSION:6\n") // EXT-X-MAP in a playlist without I-frames only
	}
	fmt.Fprintf(&b, "#EXT-X-TARGETDURATION:%d\n", td)
	skipUntil := float64(6 * td) // CAN-SKIP-UNTIL: at least six target durations (§4.4.3.8)
	if ll {
		partTarget := float64(st.partTarget) / 1000
		if st.partTarget == 0 { // no two frames yet (a playlist waits for a segment: not seen)
			partTarget = cfg.HLSPart.Seconds()
		}
		fmt.Fprintf(&b, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=%.1f,PART-HOLD-BACK=%.3f\n",
			skipUntil, 3*partTarget) // PART-HOLD-BACK: at least three part targets
		fmt.Fprintf(&b, "#EXT-X-PART-INF:PART-TARGET=%.3f\n", partTarget)
	}
	first := st.nextMSN
	if len(segs) > 0 {
		first = segs[0].msn
	} else if open != nil {
		first = open.msn
	}
	fmt.Fprintf(&b, "#EXT-X-MEDIA-SEQUENCE:%d\n", first)
	discSeq := st.discSeq
	if len(segs) > 0 {
		discSeq = segs[0].discSeq
		if segs[0].discontinuity {
			discSeq--
		}
	} else if open != nil && open.discontinuity {
		discSeq--
	}
	fmt.Fprintf(&b, "#EXT-X-DISCONTINUITY-SEQUENCE:%d\n", discSeq)
	b.WriteString("#EXT-X-INDEPENDENT-SEGMENTS\n")

	// Seconds from each segment's start to the playlist's end: parts are
	// listed for the last three target durations (§4.4.4.9), and a delta
	// update leaves out what is older than CAN-SKIP-UNTIL.
	total := 0.0
	for _, s := range segs {
		total += s.dur
	}
	if open != nil {
		for _, p := range open.parts {
			total += p.dur
		}
	}
	skipped := 0
	if ll && skip {
		before := 0.0
		for _, s := range segs {
			if total-before-s.dur <= skipUntil {
				break
			}
			before += s.dur
			skipped++
		}
		if skipped > 0 {
			fmt.Fprintf(&b, "#EXT-X-SKIP:SKIPPED-SEGMENTS=%d\n", skipped)
		}
	}
	elapsed := 0.0
	prevEpoch := -1
	for i, s := range segs {
		if i < skipped {
			elapsed += s.dur // its EXT-X-MAP is written again before the first segment listed
			continue
		}
		st.writeSegmentHead(&b, s, prevEpoch, query)
		prevEpoch = s.epoch
		// Without an open segment (between publishes, or a codec change
		// before its keyframe) no parts: hls.js takes a playlist with
		// parts to go on in the same discontinuity sequence, and refuses
		// the next one's EXT-X-DISCONTINUITY ("discontinuity sequence
		// mismatch"). Parts of complete segments are optional (§4.4.4.9).
		if ll && open != nil && total-elapsed <= float64(3*td) {
			st.writeParts(&b, s, query)
		}
		fmt.Fprintf(&b, "#EXTINF:%.3f,\n%s\n", s.dur, st.uri(fmt.Sprintf("seg-%s-%d.m4s", st.runID, s.msn), query))
		elapsed += s.dur
	}
	if ll && open != nil {
		st.writeSegmentHead(&b, open, prevEpoch, query)
		st.writeParts(&b, open, query)
		// §4.4.5.3: the part that comes next; a request for it is held
		// until it is made.
		fmt.Fprintf(&b, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"%s\"\n",
			st.uri(fmt.Sprintf("part-%s-%d-%d.m4s", st.runID, open.msn, len(open.parts)), query))
	}
	return []byte(b.String())
}

func (st *hlsStream) writeSegmentHead(b *strings.Builder, s *hlsSegment, prevEpoch int, query string) {
	if s.discontinuity {
		b.WriteString("#EXT-X-DISCONTINUITY\n")
	}
	if s.epoch != prevEpoch {
		fmt.Fprintf(b, "#EXT-X-MAP:URI=\"%s\"\n", st.uri(fmt.Sprintf("init-%s-%d.mp4", st.runID, s.epoch), query))
	}
	fmt.Fprintf(b, "#EXT-X-PROGRAM-DATE-TIME:%s\n", s.start.UTC().Format("2006-01-02T15:04:05.000Z"))
}

func (st *hlsStream) writeParts(b *strings.Builder, s *hlsSegment, query string) {
	for i, p := range s.parts {
		fmt.Fprintf(b, "#EXT-X-PART:DURATION=%.3f,URI=\"%s\"", p.dur, st.uri(fmt.Sprintf("part-%s-%d-%d.m4s", st.runID, s.msn, i), query))
		if p.independent {
			b.WriteString(",INDEPENDENT=YES")
		}
		b.WriteString("\n")
	}
}

func (st *hlsStream) uri(name, query string) string {
	if query == "" {
		return name
	}
	return name + "?" + query
}

// ---- HTTP ----

// serveHLS answers /APP/NAME/FILE: the playlist, init segments,
// segments and parts.
func (s *httpServer) serveHLS(w http.ResponseWriter, r *http.Request) {
	app, name, file := r.PathValue("app"), r.PathValue("name"), r.PathValue("file")
	if !validName(app) || !validName(name) {
		http.Error(w, http.StatusText(http.StatusBadRequest), http.StatusBadRequest)
		return
	}
	key := streamKey{app, name}
	if !s.cfg.HLS {
		http.Error(w, "Not Found: HLS is off (-hls=false)", http.StatusNotFound)
		return
	}
	info := clientInfo{IP: hostOf(r.RemoteAddr), Protocol: protoHLS, Query: r.URL.RawQuery, Proxied: forwarded(r)}
	// A viewer's first playlist (or MPD) request asks the play hook too,
	// as an HTTP-FLV play does; its reloads, segments and parts only
	// check the sign (a hook per request would be several a second).
	viewer := viewerDigest(key.String(), info.IP, r.UserAgent(), carriedQuery(r.URL.Query()))
	manifest := file == "index.m3u8" || file == "index.mpd"
	// A HEAD (a probe) is no viewer: only the sign is checked, and the
	// viewer is not noted as admitted.
	hooked := manifest && r.Method != http.MethodHead
	check := s.admit.checkSign
	if hooked && !s.hls.admittedLately(viewer) {
		info.ID, info.Created = newClientID(), time.Now()
		check = s.admit.check
	}
	if err := check(actPlay, key, info); err != nil {
		if errors.Is(err, errDraining) {
			http.Error(w, "Service Unavailable: "+errDraining.Error(), http.StatusServiceUnavailable)
			return
		}
		if unlogged, ok := s.hls.logRefusal(); ok {
			s.log.Info("hls refused", "remote", r.RemoteAddr, "stream", key.String(), "file", file, "reason", err,
				"unlogged", unlogged)
		}
		http.Error(w, "Forbidden: "+refusalText, http.StatusForbidden)
		return
	}
	if hooked {
		s.hls.admitted(viewer)
	}
	cw := &countingWriter{ResponseWriter: w}
	defer func() { s.hub.counters.bytesOut.Add(cw.n) }()
	w = cw
	var st *hlsStream
	if file == "index.m3u8" || file == "index.mpd" {
		st = s.hls.stream(key)
	} else {
		s.hls.mu.Lock()
		st = s.hls.streams[key]
		s.hls.mu.Unlock()
	}
	if st == nil {
		http.Error(w, "Not Found: stream "+key.String()+" is not live", http.StatusNotFound)
		return
	}
	switch {
	case file == "index.m3u8":
		st.servePlaylist(w, r)
	case file == "index.mpd":
		st.serveMPD(w, r) // dash.go
	case strings.HasPrefix(file, "dashinit-") && strings.HasSuffix(file, ".mp4"):
		st.serveDASHInit(w, r, file)
	case strings.HasPrefix(file, "dash-") && strings.HasSuffix(file, ".m4s"):
		st.serveMedia(w, r, file)
	case strings.HasPrefix(file, "init-") && strings.HasSuffix(file, ".mp4"):
		st.serveInit(w, r, file)
	case strings.HasPrefix(file, "seg-") && strings.HasSuffix(file, ".m4s"),
		strings.HasPrefix(file, "part-") && strings.HasSuffix(file, ".m4s"):
		st.serveMedia(w, r, file)
	default:
		http.Error(w, http.StatusText(http.StatusNotFound), http.StatusNotFound)
	}
}

// countingWriter counts the body bytes of an HLS answer, for the
// server's bytes out. http.ServeContent and http.Error find nothing
// more on it than Header, Write and WriteHeader.
type countingWriter struct {
	http.ResponseWriter
	n uint64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n += uint64(n)
	return n, err
}

// carriedQuery is what of a playlist request's query its URIs carry: all
// but the _HLS_ directives (the sign, a hook's token).
func carriedQuery(q url.Values) string {
	kept := url.Values{}
	for k, v := range q {
		if !strings.HasPrefix(k, "_HLS_") {
			kept[k] = v
		}
	}
	return kept.Encode()
}

// servePlaylist answers a playlist request, holding a blocking reload
// (§6.2.5.2) until the part or segment it asks for exists.
func (st *hlsStream) servePlaylist(w http.ResponseWriter, r *http.Request) {
	cfg := st.srv.cfg
	q := r.URL.Query()
	query := carriedQuery(q)
	skip := q.Get("_HLS_skip") == "YES" || q.Get("_HLS_skip") == "v2"
	msnStr, partStr := q.Get("_HLS_msn"), q.Get("_HLS_part")
	blocking := msnStr != "" && cfg.HLSPart > 0 // plain HLS ignores the directives
	st.mu.Lock()
	defer st.mu.Unlock()
	st.seen(r)
	td := time.Duration(st.targetDuration()) * time.Second
	switch {
	case partStr != "" && msnStr == "" && cfg.HLSPart > 0:
		http.Error(w, "Bad Request: _HLS_part without _HLS_msn", http.StatusBadRequest)
		return
	case blocking:
		msn, err1 := strconv.Atoi(msnStr)
		part, err2 := -1, error(nil)
		if partStr != "" {
			part, err2 = strconv.Atoi(partStr)
		}
		if err1 != nil || err2 != nil || msn < 0 || part < -1 {
			http.Error(w, "Bad Request: _HLS_msn and _HLS_part are numbers", http.StatusBadRequest)
			return
		}
		if reason := st.tooFarAhead(msn, part); reason != "" {
			http.Error(w, "Bad Request: "+reason, http.StatusBadRequest)
			return
		}
		// §6.2.5.2: a server that cannot answer within three target
		// durations should say 503.
		if !st.waitFor(r, time.Now().Add(3*td), func() bool { return st.has(msn, part) }) {
			http.Error(w, "Service Unavailable: the part did not come in time", http.StatusServiceUnavailable)
			return
		}
	default:
		ok := st.waitFor(r, time.Now().Add(hlsFirstWait), func() bool {
			segs, _ := st.window()
			return len(segs) > 0
		})
		if !ok {
			http.Error(w, "Not Found: stream "+st.key.String()+" has no segment yet", http.StatusNotFound)
			return
		}
		if holdBack := 3 * time.Duration(st.partTarget) * time.Millisecond; holdBack > 0 {
			// A player starts PART-HOLD-BACK from the end, from the
			// independent part at or before that point. Right after a
			// keyframe, that part is a whole GOP back (hls.js loads it
			// and every part after it before it plays, and plays later
			// the longer that takes): the playlist waits, for PART-
			// HOLD-BACK and a part at most, until the newest independent
			// part is far enough back to start at.
			partTarget := time.Duration(st.partTarget) * time.Millisecond
			st.waitFor(r, time.Now().Add(holdBack+partTarget), func() bool { return st.sinceIndependent() >= holdBack.Seconds()-1e-9 })
		}
	}
	body := st.cachedPlaylist(query, skip)
	h := w.Header()
	h.Set("Content-Type", "application/vnd.apple.mpegurl")
	// Short: a playlist changes every part. A blocking reload's answer is
	// the playlist as its part came, the same for every viewer asking.
	if blocking {
		h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(3*td/time.Second)))
	} else {
		h.Set("Cache-Control", "public, max-age=1")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

// renderedPlaylist is a playlist as rendered at a version, for a query.
type renderedPlaylist struct {
	version int
	query   string
	body    []byte
}

// cachedPlaylist is playlist(query, skip), rendered once per change: a
// blocking reload wakes every viewer waiting for the part at once, and
// all of them get the same bytes (unless signed URLs give each its own
// query). st.mu is held.
func (st *hlsStream) cachedPlaylist(query string, skip bool) []byte {
	c := &st.rendered[0]
	if skip {
		c = &st.rendered[1]
	}
	if c.body == nil || c.version != st.version || c.query != query {
		*c = renderedPlaylist{st.version, query, st.playlist(query, skip)}
	}
	return c.body
}

// sinceIndependent is how much media, in seconds, the parts from the
// newest independent one to the end hold (a segment begins with one: an
// open segment without parts yet holds none). st.mu is held.
func (st *hlsStream) sinceIndependent() float64 {
	total := 0.0
	if n := len(st.segments); n > 0 {
		parts := st.segments[n-1].parts
		for j := len(parts) - 1; j >= 0; j-- {
			total += parts[j].dur
			if parts[j].independent {
				break
			}
		}
	}
	return total
}

// tooFarAhead says why a blocking reload asks for more than may come
// soon, or "": _HLS_msn past the last segment plus two, or _HLS_part
// past the last part by the Advance Part Limit (§6.2.5.2). st.mu is held.
func (st *hlsStream) tooFarAhead(msn, part int) string {
	lastMSN := st.nextMSN - 1 // the open segment; the last complete one is before it
	if msn > lastMSN+2 {
		return fmt.Sprintf("_HLS_msn %d is past the last segment %d plus two", msn, lastMSN)
	}
	limit := 3
	if p := float64(st.partTarget) / 1000; p > 0 && p < 1 {
		limit = int(math.Ceil(3 / p))
	}
	lastPart := 0
	if n := len(st.segments); n > 0 && st.segments[n-1].msn == msn {
		lastPart = len(st.segments[n-1].parts) - 1
	}
	if part > lastPart+limit {
		return fmt.Sprintf("_HLS_part %d is past the last part %d by more than %d", part, lastPart, limit)
	}
	return ""
}

// has tells whether part of segment msn (part -1: the whole segment) or
// anything after it exists. st.mu is held.
func (st *hlsStream) has(msn, part int) bool {
	for _, s := range st.segments {
		switch {
		case s.msn > msn && len(s.parts) > 0:
			return true
		case s.msn == msn && part < 0 && s.complete:
			return true
		case s.msn == msn && part >= 0 && len(s.parts) > part:
			return true
		}
	}
	return false
}

// mediaIndex reads a number in a segment, part or init segment name as
// manifests write it (strconv.Itoa): digits, no sign, no leading zero,
// at most nine, so that one file has one name (a cache keeps it once,
// under one ETag) and no number overflows.
func mediaIndex(s string) (int, bool) {
	if s == "" || len(s) > 9 || s[0] == '0' && len(s) > 1 || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// serveInit answers an init segment.
func (st *hlsStream) serveInit(w http.ResponseWriter, r *http.Request, file string) {
	run, epochStr, _ := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(file, "init-"), ".mp4"), "-")
	epoch, ok := mediaIndex(epochStr)
	st.mu.Lock()
	ep := st.epochs[epoch]
	st.mu.Unlock()
	if run != st.runID || !ok || ep == nil {
		http.Error(w, "Not Found: no such init segment (gone, or from an earlier run)", http.StatusNotFound)
		return
	}
	writeImmutable(w, r, "video/mp4", file, [][]byte{ep.init})
}

// serveMedia answers a segment or a part; a request for the part (or
// segment) being made is held until it is made.
func (st *hlsStream) serveMedia(w http.ResponseWriter, r *http.Request, file string) {
	kind, rest, _ := strings.Cut(strings.TrimSuffix(file, ".m4s"), "-")
	fields := strings.Split(rest, "-")
	// seg-RUN-MSN, part-RUN-MSN-PART, dash-RUN-MSN-TRACK: the third number
	// is a part or a track.
	want := map[string]int{"seg": 2, "part": 3, "dash": 3}[kind]
	if len(fields) != want || fields[0] != st.runID {
		http.Error(w, "Not Found: no such segment (gone, or from an earlier run)", http.StatusNotFound)
		return
	}
	msn, ok1 := mediaIndex(fields[1])
	third, ok2 := -1, true
	if want == 3 {
		third, ok2 = mediaIndex(fields[2])
	}
	if !ok1 || !ok2 {
		http.Error(w, http.StatusText(http.StatusNotFound), http.StatusNotFound)
		return
	}
	part, track := third, -1
	if kind == "dash" {
		part, track = -1, third
	}
	st.mu.Lock()
	td := time.Duration(st.targetDuration()) * time.Second
	var data [][]byte
	found := func() bool {
		for _, s := range st.segments {
			if s.msn != msn {
				continue
			}
			switch {
			case part >= 0 && part < len(s.parts):
				data = [][]byte{s.parts[part].data}
				return true
			case part < 0 && s.complete:
				data = data[:0]
				for _, p := range s.parts {
					if track < 0 {
						data = append(data, p.data)
					} else if track < len(p.tracks) {
						data = append(data, p.tracks[track])
					}
				}
				return true
			}
		}
		return false
	}
	// Only what is being made, or comes next, is waited for.
	soon := msn >= st.nextMSN-1 && msn <= st.nextMSN
	ok := found() || soon && st.waitFor(r, time.Now().Add(3*td), found)
	st.mu.Unlock()
	if !ok || track >= 0 && slicesLen(data) == 0 {
		http.Error(w, "Not Found: no such segment (not made, or past the window)", http.StatusNotFound)
		return
	}
	writeImmutable(w, r, "video/iso.segment", file, data)
}

// writeImmutable answers bytes that never change under their URL: any
// cache may keep them as long as it likes (RFC 8246). The ETag names the
// content (the file name carries the run, the epoch or the sequence
// number), so revalidation and Range requests (RFC 9110 §14) come from
// http.ServeContent over the shared bytes, never a copy.
func writeImmutable(w http.ResponseWriter, r *http.Request, contentType, etag string, data [][]byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("ETag", `"`+etag+`"`)
	if plainGet(r) {
		// The common case, every LL-HLS part: the bytes as they are,
		// without ServeContent's copy through a buffer.
		h.Set("Accept-Ranges", "bytes")
		h.Set("Content-Length", strconv.FormatInt(slicesLen(data), 10))
		for _, b := range data {
			if _, err := w.Write(b); err != nil {
				return
			}
		}
		return
	}
	http.ServeContent(w, r, "", time.Time{}, io.NewSectionReader(slicesReader(data), 0, slicesLen(data)))
}

// plainGet: a GET with none of the headers that ServeContent answers
// (RFC 9110 §13 preconditions, §14 ranges).
func plainGet(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	for _, name := range []string{"Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"} {
		if r.Header.Get(name) != "" {
			return false
		}
	}
	return true
}

// slicesReader reads byte slices as one.
type slicesReader [][]byte

func (s slicesReader) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for _, b := range s {
		if off >= int64(len(b)) {
			off -= int64(len(b))
			continue
		}
		c := copy(p[n:], b[off:])
		n, off = n+c, 0
		if n == len(p) {
			return n, nil
		}
	}
	return n, io.EOF
}

func slicesLen(s [][]byte) int64 {
	var n int64
	for _, b := range s {
		n += int64(len(b))
	}
	return n
}
