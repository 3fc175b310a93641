package main

// MP4 recordings (-record-format mp4, NMS trans tasks with mp4: true):
// the recording's FLV tags go through fmp4.go's muxer into a fragmented
// MP4 file (ISO/IEC 14496-12 §8.8): the init segment (ftyp, moov with
// mvex) first, then one fragment (moof, mdat) per GOP, or per
// mp4FragmentMax when GOPs are long. Every fragment is written as soon
// as it ends, so a crash loses at most one fragment, and a file cut
// short is readable up to its last whole fragment. At the end an mfra
// indexes the fragments that start with a keyframe. New codec parameters
// mid-publish (a new sequence header) need a new init segment: the file
// ends there and the recording goes on in a new one.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"time"
)

// A fragment ends before the first keyframe at least mp4FragmentMin after
// its start, or before any frame of the lead track at mp4FragmentMax
// (a GOP longer than that is cut mid-GOP: fragments need not start with
// a sync sample, §8.8.3.1's flags say which samples are).
const (
	mp4FragmentMin = 1000 // ms
	mp4FragmentMax = 2000 // ms
)

// mp4Recording is the writer of one publish's MP4 recording.
type mp4Recording struct {
	r   *recorder
	key streamKey
	f   *os.File
	rec *recording
	log *slog.Logger

	mux                      *fmp4Muxer
	videoHeader, audioHeader []byte
	width, height            int
	lead                     uint8 // the track that cuts: video, or audio in an audio-only stream
	started                  bool  // the first lead keyframe has come
	clock                    msClock
	fragStart                int64 // ms on clock
	queued                   int   // samples in the open fragment
	warned                   bool
	buf                      []byte
	index                    []tfraEntry // for mfra at the end; nil after too many
	noIndex                  bool
}

// tfraEntry is a fragment whose first sample of a track is a sync sample:
// a place to start playing, for the mfra written at the end (§8.8.10).
type tfraEntry struct {
	track   uint32
	traf    uint8 // the track's traf among the moof's, from 1
	time    int64 // presentation time, in the track's timescale
	moofOff int64
}

// maxTFRAEntries bounds an MP4 recording's index (two entries a fragment
// a second: a day and a half). A longer recording gets no mfra.
const maxTFRAEntries = 1 << 18

