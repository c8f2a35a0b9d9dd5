use proptest::prelude::*;

use super::*;

/// Every form the module's table names, scrubbed: the file's name goes,
/// the per-user prefix becomes `~`.
const FORMS: &[(&str, &str)] = &[
    // Linux, BSD, Solaris
    ("/home/alice/Downloads/a.exe", "~/Downloads"),
    ("/home/alice", "~"),
    ("/home/alice/", "~"),
    ("/home/alice/a.exe", "~"),
    ("/var/home/alice/.cache/x/a.so", "~/.cache/x"),
    ("/usr/home/alice/a/b", "~/a"),
    ("/export/home/alice/src/a.c", "~/src"),
    ("/root/.cache/a", "~/.cache"),
    ("/var/root/Library/a", "~/Library"),
    // lexical reading
    ("/home//alice/./docs/a.pdf", "~/docs"),
    ("/tmp/../home/alice/docs/a.pdf", "~/docs"),
    ("/home/alice/../../etc/passwd", "/etc"),
    // macOS
    ("/Users/alice/Library/Caches/a", "~/Library/Caches"),
    ("/users/ALICE/Desktop/a", "~/Desktop"),
    (
        "/System/Volumes/Data/Users/alice/Documents/a",
        "~/Documents",
    ),
    ("/Volumes/Backup/Users/alice/Documents/a", "~/Documents"),
    ("/Users/Shared/Adobe/a.pkg", "/Users/Shared/Adobe"),
    ("/users/shared/a.pkg", "/users/shared"),
    // removable media and runtime directories
    ("/media/alice/USB STICK/a.exe", "~/USB STICK"),
    ("/run/media/alice/USB/dir/a.exe", "~/USB/dir"),
    ("/run/user/1000/alice/a/b.sh", "~/a"),
    ("/run/user/1000/doc/3f2a/a.pdf", "~/3f2a"),
    (
        "/run/user/1000/gvfs/sftp:host=nas,user=alice/home/x/a.exe",
        "~/home/x",
    ),
    ("/run/user/1000", "~"),
    // shell
    ("~alice/bin/a.sh", "~/bin"),
    ("~/Downloads/a.exe", "~/Downloads"),
    // Windows: any drive, either slash, either case
    ("C:\\Users\\alice\\Downloads\\a.exe", "~\\Downloads"),
    ("d:\\users\\alice\\a\\b.exe", "~\\a"),
    ("C:/Users/alice/AppData/Roaming/a.dll", "~/AppData/Roaming"),
    ("c:\\users\\ALICE\\desktop\\a.lnk", "~\\desktop"),
    ("C:\\Users\\alice/Mixed\\a.exe", "~\\Mixed"),
    (
        "C:\\Documents and Settings\\alice\\My Documents\\a.doc",
        "~\\My Documents",
    ),
    ("\\Users\\alice\\Desktop\\a.exe", "~\\Desktop"),
    ("\\\\?\\C:\\Users\\alice\\AppData\\a.exe", "~\\AppData"),
    ("\\??\\C:\\Users\\alice\\AppData\\a.exe", "~\\AppData"),
    ("\\\\.\\C:\\Users\\alice\\AppData\\a.exe", "~\\AppData"),
    (
        "\\Device\\HarddiskVolume3\\Users\\alice\\Temp\\a.exe",
        "~\\Temp",
    ),
    (
        "C:\\Users\\Public\\Downloads\\a.exe",
        "C:\\Users\\Public\\Downloads",
    ),
    ("C:\\Users\\Default\\NTUSER.DAT", "C:\\Users\\Default"),
    (
        "C:\\Documents and Settings\\All Users\\a.exe",
        "C:\\Documents and Settings\\All Users",
    ),
    ("C:\\Windows\\System32\\a.dll", "C:\\Windows\\System32"),
    ("C:\\a.exe", "C:\\"),
    ("C:\\Users", "C:\\"),
    // Windows drives seen from Unix
    ("/mnt/c/Users/alice/Downloads/a.exe", "~/Downloads"),
    ("/cygdrive/d/Users/alice/a/b", "~/a"),
    ("/c/Users/alice/Desktop/a", "~/Desktop"),
    // network paths
    ("\\\\fs01\\home$\\alice\\docs\\a.doc", "~\\docs"),
    ("\\\\fs01\\Users\\alice\\docs\\a.doc", "~\\docs"),
    ("\\\\fs01\\profiles$\\alice.V6\\AppData\\a", "~\\AppData"),
    (
        "\\\\ALICE-PC\\c$\\Users\\alice\\Desktop\\a.exe",
        "~\\Desktop",
    ),
    ("\\\\fs01\\alice\\docs\\a.doc", "\\\\~\\~\\docs"),
    ("\\\\fs01\\software\\setup\\a.msi", "\\\\~\\~\\setup"),
    ("//nas/share/dir/a", "//~/~/dir"),
    ("\\\\?\\UNC\\fs01\\home\\alice\\a\\b", "~\\a"),
    ("\\Device\\Mup\\fs01\\data\\x\\a", "\\\\~\\~\\x"),
    // not a person's
    (
        "/var/lib/postgresql/16/main/a",
        "/var/lib/postgresql/16/main",
    ),
    ("/usr/bin/ls", "/usr/bin"),
    ("/a.exe", "/"),
    ("/home", "/"),
    ("/rootkit/x", "/rootkit"),
    ("Downloads/a.exe", "Downloads"),
    ("home/alice/a.exe", "~"),
];

