//! The idle daemon's resident code: what start-up ran, and the kernel
//! mapped around it, is let go once start-up is over.
//!
//! An idle daemon's RSS is mostly code, not data: reading the config and
//! the catalogue, opening and migrating the store, building the TLS
//! client and the first collection and upload touch code all over the
//! binary, and on every page fault the kernel maps the neighbouring pages
//! it already holds too (`fault_around_bytes`, 64 KiB). Measured on the
//! shipped build: 6.3 of its 7.8 MiB of code resident after start, of an
//! RSS of 10.8 MiB, with 1.4 MiB of heap and other anonymous memory
//! (BENCHMARKS.md, Daemon footprint).
//!
//! [`run`] (one daemon task, spawned by `daemon::run`) waits until
//! start-up is over, then drops this process's page-table entries for its
//! file-backed code (`MADV_DONTNEED` on the `r-xp` mappings of
//! `/proc/self/maps`: the binary's and its shared libraries' text). It
//! looks again every ten seconds and does so again when the RSS has grown
//! by a mebibyte since (an upload attempt alone faults in about 5 MiB of
//! code). Under load that costs the working set's refaults every ten
//! seconds, well under a millisecond. Nothing is
//! lost: the pages stay in the kernel's page cache, and code that runs
//! again faults back in (a minor fault, no disk read while the page cache
//! holds it). Only read-only, executable, file-backed mappings are
//! touched: never data, never anything the process wrote (advising a
//! written private mapping away would reset it). This module decides
//! nothing about data or consent.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often the RSS is looked at (the first time: once start-up work, the
/// first collection and upload attempt, is over).
const EVERY: Duration = Duration::from_secs(10);

/// How much the RSS may grow after code pages were let go before they are
/// let go again.
const GROWTH_KIB: u64 = 1024;

/// The daemon task: lets go of code pages after start-up, then whenever
/// the RSS has grown by [`GROWTH_KIB`] since.
pub async fn run(shutdown: CancellationToken) {
    let mut after_last: Option<u64> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
        let now = resident_kib().unwrap_or(u64::MAX);
        if after_last.is_some_and(|kib| now < kib.saturating_add(GROWTH_KIB)) {
            continue;
        }
        match release_code_pages() {
            Ok(bytes) => tracing::debug!(bytes, rss_kib = now, "code pages let go"),
            Err(err) => tracing::debug!(error = %err, "code pages not let go"),
        }
        after_last = resident_kib();
    }
}

/// This process's resident set (`VmRSS` of `/proc/self/status`), KiB.
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// One mapping of `/proc/self/maps` this module may advise away.
#[derive(Debug, PartialEq, Eq)]
struct Code {
    start: usize,
    end: usize,
}

/// The read-only, executable, private, file-backed mappings in `maps`
/// (`/proc/self/maps` text): `start-end r-xp offset dev inode /path`.
fn code_mappings(maps: &str) -> Vec<Code> {
    maps.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let range = parts.next()?;
            let perms = parts.next()?;
            let path = parts.nth(3)?;
            if perms != "r-xp" || !path.starts_with('/') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (start < end).then_some(Code { start, end })
        })
        .collect()
}

/// Drops this process's page-table entries for its file-backed code;
/// returns how many bytes of mappings were advised.
// The crate's one `unsafe` (Cargo.toml denies it elsewhere; the
// architecture test `unsafe_code_lives_in_the_footprint_module_alone`
// keeps it so): `madvise` takes a raw address range.
#[allow(unsafe_code)]
pub fn release_code_pages() -> std::io::Result<u64> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut advised = 0u64;
    for code in code_mappings(&maps) {
        let len = code.end - code.start;
        // SAFETY: the range is a whole mapping of this process that is
        // read-only, executable, private and backed by a file (its code):
        // nothing in it was ever written, so after MADV_DONTNEED every page
        // reads back the same bytes from the file, faulted in on next use.
        // No Rust reference into it is invalidated: its contents stay the
        // same.
        unsafe {
            rustix::mm::madvise(
                code.start as *mut std::ffi::c_void,
                len,
                rustix::mm::Advice::LinuxDontNeed,
            )?;
        }
        advised += len as u64;
    }
    Ok(advised)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_read_only_executable_file_backed_mappings_are_chosen() {
        let maps = "\
5639a96e000-5639ab7b000 r--p 00000000 fe:00 6228087 /usr/bin/consentry
5639ab7b000-5639b320000 r-xp 0020c000 fe:00 6228087 /usr/bin/consentry
5639b320000-5639b34a000 r--p 009b0000 fe:00 6228087 /usr/bin/consentry
5639b34a000-5639b351000 rw-p 009d9000 fe:00 6228087 /usr/bin/consentry
7fe6173e0000-7fe617400000 rwxp 00000000 00:00 0
7fe617495000-7fe61749d000 rw-s 00000000 fe:00 10870945 /state/consentry.sqlite3-shm
7fe617500000-7fe617600000 r-xp 00028000 fe:00 1234 /usr/lib/x86_64-linux-gnu/libc.so.6
7ffd2b5f2000-7ffd2b5f4000 r-xp 00000000 00:00 0                          [vdso]
7ffd2b5f4000-7ffd2b5f8000 r-xp 00000000 00:00 0
";
        assert_eq!(
            code_mappings(maps),
            vec![
                Code {
                    start: 0x5639ab7b000,
                    end: 0x5639b320000
                },
                Code {
                    start: 0x7fe617500000,
                    end: 0x7fe617600000
                },
            ]
        );
    }

    #[test]
    fn code_let_go_still_runs() {
        fn answer(n: u64) -> u64 {
            (1..=n).sum()
        }
        let before = answer(100);
        let resident = resident_kib().unwrap();
        assert!(resident > 0);
        let advised = release_code_pages().unwrap();
        assert!(advised > 0, "this test's own code is a mapping");
        assert_eq!(answer(100), before);
    }
}
