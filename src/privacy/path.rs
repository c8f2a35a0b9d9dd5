//! `scrub_path`: what of a file's path may leave the machine, and the one
//! reading of paths that the personal-data detector (`personal`) shares.
//!
//! A path says who the user is in its *per-user prefix*: the directory
//! that belongs to one account and is named after it (or after its user
//! id). Every form below is read, with `/` or `\` on Windows (even mixed),
//! any drive letter, and case ignored where the file system ignores it
//! (Windows, and macOS's `/Users`):
//!
//! | form | per-user prefix |
//! |---|---|
//! | Linux, BSD, Solaris homes | `/home/U`, `/var/home/U` (Silverblue), `/usr/home/U` (FreeBSD), `/export/home/U` |
//! | root's home | `/root`, `/var/root` (macOS): no person, but still `~` |
//! | macOS | `/Users/U`, `/System/Volumes/Data/Users/U`, `/Volumes/V/Users/U`; `/Users/Shared` is no user's |
//! | removable media mounted for a user | `/media/U`, `/run/media/U` |
//! | a user's runtime directory | `/run/user/UID` and its first entry (named by the session: `doc`, `gvfs`, a mount named after the user); under `gvfs`, the mount too (`sftp:host=H,user=U`) |
//! | shell | `~U` (another user's home; `~` alone is already scrubbed) |
//! | Windows profiles | `X:\Users\U`, `X:\Documents and Settings\U` (not `Public`, `Default`, `Default User`, `All Users`); `\Users\U` on the current drive; `\\?\`, `\\.\` and `\??\` before any of them; `\Device\HarddiskVolumeN\Users\U` |
//! | Windows drives seen from Unix | `/mnt/c/…` (WSL), `/cygdrive/c/…`, `/c/…` (MSYS), followed by a Windows profile |
//! | network homes | `\\server\S\U` for a home share `S` (`home`, `homes`, `users`, `user`, `profiles`, `profile`, each also with `$`); `\\server\c$\Users\U` |
//!
//! A per-user prefix becomes `~`: `/home/alice/Downloads/a.exe` →
//! `~/Downloads`. Any other network path (`\\server\share\…`, `//server/
//! share/…`, `\\?\UNC\…`) keeps neither its server nor its share: host names
//! are often a person's (`ALICE-PC`, `alices-macbook`), and Samba's
//! `[homes]` shares each home under its user's own name (`\\server\alice`);
//! what is left is `\\~\~\…`. `/var/lib/<service>` and the like are a
//! service's, not a person's, and are left alone.
//!
//! The file's own name never leaves either: the last component of the path
//! is the detected object itself, and a file's name is whatever its user
//! chose to call it (`Alice Smith - CV.docx`). Only the directory it lies
//! in is kept. The path is read lexically: empty and `.` components are
//! dropped and `..` taken back, so `/tmp/../home/alice/x` is alice's home.

/// The most components the detector reads from one place in a text: every
/// form above is decided within its first six.
const DETECTOR_COMPONENTS: usize = 8;

/// Shares that hold one directory per user, named after the user.
const HOME_SHARES: [&str; 6] = ["home", "homes", "users", "user", "profiles", "profile"];

/// Windows profile directories that belong to no one person.
const SHARED_PROFILES: [&str; 4] = ["Public", "Default", "Default User", "All Users"];

/// `Documents and Settings` entries that belong to no one person.
const SHARED_LEGACY_PROFILES: [&str; 4] = [
    "All Users",
    "Default User",
    "LocalService",
    "NetworkService",
];

/// What the directory the path starts in is: how it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Root<'a> {
    /// `/…`: case matters, `\` is a file name character.
    Unix,
    /// A drive, the current drive's root, or a device.
    Windows,
    /// `\\server\share\…`.
    Network,
    /// `~` (the current user's home) or `~user`.
    Tilde(&'a str),
    /// No root: read both ways, for whatever a relative path matches.
    Relative,
}

/// Whose directory a per-user prefix is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// A person's: it names the account.
    User,
    /// root's home: nobody's name, but a home all the same.
    Administrator,
    /// A server and share, which may name a person or their computer.
    Network,
}

/// How many leading components are the per-user prefix, and whose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Prefix {
    take: usize,
    owner: Owner,
}

/// A path taken apart: its root as written, and its components after
/// lexical normalisation.
struct Parsed<'a> {
    root: Root<'a>,
    /// The text of the root, without a trailing separator: `""` for `/`,
    /// `C:`, `\\?\C:`, `\Device\HarddiskVolume3`, `~alice`.
    root_text: &'a str,
    /// The separator written back.
    style: char,
    components: Vec<&'a str>,
}

