package main

// What gms reads inside the codecs' bitstreams: keyframes (H.264 IDR,
// HEVC IRAP, AV1 key frames, VP9 frame_type) when the tag's frame type
// does not say, codec configuration records (hvcC, av1C, vpcC) for
// stats, and RFC 6381 codec strings ("avc1.64001f", "hvc1.1.6.L93.B0")
// for players and manifests. The Enhanced RTMP headers around them are
// ertmp.go's. Everything here parses byte slices, bounded by their
// length, and never panics on bad input.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// ---- Keyframes from the bitstream ----

// bitstreamKey reports whether coded data of the codec fourCC can start a
// player: an H.264 IDR picture, an HEVC IRAP picture, an AV1 key frame with
// its sequence header, a VP9 or VP8 key frame. nalLen is the NAL unit
// length size of avc1/hvc1 (lengthSizeMinusOne + 1 in the configuration
// record). Data it cannot read is not a keyframe.
func bitstreamKey(fourCC string, data []byte, nalLen int) bool {
	switch fourCC {
	case "avc1":
		// H.264 §7.4.1.2.4: nal_unit_type 5 is a coded slice of an IDR picture.
		return anyNAL(data, nalLen, func(nal []byte) bool { return nal[0]&0x1F == 5 })
	case "hvc1":
		// H.265 §7.4.2.2: types 16-23 are IRAP (BLA, IDR, CRA, reserved IRAP).
		return anyNAL(data, nalLen, func(nal []byte) bool { t := nal[0] >> 1 & 0x3F; return t >= 16 && t <= 23 })
	case "av01":
		return av1Key(data)
	case "vp09":
		return vp9Key(vp9FirstFrame(data))
	case "vp08":
		// RFC 6386 §9.1: frame tag bit 0, key_frame, is 0 for a key frame.
		return len(data) >= 10 && data[0]&1 == 0
	}
	return false
}

// anyNAL walks length-prefixed NAL units (ISO/IEC 14496-15 §5.3.2: the
// AVCC form FLV and E-RTMP carry) and reports whether match holds for one.
func anyNAL(data []byte, nalLen int, match func(nal []byte) bool) bool {
	if nalLen < 1 || nalLen > 4 {
		nalLen = 4
	}
	for len(data) >= nalLen {
		var n uint64 // not int: 4 length bytes overflow a 32-bit int
		for _, b := range data[:nalLen] {
			n = n<<8 | uint64(b)
		}
		data = data[nalLen:]
		if n > uint64(len(data)) {
			return false
		}
		if n > 0 && match(data[:n]) {
			return true
		}
		data = data[n:]
	}
	return false
}

// AV1 OBU types (AV1 spec §6.2.2).
const (
	obuSequenceHeader = 1
	obuFrameHeader    = 3
	obuFrame          = 6
)

// av1OBU is one OBU of a low-overhead bitstream (AV1 §5.3, Annex-less).
type av1OBU struct {
	typ     byte
	payload []byte
}

// nextOBU reads one OBU header (§5.3.2) and its leb128 size (§4.10.5)
// from data, returning the OBU and what follows it. An OBU without a size
// field runs to the end of data.
func nextOBU(data []byte) (obu av1OBU, rest []byte, err error) {
	if len(data) == 0 {
		return obu, nil, errors.New("av1: empty OBU")
	}
	h := data[0]
	if h&0x80 != 0 {
		return obu, nil, errors.New("av1: obu_forbidden_bit set")
	}
	obu.typ = h >> 3 & 0x0F
	i := 1
	if h&0x04 != 0 { // obu_extension_flag
		i++
	}
	if i > len(data) {
		return obu, nil, errors.New("av1: OBU extension header cut short")
	}
	if h&0x02 == 0 { // obu_has_size_field
		return av1OBU{typ: obu.typ, payload: data[i:]}, nil, nil
	}
	size, n := leb128(data[i:])
	if n == 0 {
		return obu, nil, fmt.Errorf("av1: bad leb128 size at %d", i)
	}
	i += n
	if size > uint64(len(data)-i) {
		return obu, nil, fmt.Errorf("av1: OBU of %d bytes, %d left", size, len(data)-i)
	}
	obu.payload = data[i : i+int(size)]
	return obu, data[i+int(size):], nil
}

