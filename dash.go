package main

// MPEG-DASH (ISO/IEC 23009-1, the isoff-live profile) beside the HLS
// muxer's segments: /APP/NAME/index.mpd is a dynamic MPD whose
// SegmentTimeline lists the same segments as index.m3u8. DASH players
// (dash.js, Shaka, ffmpeg) take one track a Representation, so from the
// first MPD request on each part also keeps each track's samples as a
// fragment of its own (the samples' bytes once more, for that stream
// only), and a DASH segment is a track's fragments of the HLS segment's
// parts. A Period per epoch (publish or codec configuration).

import (
	"fmt"
	"html"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// serveMPD answers index.mpd, once the stream has a complete segment.
func (st *hlsStream) serveMPD(w http.ResponseWriter, r *http.Request) {
	st.dash.Store(true)
	query := carriedQuery(r.URL.Query())
	st.mu.Lock()
	defer st.mu.Unlock()
	st.seen(r) // hls.go
	ok := st.waitFor(r, time.Now().Add(hlsFirstWait), func() bool { return len(st.dashWindow()) > 0 })
	if !ok {
		http.Error(w, "Not Found: stream "+st.key.String()+" has no segment yet", http.StatusNotFound)
		return
	}
	body := st.mpd(query, time.Now())
	h := w.Header()
	h.Set("Content-Type", "application/dash+xml")
	h.Set("Cache-Control", "public, max-age=1")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

// mpd writes the manifest (ISO/IEC 23009-1 §5.3). st.mu is held.
func (st *hlsStream) mpd(query string, now time.Time) []byte {
	segs := st.dashWindow()
	td := st.targetDuration()
	ast := st.epochs[segs[0].epoch].zero
	for _, s := range segs {
		if z := st.epochs[s.epoch].zero; z.Before(ast) {
			ast = z
		}
	}
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	fmt.Fprintf(&b, `<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="dynamic"`+
		` availabilityStartTime="%s" publishTime="%s" minimumUpdatePeriod="PT%dS" minBufferTime="PT%dS"`+
		` timeShiftBufferDepth="PT%dS" suggestedPresentationDelay="PT%dS" maxSegmentDuration="PT%dS">`+"\n",
		ast.UTC().Format("2006-01-02T15:04:05.000Z"), now.UTC().Format("2006-01-02T15:04:05.000Z"),
		td, td, td*st.srv.cfg.HLSWindow, 3*td, td)
	for i := 0; i < len(segs); {
		j := i
		for j < len(segs) && segs[j].epoch == segs[i].epoch {
			j++
		}
		st.writePeriod(&b, segs[i:j], ast, query)
		i = j
	}
	b.WriteString("</MPD>\n")
	return []byte(b.String())
}

// dashWindow is the window's segments whose every part has each track's
// fragment (those made since DASH was first asked for). st.mu is held.
func (st *hlsStream) dashWindow() []*hlsSegment {
	segs, _ := st.window()
	for len(segs) > 0 && segs[0].parts[0].tracks == nil {
		segs = segs[1:]
	}
	return segs
}

// writePeriod writes one epoch's Period (§5.3.2): an AdaptationSet a
// track, all on the same SegmentTimeline.
func (st *hlsStream) writePeriod(b *strings.Builder, segs []*hlsSegment, ast time.Time, query string) {
	epoch := segs[0].epoch
	ep := st.epochs[epoch]
	fmt.Fprintf(b, `  <Period id="%d" start="PT%.3fS">`+"\n", epoch, ep.zero.Sub(ast).Seconds())
	secs := 0.0
	for _, s := range segs {
		secs += s.dur
	}
	for i, tr := range ep.tracks {
		bytes := 0
		for _, s := range segs {
			for _, p := range s.parts {
				if i < len(p.tracks) {
					bytes += len(p.tracks[i])
				}
			}
		}
		mime := "audio/mp4"
		if tr.video {
			mime = "video/mp4"
		}
		fmt.Fprintf(b, `    <AdaptationSet id="%d" contentType="%s" mimeType="%s" segmentAlignment="true" startWithSAP="1">`+"\n",
			i, mime[:5], mime)
		fmt.Fprintf(b, `      <Representation id="%d" codecs="%s" bandwidth="%d"`, i, ep.codecs[i], int(math.Ceil(8*float64(bytes)/max(secs, 0.001))))
		if tr.video && tr.width > 0 && tr.height > 0 {
			fmt.Fprintf(b, ` width="%d" height="%d"`, tr.width, tr.height)
		}
		if !tr.video {
			fmt.Fprintf(b, ` audioSamplingRate="%d"`, tr.rate)
		}
		b.WriteString(">\n")
		fmt.Fprintf(b, `        <SegmentTemplate timescale="1000" initialization="%s" media="%s" startNumber="%d">`+"\n",
			html.EscapeString(st.uri(fmt.Sprintf("dashinit-%s-%d-%d.mp4", st.runID, epoch, i), query)),
			html.EscapeString(st.uri(fmt.Sprintf("dash-%s-$Number$-%d.m4s", st.runID, i), query)), segs[0].msn)
		b.WriteString("          <SegmentTimeline>\n")
		for _, s := range segs {
			fmt.Fprintf(b, `            <S t="%d" d="%d"/>`+"\n", s.startMs, int64(math.Round(s.dur*1000)))
		}
		b.WriteString("          </SegmentTimeline>\n        </SegmentTemplate>\n      </Representation>\n    </AdaptationSet>\n")
	}
	b.WriteString("  </Period>\n")
}

// serveDASHInit answers a track's init segment: dashinit-RUN-EPOCH-TRACK.mp4.
func (st *hlsStream) serveDASHInit(w http.ResponseWriter, r *http.Request, file string) {
	fields := strings.Split(strings.TrimSuffix(strings.TrimPrefix(file, "dashinit-"), ".mp4"), "-")
	var ep *hlsEpoch
	track := -1
	if len(fields) == 3 && fields[0] == st.runID {
		epoch, ok1 := mediaIndex(fields[1]) // hls.go
		t, ok2 := mediaIndex(fields[2])
		st.mu.Lock()
		ep = st.epochs[epoch]
		st.mu.Unlock()
		if ok1 && ok2 {
			track = t
		}
	}
	if ep == nil || track < 0 || track >= len(ep.trackInits) {
		http.Error(w, "Not Found: no such init segment (gone, or from an earlier run)", http.StatusNotFound)
		return
	}
	writeImmutable(w, r, "video/mp4", file, [][]byte{ep.trackInits[track]})
}
