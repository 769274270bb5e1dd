//! Every route of the kubelet API tried by three callers against a table derived from
//! upstream v1.37.2's server (`pkg/kubelet/server/server.go` for the routes,
//! `auth.go` for the `nodes/<subresource>` each path is authorized as, with
//! KubeletFineGrainedAuthz on as by default): without credentials (401 everywhere), with
//! a ServiceAccount token the SubjectAccessReview denies (403 naming upstream's
//! subresources), and with one a ClusterRole allows (the route's own answer). Then the
//! read-only port, which serves its few routes to anyone and nothing else.
//!
//! Runs on the real control plane and containerd (`cargo xtask env up --control-plane`).

mod common;

use common::{API, Cluster, NODE_IP, Namespace, curl, lock};

/// One route: how it is asked, the subresources upstream checks, in order, and what an
/// allowed caller gets.
struct Route {
    method: &'static str,
    path: String,
    subresources: &'static str,
    allowed: u16,
}

fn route(method: &'static str, path: &str, subresources: &'static str, allowed: u16) -> Route {
    Route {
        method,
        path: path.to_owned(),
        subresources,
        allowed,
    }
}

/// The table for a pod `pod` with container `c` in namespace `ns`.
fn table(ns: &str) -> Vec<Route> {
    let pod = format!("{ns}/talker");
    vec![
        route("GET", "/healthz", "healthz proxy", 200),
        route("GET", "/healthz/ping", "healthz proxy", 200),
        route("GET", "/healthz/log", "healthz proxy", 200),
        route("GET", "/healthz/syncloop", "healthz proxy", 200),
        route("GET", "/pods", "pods proxy", 200),
        route("GET", "/pods/", "pods proxy", 200),
        route("GET", "/runningpods/", "pods proxy", 200),
        route("GET", "/configz", "configz proxy", 200),
        route("GET", "/metrics", "metrics", 200),
        route("GET", "/metrics/probes", "metrics", 200),
        route("GET", "/metrics/resource", "metrics", 200),
        route("GET", "/metrics/slis", "metrics", 200),
        route("GET", "/stats/summary", "stats", 200),
        route("POST", "/stats/summary", "stats", 200),
        route("GET", "/logs/", "log", 200),
        route(
            "GET",
            &format!("/containerLogs/{pod}/talker?tailLines=1"),
            "proxy",
            200,
        ),
        route("PUT", "/debug/flags/v", "proxy", 200),
        // Without the upgrade headers a stream cannot start: upstream's upgrade-aware
        // proxy answers 500 "Upgrade request required".
        route(
            "POST",
            &format!("/exec/{pod}/talker?command=true&output=1"),
            "proxy",
            500,
        ),
        route(
            "POST",
            &format!("/attach/{pod}/talker?output=1"),
            "proxy",
            500,
        ),
        route("POST", &format!("/portForward/{pod}"), "proxy", 500),
        // Not built, each answered plainly with 501 (upstream: 200, 200, 500 with
        // containerd 1.6, which cannot checkpoint, and 200 from Go's profiler).
        route("POST", &format!("/run/{pod}/talker?cmd=true"), "proxy", 501),
        route("GET", "/metrics/cadvisor", "metrics", 501),
        route(
            "POST",
            &format!("/checkpoint/{pod}/talker"),
            "checkpoint",
            501,
        ),
        route("GET", "/debug/pprof/", "proxy", 501),
        route("DELETE", "/metrics/slis", "metrics", 200),
        // Method not allowed on a GET-only route, and paths that are not routes.
        route("POST", "/pods", "pods proxy", 405),
        route("GET", "/statusz", "statusz", 404),
        route("GET", "/flagz", "configz", 404),
        route("GET", "/no-such-route", "proxy", 404),
        route("GET", "/stats/no-such-stat", "stats", 404),
    ]
}

fn verb(method: &str) -> &'static str {
    match method {
        "POST" => "create",
        "PUT" => "update",
        "DELETE" => "delete",
        _ => "get",
    }
}

/// `curl` of a route on `base` with the caller's `auth` arguments.
fn ask(base: &str, r: &Route, auth: &[&str]) -> (u16, String) {
    let mut args = vec!["-X", r.method];
    if r.method == "PUT" {
        args.extend(["--data", "2"]);
    }
    args.extend(auth);
    curl(&format!("{base}{}", r.path), &args)
}

