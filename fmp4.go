package main

// Fragmented MP4 (ISO/IEC 14496-12, the ISO base media file format, as
// CMAF and HLS use it) from the FLV tag bodies gms already holds: an init
// segment (ftyp, moov) that describes the tracks, and fragments (moof,
// mdat) that carry samples. Video: AVC from classic FLV tags (and the
// HEVC id 12 some encoders put there); avc1, hvc1, av01, vp09 from
// Enhanced RTMP. Audio: AAC and MP3 from classic tags, Opus, MP3 and AAC
// from Enhanced RTMP.
//
// The samples are the FLV bodies minus their FLV headers: FLV's AVC and
// HEVC NAL units are length-prefixed as MP4 wants them, AAC frames are
// raw, so nothing is rewritten. Sections cited are ISO/IEC 14496-12:2015
// unless they name another spec.

import (
	"encoding/binary"
	"errors"
	"fmt"
)

var errMP4Input = errors.New("fmp4: bad input")

// flvMediaKind says what a tag body is to the muxer.
type flvMediaKind int

const (
	mediaSkip   flvMediaKind = iota // nothing to mux (end of sequence, metadata, unknown packet types)
	mediaConfig                     // a sequence header: data is the decoder configuration
	mediaFrame                      // a coded frame: data is the sample
)

// flvMedia is one FLV audio or video tag body, read.
type flvMedia struct {
	kind  flvMediaKind
	codec string // the sample entry's FourCC: avc1, hvc1, av01, vp09, mp4a, Opus
	key   bool   // a keyframe (video); every audio frame is a sync sample
	cto   int32  // composition time offset, ms (video)
	data  []byte // the sample, or the configuration record; a sub-slice of the body
}

// parseFLVVideo reads a video tag body: classic (FLV 10.1 §E.4.3.1) or
// Enhanced RTMP's ExVideoTagHeader (v2, "ExVideoTagBody").
func parseFLVVideo(b []byte) (flvMedia, error) {
	if len(b) < 1 {
		return flvMedia{}, fmt.Errorf("%w: video tag: empty", errMP4Input)
	}
	frameType := b[0] >> 4 & 0x07
	if b[0]&videoExHeader != 0 {
		if len(b) < 5 {
			return flvMedia{}, fmt.Errorf("%w: video tag: ExVideoTagHeader of %d bytes, want 5", errMP4Input, len(b))
		}
		m := flvMedia{codec: string(b[1:5]), key: frameType == 1}
		switch m.codec {
		case "avc1", "hvc1", "av01", "vp09":
		default:
			return flvMedia{}, fmt.Errorf("%w: video tag: FourCC %q not muxed", errMP4Input, fourCCName(m.codec))
		}
		switch b[0] & 0x0F {
		case exSequenceStart:
			m.kind, m.data = mediaConfig, b[5:]
		case exCodedFrames:
			m.kind, m.data = mediaFrame, b[5:]
			if m.codec == "avc1" || m.codec == "hvc1" { // only these carry SI24 CompositionTime
				if len(b) < 8 {
					return flvMedia{}, fmt.Errorf("%w: video tag: CodedFrames of %d bytes, no CompositionTime", errMP4Input, len(b))
				}
				m.cto, m.data = si24(b[5:8]), b[8:]
			}
		case exCodedFramesX: // CompositionTime implied 0
			m.kind, m.data = mediaFrame, b[5:]
		default: // SequenceEnd, Metadata, MPEG2TSSequenceStart, Multitrack, ModEx
			return flvMedia{}, nil
		}
		return m, nil
	}
	var m flvMedia
	switch b[0] & 0x0F {
	case codecAVC:
		m.codec = "avc1"
	case 12: // HEVC in the classic header, as some Chinese encoders send it
		m.codec = "hvc1"
	default:
		return flvMedia{}, fmt.Errorf("%w: video tag: CodecID %d not muxed", errMP4Input, b[0]&0x0F)
	}
	if len(b) < 5 {
		return flvMedia{}, fmt.Errorf("%w: video tag: AVC header of %d bytes, want 5", errMP4Input, len(b))
	}
	m.key = frameType == 1
	switch b[1] { // AVCPacketType
	case 0:
		m.kind = mediaConfig
	case 1:
		m.kind = mediaFrame
	default: // 2: end of sequence
		return flvMedia{}, nil
	}
	m.cto, m.data = si24(b[2:5]), b[5:]
	return m, nil
}

// FLV SoundFormat values of MP3 (FLV 10.1 §E.4.2.1).
const (
	soundMP3   = 2
	soundMP38k = 14
)

// parseFLVAudio reads an audio tag body: AAC or MP3 (FLV 10.1 §E.4.2.1),
// or Enhanced RTMP's ExAudioTagHeader with Opus, MP3 or AAC.
func parseFLVAudio(b []byte) (flvMedia, error) {
	if len(b) < 1 {
		return flvMedia{}, fmt.Errorf("%w: audio tag: empty", errMP4Input)
	}
	switch b[0] >> 4 {
	case soundAAC:
		if len(b) < 2 {
			return flvMedia{}, fmt.Errorf("%w: audio tag: AAC header of %d bytes, want 2", errMP4Input, len(b))
		}
		m := flvMedia{codec: "mp4a", key: true, kind: mediaFrame, data: b[2:]}
		if b[1] == 0 { // AACPacketType 0: AudioSpecificConfig
			m.kind = mediaConfig
		}
		return m, nil
	case soundMP3, soundMP38k:
		// MP3 has no sequence header: every frame is the sample, and its
		// MPEG audio header says what the track needs.
		return flvMedia{codec: ".mp3", key: true, kind: mediaFrame, data: b[1:]}, nil
	case soundExHeader:
		if len(b) < 5 {
			return flvMedia{}, fmt.Errorf("%w: audio tag: ExAudioTagHeader of %d bytes, want 5", errMP4Input, len(b))
		}
		m := flvMedia{codec: string(b[1:5]), key: true, data: b[5:]}
		switch m.codec {
		case "Opus", ".mp3", "mp4a": // mp4a: AAC, its SequenceStart the AudioSpecificConfig
		default:
			return flvMedia{}, fmt.Errorf("%w: audio tag: FourCC %q not muxed", errMP4Input, fourCCName(m.codec))
		}
		switch b[0] & 0x0F { // AudioPacketType
		case exSequenceStart:
			if m.codec == ".mp3" { // E-RTMP defines none for MP3
				return flvMedia{}, nil
			}
			m.kind = mediaConfig
		case exCodedFrames:
			m.kind = mediaFrame
		default:
			return flvMedia{}, nil
		}
		return m, nil
	}
	return flvMedia{}, fmt.Errorf("%w: audio tag: SoundFormat %d not muxed", errMP4Input, b[0]>>4)
}

