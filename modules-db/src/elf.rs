//! The architecture an ELF file is built for, from its header: what mkinitramfs
//! compares between the init binary and the kernel's modules, and how it finds the
//! init cross-built for a kernel.

use std::fmt;

/// Class, byte order and machine of an ELF file: what must agree for a kernel to run
/// an executable (or load a module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfArch {
    pub class64: bool,
    pub big_endian: bool,
    /// `e_machine`.
    pub machine: u16,
}

/// The architectures diskless builds init for: ELF identity, Rust target triple and
/// a name people know. qemu/init-targets lists the same triples for the build.
pub const ARCHITECTURES: &[(ElfArch, &str, &str)] = &[
    (ElfArch { class64: true, big_endian: false, machine: 62 }, "x86_64-unknown-linux-gnu", "x86-64"),
    (ElfArch { class64: false, big_endian: false, machine: 3 }, "i686-unknown-linux-gnu", "i386 (32-bit x86)"),
    (ElfArch { class64: true, big_endian: false, machine: 183 }, "aarch64-unknown-linux-gnu", "aarch64 (ARM64)"),
    (ElfArch { class64: true, big_endian: false, machine: 21 }, "powerpc64le-unknown-linux-gnu", "ppc64le (POWER)"),
];

/// Why a file's architecture could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfArchError {
    #[error("not an ELF file (no \\x7fELF magic)")]
    NotElf,
    #[error("ELF header is truncated or has an unknown class/byte order; the file is damaged")]
    BadHeader,
}

impl ElfArch {
    /// Reads the identity from the first 20 bytes of an ELF file.
    pub fn of(bytes: &[u8]) -> Result<ElfArch, ElfArchError> {
        if bytes.get(..4) != Some(b"\x7fELF") {
            return Err(ElfArchError::NotElf);
        }
        let header = bytes.get(..20).ok_or(ElfArchError::BadHeader)?;
        let class64 = match header[4] {
            1 => false,
            2 => true,
            _ => return Err(ElfArchError::BadHeader),
        };
        let big_endian = match header[5] {
            1 => false,
            2 => true,
            _ => return Err(ElfArchError::BadHeader),
        };
        let raw = [header[18], header[19]];
        let machine = if big_endian { u16::from_be_bytes(raw) } else { u16::from_le_bytes(raw) };
        Ok(ElfArch { class64, big_endian, machine })
    }

    /// The first 20 bytes of an executable of this architecture (identity, type
    /// `ET_EXEC`, machine): what [`ElfArch::of`] reads back, and all a stand-in init
    /// needs to pass mkinitramfs' architecture check in tests.
    pub fn identity_header(&self) -> [u8; 20] {
        let mut header = [0u8; 20];
        header[..4].copy_from_slice(b"\x7fELF");
        header[4] = if self.class64 { 2 } else { 1 };
        header[5] = if self.big_endian { 2 } else { 1 };
        header[6] = 1; // EI_VERSION
        let (kind, machine) = if self.big_endian {
            (2u16.to_be_bytes(), self.machine.to_be_bytes())
        } else {
            (2u16.to_le_bytes(), self.machine.to_le_bytes())
        };
        header[16..18].copy_from_slice(&kind);
        header[18..20].copy_from_slice(&machine);
        header
    }

    /// The Rust target triple init is built for on this architecture, if diskless has one.
    pub fn triple(&self) -> Option<&'static str> {
        ARCHITECTURES.iter().find(|(arch, _, _)| arch == self).map(|(_, triple, _)| *triple)
    }
}

impl fmt::Display for ElfArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match ARCHITECTURES.iter().find(|(arch, _, _)| arch == self) {
            Some((_, _, name)) => write!(f, "{name}"),
            None => write!(
                f,
                "ELF machine {} ({}-bit, {} endian)",
                self.machine,
                if self.class64 { 64 } else { 32 },
                if self.big_endian { "big" } else { "little" }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(class: u8, data: u8, machine: [u8; 2]) -> Vec<u8> {
        let mut h = b"\x7fELF".to_vec();
        h.extend([class, data, 1, 0]);
        h.extend([0; 8]);
        h.extend([1, 0]);
        h.extend(machine);
        h
    }

    #[test]
    fn machine_is_read_in_the_file_byte_order() {
        assert_eq!(ElfArch::of(&header(2, 1, [62, 0])).unwrap().triple(), Some("x86_64-unknown-linux-gnu"));
        assert_eq!(ElfArch::of(&header(1, 1, [3, 0])).unwrap().triple(), Some("i686-unknown-linux-gnu"));
        let big = ElfArch::of(&header(2, 2, [0, 21])).unwrap();
        assert_eq!(big, ElfArch { class64: true, big_endian: true, machine: 21 });
        assert_eq!(big.triple(), None, "big-endian ppc64 is not ppc64le");
        assert_eq!(big.to_string(), "ELF machine 21 (64-bit, big endian)");
    }

    #[test]
    fn identity_header_reads_back_as_its_architecture() {
        for (arch, _, _) in ARCHITECTURES {
            assert_eq!(ElfArch::of(&arch.identity_header()), Ok(*arch));
        }
        let big = ElfArch { class64: true, big_endian: true, machine: 21 };
        assert_eq!(ElfArch::of(&big.identity_header()), Ok(big));
    }

    #[test]
    fn non_elf_and_short_headers_are_errors() {
        assert_eq!(ElfArch::of(b"MZ\x90\0"), Err(ElfArchError::NotElf));
        assert_eq!(ElfArch::of(b"\x7fELF\x02\x01"), Err(ElfArchError::BadHeader));
        assert_eq!(ElfArch::of(&header(3, 1, [62, 0])), Err(ElfArchError::BadHeader));
    }
}
