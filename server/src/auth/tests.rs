use std::sync::Mutex;

use super::*;

/// Where the test requests come from.
const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

#[test]
fn paths_map_to_upstreams_subresources() {
    let cases: &[(&str, &[&str])] = &[
        ("/pods", &["pods", "proxy"]),
        ("/pods/", &["pods", "proxy"]),
        ("/podsx", &["proxy"]),
        ("/runningpods/", &["pods", "proxy"]),
        ("/runningpods", &["pods", "proxy"]),
        ("/allocatedPods/ns/p", &["pods", "proxy"]),
        ("/healthz", &["healthz", "proxy"]),
        ("/healthz/ping", &["healthz", "proxy"]),
        ("/configz", &["configz", "proxy"]),
        ("/stats/summary", &["stats"]),
        ("/stats", &["stats"]),
        ("/statsx", &["proxy"]),
        ("/metrics", &["metrics"]),
        ("/metrics/cadvisor", &["metrics"]),
        ("/logs/", &["log"]),
        ("/logs/syslog", &["log"]),
        ("/checkpoint/ns/p/c", &["checkpoint"]),
        ("/statusz", &["statusz"]),
        ("/flagz", &["configz"]),
        ("/containerLogs/ns/p/c", &["proxy"]),
        ("/exec/ns/p/c", &["proxy"]),
        ("/portForward/ns/p", &["proxy"]),
        ("/", &["proxy"]),
    ];
    for (path, want) in cases {
        assert_eq!(subresources(path), *want, "{path}");
    }
}

#[test]
fn methods_map_to_api_verbs() {
    for (method, verb) in [
        ("GET", "get"),
        ("POST", "create"),
        ("PUT", "update"),
        ("PATCH", "patch"),
        ("DELETE", "delete"),
        ("HEAD", ""),
        ("OPTIONS", ""),
    ] {
        assert_eq!(api_verb(method), verb, "{method}");
    }
}

#[test]
fn bearer_tokens_are_read_as_upstream() {
    assert_eq!(bearer_token("Bearer abc"), Some("abc"));
    assert_eq!(bearer_token("bearer abc"), Some("abc"));
    assert_eq!(bearer_token("Bearer abc extra"), Some("abc"));
    assert_eq!(bearer_token("Bearer "), None);
    assert_eq!(bearer_token("Basic dXNlcg=="), None);
    assert_eq!(bearer_token("Bearer"), None);
}

/// A TokenReview that knows one token, counts its calls and can fail.
#[derive(Default)]
struct FakeTokens {
    calls: Mutex<usize>,
    fail: Mutex<bool>,
}

#[async_trait]
impl TokenReviewer for FakeTokens {
    async fn review_token(&self, token: &str) -> Result<Option<UserInfo>, String> {
        *self.calls.lock().expect("lock") += 1;
        if *self.fail.lock().expect("lock") {
            return Err("connection refused".into());
        }
        Ok((token == "good")
            .then(|| UserInfo::new("system:serviceaccount:ns:sa", ["system:serviceaccounts"])))
    }
}

fn user(authn: &Authn) -> Option<&UserInfo> {
    match authn {
        Authn::User(user) => Some(user),
        Authn::Unauthorized { .. } | Authn::TooManyReviews => None,
    }
}

#[tokio::test(start_paused = true)]
async fn random_tokens_cost_each_source_a_bounded_number_of_reviews() {
    let tokens = Arc::new(FakeTokens::default());
    let authn = Authenticator::new(
        TokenAuth::Webhook {
            reviewer: tokens.clone(),
            ttl: Duration::from_secs(120),
        },
        false,
    );
    let calls = || *tokens.calls.lock().expect("lock");
    let attacker = IpAddr::from([10, 0, 0, 66]);
    for i in 0..1000 {
        let header = format!("Bearer random-{i}");
        let _ = authn.authenticate(attacker, None, Some(&header)).await;
    }
    assert_eq!(calls(), 20, "the burst, then no more reviews");
    assert_eq!(
        authn
            .authenticate(attacker, None, Some("Bearer random-x"))
            .await,
        Authn::TooManyReviews
    );
    // Other sources, and tokens already reviewed, are not affected.
    let got = authn.authenticate(LOCAL, None, Some("Bearer good")).await;
    assert!(user(&got).is_some(), "{got:?}");
    assert_eq!(
        authn
            .authenticate(attacker, None, Some("Bearer random-3"))
            .await,
        Authn::Unauthorized {
            why: "invalid bearer token".into(),
            hint: None
        },
        "cached: no review needed"
    );
    // The budget refills over time.
    tokio::time::advance(Duration::from_secs(1)).await;
    let before = calls();
    for i in 0..10 {
        let header = format!("Bearer later-{i}");
        let _ = authn.authenticate(attacker, None, Some(&header)).await;
    }
    assert_eq!(calls() - before, 5, "five a second");
}

