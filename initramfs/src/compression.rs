//! Compressing a whole archive, and decompressing one compressed stream of a
//! (possibly concatenated) initramfs, in the formats the kernel's decompressors accept.

use std::fmt;
use std::io::Read;
use std::str::FromStr;

/// How an archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    Gzip,
    Zstd,
    Xz,
    None,
}

/// gzip -6 takes 4 s where -9 takes 26 s for 1% less.
const GZIP_LEVEL: u32 = 6;
/// zstd is the default because the kernel unpacks it fastest of the formats that also
/// compress well; the level trades build time for transfer. Measured on the 65.7 MB
/// netboot archive of Debian 6.1, unpacked by that kernel under QEMU TCG (guest time
/// with -icount, from "Trying to unpack rootfs" to "Freeing initrd memory"):
///   level 9:  14.5 MB, 0.87 s unpack, 1.5 s to build on 2 cores
///   level 19: 12.9 MB, 0.93 s unpack, ~43 s to build
///   level 19 with a 64 MB long-distance window, or level 22: 12.8-12.9 MB,
///     0.98-1.00 s unpack, 60-80 s to build
///   (xz -6: 11.7 MB but 5.1 s unpack; gzip -6: 17.8 MB, 0.97 s)
/// PXE clients fetch the initrd by TFTP, at about 0.17 s per MB on the QEMU rig, so
/// level 19's 1.5 MB less save ~0.25 s for 55 ms more unpacking; past it there is
/// little to gain, for a 64 MB window the kernel must allocate at boot.
const ZSTD_LEVEL: i32 = 19;
/// Level 19's own 8 MiB window, pinned: the kernel's `unzstd` allocates the whole
/// window when it unpacks, so a larger one (long-distance mode, a newer zstd's
/// defaults) would cost boot memory and time.
const ZSTD_WINDOW_LOG: u32 = 23;
/// Preset 6 (8 MiB dictionary), no BCJ filter, CRC32 check: the kernel's xz_dec
/// does not verify CRC64 in every configuration.
const XZ_PRESET: u32 = 6;
/// Independent xz blocks let every core compress; the split depends only on this
/// size, so the output is the same for any number of threads.
const XZ_BLOCK_SIZE: u64 = 16 << 20;

/// Every format, with its command-line name, in the order help texts list them.
pub const ALL: [(Compression, &str); 4] =
    [(Compression::Zstd, "zstd"), (Compression::Gzip, "gzip"), (Compression::Xz, "xz"), (Compression::None, "none")];

impl Compression {
    pub fn name(self) -> &'static str {
        ALL.iter().find(|(compression, _)| *compression == self).map(|(_, name)| *name).unwrap_or("none")
    }

    /// Compresses `data` (a complete archive) into one stream of this format.
    pub fn compress(self, data: &[u8]) -> Result<Vec<u8>, CompressError> {
        let fail = |source: std::io::Error| CompressError { compression: self, source };
        match self {
            Compression::None => Ok(data.to_vec()),
            Compression::Gzip => {
                use std::io::Write;
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(data.len() / 3),
                    flate2::Compression::new(GZIP_LEVEL),
                );
                encoder.write_all(data).map_err(fail)?;
                encoder.finish().map_err(fail)
            }
            Compression::Zstd => {
                let mut compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(fail)?;
                // Worker threads do not change the output: zstd's multithreaded frames
                // are identical for any worker count >= 1, so builds stay reproducible
                // across machines while using the cores that are there.
                compressor.set_parameter(zstd::zstd_safe::CParameter::NbWorkers(worker_count())).map_err(fail)?;
                compressor.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true)).map_err(fail)?;
                compressor.set_parameter(zstd::zstd_safe::CParameter::WindowLog(ZSTD_WINDOW_LOG)).map_err(fail)?;
                compressor.compress(data).map_err(fail)
            }
            Compression::Xz => {
                use std::io::Write;
                let mut options = lzma_rust2::XzOptions::with_preset(XZ_PRESET);
                options.set_check_sum_type(lzma_rust2::CheckType::Crc32);
                options.set_block_size(std::num::NonZeroU64::new(XZ_BLOCK_SIZE));
                let mut writer =
                    lzma_rust2::XzWriterMt::new(Vec::with_capacity(data.len() / 4), options, worker_count())
                        .map_err(fail)?;
                writer.write_all(data).map_err(fail)?;
                writer.finish().map_err(fail)
            }
        }
    }
}

fn worker_count() -> u32 {
    std::thread::available_parallelism().map_or(1, |count| count.get() as u32)
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A compression name that is not one of `gzip`, `zstd`, `xz`, `none`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCompression(pub String);

impl fmt::Display for UnknownCompression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = ALL.iter().map(|(_, name)| *name).collect();
        write!(f, "unknown compression {:?}: use one of {}", self.0, names.join(", "))
    }
}
impl std::error::Error for UnknownCompression {}

impl FromStr for Compression {
    type Err = UnknownCompression;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ALL.iter()
            .find(|(_, name)| *name == text)
            .map(|(compression, _)| *compression)
            .ok_or_else(|| UnknownCompression(text.to_string()))
    }
}

/// The encoder failed (out of memory, or a library error).
#[derive(Debug)]
pub struct CompressError {
    pub compression: Compression,
    pub source: std::io::Error,
}