// si24 is a signed 24-bit big-endian integer.
func si24(b []byte) int32 { return int32(be24(b)<<8) >> 8 }

// ---- Tracks ----

// mp4Track is one track of the init segment.
type mp4Track struct {
	id        uint32
	video     bool
	codec     string // sample entry FourCC
	timescale uint32 // of the media: 90 kHz for video, the sample rate for audio
	config    []byte // avcC/hvcC/av1C/vpcC record, AAC AudioSpecificConfig, or the dOps box's body
	width     uint16
	height    uint16
	channels  uint16
	rate      uint32 // audio sample rate
	frameLen  uint32 // audio samples per frame when fixed (AAC: 1024), for timestamp smoothing
}

// newVideoTrack makes a video track from a sequence header. width and
// height are the stream's metadata (or a VP9 keyframe's size), used when
// the configuration record does not say (vpcC has no size).
func newVideoTrack(m flvMedia, width, height int) (*mp4Track, error) {
	t := &mp4Track{video: true, codec: m.codec, timescale: 90000, config: m.data}
	switch m.codec {
	case "avc1":
		// AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1):
		// version 1, profile, compatibility, level, lengthSizeMinusOne,
		// numOfSequenceParameterSets, then each SPS with a 16-bit length.
		r := m.data
		if len(r) < 7 || r[0] != 1 {
			return nil, fmt.Errorf("%w: avcC: %d bytes, version %d", errMP4Input, len(r), byteAt(r, 0))
		}
		if r[5]&0x1F > 0 && len(r) >= 8 {
			if n := int(binary.BigEndian.Uint16(r[6:8])); len(r) >= 8+n {
				width, height = avcSPSSize(r[8 : 8+n])
			}
		}
	case "hvc1":
		// HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 §8.3.3.1): 23 bytes before the arrays.
		if len(m.data) < 23 || m.data[0] != 1 {
			return nil, fmt.Errorf("%w: hvcC: %d bytes, version %d", errMP4Input, len(m.data), byteAt(m.data, 0))
		}
		if v := parseHVCC(m.data); v.Width > 0 && v.Height > 0 {
			width, height = v.Width, v.Height // its SPS's, cropped
		}
	case "av01":
		// AV1CodecConfigurationRecord (AV1 ISOBMFF binding §2.3): marker 1, version 1.
		if len(m.data) < 4 || m.data[0] != 0x81 {
			return nil, fmt.Errorf("%w: av1C: %d bytes, first byte %#x, want 0x81", errMP4Input, len(m.data), byteAt(m.data, 0))
		}
		// Chromium refuses an av01 sample entry of size 0 ("Invalid video
		// decoder config"): take it from the sequence header in av1C.
		if v := parseAV1C(m.data); v.Width > 0 && v.Height > 0 {
			width, height = v.Width, v.Height
		}
	case "vp09":
		// VPCodecConfigurationRecord (VP codec ISOBMFF binding §2.2): 8 bytes and initialization data;
		// vpcC's own FullBox header is written with it (appendVideoEntry), so not one a publisher sent.
		t.config = vpccRecord(m.data)
		if len(t.config) < 8 {
			return nil, fmt.Errorf("%w: vpcC: %d bytes, want 8", errMP4Input, len(m.data))
		}
	}
	t.width, t.height = uint16(min(max(width, 0), 0xFFFF)), uint16(min(max(height, 0), 0xFFFF))
	return t, nil
}

// newAudioTrack makes an audio track from a sequence header; Opus may
// come without one (Enhanced RTMP makes it optional): stereo at 48 kHz.
func newAudioTrack(m flvMedia) (*mp4Track, error) {
	t := &mp4Track{codec: m.codec}
	switch m.codec {
	case "mp4a":
		if len(m.data) < 2 {
			return nil, fmt.Errorf("%w: AudioSpecificConfig of %d bytes, want 2", errMP4Input, len(m.data))
		}
		a := parseAudioHeader(append([]byte{soundAAC << 4, 0}, m.data...))
		if a.SampleRate == 0 || a.Channels == 0 {
			return nil, fmt.Errorf("%w: AudioSpecificConfig: sample rate %d, channels %d", errMP4Input, a.SampleRate, a.Channels)
		}
		t.config, t.rate, t.channels, t.frameLen = m.data, uint32(a.SampleRate), uint16(a.Channels), 1024
	case "Opus":
		dops, channels, err := opusSpecific(m.data)
		if err != nil {
			return nil, err
		}
		t.config, t.rate, t.channels = dops, 48000, uint16(channels)
	case ".mp3":
		h, err := parseMPEGAudioHeader(m.data)
		if err != nil {
			return nil, err
		}
		t.rate, t.channels, t.frameLen = uint32(h.rate), uint16(h.channels), uint32(h.samples)
	}
	t.timescale = t.rate
	return t, nil
}

