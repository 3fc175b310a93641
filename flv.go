package main

// FLV (Adobe Flash Video File Format Specification 10.1, Annex E) and the
// codec headers inside its tags, including Enhanced RTMP's extended
// audio/video headers (veovera enhanced-rtmp v2).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// FLV tag types (§E.4.1) equal the RTMP message types they carry.
const (
	tagAudio  = msgAudio
	tagVideo  = msgVideo
	tagScript = msgDataAMF0
)

const (
	flvHeaderLen    = 9
	flvTagHeaderLen = 11
	maxFLVTagData   = 16 << 20 // DataSize is 24 bits
)

var (
	errFLVSignature = errors.New("flv: not an FLV stream")
	errFLVTag       = errors.New("flv: bad tag")
)

// appendFLVHeader writes the FLV header (§E.2) and PreviousTagSize0.
func appendFLVHeader(dst []byte, hasAudio, hasVideo bool) []byte {
	var flags byte
	if hasAudio {
		flags |= 0x04 // TypeFlagsAudio
	}
	if hasVideo {
		flags |= 0x01 // TypeFlagsVideo
	}
	dst = append(dst, 'F', 'L', 'V', 1, flags) // Signature, Version 1, flags
	dst = append(dst, 0, 0, 0, flvHeaderLen)   // DataOffset: the header's length
	return append(dst, 0, 0, 0, 0)             // PreviousTagSize0 is always 0
}

// appendFLVTag writes one tag (§E.4.1) and the PreviousTagSize after it.
func appendFLVTag(dst []byte, typ uint8, ts uint32, data []byte) []byte {
	dst = appendFLVTagHeader(dst, typ, ts, len(data))
	dst = append(dst, data...)                                      // Data
	return binary.BigEndian.AppendUint32(dst, uint32(11+len(data))) // PreviousTagSize
}

// fillFLVTag makes tag, which holds a tag's Data between room for its
// header and for its PreviousTagSize, that whole tag.
func fillFLVTag(tag []byte, typ uint8, ts uint32) []byte {
	n := len(tag) - flvTagHeaderLen - 4
	appendFLVTagHeader(tag[:0], typ, ts, n)
	binary.BigEndian.PutUint32(tag[len(tag)-4:], uint32(11+n))
	return tag
}

func appendFLVTagHeader(dst []byte, typ uint8, ts uint32, n int) []byte {
	dst = append(dst, typ)                                 // TagType; Filter and Reserved bits 0
	dst = append(dst, byte(n>>16), byte(n>>8), byte(n))    // DataSize
	dst = append(dst, byte(ts>>16), byte(ts>>8), byte(ts)) // Timestamp, lower 24 bits
	dst = append(dst, byte(ts>>24))                        // TimestampExtended, upper 8 bits
	return append(dst, 0, 0, 0)                            // StreamID, always 0
}

// ---- Codec headers ----

// Legacy video CodecIDs (§E.4.3.1) and Enhanced RTMP packet types.
const (
	codecAVC               = 7
	videoExHeader          = 0x80
	exSequenceStart        = 0
	exCodedFrames          = 1
	exCodedFramesX         = 3
	exMPEG2TSSequenceStart = 5
	soundAAC               = 10
	soundExHeader          = 9
)

// videoInfo classifies a video tag body: a sequence header (decoder
// configuration) or a keyframe. Unknown codecs pass as plain frames.
func videoInfo(p []byte) (header, key bool) {
	if len(p) == 0 {
		return false, false
	}
	frameType := p[0] >> 4 & 0x07 // 1 = keyframe, in both header forms
	if p[0]&videoExHeader != 0 {
		// Enhanced RTMP: IsExHeader, FrameType(3 bits), PacketType(4 bits), FourCC.
		switch p[0] & 0x0F {
		case exSequenceStart, exMPEG2TSSequenceStart:
			return true, false
		case exCodedFrames, exCodedFramesX:
			return false, frameType == 1
		}
		return false, false
	}
	// §E.4.3.1: AVC (and the HEVC/AV1 ids some encoders put in the legacy
	// header) carry AVCPacketType 0 for the sequence header.
	codec := p[0] & 0x0F
	if (codec == codecAVC || codec == 12 || codec == 13) && len(p) > 1 && p[1] == 0 {
		return true, false
	}
	return false, frameType == 1
}

// audioIsHeader reports whether an audio tag body is a sequence header:
// AAC's AudioSpecificConfig (AACPacketType 0, §E.4.2.1), or an Enhanced
// RTMP SequenceStart.
func audioIsHeader(p []byte) bool {
	if len(p) == 0 {
		return false
	}
	switch p[0] >> 4 {
	case soundAAC:
		return len(p) > 1 && p[1] == 0
	case soundExHeader:
		return p[0]&0x0F == exSequenceStart
	}
	return false
}