impl fmt::Display for CompressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} compression of the archive failed: {}; try --compress none to rule the encoder out",
            self.compression, self.source
        )
    }
}
impl std::error::Error for CompressError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Magic numbers at the start of each compressed stream.
const MAGICS: [(Compression, &[u8]); 3] = [
    (Compression::Gzip, &[0x1f, 0x8b]),
    (Compression::Zstd, &[0x28, 0xb5, 0x2f, 0xfd]),
    (Compression::Xz, &[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]),
];

/// The compressed format whose magic `data` starts with.
pub fn detect(data: &[u8]) -> Option<Compression> {
    MAGICS.iter().find(|(_, magic)| data.starts_with(magic)).map(|(compression, _)| *compression)
}

/// Decompresses the single stream at the start of `input` (which may continue with
/// more streams or padding). Returns the output and how many input bytes the stream
/// occupied. On failure returns a description of what the decoder reported.
pub fn decompress_stream(compression: Compression, input: &[u8]) -> Result<(Vec<u8>, usize), String> {
    match compression {
        Compression::None => Ok((input.to_vec(), input.len())),
        Compression::Gzip => {
            // The bufread decoder takes only the bytes of one gzip member from the slice.
            let mut decoder = flate2::bufread::GzDecoder::new(input);
            let mut out = Vec::with_capacity(input.len() * 3);
            decoder.read_to_end(&mut out).map_err(|error| error.to_string())?;
            let rest = decoder.into_inner();
            Ok((out, input.len() - rest.len()))
        }
        Compression::Zstd => {
            let frame_len = zstd::zstd_safe::find_frame_compressed_size(input)
                .map_err(|code| format!("bad or truncated zstd frame ({})", zstd::zstd_safe::get_error_name(code)))?;
            let out = zstd::stream::decode_all(&input[..frame_len]).map_err(|error| error.to_string())?;
            Ok((out, frame_len))
        }
        Compression::Xz => decompress_xz(input),
    }
}

fn decompress_xz(input: &[u8]) -> Result<(Vec<u8>, usize), String> {
    use lzma_rust2::{Action, Status, XzStream};
    let mut stream = XzStream::new(false);
    let mut out = Vec::with_capacity(input.len() * 4);
    let mut buffer = vec![0u8; 1 << 20];
    let mut position = 0;
    loop {
        let result =
            stream.process(&input[position..], &mut buffer, Action::Finish).map_err(|error| error.to_string())?;
        position += result.bytes_consumed;
        out.extend_from_slice(&buffer[..result.bytes_produced]);
        if result.status == Status::StreamEnd {
            return Ok((out, position));
        }
        if result.bytes_consumed == 0 && result.bytes_produced == 0 {
            return Err("xz stream ends before its footer (truncated)".to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_to_the_same_compression() {
        for (compression, name) in ALL {
            assert_eq!(name.parse::<Compression>().unwrap(), compression);
            assert_eq!(compression.to_string(), name);
        }
        let error = "lz4".parse::<Compression>().unwrap_err();
        assert!(error.to_string().contains("\"lz4\""));
        assert!(error.to_string().contains("zstd"));
    }

    #[test]
    fn every_format_round_trips_and_reports_its_length_with_trailing_bytes() {
        let data: Vec<u8> = (0..200_000u32).flat_map(|n| (n % 251).to_le_bytes()).collect();
        for (compression, _) in ALL {
            let mut stream = compression.compress(&data).unwrap();
            if compression == Compression::None {
                assert_eq!(stream, data);
                continue;
            }
            assert_eq!(detect(&stream), Some(compression));
            let stream_len = stream.len();
            stream.extend_from_slice(b"\x00\x00\x00\x00070701trailing");
            let (out, consumed) = decompress_stream(compression, &stream).unwrap();
            assert_eq!(consumed, stream_len, "{compression}");
            assert!(out == data, "{compression} output differs");
        }
    }

    #[test]
    fn xz_uses_crc32_check() {
        let stream = Compression::Xz.compress(b"hello").unwrap();
        // Stream flags: byte 7 of the stream header holds the check type; 1 = CRC32.
        assert_eq!(stream[7], 0x01);
    }

    /// The window the kernel must allocate to unpack a zstd frame, from its header.
    fn zstd_window_size(frame: &[u8]) -> u64 {
        let descriptor = frame[4];
        assert_eq!(descriptor & 0x20, 0, "single-segment frame: the window is the content size");
        let (exponent, mantissa) = (u64::from(frame[5] >> 3), u64::from(frame[5] & 7));
        let base = 1u64 << (10 + exponent);
        base + base / 8 * mantissa
    }

    #[test]
    fn zstd_window_stays_at_8_mib_for_archives_larger_than_it() {
        // Varied enough not to collapse into a few matches, larger than the window.
        let data: Vec<u8> =
            (0..3_000_000u32).flat_map(|n| (n.wrapping_mul(2_654_435_761) >> 7).to_le_bytes()).collect();
        let stream = Compression::Zstd.compress(&data).unwrap();
        assert_eq!(zstd_window_size(&stream), 1 << ZSTD_WINDOW_LOG);
    }

    #[test]
    fn truncated_streams_are_errors() {
        let data = vec![7u8; 100_000];
        for compression in [Compression::Gzip, Compression::Zstd, Compression::Xz] {
            let stream = compression.compress(&data).unwrap();
            let cut = &stream[..stream.len() / 2];
            assert!(decompress_stream(compression, cut).is_err(), "{compression}");
        }
    }
}