// leb128 decodes an unsigned LEB128 of at most 8 bytes (AV1 §4.10.5); n is
// 0 when data does not hold one.
func leb128(data []byte) (v uint64, n int) {
	for i := 0; i < 8 && i < len(data); i++ {
		v |= uint64(data[i]&0x7F) << (7 * i)
		if data[i]&0x80 == 0 {
			return v, i + 1
		}
	}
	return 0, 0
}

// av1Key reports whether a temporal unit starts with a key frame a decoder
// can begin at: a sequence header OBU, then a frame header whose
// frame_type is KEY_FRAME (§5.9.2: show_existing_frame, then frame_type;
// with reduced_still_picture_header every frame is a key frame).
func av1Key(data []byte) bool {
	var seq []byte
	for len(data) > 0 {
		obu, rest, err := nextOBU(data)
		if err != nil {
			return false
		}
		data = rest
		switch obu.typ {
		case obuSequenceHeader:
			seq = obu.payload
		case obuFrameHeader, obuFrame:
			if len(seq) == 0 || len(obu.payload) == 0 {
				return false
			}
			if seq[0]>>3&1 == 1 { // reduced_still_picture_header
				return true
			}
			h := obu.payload[0]
			return h>>7 == 0 && h>>5&3 == 0 // show_existing_frame 0, frame_type KEY_FRAME
		}
	}
	return false
}

// vp9FirstFrame is the first frame of a VP9 superframe (VP9 bitstream spec
// Annex B: an index at the end, marker 0b110xxxxx, little-endian sizes),
// or data itself when it is a single frame.
func vp9FirstFrame(data []byte) []byte {
	if len(data) == 0 {
		return data
	}
	m := data[len(data)-1]
	if m&0xE0 != 0xC0 {
		return data
	}
	frames, sizeBytes := int(m&7)+1, int(m>>3&3)+1
	index := 2 + sizeBytes*frames
	if len(data) < index || data[len(data)-index] != m {
		return data
	}
	var size uint64 // not int: 4 size bytes overflow a 32-bit int
	for i := sizeBytes - 1; i >= 0; i-- {
		size = size<<8 | uint64(data[len(data)-index+1+i])
	}
	if size > uint64(len(data)-index) {
		return nil
	}
	return data[:size]
}

// vp9Key reads a VP9 uncompressed header (VP9 spec §6.2): frame_marker,
// profile, show_existing_frame, frame_type (0 = KEY_FRAME).
func vp9Key(frame []byte) bool {
	r := &bitReader{b: frame}
	if r.bits(2) != 2 {
		return false
	}
	profile := r.bit() | r.bit()<<1
	if profile == 3 {
		r.bit() // reserved_zero
	}
	if r.bit() == 1 { // show_existing_frame
		return false
	}
	return r.bit() == 0 && !r.err
}

// vp9KeySize reads the frame size from a VP9 key frame's uncompressed
// header (§6.2: frame_sync_code, color_config, frame_size); zeros when it
// is not a key frame or cannot be read.
func vp9KeySize(frame []byte) (width, height int) {
	r := &bitReader{b: frame}
	if r.bits(2) != 2 {
		return 0, 0
	}
	profile := r.bit() | r.bit()<<1
	if profile == 3 {
		r.bit()
	}
	if r.bit() == 1 || r.bit() != 0 { // show_existing_frame, frame_type
		return 0, 0
	}
	r.bits(2) // show_frame, error_resilient_mode
	if r.bits(24) != 0x498342 {
		return 0, 0
	}
	if profile >= 2 {
		r.bit() // ten_or_twelve_bit
	}
	if r.bits(3) != 7 { // color_space != CS_RGB
		r.bit() // color_range
		if profile == 1 || profile == 3 {
			r.bits(3) // subsampling_x, subsampling_y, reserved_zero
		}
	} else if profile == 1 || profile == 3 {
		r.bit() // reserved_zero
	}
	w, h := int(r.bits(16))+1, int(r.bits(16))+1
	if r.err {
		return 0, 0
	}
	return w, h
}