// metaInfo is what a stream's onMetaData declares.
type metaInfo struct {
	hasAudio, hasVideo bool
	values             amfObject
}

// parseMetadata reads a data message. It returns the payload to relay
// (with ffmpeg's "@setDataFrame" wrapper removed, so that players get
// "onMetaData" as Flash expects) and, for onMetaData, what it declares.
// ok is false for messages that are not to be relayed.
func parseMetadata(p []byte) (payload []byte, meta *metaInfo, ok bool) {
	name, rest, err := amf0Decode(p)
	if err != nil {
		return p, nil, true // not AMF we understand: relay as it came
	}
	switch name {
	case "@setDataFrame":
		p = rest
		if name, _, err = amf0Decode(p); err != nil {
			return nil, nil, false
		}
	case "@clearDataFrame":
		return nil, nil, false
	}
	if name != "onMetaData" {
		return p, nil, true
	}
	vals, err := amf0DecodeAll(p)
	if err != nil || len(vals) < 2 {
		return p, &metaInfo{}, true
	}
	var obj amfObject
	switch v := vals[1].(type) {
	case amfObject:
		obj = v
	case amfECMAArray:
		obj = amfObject(v)
	}
	_, hasAudio := obj.Get("audiocodecid")
	_, hasVideo := obj.Get("videocodecid")
	return p, &metaInfo{hasAudio: hasAudio, hasVideo: hasVideo, values: obj}, true
}

// ---- Codec parameters, for stats ----

// videoParams is what the API shows about a video track.
type videoParams struct {
	Codec         string  `json:"codec"`
	CodecString   string  `json:"codecString,omitempty"` // RFC 6381, for MSE and manifests
	Width         int     `json:"width,omitempty"`
	Height        int     `json:"height,omitempty"`
	Profile       string  `json:"profile,omitempty"`
	Level         float64 `json:"level,omitempty"`
	FPS           float64 `json:"fps,omitempty"`
	DeclaredFPS   float64 `json:"declaredFps,omitempty"`
	GOPFrames     int     `json:"gopFrames,omitempty"`
	GOPSeconds    float64 `json:"gopSeconds,omitempty"`
	KeyframeBytes int     `json:"keyframeBytes,omitempty"`
}

// audioParams is what the API shows about an audio track.
type audioParams struct {
	Codec       string `json:"codec"`
	CodecString string `json:"codecString,omitempty"` // RFC 6381, for MSE and manifests
	Profile     string `json:"profile,omitempty"`
	SampleRate  int    `json:"samplerate,omitempty"`
	Channels    int    `json:"channels,omitempty"`
}

// parseVideoHeader reads codec, profile, level and size from a video
// sequence header: an AVCDecoderConfigurationRecord (ISO/IEC 14496-15
// §5.3.3.1) for AVC; for HEVC (legacy id 12 or hvc1), AV1 and VP9 their
// configuration records (codec.go); for other codecs only the name.
func parseVideoHeader(p []byte) videoParams {
	if len(p) == 0 {
		return videoParams{}
	}
	if p[0]&videoExHeader != 0 {
		var t exTag
		if _, err := parseExVideo(p, &t); err != nil || t.n == 0 {
			return videoParams{Codec: "unknown"}
		}
		if t.packetType != exSequenceStart {
			return videoParams{Codec: fourCCName(t.tracks[0].fourCC)}
		}
		return exVideoParams(&t.tracks[0])
	}
	switch p[0] & 0x0F {
	case codecAVC:
	case codecHEVCLegacy:
		v := videoParams{Codec: "H265"}
		if len(p) > 5 && p[1] == 0 {
			v = parseHVCC(p[5:])
		}
		v.Codec = "H265" // NMS v2's name for codec id 12
		return v
	case 13:
		return videoParams{Codec: "AV1"}
	default:
		return videoParams{Codec: fmt.Sprint(p[0] & 0x0F)}
	}
	v := videoParams{Codec: "H264"}
	rec := p[min(len(p), 5):] // FLV video header, AVCPacketType, CompositionTime
	// configurationVersion, AVCProfileIndication, profile_compatibility,
	// AVCLevelIndication, lengthSizeMinusOne, numOfSequenceParameterSets.
	if len(rec) < 8 {
		return v
	}
	v.Profile = avcProfileName(rec[1])
	v.Level = float64(rec[3]) / 10
	v.CodecString = avcCodecString(rec)
	spsLen := int(binary.BigEndian.Uint16(rec[6:8]))
	if rec[5]&0x1F == 0 || len(rec) < 8+spsLen {
		return v
	}
	v.Width, v.Height = avcSPSSize(rec[8 : 8+spsLen])
	return v
}