// mp3Frame says whether an FLV audio tag body is an MP3 frame, which
// stands for the sequence header MP3 does not have.
func mp3Frame(body []byte) bool {
	m, err := parseFLVAudio(body)
	return err == nil && m.codec == ".mp3" && m.kind == mediaFrame
}

// mp3HeaderOf is the stand-in header of an MP3 stream that its metadata
// declares (audiocodecid 2 or 14, audiosamplerate, stereo): an FLV MP3
// tag body of one frame header. FFmpeg sends a video frame or two before
// its first MP3 frame, so the muxer learns of the audio track here, not
// from the first frame after the video track has started. nil when the
// metadata declares no MP3 at a rate MPEG audio has.
func mp3HeaderOf(meta amfObject) []byte {
	id, _ := meta.Get("audiocodecid")
	rate, _ := meta.Get("audiosamplerate")
	stereo, _ := meta.Get("stereo")
	if id != float64(soundMP3) && id != float64(soundMP38k) {
		return nil
	}
	// version bits: 3 MPEG-1, 2 MPEG-2, 0 MPEG 2.5; layer bits 1: Layer III.
	versions := map[float64][2]byte{44100: {3, 0}, 48000: {3, 1}, 32000: {3, 2}, 22050: {2, 0}, 24000: {2, 1},
		16000: {2, 2}, 11025: {0, 0}, 12000: {0, 1}, 8000: {0, 2}}
	r, ok := rate.(float64)
	v, known := versions[r]
	if !ok || !known {
		return nil
	}
	mode := byte(3) // single channel
	if stereo == true {
		mode = 0
	}
	return []byte{soundMP3<<4 | 0x0E, 0xFF, 0xE0 | v[0]<<3 | 1<<1 | 1, 0x90 | v[1]<<2, mode << 6}
}

// mpegAudioHeader is what a track needs from an MPEG audio frame header.
type mpegAudioHeader struct {
	rate, channels, samples int // samples: per frame
}

// parseMPEGAudioHeader reads the 32-bit header that starts an MPEG-1/2
// audio frame (ISO/IEC 11172-3 §2.4.2.3, ISO/IEC 13818-3 §2.4.2.3 for the
// lower rates, and the "MPEG 2.5" extension below them): syncword 11 bits,
// version 2, layer 2, protection 1, bitrate 4, sampling frequency 2,
// padding 1, private 1, mode 2 (3: single channel), ...
func parseMPEGAudioHeader(b []byte) (mpegAudioHeader, error) {
	if len(b) < 4 || b[0] != 0xFF || b[1]&0xE0 != 0xE0 {
		return mpegAudioHeader{}, fmt.Errorf("%w: MPEG audio frame: no syncword in % x", errMP4Input, b[:min(len(b), 4)])
	}
	version, layer, rateIndex := b[1]>>3&3, b[1]>>1&3, b[2]>>2&3
	if version == 1 || layer == 0 || rateIndex == 3 {
		return mpegAudioHeader{}, fmt.Errorf("%w: MPEG audio frame: reserved version, layer or sampling frequency in % x", errMP4Input, b[:4])
	}
	h := mpegAudioHeader{rate: []int{44100, 48000, 32000}[rateIndex], channels: 2, samples: 1152}
	switch version {
	case 2: // MPEG-2: half the MPEG-1 rates
		h.rate /= 2
	case 0: // MPEG 2.5: a quarter
		h.rate /= 4
	}
	switch {
	case layer == 3: // Layer I
		h.samples = 384
	case layer == 1 && version != 3: // Layer III at the lower rates
		h.samples = 576
	}
	if b[3]>>6 == 3 {
		h.channels = 1
	}
	return h, nil
}

// opusSpecific turns an OpusHead ID header (RFC 7845 §5.1, little-endian)
// into the body of a dOps box ("Encapsulation of Opus in ISO Base Media
// File Format" §4.3.2, big-endian). An empty head means the defaults.
func opusSpecific(head []byte) (dops []byte, channels int, err error) {
	if len(head) == 0 {
		head = []byte{'O', 'p', 'u', 's', 'H', 'e', 'a', 'd', 1, 2, 0x38, 1, 0x80, 0xBB, 0, 0, 0, 0, 0}
	}
	if len(head) < 19 || string(head[:8]) != "OpusHead" {
		return nil, 0, fmt.Errorf("%w: OpusHead: %d bytes", errMP4Input, len(head))
	}
	channels = int(head[9])
	family := head[18]
	if channels == 0 || family != 0 && len(head) < 21+channels {
		return nil, 0, fmt.Errorf("%w: OpusHead: %d channels, mapping family %d, %d bytes", errMP4Input, channels, family, len(head))
	}
	dops = append(dops, 0, head[9])                                                     // Version 0, OutputChannelCount
	dops = binary.BigEndian.AppendUint16(dops, binary.LittleEndian.Uint16(head[10:12])) // PreSkip
	dops = binary.BigEndian.AppendUint32(dops, binary.LittleEndian.Uint32(head[12:16])) // InputSampleRate
	dops = binary.BigEndian.AppendUint16(dops, binary.LittleEndian.Uint16(head[16:18])) // OutputGain
	dops = append(dops, family)                                                         // ChannelMappingFamily
	if family != 0 {
		dops = append(dops, head[19:21+channels]...) // StreamCount, CoupledCount, ChannelMapping
	}
	return dops, channels, nil
}

func byteAt(b []byte, i int) byte {
	if i < len(b) {
		return b[i]
	}
	return 0
}

// ---- Boxes ----

