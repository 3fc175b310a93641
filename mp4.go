package main

// An MP4 reader for push: ISO base media files (ISO/IEC 14496-12), plain
// (moov with sample tables) and fragmented (moof/traf/trun), turned into
// FLV tag bodies. H.264 and AAC become classic FLV tags (§E.4.2, §E.4.3);
// H.265, AV1, VP9 and Opus become Enhanced RTMP tags (veovera
// enhanced-rtmp v2, ExVideoTagHeader / ExAudioTagHeader).
//
// Only the box tree of moov and of each moof is held in memory; sample
// data is read one sample at a time, where the tables say it is.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
)

const (
	maxMP4BoxRead   = 256 << 20          // largest moov or moof read whole
	maxMP4Samples   = 1 << 23            // samples of one track (a day at 90 fps)
	maxMP4Sample    = maxFLVTagData - 16 // one sample, with room for the tag header
	maxMP4Depth     = 12                 // box nesting
	maxMP4TopBoxes  = 1 << 20            // top-level boxes scanned for moov and moof
	maxMP4Tracks    = 32                 // media tracks read
	maxMP4EditShift = int64(1) << 40     // edit list shift, in a track's timescale
	mp4MaxTimescale = uint32(1<<31 - 1)
	mp4MaxTime      = int64(1)<<62 - 1 // decode times and offsets stay far from overflow

	// A composition offset must fit the tag's SI24.
	mp4SI24Max = 1<<23 - 1
	mp4SI24Min = -1 << 23

	mp4NonSync    = 0x00010000 // sample_is_non_sync_sample (§8.8.3.1)
	mp4BaseIsMoof = 0x00020000 // tfhd default-base-is-moof (§8.8.7.1)
	mp4NoEdit     = int64(-1)  // elst media_time of an empty edit (§8.6.6)

	// Box headers: size and type, then a 64-bit largesize when size is 1 (§4.2).
	mp4MinBoxHeader = 8
	mp4LargeHeader  = 16
)

var errMP4Unsupported = errors.New("mp4: unsupported")

// mp4Err names the box by its path and file offset, so that a bad file can
// be found with a hex editor.
func mp4Err(path string, off int64, format string, args ...any) error {
	return fmt.Errorf("mp4: %s at offset %d: %s", path, off, fmt.Sprintf(format, args...))
}

// mp4Box is one box (§4.2) whose body is in memory.
type mp4Box struct {
	typ, path string
	off       int64 // file offset of the box header
	body      []byte
	bodyOff   int64
}

func mp4TypeName(b []byte) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7E || r == '/' {
			return '?'
		}
		return r
	}, string(b))
}

// mp4Children splits a container body into its boxes (§4.2: size, type,
// largesize; size 0 runs to the end of the container).
func mp4Children(parent mp4Box, body []byte, bodyOff int64) ([]mp4Box, error) {
	if strings.Count(parent.path, "/") >= maxMP4Depth {
		return nil, mp4Err(parent.path, parent.off, "boxes nested deeper than %d", maxMP4Depth)
	}
	var out []mp4Box
	for p := 0; p < len(body); {
		off := bodyOff + int64(p)
		rest := body[p:]
		if len(rest) < mp4MinBoxHeader {
			return nil, mp4Err(parent.path, off, "%d stray bytes where a box header should be", len(rest))
		}
		typ := mp4TypeName(rest[4:8])
		path := typ
		if parent.path != "" {
			path = parent.path + "/" + typ
		}
		size, hdr := uint64(binary.BigEndian.Uint32(rest)), uint64(mp4MinBoxHeader)
		switch size {
		case 0:
			size = uint64(len(rest))
		case 1:
			if len(rest) < mp4LargeHeader {
				return nil, mp4Err(path, off, "truncated largesize")
			}
			size, hdr = binary.BigEndian.Uint64(rest[8:]), mp4LargeHeader
		}
		if size < hdr || size > uint64(len(rest)) {
			return nil, mp4Err(path, off, "box size %d does not fit in its parent (%d bytes left)", size, len(rest))
		}
		out = append(out, mp4Box{typ: typ, path: path, off: off, body: rest[hdr:size], bodyOff: off + int64(hdr)})
		p += int(size)
	}
	return out, nil
}

// kids returns the boxes inside b, a container.
func (b mp4Box) kids() ([]mp4Box, error) { return mp4Children(b, b.body, b.bodyOff) }

func mp4Find(boxes []mp4Box, typ string) (mp4Box, bool) {
	for _, b := range boxes {
		if b.typ == typ {
			return b, true
		}
	}
	return mp4Box{}, false
}

// mp4Cursor reads the fields of a box body. Reading past the end yields
// zeros and marks the cursor short; callers check err once.
type mp4Cursor struct {
	box   mp4Box
	p     int
	short bool
}

func (c *mp4Cursor) bytes(n int) []byte {
	if n < 0 || len(c.box.body)-c.p < n {
		c.short, c.p = true, len(c.box.body)
		return make([]byte, max(n, 0))
	}
	b := c.box.body[c.p : c.p+n]
	c.p += n
	return b
}
func (c *mp4Cursor) u8() uint8   { return c.bytes(1)[0] }
func (c *mp4Cursor) u16() uint16 { return binary.BigEndian.Uint16(c.bytes(2)) }
func (c *mp4Cursor) u24() uint32 { return be24(c.bytes(3)) }
func (c *mp4Cursor) u32() uint32 { return binary.BigEndian.Uint32(c.bytes(4)) }
func (c *mp4Cursor) u64() uint64 { return binary.BigEndian.Uint64(c.bytes(8)) }
func (c *mp4Cursor) left() int   { return len(c.box.body) - c.p }