// writeMP4 runs one MP4 recording until its publish ends or a file fails.
func (r *recorder) writeMP4(sub *subscriber, key streamKey, rec *recording) {
	w := &mp4Recording{r: r, key: key}
	if err := w.open(rec); err != nil {
		r.errors.Add(1)
		r.log.Error("record: cannot create file", "stream", key.String(), "err", err)
		sub.hub.untap(sub) // what was queued goes with sub
		return
	}
	err := sub.pumpBlocking(func(b *net.Buffers) error {
		for _, tag := range *b {
			if err := w.tag(tag); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, errSubscriptionEnded) {
		w.close() // what was written stays readable
		r.errors.Add(1)
		sub.hub.untap(sub)
		w.log.Error("record: stopped by an error; the stream goes on", "err", err, "bytes", w.rec.bytes.Load())
		return
	}
	if err := w.close(); err != nil {
		r.errors.Add(1)
		w.log.Error("record: closing the file", "err", err)
		return
	}
	if w.rec.bytes.Load() > 0 {
		w.log.Info("record: finished", "bytes", w.rec.bytes.Load(), "duration", w.rec.duration())
	}
}

// open creates rec's file and lists it as active.
func (w *mp4Recording) open(rec *recording) error {
	f, err := w.r.create(w.key, rec)
	if err != nil {
		return err
	}
	w.f, w.rec = f, rec
	w.log = w.r.log.With("stream", w.key.String(), "file", rec.rel)
	w.log.Info("record: started")
	w.r.mu.Lock()
	w.r.active[rec.rel] = rec
	w.r.mu.Unlock()
	return nil
}

// close writes the open fragment and closes the file. A file with
// nothing in it (the publisher left before its first frame) is removed:
// it is no recording, and players cannot open it.
func (w *mp4Recording) close() error {
	err := w.cut(0, 0)
	if err == nil && len(w.index) > 0 {
		err = w.write(appendMFRA(nil, w.index))
	}
	w.index, w.noIndex = nil, false
	err = errors.Join(err, w.f.Close())
	w.r.mu.Lock()
	delete(w.r.active, w.rec.rel)
	w.r.mu.Unlock()
	if err == nil && w.rec.bytes.Load() == 0 {
		err = os.Remove(w.f.Name())
		w.log.Info("record: nothing recorded; no file kept")
	}
	return err
}

// tag takes one FLV tag (or the FLV header, skipped) from the hub.
func (w *mp4Recording) tag(tag []byte) error {
	if len(tag) < flvTagHeaderLen+4 || tag[0] == 'F' {
		return nil
	}
	typ, ms := tag[0], tagTime(tag)
	body := tag[flvTagHeaderLen : len(tag)-4]
	switch {
	case typ == msgDataAMF0:
		if _, meta, ok := parseMetadata(body); ok && meta != nil {
			w.width, w.height = metaInt(meta.values, "width"), metaInt(meta.values, "height")
			if w.audioHeader == nil {
				w.audioHeader = mp3HeaderOf(meta.values)
			}
		}
		return nil
	case typ == msgVideo:
		if header, _ := videoInfo(body); header {
			return w.setHeader(&w.videoHeader, body)
		}
	case typ == msgAudio:
		if audioIsHeader(body) {
			return w.setHeader(&w.audioHeader, body)
		}
		if w.audioHeader == nil && mp3Frame(body) {
			if err := w.setHeader(&w.audioHeader, body); err != nil { // and muxed: MP3 has no header
				return err
			}
		}
	default:
		return nil
	}
	return w.media(typ, ms, body)
}

// setHeader keeps a sequence header. A new one after the init segment is
// written ends the file; the next keyframe starts a new one.
func (w *mp4Recording) setHeader(dst *[]byte, body []byte) error {
	if string(*dst) == string(body) {
		return nil
	}
	*dst = body // shared, read-only frame bytes: no copy
	if w.mux == nil {
		return nil
	}
	w.log.Info("record: new codec parameters; the recording goes on in a new file")
	if err := w.close(); err != nil {
		return err
	}
	w.log.Info("record: finished", "bytes", w.rec.bytes.Load(), "duration", w.rec.duration())
	w.mux, w.started, w.queued = nil, false, 0
	return w.open(newRecording("mp4"))
}

// media muxes one audio or video frame, ending the open fragment before
// it when it starts a new one.
func (w *mp4Recording) media(typ uint8, ms uint32, body []byte) error {
	if w.mux == nil {
		if w.videoHeader == nil && w.audioHeader == nil {
			return nil
		}
		if w.width == 0 && typ == msgVideo {
			w.width, w.height = keyFrameSize(body) // VP9: vpcC has no size
		}
		mux, err := newFMP4Muxer(w.videoHeader, w.audioHeader, w.width, w.height)
		if err != nil {
			w.log.Warn("record: a track cannot be muxed", "err", err)
		}
		if len(mux.tracks) == 0 {
			return nil
		}
		w.mux, w.lead, w.warned = mux, msgAudio, false
		if mux.video != nil {
			w.lead = msgVideo
		}
		if err := w.write(mux.init()); err != nil {
			return err
		}
	}
	fm, err := w.mux.parse(typ, body)
	if err != nil {
		if !w.warned {
			w.warned = true
			w.log.Warn("record: frame not muxed", "err", err)
		}
		return nil
	}
	if fm.kind != mediaFrame {
		return nil
	}
	isLead := typ == w.lead
	key := isLead && (typ == msgAudio || fm.key)
	if !w.started {
		if !key {
			return nil
		}
		w.started, w.clock = true, msClock{}
		w.fragStart = w.clock.at(ms)
	}
	if isLead {
		t := w.clock.at(ms)
		if elapsed := t - w.fragStart; w.queued > 0 && (key && elapsed >= mp4FragmentMin || elapsed >= mp4FragmentMax) {
			if err := w.cut(typ, ms); err != nil {
				return err
			}
			w.fragStart = t
		}
	}
	w.mux.add(typ, ms, fm)
	w.queued++
	w.rec.first.CompareAndSwap(-1, int64(ms))
	w.rec.last.Store(int64(ms))
	return nil
}

// cut writes the open fragment, which ends before a frame of type typ at
// FLV time ms (0, 0: at the end of the stream).
func (w *mp4Recording) cut(typ uint8, ms uint32) error {
	if w.mux == nil || w.queued == 0 {
		return nil
	}
	w.buf = w.mux.fragment(w.buf[:0], typ, ms)
	w.queued = 0
	off := w.rec.bytes.Load()
	if err := w.write(w.buf); err != nil {
		return err
	}
	w.indexFragment(off)
	return nil
}

// indexFragment notes the places to start in the fragment just written
// at off (w.buf).
func (w *mp4Recording) indexFragment(off int64) {
	if w.noIndex || len(w.buf) < mp4MinBoxHeader {
		return
	}
	size := int(binary.BigEndian.Uint32(w.buf))
	if size < mp4MinBoxHeader || size > len(w.buf) {
		return
	}
	moof := mp4Box{typ: "moof", path: "moof", off: off, body: w.buf[mp4MinBoxHeader:size], bodyOff: off + mp4MinBoxHeader}
	for _, t := range mp4Trafs(moof) {
		if !t.sync || t.number > 255 {
			continue
		}
		if len(w.index) == maxTFRAEntries {
			w.index, w.noIndex = nil, true
			return
		}
		w.index = append(w.index, tfraEntry{track: t.id, traf: uint8(t.number), time: max(t.start+t.cto, 0), moofOff: off})
	}
}

// appendMFRA writes a movie fragment random access box (§8.8.9): a tfra
// per track (§8.8.10) listing the fragments whose first sample of that
// track is a sync sample (its presentation time, its moof's offset, the
// traf, trun and sample numbers in it, from 1), then mfro (§8.8.11),
// whose last field is mfra's size, for a reader to find it from the end.
func appendMFRA(dst []byte, index []tfraEntry) []byte {
	start := len(dst)
	dst, mfra := boxOpen(dst, "mfra")
	var tracks []uint32
	for _, e := range index {
		if !slices.Contains(tracks, e.track) {
			tracks = append(tracks, e.track)
		}
	}
	for _, track := range tracks {
		var tfra int
		dst, tfra = fullBoxOpen(dst, "tfra", 1, 0) // version 1: 64-bit time and offset
		dst = be32(dst, track)
		dst = be32(dst, 0) // reserved, and traf/trun/sample numbers of 1 byte each (length_size 0)
		countAt := len(dst)
		dst = be32(dst, 0)
		n := 0
		for _, e := range index {
			if e.track == track {
				dst = binary.BigEndian.AppendUint64(dst, uint64(e.time))
				dst = binary.BigEndian.AppendUint64(dst, uint64(e.moofOff))
				dst = append(dst, e.traf, 1, 1) // the first trun's first sample
				n++
			}
		}
		binary.BigEndian.PutUint32(dst[countAt:], uint32(n))
		dst = boxClose(dst, tfra)
	}
	dst, mfro := fullBoxOpen(dst, "mfro", 0, 0)
	dst = be32(dst, uint32(len(dst)+4-start)) // mfra's size: this field is its last
	dst = boxClose(dst, mfro)
	return boxClose(dst, mfra)
}

// write appends the init segment or a fragment. One written in part (a
// full disk) is cut off, so that the file ends at its last whole fragment.
func (w *mp4Recording) write(b []byte) error {
	n, err := w.f.Write(b)
	if err != nil && n > 0 {
		if terr := w.f.Truncate(w.rec.bytes.Load()); terr != nil {
			return fmt.Errorf("%w (and cutting the file back to its last whole fragment: %v)", err, terr)
		}
		return err
	}
	w.rec.bytes.Add(int64(n))
	return err
}

// durationCache keeps finished MP4 files' durations between listings, by
// path, size and modification time: measuring walks every fragment.
// Entries of files gone from the last listing are dropped (sweep).
type durationCache struct {
	mu      sync.Mutex
	entries map[string]durationEntry
}

type durationEntry struct {
	size     int64
	modified time.Time
	duration time.Duration
	seen     bool // in the listing under way
}

func (c *durationCache) get(path string, info fs.FileInfo) time.Duration {
	c.mu.Lock()
	e, ok := c.entries[path]
	c.mu.Unlock()
	if !ok || e.size != info.Size() || !e.modified.Equal(info.ModTime()) {
		e = durationEntry{size: info.Size(), modified: info.ModTime(), duration: mp4FileDuration(path)}
	}
	e.seen = true
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[string]durationEntry{}
	}
	c.entries[path] = e
	c.mu.Unlock()
	return e.duration
}

// sweep drops the entries a listing did not see, and starts the next.
func (c *durationCache) sweep() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for path, e := range c.entries {
		if !e.seen {
			delete(c.entries, path)
			continue
		}
		e.seen = false
		c.entries[path] = e
	}
}