// boxOpen starts a box (§4.2): a 32-bit size, patched by boxClose, and
// the type. A full box adds version and flags.
func boxOpen(dst []byte, typ string) ([]byte, int) {
	return append(dst, 0, 0, 0, 0, typ[0], typ[1], typ[2], typ[3]), len(dst)
}

func fullBoxOpen(dst []byte, typ string, version byte, flags uint32) ([]byte, int) {
	dst, at := boxOpen(dst, typ)
	return append(dst, version, byte(flags>>16), byte(flags>>8), byte(flags)), at
}

func boxClose(dst []byte, at int) []byte {
	binary.BigEndian.PutUint32(dst[at:], uint32(len(dst)-at))
	return dst
}

func be16(dst []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(dst, v) }
func be32(dst []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(dst, v) }

// unityMatrix is the identity transformation of mvhd and tkhd (§8.2.2.3).
var unityMatrix = []uint32{0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000}

// appendInit writes an init segment: ftyp and moov with one trak per
// track and mvex (§8.8.1), which says the samples come in fragments.
func appendInit(dst []byte, tracks []*mp4Track) []byte {
	dst, ftyp := boxOpen(dst, "ftyp") // §4.3
	dst = append(dst, "iso5"...)      // major_brand: iso5 has tfdt and default-base-is-moof
	dst = be32(dst, 512)              // minor_version
	dst = append(dst, "iso5iso6mp41"...)
	dst = boxClose(dst, ftyp)

	dst, moov := boxOpen(dst, "moov")
	dst, mvhd := fullBoxOpen(dst, "mvhd", 0, 0) // §8.2.2
	dst = be32(dst, 0)                          // creation_time
	dst = be32(dst, 0)                          // modification_time
	dst = be32(dst, 1000)                       // timescale
	dst = be32(dst, 0)                          // duration: unknown, the fragments tell
	dst = be32(dst, 0x00010000)                 // rate 1.0
	dst = be16(dst, 0x0100)                     // volume 1.0
	dst = append(dst, make([]byte, 10)...)      // reserved
	for _, v := range unityMatrix {
		dst = be32(dst, v)
	}
	dst = append(dst, make([]byte, 24)...) // pre_defined
	dst = be32(dst, nextTrackID(tracks))   // next_track_ID
	dst = boxClose(dst, mvhd)
	for _, t := range tracks {
		dst = appendTrak(dst, t)
	}
	dst, mvex := boxOpen(dst, "mvex") // §8.8.1
	for _, t := range tracks {
		var trex int
		dst, trex = fullBoxOpen(dst, "trex", 0, 0) // §8.8.3
		dst = be32(dst, t.id)                      // track_ID
		dst = be32(dst, 1)                         // default_sample_description_index
		dst = be32(dst, 0)                         // default_sample_duration
		dst = be32(dst, 0)                         // default_sample_size
		dst = be32(dst, 0)                         // default_sample_flags: sync (audio; video says per sample)
		dst = boxClose(dst, trex)
	}
	dst = boxClose(dst, mvex)
	return boxClose(dst, moov)
}

// nextTrackID is one past the largest track_ID.
func nextTrackID(tracks []*mp4Track) uint32 {
	var id uint32
	for _, t := range tracks {
		id = max(id, t.id)
	}
	return id + 1
}

func appendTrak(dst []byte, t *mp4Track) []byte {
	dst, trak := boxOpen(dst, "trak")
	dst, tkhd := fullBoxOpen(dst, "tkhd", 0, 3) // §8.3.2; flags: track_enabled, track_in_movie
	dst = be32(dst, 0)                          // creation_time
	dst = be32(dst, 0)                          // modification_time
	dst = be32(dst, t.id)                       // track_ID
	dst = be32(dst, 0)                          // reserved
	dst = be32(dst, 0)                          // duration
	dst = append(dst, make([]byte, 8)...)       // reserved
	dst = be16(dst, 0)                          // layer
	dst = be16(dst, 0)                          // alternate_group
	if t.video {
		dst = be16(dst, 0) // volume
	} else {
		dst = be16(dst, 0x0100)
	}
	dst = be16(dst, 0) // reserved
	for _, v := range unityMatrix {
		dst = be32(dst, v)
	}
	dst = be32(dst, uint32(t.width)<<16)  // width, 16.16
	dst = be32(dst, uint32(t.height)<<16) // height, 16.16
	dst = boxClose(dst, tkhd)

	dst, mdia := boxOpen(dst, "mdia")
	dst, mdhd := fullBoxOpen(dst, "mdhd", 0, 0) // §8.4.2
	dst = be32(dst, 0)                          // creation_time
	dst = be32(dst, 0)                          // modification_time
	dst = be32(dst, t.timescale)                // timescale
	dst = be32(dst, 0)                          // duration
	dst = be16(dst, 0x55C4)                     // pad 0, language "und" in ISO-639-2/T, 5 bits a letter
	dst = be16(dst, 0)                          // pre_defined
	dst = boxClose(dst, mdhd)
	dst, hdlr := fullBoxOpen(dst, "hdlr", 0, 0) // §8.4.3
	dst = be32(dst, 0)                          // pre_defined
	handler, name := "soun", "gms audio\x00"
	if t.video {
		handler, name = "vide", "gms video\x00"
	}
	dst = append(dst, handler...)          // handler_type
	dst = append(dst, make([]byte, 12)...) // reserved
	dst = append(dst, name...)             // name, null-terminated
	dst = boxClose(dst, hdlr)

	dst, minf := boxOpen(dst, "minf")
	var mhd int
	if t.video {
		dst, mhd = fullBoxOpen(dst, "vmhd", 0, 1) // §12.1.2; flags 1
		dst = append(dst, make([]byte, 8)...)     // graphicsmode, opcolor
	} else {
		dst, mhd = fullBoxOpen(dst, "smhd", 0, 0) // §12.2.2
		dst = be32(dst, 0)                        // balance, reserved
	}
	dst = boxClose(dst, mhd)
	dst, dinf := boxOpen(dst, "dinf")           // §8.7.1
	dst, dref := fullBoxOpen(dst, "dref", 0, 0) // §8.7.2
	dst = be32(dst, 1)                          // entry_count
	dst, url := fullBoxOpen(dst, "url ", 0, 1)  // flags 1: the media is in this file
	dst = boxClose(dst, url)
	dst = boxClose(dst, dref)
	dst = boxClose(dst, dinf)

	dst, stbl := boxOpen(dst, "stbl")           // §8.5.1; empty tables: the samples are in fragments
	dst, stsd := fullBoxOpen(dst, "stsd", 0, 0) // §8.5.2
	dst = be32(dst, 1)                          // entry_count
	if t.video {
		dst = appendVisualEntry(dst, t)
	} else {
		dst = appendAudioEntry(dst, t)
	}
	dst = boxClose(dst, stsd)
	for _, typ := range []string{"stts", "stsc", "stco"} {
		var at int
		dst, at = fullBoxOpen(dst, typ, 0, 0)
		dst = be32(dst, 0) // entry_count
		dst = boxClose(dst, at)
	}
	dst, stsz := fullBoxOpen(dst, "stsz", 0, 0)
	dst = be32(dst, 0) // sample_size
	dst = be32(dst, 0) // sample_count
	dst = boxClose(dst, stsz)
	dst = boxClose(dst, stbl)
	dst = boxClose(dst, minf)
	dst = boxClose(dst, mdia)
	return boxClose(dst, trak)
}

