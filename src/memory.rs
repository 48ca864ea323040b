//! Whether Bosun fits in the memory it is given. What a sync holds at its peak is bounded by the
//! sources' `max_total_bytes` (the YAML read, its parsed trees and the objects built from them: about
//! three times the text, measured by `tests/memory_limit.rs`), on top of a base for the runtime, the
//! clients and the watch caches. `bosun run` compares that with its memory limit (the cgroup's, or
//! `RLIMIT_DATA`/`RLIMIT_AS`) before it starts, so that a limit too small fails at once, saying what to
//! change, instead of an allocation failing in the middle of a sync.

use std::path::Path;

/// The memory Bosun uses besides the YAML of a sync (runtime, clients, caches of a few hundred apps).
pub const BASE: u64 = 48 * MIB;
/// Bytes held at a sync's peak per byte of YAML read.
pub const PER_YAML_BYTE: u64 = 3;
const MIB: u64 = 1024 * 1024;

/// The smallest memory limit this process runs under, and where it comes from; `None` when unlimited.
pub fn limit() -> Option<(u64, String)> {
    let mut limits = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/proc/self/limits") {
        for (row, what) in [
            ("Max data size", "RLIMIT_DATA"),
            ("Max address space", "RLIMIT_AS"),
        ] {
            if let Some(bytes) = rlimit(&text, row) {
                limits.push((bytes, what.to_owned()));
            }
        }
    }
    if let Some(found) = cgroup_limit(Path::new("/proc/self/cgroup"), Path::new("/sys/fs/cgroup")) {
        limits.push(found);
    }
    limits.into_iter().min_by_key(|(bytes, _)| *bytes)
}

/// The soft limit of `row` in `/proc/self/limits`, in bytes.
fn rlimit(limits: &str, row: &str) -> Option<u64> {
    let rest = limits.lines().find_map(|l| l.strip_prefix(row))?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The memory limit of this process's cgroup (v2 `memory.max`, or v1 `memory.limit_in_bytes`).
fn cgroup_limit(proc_cgroup: &Path, root: &Path) -> Option<(u64, String)> {
    let text = std::fs::read_to_string(proc_cgroup).ok()?;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.trim_start_matches('/');
        let file = match controllers {
            "" => root.join(path).join("memory.max"),
            c if c.split(',').any(|c| c == "memory") => {
                root.join("memory").join(path).join("memory.limit_in_bytes")
            }
            _ => continue,
        };
        let Ok(value) = std::fs::read_to_string(&file) else {
            continue;
        };
        // "max" (v2) or a huge number (v1, page-rounded i64::MAX) means none.
        if let Ok(bytes) = value.trim().parse::<u64>()
            && bytes < (1 << 60)
        {
            return Some((bytes, format!("the cgroup's {}", file.display())));
        }
    }
    None
}

/// What a daemon whose sources read at most `yaml_bytes` of YAML each needs at most.
pub fn needed(yaml_bytes: impl IntoIterator<Item = u64>) -> u64 {
    BASE + yaml_bytes
        .into_iter()
        .map(|b| b.saturating_mul(PER_YAML_BYTE))
        .fold(0, u64::saturating_add)
}

/// `Err` with what to change when `limit` (bytes, from `source`) is below what `yaml_bytes` need.
pub fn check(
    limit: Option<(u64, String)>,
    yaml_bytes: impl IntoIterator<Item = u64> + Clone,
) -> Result<(), String> {
    let need = needed(yaml_bytes.clone());
    match limit {
        Some((bytes, source)) if bytes < need => Err(format!(
            "the memory limit of {} MiB ({source}) is below the {} MiB a sync may need: {} MiB \
             plus {PER_YAML_BYTE} times the {} MiB of YAML the sources may read (max_total_bytes); \
             raise the limit or lower --max-total-bytes",
            bytes / MIB,
            need / MIB,
            BASE / MIB,
            yaml_bytes.into_iter().fold(0u64, u64::saturating_add) / MIB,
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_below_the_need_says_what_to_change() {
        let err =
            check(Some((100 * MIB, "RLIMIT_DATA".into())), [64 * MIB]).expect_err("too small");
        assert!(
            err.starts_with("the memory limit of 100 MiB (RLIMIT_DATA) is below the 240 MiB"),
            "{err}"
        );
        assert!(err.contains("lower --max-total-bytes"), "{err}");
        check(Some((256 * MIB, "cgroup".into())), [64 * MIB]).expect("the deploy/ limit fits");
        check(None, [64 * MIB, 64 * MIB]).expect("unlimited");
    }

    #[test]
    fn limits_are_read_from_proc_and_from_cgroups_of_both_versions() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max data size             104857600            unlimited            bytes\n\
                      Max address space         unlimited            unlimited            bytes\n";
        assert_eq!(rlimit(limits, "Max data size"), Some(100 * MIB));
        assert_eq!(rlimit(limits, "Max address space"), None);

        let dir = tempfile::tempdir().expect("dir");
        let proc_cgroup = dir.path().join("cgroup");
        std::fs::write(&proc_cgroup, "0::/pod/bosun\n").expect("write");
        std::fs::create_dir_all(dir.path().join("pod/bosun")).expect("dir");
        std::fs::write(dir.path().join("pod/bosun/memory.max"), "268435456\n").expect("write");
        let (bytes, source) = cgroup_limit(&proc_cgroup, dir.path()).expect("v2");
        assert_eq!(bytes, 256 * MIB);
        assert!(source.ends_with("pod/bosun/memory.max"), "{source}");
        std::fs::write(dir.path().join("pod/bosun/memory.max"), "max\n").expect("write");
        assert_eq!(cgroup_limit(&proc_cgroup, dir.path()), None);

        std::fs::write(&proc_cgroup, "4:memory:/docker/abc\n0::/\n").expect("write");
        std::fs::create_dir_all(dir.path().join("memory/docker/abc")).expect("dir");
        std::fs::write(
            dir.path().join("memory/docker/abc/memory.limit_in_bytes"),
            "134217728\n",
        )
        .expect("write");
        assert_eq!(
            cgroup_limit(&proc_cgroup, dir.path()).expect("v1").0,
            128 * MIB
        );
    }
}