// fullBox reads a FullBox's version and flags (§4.2).
func (c *mp4Cursor) fullBox() (version uint8, flags uint32) { return c.u8(), c.u24() }

// count reads an entry count and checks that count entries of size bytes
// each fit in what is left of the box.
func (c *mp4Cursor) count(what string, size int) (int, error) {
	n := c.u32()
	if c.short {
		return 0, c.err()
	}
	if uint64(n)*uint64(size) > uint64(c.left()) {
		return 0, mp4Err(c.box.path, c.box.off, "%s %d too large for the box (%d bytes left)", what, n, c.left())
	}
	return int(n), nil
}

func (c *mp4Cursor) err() error {
	if c.short {
		return mp4Err(c.box.path, c.box.off, "box body truncated (%d bytes)", len(c.box.body))
	}
	return nil
}

// ---- Tracks and samples ----

type mp4InputSample struct {
	off  int64
	size uint32
	dts  int64 // in the track's timescale, edit list applied
	cto  int32 // composition offset, same units
	key  bool
}

type mp4InputTrack struct {
	id        uint32
	codec     string // avc, hevc, av1, vp9, aac, opus
	video     bool
	timescale uint32
	header    []byte // sequence header tag body
	shift     int64  // edit list: added to every decode time (§8.6.6)
	edited    bool   // the edit list has a media_time
	editStart int64  // where that edit is presented, in the track's timescale

	samples []mp4InputSample
	next    int
	// fragmented: where the last fragment's samples ended, for a traf
	// without tfdt, and the trex defaults (§8.8.3).
	fragEnd                        int64
	defDuration, defSize, defFlags uint32
	emitted                        int
}

// mp4Reader is the tagSource of an MP4 file.
type mp4Reader struct {
	r      io.ReadSeeker
	size   int64
	tracks []*mp4InputTrack

	headers  []flvTag // sequence headers, sent first
	started  bool
	offsetMS int64 // added to every time so that none is negative

	fragmented bool
	fragOff    int64 // next top-level offset to look for a moof at
	fragDone   bool
	topBoxes   int

	body []byte // the tag body being returned
}

// openMP4 reads the movie box (wherever it is: §8.2.1 lets it follow
// mdat) and prepares to read samples in decode order.
func openMP4(r io.ReadSeeker) (tagSource, error) {
	size, err := r.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("mp4: %w", err)
	}
	m := &mp4Reader{r: r, size: size}
	var moov mp4Box
	found := false
	for off := int64(0); off < size && !found; {
		typ, hdr, boxSize, err := m.boxHeader(off)
		if err != nil {
			return nil, err
		}
		if typ == "moov" {
			if moov, err = m.readBox(typ, off, hdr, boxSize); err != nil {
				return nil, err
			}
			found = true
		}
		off += boxSize
	}
	if !found {
		return nil, fmt.Errorf("mp4: no moov box in %d bytes (a recording stopped before its end has none)", size)
	}
	if err := m.parseMoov(moov); err != nil {
		return nil, err
	}
	if len(m.tracks) == 0 {
		return nil, mp4Err("moov", moov.off, "no audio or video track this reader knows")
	}
	for _, t := range m.tracks {
		typ := uint8(tagAudio)
		if t.video {
			typ = tagVideo
		}
		m.headers = append(m.headers, flvTag{Type: typ, Data: t.header})
	}
	return m, nil
}

// mp4FirstBoxes are the boxes a file may start with.
var mp4FirstBoxes = map[string]bool{"ftyp": true, "styp": true, "moov": true, "mdat": true, "free": true, "skip": true, "wide": true, "uuid": true}

// boxHeader reads the header of the top-level box at off.
func (m *mp4Reader) boxHeader(off int64) (typ string, hdr, size int64, err error) {
	m.topBoxes++
	if m.topBoxes > maxMP4TopBoxes {
		return "", 0, 0, fmt.Errorf("mp4: more than %d top-level boxes", maxMP4TopBoxes)
	}
	var b [mp4LargeHeader]byte
	n := min(int64(len(b)), m.size-off)
	if n < mp4MinBoxHeader {
		return "", 0, 0, fmt.Errorf("mp4: %d stray bytes at offset %d where a box header should be", n, off)
	}
	if err := m.readAt(b[:n], off); err != nil {
		return "", 0, 0, err
	}
	typ = mp4TypeName(b[4:8])
	if off == 0 && !mp4FirstBoxes[typ] {
		return "", 0, 0, fmt.Errorf("mp4: not an MP4 file: the first box is %q", typ)
	}
	size, hdr = int64(binary.BigEndian.Uint32(b[:])), mp4MinBoxHeader
	switch size {
	case 0: // to the end of the file
		size = m.size - off
	case 1:
		if n < mp4LargeHeader {
			return "", 0, 0, mp4Err(typ, off, "truncated largesize")
		}
		large := binary.BigEndian.Uint64(b[8:])
		if large > uint64(m.size) {
			if typ != "mdat" {
				return "", 0, 0, mp4Err(typ, off, "box size %d larger than the file (%d bytes)", large, m.size)
			}
			large = uint64(m.size - off) // clamped below too
		}
		size, hdr = int64(large), mp4LargeHeader
	}
	if size < hdr {
		return "", 0, 0, mp4Err(typ, off, "box size %d smaller than its header", size)
	}
	if size > m.size-off && typ != "mdat" {
		return "", 0, 0, mp4Err(typ, off, "box size %d runs past the end of the file (%d bytes left)", size, m.size-off)
	}
	if typ == "mdat" {
		size = min(size, m.size-off) // a cut recording: its samples fail one by one
	}
	return typ, hdr, size, nil
}

