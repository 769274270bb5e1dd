//! System cgroups: the cgroups the kubelet keeps itself (`kubeletCgroups`) and the
//! host's other processes (`systemCgroups`) in, as upstream's container manager does
//! with the cgroupfs driver, and the cgroup a process is accounted in.
//!
//! Every function takes the cgroup mount root (`/sys/fs/cgroup`) and, where processes
//! are read, the proc root, so tests can point them at fake trees.

use std::io;
use std::path::{Path, PathBuf};

use crate::{CgroupManager, Cgroupfs};

/// The directories of cgroup `name` (absolute, e.g. `/kubelet`) in every hierarchy under
/// `root`: the unified tree on cgroup v2, each mounted controller on v1 (controllers
/// mounted together appear once; their aliases are symlinks).
pub(crate) fn cgroup_dirs(cg: &Cgroupfs, name: &str) -> io::Result<Vec<PathBuf>> {
    let root = cg.root();
    let relative = name.trim_matches('/');
    if cg.is_v2() {
        return Ok(vec![root.join(relative)]);
    }
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            dirs.push(entry.path().join(relative));
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Creates cgroup `name` in every hierarchy, as upstream's `newSystemCgroups` does
/// before it moves processes there. A new cpuset cgroup gets its parent's CPUs and
/// memory nodes, as libcontainer gives them, since the kernel refuses processes in a
/// cpuset with none.
pub(crate) fn ensure_cgroup(cg: &Cgroupfs, name: &str) -> io::Result<()> {
    for dir in cgroup_dirs(cg, name)? {
        std::fs::create_dir_all(&dir).map_err(|e| with_path("creating cgroup", &dir, e))?;
        if dir.join("cpuset.cpus").is_file() {
            inherit_cpuset(&dir)?;
        }
    }
    Ok(())
}

/// Fills in `cpuset.cpus` and `cpuset.mems` of `dir` and of its ancestors that have
/// none, top down, from their parents.
fn inherit_cpuset(dir: &Path) -> io::Result<()> {
    let mut chain = Vec::new();
    let mut current = Some(dir);
    while let Some(d) = current {
        if !d.join("cpuset.cpus").is_file() {
            break;
        }
        chain.push(d);
        current = d.parent();
    }
    // chain[last] is the hierarchy's root, whose sets are always filled in.
    for pair in chain.windows(2).rev() {
        let (child, parent) = (pair[0], pair[1]);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let path = child.join(file);
            let current =
                std::fs::read_to_string(&path).map_err(|e| with_path("reading", &path, e))?;
            if current.trim().is_empty() {
                let from = parent.join(file);
                let value =
                    std::fs::read_to_string(&from).map_err(|e| with_path("reading", &from, e))?;
                std::fs::write(&path, value.trim()).map_err(|e| with_path("writing", &path, e))?;
            }
        }
    }
    Ok(())
}

