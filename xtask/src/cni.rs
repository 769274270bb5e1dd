//! The CNI network (bridge, portmap, loopback), the iptables isolation of the pod network,
//! and the removal of what CNI leaves behind.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use crate::layout::{BRIDGE, CNI_NETWORK, Layout, NETNS_DIR, POD_CIDR};
use crate::progress;
use crate::util;

/// The comment that marks our iptables rules.
const RULE_COMMENT: &str = "kubelet-rs test env: keep pod traffic on the machine";

/// The CNI conflist.
pub fn conflist(l: &Layout) -> Result<String> {
    let v = json!({
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": POD_CIDR }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": l.cni_ipam_dir().to_string_lossy(),
                }
            },
            { "type": "portmap", "capabilities": { "portMappings": true } },
            { "type": "loopback" }
        ]
    });
    Ok(serde_json::to_string_pretty(&v)? + "\n")
}

/// Writes the CNI config. Returns true when it changed.
pub fn write_config(l: &Layout) -> Result<bool> {
    util::mkdir(&l.cni_ipam_dir())?;
    util::write_if_changed(&l.cni_conflist(), conflist(l)?.as_bytes())
}

/// Our FORWARD rules, in order: pod-to-pod traffic returns to the normal rules, any other
/// forwarded traffic from the pod network is dropped. Traffic from pods to the host's own
/// addresses is INPUT, not FORWARD, and stays allowed.
fn forward_rules() -> Vec<Vec<String>> {
    let base = |extra: &[&str], target: &str| -> Vec<String> {
        let mut r: Vec<String> = vec!["-s".into(), POD_CIDR.into()];
        r.extend(extra.iter().map(|s| s.to_string()));
        r.extend(
            ["-m", "comment", "--comment", RULE_COMMENT, "-j", target]
                .iter()
                .map(|s| s.to_string()),
        );
        r
    };
    vec![base(&["-d", POD_CIDR], "ACCEPT"), base(&[], "DROP")]
}

/// Runs iptables (waiting for the xtables lock).
fn iptables(args: &[&str]) -> std::process::Command {
    let mut c = util::cmd("iptables");
    c.arg("-w").args(args);
    c
}

/// Tells whether a FORWARD rule exists.
fn forward_rule_exists(rule: &[String]) -> bool {
    util::succeeds(
        iptables(&["-C", "FORWARD"]).args(rule),
        Duration::from_secs(30),
    )
}

/// Tells whether both isolation rules are in place.
pub fn isolation_present() -> bool {
    forward_rules().iter().all(|r| forward_rule_exists(r))
}

/// Puts the isolation rules at the top of FORWARD, unless they are already there.
pub fn ensure_isolation() -> Result<()> {
    if isolation_present() {
        return Ok(());
    }
    remove_isolation();
    // Insert in reverse order at position 1 so that ACCEPT ends up before DROP.
    for rule in forward_rules().iter().rev() {
        util::run(iptables(&["-I", "FORWARD", "1"]).args(rule))?;
    }
    progress!("iptables: pod traffic restricted to {POD_CIDR} and the host");
    Ok(())
}

/// Removes every copy of our FORWARD rules. Returns how many were removed.
pub fn remove_isolation() -> usize {
    let mut n = 0;
    for rule in forward_rules() {
        while forward_rule_exists(&rule) {
            if !util::succeeds(
                iptables(&["-D", "FORWARD"]).args(&rule),
                Duration::from_secs(30),
            ) {
                break;
            }
            n += 1;
        }
    }
    n
}

/// Removes the iptables chains named CNI-* (bridge ipMasq, portmap) from the filter, nat
/// and mangle tables, with the rules of other chains that jump to them. Returns the
/// number of chains removed.
pub fn remove_cni_chains() -> usize {
    let mut removed = 0;
    for table in ["nat", "filter", "mangle"] {
        let Ok(rules) = util::output(&mut iptables(&["-t", table, "-S"])) else {
            continue;
        };
        let mut chains = Vec::new();
        for line in rules.lines() {
            let words = util::split_shell_words(line);
            match words.first().map(String::as_str) {
                Some("-N") => {
                    if let Some(c) = words.get(1)
                        && c.starts_with("CNI-")
                    {
                        chains.push(c.clone());
                    }
                }
                Some("-A") => {
                    let Some(chain) = words.get(1) else { continue };
                    if chain.starts_with("CNI-") {
                        continue;
                    }
                    let jumps_to_cni = words
                        .windows(2)
                        .any(|w| (w[0] == "-j" || w[0] == "-g") && w[1].starts_with("CNI-"));
                    if jumps_to_cni {
                        let mut c = iptables(&["-t", table, "-D"]);
                        c.args(&words[1..]);
                        if let Err(e) = util::run(&mut c) {
                            progress!("warning: {e:#}");
                        }
                    }
                }
                _ => {}
            }
        }
        for c in &chains {
            let _ = util::run(&mut iptables(&["-t", table, "-F", c]));
        }
        for c in &chains {
            match util::run(&mut iptables(&["-t", table, "-X", c])) {
                Ok(()) => removed += 1,
                Err(e) => progress!("warning: {e:#}"),
            }
        }
    }
    removed
}

/// The network namespaces CRI created (`/run/netns/cni-*`).
pub fn cni_netns() -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(rd) = fs::read_dir(NETNS_DIR) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("cni-") {
                names.push(name);
            }
        }
    }
    names.sort();
    names
}

/// Deletes CRI's network namespaces. Returns how many were deleted.
pub fn remove_netns() -> usize {
    let mut n = 0;
    for name in cni_netns() {
        let path = Path::new(NETNS_DIR).join(&name);
        let _ = util::run(util::cmd("umount").arg(&path));
        if path.exists() {
            let _ = util::run(util::cmd("umount").arg("-l").arg(&path));
        }
        match fs::remove_file(&path) {
            Ok(()) => n += 1,
            Err(e) => progress!("warning: cannot remove {}: {e}", path.display()),
        }
    }
    n
}

/// Tells whether a network interface exists.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Deletes the veths still attached to the bridge, then the bridge. Returns the names of
/// the interfaces deleted.
pub fn remove_links() -> Vec<String> {
    let mut deleted = Vec::new();
    if !link_exists(BRIDGE) {
        return deleted;
    }
    let brif = Path::new("/sys/class/net").join(BRIDGE).join("brif");
    if let Ok(rd) = fs::read_dir(&brif) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if util::succeeds(
                util::cmd("ip").args(["link", "delete", &name]),
                Duration::from_secs(10),
            ) {
                deleted.push(name);
            }
        }
    }
    if util::succeeds(
        util::cmd("ip").args(["link", "delete", BRIDGE]),
        Duration::from_secs(10),
    ) {
        deleted.push(BRIDGE.to_string());
    }
    deleted
}

/// Forgets host-local's IP allocations (only when no pod can hold one any more).
pub fn clear_ipam(l: &Layout) -> Result<()> {
    let dir = l.cni_ipam_dir();
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    util::mkdir(&dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_chains_bridge_portmap_loopback() -> Result<()> {
        let l = Layout {
            workspace: "/w".into(),
            state: "/w/target/env".into(),
        };
        let v: serde_json::Value = serde_json::from_str(&conflist(&l)?)?;
        let types: Vec<&str> = v["plugins"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p["type"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(types, ["bridge", "portmap", "loopback"]);
        assert_eq!(v["plugins"][0]["ipam"]["dataDir"], "/w/target/env/cni/ipam");
        Ok(())
    }
}