// readBox reads a whole top-level box into memory.
func (m *mp4Reader) readBox(typ string, off, hdr, size int64) (mp4Box, error) {
	if size > maxMP4BoxRead {
		return mp4Box{}, mp4Err(typ, off, "box size %d too large (at most %d)", size, maxMP4BoxRead)
	}
	body := make([]byte, size-hdr)
	if err := m.readAt(body, off+hdr); err != nil {
		return mp4Box{}, mp4Err(typ, off, "%v", err)
	}
	return mp4Box{typ: typ, path: typ, off: off, body: body, bodyOff: off + hdr}, nil
}

func (m *mp4Reader) readAt(b []byte, off int64) error {
	if _, err := m.r.Seek(off, io.SeekStart); err != nil {
		return fmt.Errorf("mp4: seek to %d: %w", off, err)
	}
	if _, err := io.ReadFull(m.r, b); err != nil {
		return fmt.Errorf("mp4: read %d bytes at offset %d: %w", len(b), off, err)
	}
	return nil
}

// parseMoov reads mvhd, mvex/trex and every trak (§8.2-§8.8).
func (m *mp4Reader) parseMoov(moov mp4Box) error {
	kids, err := moov.kids()
	if err != nil {
		return err
	}
	movieScale := uint32(0)
	if mvhd, ok := mp4Find(kids, "mvhd"); ok {
		c := &mp4Cursor{box: mvhd}
		if v, _ := c.fullBox(); v == 1 {
			c.bytes(16)
		} else {
			c.bytes(8)
		}
		movieScale = c.u32()
		if err := c.err(); err != nil {
			return err
		}
	}
	trex := map[uint32][3]uint32{}
	if mvex, ok := mp4Find(kids, "mvex"); ok {
		m.fragmented = true
		mk, err := mvex.kids()
		if err != nil {
			return err
		}
		for _, b := range mk {
			if b.typ != "trex" {
				continue
			}
			c := &mp4Cursor{box: b}
			c.fullBox()
			id := c.u32()
			c.u32() // default_sample_description_index
			d := [3]uint32{c.u32(), c.u32(), c.u32()}
			if err := c.err(); err != nil {
				return err
			}
			trex[id] = d
		}
	}
	for _, b := range kids {
		if b.typ != "trak" {
			continue
		}
		t, err := parseMP4Trak(b, movieScale, m.size)
		if err != nil {
			return err
		}
		if t == nil {
			continue
		}
		if len(m.tracks) == maxMP4Tracks {
			return mp4Err(b.path, b.off, "more than %d media tracks", maxMP4Tracks)
		}
		d := trex[t.id]
		t.defDuration, t.defSize, t.defFlags = d[0], d[1], d[2]
		m.tracks = append(m.tracks, t)
	}
	return nil
}

// parseMP4Trak reads one track; it returns nil for tracks that are not
// audio or video, or whose codec cannot be sent.
func parseMP4Trak(trak mp4Box, movieScale uint32, fileSize int64) (*mp4InputTrack, error) {
	kids, err := trak.kids()
	if err != nil {
		return nil, err
	}
	t := &mp4InputTrack{}
	tkhd, ok := mp4Find(kids, "tkhd")
	if !ok {
		return nil, mp4Err(trak.path, trak.off, "no tkhd")
	}
	c := &mp4Cursor{box: tkhd}
	if v, _ := c.fullBox(); v == 1 {
		c.bytes(16)
	} else {
		c.bytes(8)
	}
	t.id = c.u32()
	if err := c.err(); err != nil {
		return nil, err
	}
	mdia, ok := mp4Find(kids, "mdia")
	if !ok {
		return nil, mp4Err(trak.path, trak.off, "no mdia")
	}
	mk, err := mdia.kids()
	if err != nil {
		return nil, err
	}
	hdlr, ok := mp4Find(mk, "hdlr")
	if !ok {
		return nil, mp4Err(mdia.path, mdia.off, "no hdlr")
	}
	c = &mp4Cursor{box: hdlr}
	c.fullBox()
	c.u32() // pre_defined
	handler := string(c.bytes(4))
	if err := c.err(); err != nil {
		return nil, err
	}
	if handler != "vide" && handler != "soun" {
		return nil, nil
	}
	t.video = handler == "vide"
	mdhd, ok := mp4Find(mk, "mdhd")
	if !ok {
		return nil, mp4Err(mdia.path, mdia.off, "no mdhd")
	}
	c = &mp4Cursor{box: mdhd}
	if v, _ := c.fullBox(); v == 1 {
		c.bytes(16)
	} else {
		c.bytes(8)
	}
	t.timescale = c.u32()
	if err := c.err(); err != nil {
		return nil, err
	}
	if t.timescale == 0 || t.timescale > mp4MaxTimescale {
		return nil, mp4Err(mdhd.path, mdhd.off, "timescale %d", t.timescale)
	}
	minf, ok := mp4Find(mk, "minf")
	if !ok {
		return nil, mp4Err(mdia.path, mdia.off, "no minf")
	}
	nk, err := minf.kids()
	if err != nil {
		return nil, err
	}
	stbl, ok := mp4Find(nk, "stbl")
	if !ok {
		return nil, mp4Err(minf.path, minf.off, "no stbl")
	}
	sk, err := stbl.kids()
	if err != nil {
		return nil, err
	}
	stsd, ok := mp4Find(sk, "stsd")
	if !ok {
		return nil, mp4Err(stbl.path, stbl.off, "no stsd")
	}
	if err := t.parseStsd(stsd); err != nil {
		if errors.Is(err, errMP4Unsupported) {
			slog.Warn("mp4: track skipped", "track", t.id, "err", err)
			return nil, nil
		}
		return nil, err
	}
	if edts, ok := mp4Find(kids, "edts"); ok {
		if err := t.parseEdts(edts, movieScale); err != nil {
			return nil, err
		}
	}
	if err := t.parseStbl(sk, stbl, fileSize); err != nil {
		return nil, err
	}
	return t, nil
}