/// Moves process `pid` into cgroup `name` in every hierarchy (creating it where
/// needed). Every hierarchy is tried; the first failure is returned.
pub(crate) fn move_process(cg: &Cgroupfs, name: &str, pid: u32) -> io::Result<()> {
    ensure_cgroup(cg, name)?;
    let mut first_error = None;
    for dir in cgroup_dirs(cg, name)? {
        let procs = dir.join("cgroup.procs");
        if let Err(e) = std::fs::write(&procs, pid.to_string()) {
            first_error.get_or_insert(with_path(&format!("moving process {pid} into"), &procs, e));
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The processes directly in the root cgroup (v1: of the `devices` hierarchy, as
/// upstream's `GetPids` reads it).
pub(crate) fn root_processes(cg: &Cgroupfs) -> io::Result<Vec<u32>> {
    let root = cg.root();
    let procs = if cg.is_v2() {
        root.join("cgroup.procs")
    } else {
        root.join("devices/cgroup.procs")
    };
    let text = std::fs::read_to_string(&procs).map_err(|e| with_path("reading", &procs, e))?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// Whether `pid` is a kernel thread: it has no executable (upstream's `isKernelPid`).
pub fn is_kernel_process(proc_root: &Path, pid: u32) -> bool {
    let exe = proc_root.join(pid.to_string()).join("exe");
    matches!(std::fs::read_link(exe), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

/// Moves every process of the root cgroup but pid 1 and kernel threads into cgroup
/// `name`, as upstream's `ensureSystemCgroups`; returns how many were moved. Processes
/// that exit meanwhile are skipped.
pub(crate) fn move_root_processes(
    cg: &Cgroupfs,
    proc_root: &Path,
    name: &str,
) -> io::Result<usize> {
    let mut moved = 0;
    for pid in root_processes(cg)? {
        if pid == 1 || is_kernel_process(proc_root, pid) {
            continue;
        }
        match move_process(cg, name, pid) {
            Ok(()) => moved += 1,
            Err(_) if !proc_root.join(pid.to_string()).exists() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(moved)
}

/// The cgroup `pid` (a number or `self`) is accounted in, as upstream's `getContainer`:
/// the unified cgroup on v2; on v1 its `cpu` cgroup, which must equal its `memory`
/// cgroup (an error otherwise, since CPU and memory would be measured in different
/// places).
pub(crate) fn process_cgroup(cg: &Cgroupfs, proc_root: &Path, pid: &str) -> io::Result<String> {
    let path = proc_root.join(pid).join("cgroup");
    let text = std::fs::read_to_string(&path).map_err(|e| with_path("reading", &path, e))?;
    let find = |controller: &str| {
        text.lines().find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, cgroup) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == controller)
                .then(|| cgroup.to_owned())
        })
    };
    let not_found = |what: &str| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{}: no {what} cgroup", path.display()),
        )
    };
    if cg.is_v2() {
        return text
            .lines()
            .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
            .ok_or_else(|| not_found("unified"));
    }
    let cpu = find("cpu").ok_or_else(|| not_found("cpu"))?;
    let memory = find("memory").ok_or_else(|| not_found("memory"))?;
    if cpu != memory {
        return Err(io::Error::other(format!(
            "cpu and memory cgroup hierarchy not unified.  cpu: {cpu}, memory: {memory}"
        )));
    }
    Ok(cpu)
}

fn with_path(what: &str, path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        std::fs::write(path, text).expect("write");
    }

    /// A cgroup v1 root with three hierarchies, `cpu,cpuacct` aliased as `cpu`.
    fn fake_v1(root: &Path) {
        for controller in ["cpu,cpuacct", "memory", "devices"] {
            std::fs::create_dir_all(root.join(controller)).expect("mkdir");
        }
        std::os::unix::fs::symlink(root.join("cpu,cpuacct"), root.join("cpu")).expect("alias");
    }

    #[test]
    fn a_process_is_moved_in_every_hierarchy() {
        let dir = tempfile::tempdir().expect("tempdir");
        fake_v1(dir.path());
        move_process(&Cgroupfs::detect(dir.path()), "/kubelet", 42).expect("move");
        for controller in ["cpu,cpuacct", "memory", "devices"] {
            let procs = dir.path().join(controller).join("kubelet/cgroup.procs");
            assert_eq!(std::fs::read_to_string(procs).expect("procs"), "42");
        }
        assert!(
            !dir.path().join("cpu/kubelet").is_symlink(),
            "aliases are not walked twice"
        );

        let v2 = tempfile::tempdir().expect("tempdir");
        write(&v2.path().join("cgroup.controllers"), "cpu memory\n");
        move_process(&Cgroupfs::detect(v2.path()), "/kubelet.slice", 7).expect("move");
        assert_eq!(
            std::fs::read_to_string(v2.path().join("kubelet.slice/cgroup.procs")).expect("procs"),
            "7"
        );
    }

    #[test]
    fn a_new_cpuset_gets_its_parents_cpus_and_memory_nodes() {
        let dir = tempfile::tempdir().expect("tempdir");
        fake_v1(dir.path());
        let cpuset = dir.path().join("cpuset");
        write(&cpuset.join("cpuset.cpus"), "0-1\n");
        write(&cpuset.join("cpuset.mems"), "0\n");
        // What the kernel puts in a new cpuset cgroup: empty sets.
        write(&cpuset.join("a/cpuset.cpus"), "\n");
        write(&cpuset.join("a/cpuset.mems"), "\n");
        write(&cpuset.join("a/b/cpuset.cpus"), "");
        write(&cpuset.join("a/b/cpuset.mems"), "");
        ensure_cgroup(&Cgroupfs::detect(dir.path()), "/a/b").expect("ensure");
        for cgroup in ["a", "a/b"] {
            let read = |file: &str| std::fs::read_to_string(cpuset.join(cgroup).join(file));
            assert_eq!(read("cpuset.cpus").expect("cpus"), "0-1");
            assert_eq!(read("cpuset.mems").expect("mems"), "0");
        }
    }

    #[test]
    fn root_processes_but_pid_1_and_kernel_threads_move_to_the_system_cgroup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (root, proc_root) = (dir.path().join("cgroup"), dir.path().join("proc"));
        fake_v1(&root);
        write(&root.join("devices/cgroup.procs"), "1\n2\n300\n301\n");
        for pid in ["1", "300"] {
            std::fs::create_dir_all(proc_root.join(pid)).expect("proc dir");
            std::os::unix::fs::symlink("/bin/sh", proc_root.join(pid).join("exe")).expect("exe");
        }
        // 2 is a kernel thread (no exe); 301 exited before it could be moved.
        std::fs::create_dir_all(proc_root.join("2")).expect("proc dir");
        let moved =
            move_root_processes(&Cgroupfs::detect(&root), &proc_root, "/system").expect("moved");
        assert_eq!(moved, 1);
        let procs = root.join("memory/system/cgroup.procs");
        assert_eq!(std::fs::read_to_string(procs).expect("procs"), "300");
    }

    #[test]
    fn the_accounting_cgroup_needs_cpu_and_memory_together_on_v1() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (root, proc_root) = (dir.path().join("cgroup"), dir.path().join("proc"));
        fake_v1(&root);
        write(
            &proc_root.join("self/cgroup"),
            "9:name=systemd:/\n4:memory:/kubelet\n2:cpu,cpuacct:/kubelet\n0::/\n",
        );
        assert_eq!(
            process_cgroup(&Cgroupfs::detect(&root), &proc_root, "self").expect("cgroup"),
            "/kubelet"
        );
        write(
            &proc_root.join("7/cgroup"),
            "4:memory:/process_api/abc\n2:cpu,cpuacct:/\n",
        );
        let err =
            process_cgroup(&Cgroupfs::detect(&root), &proc_root, "7").expect_err("not unified");
        assert!(err.to_string().contains("not unified"), "{err}");

        write(&root.join("cgroup.controllers"), "cpu memory\n");
        write(
            &proc_root.join("8/cgroup"),
            "0::/system.slice/kubelet.service\n",
        );
        assert_eq!(
            process_cgroup(&Cgroupfs::detect(&root), &proc_root, "8").expect("v2"),
            "/system.slice/kubelet.service"
        );
    }
}