// ---- Configuration records, for stats and codec strings ----

// nalLengthSize reads lengthSizeMinusOne + 1 from an AVC (§5.3.3.1, byte
// 4) or HEVC (§8.3.3.1, byte 21) decoder configuration record; 4 when the
// record is too short.
func nalLengthSize(fourCC string, rec []byte) int {
	switch {
	case fourCC == "avc1" && len(rec) > 4:
		return int(rec[4]&3) + 1
	case fourCC == "hvc1" && len(rec) > 21:
		return int(rec[21]&3) + 1
	}
	return 4
}

// unescapeRBSP removes emulation_prevention_three_bytes (H.264 §7.4.1,
// H.265 §7.4.2) from a NAL unit.
func unescapeRBSP(nal []byte) []byte {
	rbsp := make([]byte, 0, len(nal))
	for i := 0; i < len(nal); i++ {
		if i >= 2 && nal[i] == 3 && nal[i-1] == 0 && nal[i-2] == 0 {
			continue
		}
		rbsp = append(rbsp, nal[i])
	}
	return rbsp
}

// parseHVCC reads an HEVCDecoderConfigurationRecord (ISO/IEC 14496-15
// §8.3.3.1): profile and level from its header, the size from its SPS.
func parseHVCC(rec []byte) videoParams {
	v := videoParams{Codec: "HEVC"}
	if len(rec) < 23 {
		return v
	}
	v.Profile = hevcProfileName(rec[1] & 0x1F)
	v.Level = float64(rec[12]) / 30 // general_level_idc is 30 × the level
	v.CodecString = hevcCodecString(rec)
	arrays, p := int(rec[22]), rec[23:]
	for range arrays {
		if len(p) < 3 {
			break
		}
		typ, count := p[0]&0x3F, int(binary.BigEndian.Uint16(p[1:3]))
		p = p[3:]
		for range count {
			if len(p) < 2 {
				return v
			}
			n := int(binary.BigEndian.Uint16(p))
			if n > len(p)-2 {
				return v
			}
			if typ == 33 && v.Width == 0 { // SPS_NUT
				v.Width, v.Height = hevcSPSSize(p[2 : 2+n])
			}
			p = p[2+n:]
		}
	}
	return v
}

func hevcProfileName(idc byte) string {
	switch idc {
	case 1:
		return "Main"
	case 2:
		return "Main 10"
	case 3:
		return "Main Still Picture"
	case 4:
		return "Range Extensions"
	}
	return fmt.Sprint(idc)
}

// hevcSPSSize computes the picture size from an H.265 sequence parameter
// set (§7.3.2.2.1), the conformance window applied; zeros for one it
// cannot read.
func hevcSPSSize(nal []byte) (width, height int) {
	rbsp := unescapeRBSP(nal)
	if len(rbsp) < 3 {
		return 0, 0
	}
	r := &bitReader{b: rbsp[2:]} // the two-byte NAL header
	r.bits(4)                    // sps_video_parameter_set_id
	maxSubLayersMinus1 := int(r.bits(3))
	r.bit() // sps_temporal_id_nesting_flag
	// profile_tier_level(1, maxSubLayersMinus1), §7.3.3: the general part
	// is 96 bits; then per sub-layer presence flags and their parts.
	r.bits(32)
	r.bits(32)
	r.bits(32)
	profilePresent, levelPresent := make([]bool, maxSubLayersMinus1), make([]bool, maxSubLayersMinus1)
	for i := range maxSubLayersMinus1 {
		profilePresent[i], levelPresent[i] = r.bit() == 1, r.bit() == 1
	}
	if maxSubLayersMinus1 > 0 {
		r.bits(2 * (8 - maxSubLayersMinus1)) // reserved_zero_2bits
	}
	for i := range maxSubLayersMinus1 {
		if profilePresent[i] {
			r.bits(32)
			r.bits(32)
			r.bits(24) // 88 bits
		}
		if levelPresent[i] {
			r.bits(8)
		}
	}
	r.ue() // sps_seq_parameter_set_id
	chroma := r.ue()
	if chroma == 3 {
		r.bit() // separate_colour_plane_flag
	}
	w, h := r.ue(), r.ue()
	var left, right, top, bottom uint
	if r.bit() == 1 { // conformance_window_flag
		left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
	}
	if r.err || w == 0 || h == 0 || w > 16888 || h > 16888 {
		return 0, 0
	}
	// Table 6-1: SubWidthC, SubHeightC.
	subW, subH := uint(1), uint(1)
	if chroma == 1 || chroma == 2 {
		subW = 2
	}
	if chroma == 1 {
		subH = 2
	}
	cw, ch := int(w)-int(subW*(left+right)), int(h)-int(subH*(top+bottom))
	if cw <= 0 || ch <= 0 {
		return 0, 0
	}
	return cw, ch
}