// parseStsd turns the first sample entry (§8.5.2) into the track's
// sequence header.
func (t *mp4InputTrack) parseStsd(stsd mp4Box) error {
	c := &mp4Cursor{box: stsd}
	c.fullBox()
	if n := c.u32(); n == 0 || c.short {
		return mp4Err(stsd.path, stsd.off, "no sample entry")
	}
	entries, err := mp4Children(stsd, stsd.body[c.p:], stsd.bodyOff+int64(c.p))
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return mp4Err(stsd.path, stsd.off, "no sample entry")
	}
	e := entries[0]
	// SampleEntry: 6 reserved bytes, data_reference_index (§8.5.2.2);
	// then VisualSampleEntry's 70 bytes, or AudioSampleEntry's 20, which
	// QuickTime's sound versions 1 and 2 extend by 16 and 36.
	skip := 8 + 70
	if !t.video {
		skip = 8 + 20
		if len(e.body) >= 10 {
			switch binary.BigEndian.Uint16(e.body[8:]) {
			case 1:
				skip += 16
			case 2:
				skip += 36
			}
		}
	}
	if len(e.body) < skip {
		return mp4Err(e.path, e.off, "sample entry of %d bytes, want at least %d", len(e.body), skip)
	}
	boxes, err := mp4Children(e, e.body[skip:], e.bodyOff+int64(skip))
	if err != nil {
		return err
	}
	config := func(typ string) ([]byte, error) {
		b, ok := mp4Find(boxes, typ)
		if !ok {
			return nil, mp4Err(e.path, e.off, "no %s box", typ)
		}
		return b.body, nil
	}
	switch e.typ {
	case "avc1", "avc3":
		avcC, err := config("avcC")
		if err != nil {
			return err
		}
		t.codec = "avc"
		// §E.4.3.1: keyframe, AVC, AVCPacketType 0, CompositionTime 0.
		t.header = append([]byte{0x10 | codecAVC, 0, 0, 0, 0}, avcC...)
	case "hvc1", "hev1":
		hvcC, err := config("hvcC")
		if err != nil {
			return err
		}
		t.codec = "hevc"
		t.header = append(exVideoHead(true, exSequenceStart, "hvc1"), hvcC...)
	case "av01":
		av1C, err := config("av1C")
		if err != nil {
			return err
		}
		t.codec = "av1"
		t.header = append(exVideoHead(true, exSequenceStart, "av01"), av1C...)
	case "vp09":
		vpcC, err := config("vpcC")
		if err != nil {
			return err
		}
		if len(vpcC) < 4 {
			return mp4Err(e.path+"/vpcC", e.off, "too short")
		}
		t.codec = "vp9"
		// The VPCodecConfigurationRecord, without vpcC's FullBox header.
		t.header = append(exVideoHead(true, exSequenceStart, "vp09"), vpcC[4:]...)
	case "mp4a":
		esds, ok := mp4Find(boxes, "esds")
		if wave, inWave := mp4Find(boxes, "wave"); !ok && inWave {
			// QuickTime (.mov) sound descriptions of version 1 and 2 keep
			// the esds in a 'wave' atom (QuickTime File Format, "Sound
			// Sample Description Extensions"), with frma, mp4a and a
			// terminator beside it.
			inside, err := mp4Children(wave, wave.body, wave.bodyOff)
			if err != nil {
				return err
			}
			esds, ok = mp4Find(inside, "esds")
		}
		if !ok {
			return mp4Err(e.path, e.off, "no esds box")
		}
		asc, err := parseMP4Esds(esds)
		if err != nil {
			return err
		}
		t.codec = "aac"
		t.header = append([]byte{aacTagByte, 0}, asc...)
	case "Opus":
		dOps, ok := mp4Find(boxes, "dOps")
		if !ok {
			return mp4Err(e.path, e.off, "no dOps box")
		}
		head, err := opusHeadFromDOps(dOps)
		if err != nil {
			return err
		}
		t.codec = "opus"
		t.header = append(exAudioHead(exSequenceStart, "Opus"), head...)
	default:
		return fmt.Errorf("%w: sample entry %q (track %d)", errMP4Unsupported, e.typ, t.id)
	}
	return nil
}

// aacTagByte is the FLV audio header of AAC: SoundFormat 10, and rate,
// size and type fixed at 44 kHz, 16 bits, stereo (§E.4.2.1).
const aacTagByte = soundAAC<<4 | 3<<2 | 1<<1 | 1

// exVideoHead is an Enhanced RTMP ExVideoTagHeader: IsExHeader,
// FrameType (1 key, 2 inter), VideoPacketType, FourCC.
func exVideoHead(key bool, packetType byte, fourCC string) []byte {
	frameType := byte(2)
	if key {
		frameType = 1
	}
	return append([]byte{videoExHeader | frameType<<4 | packetType}, fourCC...)
}

// exAudioHead is an Enhanced RTMP ExAudioTagHeader: SoundFormat 9
// (ExHeader), AudioPacketType, FourCC.
func exAudioHead(packetType byte, fourCC string) []byte {
	return append([]byte{soundExHeader<<4 | packetType}, fourCC...)
}