// Bounds of mp4FileDuration's reads: a listing must stay cheap whatever
// is in the directory.
const (
	maxMP4DurationBoxes = 1 << 20  // top-level boxes walked (a fragment a second: 12 days)
	maxMP4DurationRead  = 16 << 20 // moov or moof read whole
)

// mp4FileDuration is a fragmented MP4 file's length: per track, from the
// first fragment's tfdt to the end of the last whole fragment's samples
// (its tfdt plus its trun's sample durations, §8.8.8, §8.8.12), in the
// track's mdhd timescale; the longest track's. It walks the top-level box
// headers, and reads moov and the first and last moof; 0 when the file
// does not say (not fragmented, not MP4).
func mp4FileDuration(path string) time.Duration {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0
	}
	m := &mp4Reader{r: f, size: st.Size()}
	type top struct{ off, hdr, size int64 }
	var moov, first, last top
	var pending top // a moof whose mdat has not been seen whole yet
	for off, n := int64(0), 0; off < m.size && n < maxMP4DurationBoxes; n++ {
		typ, hdr, size, err := m.boxHeader(off)
		if err != nil {
			break
		}
		switch {
		case typ == "moov":
			moov = top{off, hdr, size}
		case typ == "moof":
			pending = top{off, hdr, size}
		case typ == "mdat" && pending.size > 0:
			if off+size == m.size && !mdatWhole(f, off, size) {
				break // cut short: its moof's samples are not all there
			}
			if first.size == 0 {
				first = pending
			}
			last, pending = pending, top{}
		}
		off += size
	}
	if moov.size == 0 || first.size == 0 || last.size == 0 {
		return 0
	}
	read := func(t top, typ string) (mp4Box, bool) {
		if t.size > maxMP4DurationRead {
			return mp4Box{}, false
		}
		b, err := m.readBox(typ, t.off, t.hdr, t.size)
		return b, err == nil
	}
	moovBox, ok := read(moov, "moov")
	if !ok {
		return 0
	}
	scales := mp4Timescales(moovBox)
	firstBox, ok1 := read(first, "moof")
	lastBox, ok2 := read(last, "moof")
	if !ok1 || !ok2 {
		return 0
	}
	starts, _ := mp4FragmentTimes(firstBox)
	_, ends := mp4FragmentTimes(lastBox)
	var longest time.Duration
	for id, end := range ends {
		start, ok := starts[id]
		scale := scales[id]
		if !ok || scale == 0 || end <= start {
			continue
		}
		longest = max(longest, time.Duration(float64(end-start)/float64(scale)*float64(time.Second)))
	}
	return longest
}