/// `text`, a file's path, as it may be stored: the directory it lies in,
/// with the per-user prefix replaced by `~` and a network path's server
/// and share by `\\~\~`; `None` when nothing of it is left (a bare file name).
pub fn scrub_path(text: &str) -> Option<String> {
    let parsed = parse(text, usize::MAX)?;
    let prefix = parsed.prefix();
    let taken = prefix.map_or(0, |p| p.take);
    let mut tail = &parsed.components[taken..];
    // The last component is the object itself: its name stays here.
    if let Some((_, directory)) = tail.split_last() {
        tail = directory;
    }
    let sep = parsed.style;
    let mut out = match prefix.map(|p| p.owner) {
        Some(Owner::User | Owner::Administrator) => "~".to_owned(),
        // Server and share, each: `\\~\~`, which reads back the same.
        Some(Owner::Network) => format!("{sep}{sep}~{}", format!("{sep}~").repeat(taken - 1)),
        None if parsed.root == Root::Relative && tail.is_empty() => return None,
        None => parsed.root_text.to_owned(),
    };
    for component in tail {
        if !(out.is_empty() && parsed.root == Root::Relative) {
            out.push(sep);
        }
        out.push_str(component);
    }
    if out.is_empty() || out.ends_with(':') {
        out.push(sep); // the root itself: `/`, `C:\`
    }
    Some(out)
}

/// Whether a path into a person's own directory starts at `text[at..]`, as
/// the detector reads free text: the user's component must start with
/// something other than a space, and `~user` must be followed by a
/// separator ("about ~5 MB" is no path).
pub(crate) fn user_path_at(text: &str, at: usize) -> bool {
    let text = &text[at..];
    if let Some(user) = text.strip_prefix('~') {
        // Read only as far as the name goes, however long the text.
        let end = user.find(|c: char| c == '/' || c == '\\' || c.is_whitespace());
        return end.is_some_and(|end| end > 0 && user[end..].starts_with(['/', '\\']));
    }
    let Some(parsed) = parse(text, DETECTOR_COMPONENTS) else {
        return false;
    };
    if parsed.root == Root::Relative {
        return false;
    }
    match parsed.prefix() {
        Some(Prefix {
            take,
            owner: Owner::User,
        }) => !parsed.components[take - 1].starts_with(char::is_whitespace),
        _ => false,
    }
}

fn is_sep(byte: u8) -> bool {
    byte == b'/' || byte == b'\\'
}

/// `text` without `prefix`, compared without regard to ASCII case.
fn strip_ci<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// `C:` followed by a separator or nothing: the length of the drive.
fn drive(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let lettered = b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':';
    (lettered && (b.len() == 2 || is_sep(b[2]))).then_some(2)
}

/// The root of `text`, and where its components start.
fn root(text: &str) -> (Root<'_>, usize) {
    let b = text.as_bytes();
    // Win32 and NT namespaces: \\?\, \\.\, \??\ (either slash).
    let namespaced = b.len() >= 4
        && is_sep(b[0])
        && is_sep(b[3])
        && ((is_sep(b[1]) && (b[2] == b'?' || b[2] == b'.')) || (b[1] == b'?' && b[2] == b'?'));
    if namespaced {
        let rest = &text[4..];
        if strip_ci(rest, "UNC").is_some_and(|r| r.starts_with(['/', '\\'])) {
            return (Root::Network, 8);
        }
        return (Root::Windows, 4 + drive(rest).unwrap_or(0));
    }
    if let Some(rest) = strip_ci(text, "\\Device\\") {
        let device = rest.find(['/', '\\']).unwrap_or(rest.len());
        let start = 8 + device;
        return match rest[..device].eq_ignore_ascii_case("Mup") {
            true => (Root::Network, start),
            false => (Root::Windows, start),
        };
    }
    if let Some(length) = drive(text) {
        return (Root::Windows, length);
    }
    match b {
        [a, b, ..] if is_sep(*a) && is_sep(*b) => (Root::Network, 2),
        [b'\\', ..] => (Root::Windows, 0),
        [b'/', ..] => (Root::Unix, 0),
        [b'~', ..] => {
            let end = text.find(['/', '\\']).unwrap_or(text.len());
            (Root::Tilde(&text[1..end]), end)
        }
        _ => (Root::Relative, 0),
    }
}

/// Takes `text` apart, reading at most `limit` raw components.
fn parse(text: &str, limit: usize) -> Option<Parsed<'_>> {
    if text.is_empty() {
        return None;
    }
    let (root, start) = root(text);
    let rest = &text[start..];
    let style = match rest.bytes().find(|b| is_sep(*b)) {
        Some(b'\\') if root != Root::Unix => '\\',
        Some(_) => '/',
        None if matches!(root, Root::Windows | Root::Network) => '\\',
        None => '/',
    };
    let mut components = Vec::new();
    let unix = root == Root::Unix;
    let pieces = rest.split(|c| c == '/' || (c == '\\' && !unix));
    for piece in pieces.take(limit) {
        match piece {
            "" | "." => {}
            ".." => {
                components.pop();
            }
            _ => components.push(piece),
        }
    }
    Some(Parsed {
        root,
        root_text: text[..start].trim_end_matches(['/', '\\']),
        style,
        components,
    })
}