// parseMP4Esds finds the AudioSpecificConfig in an ES_Descriptor (ISO/IEC
// 14496-1 §7.2.6.5: ES_DescrTag 3 → DecoderConfigDescrTag 4 →
// DecSpecificInfoTag 5; ISO/IEC 14496-14 §5.6 for the esds box).
func parseMP4Esds(esds mp4Box) ([]byte, error) {
	bad := func(what string) error { return mp4Err(esds.path, esds.off, "%s", what) }
	b := esds.body
	if len(b) < 4 {
		return nil, bad("truncated")
	}
	b = b[4:] // FullBox
	// descriptor reads one tag and its expandable size (§8.3.3).
	descriptor := func(b []byte) (tag byte, body, rest []byte, ok bool) {
		if len(b) < 2 {
			return 0, nil, nil, false
		}
		tag, b = b[0], b[1:]
		n := 0
		for i := 0; ; i++ {
			if i == 4 || len(b) == 0 {
				return 0, nil, nil, false
			}
			n = n<<7 | int(b[0]&0x7F)
			more := b[0]&0x80 != 0
			b = b[1:]
			if !more {
				break
			}
		}
		if n > len(b) {
			return 0, nil, nil, false
		}
		return tag, b[:n], b[n:], true
	}
	tag, es, _, ok := descriptor(b)
	if !ok || tag != 3 || len(es) < 3 {
		return nil, bad("no ES_Descriptor")
	}
	flags := es[2]
	es = es[3:] // ES_ID, flags
	if flags&0x80 != 0 {
		es = es[min(2, len(es)):] // dependsOn_ES_ID
	}
	if flags&0x40 != 0 && len(es) > 0 {
		es = es[min(1+int(es[0]), len(es)):] // URL
	}
	if flags&0x20 != 0 {
		es = es[min(2, len(es)):] // OCR_ES_Id
	}
	tag, dc, _, ok := descriptor(es)
	if !ok || tag != 4 || len(dc) < 13 {
		return nil, bad("no DecoderConfigDescriptor")
	}
	if dc[0] != 0x40 && dc[0] != 0x66 && dc[0] != 0x67 && dc[0] != 0x68 {
		return nil, fmt.Errorf("%w: %s at offset %d: objectTypeIndication 0x%02x is not AAC", errMP4Unsupported, esds.path, esds.off, dc[0])
	}
	tag, asc, _, ok := descriptor(dc[13:])
	if !ok || tag != 5 || len(asc) < 2 {
		return nil, bad("no AudioSpecificConfig")
	}
	return asc, nil
}

// opusHeadFromDOps rebuilds the Ogg Opus ID header (RFC 7845 §5.1) that
// Enhanced RTMP's Opus SequenceStart carries, from the dOps box ("Encapsulation
// of Opus in ISO Base Media File Format" §4.3.2): same fields, big-endian
// there, little-endian in OpusHead.
func opusHeadFromDOps(dOps mp4Box) ([]byte, error) {
	b := dOps.body
	if len(b) < 11 {
		return nil, mp4Err(dOps.path, dOps.off, "%d bytes, want at least 11", len(b))
	}
	channels, family := b[1], b[10]
	head := []byte("OpusHead")
	head = append(head, 1, channels)
	head = binary.LittleEndian.AppendUint16(head, binary.BigEndian.Uint16(b[2:])) // pre-skip
	head = binary.LittleEndian.AppendUint32(head, binary.BigEndian.Uint32(b[4:])) // input sample rate
	head = binary.LittleEndian.AppendUint16(head, binary.BigEndian.Uint16(b[8:])) // output gain
	head = append(head, family)                                                   // channel mapping family
	if family != 0 {
		// stream count, coupled count, one mapping byte per channel
		n := 2 + int(channels)
		if len(b) < 11+n {
			return nil, mp4Err(dOps.path, dOps.off, "channel mapping table truncated")
		}
		head = append(head, b[11:11+n]...)
	}
	return head, nil
}

// parseEdts honours the edit list (§8.6.6) the way players do for the
// common cases: leading empty edits delay the track, and the first real
// edit's media_time is the media time presented first.
func (t *mp4InputTrack) parseEdts(edts mp4Box, movieScale uint32) error {
	kids, err := edts.kids()
	if err != nil {
		return err
	}
	elst, ok := mp4Find(kids, "elst")
	if !ok {
		return nil
	}
	c := &mp4Cursor{box: elst}
	v, _ := c.fullBox()
	entrySize := 12
	if v == 1 {
		entrySize = 20
	}
	n, err := c.count("entry count", entrySize)
	if err != nil {
		return err
	}
	var delay int64 // in the movie timescale
	for range n {
		var dur uint64
		var mediaTime int64
		if v == 1 {
			dur, mediaTime = c.u64(), int64(c.u64())
		} else {
			dur, mediaTime = uint64(c.u32()), int64(int32(c.u32()))
		}
		c.u32() // media_rate
		if mediaTime == mp4NoEdit {
			delay += int64(min(dur, uint64(maxMP4EditShift)))
			continue
		}
		if mediaTime < 0 || mediaTime > maxMP4EditShift || delay > maxMP4EditShift {
			return mp4Err(elst.path, elst.off, "media_time %d, delay %d out of range", mediaTime, delay)
		}
		if movieScale > 0 {
			delay = delay * int64(t.timescale) / int64(movieScale)
		}
		t.shift, t.edited, t.editStart = delay-mediaTime, true, delay
		break
	}
	return c.err()
}