// hevcCodecString is the RFC 6381 codecs parameter of HEVC (ISO/IEC
// 14496-15 Annex E.3): hvc1.[A-C]profile.compat.Ltier-level.constraints,
// e.g. hvc1.1.6.L93.B0.
func hevcCodecString(rec []byte) string {
	if len(rec) < 13 {
		return "hvc1"
	}
	var b strings.Builder
	b.WriteString("hvc1.")
	if space := rec[1] >> 6; space > 0 {
		b.WriteByte('A' + space - 1)
	}
	fmt.Fprintf(&b, "%d.", rec[1]&0x1F)
	// general_profile_compatibility_flags, in reverse bit order.
	compat := binary.BigEndian.Uint32(rec[2:6])
	var rev uint32
	for i := range 32 {
		rev |= (compat >> i & 1) << (31 - i)
	}
	fmt.Fprintf(&b, "%X.", rev)
	tier := byte('L')
	if rec[1]&0x20 != 0 {
		tier = 'H'
	}
	fmt.Fprintf(&b, "%c%d", tier, rec[12])
	// The six constraint bytes, trailing zero bytes left out.
	cons := rec[6:12]
	for len(cons) > 0 && cons[len(cons)-1] == 0 {
		cons = cons[:len(cons)-1]
	}
	for _, c := range cons {
		fmt.Fprintf(&b, ".%X", c)
	}
	return b.String()
}

// avcCodecString is the RFC 6381 codecs parameter of H.264 (RFC 6381
// §3.3): avc1. and profile_idc, constraint flags, level_idc in hex.
func avcCodecString(rec []byte) string {
	if len(rec) < 4 {
		return "avc1"
	}
	return fmt.Sprintf("avc1.%02x%02x%02x", rec[1], rec[2], rec[3])
}

// parseAV1C reads an AV1CodecConfigurationRecord (AV1 in ISOBMFF §2.3.3):
// profile, level and tier from its fixed part, the size from the sequence
// header OBU in its configOBUs.
func parseAV1C(rec []byte) videoParams {
	v := videoParams{Codec: "AV1"}
	if len(rec) < 4 || rec[0] != 0x81 { // marker 1, version 1
		return v
	}
	profile, level, tier := rec[1]>>5, rec[1]&0x1F, rec[2]>>7
	v.Profile = map[byte]string{0: "Main", 1: "High", 2: "Professional"}[profile]
	// seq_level_idx: level X.Y is (X-2)*4 + Y (AV1 Annex A.3).
	v.Level = float64(2+level/4) + float64(level%4)/10
	depth := 8
	if rec[2]&0x40 != 0 { // high_bitdepth
		depth = 10
		if rec[2]&0x20 != 0 && profile == 2 { // twelve_bit
			depth = 12
		}
	}
	tierChar := 'M'
	if tier == 1 {
		tierChar = 'H'
	}
	v.CodecString = fmt.Sprintf("av01.%d.%02d%c.%02d", profile, level, tierChar, depth)
	for obus := rec[4:]; len(obus) > 0; {
		obu, rest, err := nextOBU(obus)
		if err != nil {
			break
		}
		if obu.typ == obuSequenceHeader {
			v.Width, v.Height = av1SequenceSize(obu.payload)
			break
		}
		obus = rest
	}
	return v
}