// appendVisualEntry writes a VisualSampleEntry (§12.1.3) with the codec's
// configuration box.
func appendVisualEntry(dst []byte, t *mp4Track) []byte {
	dst, entry := boxOpen(dst, t.codec)
	dst = append(dst, make([]byte, 6)...)  // reserved
	dst = be16(dst, 1)                     // data_reference_index
	dst = append(dst, make([]byte, 16)...) // pre_defined, reserved, pre_defined[3]
	dst = be16(dst, t.width)
	dst = be16(dst, t.height)
	dst = be32(dst, 0x00480000)            // horizresolution 72 dpi
	dst = be32(dst, 0x00480000)            // vertresolution 72 dpi
	dst = be32(dst, 0)                     // reserved
	dst = be16(dst, 1)                     // frame_count
	dst = append(dst, make([]byte, 32)...) // compressorname
	dst = be16(dst, 0x0018)                // depth: colour, no alpha
	dst = be16(dst, 0xFFFF)                // pre_defined -1
	var cfg int
	switch t.codec {
	case "avc1":
		dst, cfg = boxOpen(dst, "avcC") // ISO/IEC 14496-15 §5.4.2.1
	case "hvc1":
		dst, cfg = boxOpen(dst, "hvcC") // ISO/IEC 14496-15 §8.4.1.1
	case "av01":
		dst, cfg = boxOpen(dst, "av1C") // AV1 ISOBMFF binding §2.3
	case "vp09":
		dst, cfg = fullBoxOpen(dst, "vpcC", 1, 0) // VP ISOBMFF binding §2.2: a full box, version 1
	}
	dst = append(dst, t.config...)
	dst = boxClose(dst, cfg)
	return boxClose(dst, entry)
}

// appendAudioEntry writes an AudioSampleEntry (§12.2.3) with esds or dOps.
func appendAudioEntry(dst []byte, t *mp4Track) []byte {
	sampleEntry := t.codec
	if t.codec == ".mp3" {
		sampleEntry = "mp4a" // MPEG audio in MP4 is an mp4a entry (ISO/IEC 14496-14 §5.6) with its own objectTypeIndication
	}
	dst, entry := boxOpen(dst, sampleEntry)
	dst = append(dst, make([]byte, 6)...) // reserved
	dst = be16(dst, 1)                    // data_reference_index
	dst = append(dst, make([]byte, 8)...) // reserved
	dst = be16(dst, t.channels)           // channelcount
	dst = be16(dst, 16)                   // samplesize
	dst = be32(dst, 0)                    // pre_defined, reserved
	rate := t.rate
	if rate > 0xFFFF {
		rate = 0 // does not fit 16.16; the decoder configuration has it
	}
	dst = be32(dst, rate<<16) // samplerate, 16.16
	if t.codec == "Opus" {
		var dops int
		dst, dops = boxOpen(dst, "dOps")
		dst = append(dst, t.config...)
		dst = boxClose(dst, dops)
		return boxClose(dst, entry)
	}
	// esds (ISO/IEC 14496-14 §5.6): an ES_Descriptor (ISO/IEC 14496-1 §7.2.6.5)
	// holding a DecoderConfigDescriptor with the AudioSpecificConfig. MPEG-1/2
	// audio (MP3) has no decoder specific info: its frames describe themselves.
	dst, esds := fullBoxOpen(dst, "esds", 0, 0)
	asc := t.config
	objectType := byte(0x40) // objectTypeIndication (ISO/IEC 14496-1 §7.2.6.6.2): Audio ISO/IEC 14496-3
	dcd := 13
	if t.codec == ".mp3" {
		objectType = 0x6B // Audio ISO/IEC 11172-3, the one FFmpeg and browsers read for every MP3
	} else {
		dcd += descriptorLen(len(asc))
	}
	es := 3 + descriptorLen(dcd) + descriptorLen(1)
	dst = appendDescriptorHeader(dst, 0x03, es)  // ES_DescrTag
	dst = be16(dst, 0)                           // ES_ID
	dst = append(dst, 0)                         // no dependency, URL or OCR stream; priority 0
	dst = appendDescriptorHeader(dst, 0x04, dcd) // DecoderConfigDescrTag
	dst = append(dst, objectType)
	dst = append(dst, 0x15)    // streamType 5 (audio) << 2, upStream 0, reserved 1
	dst = append(dst, 0, 0, 0) // bufferSizeDB
	dst = be32(dst, 0)         // maxBitrate
	dst = be32(dst, 0)         // avgBitrate
	if t.codec != ".mp3" {
		dst = appendDescriptorHeader(dst, 0x05, len(asc)) // DecSpecificInfoTag
		dst = append(dst, asc...)
	}
	dst = appendDescriptorHeader(dst, 0x06, 1) // SLConfigDescrTag
	dst = append(dst, 2)                       // predefined: reserved for MP4 files
	dst = boxClose(dst, esds)
	return boxClose(dst, entry)
}