// mdatWhole says whether the mdat at off, which reaches the end of the
// file, is as long as its header says (boxHeader clamps a cut one to
// the file).
func mdatWhole(f *os.File, off, size int64) bool {
	var b [mp4LargeHeader]byte
	if _, err := f.ReadAt(b[:min(size, mp4LargeHeader)], off); err != nil {
		return false
	}
	switch declared := binary.BigEndian.Uint32(b[:]); declared {
	case 0: // to the end of the file (§4.2)
		return true
	case 1:
		return size >= mp4LargeHeader && int64(binary.BigEndian.Uint64(b[8:])) == size
	default:
		return int64(declared) == size
	}
}

// mp4Timescales reads each track's mdhd timescale from moov, by track_ID.
func mp4Timescales(moov mp4Box) map[uint32]uint32 {
	scales := map[uint32]uint32{}
	kids, err := moov.kids()
	if err != nil {
		return scales
	}
	for _, trak := range kids {
		if trak.typ != "trak" {
			continue
		}
		tk, err := trak.kids()
		if err != nil {
			continue
		}
		tkhd, ok1 := mp4Find(tk, "tkhd")
		mdia, ok2 := mp4Find(tk, "mdia")
		if !ok1 || !ok2 {
			continue
		}
		c := mp4Cursor{box: tkhd}
		version, _ := c.fullBox()
		if version == 1 {
			c.bytes(16) // creation and modification times, 64-bit (§8.3.2)
		} else {
			c.bytes(8)
		}
		id := c.u32()
		mk, err := mdia.kids()
		if err != nil {
			continue
		}
		mdhd, ok := mp4Find(mk, "mdhd")
		if !ok {
			continue
		}
		d := mp4Cursor{box: mdhd}
		version, _ = d.fullBox()
		if version == 1 {
			d.bytes(16)
		} else {
			d.bytes(8)
		}
		scale := d.u32()
		if c.err() == nil && d.err() == nil {
			scales[id] = scale
		}
	}
	return scales
}