// av1SequenceSize reads max_frame_width/height from a sequence header OBU
// (AV1 §5.5.1); zeros for one it cannot read.
func av1SequenceSize(p []byte) (width, height int) {
	r := &bitReader{b: p}
	r.bits(3)         // seq_profile
	r.bit()           // still_picture
	if r.bit() == 1 { // reduced_still_picture_header
		r.bits(5) // seq_level_idx[0]
	} else {
		decoderModel, bufferDelayLen := false, 0
		if r.bit() == 1 { // timing_info_present_flag: timing_info() §5.5.3
			r.bits(32)        // num_units_in_display_tick
			r.bits(32)        // time_scale
			if r.bit() == 1 { // equal_picture_interval
				uvlc(r) // num_ticks_per_picture_minus_1
			}
			if r.bit() == 1 { // decoder_model_info_present_flag: §5.5.4
				decoderModel = true
				bufferDelayLen = int(r.bits(5)) + 1
				r.bits(32) // num_units_in_decoding_tick
				r.bits(10) // buffer_removal_time_length_minus_1, frame_presentation_time_length_minus_1
			}
		}
		initialDisplayDelay := r.bit() == 1
		ops := int(r.bits(5)) + 1
		for range ops {
			r.bits(12)         // operating_point_idc
			if r.bits(5) > 7 { // seq_level_idx
				r.bit() // seq_tier
			}
			if decoderModel && r.bit() == 1 { // decoder_model_present_for_this_op
				r.bits(bufferDelayLen) // decoder_buffer_delay
				r.bits(bufferDelayLen) // encoder_buffer_delay
				r.bit()                // low_delay_mode_flag
			}
			if initialDisplayDelay && r.bit() == 1 {
				r.bits(4) // initial_display_delay_minus_1
			}
		}
	}
	wBits, hBits := int(r.bits(4))+1, int(r.bits(4))+1
	w, h := int(r.bits(wBits))+1, int(r.bits(hBits))+1
	if r.err {
		return 0, 0
	}
	return w, h
}

// uvlc reads an AV1 variable-length unsigned value (§4.10.3).
func uvlc(r *bitReader) uint {
	zeros := 0
	for r.bit() == 0 && !r.err {
		zeros++
		if zeros >= 32 {
			return 1<<32 - 1
		}
	}
	return r.bits(zeros) + 1<<zeros - 1
}

// vpccRecord is a VPCodecConfigurationRecord without the FullBox version
// and flags (1, 0) that ffmpeg and OBS send before it: at least 8 bytes
// follow them (§2.3.3).
func vpccRecord(rec []byte) []byte {
	if len(rec) >= 12 && rec[0] == 1 && rec[1] == 0 && rec[2] == 0 && rec[3] == 0 {
		return rec[4:]
	}
	return rec
}

// parseVPCC reads a VPCodecConfigurationRecord (VP Codec ISO Media File
// Format Binding §2.3.3): profile, level, bit depth. The size is in the
// first key frame (vp9KeySize). ffmpeg and OBS send the record with the
// FullBox version and flags before it (version 1, flags 0); both forms
// are read.
func parseVPCC(fourCC string, rec []byte) videoParams {
	v := videoParams{Codec: fourCCName(fourCC)}
	rec = vpccRecord(rec)
	if len(rec) < 3 {
		return v
	}
	profile, level, depth := rec[0], rec[1], rec[2]>>4
	v.Profile = fmt.Sprintf("Profile %d", profile)
	v.Level = float64(level) / 10
	v.CodecString = fmt.Sprintf("%s.%02d.%02d.%02d", fourCC, profile, level, depth)
	return v
}

// exVideoParams reads the configuration record of an Enhanced RTMP
// SequenceStart (or legacy HEVC sequence header) for the API.
func exVideoParams(tr *exTrack) videoParams {
	switch tr.fourCC {
	case "avc1":
		return parseVideoHeader(append([]byte{0x10 | codecAVC, 0, 0, 0, 0}, tr.body...))
	case "hvc1":
		return parseHVCC(tr.body)
	case "av01":
		return parseAV1C(tr.body)
	case "vp09", "vp08":
		return parseVPCC(tr.fourCC, tr.body)
	}
	return videoParams{Codec: fourCCName(tr.fourCC)}
}