#[tokio::test(start_paused = true)]
async fn client_certificates_then_tokens_then_anonymous() {
    let tokens = Arc::new(FakeTokens::default());
    let authn = Authenticator::new(
        TokenAuth::Webhook {
            reviewer: tokens.clone(),
            ttl: Duration::from_secs(120),
        },
        false,
    );
    let cert_user = UserInfo::new("kube-apiserver-kubelet-client", ["system:masters"]);
    let got = authn
        .authenticate(LOCAL, Some(&cert_user), Some("Bearer bad"))
        .await;
    assert_eq!(
        user(&got).map(|u| u.groups.clone()),
        Some(vec![
            "system:masters".to_owned(),
            "system:authenticated".to_owned()
        ]),
        "the certificate wins and its user joins system:authenticated"
    );
    let got = authn.authenticate(LOCAL, None, Some("Bearer good")).await;
    assert_eq!(
        user(&got).map(|u| u.name.as_str()),
        Some("system:serviceaccount:ns:sa")
    );
    assert!(user(&authn.authenticate(LOCAL, None, Some("Bearer bad")).await).is_none());
    let got = authn.authenticate(LOCAL, None, None).await;
    assert_eq!(
        got,
        Authn::Unauthorized {
            why: "no credentials".into(),
            hint: None
        },
        "anonymous is off"
    );

    // Answers are cached for the TTL, valid and invalid alike; errors are not.
    assert_eq!(*tokens.calls.lock().expect("lock"), 2);
    authn.authenticate(LOCAL, None, Some("Bearer good")).await;
    authn.authenticate(LOCAL, None, Some("Bearer bad")).await;
    assert_eq!(*tokens.calls.lock().expect("lock"), 2);
    tokio::time::advance(Duration::from_secs(121)).await;
    authn.authenticate(LOCAL, None, Some("Bearer good")).await;
    assert_eq!(*tokens.calls.lock().expect("lock"), 3);
    *tokens.fail.lock().expect("lock") = true;
    assert!(user(&authn.authenticate(LOCAL, None, Some("Bearer other")).await).is_none());
    assert!(user(&authn.authenticate(LOCAL, None, Some("Bearer other")).await).is_none());
    assert_eq!(*tokens.calls.lock().expect("lock"), 5);
    assert!(
        user(&authn.authenticate(LOCAL, None, Some("Bearer good")).await).is_some(),
        "the cached answer stands while the API server fails"
    );
}

#[tokio::test]
async fn anonymous_requests_when_enabled_but_not_with_a_bad_token() {
    let authn = Authenticator::new(
        TokenAuth::Webhook {
            reviewer: Arc::new(FakeTokens::default()),
            ttl: Duration::from_secs(120),
        },
        true,
    );
    let got = authn.authenticate(LOCAL, None, None).await;
    assert_eq!(
        user(&got),
        Some(&UserInfo::new(
            "system:anonymous",
            ["system:unauthenticated"]
        ))
    );
    assert!(
        user(&authn.authenticate(LOCAL, None, Some("Bearer bad")).await).is_none(),
        "a token that fails is refused, as upstream's FailOnError union"
    );
    // With token review disabled, a token is ignored.
    let authn = Authenticator::new(TokenAuth::Disabled, true);
    let got = authn
        .authenticate(LOCAL, None, Some("Bearer whatever"))
        .await;
    assert_eq!(
        user(&got).map(|u| u.name.as_str()),
        Some("system:anonymous")
    );
}

#[tokio::test]
async fn tokens_without_an_api_server_are_refused_with_a_reason() {
    let authn = Authenticator::new(TokenAuth::NoApiServer, false);
    match authn.authenticate(LOCAL, None, Some("Bearer x")).await {
        Authn::Unauthorized {
            hint: Some(hint), ..
        } => {
            assert!(hint.contains("--kubeconfig"), "{hint}");
        }
        other => panic!("{other:?}"),
    }
}

/// A SubjectAccessReview that allows what its rule says and records what it was asked.
struct FakeAccess {
    allow: fn(&Attributes) -> bool,
    asked: Mutex<Vec<String>>,
    fail: bool,
}

impl FakeAccess {
    fn new(allow: fn(&Attributes) -> bool) -> Self {
        Self {
            allow,
            asked: Mutex::new(Vec::new()),
            fail: false,
        }
    }
    fn asked(&self) -> Vec<String> {
        self.asked.lock().expect("lock").clone()
    }
}