// descriptorLen is the size of a descriptor whose body is n bytes: its
// tag, its length in 7-bit groups (ISO/IEC 14496-1 §8.3.3), and n.
func descriptorLen(n int) int {
	size := 1
	for v := n >> 7; v > 0; v >>= 7 {
		size++
	}
	return 1 + size + n
}

func appendDescriptorHeader(dst []byte, tag byte, n int) []byte {
	dst = append(dst, tag)
	var groups []byte
	for v := n; ; v >>= 7 {
		groups = append([]byte{byte(v & 0x7F)}, groups...)
		if v>>7 == 0 {
			break
		}
	}
	for i := range len(groups) - 1 {
		groups[i] |= 0x80 // more bytes follow
	}
	return append(dst, groups...)
}

// ---- Fragments ----

// mp4Sample is one sample of a fragment, in its track's timescale.
type mp4Sample struct {
	dts  int64
	dur  uint32
	cto  int32
	key  bool
	data []byte
}

// mp4Run is a track's samples in one fragment.
type mp4Run struct {
	track   *mp4Track
	samples []mp4Sample
}

// Sample flags (§8.8.3.1): a sync sample depends on no other
// (sample_depends_on 2); any other depends on others (1) and is not a
// sync sample (sample_is_non_sync_sample).
const (
	sampleFlagsSync    = 0x02000000
	sampleFlagsNonSync = 0x01010000
)

// appendFragment writes one fragment (§8.8.4): moof with a traf per run,
// then mdat with the runs' samples in the same order. Runs without
// samples are left out.
func appendFragment(dst []byte, seq uint32, runs []mp4Run) []byte {
	start := len(dst)
	dst, moof := boxOpen(dst, "moof")
	dst, mfhd := fullBoxOpen(dst, "mfhd", 0, 0) // §8.8.5
	dst = be32(dst, seq)                        // sequence_number
	dst = boxClose(dst, mfhd)
	var offsets []int // where each trun's data_offset is, to patch
	for _, run := range runs {
		if len(run.samples) == 0 {
			continue
		}
		var traf, tfhd, tfdt, trun int
		dst, traf = boxOpen(dst, "traf")
		// §8.8.7; flags 0x020000 default-base-is-moof: data offsets count from the moof.
		dst, tfhd = fullBoxOpen(dst, "tfhd", 0, 0x020000)
		dst = be32(dst, run.track.id)
		dst = boxClose(dst, tfhd)
		dst, tfdt = fullBoxOpen(dst, "tfdt", 1, 0) // §8.8.12, version 1: 64-bit time
		dst = binary.BigEndian.AppendUint64(dst, uint64(max(run.samples[0].dts, 0)))
		dst = boxClose(dst, tfdt)
		// §8.8.8; flags: data-offset, sample-duration, sample-size, and for
		// video sample-flags and sample-composition-time-offsets (version 1:
		// signed, so a stream whose offsets go negative stays right).
		flags := uint32(0x000001 | 0x000100 | 0x000200)
		version := byte(0)
		if run.track.video {
			flags |= 0x000400 | 0x000800
			for _, s := range run.samples {
				if s.cto < 0 {
					version = 1
				}
			}
		}
		dst, trun = fullBoxOpen(dst, "trun", version, flags)
		dst = be32(dst, uint32(len(run.samples))) // sample_count
		offsets = append(offsets, len(dst))
		dst = be32(dst, 0) // data_offset, patched below
		for _, s := range run.samples {
			dst = be32(dst, s.dur)
			dst = be32(dst, uint32(len(s.data)))
			if run.track.video {
				if s.key {
					dst = be32(dst, sampleFlagsSync)
				} else {
					dst = be32(dst, sampleFlagsNonSync)
				}
				dst = be32(dst, uint32(s.cto))
			}
		}
		dst = boxClose(dst, trun)
		dst = boxClose(dst, traf)
	}
	dst = boxClose(dst, moof)
	size := 8
	for _, run := range runs {
		for _, s := range run.samples {
			size += len(s.data)
		}
	}
	dst = be32(dst, uint32(size)) // mdat (§8.1.1)
	dst = append(dst, "mdat"...)
	i := 0
	for _, run := range runs {
		if len(run.samples) == 0 {
			continue
		}
		binary.BigEndian.PutUint32(dst[offsets[i]:], uint32(len(dst)-start))
		i++
		for _, s := range run.samples {
			dst = append(dst, s.data...)
		}
	}
	return dst
}

// ---- Timing ----

