//! Configuration loading and validation (upstream's config_test.go cases), and the
//! providers end to end with a shell-script plugin.

use super::*;
use std::os::unix::fs::PermissionsExt;

const V1: &str = "credentialprovider.kubelet.k8s.io/v1";

fn valid() -> CredentialProvider {
    CredentialProvider {
        name: "foobar".into(),
        match_images: vec!["foobar.registry.io".into()],
        default_cache_duration: Some(kubelet_core::config::GoDuration::from_secs(60)),
        api_version: V1.into(),
        ..Default::default()
    }
}

fn token_attrs() -> ServiceAccountTokenAttributes {
    ServiceAccountTokenAttributes {
        service_account_token_audience: "aud".into(),
        cache_type: "ServiceAccount".into(),
        require_service_account: Some(true),
        ..Default::default()
    }
}

fn errors_of(providers: Vec<CredentialProvider>) -> Vec<String> {
    validate(&CredentialProviderConfig {
        providers,
        ..Default::default()
    })
}

fn one_error(provider: CredentialProvider) -> String {
    let errs = errors_of(vec![provider]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    errs[0].clone()
}

#[test]
fn validation_names_each_field_as_upstream() {
    assert!(errors_of(vec![valid()]).is_empty());
    assert_eq!(
        errors_of(vec![]),
        ["providers: Required value: at least 1 item in plugins is required"]
    );
    let cases: Vec<(CredentialProvider, &str)> = vec![
        (
            CredentialProvider {
                match_images: vec![],
                ..valid()
            },
            "providers.matchImages: Required value: at least 1 item in matchImages is required",
        ),
        (
            CredentialProvider {
                default_cache_duration: None,
                ..valid()
            },
            "providers.defaultCacheDuration: Required value",
        ),
        (
            CredentialProvider {
                name: "foo/../bar".into(),
                ..valid()
            },
            r#"providers.name: Invalid value: "foo/../bar": provider name cannot contain '/'"#,
        ),
        (
            CredentialProvider {
                name: ".".into(),
                ..valid()
            },
            r#"providers.name: Invalid value: ".": provider name cannot be '.'"#,
        ),
        (
            CredentialProvider {
                name: "..".into(),
                ..valid()
            },
            r#"providers.name: Invalid value: "..": provider name cannot be '..'"#,
        ),
        (
            CredentialProvider {
                name: "foo bar".into(),
                ..valid()
            },
            r#"providers.name: Invalid value: "foo bar": provider name cannot contain spaces"#,
        ),
        (
            CredentialProvider {
                api_version: String::new(),
                ..valid()
            },
            "providers.apiVersion: Required value",
        ),
        (
            CredentialProvider {
                api_version: "credentialprovider.kubelet.k8s.io/v1alpha0".into(),
                ..valid()
            },
            r#"providers.apiVersion: Unsupported value: "credentialprovider.kubelet.k8s.io/v1alpha0": supported values: "credentialprovider.kubelet.k8s.io/v1", "credentialprovider.kubelet.k8s.io/v1alpha1", "credentialprovider.kubelet.k8s.io/v1beta1""#,
        ),
        (
            CredentialProvider {
                default_cache_duration: Some(kubelet_core::config::GoDuration::from_secs(-60)),
                ..valid()
            },
            r#"providers.defaultCacheDuration: Invalid value: "-1m0s": must be greater than or equal to 0"#,
        ),
        (
            CredentialProvider {
                match_images: vec!["%invalid%".into()],
                ..valid()
            },
            r#"providers.matchImages: Invalid value: "%invalid%": match image is invalid: parse "https://%invalid%": invalid URL escape "%in""#,
        ),
        (
            CredentialProvider {
                token_attributes: Some(ServiceAccountTokenAttributes {
                    service_account_token_audience: String::new(),
                    ..token_attrs()
                }),
                ..valid()
            },
            "providers.tokenAttributes.serviceAccountTokenAudience: Required value",
        ),
        (
            CredentialProvider {
                token_attributes: Some(ServiceAccountTokenAttributes {
                    cache_type: String::new(),
                    ..token_attrs()
                }),
                ..valid()
            },
            "providers.tokenAttributes.cacheType: Required value: cacheType is required to be set when tokenAttributes is specified. Supported values are: ServiceAccount, Token",
        ),
        (
            CredentialProvider {
                token_attributes: Some(ServiceAccountTokenAttributes {
                    cache_type: "Pod".into(),
                    ..token_attrs()
                }),
                ..valid()
            },
            r#"providers.tokenAttributes.cacheType: Unsupported value: "Pod": supported values: "ServiceAccount", "Token""#,
        ),
        (
            CredentialProvider {
                token_attributes: Some(ServiceAccountTokenAttributes {
                    require_service_account: None,
                    ..token_attrs()
                }),
                ..valid()
            },
            "providers.tokenAttributes.requireServiceAccount: Required value",
        ),
        (
            CredentialProvider {
                token_attributes: Some(ServiceAccountTokenAttributes {
                    required_service_account_annotation_keys: vec![
                        "now-with-dashes/simple".into(),
                        "now-with-dashes/simple".into(),
                    ],
                    ..token_attrs()
                }),
                ..valid()
            },
            r#"providers.tokenAttributes.requiredServiceAccountAnnotationKeys: Duplicate value: "now-with-dashes/simple""#,
        ),
        (
            CredentialProvider {
                token_attributes: Some(ServiceAccountTokenAttributes {
                    optional_service_account_annotation_keys: vec!["a".into(), "a".into()],
                    ..token_attrs()
                }),
                ..valid()
            },
            r#"providers.tokenAttributes.optionalServiceAccountAnnotationKeys: Duplicate value: "a""#,
        ),
        (
            CredentialProvider {
                token_attributes: Some(ServiceAccountTokenAttributes {
                    required_service_account_annotation_keys: vec!["a".into()],
                    optional_service_account_annotation_keys: vec!["a".into()],
                    ..token_attrs()
                }),
                ..valid()
            },
            r#"providers.tokenAttributes: Invalid value: ["a"]: annotation keys cannot be both required and optional"#,
        ),
        (
            CredentialProvider {
                token_attributes: Some(ServiceAccountTokenAttributes {
                    require_service_account: Some(false),
                    required_service_account_annotation_keys: vec!["a".into()],
                    ..token_attrs()
                }),
                ..valid()
            },
            "providers.tokenAttributes.requiredServiceAccountAnnotationKeys: Forbidden: requireServiceAccount cannot be false when requiredServiceAccountAnnotationKeys is set",
        ),
        (
            CredentialProvider {
                api_version: "credentialprovider.kubelet.k8s.io/v1beta1".into(),
                token_attributes: Some(token_attrs()),
                ..valid()
            },
            "providers.tokenAttributes: Forbidden: tokenAttributes is only supported for credentialprovider.kubelet.k8s.io/v1 API version",
        ),
    ];
    for (provider, expected) in cases {
        assert_eq!(one_error(provider), expected);
    }
    let bad_key = one_error(CredentialProvider {
        token_attributes: Some(ServiceAccountTokenAttributes {
            optional_service_account_annotation_keys: vec!["cantendwithadash-".into()],
            ..token_attrs()
        }),
        ..valid()
    });
    assert!(
        bad_key.starts_with(r#"providers.tokenAttributes.optionalServiceAccountAnnotationKeys: Invalid value: "cantendwithadash-": "#),
        "{bad_key}"
    );
    assert_eq!(
        errors_of(vec![valid(), valid()]),
        [r#"providers.name: Duplicate value: "foobar""#]
    );
    let token_ok = CredentialProvider {
        token_attributes: Some(ServiceAccountTokenAttributes {
            required_service_account_annotation_keys: vec!["example.com/role".into()],
            optional_service_account_annotation_keys: vec!["Example.com/Other".into()],
            ..token_attrs()
        }),
        ..valid()
    };
    assert!(errors_of(vec![token_ok]).is_empty());
}

const YAML: &str = r#"
apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: test
    matchImages:
    - "registry.io/foobar"
    defaultCacheDuration: 10m
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    args:
    - --v=5
    env:
    - name: FOO
      value: BAR
    tokenAttributes:
      serviceAccountTokenAudience: aud
      cacheType: Token
      requireServiceAccount: false
"#;

#[test]
fn decodes_yaml_and_json_strictly() {
    let config = decode(YAML.as_bytes()).expect("succeeds");
    let p = &config.providers[0];
    assert_eq!(p.name, "test");
    assert_eq!(
        p.default_cache_duration,
        Some(kubelet_core::config::GoDuration::from_secs(600))
    );
    assert_eq!(
        p.env,
        [ExecEnvVar {
            name: "FOO".into(),
            value: "BAR".into()
        }]
    );
    assert_eq!(
        p.token_attributes.as_ref().expect("succeeds").cache_type,
        "Token"
    );
    let json = r#"{"apiVersion":"kubelet.config.k8s.io/v1beta1","kind":"CredentialProviderConfig","providers":[{"name":"test","matchImages":["*.registry.io"],"defaultCacheDuration":"1m","apiVersion":"credentialprovider.kubelet.k8s.io/v1beta1"}]}"#;
    assert_eq!(
        decode(json.as_bytes()).expect("succeeds").providers[0].match_images,
        ["*.registry.io"]
    );

    let wrong_kind = YAML.replace("kind: CredentialProviderConfig", "kind: WrongKind");
    assert_eq!(
        decode(wrong_kind.as_bytes()).expect_err("fails"),
        r#"no kind "WrongKind" is registered for version "kubelet.config.k8s.io/v1""#
    );
    let wrong_group = YAML.replace(
        "apiVersion: kubelet.config.k8s.io/v1",
        "apiVersion: foobar/v1alpha1",
    );
    assert!(
        decode(wrong_group.as_bytes())
            .expect_err("fails")
            .contains(r#"version "foobar/v1alpha1""#)
    );
    let typo = YAML.replace("matchImages:", "matchImagess:");
    let err = decode(typo.as_bytes()).expect_err("fails");
    assert!(err.contains("matchImagess"), "{err}");
    let old = YAML.replace(
        "kubelet.config.k8s.io/v1\n",
        "kubelet.config.k8s.io/v1alpha1\n",
    );
    assert!(
        decode(old.as_bytes())
            .expect_err("fails")
            .contains("tokenAttributes")
    );
    let bad_duration = YAML.replace("10m", "ten minutes");
    assert!(
        decode(bad_duration.as_bytes())
            .expect_err("fails")
            .contains("defaultCacheDuration")
    );
}

#[test]
fn loads_a_file_or_a_directory_in_lexical_order() {
    let dir = tempfile::tempdir().expect("succeeds");
    let file = dir.path().join("one.yaml");
    std::fs::write(&file, YAML).expect("succeeds");
    let loaded = load(&file).expect("succeeds");
    assert_eq!(loaded.config.providers.len(), 1);
    assert!(loaded.hash.starts_with("sha256:") && loaded.hash.len() == 7 + 64);

    let configs = dir.path().join("configs");
    std::fs::create_dir(&configs).expect("succeeds");
    assert!(
        load(&configs)
            .expect_err("fails")
            .to_string()
            .contains("no configuration files found")
    );
    std::fs::write(
        configs.join("b.yml"),
        YAML.replace("name: test", "name: second"),
    )
    .expect("succeeds");
    std::fs::write(configs.join("a.json"), r#"{"apiVersion":"kubelet.config.k8s.io/v1","kind":"CredentialProviderConfig","providers":[{"name":"first","matchImages":["*.registry.io"],"defaultCacheDuration":"1m","apiVersion":"credentialprovider.kubelet.k8s.io/v1"}]}"#).expect("succeeds");
    std::fs::write(configs.join("ignored.txt"), "not a config").expect("succeeds");
    let names: Vec<String> = load(&configs)
        .expect("succeeds")
        .config
        .providers
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["first", "second"]);
    std::fs::write(
        configs.join("c.yaml"),
        YAML.replace("name: test", "name: first"),
    )
    .expect("succeeds");
    let err = load(&configs).expect_err("fails").to_string();
    assert!(
        err.contains(r#"duplicate provider name "first""#) && err.contains("c.yaml"),
        "{err}"
    );

    let invalid = dir.path().join("invalid.yaml");
    std::fs::write(
        &invalid,
        YAML.replace("    defaultCacheDuration: 10m\n", ""),
    )
    .expect("succeeds");
    let err = load(&invalid).expect_err("fails").to_string();
    assert!(
        err.contains("invalid.yaml")
            && err.contains("providers.defaultCacheDuration: Required value"),
        "{err}"
    );
    assert!(
        load(&dir.path().join("missing.yaml"))
            .expect_err("fails")
            .to_string()
            .contains("missing.yaml")
    );
}

fn write_plugin(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("succeeds");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("succeeds");
}

fn answer(auth: &str) -> String {
    format!(
        r#"cat > /dev/null; echo '{{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Registry","auth":{auth}}}'"#
    )
}

#[tokio::test]
async fn providers_answer_through_the_keyring_and_failures_give_nothing() {
    let dir = tempfile::tempdir().expect("succeeds");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("succeeds");
    write_plugin(
        &bin,
        "general",
        &answer(
            r#"{"localhost:5001":{"username":"general","password":"g"},"other.io":{"username":"x","password":"y"}}"#,
        ),
    );
    write_plugin(
        &bin,
        "team",
        &answer(r#"{"http://localhost:5001/v2/team":{"username":"team","password":"t"}}"#),
    );
    write_plugin(&bin, "broken", "exit 1");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, r#"
apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
- {name: general, matchImages: ["localhost:5001"], defaultCacheDuration: 1m, apiVersion: credentialprovider.kubelet.k8s.io/v1}
- {name: team, matchImages: ["localhost:5001/team"], defaultCacheDuration: 1m, apiVersion: credentialprovider.kubelet.k8s.io/v1}
- {name: broken, matchImages: ["localhost:5001"], defaultCacheDuration: 1m, apiVersion: credentialprovider.kubelet.k8s.io/v1}
"#).expect("succeeds");
    let metrics = Arc::new(kubelet_core::metrics::kubelet::KubeletMetrics::new());
    let providers = CredentialProviders::load(&config, &bin, None, metrics.clone())
        .await
        .expect("succeeds");
    let pod = Pod::default();
    let users =
        |auths: Vec<RegistryAuth>| auths.into_iter().map(|a| a.username).collect::<Vec<_>>();
    assert_eq!(
        users(providers.lookup("localhost:5001/team/app:1", &pod).await),
        ["team", "general"]
    );
    assert_eq!(
        users(
            providers
                .lookup("localhost:5001/busybox:latest", &pod)
                .await
        ),
        ["general"]
    );
    assert!(
        providers
            .lookup("localhost:5000/busybox", &pod)
            .await
            .is_empty()
    );
    let info = kubelet_core::metrics::render(&[&metrics.credential_provider_config_info]);
    assert!(
        info.contains("kubelet_credential_provider_config_info{hash=\"sha256:"),
        "{info}"
    );
}

#[tokio::test]
async fn missing_bin_dir_or_plugin_stops_loading() {
    let dir = tempfile::tempdir().expect("succeeds");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, YAML).expect("succeeds");
    let err =
        CredentialProviders::load(&config, &dir.path().join("nope"), None, Default::default())
            .await
            .expect_err("fails");
    assert!(
        err.to_string().starts_with("plugin binary directory"),
        "{err}"
    );
    let err = CredentialProviders::load(&config, dir.path(), None, Default::default())
        .await
        .expect_err("fails");
    assert!(
        err.to_string().contains("plugin binary executable") && err.to_string().contains("test"),
        "{err}"
    );
}
