//! How much memory this process can still take: the smaller of the machine's `MemAvailable`
//! and, for every memory cgroup above the process (v1 or v2), its limit less what it uses.
//! Page cache that the kernel can drop (inactive file pages) counts as free, as in
//! `MemAvailable`.

use std::path::{Path, PathBuf};

/// Bytes this process can allocate before the kernel's OOM killer would act; `None` when the
/// machine says nothing (no /proc).
pub(crate) fn available_bytes() -> Option<u64> {
    let machine = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| meminfo_available(&text));
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok().and_then(|text| cgroup_available(&text, Path::new("/sys/fs/cgroup")));
    match (machine, cgroups) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `MemAvailable` of /proc/meminfo, in bytes.
fn meminfo_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The least room left in the memory cgroups of /proc/self/cgroup (`cgroup_text`) and their
/// ancestors, under the cgroup file systems mounted at `root`; `None` where none is limited.
fn cgroup_available(cgroup_text: &str, root: &Path) -> Option<u64> {
    let mut least: Option<u64> = None;
    for line in cgroup_text.lines() {
        // "hierarchy-id:controllers:path"; v2 has the empty controller list.
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let (dir, v2) = if controllers.is_empty() {
            (root.to_path_buf(), true)
        } else if controllers.split(',').any(|c| c == "memory") {
            (root.join("memory"), false)
        } else {
            continue;
        };
        for group in ancestors(&dir, path) {
            let room = if v2 { v2_room(&group) } else { v1_room(&group) };
            if let Some(room) = room {
                least = Some(least.map_or(room, |l| l.min(room)));
            }
        }
    }
    least
}

/// `mount/path`, `mount/parent-of-path`, ..., `mount` (a container sees its own group as `/`).
fn ancestors(mount: &Path, path: &str) -> Vec<PathBuf> {
    let mut groups = Vec::new();
    let mut current = PathBuf::from(path.trim_start_matches('/'));
    loop {
        groups.push(mount.join(&current));
        if !current.pop() {
            break;
        }
    }
    groups
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn stat_value(group: &Path, key: &str) -> u64 {
    let text = std::fs::read_to_string(group.join("memory.stat")).unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix(key).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

/// cgroup v2: `memory.max` less `memory.current` (inactive file pages counted as free).
fn v2_room(group: &Path) -> Option<u64> {
    let limit = read_u64(&group.join("memory.max"))?; // "max" does not parse: no limit
    let used = read_u64(&group.join("memory.current")).unwrap_or(0).saturating_sub(stat_value(group, "inactive_file"));
    Some(limit.saturating_sub(used))
}

/// cgroup v1: `memory.limit_in_bytes` less `memory.usage_in_bytes`. "No limit" reads as a
/// number near 2^63, which no machine has.
fn v1_room(group: &Path) -> Option<u64> {
    const NO_LIMIT: u64 = 1 << 60;
    let limit = read_u64(&group.join("memory.limit_in_bytes")).filter(|&limit| limit < NO_LIMIT)?;
    let used = read_u64(&group.join("memory.usage_in_bytes")).unwrap_or(0).saturating_sub(stat_value(group, "total_inactive_file"));
    Some(limit.saturating_sub(used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mem_available() {
        let text = "MemTotal:       24000000 kB\nMemFree:         1000 kB\nMemAvailable:   2048 kB\n";
        assert_eq!(meminfo_available(text), Some(2048 * 1024));
        assert_eq!(meminfo_available("MemTotal: 1 kB\n"), None);
    }

    fn write_files(root: &std::path::Path, files: &[(&str, &str)]) {
        for (path, text) in files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }

    #[test]
    fn takes_the_tightest_group_of_v1_and_v2() {
        let root = std::env::temp_dir().join(format!("corral-cgroup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        write_files(
            &root,
            &[
                ("memory/memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory/outer/memory.limit_in_bytes", "1000000\n"),
                ("memory/outer/memory.usage_in_bytes", "300000\n"),
                ("memory/outer/inner/memory.limit_in_bytes", "5000000\n"),
                ("memory/outer/inner/memory.usage_in_bytes", "250000\n"),
                ("memory/outer/inner/memory.stat", "cache 1\ntotal_inactive_file 50000\n"),
            ],
        );
        // The outer group's limit binds: 1,000,000 - 300,000.
        assert_eq!(cgroup_available("4:memory:/outer/inner\n3:cpu:/x\n", &root), Some(700_000));

        write_files(
            &root,
            &[
                ("memory.max", "max\n"),
                ("app/memory.max", "4000000\n"),
                ("app/memory.current", "1000000\n"),
                ("app/memory.stat", "anon 1\ninactive_file 500000\n"),
            ],
        );
        assert_eq!(cgroup_available("0::/app\n", &root), Some(3_500_000));
        assert_eq!(cgroup_available("0::/\n", &root), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