// trackTimer turns FLV millisecond times into a track's decode times and
// sample durations. A sample's duration is known when the next one comes;
// until then it is pending. FLV times are 32-bit and wrap; they are
// extended to 64 bits. Audio with a fixed frame length keeps exact
// sample counts while the FLV times (rounded to the millisecond) agree.
type trackTimer struct {
	track   *mp4Track
	last    uint32 // last FLV time, ms
	ext     int64  // last FLV time extended to 64 bits, ms
	started bool
	pending *mp4Sample
	lastDur uint32
	expect  int64 // the next sample's time when frames have a fixed length; -1 when unknown
	ready   []mp4Sample
}

// dtsOf converts an FLV time to the track's timescale.
func (tt *trackTimer) dtsOf(ms uint32) int64 {
	if !tt.started {
		tt.started, tt.last, tt.ext = true, ms, int64(ms)
	}
	tt.ext += int64(int32(ms - tt.last)) // the wrap-safe difference
	tt.last = ms
	return tt.ext * int64(tt.track.timescale) / 1000
}

// add takes one sample at FLV time ms. The sample before it gets its
// duration and becomes ready.
func (tt *trackTimer) add(ms uint32, cto int32, key bool, data []byte) {
	dts := tt.dtsOf(ms)
	if n := int64(tt.track.frameLen); n > 0 && tt.expect >= 0 && abs64(dts-tt.expect) <= int64(tt.track.timescale)/1000+1 {
		dts = tt.expect // within rounding of one frame on: the exact frame length
	}
	if p := tt.pending; p != nil {
		if dts <= p.dts {
			dts = p.dts + 1 // decode times must increase (§8.6.1.2)
		}
		p.dur = uint32(min(dts-p.dts, 1<<31))
		tt.lastDur = p.dur
		tt.ready = append(tt.ready, *p)
	}
	tt.pending = &mp4Sample{dts: dts, cto: cto * int32(tt.track.timescale/1000), key: key, data: data}
	tt.expect = -1
	if n := int64(tt.track.frameLen); n > 0 {
		tt.expect = dts + n
	}
}

// flush makes the pending sample ready for a fragment that must end now.
// Its duration: up to the FLV time ms of the track's next sample when
// that is known (exact), else the previous duration, else the frame
// length.
func (tt *trackTimer) flush(ms uint32, exact bool) {
	p := tt.pending
	if p == nil {
		return
	}
	dur := int64(tt.lastDur)
	if dur == 0 {
		dur = int64(tt.track.frameLen)
	}
	if exact {
		if d := tt.dtsOf(ms) - p.dts; d > 0 {
			dur = d
		}
	}
	if dur <= 0 {
		dur = int64(tt.track.timescale) / 30 // a lone sample: a frame at 30 per second
	}
	p.dur = uint32(min(dur, 1<<31))
	tt.lastDur = p.dur
	tt.ready = append(tt.ready, *p)
	tt.pending = nil
}