func fourCCName(cc string) string {
	switch cc {
	case "avc1":
		return "H264"
	case "hvc1":
		return "HEVC"
	case "av01":
		return "AV1"
	case "vp09":
		return "VP9"
	case "vp08":
		return "VP8"
	case "Opus":
		return "Opus"
	case "fLaC":
		return "FLAC"
	case "ac-3":
		return "AC-3"
	case "ec-3":
		return "E-AC-3"
	case "mp4a":
		return "AAC"
	case ".mp3":
		return "MP3"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7E {
			return '?'
		}
		return r
	}, cc)
}

func avcProfileName(idc byte) string {
	switch idc {
	case 66:
		return "Baseline"
	case 77:
		return "Main"
	case 88:
		return "Extended"
	case 100:
		return "High"
	case 110:
		return "High 10"
	case 122:
		return "High 4:2:2"
	case 244:
		return "High 4:4:4"
	}
	return fmt.Sprint(idc)
}

// bitReader reads the exp-Golomb coded fields of an H.264 SPS. Reading past
// the end yields zeros and sets err, so callers check once at the end.
type bitReader struct {
	b   []byte
	pos int
	err bool
}

func (r *bitReader) bit() uint {
	if r.pos >= 8*len(r.b) {
		r.err = true
		return 0
	}
	v := uint(r.b[r.pos/8]>>(7-r.pos%8)) & 1
	r.pos++
	return v
}

func (r *bitReader) bits(n int) uint {
	var v uint
	for range n {
		v = v<<1 | r.bit()
	}
	return v
}

// ue reads an unsigned exp-Golomb value (H.264 §9.1).
func (r *bitReader) ue() uint {
	zeros := 0
	for r.bit() == 0 && !r.err {
		zeros++
		if zeros > 31 {
			r.err = true
			return 0
		}
	}
	return 1<<zeros - 1 + r.bits(zeros)
}

func (r *bitReader) se() int {
	v := r.ue()
	if v&1 == 1 {
		return int(v+1) / 2
	}
	return -int(v / 2)
}

// avcSPSSize computes the picture size from an H.264 sequence parameter set
// (H.264 §7.3.2.1.1), after removing emulation prevention bytes. It
// returns zeros for an SPS it cannot read.
func avcSPSSize(nal []byte) (width, height int) {
	rbsp := unescapeRBSP(nal)
	if len(rbsp) < 4 {
		return 0, 0
	}
	r := &bitReader{b: rbsp[1:]} // skip the NAL header
	profile := r.bits(8)
	r.bits(16) // constraint flags, level_idc
	r.ue()     // seq_parameter_set_id
	chroma := uint(1)
	switch profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		chroma = r.ue()
		if chroma == 3 {
			r.bit() // separate_colour_plane_flag
		}
		r.ue()            // bit_depth_luma_minus8
		r.ue()            // bit_depth_chroma_minus8
		r.bit()           // qpprime_y_zero_transform_bypass_flag
		if r.bit() == 1 { // seq_scaling_matrix_present_flag
			lists := 8
			if chroma == 3 {
				lists = 12
			}
			for i := range lists {
				if r.bit() == 1 {
					skipScalingList(r, map[bool]int{true: 16, false: 64}[i < 6])
				}
			}
		}
	}
	r.ue()          // log2_max_frame_num_minus4
	switch r.ue() { // pic_order_cnt_type
	case 0:
		r.ue() // log2_max_pic_order_cnt_lsb_minus4
	case 1:
		r.bit()
		r.se()
		r.se()
		n := r.ue()
		if n > 255 {
			return 0, 0
		}
		for range n {
			r.se()
		}
	}
	r.ue()  // max_num_ref_frames
	r.bit() // gaps_in_frame_num_value_allowed_flag
	wMbs := r.ue() + 1
	hMapUnits := r.ue() + 1
	frameMbsOnly := r.bit()
	if frameMbsOnly == 0 {
		r.bit() // mb_adaptive_frame_field_flag
	}
	r.bit() // direct_8x8_inference_flag
	var cropL, cropR, cropT, cropB uint
	if r.bit() == 1 { // frame_cropping_flag
		cropL, cropR, cropT, cropB = r.ue(), r.ue(), r.ue(), r.ue()
	}
	if r.err || wMbs > 1024 || hMapUnits > 1024 {
		return 0, 0
	}
	// Crop units per Table 6-1 and §7.4.2.1.1.
	cropX, cropY := uint(1), 2-frameMbsOnly
	if chroma == 1 || chroma == 2 {
		cropX = 2
	}
	if chroma == 1 {
		cropY *= 2
	}
	w := int(wMbs*16) - int(cropX*(cropL+cropR))
	h := int((2-frameMbsOnly)*hMapUnits*16) - int(cropY*(cropT+cropB))
	if w <= 0 || h <= 0 {
		return 0, 0
	}
	return w, h
}