#[test]
fn every_route_answers_each_caller_as_upstream_table_says() {
    let Some((_env, c)) =
        Cluster::from_env("every_route_answers_each_caller_as_upstream_table_says")
    else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let kubelet = c.start_kubelet_with(dir.path(), "readOnlyPort: 10255\n", &[]);
    c.wait_node_ready(&kubelet);
    let namespace = Namespace::create(&c, "route-table");
    let ns = namespace.name;
    c.apply(&format!(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {{name: reader, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: route-table-kubelet-api}}
rules:
- apiGroups: [""]
  resources: [nodes/proxy, nodes/pods, nodes/healthz, nodes/configz, nodes/stats,
              nodes/metrics, nodes/log, nodes/checkpoint, nodes/statusz]
  verbs: [get, create, update, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: route-table-kubelet-api}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: route-table-kubelet-api}}
subjects:
- {{kind: ServiceAccount, name: reader, namespace: {ns}}}
"#
    ));
    let _binding = RemoveClusterObjects(&c);
    c.run_talker(ns, &kubelet);
    let (denied, allowed) = (c.bearer_token(ns, "default"), c.bearer_token(ns, "reader"));
    let denied_user = format!("system:serviceaccount:{ns}:default");

    let mut wrong = Vec::new();
    for r in table(ns) {
        let (status, body) = ask(API, &r, &[]);
        if (status, body.as_str()) != (401, "Unauthorized\n") {
            wrong.push(format!(
                "{} {} without credentials: {status} {body:?}",
                r.method, r.path
            ));
        }
        let (status, body) = ask(API, &r, &["-H", &denied]);
        let forbidden = format!(
            "Forbidden (user={denied_user}, verb={}, resource=nodes, subresource(s)=[{}])\n",
            verb(r.method),
            r.subresources
        );
        if (status, body.as_str()) != (403, forbidden.as_str()) {
            wrong.push(format!(
                "{} {} denied: {status} {body:?}, want 403 {forbidden:?}",
                r.method, r.path
            ));
        }
        let (status, body) = ask(API, &r, &["-H", &allowed]);
        if status != r.allowed {
            wrong.push(format!(
                "{} {} allowed: {status} {body:?}, want {}",
                r.method, r.path, r.allowed
            ));
        }
    }
    // A random token is not a ServiceAccount's: 401, like no credentials.
    let (status, _) = curl(
        &format!("{API}/pods"),
        &["-H", "Authorization: Bearer not-a-token"],
    );
    if status != 401 {
        wrong.push(format!("GET /pods with a bogus token: {status}, want 401"));
    }

    // The read-only port: no authentication, its own few routes (upstream's
    // InstallAuthNotRequiredHandlers without the debugging handlers).
    let read_only = format!("http://{NODE_IP}:10255");
    let disabled = "Debug endpoints are disabled.\n";
    for (path, want, body) in [
        ("/healthz", 200, Some("ok")),
        ("/healthz/syncloop", 200, Some("ok")),
        ("/pods", 200, None),
        ("/stats/summary", 200, None),
        ("/metrics", 200, None),
        ("/metrics/resource", 200, None),
        ("/metrics/probes", 200, None),
        ("/metrics/slis", 200, None),
        // Installed with the authorized handlers only.
        ("/configz", 404, None),
        ("/debug/flags/v", 404, None),
        // Upstream's disabled debugging handlers.
        (
            &*format!("/containerLogs/{ns}/talker/talker"),
            405,
            Some(disabled),
        ),
        (
            &*format!("/exec/{ns}/talker/talker?command=true"),
            405,
            Some(disabled),
        ),
        ("/logs/", 405, Some(disabled)),
        ("/runningpods/", 405, Some(disabled)),
        ("/debug/pprof/", 405, Some(disabled)),
    ] {
        let (status, text) = curl(&format!("{read_only}{path}"), &[]);
        if status != want || body.is_some_and(|b| b != text) {
            wrong.push(format!(
                "read-only GET {path}: {status} {text:?}, want {want} {body:?}"
            ));
        }
    }
    // What /healthz recorded.
    let (_, slis) = curl(&format!("{read_only}/metrics/slis"), &[]);
    if !slis.contains("kubernetes_healthcheck{name=\"syncloop\",type=\"healthz\"} 1") {
        wrong.push(format!("/metrics/slis without the syncloop check: {slis}"));
    }
    assert!(
        wrong.is_empty(),
        "{} answers differ from the table:\n{}\n{}",
        wrong.len(),
        wrong.join("\n"),
        kubelet.log()
    );
    drop(namespace);
    drop(kubelet);
}

/// Deletes the test's cluster-scoped RBAC objects when the test ends.
struct RemoveClusterObjects<'a>(&'a Cluster);

impl Drop for RemoveClusterObjects<'_> {
    fn drop(&mut self) {
        let _ = self.0.try_kubectl(
            &[
                "delete",
                "clusterrolebinding,clusterrole",
                "route-table-kubelet-api",
                "--ignore-not-found",
            ],
            None,
        );
    }
}