// mp4FragmentTimes reads a moof's tracks' first decode times (tfdt) and
// the ends of their samples (tfdt plus the trun durations, or tfhd's
// default duration), by track_ID. A traf without tfdt is left out.
func mp4FragmentTimes(moof mp4Box) (starts, ends map[uint32]int64) {
	starts, ends = map[uint32]int64{}, map[uint32]int64{}
	for _, t := range mp4Trafs(moof) {
		starts[t.id], ends[t.id] = t.start, t.end
	}
	return starts, ends
}

// mp4Traf is what a traf says of its track's samples in one fragment.
type mp4Traf struct {
	id         uint32
	number     int   // its place among the moof's trafs, from 1 (tfra's traf_number)
	start, end int64 // its first sample's decode time, and its last's end
	sync       bool  // its first sample is a sync sample
	cto        int64 // its first sample's composition offset: presented at start+cto
}

// mp4Trafs reads a moof's trafs (§8.8.6): tfhd, tfdt, truns. A traf
// without tfdt is left out.
func mp4Trafs(moof mp4Box) []mp4Traf {
	kids, err := moof.kids()
	if err != nil {
		return nil
	}
	var out []mp4Traf
	number := 0
	for _, traf := range kids {
		if traf.typ != "traf" {
			continue
		}
		number++
		tk, err := traf.kids()
		if err != nil {
			continue
		}
		tfhd, ok1 := mp4Find(tk, "tfhd")
		tfdt, ok2 := mp4Find(tk, "tfdt")
		if !ok1 || !ok2 {
			continue
		}
		// tfhd (§8.8.7): track_ID, then the optional fields its flags name.
		c := mp4Cursor{box: tfhd}
		_, flags := c.fullBox()
		id := c.u32()
		if flags&0x01 != 0 {
			c.u64() // base_data_offset
		}
		if flags&0x02 != 0 {
			c.u32() // sample_description_index
		}
		var defDur uint32
		if flags&0x08 != 0 {
			defDur = c.u32()
		}
		if flags&0x10 != 0 {
			c.u32() // default_sample_size
		}
		defFlags := uint32(0) // a sync sample, unless tfhd says otherwise
		if flags&0x20 != 0 {
			defFlags = c.u32()
		}
		d := mp4Cursor{box: tfdt}
		version, _ := d.fullBox()
		var start int64
		if version == 1 {
			start = int64(d.u64() & (1<<62 - 1))
		} else {
			start = int64(d.u32())
		}
		if c.err() != nil || d.err() != nil {
			continue
		}
		t := mp4Traf{id: id, number: number, start: start, end: start, sync: defFlags&mp4NonSync == 0}
		first := true
		for _, trun := range tk {
			if trun.typ != "trun" {
				continue
			}
			dur, sync, cto := mp4RunInfo(trun, defDur, defFlags)
			t.end += dur
			if first {
				t.sync, t.cto, first = sync, cto, false
			}
		}
		out = append(out, t)
	}
	return out
}

// mp4RunInfo sums a trun's sample durations (§8.8.8), samples without
// one lasting defDur, and says whether its first sample is a sync sample
// (its flags: first_sample_flags, its own, or defFlags) and what its
// composition offset is.
func mp4RunInfo(trun mp4Box, defDur, defFlags uint32) (dur int64, sync bool, cto int64) {
	c := mp4Cursor{box: trun}
	version, flags := c.fullBox()
	count := c.u32()
	if flags&0x001 != 0 {
		c.u32() // data_offset
	}
	firstFlags := defFlags
	if flags&0x004 != 0 {
		firstFlags = c.u32()
	}
	size := 0 // each sample: the optional fields its flags name
	for _, bit := range []uint32{0x100, 0x200, 0x400, 0x800} {
		if flags&bit != 0 {
			size += 4
		}
	}
	if c.short || uint64(count)*uint64(size) > uint64(c.left()) {
		return 0, false, 0
	}
	if size == 0 { // no per-sample fields: nothing to read
		return int64(count) * int64(defDur), firstFlags&mp4NonSync == 0, 0
	}
	for i := range count {
		if flags&0x100 != 0 {
			dur += int64(c.u32())
		} else {
			dur += int64(defDur)
		}
		if flags&0x200 != 0 {
			c.u32() // sample_size
		}
		if flags&0x400 != 0 {
			if f := c.u32(); i == 0 && flags&0x004 == 0 {
				firstFlags = f
			}
		}
		if flags&0x800 != 0 {
			if v := c.u32(); i == 0 {
				cto = int64(v)
				if version == 1 {
					cto = int64(int32(v)) // signed in version 1
				}
			}
		}
	}
	return dur, firstFlags&mp4NonSync == 0, cto
}