impl Parsed<'_> {
    /// The per-user prefix, if the path has one.
    fn prefix(&self) -> Option<Prefix> {
        let components = &self.components[..];
        match self.root {
            Root::Unix => unix(components),
            Root::Windows => windows(components),
            Root::Network => network(components),
            Root::Tilde("") => None,
            Root::Tilde(_) => Some(Prefix {
                take: 0,
                owner: Owner::User,
            }),
            Root::Relative => unix(components).or_else(|| windows(components)),
        }
    }
}

/// A person's prefix of `take` components, if component `take - 1` exists.
fn user(components: &[&str], take: usize) -> Option<Prefix> {
    (components.len() >= take).then_some(Prefix {
        take,
        owner: Owner::User,
    })
}

fn same(component: Option<&&str>, name: &str) -> bool {
    component.is_some_and(|c| c.eq_ignore_ascii_case(name))
}

fn unix(c: &[&str]) -> Option<Prefix> {
    let is = |i: usize, name: &str| c.get(i) == Some(&name);
    let letter = |i: usize| {
        c.get(i)
            .is_some_and(|s| s.len() == 1 && s.as_bytes()[0].is_ascii_alphabetic())
    };
    let shifted = |by: usize| {
        windows(&c[by.min(c.len())..]).map(|p| Prefix {
            take: p.take + by,
            ..p
        })
    };
    let administrator = |take| {
        Some(Prefix {
            take,
            owner: Owner::Administrator,
        })
    };
    if is(0, "home") {
        user(c, 2)
    } else if (is(0, "var") || is(0, "usr") || is(0, "export")) && is(1, "home") {
        user(c, 3)
    } else if is(0, "root") {
        administrator(1)
    } else if is(0, "var") && is(1, "root") {
        administrator(2)
    } else if same(c.first(), "Users") {
        mac_user(c, 1)
    } else if same(c.first(), "System") && same(c.get(1), "Volumes") && same(c.get(2), "Data") {
        same(c.get(3), "Users").then(|| mac_user(c, 4)).flatten()
    } else if same(c.first(), "Volumes") && same(c.get(2), "Users") {
        mac_user(c, 3)
    } else if is(0, "media") {
        user(c, 2)
    } else if is(0, "run") && is(1, "media") {
        user(c, 3)
    } else if is(0, "run") && is(1, "user") {
        runtime(c)
    } else if (is(0, "mnt") || is(0, "cygdrive")) && letter(1) {
        shifted(2)
    } else if letter(0) {
        shifted(1)
    } else {
        None
    }
}

/// `/Users/U` from component `at`; `Shared` is nobody's.
fn mac_user(c: &[&str], at: usize) -> Option<Prefix> {
    c.get(at)
        .filter(|u| !u.eq_ignore_ascii_case("Shared"))
        .and_then(|_| user(c, at + 1))
}

/// `/run/user/UID`, its first entry, and under `gvfs` the mount.
fn runtime(c: &[&str]) -> Option<Prefix> {
    let uid = c.get(2)?;
    if !uid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let take = match c.get(3) {
        None => 3,
        Some(&"gvfs") if c.len() > 4 => 5,
        Some(_) => 4,
    };
    user(c, take)
}

fn windows(c: &[&str]) -> Option<Prefix> {
    let personal = |shared: &[&str]| {
        c.get(1)
            .filter(|u| !shared.iter().any(|s| u.eq_ignore_ascii_case(s)))
            .and_then(|_| user(c, 2))
    };
    if same(c.first(), "Users") {
        personal(&SHARED_PROFILES)
    } else if same(c.first(), "Documents and Settings") {
        personal(&SHARED_LEGACY_PROFILES)
    } else {
        None
    }
}

fn network(c: &[&str]) -> Option<Prefix> {
    let share = match c {
        [] => return None,
        [_] => {
            return Some(Prefix {
                take: 1,
                owner: Owner::Network,
            });
        }
        [_, share, ..] => share,
    };
    let bare = share.strip_suffix('$').unwrap_or(share);
    let home_share = HOME_SHARES.iter().any(|h| bare.eq_ignore_ascii_case(h));
    let admin_drive =
        share.len() == 2 && share.ends_with('$') && share.as_bytes()[0].is_ascii_alphabetic();
    if home_share && c.len() > 2 {
        return user(c, 3);
    }
    if admin_drive && let Some(p) = windows(&c[2..]) {
        return Some(Prefix {
            take: p.take + 2,
            ..p
        });
    }
    Some(Prefix {
        take: 2,
        owner: Owner::Network,
    })
}

#[cfg(test)]
mod tests;
