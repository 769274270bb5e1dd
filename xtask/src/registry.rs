//! The two image registries on loopback (Debian's docker-registry, distribution 2.8): a
//! plain one on 127.0.0.1:5000 and one on 127.0.0.1:5001 that requires HTTP basic auth
//! (htpasswd, bcrypt). distribution 2.8 accepts htpasswd without TLS, and containerd's CRI
//! talks plain HTTP to `localhost:*` registries and sends the basic-auth credentials of the
//! pull request, so neither needs TLS.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::daemon::{Daemon, DaemonState};
use crate::layout::{self, Layout};
use crate::progress;
use crate::util;

/// One of our registries.
pub struct Registry {
    /// A short name for messages.
    pub name: &'static str,
    /// Its directory under the state dir.
    pub dir: PathBuf,
    /// The listen address.
    pub addr: &'static str,
    /// The name image references use (`localhost:PORT`).
    pub host: &'static str,
    /// Whether it requires basic auth.
    pub auth: bool,
}

impl Registry {
    /// The plain registry.
    pub fn plain(l: &Layout) -> Self {
        Registry {
            name: "registry",
            dir: l.registry_dir(),
            addr: layout::REGISTRY_ADDR,
            host: layout::REGISTRY,
            auth: false,
        }
    }

    /// The registry that requires basic auth.
    pub fn with_auth(l: &Layout) -> Self {
        Registry {
            name: "auth registry",
            dir: l.auth_registry_dir(),
            addr: layout::AUTH_REGISTRY_ADDR,
            host: layout::AUTH_REGISTRY,
            auth: true,
        }
    }