// take returns the ready samples and forgets them.
func (tt *trackTimer) take() []mp4Sample {
	s := tt.ready
	tt.ready = nil
	return s
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// ---- The muxer ----

// fmp4Muxer turns one publish's FLV tags into an init segment and
// fragments. Its caller decides where fragments end (hls.go cuts them
// at keyframes and part boundaries).
type fmp4Muxer struct {
	tracks       []*mp4Track
	video, audio *trackTimer // nil when the track is absent
	seq          uint32      // the last fragment's sequence_number
	leftOut      *mp4Track   // a track muxed but kept out of init and whole fragments (see leaveOutMP3)
}

// leaveOutMP3 keeps an MP3 track out of init and of fragment's and
// fragments' whole fragments (fragments' per-track ones keep it) when
// there is video, and says whether it did. hls.js 1.7.4 reads an mp4a
// sample entry's codec only when its objectTypeIndication is 0x40 (AAC):
// for MP3's 0x6B it asks for a SourceBuffer of codecs "mp4a", which
// Chromium refuses, and the video does not play either. Video without
// its MP3 plays, as it did before gms muxed MP3; DASH players take the
// codecs from the MPD (mp4a.6B) and get the track.
func (m *fmp4Muxer) leaveOutMP3() bool {
	if m.video == nil || m.audio == nil || m.audio.track.codec != ".mp3" {
		return false
	}
	m.leftOut = m.audio.track
	return true
}

// kept is m.tracks but the one left out.
func (m *fmp4Muxer) kept() []*mp4Track {
	if m.leftOut == nil {
		return m.tracks
	}
	var kept []*mp4Track
	for _, t := range m.tracks {
		if t != m.leftOut {
			kept = append(kept, t)
		}
	}
	return kept
}

// keptRuns is runs but the left-out track's.
func (m *fmp4Muxer) keptRuns(runs []mp4Run) []mp4Run {
	if m.leftOut == nil {
		return runs
	}
	var kept []mp4Run
	for _, r := range runs {
		if r.track != m.leftOut {
			kept = append(kept, r)
		}
	}
	return kept
}

// newFMP4Muxer makes the tracks from the stream's sequence headers (FLV
// tag bodies; nil when the stream has none) and its metadata's picture
// size. A header whose codec cannot be muxed is an error; the caller may
// go on without that track.
func newFMP4Muxer(videoHeader, audioHeader []byte, width, height int) (*fmp4Muxer, error) {
	m := &fmp4Muxer{}
	var errs []error
	if videoHeader != nil {
		if t, err := videoTrackOf(videoHeader, width, height); err != nil {
			errs = append(errs, err)
		} else {
			t.id = uint32(len(m.tracks) + 1)
			m.tracks = append(m.tracks, t)
			m.video = &trackTimer{track: t, expect: -1}
		}
	}
	if audioHeader != nil {
		if t, err := audioTrackOf(audioHeader); err != nil {
			errs = append(errs, err)
		} else {
			t.id = uint32(len(m.tracks) + 1)
			m.tracks = append(m.tracks, t)
			m.audio = &trackTimer{track: t, expect: -1}
		}
	}
	if len(m.tracks) == 0 {
		errs = append(errs, fmt.Errorf("%w: no track to mux", errMP4Input))
	}
	return m, errors.Join(errs...)
}

func videoTrackOf(header []byte, width, height int) (*mp4Track, error) {
	m, err := parseFLVVideo(header)
	if err != nil {
		return nil, err
	}
	if m.kind != mediaConfig {
		return nil, fmt.Errorf("%w: video header is not a sequence header", errMP4Input)
	}
	return newVideoTrack(m, width, height)
}

func audioTrackOf(header []byte) (*mp4Track, error) {
	m, err := parseFLVAudio(header)
	if err != nil {
		return nil, err
	}
	if m.kind != mediaConfig {
		if m.codec == "Opus" && m.kind == mediaFrame {
			return newAudioTrack(flvMedia{codec: "Opus"}) // Opus without a header: the defaults
		}
		if m.codec == ".mp3" && m.kind == mediaFrame {
			return newAudioTrack(m) // MP3 has no header: its first frame stands for one
		}
		return nil, fmt.Errorf("%w: audio header is not a sequence header", errMP4Input)
	}
	return newAudioTrack(m)
}

// init is the init segment.
func (m *fmp4Muxer) init() []byte { return appendInit(nil, m.kept()) }

// timer is the track an FLV tag of type typ goes to, or nil.
func (m *fmp4Muxer) timer(typ uint8) *trackTimer {
	switch typ {
	case msgVideo:
		return m.video
	case msgAudio:
		return m.audio
	}
	return nil
}

// parse reads a tag body of type typ for the muxer: mediaFrame for a
// sample of one of its tracks with the track's codec; mediaSkip for
// anything else it can ignore; mediaConfig for a sequence header, which
// the caller compares with the tracks' (a new one needs a new muxer).
func (m *fmp4Muxer) parse(typ uint8, body []byte) (flvMedia, error) {
	tt := m.timer(typ)
	if tt == nil {
		return flvMedia{}, nil
	}
	var fm flvMedia
	var err error
	if typ == msgVideo {
		fm, err = parseFLVVideo(body)
	} else {
		fm, err = parseFLVAudio(body)
	}
	if err != nil || fm.kind == mediaSkip {
		return flvMedia{}, err
	}
	if fm.codec != tt.track.codec {
		return flvMedia{}, fmt.Errorf("%w: %s sample in a %s track", errMP4Input, fm.codec, tt.track.codec)
	}
	return fm, nil
}

// add queues one sample of the tag type typ at FLV time ms.
func (m *fmp4Muxer) add(typ uint8, ms uint32, fm flvMedia) {
	if tt := m.timer(typ); tt != nil && fm.kind == mediaFrame {
		tt.add(ms, fm.cto, fm.key || typ == msgAudio, fm.data)
	}
}

// fragment writes what is queued as one fragment, before a sample of
// type typ at FLV time ms (0 for none: at the end of the stream): that
// track's last sample ends exactly there, the others' with their last
// duration. It returns dst unchanged when nothing is queued.
func (m *fmp4Muxer) fragment(dst []byte, typ uint8, ms uint32) []byte {
	runs := m.keptRuns(m.flush(typ, ms))
	if !hasSamples(runs) {
		return dst
	}
	m.seq++
	return appendFragment(dst, m.seq, runs)
}

func hasSamples(runs []mp4Run) bool {
	for _, r := range runs {
		if len(r.samples) > 0 {
			return true
		}
	}
	return false
}

// fragments is fragment that also writes each track's samples as a
// fragment of its own (DASH has a track a segment), in m.tracks' order;
// a track without samples gets nil.
func (m *fmp4Muxer) fragments(typ uint8, ms uint32) (whole []byte, tracks [][]byte) {
	runs := m.flush(typ, ms)
	if runs == nil {
		return nil, nil
	}
	m.seq++
	if kept := m.keptRuns(runs); hasSamples(kept) {
		whole = appendFragment(nil, m.seq, kept)
	}
	for _, run := range runs {
		var frag []byte
		if len(run.samples) > 0 {
			frag = appendFragment(nil, m.seq, []mp4Run{run})
		}
		tracks = append(tracks, frag)
	}
	return whole, tracks
}

// flush ends the queued samples (see fragment) and takes them, a run a
// track in m.tracks' order; nil when there are none.
func (m *fmp4Muxer) flush(typ uint8, ms uint32) []mp4Run {
	var runs []mp4Run
	n := 0
	for _, tt := range []*trackTimer{m.video, m.audio} {
		if tt == nil {
			continue
		}
		tt.flush(ms, typ != 0 && tt == m.timer(typ))
		run := mp4Run{track: tt.track, samples: tt.take()}
		n += len(run.samples)
		runs = append(runs, run)
	}
	if n == 0 {
		return nil
	}
	return runs
}

// codecString is the track's RFC 6381 codecs parameter, for DASH's
// codecs attribute and HLS's CODECS (codec.go reads it from the
// configuration record, as it does for the API).
func (t *mp4Track) codecString() string {
	var s string
	switch t.codec {
	case "avc1":
		s = avcCodecString(t.config)
	case "hvc1":
		s = hevcCodecString(t.config)
	case "av01":
		s = parseAV1C(t.config).CodecString
	case "vp09":
		s = parseVPCC(t.codec, t.config).CodecString
	case "mp4a":
		s = exAudioParams(&exTrack{fourCC: t.codec, body: t.config}).CodecString
	case "Opus":
		s = "opus"
	case ".mp3":
		s = "mp4a.6B" // RFC 6381 §3.3: mp4a and the objectTypeIndication in hex
	}
	if s == "" {
		return t.codec
	}
	return s
}