#[async_trait]
impl AccessReviewer for FakeAccess {
    async fn review_access(&self, a: &Attributes) -> Result<Verdict, String> {
        self.asked.lock().expect("lock").push(format!(
            "{} {} nodes/{} {}",
            a.user.name, a.verb, a.subresource, a.name
        ));
        if self.fail {
            return Err("the server is currently unable to handle the request".into());
        }
        Ok(if (self.allow)(a) {
            Verdict::Allow
        } else {
            Verdict::Deny
        })
    }
}

fn webhook(reviewer: Arc<FakeAccess>) -> Authorizer {
    Authorizer::new(
        AuthzMode::Webhook {
            reviewer,
            allowed_ttl: Duration::from_secs(300),
            denied_ttl: Duration::from_secs(30),
        },
        "vm",
    )
}

#[tokio::test(start_paused = true)]
async fn webhook_checks_each_subresource_until_one_is_allowed() {
    let reviewer = Arc::new(FakeAccess::new(|a| a.subresource == "proxy"));
    let authz = webhook(reviewer.clone());
    let alice = UserInfo::new("alice", ["devs"]);
    assert_eq!(
        authz.authorize(&alice, "GET", "/pods").await,
        Decision::Allow
    );
    assert_eq!(
        reviewer.asked(),
        ["alice get nodes/pods vm", "alice get nodes/proxy vm"]
    );
    // Cached: no new review.
    assert_eq!(
        authz.authorize(&alice, "GET", "/pods").await,
        Decision::Allow
    );
    assert_eq!(reviewer.asked().len(), 2);

    let reviewer = Arc::new(FakeAccess::new(|a| a.user.name == "admin"));
    let authz = webhook(reviewer.clone());
    assert_eq!(
        authz.authorize(&alice, "POST", "/exec/ns/p/c").await,
        Decision::Forbidden(
            "Forbidden (user=alice, verb=create, resource=nodes, subresource(s)=[proxy])\n".into()
        )
    );
    assert_eq!(
        authz.authorize(&alice, "GET", "/healthz").await,
        Decision::Forbidden(
            "Forbidden (user=alice, verb=get, resource=nodes, subresource(s)=[healthz proxy])\n"
                .into()
        )
    );
    let asked = reviewer.asked().len();
    // Denials are cached for the unauthorized TTL only.
    authz.authorize(&alice, "GET", "/healthz").await;
    assert_eq!(reviewer.asked().len(), asked);
    tokio::time::advance(Duration::from_secs(31)).await;
    authz.authorize(&alice, "GET", "/healthz").await;
    assert_eq!(reviewer.asked().len(), asked + 2);
    assert_eq!(
        authz
            .authorize(
                &UserInfo::new("admin", ["system:masters"]),
                "GET",
                "/containerLogs/a/b/c"
            )
            .await,
        Decision::Allow
    );
}

#[tokio::test]
async fn review_errors_are_500s_and_not_cached() {
    let reviewer = Arc::new(FakeAccess {
        fail: true,
        ..FakeAccess::new(|_| true)
    });
    let authz = webhook(reviewer.clone());
    let alice = UserInfo::new("alice", Vec::<String>::new());
    let want = Decision::Error(
        "Authorization error (user=alice, verb=get, resource=nodes, subresource=proxy)".into(),
    );
    assert_eq!(
        authz.authorize(&alice, "GET", "/containerLogs/a/b/c").await,
        want
    );
    assert_eq!(
        authz.authorize(&alice, "GET", "/containerLogs/a/b/c").await,
        want
    );
    assert_eq!(reviewer.asked().len(), 2);
}

#[tokio::test]
async fn always_allow_and_standalone_webhook() {
    let alice = UserInfo::new("alice", Vec::<String>::new());
    let authz = Authorizer::new(AuthzMode::AlwaysAllow, "vm");
    assert_eq!(
        authz.authorize(&alice, "DELETE", "/anything").await,
        Decision::Allow
    );
    let authz = Authorizer::new(AuthzMode::NoApiServer, "vm");
    match authz.authorize(&alice, "GET", "/pods").await {
        Decision::Forbidden(body) => {
            assert!(
                body.starts_with(
                    "Forbidden (user=alice, verb=get, resource=nodes, subresource(s)=[pods proxy]): "
                ),
                "{body}"
            );
            assert!(body.contains("AlwaysAllow"), "{body}");
        }
        other => panic!("{other:?}"),
    }
}