// parseStbl builds the sample list of a plain MP4 from the sample table
// (§8.6-§8.7): decode times (stts), composition offsets (ctts), sizes
// (stsz, stz2), chunks (stsc, stco, co64) and sync samples (stss).
func (t *mp4InputTrack) parseStbl(sk []mp4Box, stbl mp4Box, fileSize int64) error {
	t.fragEnd = t.shift // where a first fragment without tfdt starts
	sizes, err := mp4SampleSizes(sk, stbl, fileSize)
	if err != nil || len(sizes) == 0 {
		return err
	}
	n := len(sizes)
	samples := make([]mp4InputSample, n)
	for i, s := range sizes {
		samples[i].size = s
		samples[i].key = true
	}

	stts, ok := mp4Find(sk, "stts")
	if !ok {
		return mp4Err(stbl.path, stbl.off, "no stts")
	}
	c := &mp4Cursor{box: stts}
	c.fullBox()
	entries, err := c.count("entry count", 8)
	if err != nil {
		return err
	}
	i, dts := 0, t.shift
	for range entries {
		count, delta := int(c.u32()), int64(c.u32())
		for ; count > 0 && i < n; count-- {
			samples[i].dts = dts
			dts += delta
			i++
		}
	}
	if i < n {
		return mp4Err(stts.path, stts.off, "times for %d samples, want %d", i, n)
	}
	t.fragEnd = dts

	if ctts, ok := mp4Find(sk, "ctts"); ok {
		c := &mp4Cursor{box: ctts}
		c.fullBox() // version 1 offsets are signed; version 0 ones fit int32 in practice
		entries, err := c.count("entry count", 8)
		if err != nil {
			return err
		}
		i := 0
		for range entries {
			count, off := int(c.u32()), int32(c.u32())
			for ; count > 0 && i < n; count-- {
				samples[i].cto = off
				i++
			}
		}
	}

	if stss, ok := mp4Find(sk, "stss"); ok {
		for i := range samples {
			samples[i].key = false
		}
		c := &mp4Cursor{box: stss}
		c.fullBox()
		entries, err := c.count("entry count", 4)
		if err != nil {
			return err
		}
		for range entries {
			if k := int(c.u32()); k >= 1 && k <= n {
				samples[k-1].key = true
			}
		}
	}
	if !t.video {
		for i := range samples {
			samples[i].key = true
		}
	}
	if t.video && t.edited {
		t.alignEdit(samples)
	}

	if err := mp4ChunkOffsets(sk, stbl, samples); err != nil {
		return err
	}
	t.samples = samples
	return nil
}

// alignEdit presents the first picture at or after the edit's media_time
// at the edit's start, as ffmpeg does when an edit begins between two
// pictures (a stream copy cut off a keyframe): pictures before it keep
// their places relative to it.
func (t *mp4InputTrack) alignEdit(samples []mp4InputSample) {
	first, found := int64(0), false
	for _, s := range samples {
		if pts := s.dts + int64(s.cto); pts >= t.editStart && (!found || pts < first) {
			first, found = pts, true
		}
	}
	if !found || first == t.editStart {
		return
	}
	late := first - t.editStart
	for i := range samples {
		samples[i].dts -= late
	}
	t.shift -= late
	t.fragEnd -= late
}

// mp4SampleSizes reads stsz (§8.7.3.2) or stz2 (§8.7.3.3).
// Samples of one fixed size must fit in the file, so a small file cannot
// make the reader allocate millions of them.
func mp4SampleSizes(sk []mp4Box, stbl mp4Box, fileSize int64) ([]uint32, error) {
	if stsz, ok := mp4Find(sk, "stsz"); ok {
		c := &mp4Cursor{box: stsz}
		c.fullBox()
		fixed := c.u32()
		n := c.u32()
		if err := c.err(); err != nil {
			return nil, err
		}
		if n > maxMP4Samples {
			return nil, mp4Err(stsz.path, stsz.off, "sample count %d too large", n)
		}
		if fixed > 0 && uint64(n)*uint64(fixed) > uint64(fileSize) {
			return nil, mp4Err(stsz.path, stsz.off, "%d samples of %d bytes do not fit in the file (%d bytes)", n, fixed, fileSize)
		}
		if fixed == 0 && uint64(n)*4 > uint64(c.left()) {
			return nil, mp4Err(stsz.path, stsz.off, "sample count %d too large for the box (%d bytes left)", n, c.left())
		}
		sizes := make([]uint32, n)
		for i := range sizes {
			sizes[i] = fixed
			if fixed == 0 {
				sizes[i] = c.u32()
			}
		}
		return sizes, nil
	}
	stz2, ok := mp4Find(sk, "stz2")
	if !ok {
		return nil, mp4Err(stbl.path, stbl.off, "no stsz or stz2")
	}
	c := &mp4Cursor{box: stz2}
	c.fullBox()
	c.u24()
	field := int(c.u8())
	n := c.u32()
	if err := c.err(); err != nil {
		return nil, err
	}
	if field != 4 && field != 8 && field != 16 {
		return nil, mp4Err(stz2.path, stz2.off, "field_size %d", field)
	}
	if n > maxMP4Samples || (uint64(n)*uint64(field)+7)/8 > uint64(c.left()) {
		return nil, mp4Err(stz2.path, stz2.off, "sample count %d too large", n)
	}
	sizes := make([]uint32, n)
	rest := c.box.body[c.p:]
	for i := range sizes {
		switch field {
		case 4:
			b := rest[i/2]
			if i%2 == 0 {
				sizes[i] = uint32(b >> 4)
			} else {
				sizes[i] = uint32(b & 0x0F)
			}
		case 8:
			sizes[i] = uint32(rest[i])
		case 16:
			sizes[i] = uint32(binary.BigEndian.Uint16(rest[2*i:]))
		}
	}
	return sizes, nil
}

