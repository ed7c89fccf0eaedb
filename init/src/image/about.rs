//! The image's `about` file (`/etc/diskless/about`): its name on the first line, a
//! description below, as the HOWTO defines it.
//!
//! ```text
//! lab-image
//! Debian 12 for the teaching labs of building 3.
//! Updated monthly; ask the lab admins before installing packages.
//! ```
//!
//! The name names the image to its administrators: `diskless about` shows it, the
//! maintenance chroot puts it in the prompt (`(lab-image) /# `) and keeps the image's
//! `/tmp` under it in the cache. Because it becomes a path component and part of a
//! prompt, it is one word of letters, digits, `-`, `_` and `.` (the HOWTO: "cannot
//! contain spaces or special characters").

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;

use crate::local::image::open_in_image;

/// Where the about file is, relative to the image root.
pub const ABOUT_PATH: &str = "etc/diskless/about";

/// The longest name accepted: a name is a word, not a sentence.
pub const MAX_NAME_LEN: usize = 64;

/// The largest about file read: a name and a few lines of description.
const MAX_ABOUT_BYTES: u64 = 64 << 10;

/// The contents of the about file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct About {
    /// The first line, trailing blanks removed.
    pub name: String,
    /// The lines after the first, as written (trailing blank lines dropped).
    pub description: String,
}

/// Why a text is not an image name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {MAX_NAME_LEN} bytes")]
    TooLong,
    #[error("contains {character:?}: use letters, digits, '-', '_' and '.' only")]
    Character { character: char },
    #[error("starts with {character:?}: start with a letter or digit")]
    Start { character: char },
}

/// An about file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AboutError {
    #[error(
        "{} does not exist: write the image's name on its first line (letters, digits, '-', '_', '.') and a \
         description below",
        .path.display()
    )]
    Missing { path: PathBuf },
    #[error("reading {}: {source}: check that it is a readable file of the image", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is larger than {MAX_ABOUT_BYTES} bytes: it holds a name and a short description", .path.display())]
    TooLarge { path: PathBuf },
    #[error("{} is not UTF-8 text: write the name and description as plain text", .path.display())]
    NotText { path: PathBuf },
    #[error("{}: the image name {name:?} on its first line {reason}", .path.display())]
    Name {
        path: PathBuf,
        name: String,
        #[source]
        reason: NameError,
    },
}

/// Checks an image name: 1 to [`MAX_NAME_LEN`] ASCII letters, digits, `-`, `_` and
/// `.`, starting with a letter or digit (so never `.`, `..` or an option).
pub fn check_name(name: &str) -> Result<(), NameError> {
    let Some(first) = name.chars().next() else { return Err(NameError::Empty) };
    if let Some(character) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        return Err(NameError::Character { character });
    }
    if !first.is_ascii_alphanumeric() {
        return Err(NameError::Start { character: first });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    Ok(())
}

/// Parses the text of an about file read from `path` (for the messages).
pub fn parse(text: &str, path: &Path) -> Result<About, AboutError> {
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let name = first.trim_end().to_string();
    check_name(&name).map_err(|reason| AboutError::Name { path: path.to_path_buf(), name: name.clone(), reason })?;
    let description = rest.trim_end().to_string();
    Ok(About { name, description })
}