func skipScalingList(r *bitReader, size int) {
	last, next := 8, 8
	for range size {
		if next != 0 {
			next = (last + r.se() + 256) % 256
		}
		if next != 0 {
			last = next
		}
	}
}

// parseAudioHeader reads codec, profile, sample rate and channels: for AAC
// from the AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1), otherwise from
// the FLV audio tag header (§E.4.2.1).
func parseAudioHeader(p []byte) audioParams {
	if len(p) == 0 {
		return audioParams{}
	}
	format := p[0] >> 4
	if format == soundExHeader {
		var t exTag
		if _, err := parseExAudio(p, &t); err != nil || t.n == 0 {
			return audioParams{Codec: "unknown"}
		}
		if t.packetType != exSequenceStart {
			return audioParams{Codec: fourCCName(t.tracks[0].fourCC)}
		}
		return exAudioParams(&t.tracks[0])
	}
	a := audioParams{
		Codec:      map[byte]string{0: "PCM", 1: "ADPCM", 2: "MP3", 3: "PCM", 4: "Nellymoser", 5: "Nellymoser", 6: "Nellymoser", 7: "G711A", 8: "G711U", 10: "AAC", 11: "Speex", 14: "MP3"}[format],
		SampleRate: []int{5512, 11025, 22050, 44100}[p[0]>>2&3],
		Channels:   int(p[0]&1) + 1,
	}
	if a.Codec == "" {
		a.Codec = fmt.Sprint(format)
	}
	a.CodecString = audioCodecString(a, 0)
	if format != soundAAC || len(p) < 4 || p[1] != 0 {
		return a
	}
	asc := p[2:]
	objectType := asc[0] >> 3
	freqIndex := (asc[0]&7)<<1 | asc[1]>>7
	a.Profile = map[byte]string{1: "Main", 2: "LC", 3: "SSR", 4: "LTP", 5: "HE", 29: "HEv2", 23: "LD", 39: "ELD"}[objectType]
	rates := []int{96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350}
	if int(freqIndex) < len(rates) {
		a.SampleRate = rates[freqIndex]
	}
	a.Channels = int(asc[1] >> 3 & 0x0F)
	a.CodecString = audioCodecString(a, objectType)
	return a
}

// flvTag is one parsed tag. Data is valid until the next read.
type flvTag struct {
	Type uint8
	Time uint32
	Data []byte
}

// flvReader reads an FLV stream: header, then tags.
type flvReader struct {
	r    io.Reader
	hdr  [flvTagHeaderLen]byte
	data []byte
	// Flags of the header: TypeFlagsAudio and TypeFlagsVideo.
	HasAudio, HasVideo bool
}

// newFLVReader reads and checks the FLV header.
func newFLVReader(r io.Reader) (*flvReader, error) {
	fr := &flvReader{r: r}
	var h [flvHeaderLen + 4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, fmt.Errorf("flv: header: %w", err)
	}
	if h[0] != 'F' || h[1] != 'L' || h[2] != 'V' {
		return nil, errFLVSignature
	}
	off := binary.BigEndian.Uint32(h[5:9])
	if off < flvHeaderLen || off > 1024 {
		return nil, fmt.Errorf("%w: DataOffset %d", errFLVSignature, off)
	}
	if _, err := io.CopyN(io.Discard, r, int64(off-flvHeaderLen)); err != nil {
		return nil, fmt.Errorf("flv: header: %w", err)
	}
	fr.HasAudio, fr.HasVideo = h[4]&0x04 != 0, h[4]&0x01 != 0
	return fr, nil
}

// next reads one tag and its PreviousTagSize.
func (fr *flvReader) next() (flvTag, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return flvTag{}, err
	}
	h := fr.hdr[:]
	n := be24(h[1:4])
	if n > maxFLVTagData {
		return flvTag{}, fmt.Errorf("%w: DataSize %d", errFLVTag, n)
	}
	ts := be24(h[4:7]) | uint32(h[7])<<24
	var err error
	if fr.data, err = readGrowing(fr.r, fr.data[:0], int(n)+4, growLen); err != nil {
		return flvTag{}, fmt.Errorf("flv: tag data: %w", io.ErrUnexpectedEOF)
	}
	if prev := binary.BigEndian.Uint32(fr.data[n:]); prev != 11+n {
		return flvTag{}, fmt.Errorf("%w: PreviousTagSize %d, want %d", errFLVTag, prev, 11+n)
	}
	return flvTag{Type: h[0] & 0x1F, Time: ts, Data: fr.data[:n]}, nil
}

// tagSource yields FLV tags in decode order: an FLV file, an MP4 or
// MPEG-TS demuxer, a pulled stream. Data is valid until the next call;
// io.EOF ends the source.
type tagSource interface {
	next() (flvTag, error)
}