#[test]
fn every_form_is_scrubbed() {
    for (path, expected) in FORMS {
        assert_eq!(
            scrub_path(path).as_deref(),
            Some(*expected),
            "scrub_path({path:?})"
        );
    }
}

#[test]
fn a_bare_name_leaves_nothing() {
    assert_eq!(scrub_path("a.exe"), None);
    assert_eq!(scrub_path(""), None);
}

#[test]
fn a_scrubbed_directory_is_scrubbed_no_further() {
    for (path, _) in FORMS {
        let once = scrub_path(path).unwrap();
        // Read again as the directory of a file `x`, it stays the same.
        let sep = if once.contains('\\') { '\\' } else { '/' };
        let again = scrub_path(&format!("{}{sep}x", once.trim_end_matches(sep))).unwrap();
        assert_eq!(
            again.trim_end_matches(sep),
            once.trim_end_matches(sep),
            "{path}"
        );
    }
}

fn found_in(text: &str) -> bool {
    (0..text.len())
        .filter(|at| text.is_char_boundary(*at))
        .any(|at| user_path_at(text, at))
}

#[test]
fn the_detector_finds_a_person_s_directory_in_text() {
    for text in [
        "/home/alice",
        "cannot open /home/alice/secret.docx",
        "path=C:\\Users\\bob\\x",
        "(\\\\fs\\home$\\carol\\x)",
        "~dave/notes",
        "/run/user/1000/doc",
        "/media/erin",
    ] {
        assert!(found_in(text), "{text}");
    }
    for text in [
        "/home/",
        "/home/ for details",
        "about ~5 MB",
        "~/Downloads",
        "/root/.cache",
        "/Users/Shared/x",
        "\\\\server\\share\\x",
        "/var/lib/mysql",
        "C:\\Users\\Public",
    ] {
        assert!(!found_in(text), "{text}");
    }
}

/// A user name as accounts have them: letters of any script and case,
/// digits, spaces, dots, dashes; never `.` or `..`, and never a name the
/// forms keep because it is no one's (`Shared`, `Public`).
fn user_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9ÅéÖßøİıДжΣ漢字][A-Za-z0-9ÅéÖßøİıДжΣ漢字 ._-]{0,15}".prop_filter(
        "a name an account can have",
        |name| {
            !name.ends_with([' ', '.'])
                && !SHARED_PROFILES
                    .iter()
                    .chain(&SHARED_LEGACY_PROFILES)
                    .chain(&["Shared"])
                    .any(|s| name.eq_ignore_ascii_case(s))
        },
    )
}

/// Every form, with `{U}` where the user name goes.
const TEMPLATES: &[&str] = &[
    "/home/{U}",
    "/var/home/{U}",
    "/usr/home/{U}",
    "/export/home/{U}",
    "/Users/{U}",
    "/users/{U}",
    "/System/Volumes/Data/Users/{U}",
    "/Volumes/Macintosh HD/Users/{U}",
    "/media/{U}",
    "/run/media/{U}",
    "/run/user/1000/{U}",
    "~{U}",
    "C:\\Users\\{U}",
    "z:\\USERS\\{U}",
    "C:/Users/{U}",
    "c:\\users\\{U}",
    "C:\\Documents and Settings\\{U}",
    "\\Users\\{U}",
    "\\\\?\\C:\\Users\\{U}",
    "\\??\\D:\\Users\\{U}",
    "\\Device\\HarddiskVolume2\\Users\\{U}",
    "/mnt/c/Users/{U}",
    "/cygdrive/c/Users/{U}",
    "\\\\server\\home$\\{U}",
    "\\\\server\\users\\{U}",
    "\\\\server\\Profiles$\\{U}",
    "\\\\server\\c$\\Users\\{U}",
    "\\\\{U}\\share",
    "\\\\server\\{U}",
    "//server/{U}",
    "\\\\?\\UNC\\server\\{U}",
];

proptest! {
    #[test]
    fn no_user_name_survives_as_a_component(
        name in user_name(),
        template in prop::sample::select(TEMPLATES),
        tail in prop::collection::vec("[a-z]{1,8}( [a-z]{1,8})?", 0..4),
        file in "[a-z]{1,8}\\.(exe|pdf|docx)",
        backslash in any::<bool>(),
    ) {
        prop_assume!(!tail.iter().any(|t| t.eq_ignore_ascii_case(&name)));
        let sep = if template.contains('\\') && backslash { "\\" } else { "/" };
        let mut path = template.replace("{U}", &name);
        for component in tail.iter().chain([&file]) {
            path.push_str(sep);
            path.push_str(component);
        }
        let scrubbed = scrub_path(&path).unwrap();
        let survives = scrubbed.split(['/', '\\']).any(|c| {
            c.eq_ignore_ascii_case(&name) || c.eq_ignore_ascii_case(&format!("~{name}"))
        });
        prop_assert!(!survives, "{path} -> {scrubbed}");
        prop_assert!(!scrubbed.contains(&file), "{path} -> {scrubbed}");
        // The detector sees every person's directory scrub_path removes
        // (a network path's server and share are removed as a precaution).
        let network = scrubbed.starts_with("\\\\~") || scrubbed.starts_with("//~");
        let spaced_tilde = template.starts_with('~') && name.contains(' ');
        prop_assert!(found_in(&path) || network || spaced_tilde, "the detector missed {path}");
    }
}