/// Reads the about file of the image at `image_root`; a symlink in the image is
/// followed inside the image.
pub fn read(image_root: &Path) -> Result<About, AboutError> {
    let path = image_root.join(ABOUT_PATH);
    let read_error = |source: io::Error| AboutError::Read { path: path.clone(), source };
    let file = match open_in_image(image_root, Path::new(ABOUT_PATH), OFlags::RDONLY | OFlags::NONBLOCK) {
        Ok(fd) => std::fs::File::from(fd),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(AboutError::Missing { path }),
        Err(e) => return Err(read_error(e)),
    };
    let meta = file.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(read_error(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")));
    }
    let mut bytes = Vec::new();
    file.take(MAX_ABOUT_BYTES + 1).read_to_end(&mut bytes).map_err(read_error)?;
    if bytes.len() as u64 > MAX_ABOUT_BYTES {
        return Err(AboutError::TooLarge { path });
    }
    let text = String::from_utf8(bytes).map_err(|_| AboutError::NotText { path: path.clone() })?;
    parse(&text, &path)
}

/// The text of `diskless about`: the name, then the description.
pub fn render(about: &About) -> String {
    let mut out = format!("{}\n", about.name);
    if !about.description.is_empty() {
        out.push_str(&about.description);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn image_with_about(text: &str) -> tempfile::TempDir {
        let img = tempfile::tempdir().unwrap();
        fs::create_dir_all(img.path().join("etc/diskless")).unwrap();
        fs::write(img.path().join(ABOUT_PATH), text).unwrap();
        img
    }

    #[test]
    fn the_first_line_is_the_name_and_the_rest_the_description() {
        let img = image_with_about("lab-image  \nDebian 12 for lab 3.\n\nAsk first.\n\n");
        let about = read(img.path()).unwrap();
        assert_eq!(about.name, "lab-image");
        assert_eq!(about.description, "Debian 12 for lab 3.\n\nAsk first.");
        assert_eq!(render(&about), "lab-image\nDebian 12 for lab 3.\n\nAsk first.\n");
    }

    #[test]
    fn a_name_alone_is_an_about_file() {
        let about = parse("gentoo", Path::new("about")).unwrap();
        assert_eq!((about.name.as_str(), about.description.as_str()), ("gentoo", ""));
        assert_eq!(render(&about), "gentoo\n");
    }

    #[test]
    fn names_with_spaces_or_special_characters_are_refused_with_the_file() {
        for (text, why) in [
            ("lab image\n", "contains ' '"),
            ("lab/image\n", "contains '/'"),
            ("\nsome text\n", "is empty"),
            ("..\n", "starts with '.'"),
            ("-rf\n", "starts with '-'"),
            ("(lab)\n", "contains '('"),
        ] {
            let e = parse(text, Path::new("/img/etc/diskless/about")).unwrap_err();
            let message = e.to_string();
            assert!(message.starts_with("/img/etc/diskless/about: the image name"), "{message}");
            assert!(message.contains(why), "{text:?}: {message}");
        }
        assert_eq!(check_name(&"a".repeat(MAX_NAME_LEN + 1)), Err(NameError::TooLong));
        assert_eq!(check_name("Lab_3.v2-x"), Ok(()));
    }

    #[test]
    fn a_missing_about_file_says_what_to_write() {
        let img = tempfile::tempdir().unwrap();
        let e = read(img.path()).unwrap_err();
        assert!(matches!(&e, AboutError::Missing { path } if *path == img.path().join(ABOUT_PATH)), "{e:?}");
        assert!(e.to_string().contains("write the image's name on its first line"), "{e}");
    }

    #[test]
    fn an_absolute_symlink_is_followed_inside_the_image() {
        let img = tempfile::tempdir().unwrap();
        fs::create_dir_all(img.path().join("etc/diskless")).unwrap();
        fs::create_dir_all(img.path().join("usr/share")).unwrap();
        fs::write(img.path().join("usr/share/about"), "inside\n").unwrap();
        std::os::unix::fs::symlink("/usr/share/about", img.path().join(ABOUT_PATH)).unwrap();
        assert_eq!(read(img.path()).unwrap().name, "inside");
    }

    #[test]
    fn binary_or_huge_about_files_are_refused() {
        let img = image_with_about("");
        fs::write(img.path().join(ABOUT_PATH), [0xff, 0xfe, b'\n']).unwrap();
        assert!(matches!(read(img.path()), Err(AboutError::NotText { .. })));
        fs::write(img.path().join(ABOUT_PATH), vec![b'a'; MAX_ABOUT_BYTES as usize + 1]).unwrap();
        assert!(matches!(read(img.path()), Err(AboutError::TooLarge { .. })));
        fs::remove_file(img.path().join(ABOUT_PATH)).unwrap();
        fs::create_dir(img.path().join(ABOUT_PATH)).unwrap();
        assert!(matches!(read(img.path()), Err(AboutError::Read { .. })));
    }
}