// exAudioParams reads an Enhanced RTMP audio SequenceStart for the API:
// the AudioSpecificConfig of mp4a, the OpusHead of Opus (RFC 7845 §5.1),
// the STREAMINFO of fLaC (RFC 9639 §8.2).
func exAudioParams(tr *exTrack) audioParams {
	a := audioParams{Codec: fourCCName(tr.fourCC)}
	b := tr.body
	switch tr.fourCC {
	case "mp4a":
		asc := parseAudioHeader(append([]byte{soundAAC<<4 | 0x0F, 0}, b...))
		asc.Codec = a.Codec
		return asc
	case "Opus":
		a.CodecString = "opus"
		// "OpusHead", version, channel count, pre-skip, input sample rate (LE).
		if len(b) >= 16 && string(b[:8]) == "OpusHead" {
			a.Channels = int(b[9])
			a.SampleRate = int(binary.LittleEndian.Uint32(b[12:16]))
		}
	case "fLaC":
		a.CodecString = "flac"
		// Optional "fLaC" marker, then the STREAMINFO block: a 4-byte
		// metadata block header, 2+2+3+3 bytes of sizes, then 20 bits of
		// sample rate and 3 bits of channels - 1.
		if len(b) >= 4 && string(b[:4]) == "fLaC" {
			b = b[4:]
		}
		if len(b) >= 4+13 && b[0]&0x7F == 0 {
			si := b[4:]
			a.SampleRate = int(si[10])<<12 | int(si[11])<<4 | int(si[12])>>4
			a.Channels = int(si[12]>>1&7) + 1
		}
	case "ac-3", "ec-3":
		a.CodecString = tr.fourCC
	case ".mp3":
		a.CodecString = "mp3"
	}
	return a
}

// audioCodecString is the codecs parameter of legacy FLV audio.
func audioCodecString(a audioParams, objectType byte) string {
	switch a.Codec {
	case "AAC":
		if objectType == 0 {
			objectType = 2
		}
		return fmt.Sprintf("mp4a.40.%d", objectType)
	case "MP3":
		return "mp3"
	}
	return ""
}

// ---- Classifying a publisher's messages ----

// keyFrameSize reads the picture size from a VP9 or VP8 keyframe, whose
// configuration records do not hold it; zeros for other messages.
func keyFrameSize(body []byte) (width, height int) {
	var t exTag
	if ok, err := parseExVideo(body, &t); !ok || err != nil || t.n == 0 {
		return 0, 0
	}
	tr := &t.tracks[0]
	data, ok := codedData(tr.fourCC, t.packetType, tr.body)
	if !ok {
		return 0, 0
	}
	switch tr.fourCC {
	case "vp09":
		return vp9KeySize(vp9FirstFrame(data))
	case "vp08":
		// RFC 6386 §9.1: 3-byte frame tag, start code 9D 01 2A, then
		// 14-bit width and height (little-endian, 2 bits of scale each).
		if len(data) >= 10 && data[0]&1 == 0 && data[3] == 0x9D && data[4] == 0x01 && data[5] == 0x2A {
			return int(binary.LittleEndian.Uint16(data[6:]) & 0x3FFF), int(binary.LittleEndian.Uint16(data[8:]) & 0x3FFF)
		}
	}
	return 0, 0
}

// codecString is the RFC 6381 codecs parameter ("avc1.64001f",
// "hvc1.1.6.L93.B0", "av01.0.04M.08", "vp09.00.10.08", "mp4a.40.2",
// "opus") of a sequence header (a video or audio tag body: legacy AVC,
// HEVC id 12, AAC, or an Enhanced RTMP SequenceStart), for MSE and for
// HLS/DASH manifests; "" when gms cannot tell.
func codecString(typ uint8, header []byte) string {
	if typ == msgVideo {
		return parseVideoHeader(header).CodecString
	}
	return parseAudioHeader(header).CodecString
}