// mp4ChunkOffsets places each sample in the file: stsc maps samples to
// chunks (§8.7.4), stco/co64 give each chunk's offset (§8.7.5).
func mp4ChunkOffsets(sk []mp4Box, stbl mp4Box, samples []mp4InputSample) error {
	var chunks []int64
	if stco, ok := mp4Find(sk, "stco"); ok {
		c := &mp4Cursor{box: stco}
		c.fullBox()
		n, err := c.count("chunk count", 4)
		if err != nil {
			return err
		}
		chunks = make([]int64, n)
		for i := range chunks {
			chunks[i] = int64(c.u32())
		}
	} else if co64, ok := mp4Find(sk, "co64"); ok {
		c := &mp4Cursor{box: co64}
		c.fullBox()
		n, err := c.count("chunk count", 8)
		if err != nil {
			return err
		}
		chunks = make([]int64, n)
		for i := range chunks {
			chunks[i] = int64(c.u64() & (1<<62 - 1))
		}
	} else {
		return mp4Err(stbl.path, stbl.off, "no stco or co64")
	}
	stsc, ok := mp4Find(sk, "stsc")
	if !ok {
		return mp4Err(stbl.path, stbl.off, "no stsc")
	}
	c := &mp4Cursor{box: stsc}
	c.fullBox()
	entries, err := c.count("entry count", 12)
	if err != nil {
		return err
	}
	type run struct{ first, perChunk int }
	runs := make([]run, entries)
	for i := range runs {
		runs[i] = run{int(c.u32()), int(c.u32())}
		c.u32() // sample_description_index
		if runs[i].first < 1 || (i > 0 && runs[i].first <= runs[i-1].first) {
			return mp4Err(stsc.path, stsc.off, "entry %d: first_chunk %d out of order", i, runs[i].first)
		}
	}
	s := 0
	for ri, r := range runs {
		last := len(chunks) // chunks [first-1, last) follow this run
		if ri+1 < len(runs) {
			last = min(runs[ri+1].first-1, len(chunks))
		}
		for ch := r.first - 1; ch < last && s < len(samples); ch++ {
			off := chunks[ch]
			for k := 0; k < r.perChunk && s < len(samples); k++ {
				samples[s].off = off
				off += int64(samples[s].size)
				s++
			}
		}
	}
	if s < len(samples) {
		return mp4Err(stsc.path, stsc.off, "chunks hold %d samples, want %d", s, len(samples))
	}
	return nil
}

// ---- Fragments ----

// loadFragment reads the next moof (§8.8.4) and queues its samples. It
// returns false at the end of the file.
func (m *mp4Reader) loadFragment() (bool, error) {
	for m.fragOff < m.size {
		off := m.fragOff
		typ, hdr, size, err := m.boxHeader(off)
		if err != nil {
			return false, err
		}
		m.fragOff = off + size
		if typ != "moof" {
			continue
		}
		moof, err := m.readBox(typ, off, hdr, size)
		if err != nil {
			return false, err
		}
		return true, m.parseMoof(moof)
	}
	return false, nil
}

func (m *mp4Reader) track(id uint32) *mp4InputTrack {
	for _, t := range m.tracks {
		if t.id == id {
			return t
		}
	}
	return nil
}

func (m *mp4Reader) parseMoof(moof mp4Box) error {
	kids, err := moof.kids()
	if err != nil {
		return err
	}
	// §8.8.7.1: without base-data-offset or default-base-is-moof, the
	// first traf's data starts at the moof, the next ones where the
	// previous traf's data ended.
	prevEnd := moof.off
	for _, traf := range kids {
		if traf.typ != "traf" {
			continue
		}
		tk, err := traf.kids()
		if err != nil {
			return err
		}
		tfhd, ok := mp4Find(tk, "tfhd")
		if !ok {
			return mp4Err(traf.path, traf.off, "no tfhd")
		}
		c := &mp4Cursor{box: tfhd}
		_, flags := c.fullBox()
		t := m.track(c.u32())
		base := prevEnd
		if flags&mp4BaseIsMoof != 0 {
			base = moof.off
		}
		if flags&0x01 != 0 {
			base = int64(c.u64() & (1<<62 - 1))
		}
		if flags&0x02 != 0 {
			c.u32() // sample_description_index
		}
		var defDur, defSize, defFlags uint32
		if t != nil {
			defDur, defSize, defFlags = t.defDuration, t.defSize, t.defFlags
		}
		if flags&0x08 != 0 {
			defDur = c.u32()
		}
		if flags&0x10 != 0 {
			defSize = c.u32()
		}
		if flags&0x20 != 0 {
			defFlags = c.u32()
		}
		if err := c.err(); err != nil {
			return err
		}
		if t == nil {
			continue // a track we do not send
		}
		dts := t.fragEnd
		if tfdt, ok := mp4Find(tk, "tfdt"); ok {
			c := &mp4Cursor{box: tfdt}
			if v, _ := c.fullBox(); v == 1 {
				dts = int64(c.u64() & uint64(mp4MaxTime))
			} else {
				dts = int64(c.u32())
			}
			if err := c.err(); err != nil {
				return err
			}
			dts += t.shift
		}
		pos := base
		for _, trun := range tk {
			if trun.typ != "trun" {
				continue
			}
			c := &mp4Cursor{box: trun}
			_, tf := c.fullBox()
			n := c.u32()
			if tf&0x01 != 0 {
				pos = base + int64(int32(c.u32()))
			}
			firstFlags, hasFirst := uint32(0), tf&0x04 != 0
			if hasFirst {
				firstFlags = c.u32()
			}
			per := 4 * (int(tf>>8&1) + int(tf>>9&1) + int(tf>>10&1) + int(tf>>11&1))
			if err := c.err(); err != nil {
				return err
			}
			if uint64(n)*uint64(per) > uint64(c.left()) {
				return mp4Err(trun.path, trun.off, "sample count %d too large for the box (%d bytes left)", n, c.left())
			}
			if tf&0x200 == 0 && uint64(n)*uint64(max(defSize, 1)) > uint64(m.size) {
				return mp4Err(trun.path, trun.off, "%d samples of %d bytes do not fit in the file (%d bytes)", n, defSize, m.size)
			}
			if len(t.samples)-t.next+int(n) > maxMP4Samples {
				return mp4Err(trun.path, trun.off, "more than %d samples queued for track %d", maxMP4Samples, t.id)
			}
			for i := range int(n) {
				dur, size, sflags, cto := defDur, defSize, defFlags, int32(0)
				if tf&0x100 != 0 {
					dur = c.u32()
				}
				if tf&0x200 != 0 {
					size = c.u32()
				}
				if tf&0x400 != 0 {
					sflags = c.u32()
				}
				if tf&0x800 != 0 {
					cto = int32(c.u32())
				}
				if i == 0 && hasFirst {
					sflags = firstFlags
				}
				t.samples = append(t.samples, mp4InputSample{off: pos, size: size, dts: dts, cto: cto,
					key: !t.video || sflags&mp4NonSync == 0})
				pos += int64(size)
				dts += int64(dur)
				if dts > mp4MaxTime || pos > mp4MaxTime {
					return mp4Err(trun.path, trun.off, "decode time or offset overflows")
				}
			}
			if err := c.err(); err != nil {
				return err
			}
		}
		t.fragEnd = dts
		prevEnd = pos
	}
	return nil
}

