//! /proc/self/mountinfo: where the memory cgroup hierarchies are mounted.
//!
//! Owns finding the cgroup v2 mount and the cgroup v1 `memory` controller mount, wherever
//! the distribution put them (a hybrid host has v1 at /sys/fs/cgroup/memory and v2 at
//! /sys/fs/cgroup/unified; never hard-code either). Runs once at start, so it may allocate.
//! Must never read a file.

/// A cgroup hierarchy that can hold memory cgroups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupMount {
    /// Mount point, unescaped.
    pub path: String,
    /// cgroup2 (unified) rather than the v1 memory controller.
    pub v2: bool,
}

/// Undo mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup2 mounts and the v1 mounts that carry the `memory` controller.
pub fn memory_cgroup_mounts(text: &str) -> Vec<CgroupMount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let Some(mount_point) = left.split_whitespace().nth(4) else { continue };
        let mut r = right.split_whitespace();
        let (Some(fstype), _source, Some(opts)) = (r.next(), r.next(), r.next()) else { continue };
        let v2 = fstype == "cgroup2";
        let v1_memory = fstype == "cgroup" && opts.split(',').any(|o| o == "memory");
        if v2 || v1_memory {
            out.push(CgroupMount { path: unescape(mount_point), v2 });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_host() {
        let text = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                    32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                    35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
                    42 31 0:39 / /mnt/a\\040b rw - cgroup2 cgroup2 rw\n";
        let m = memory_cgroup_mounts(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0], CgroupMount { path: "/sys/fs/cgroup/memory".into(), v2: false });
        assert_eq!(m[1], CgroupMount { path: "/sys/fs/cgroup/unified".into(), v2: true });
        assert_eq!(m[2].path, "/mnt/a b");
        assert!(memory_cgroup_mounts("garbage\n\n- - -\n").is_empty());
    }
}