    /// Its config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.yml")
    }

    /// Its htpasswd file.
    fn htpasswd_path(&self) -> PathBuf {
        self.dir.join("htpasswd")
    }

    /// The file that keeps the password.
    fn password_path(&self) -> PathBuf {
        self.dir.join("password")
    }

    /// The registry as a [`Daemon`].
    pub fn daemon(&self, l: &Layout) -> Daemon {
        let file = self.name.replace(' ', "-");
        Daemon {
            pidfile: l.run_dir().join(format!("{file}.pid")),
            log: l.logs_dir().join(format!("{file}.log")),
            program: "docker-registry".into(),
            args: vec![
                "serve".into(),
                self.config_path().to_string_lossy().into_owned(),
            ],
            marker: self.config_path().to_string_lossy().into_owned(),
        }
    }

    /// The password of the auth registry (made on first use and kept in the state dir).
    pub fn password(&self) -> Result<String> {
        let path = self.password_path();
        if let Ok(p) = fs::read_to_string(&path) {
            let p = p.trim().to_string();
            if !p.is_empty() {
                return Ok(p);
            }
        }
        let p = format!("kt-{}", util::random_hex(12)?);
        util::mkdir(&self.dir)?;
        fs::write(&path, format!("{p}\n"))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(p)
    }

    /// The `Authorization` header for the auth registry.
    pub fn auth_header(&self) -> Result<Option<(&'static str, String)>> {
        if !self.auth {
            return Ok(None);
        }
        let creds = format!("{}:{}", layout::AUTH_USER, self.password()?);
        Ok(Some((
            "Authorization",
            format!("Basic {}", util::base64(creds.as_bytes())),
        )))
    }

    /// The registry's config.
    fn config(&self, secret: &str) -> String {
        let mut c = format!(
            "# Written by `cargo xtask env up`; changes are overwritten.\n\
             version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
             http:\n  addr: {addr}\n  secret: {secret}\n  headers:\n    X-Content-Type-Options: [nosniff]\n",
            data = self.dir.join("data").display(),
            addr = self.addr,
        );
        if self.auth {
            c.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: kubelet-rs-test\n    path: {}\n",
                self.htpasswd_path().display()
            ));
        }
        c
    }

    /// Writes the htpasswd file unless it already holds the current password.
    fn ensure_htpasswd(&self) -> Result<bool> {
        let password = self.password()?;
        let path = self.htpasswd_path();
        if path.exists()
            && util::succeeds(
                util::cmd("htpasswd")
                    .arg("-vb")
                    .arg(&path)
                    .args([layout::AUTH_USER, &password]),
                Duration::from_secs(10),
            )
        {
            return Ok(false);
        }
        let line =
            util::output(util::cmd("htpasswd").args(["-Bbn", layout::AUTH_USER, &password]))?;
        fs::write(&path, line.trim().to_string() + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(true)
    }

    /// GET /v2/ with or without credentials; the HTTP status.
    pub fn ping(&self, with_auth: bool) -> Result<u16> {
        let mut headers = Vec::new();
        if with_auth && let Some(h) = self.auth_header()? {
            headers.push(h);
        }
        Ok(util::http_request(self.addr, "GET", "/v2/", &headers)?.status)
    }

    /// Checks that the registry answers as it should: 200 (with credentials, when it
    /// requires auth), and 401 without credentials on the auth registry.
    pub fn check(&self) -> Result<()> {
        let with = self.ping(true)?;
        if with != 200 {
            bail!("GET http://{}/v2/ answered {with}", self.addr);
        }
        if self.auth {
            let without = self.ping(false)?;
            if without != 401 {
                bail!(
                    "GET http://{}/v2/ without credentials answered {without}, not 401",
                    self.addr
                );
            }
        }
        Ok(())
    }

    /// Writes the config and makes sure our registry runs with it.
    pub fn ensure(&self, l: &Layout) -> Result<()> {
        util::mkdir(&self.dir.join("data"))?;
        let secret_path = self.dir.join("http-secret");
        let secret = match fs::read_to_string(&secret_path) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => {
                let s = util::random_hex(16)?;
                fs::write(&secret_path, &s)?;
                s
            }
        };
        let mut changed =
            util::write_if_changed(&self.config_path(), self.config(&secret).as_bytes())?;
        if self.auth {
            changed |= self.ensure_htpasswd()?;
        }
        let d = self.daemon(l);
        if let DaemonState::Running(pid) = d.state() {
            if !changed && util::wait_until(Duration::from_secs(5), || self.check().is_ok()) {
                progress!("{} already running on {} (pid {pid})", self.name, self.addr);
                return Ok(());
            }
            progress!("restarting {} (pid {pid})", self.name);
            d.stop(Duration::from_secs(10));
        }
        if let Ok(status) = self.ping(false) {
            bail!(
                "something else already listens on {} (answered {status} to GET /v2/); it is \
                 not the {} started by xtask (no matching pid file {}). Stop it first (Debian's \
                 own service: /etc/init.d/docker-registry stop)",
                self.addr,
                self.name,
                d.pidfile.display()
            );
        }
        progress!(
            "starting {} on {} (log: {})",
            self.name,
            self.addr,
            d.log.display()
        );
        let pid = d.start()?;
        let ok = util::wait_until(Duration::from_secs(15), || {
            self.check().is_ok() || !util::process_alive(pid)
        });
        if !ok || !util::process_alive(pid) {
            let log_tail = util::tail(&d.log, 20);
            d.stop(Duration::from_secs(5));
            bail!(
                "{} did not come up on {}; last lines of {}:\n{log_tail}",
                self.name,
                self.addr,
                d.log.display()
            );
        }
        Ok(())
    }

    /// The digest of a manifest in this registry, if the tag exists.
    pub fn manifest_digest(&self, repo: &str, tag: &str) -> Result<Option<String>> {
        let mut headers = vec![(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.v2+json"
                .to_string(),
        )];
        if let Some(h) = self.auth_header()? {
            headers.push(h);
        }
        let resp = util::http_request(
            self.addr,
            "HEAD",
            &format!("/v2/{repo}/manifests/{tag}"),
            &headers,
        )?;
        match resp.status {
            200 => Ok(resp.header("docker-content-digest").map(str::to_string)),
            404 => Ok(None),
            s => bail!("HEAD {repo}:{tag} on {} answered {s}", self.addr),
        }
    }
}