// ---- Reading ----

// mp4ToMS converts a time in a timescale to milliseconds, rounding to the
// nearest (and down at negative halves, which do not matter).
func mp4ToMS(t int64, scale uint32) int64 {
	s := int64(scale)
	q, r := t/s, t%s
	if r < 0 {
		q, r = q-1, r+s
	}
	return q*1000 + (r*1000+s/2)/s
}

// next returns the sequence headers, then samples in decode order across
// tracks.
func (m *mp4Reader) next() (flvTag, error) {
	if len(m.headers) > 0 {
		h := m.headers[0]
		m.headers = m.headers[1:]
		return h, nil
	}
	if m.fragmented {
		if err := m.fill(); err != nil {
			return flvTag{}, err
		}
	}
	if !m.started {
		m.started = true
		first := int64(0)
		for _, t := range m.tracks {
			if t.next < len(t.samples) {
				first = min(first, mp4ToMS(t.samples[t.next].dts, t.timescale))
			}
		}
		m.offsetMS = -first
	}
	var best *mp4InputTrack
	var bestMS int64
	for _, t := range m.tracks {
		if t.next >= len(t.samples) {
			continue
		}
		ms := mp4ToMS(t.samples[t.next].dts, t.timescale)
		if best == nil || ms < bestMS {
			best, bestMS = t, ms
		}
	}
	if best == nil {
		return flvTag{}, io.EOF
	}
	s := best.samples[best.next]
	best.next++
	return m.sampleTag(best, s, bestMS)
}

// fill loads fragments until every track has a sample queued, so that
// tracks kept in separate fragments still interleave by time.
func (m *mp4Reader) fill() error {
	for !m.fragDone {
		hungry := false
		for _, t := range m.tracks {
			if t.next >= len(t.samples) {
				hungry = true
				if t.next > 0 {
					t.samples, t.next = t.samples[:0], 0
				}
			}
		}
		if !hungry {
			return nil
		}
		more, err := m.loadFragment()
		if err != nil {
			return err
		}
		m.fragDone = !more
	}
	return nil
}

// sampleTag reads one sample and wraps it in its codec's tag header.
func (m *mp4Reader) sampleTag(t *mp4InputTrack, s mp4InputSample, dtsMS int64) (flvTag, error) {
	sampleNo := t.emitted
	t.emitted++
	if s.size > maxMP4Sample {
		return flvTag{}, fmt.Errorf("mp4: track %d sample %d at offset %d: size %d too large", t.id, sampleNo, s.off, s.size)
	}
	if s.off < 0 || s.off+int64(s.size) > m.size {
		return flvTag{}, fmt.Errorf("mp4: track %d sample %d at offset %d (%d bytes): past the end of the file (%d bytes)", t.id, sampleNo, s.off, s.size, m.size)
	}
	cto := mp4ToMS(s.dts+int64(s.cto), t.timescale) - dtsMS
	cto = max(mp4SI24Min, min(mp4SI24Max, cto))
	frameType := byte(2)
	if s.key {
		frameType = 1
	}
	b := m.body[:0]
	typ := uint8(tagVideo)
	switch t.codec {
	case "avc":
		b = append(b, frameType<<4|codecAVC, 1, byte(cto>>16), byte(cto>>8), byte(cto))
	case "hevc":
		if cto == 0 {
			b = append(b, exVideoHead(s.key, exCodedFramesX, "hvc1")...)
		} else {
			b = append(b, exVideoHead(s.key, exCodedFrames, "hvc1")...)
			b = append(b, byte(cto>>16), byte(cto>>8), byte(cto))
		}
	case "av1":
		b = append(b, exVideoHead(s.key, exCodedFrames, "av01")...)
	case "vp9":
		b = append(b, exVideoHead(s.key, exCodedFrames, "vp09")...)
	case "aac":
		typ = tagAudio
		b = append(b, aacTagByte, 1)
	case "opus":
		typ = tagAudio
		b = append(b, exAudioHead(exCodedFrames, "Opus")...)
	}
	h := len(b)
	b = slices.Grow(b, int(s.size))[:h+int(s.size)]
	m.body = b
	if err := m.readAt(b[h:], s.off); err != nil {
		return flvTag{}, fmt.Errorf("mp4: track %d sample %d: %w", t.id, sampleNo, err)
	}
	return flvTag{Type: typ, Time: uint32(max(0, dtsMS+m.offsetMS)), Data: b}, nil
}
